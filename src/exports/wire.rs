//! How a task carries its argument to an export and its result back: its *wire*, a
//! zero-sized type chosen at compile time.
//!
//! - [`Serde`]: the values are serde types. The threads runtime moves them; the child-process
//!   runtime encodes them with the pool's [`Serialization`]. Every task submitted by name
//!   ([`Pool::run`](crate::Pool::run)) and every handle made with
//!   [`Export::new`](crate::Export::new) has this wire.
//! - [`Local`]: the values only move, so they need no serde (an `Arc`, a channel's `Sender`, a
//!   `File`); only the threads runtime runs such a task. A handle made with
//!   [`Export::local`](crate::Export::local) has this wire.
//!
//! A task cell is generic over its wire (`TaskCell<A, R, W>`), so the choice costs nothing at
//! run time: no field, no branch, and a serde task compiles to the same code as before wires
//! existed. What a wire does is in [`Carry`] (the caller's side: encode the argument, decode
//! the result) and [`Register`] (the function's side: which kind of export it becomes); both
//! are sealed behind the public [`Wire`], which users only ever name in bounds.

use std::any::type_name;
use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Exports;
use crate::codec::{Encoded, Place, Serialization};
use crate::Error;

/// The wire of serde values: moved on threads, encoded for a child process. The default wire
/// of an [`Export`](crate::Export) handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Serde;

/// The wire of values that only move (no serde needed); the threads runtime only. The wire of
/// handles made with [`Export::local`](crate::Export::local).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Local;

/// How a task's argument `A` reaches an export and its result `R` comes back: implemented by
/// [`Serde`] for serde types, and by [`Local`] for any `Send + 'static` types. Sealed: these
/// two are the only wires.
///
/// It appears in the bounds of [`Exports::register`], [`Pool::call`](crate::Pool::call) and
/// [`Pool::call_with`](crate::Pool::call_with), where it says which types a handle may carry.
pub trait Wire<A, R>: Carry<A, R> + Register<A, R> {}

impl<A, R> Wire<A, R> for Serde
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
}

impl<A, R> Wire<A, R> for Local
where
    A: Send + 'static,
    R: Send + 'static,
{
}

/// The caller's side of a wire: what a task cell does with its values when they must cross to
/// a child process.
pub trait Carry<A, R>: Send + Sync + 'static {
    /// Whether the values only move: such a task cannot run on a child-process pool.
    const LOCAL: bool;

    /// The argument, encoded for a child into `out`, unless it is full (see
    /// [`Serialization::encode_into`]).
    fn encode_arg_into(
        codec: Serialization,
        arg: &A,
        out: &mut Place<'_>,
    ) -> Result<Encoded, Error>;

    /// A child's result, decoded.
    fn decode_result(codec: Serialization, bytes: &[u8]) -> Result<R, Error>;
}

impl<A, R> Carry<A, R> for Serde
where
    A: Serialize + 'static,
    R: DeserializeOwned + 'static,
{
    const LOCAL: bool = false;

    #[inline]
    fn encode_arg_into(
        codec: Serialization,
        arg: &A,
        out: &mut Place<'_>,
    ) -> Result<Encoded, Error> {
        codec.encode_into(arg, out)
    }

    #[inline]
    fn decode_result(codec: Serialization, bytes: &[u8]) -> Result<R, Error> {
        codec.decode(bytes)
    }
}

impl<A, R> Carry<A, R> for Local {
    const LOCAL: bool = true;

    // The pool refuses a local task before it reaches a child-process worker
    // (`Pool::call_with`); should one get there anyway, it fails with this rather than panic.
    fn encode_arg_into(_: Serialization, _: &A, _: &mut Place<'_>) -> Result<Encoded, Error> {
        Err(cannot_cross::<A>())
    }

    fn decode_result(_: Serialization, _: &[u8]) -> Result<R, Error> {
        Err(cannot_cross::<R>())
    }
}

/// What a local task that reached a child-process worker fails with.
fn cannot_cross<T>() -> Error {
    Error::InvalidOptions(format!(
        "a local export's `{}` cannot cross to a child process: only the Threads runtime runs \
         local exports",
        type_name::<T>()
    ))
}

/// The function's side of a wire: which kind of export a function of this wire becomes.
pub trait Register<A, R> {
    /// Exports `function` as `name` in `exports`.
    fn insert<F>(exports: &mut Exports, name: &str, function: F)
    where
        F: Fn(A) -> R + Send + Sync + 'static;

    /// Exports the async `function` as `name` in `exports`.
    fn insert_async<F, Fut>(exports: &mut Exports, name: &str, function: F)
    where
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + 'static;
}

impl<A, R> Register<A, R> for Serde
where
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    fn insert<F>(exports: &mut Exports, name: &str, function: F)
    where
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        exports.insert_serde(name, function);
    }

    fn insert_async<F, Fut>(exports: &mut Exports, name: &str, function: F)
    where
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + 'static,
    {
        exports.insert_async_serde(name, function);
    }
}

impl<A, R> Register<A, R> for Local
where
    A: Send + 'static,
    R: Send + 'static,
{
    fn insert<F>(exports: &mut Exports, name: &str, function: F)
    where
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        exports.insert_local(name, function);
    }

    fn insert_async<F, Fut>(exports: &mut Exports, name: &str, function: F)
    where
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + 'static,
    {
        exports.insert_async_local(name, function);
    }
}
