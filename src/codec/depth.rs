//! A nesting limit for every value that crosses between a pool and its child processes.
//!
//! serde walks a value by recursion, one or more stack frames per level of nesting, and
//! neither postcard nor serde's derived code bounds that recursion. A deep enough value (a
//! recursive enum 10,000 levels deep) overflows the thread's stack, and a stack overflow is not
//! a panic: it aborts the whole process. A child can send such a value in a few hundred
//! kilobytes, so without a bound any child could kill the pool's process.
//!
//! [`Ser`] and [`De`] wrap a format's `Serializer` and `Deserializer` and forward every call
//! to it unchanged (so the bytes are exactly the format's own), but count the compound values
//! they pass through: sequences, tuples, maps, structs, newtype structs, `Some`, and enum
//! variants that carry data. One level deeper than [`MAX_DEPTH`] fails with the format's own
//! custom error, before the format or the type recurses any further, and notes it in the flag
//! the caller passed (postcard drops the text of custom errors, so the flag is how the caller
//! knows to say why).
//!
//! On the deserializing side the count is kept in the visitor and in the accessors and
//! `DeserializeSeed`s handed to it, rather than in the `deserialize_*` calls, so what is counted is what the
//! input actually contains: that covers `deserialize_any`, self-describing formats and
//! `IgnoredAny` too.
//!
//! The depth travels by value in each wrapper: nothing is allocated, and nothing has to be
//! undone when a level returns early with an error.

use std::cell::Cell;
use std::fmt::{self, Display};

use serde::{de, ser};

/// The deepest nesting [`Ser`] and [`De`] let through. Real data (configs, messages, trees a
/// program builds on purpose) seldom nests beyond a few dozen levels, so this is well above it.
/// And it is well below what a 2 MiB thread stack (what std gives a spawned thread) holds:
/// decoding 256 levels of a fat eight-field struct variant (`Tree` in `codec.rs`'s tests, the
/// hungriest type measured, about 3.8 KB of stack a level) took about 1 MB in a debug build
/// (0.8 MB without the wrappers) and 0.3 MB in a release build; a one-byte-a-level enum,
/// 0.23 MB in debug. Encoding takes less. Those tests walk it on a 2 MiB thread.
pub(crate) const MAX_DEPTH: usize = 256;

/// The error text when a value is nested deeper than [`MAX_DEPTH`].
pub(crate) struct TooDeep;

impl Display for TooDeep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the value is nested deeper than {MAX_DEPTH} levels")
    }
}

/// How many compound values enclose the one being walked, and the flag to raise on passing
/// the limit.
#[derive(Clone, Copy)]
struct Depth<'a> {
    level: usize,
    exceeded: &'a Cell<bool>,
}

impl<'a> Depth<'a> {
    /// The depth inside one more compound value, or an error if that is too deep.
    #[inline]
    fn enter(self) -> Result<Self, TooDeep> {
        if self.level >= MAX_DEPTH {
            self.exceeded.set(true);
            return Err(TooDeep);
        }
        Ok(Depth {
            level: self.level + 1,
            exceeded: self.exceeded,
        })
    }

    #[inline]
    fn enter_ser<E: ser::Error>(self) -> Result<Self, E> {
        self.enter().map_err(E::custom)
    }

    #[inline]
    fn enter_de<E: de::Error>(self) -> Result<Self, E> {
        self.enter().map_err(E::custom)
    }
}

// ----------------------------------------------------------------------------------------------
// Serializing

/// A `Serializer` that is `S`, except that it fails on values nested deeper than [`MAX_DEPTH`].
pub(crate) struct Ser<'a, S> {
    inner: S,
    depth: Depth<'a>,
}

impl<'a, S> Ser<'a, S> {
    /// `exceeded` is set if serializing fails for being too deep.
    pub(crate) fn new(inner: S, exceeded: &'a Cell<bool>) -> Self {
        Ser {
            inner,
            depth: Depth { level: 0, exceeded },
        }
    }
}

/// A value to be serialized by a [`Ser`] at `depth`: what a wrapped compound hands its inner
/// one, so that the elements are counted too.
struct Counted<'a, 'v, T: ?Sized> {
    value: &'v T,
    depth: Depth<'a>,
}

impl<T: ?Sized + ser::Serialize> ser::Serialize for Counted<'_, '_, T> {
    #[inline]
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Ser {
            inner: serializer,
            depth: self.depth,
        })
    }
}

/// Methods that carry no nested value: passed straight through.
macro_rules! forward_leaves {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $method(self, $($arg: $ty),*) -> Result<S::Ok, S::Error> {
            self.inner.$method($($arg),*)
        }
    )*};
}

/// Methods that carry one nested value: one level deeper for it.
macro_rules! forward_newtypes {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $method<T: ?Sized + ser::Serialize>(
            self,
            $($arg: $ty,)*
            value: &T,
        ) -> Result<S::Ok, S::Error> {
            let depth = self.depth.enter_ser()?;
            self.inner.$method($($arg,)* &Counted { value, depth })
        }
    )*};
}

/// Methods that start a compound value: one level deeper for its elements.
macro_rules! forward_compounds {
    ($($method:ident($($arg:ident: $ty:ty),*) -> $assoc:ident;)*) => {$(
        #[inline]
        fn $method(self, $($arg: $ty),*) -> Result<Self::$assoc, S::Error> {
            let depth = self.depth.enter_ser()?;
            Ok(Compound {
                inner: self.inner.$method($($arg),*)?,
                depth,
            })
        }
    )*};
}

impl<'a, S: ser::Serializer> ser::Serializer for Ser<'a, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<'a, S::SerializeSeq>;
    type SerializeTuple = Compound<'a, S::SerializeTuple>;
    type SerializeTupleStruct = Compound<'a, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<'a, S::SerializeTupleVariant>;
    type SerializeMap = Compound<'a, S::SerializeMap>;
    type SerializeStruct = Compound<'a, S::SerializeStruct>;
    type SerializeStructVariant = Compound<'a, S::SerializeStructVariant>;

    forward_leaves! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_f32(v: f32);
        serialize_f64(v: f64);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    forward_newtypes! {
        serialize_some();
        serialize_newtype_struct(name: &'static str);
        serialize_newtype_variant(name: &'static str, index: u32, variant: &'static str);
    }

    forward_compounds! {
        serialize_seq(len: Option<usize>) -> SerializeSeq;
        serialize_tuple(len: usize) -> SerializeTuple;
        serialize_tuple_struct(name: &'static str, len: usize) -> SerializeTupleStruct;
        serialize_tuple_variant(
            name: &'static str,
            index: u32,
            variant: &'static str,
            len: usize
        ) -> SerializeTupleVariant;
        serialize_map(len: Option<usize>) -> SerializeMap;
        serialize_struct(name: &'static str, len: usize) -> SerializeStruct;
        serialize_struct_variant(
            name: &'static str,
            index: u32,
            variant: &'static str,
            len: usize
        ) -> SerializeStructVariant;
    }

    // `collect_seq` and `collect_map` keep their default bodies, which go through
    // `serialize_seq` and `serialize_map` above and so count; the format's own would not.
    // A `Display` value does not nest: the format may write it its own way.
    #[inline]
    fn collect_str<T: ?Sized + Display>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.inner.collect_str(value)
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A compound value's serializer `C` whose elements are serialized one level deeper.
pub(crate) struct Compound<'a, C> {
    inner: C,
    depth: Depth<'a>,
}

/// The compounds whose elements come one by one.
macro_rules! compound_of_elements {
    ($($trait:ident::$method:ident;)*) => {$(
        impl<C: ser::$trait> ser::$trait for Compound<'_, C> {
            type Ok = C::Ok;
            type Error = C::Error;

            #[inline]
            fn $method<T: ?Sized + ser::Serialize>(&mut self, value: &T) -> Result<(), C::Error> {
                self.inner.$method(&Counted { value, depth: self.depth })
            }

            #[inline]
            fn end(self) -> Result<C::Ok, C::Error> {
                self.inner.end()
            }
        }
    )*};
}

compound_of_elements! {
    SerializeSeq::serialize_element;
    SerializeTuple::serialize_element;
    SerializeTupleStruct::serialize_field;
    SerializeTupleVariant::serialize_field;
}

/// The compounds with named fields.
macro_rules! compound_of_fields {
    ($($trait:ident;)*) => {$(
        impl<C: ser::$trait> ser::$trait for Compound<'_, C> {
            type Ok = C::Ok;
            type Error = C::Error;

            #[inline]
            fn serialize_field<T: ?Sized + ser::Serialize>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), C::Error> {
                self.inner.serialize_field(key, &Counted { value, depth: self.depth })
            }

            #[inline]
            fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
                self.inner.skip_field(key)
            }

            #[inline]
            fn end(self) -> Result<C::Ok, C::Error> {
                self.inner.end()
            }
        }
    )*};
}

compound_of_fields! {
    SerializeStruct;
    SerializeStructVariant;
}

impl<C: ser::SerializeMap> ser::SerializeMap for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;

    #[inline]
    fn serialize_key<T: ?Sized + ser::Serialize>(&mut self, key: &T) -> Result<(), C::Error> {
        self.inner.serialize_key(&Counted {
            value: key,
            depth: self.depth,
        })
    }

    #[inline]
    fn serialize_value<T: ?Sized + ser::Serialize>(&mut self, value: &T) -> Result<(), C::Error> {
        self.inner.serialize_value(&Counted {
            value,
            depth: self.depth,
        })
    }

    // Forwarded rather than left to the default, in case the format writes an entry its own
    // way.
    #[inline]
    fn serialize_entry<K, V>(&mut self, key: &K, value: &V) -> Result<(), C::Error>
    where
        K: ?Sized + ser::Serialize,
        V: ?Sized + ser::Serialize,
    {
        let depth = self.depth;
        self.inner
            .serialize_entry(&Counted { value: key, depth }, &Counted { value, depth })
    }

    #[inline]
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

// ----------------------------------------------------------------------------------------------
// Deserializing

/// A `Deserializer` that is `D`, except that it fails on input nested deeper than
/// [`MAX_DEPTH`].
pub(crate) struct De<'a, D> {
    inner: D,
    depth: Depth<'a>,
}

impl<'a, D> De<'a, D> {
    /// `exceeded` is set if deserializing fails for being too deep.
    pub(crate) fn new(inner: D, exceeded: &'a Cell<bool>) -> Self {
        De {
            inner,
            depth: Depth { level: 0, exceeded },
        }
    }
}

/// Every `deserialize_*`: the same call with the visitor wrapped, which does the counting.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $method<V: de::Visitor<'de>>(
            self,
            $($arg: $ty,)*
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.inner.$method($($arg,)* Visit { inner: visitor, depth: self.depth })
        }
    )*};
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for De<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A visitor that is `V`, except that what the format hands it to walk a nested value with
/// is wrapped, one level deeper.
struct Visit<'a, V> {
    inner: V,
    depth: Depth<'a>,
}

/// Visits of a value that does not nest: passed straight through.
macro_rules! forward_visits {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $method<E: de::Error>(self, $($arg: $ty),*) -> Result<V::Value, E> {
            self.inner.$method($($arg),*)
        }
    )*};
}

impl<'de, V: de::Visitor<'de>> de::Visitor<'de> for Visit<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visits! {
        visit_bool(v: bool);
        visit_i8(v: i8);
        visit_i16(v: i16);
        visit_i32(v: i32);
        visit_i64(v: i64);
        visit_i128(v: i128);
        visit_u8(v: u8);
        visit_u16(v: u16);
        visit_u32(v: u32);
        visit_u64(v: u64);
        visit_u128(v: u128);
        visit_f32(v: f32);
        visit_f64(v: f64);
        visit_char(v: char);
        visit_str(v: &str);
        visit_borrowed_str(v: &'de str);
        visit_string(v: String);
        visit_bytes(v: &[u8]);
        visit_borrowed_bytes(v: &'de [u8]);
        visit_byte_buf(v: Vec<u8>);
        visit_none();
        visit_unit();
    }

    #[inline]
    fn visit_some<D: de::Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        let depth = self.depth.enter_de()?;
        self.inner.visit_some(De { inner, depth })
    }

    #[inline]
    fn visit_newtype_struct<D: de::Deserializer<'de>>(
        self,
        inner: D,
    ) -> Result<V::Value, D::Error> {
        let depth = self.depth.enter_de()?;
        self.inner.visit_newtype_struct(De { inner, depth })
    }

    #[inline]
    fn visit_seq<A: de::SeqAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        let depth = self.depth.enter_de()?;
        self.inner.visit_seq(Access { inner, depth })
    }

    #[inline]
    fn visit_map<A: de::MapAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        let depth = self.depth.enter_de()?;
        self.inner.visit_map(Access { inner, depth })
    }

    // Not a level yet: a unit variant does not nest (the serializing side does not count it
    // either). `Access` as `VariantAccess` counts the variants that carry data.
    #[inline]
    fn visit_enum<A: de::EnumAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Access {
            inner,
            depth: self.depth,
        })
    }
}

/// What a format hands a visitor to walk a nested value with (`A`: a `SeqAccess`,
/// `MapAccess`, `EnumAccess` or `VariantAccess`), with the elements deserialized at `depth`.
struct Access<'a, A> {
    inner: A,
    depth: Depth<'a>,
}

/// `T`, a serde `DeserializeSeed`, deserializing at `depth`.
struct Nested<'a, T> {
    inner: T,
    depth: Depth<'a>,
}

impl<'de, T: de::DeserializeSeed<'de>> de::DeserializeSeed<'de> for Nested<'_, T> {
    type Value = T::Value;

    #[inline]
    fn deserialize<D: de::Deserializer<'de>>(self, inner: D) -> Result<T::Value, D::Error> {
        self.inner.deserialize(De {
            inner,
            depth: self.depth,
        })
    }
}

impl<'a, A> Access<'a, A> {
    #[inline]
    fn nested<T>(&self, inner: T) -> Nested<'a, T> {
        Nested {
            inner,
            depth: self.depth,
        }
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(self.nested(seed))
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(self.nested(seed))
    }

    #[inline]
    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(self.nested(seed))
    }

    #[inline]
    fn next_entry_seed<K, V>(
        &mut self,
        key: K,
        value: V,
    ) -> Result<Option<(K::Value, V::Value)>, A::Error>
    where
        K: de::DeserializeSeed<'de>,
        V: de::DeserializeSeed<'de>,
    {
        self.inner
            .next_entry_seed(self.nested(key), self.nested(value))
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'a, 'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<'a, A> {
    type Error = A::Error;
    type Variant = Access<'a, A::Variant>;

    #[inline]
    fn variant_seed<V: de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let seed = self.nested(seed);
        let (value, inner) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            Access {
                inner,
                depth: self.depth,
            },
        ))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    // The format deserializes the content straight from the `DeserializeSeed`, without a visit to count
    // in: count it here.
    #[inline]
    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, A::Error> {
        let depth = self.depth.enter_de()?;
        self.inner
            .newtype_variant_seed(Nested { inner: seed, depth })
    }

    // The format hands the fields to the visitor's `visit_seq` or `visit_map`, which counts
    // the level; counting here too would make a tuple variant two levels deep.
    #[inline]
    fn tuple_variant<V: de::Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(
            len,
            Visit {
                inner: visitor,
                depth: self.depth,
            },
        )
    }

    #[inline]
    fn struct_variant<V: de::Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(
            fields,
            Visit {
                inner: visitor,
                depth: self.depth,
            },
        )
    }
}
