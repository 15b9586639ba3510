//! Whether a function's value is a `Result::Err`, seen through serde: exports are typed only by
//! their serde bounds, so a setup export that returns `Result<_, E>` is told apart by how it
//! serializes (serde writes every `Result` as the newtype variant `Ok` or `Err` of an enum
//! named `Result`).
//!
//! The error's text is its value displayed when it is a string, a number, a `char`, a `bool`
//! or a unit variant (`Err("no database".to_owned())`, an error code, a fieldless enum);
//! anything else is named by its type.

use std::any::type_name;
use std::fmt::{self, Display};
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::ser::{self, Impossible, Serialize, Serializer};

/// `Some(what the error says)` if `value` is a `Result::Err`; `None` for anything else, or if
/// serializing it panics.
pub(crate) fn error_of<R: Serialize>(value: &R) -> Option<String> {
    match catch_unwind(AssertUnwindSafe(|| {
        value.serialize(Probe { inside: false })
    })) {
        Ok(Ok(Found::Err(Some(text)))) => Some(text),
        Ok(Ok(Found::Err(None))) => Some(format!("an error (in a `{}`)", type_name::<R>())),
        _ => None,
    }
}

/// What [`Probe`] found.
enum Found {
    /// Not a `Result::Err` (at the top), or not a simple value (inside one).
    Other,
    /// A `Result::Err`, and its text if it is a simple value.
    Err(Option<String>),
    /// A simple value, displayed (inside an `Err`).
    Text(String),
}

/// Serializes a value only as far as needed: at the top, to see whether it is a
/// `Result::Err`; `inside` one, to display a simple error.
struct Probe {
    inside: bool,
}

/// Never raised by [`Probe`] itself: required by serde of every serializer.
#[derive(Debug)]
struct NotSimple;

impl Display for NotSimple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a simple value")
    }
}

impl std::error::Error for NotSimple {}

impl ser::Error for NotSimple {
    fn custom<T: Display>(_message: T) -> Self {
        NotSimple
    }
}

impl Probe {
    fn text(&self, value: impl Display) -> Result<Found, NotSimple> {
        Ok(if self.inside {
            Found::Text(value.to_string())
        } else {
            Found::Other
        })
    }
}

macro_rules! simple {
    ($($method:ident: $type:ty,)*) => {
        $(
            fn $method(self, value: $type) -> Result<Found, NotSimple> {
                self.text(value)
            }
        )*
    };
}

macro_rules! compound {
    ($($method:ident($($arg:ident: $type:ty),*) -> $out:ident,)*) => {
        $(
            fn $method(self, $($arg: $type),*) -> Result<Self::$out, NotSimple> {
                let _ = ($($arg),*);
                Err(NotSimple)
            }
        )*
    };
}

impl Serializer for Probe {
    type Ok = Found;
    type Error = NotSimple;
    type SerializeSeq = Impossible<Found, NotSimple>;
    type SerializeTuple = Impossible<Found, NotSimple>;
    type SerializeTupleStruct = Impossible<Found, NotSimple>;
    type SerializeTupleVariant = Impossible<Found, NotSimple>;
    type SerializeMap = Impossible<Found, NotSimple>;
    type SerializeStruct = Impossible<Found, NotSimple>;
    type SerializeStructVariant = Impossible<Found, NotSimple>;

    simple! {
        serialize_bool: bool,
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_i128: i128,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_u128: u128,
        serialize_f32: f32,
        serialize_f64: f64,
        serialize_char: char,
        serialize_str: &str,
    }

    compound! {
        serialize_seq(len: Option<usize>) -> SerializeSeq,
        serialize_tuple(len: usize) -> SerializeTuple,
        serialize_tuple_struct(name: &'static str, len: usize) -> SerializeTupleStruct,
        serialize_tuple_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> SerializeTupleVariant,
        serialize_map(len: Option<usize>) -> SerializeMap,
        serialize_struct(name: &'static str, len: usize) -> SerializeStruct,
        serialize_struct_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> SerializeStructVariant,
    }

    fn serialize_bytes(self, _value: &[u8]) -> Result<Found, NotSimple> {
        Ok(Found::Other)
    }

    fn serialize_none(self) -> Result<Found, NotSimple> {
        Ok(Found::Other)
    }

    fn serialize_some<T: ?Sized + Serialize>(self, _value: &T) -> Result<Found, NotSimple> {
        Ok(Found::Other)
    }

    fn serialize_unit(self) -> Result<Found, NotSimple> {
        Ok(Found::Other)
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<Found, NotSimple> {
        self.text(name)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Found, NotSimple> {
        self.text(variant)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Found, NotSimple> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Found, NotSimple> {
        if self.inside || name != "Result" || variant != "Err" {
            return Ok(Found::Other);
        }
        let text = match value.serialize(Probe { inside: true }) {
            Ok(Found::Text(text)) => Some(text),
            _ => None,
        };
        Ok(Found::Err(text))
    }
}

#[cfg(test)]
mod tests {
    use super::error_of;

    #[derive(serde::Serialize)]
    struct Wrapped {
        reason: String,
    }

    #[derive(serde::Serialize)]
    enum Kind {
        Refused,
    }

    #[test]
    fn an_err_is_found_and_said() {
        let refused: Result<(), String> = Err("no database".to_owned());
        assert_eq!(error_of(&refused).as_deref(), Some("no database"));
        let code: Result<u8, i32> = Err(-3);
        assert_eq!(error_of(&code).as_deref(), Some("-3"));
        let kind: Result<(), Kind> = Err(Kind::Refused);
        assert_eq!(error_of(&kind).as_deref(), Some("Refused"));
        let wrapped: Result<(), Wrapped> = Err(Wrapped {
            reason: "x".to_owned(),
        });
        let said = error_of(&wrapped).expect("an Err");
        assert!(said.contains("Wrapped"), "{said}");
    }

    #[test]
    fn anything_else_is_no_error() {
        let fine: Result<(), String> = Ok(());
        assert_eq!(error_of(&fine), None);
        assert_eq!(error_of(&()), None);
        assert_eq!(error_of(&"Err".to_owned()), None);
        assert_eq!(error_of(&Some(Err::<(), u8>(1))), None);
        assert_eq!(error_of(&vec![1, 2]), None);
    }
}
