//! How values cross to a child process: the `serialization` option.

use std::any::type_name;

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
    pub(crate) fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, Error> {
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

    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, Error> {
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

    #[test]
    fn codes_round_trip() {
        for codec in [Serialization::Postcard, Serialization::Json] {
            assert_eq!(Serialization::from_code(codec.code()).unwrap(), codec);
        }
        assert!(Serialization::from_code(9).is_err());
    }
}
