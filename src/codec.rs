//! How values cross to a child process: the `serialization` option.

use std::any::{type_name, Any, TypeId};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use postcard::ser_flavors::Flavor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::panics;
use crate::Error;

mod depth;
mod place;

pub(crate) use place::{copy_to, Encoded, Grow, Place};

/// The format arguments, results, worker data and channel messages take between a pool and
/// its child-process workers (Tinypool's `serialization` option). The threads runtime
/// serializes nothing.
///
/// Either way a value may be nested at most 256 levels deep (each sequence, map, struct,
/// `Some` and enum variant with data is a level): encoding or decoding recurses once per
/// level, and a deeper value, or bytes from a child that claim one, fail with
/// [`Error::Protocol`] rather than overflow the stack. A `Serialize` or `Deserialize` that
/// panics fails its task with [`Error::Panicked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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
        serializing::<T, _>(|too_deep| self.encode_bounded(value, too_deep))
    }

    /// Encodes `value` into `out` if it fits, growing it if it can ([`Encoded::InPlace`]:
    /// `out.len()` bytes, those [`encode`](Self::encode) makes), or says that it does not
    /// ([`Encoded::Full`]); the errors are `encode`'s. `Serialize` runs once either way.
    #[cfg_attr(not(unix), allow(dead_code))] // Used by the child-process runtime (Unix).
    pub(crate) fn encode_into<T: Serialize + 'static>(
        self,
        value: &T,
        out: &mut Place<'_>,
    ) -> Result<Encoded, Error> {
        if self == Serialization::Postcard {
            if let Some(bytes) = (value as &dyn Any).downcast_ref::<Vec<u8>>() {
                return Ok(match bytes::encode_into(bytes, out) {
                    true => Encoded::InPlace,
                    false => Encoded::Full,
                });
            }
        }
        let encoded = serializing::<T, _>(|too_deep| self.encode_in_place(value, too_deep, out));
        if out.is_full() {
            // What failed for want of room is no error.
            return Ok(Encoded::Full);
        }
        encoded.map(|()| Encoded::InPlace)
    }

    /// [`encode_bounded`](Self::encode_bounded), into `out`.
    fn encode_in_place<T: Serialize + ?Sized>(
        self,
        value: &T,
        too_deep: &Cell<bool>,
        out: &mut Place<'_>,
    ) -> Result<(), String> {
        match self {
            Serialization::Postcard => {
                let mut serializer = postcard::Serializer { output: out };
                value
                    .serialize(depth::Ser::new(&mut serializer, too_deep))
                    .map_err(postcard_error)
            }
            #[cfg(feature = "json")]
            Serialization::Json => value
                .serialize(depth::Ser::new(
                    &mut serde_json::Serializer::new(out),
                    too_deep,
                ))
                .map_err(|e| e.to_string()),
            #[cfg(not(feature = "json"))]
            Serialization::Json => Err(NO_JSON.to_owned()),
        }
    }

    /// What `postcard::to_allocvec` and `serde_json::to_vec` do, through [`depth::Ser`].
    fn encode_bounded<T: Serialize + ?Sized>(
        self,
        value: &T,
        too_deep: &Cell<bool>,
    ) -> Result<Vec<u8>, String> {
        match self {
            Serialization::Postcard => {
                let mut serializer = postcard::Serializer {
                    output: Output(spare()),
                };
                value
                    .serialize(depth::Ser::new(&mut serializer, too_deep))
                    .map_err(postcard_error)?;
                serializer.output.finalize().map_err(postcard_error)
            }
            #[cfg(feature = "json")]
            Serialization::Json => {
                let mut encoded = spare();
                encoded.reserve(128);
                value
                    .serialize(depth::Ser::new(
                        &mut serde_json::Serializer::new(&mut encoded),
                        too_deep,
                    ))
                    .map_err(|e| e.to_string())?;
                Ok(encoded)
            }
            #[cfg(not(feature = "json"))]
            Serialization::Json => Err(NO_JSON.to_owned()),
        }
    }

    pub(crate) fn decode<T: DeserializeOwned + 'static>(self, bytes: &[u8]) -> Result<T, Error> {
        if self == Serialization::Postcard && TypeId::of::<T>() == TypeId::of::<Vec<u8>>() {
            let decoded = bytes::decode(bytes).ok_or_else(|| Error::Protocol {
                message: "deserializing a `Vec<u8>`: not a length and that many bytes".to_owned(),
            })?;
            let decoded: Box<dyn Any> = Box::new(decoded);
            return Ok(*decoded.downcast::<T>().expect("T is Vec<u8>"));
        }
        let too_deep = Cell::new(false);
        // `Deserialize` is user code: its panic must not unwind the pool's driver thread.
        let decoded = catch_unwind(AssertUnwindSafe(|| self.decode_bounded(bytes, &too_deep)))
            .map_err(|payload| {
                panics::caught(&*payload, |message| {
                    format!("deserializing a `{}` panicked: {message}", type_name::<T>())
                })
            })?;
        decoded.map_err(|message| Error::Protocol {
            message: format!(
                "deserializing a `{}`: {}",
                type_name::<T>(),
                why(message, &too_deep)
            ),
        })
    }

    /// What `postcard::from_bytes` (trailing bytes ignored) and `serde_json::from_slice`
    /// (trailing bytes refused) do, through [`depth::De`].
    fn decode_bounded<T: DeserializeOwned>(
        self,
        bytes: &[u8],
        too_deep: &Cell<bool>,
    ) -> Result<T, String> {
        match self {
            Serialization::Postcard => {
                let mut deserializer = postcard::Deserializer::from_bytes(bytes);
                T::deserialize(depth::De::new(&mut deserializer, too_deep)).map_err(postcard_error)
            }
            #[cfg(feature = "json")]
            Serialization::Json => {
                let mut deserializer = serde_json::Deserializer::from_slice(bytes);
                let value = T::deserialize(depth::De::new(&mut deserializer, too_deep))
                    .map_err(|e| e.to_string())?;
                deserializer.end().map_err(|e| e.to_string())?;
                Ok(value)
            }
            #[cfg(not(feature = "json"))]
            Serialization::Json => Err(NO_JSON.to_owned()),
        }
    }

    #[cfg_attr(not(unix), allow(dead_code))] // Used by the child-process runtime (Unix).
    pub(crate) fn code(self) -> u8 {
        match self {
            Serialization::Postcard => 0,
            Serialization::Json => 1,
        }
    }

    #[cfg_attr(not(unix), allow(dead_code))] // Used by the child-process runtime (Unix).
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

thread_local! {
    /// The memory of an encoded value given back ([`recycle`]), for the next value this thread
    /// encodes ([`Serialization::encode`]): a child's results so take no allocation each.
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The most memory [`recycle`] keeps: a thread that once encoded a big value does not hold it.
const SPARE_MAX: usize = 64 << 10;

/// Gives back `bytes`, an encoded value done with, for this thread's next one to go in.
pub(crate) fn recycle(mut bytes: Vec<u8>) {
    if bytes.capacity() <= SPARE_MAX {
        bytes.clear();
        // A thread past its locals' end frees it instead.
        let _ = SPARE.try_with(|spare| spare.set(bytes));
    }
}

/// Empty memory for a value to be encoded in: what was last given back, if anything.
fn spare() -> Vec<u8> {
    SPARE.try_with(Cell::take).unwrap_or_default()
}

/// postcard writes an encoded value into a `Vec` through this flavor, which, unlike its own,
/// starts with the memory it is given ([`spare`]).
struct Output(Vec<u8>);

impl Flavor for Output {
    type Output = Vec<u8>;

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// Runs `encode` (the serializing of a `T`) with a depth flag, its panic caught (`Serialize` is
/// user code: its panic must not unwind the pool's driver thread), its failure a
/// [`Error::Protocol`] that names the type.
fn serializing<T: ?Sized, O>(
    encode: impl FnOnce(&Cell<bool>) -> Result<O, String>,
) -> Result<O, Error> {
    let too_deep = Cell::new(false);
    let encoded = catch_unwind(AssertUnwindSafe(|| encode(&too_deep))).map_err(|payload| {
        panics::caught(&*payload, |message| {
            format!("serializing a `{}` panicked: {message}", type_name::<T>())
        })
    })?;
    encoded.map_err(|message| Error::Protocol {
        message: format!(
            "serializing a `{}`: {}",
            type_name::<T>(),
            why(message, &too_deep)
        ),
    })
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

    /// [`encode`] into `out`; `false` if it does not fit.
    pub(super) fn encode_into(bytes: &[u8], out: &mut super::Place<'_>) -> bool {
        let mut prefix = [0u8; 10];
        let mut at = 0;
        let mut len = bytes.len() as u64;
        while len >= 0x80 {
            prefix[at] = len as u8 | 0x80;
            len >>= 7;
            at += 1;
        }
        prefix[at] = len as u8;
        out.put(&prefix[..=at]) && out.put(bytes)
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

/// postcard's error message, with what to do when the type is one postcard cannot carry:
/// what needs a self-describing format asks the deserializer what comes next
/// (`deserialize_any`, `deserialize_identifier`: untagged and internally tagged enums,
/// `#[serde(flatten)]`, `serde_json::Value`), and postcard refuses that; a `#[serde(flatten)]`
/// struct serializes as a map of unknown length, which postcard cannot write either.
fn postcard_error(error: postcard::Error) -> String {
    let why = match error {
        postcard::Error::WontImplement => {
            "it needs a self-describing format: an untagged or internally tagged enum, \
             `#[serde(flatten)]`, `serde_json::Value`, …"
        }
        postcard::Error::SerializeSeqLengthUnknown => {
            "it is a map or sequence that does not give its length: a struct with a \
             `#[serde(flatten)]` field, a `Serialize` that collects an iterator, …"
        }
        _ => return error.to_string(),
    };
    format!(
        "{error}: postcard cannot carry this type ({why}); use `Serialization::Json` (the \
         crate's `json` feature)"
    )
}

/// The format's error message, unless the value was too deep: then the format's message may
/// not say so (postcard drops the text of custom errors).
fn why(message: String, too_deep: &Cell<bool>) -> String {
    if too_deep.get() {
        depth::TooDeep.to_string()
    } else {
        message
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

    // --- Nesting ----------------------------------------------------------------------------

    use std::collections::{BTreeMap, HashMap};
    use std::fmt::Debug;

    use proptest::collection::{btree_map, vec};
    use proptest::prelude::{any, prop_oneof, proptest, Just, Strategy};
    use serde::Deserialize;

    use super::depth::MAX_DEPTH;

    /// The simplest value a hostile peer can nest: one byte a level in postcard.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Nest {
        Leaf,
        Node(Box<Nest>),
    }

    fn nest(levels: usize) -> Nest {
        let mut nest = Nest::Leaf;
        for _ in 0..levels {
            nest = Nest::Node(Box::new(nest));
        }
        nest
    }

    /// Unwinds the chain one box at a time: the recursive `Drop` of a deep chain would
    /// overflow the stack itself.
    fn drop_nest(mut nest: Nest) {
        while let Nest::Node(inner) = nest {
            nest = *inner;
        }
    }

    /// Levels that JSON does not see: `Triple(Some(Some(x)))` is three levels of serde's data
    /// model but one JSON object, so a JSON value can reach `MAX_DEPTH` inside serde_json's own
    /// limit of 127 nested objects.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Layers {
        Leaf,
        Node(Box<Layers>),
        Triple(Option<Option<Box<Layers>>>),
    }

    fn layers(levels: usize) -> Layers {
        let mut deep = Layers::Leaf;
        let mut left = levels;
        while left >= 3 {
            deep = Layers::Triple(Some(Some(Box::new(deep))));
            left -= 3;
        }
        for _ in 0..left {
            deep = Layers::Node(Box::new(deep));
        }
        deep
    }

    /// The stack of a thread the standard library spawns by default.
    fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    fn codecs() -> Vec<Serialization> {
        let mut codecs = vec![Serialization::Postcard];
        if Serialization::Json.available() {
            codecs.push(Serialization::Json);
        }
        codecs
    }

    #[track_caller]
    fn assert_too_deep<T: Debug>(result: Result<T, Error>, type_: &str) {
        match result {
            Err(Error::Protocol { message }) => {
                assert!(message.contains(type_), "{message}");
                assert!(
                    message.contains(&format!("nested deeper than {MAX_DEPTH} levels")),
                    "{message}"
                );
            }
            other => panic!("not too deep: {other:?}"),
        }
    }

    #[test]
    fn deep_postcard_input_is_an_error_not_a_crash() {
        let mut bytes = vec![1u8; 100_000];
        bytes.push(0);
        let result = on_small_stack(move || {
            Serialization::Postcard
                .decode::<Nest>(&bytes)
                .map(drop_nest)
        });
        assert_too_deep(result, "Nest");
    }

    #[cfg(feature = "json")]
    #[test]
    fn deep_json_input_is_an_error_not_a_crash() {
        fn nested(variant: &str) -> Vec<u8> {
            let open = format!("{{\"{variant}\":");
            let mut json = open.repeat(100_000);
            json.push_str("\"Leaf\"");
            json.push_str(&"}".repeat(100_000));
            json.into_bytes()
        }
        // serde_json's own limit of 128 objects comes first here: an error all the same.
        let json = nested("Node");
        let result = on_small_stack(move || Serialization::Json.decode::<Nest>(&json));
        assert!(matches!(result, Err(Error::Protocol { .. })), "{result:?}");
        // Here ours does.
        let json = nested("Triple");
        let result = on_small_stack(move || Serialization::Json.decode::<Layers>(&json));
        assert_too_deep(result, "Layers");
    }

    #[test]
    fn deep_values_do_not_encode() {
        for codec in codecs() {
            let result = on_small_stack(move || {
                let value = nest(100_000);
                let result = codec.encode(&value);
                drop_nest(value);
                result
            });
            assert_too_deep(result, "Nest");
        }
    }

    #[test]
    fn the_limit_is_exact_both_ways() {
        for codec in codecs() {
            on_small_stack(move || {
                let at = layers(MAX_DEPTH);
                let encoded = codec.encode(&at).unwrap();
                assert_eq!(encoded, plain_encode(codec, &at));
                assert_eq!(codec.decode::<Layers>(&encoded).unwrap(), at);

                let over = layers(MAX_DEPTH + 1);
                assert_too_deep(codec.encode(&over), "Layers");
                assert_too_deep(
                    codec.decode::<Layers>(&plain_encode(codec, &over)),
                    "Layers",
                );
            });
        }
        on_small_stack(|| {
            let codec = Serialization::Postcard;
            let at = nest(MAX_DEPTH);
            assert_eq!(
                codec.decode::<Nest>(&codec.encode(&at).unwrap()).unwrap(),
                at
            );
            let over = nest(MAX_DEPTH + 1);
            assert_too_deep(codec.encode(&over), "Nest");
            let over = postcard::to_allocvec(&over).unwrap();
            assert_too_deep(codec.decode::<Nest>(&over), "Nest");
        });
    }

    /// A fat struct per level, and one level each (a struct variant): the most stack a level
    /// took of the types measured: about 1 MB for `MAX_DEPTH` of them in a debug build.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[allow(clippy::large_enum_variant, reason = "fat on purpose")]
    enum Tree {
        Leaf,
        Node {
            name: String,
            id: u128,
            scores: [f64; 8],
            tags: BTreeMap<String, Vec<u32>>,
            pair: (u64, i64, Option<String>),
            kind: Kind,
            more: Option<(String, [u32; 8], Kind)>,
            next: Box<Tree>,
        },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Kind {
        A,
        B { x: u32, y: String },
        C(u8, u16),
    }

    #[test]
    fn a_fat_value_at_the_limit_fits_a_small_stack() {
        for codec in codecs() {
            on_small_stack(move || {
                // The innermost node's `kind` is one level deeper than the node.
                let mut tree = Tree::Leaf;
                for i in 0..MAX_DEPTH - 1 {
                    tree = Tree::Node {
                        name: format!("level {i}"),
                        id: u128::MAX - i as u128,
                        scores: [i as f64; 8],
                        tags: BTreeMap::new(),
                        pair: (1, -2, None),
                        kind: Kind::B {
                            x: 1,
                            y: "y".into(),
                        },
                        more: None,
                        next: Box::new(tree),
                    };
                }
                match codec.decode::<Tree>(&codec.encode(&tree).unwrap()) {
                    Ok(back) => assert_eq!(back, tree),
                    // A JSON object a level: serde_json's own limit of 127 comes first.
                    Err(_) if codec == Serialization::Json => {}
                    Err(error) => panic!("{error}"),
                }
            });
        }
    }

    // --- Transparency ------------------------------------------------------------------------

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Named {
        a: u8,
        b: String,
        c: Vec<i64>,
        d: Option<char>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct TupleStruct(u16, i32, f64);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct UnitStruct;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Newtype(u64);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Variants {
        Unit,
        Newtype(u8),
        Tuple(i8, String),
        Struct { x: f32, y: Option<Box<Variants>> },
    }

    /// Through `serialize_bytes` and `deserialize_byte_buf`, which a `Vec<u8>` does not use.
    #[derive(Debug, PartialEq)]
    struct Bytes(Vec<u8>);

    impl Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Bytes;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                    Ok(Bytes(v))
                }
                // JSON writes bytes as an array of numbers.
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Bytes, A::Error> {
                    let mut bytes = Vec::new();
                    while let Some(byte) = seq.next_element()? {
                        bytes.push(byte);
                    }
                    Ok(Bytes(bytes))
                }
            }
            deserializer.deserialize_byte_buf(Visitor)
        }
    }

    /// Through `collect_str`.
    #[derive(Debug, PartialEq)]
    struct Displayed(u32);

    impl Serialize for Displayed {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Displayed {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let text = String::deserialize(deserializer)?;
            text.parse()
                .map(Displayed)
                .map_err(serde::de::Error::custom)
        }
    }

    /// What the format writes on its own, without the depth limit.
    fn plain_encode<T: Serialize>(codec: Serialization, value: &T) -> Vec<u8> {
        match codec {
            Serialization::Postcard => postcard::to_allocvec(value).unwrap(),
            #[cfg(feature = "json")]
            Serialization::Json => serde_json::to_vec(value).unwrap(),
            #[cfg(not(feature = "json"))]
            Serialization::Json => unreachable!(),
        }
    }

    /// What the format reads on its own, without the depth limit.
    fn plain_decode<T: DeserializeOwned>(codec: Serialization, bytes: &[u8]) -> T {
        match codec {
            Serialization::Postcard => postcard::from_bytes(bytes).unwrap(),
            #[cfg(feature = "json")]
            Serialization::Json => serde_json::from_slice(bytes).unwrap(),
            #[cfg(not(feature = "json"))]
            Serialization::Json => unreachable!(),
        }
    }

    /// The wrapped codec writes exactly the format's bytes, and reads them as the format
    /// does: as `value` itself, except that serde_json may read a float back a bit off.
    #[track_caller]
    fn transparent<T>(value: T)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug + 'static,
    {
        for codec in codecs() {
            let encoded = codec.encode(&value).unwrap();
            assert_eq!(encoded, plain_encode(codec, &value), "{codec:?} {value:?}");
            let decoded = codec.decode::<T>(&encoded).unwrap();
            assert_eq!(decoded, plain_decode::<T>(codec, &encoded), "{codec:?}");
            if codec == Serialization::Postcard {
                assert_eq!(decoded, value);
            }
        }
    }

    /// [`transparent`], and JSON reads `value` back exactly too.
    #[track_caller]
    fn round_trips<T>(value: T)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug + 'static,
    {
        for codec in codecs() {
            assert_eq!(
                codec.decode::<T>(&codec.encode(&value).unwrap()).unwrap(),
                value
            );
        }
        transparent(value);
    }

    /// A value encoded after one was given back goes in its memory, and reads as it would
    /// have anyway; big memory is not kept.
    #[test]
    fn an_encoded_value_given_back_takes_the_next_one() {
        for codec in codecs() {
            let first = codec.encode(&(1u64, "one")).unwrap();
            let memory = first.as_ptr();
            recycle(first);
            let second = codec.encode(&(2u64, "two")).unwrap();
            assert_eq!(second.as_ptr(), memory);
            assert_eq!(second, plain_encode(codec, &(2u64, "two")));
            recycle(second);
            let big = Vec::with_capacity(SPARE_MAX + 1);
            let memory = big.as_ptr();
            recycle(big);
            let third = codec.encode(&3u8).unwrap();
            assert_ne!(third.as_ptr(), memory, "big memory is not kept");
            assert_eq!(third, plain_encode(codec, &3u8));
        }
    }

    #[test]
    fn the_bytes_are_the_formats_own() {
        round_trips(Named {
            a: 7,
            b: "bee".into(),
            c: vec![-1, 0, i64::MAX],
            d: Some('é'),
        });
        round_trips(TupleStruct(65535, -7, 0.25));
        round_trips(UnitStruct);
        round_trips(Newtype(u64::MAX));
        round_trips(Variants::Unit);
        round_trips(Variants::Newtype(3));
        round_trips(Variants::Tuple(-3, "three".into()));
        round_trips(Variants::Struct {
            x: 1.5,
            y: Some(Box::new(Variants::Tuple(1, String::new()))),
        });
        round_trips(Some(5u32));
        round_trips(None::<u32>);
        round_trips(vec!["a".to_owned(), "bc".to_owned()]);
        round_trips(HashMap::from([
            ("one".to_owned(), 1u32),
            ("two".to_owned(), 2),
        ]));
        round_trips(BTreeMap::from([(1u32, vec![1u8, 2]), (3, vec![])]));
        round_trips("a string".to_owned());
        round_trips(Bytes(vec![0, 1, 255]));
        round_trips((u128::MAX, i128::MIN, 'x', -0.1f64, true, ()));
        round_trips(Displayed(1234));
        // Types whose encoding depends on `is_human_readable`.
        round_trips("10.0.0.1:80".parse::<std::net::SocketAddr>().unwrap());
        round_trips("::1".parse::<std::net::IpAddr>().unwrap());
        round_trips(std::time::Duration::from_millis(1500));
        round_trips(vec![
            (
                Some(Variants::Unit),
                BTreeMap::from([("k".to_owned(), Newtype(1))]),
            ),
            (None, BTreeMap::new()),
        ]);
        round_trips(Tree::Node {
            name: "root".into(),
            id: 1,
            scores: [0.5; 8],
            tags: BTreeMap::from([("t".to_owned(), vec![1, 2, 3])]),
            pair: (1, -1, Some("p".into())),
            kind: Kind::C(1, 2),
            more: Some(("m".into(), [9; 8], Kind::A)),
            next: Box::new(Tree::Leaf),
        });
    }

    fn variants() -> impl Strategy<Value = Variants> {
        let leaf = prop_oneof![
            Just(Variants::Unit),
            any::<u8>().prop_map(Variants::Newtype),
            (any::<i8>(), any::<String>()).prop_map(|(a, b)| Variants::Tuple(a, b)),
        ];
        leaf.prop_recursive(4, 16, 1, |inner| {
            let x = any::<f32>().prop_filter("NaN is not equal to itself", |x| !x.is_nan());
            (x, proptest::option::of(inner)).prop_map(|(x, y)| Variants::Struct {
                x,
                y: y.map(Box::new),
            })
        })
    }

    proptest! {
        #[test]
        fn arbitrary_values_take_the_formats_own_bytes(
            named in (any::<u8>(), any::<String>(), vec(any::<i64>(), 0..8), any::<Option<char>>()),
            variants in vec(variants(), 0..4),
            map in btree_map(any::<String>(), any::<(u128, i128, bool)>(), 0..4),
            floats in vec(any::<f64>().prop_filter("NaN is not equal to itself", |x| !x.is_nan()), 0..4),
        ) {
            let (a, b, c, d) = named;
            transparent(Named { a, b, c, d });
            transparent(variants);
            transparent(map);
            transparent(floats);
        }
    }

    // --- Panics -------------------------------------------------------------------------------

    #[derive(Debug)]
    struct PanicsOnSerialize;

    impl Serialize for PanicsOnSerialize {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            panic!("no serializing this");
        }
    }

    #[derive(Debug)]
    struct PanicsOnDeserialize;

    impl<'de> Deserialize<'de> for PanicsOnDeserialize {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            panic!("no deserializing {}", "this");
        }
    }

    /// The panic is the task's error, with its message and its location (in this file).
    #[test]
    fn a_panicking_serde_impl_is_an_error() {
        crate::panics::install();
        let here = |location: Option<String>| {
            let location = location.expect("the hook saw the panic");
            assert!(location.starts_with(concat!(file!(), ":")), "{location}");
        };
        for codec in codecs() {
            match codec.encode(&vec![PanicsOnSerialize]) {
                Err(Error::Panicked { message, location }) => {
                    assert!(
                        message.starts_with("serializing a `alloc::vec::Vec<"),
                        "{message}"
                    );
                    assert!(
                        message.ends_with("PanicsOnSerialize>` panicked: no serializing this"),
                        "{message}"
                    );
                    here(location);
                }
                other => panic!("{other:?}"),
            }
            match codec.decode::<PanicsOnDeserialize>(b"null") {
                Err(Error::Panicked { message, location }) => {
                    assert!(message.starts_with("deserializing a `"), "{message}");
                    assert!(
                        message.ends_with("PanicsOnDeserialize` panicked: no deserializing this"),
                        "{message}"
                    );
                    here(location);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    // --- What postcard cannot carry ---------------------------------------------------------

    /// Decoding needs `deserialize_any`.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        Number(u32),
        Text(String),
    }

    /// Encodes as a map whose length serde does not know.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Flattened {
        id: u32,
        #[serde(flatten)]
        rest: BTreeMap<String, u32>,
    }

    #[track_caller]
    fn says_use_json<T: Debug>(result: Result<T, Error>, postcards_words: &str) {
        match result {
            Err(Error::Protocol { message }) => {
                assert!(message.contains(postcards_words), "{message}");
                assert!(
                    message.contains("postcard cannot carry this type"),
                    "{message}"
                );
                assert!(
                    message.contains("use `Serialization::Json` (the crate's `json` feature)"),
                    "{message}"
                );
            }
            other => panic!("not a protocol error: {other:?}"),
        }
    }

    #[test]
    fn what_postcard_cannot_carry_says_to_use_json() {
        let codec = Serialization::Postcard;
        // It encodes as its variant's value, but cannot be read back.
        let encoded = codec.encode(&Untagged::Text("x".into())).unwrap();
        says_use_json(codec.decode::<Untagged>(&encoded), "will never implement");
        let flattened = Flattened {
            id: 1,
            rest: BTreeMap::from([("a".to_owned(), 2)]),
        };
        says_use_json(
            codec.encode(&flattened),
            "length of a sequence must be known",
        );
        // Other errors get no such advice.
        match codec.decode::<String>(&[0xff, 0xff, 0xff]) {
            Err(Error::Protocol { message }) => assert!(!message.contains("Json"), "{message}"),
            other => panic!("{other:?}"),
        }
        if Serialization::Json.available() {
            let json = Serialization::Json;
            let back = json.decode::<Untagged>(&json.encode(&Untagged::Number(3)).unwrap());
            assert_eq!(back.unwrap(), Untagged::Number(3));
            let back = json.decode::<Flattened>(&json.encode(&flattened).unwrap());
            assert_eq!(back.unwrap(), flattened);
        }
    }

    /// Encoded in place, a value takes the bytes it takes in a buffer of its own; one that
    /// does not fit says so; an error is the same error.
    #[test]
    fn values_encode_in_place_as_in_a_buffer() {
        fn check<T: Serialize + 'static>(codec: Serialization, value: &T) {
            let expected = codec.encode(value).unwrap();
            for room in [0, expected.len() / 2, expected.len(), expected.len() + 5] {
                let mut memory = vec![0u8; room];
                // SAFETY: a local buffer, not otherwise used while the place lives.
                let mut place = unsafe { Place::new(memory.as_mut_ptr(), room) };
                match codec.encode_into(value, &mut place).unwrap() {
                    Encoded::InPlace => {
                        assert!(room >= expected.len());
                        assert_eq!(&memory[..place.len()], &expected[..]);
                    }
                    Encoded::Full => {
                        assert!(room < expected.len(), "{room} {}", expected.len());
                        assert!(place.is_full());
                    }
                }
            }
        }
        for codec in codecs() {
            check(codec, &(0..3_000).map(|i| i as u8).collect::<Vec<u8>>());
            check(codec, &Vec::<u8>::new());
            check(
                codec,
                &Named {
                    a: 1,
                    b: "b".repeat(300),
                    c: vec![-5; 40],
                    d: None,
                },
            );
            check(codec, &vec!["x".to_owned(); 100]);
        }
        let mut memory = [0u8; 64];
        // SAFETY: as above.
        let mut place = unsafe { Place::new(memory.as_mut_ptr(), memory.len()) };
        let refused = Serialization::Postcard.encode_into(&Touchy, &mut place);
        let Err(Error::Protocol { message }) = refused else {
            panic!("not refused");
        };
        assert!(message.contains("Touchy"), "{message}");
        assert_eq!(
            Serialization::Postcard.encode(&Touchy),
            Err(Error::Protocol { message })
        );
    }

    /// A value whose `Serialize` fails.
    struct Touchy;

    impl Serialize for Touchy {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("touchy"))
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
