//! How values cross to a child process: the `serialization` option.

use std::any::{type_name, Any, TypeId};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Error;

/// The format arguments, results, worker data and channel messages take between a pool and
/// its child-process workers (Tinypool's `serialization` option). The threads runtime
/// serializes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Serialization {
    /// [postcard](https://docs.rs/postcard): compact and fast; the default. It cannot encode
    /// what needs a self-describing format (untagged enums, `#[serde(flatten)]`).
    #[default]
    Postcard,
    /// JSON, with the crate's `json` feature: self-describing, so it handles every serde type.
    Json,
}

impl Serialization {
    pub(crate) fn encode<T: Serialize + 'static>(self, value: &T) -> Result<Vec<u8>, Error> {
        if self == Serialization::Postcard {
            if let Some(bytes) = (value as &dyn Any).downcast_ref::<Vec<u8>>() {
                return Ok(bytes::encode(bytes));
            }
        }
        let encoded = match self {
            Serialization::Postcard => postcard::to_allocvec(value).map_err(|e| e.to_string()),
            #[cfg(feature = "json")]
            Serialization::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
            #[cfg(not(feature = "json"))]
            Serialization::Json => Err(NO_JSON.to_owned()),
        };
        encoded.map_err(|message| Error::Protocol {
            message: format!("serializing a `{}`: {message}", type_name::<T>()),
        })
    }

    pub(crate) fn decode<T: DeserializeOwned + 'static>(self, bytes: &[u8]) -> Result<T, Error> {
        if self == Serialization::Postcard && TypeId::of::<T>() == TypeId::of::<Vec<u8>>() {
            let decoded = bytes::decode(bytes).ok_or_else(|| Error::Protocol {
                message: "deserializing a `Vec<u8>`: not a length and that many bytes".to_owned(),
            })?;
            let decoded: Box<dyn Any> = Box::new(decoded);
            return Ok(*decoded.downcast::<T>().expect("T is Vec<u8>"));
        }
        let decoded = match self {
            Serialization::Postcard => postcard::from_bytes(bytes).map_err(|e| e.to_string()),
            #[cfg(feature = "json")]
            Serialization::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            #[cfg(not(feature = "json"))]
            Serialization::Json => Err(NO_JSON.to_owned()),
        };
        decoded.map_err(|message| Error::Protocol {
            message: format!("deserializing a `{}`: {message}", type_name::<T>()),
        })
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Serialization::Postcard => 0,
            Serialization::Json => 1,
        }
    }

    pub(crate) fn from_code(code: u8) -> Result<Self, Error> {
        match code {
            0 => Ok(Serialization::Postcard),
            1 => Ok(Serialization::Json),
            _ => Err(Error::Protocol {
                message: format!("unknown serialization code {code}"),
            }),
        }
    }

    /// Whether this build can use the format.
    pub(crate) fn available(self) -> bool {
        cfg!(feature = "json") || self != Serialization::Json
    }
}

/// postcard's encoding of a `Vec<u8>` (a varint length, then the bytes), written and read in
/// one copy: serde hands postcard a `Vec<u8>` byte by byte, which costs ~1 ns a byte, and byte
/// buffers are what large arguments usually are.
mod bytes {
    pub(super) fn encode(bytes: &[u8]) -> Vec<u8> {
        let mut encoded = Vec::with_capacity(bytes.len() + 10);
        let mut len = bytes.len() as u64;
        while len >= 0x80 {
            encoded.push(len as u8 | 0x80);
            len >>= 7;
        }
        encoded.push(len as u8);
        encoded.extend_from_slice(bytes);
        encoded
    }

    /// `None` unless `encoded` is exactly a length and that many bytes.
    pub(super) fn decode(encoded: &[u8]) -> Option<Vec<u8>> {
        let mut len = 0u64;
        for (i, &byte) in encoded.iter().enumerate().take(10) {
            len |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                let rest = &encoded[i + 1..];
                return (rest.len() as u64 == len).then(|| rest.to_vec());
            }
        }
        None
    }
}

#[cfg(not(feature = "json"))]
const NO_JSON: &str = "Serialization::Json needs the crate's `json` feature";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postcard_round_trips_and_rejects_garbage() {
        let codec = Serialization::Postcard;
        let bytes = codec.encode(&(4i32, "six".to_owned())).unwrap();
        assert_eq!(
            codec.decode::<(i32, String)>(&bytes).unwrap(),
            (4, "six".to_owned())
        );
        assert!(matches!(
            codec.decode::<String>(&[0xff, 0xff, 0xff]),
            Err(Error::Protocol { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn byte_buffers_take_postcards_own_format(bytes: Vec<u8>, tail: Vec<u8>) {
            let codec = Serialization::Postcard;
            let encoded = codec.encode(&bytes).unwrap();
            proptest::prop_assert_eq!(&encoded, &postcard::to_allocvec(&bytes).unwrap());
            proptest::prop_assert_eq!(codec.decode::<Vec<u8>>(&encoded).unwrap(), bytes);
            // Anything else is an error, never a misreading.
            let mut longer = encoded.clone();
            longer.extend_from_slice(&tail);
            let decoded = codec.decode::<Vec<u8>>(&longer);
            proptest::prop_assert!(tail.is_empty() == decoded.is_ok());
            if !encoded.is_empty() {
                let cut = codec.decode::<Vec<u8>>(&encoded[..encoded.len() - 1]);
                proptest::prop_assert!(cut.is_err());
            }
        }
    }

    #[test]
    fn codes_round_trip() {
        for codec in [Serialization::Postcard, Serialization::Json] {
            assert_eq!(Serialization::from_code(codec.code()).unwrap(), codec);
        }
        assert!(Serialization::from_code(9).is_err());
    }
}
