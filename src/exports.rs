//! The functions a worker exports, looked up by name.
//!
//! [`Exports`] maps names to functions with their types erased ([`Function`]). Most are
//! *serde* functions ([`SerdeFunction`]): a child process can also call them with encoded
//! values. A *local* one ([`Exports::export_local`], or a handle made with
//! [`Export::local`](crate::Export::local)) takes and returns values that only move, so only
//! the threads runtime runs it: a child never sees it, and a child-process pool refuses
//! exports that hold one. A typed handle, [`Export`](crate::Export), names an export with its
//! types, so that registering and calling it are checked by the compiler (`typed.rs`); how a
//! task carries its values to the function, serialized or moved, is its
//! [`Wire`](crate::Wire) (`wire.rs`).

use std::any::{type_name, Any};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::Serialization;
use crate::error::TypeRole;
use crate::panics;
use crate::Error;
use asynchronous::AsyncCallable;
pub(crate) use asynchronous::LocalFuture;

mod asynchronous;
mod outcome;
pub(crate) mod typed;
pub(crate) mod wire;

/// The name of the default export (Tinypool's, for a module's default export).
pub(crate) const DEFAULT_NAME: &str = "default";

/// The functions a pool's workers run: the Rust counterpart of the module a Tinypool
/// `filename` points to.
///
/// Each function takes one argument and returns one value. The bounds are serde's so that the
/// same exports serve a child-process worker, where arguments and results cross a process
/// boundary; in the threads runtime nothing is serialized, the values move. Domain errors are
/// values: export a function returning `Result<V, E>`. A panic becomes the task's
/// [`Error::Panicked`], with its message and location, and the worker stays usable.
///
/// Functions whose values are not serde types (an `Arc`, a channel's `Sender`, a `File`) are
/// exported with [`export_local`](Exports::export_local), for the threads runtime only. To
/// have the compiler check the types where a function is registered and where it is called,
/// name it with a typed handle, [`Export`](crate::Export), and [`register`](Exports::register) it.
///
/// ```
/// use tinypool::Exports;
///
/// let exports = Exports::new()
///     .export_default(|(a, b): (i32, i32)| a + b)
///     .export("multiply", |(a, b): (i32, i32)| a * b);
/// assert!(exports.contains("default") && exports.contains("multiply"));
/// assert!(!Exports::default().contains("default")); // `Default`: no functions.
/// ```
#[derive(Clone)]
#[must_use = "`Exports` is a builder: each method returns the functions with the new one added"]
pub struct Exports {
    functions: HashMap<Box<str>, Entry>,
    /// The default export again, so that the common case skips the hash lookup.
    default: Option<Entry>,
}

/// One exported function: the same allocation twice, once as a [`Function`] (what the threads
/// runtime calls), once as a [`SerdeFunction`] (what a child calls), unless it is local.
#[derive(Clone)]
struct Entry {
    function: Arc<dyn Function>,
    /// `None` for a local function: its values cannot be encoded.
    serde: Option<Arc<dyn SerdeFunction>>,
}

impl Default for Exports {
    /// No functions yet, as [`Exports::new`].
    fn default() -> Self {
        Exports::new()
    }
}

impl Exports {
    /// No functions yet.
    pub fn new() -> Self {
        Exports {
            functions: HashMap::new(),
            default: None,
        }
    }

    /// Sets the function that runs when a task names none (its name is `"default"`: what
    /// Tinypool calls a module's default export).
    pub fn export_default<T, R, F>(self, function: F) -> Self
    where
        F: Fn(T) -> R + Send + Sync + 'static,
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        self.export(DEFAULT_NAME, function)
    }

    /// Exports `function` as `name`, replacing any function of that name.
    pub fn export<T, R, F>(mut self, name: &str, function: F) -> Self
    where
        F: Fn(T) -> R + Send + Sync + 'static,
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        self.insert_serde(name, function);
        self
    }

    /// Exports `function` as `name` for the threads runtime only, replacing any function of
    /// that name: its argument and result need not be serde types (an `Arc`, a channel's
    /// `Sender`, a `File`), as they only ever move.
    ///
    /// A child process cannot run it: [`Builder::build`](crate::Builder::build) refuses a
    /// [`Runtime::ChildProcess`](crate::Runtime::ChildProcess) pool given exports with local
    /// functions ([`Error::InvalidOptions`] naming them), and a child serving such exports
    /// with [`serve_if_worker`](crate::worker::serve_if_worker) serves only the others. Call
    /// it with a local handle, [`Export::local`](crate::Export::local), and
    /// [`Pool::call`](crate::Pool::call); or register it with that handle in the first place
    /// (see [`register`](Exports::register)).
    ///
    /// ```
    /// use std::sync::mpsc::{self, Sender};
    /// use tinypool::{Export, Exports, Local, Pool};
    ///
    /// // A function that reports on a channel: a `Sender` is no serde type.
    /// let exports = Exports::new().export_local("report", |done: Sender<u32>| done.send(7));
    /// let pool = Pool::builder().exports(exports).build()?;
    ///
    /// type Sent = Result<(), mpsc::SendError<u32>>;
    /// const REPORT: Export<Sender<u32>, Sent, Local> = Export::local("report");
    /// let (done, reports) = mpsc::channel();
    /// assert!(pool.call(REPORT, done).wait()?.is_ok());
    /// assert_eq!(reports.recv(), Ok(7));
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn export_local<T, R, F>(mut self, name: &str, function: F) -> Self
    where
        F: Fn(T) -> R + Send + Sync + 'static,
        T: Send + 'static,
        R: Send + 'static,
    {
        self.insert_local(name, function);
        self
    }

    /// Exports `function` as `name`, callable by a child process too.
    pub(crate) fn insert_serde<T, R, F>(&mut self, name: &str, function: F)
    where
        F: Fn(T) -> R + Send + Sync + 'static,
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        let callable = Arc::new(Callable::new(function));
        let entry = Entry {
            function: callable.clone(),
            serde: Some(callable),
        };
        self.insert(name, entry);
    }

    /// Exports `function` as `name`, for the threads runtime only.
    pub(crate) fn insert_local<T, R, F>(&mut self, name: &str, function: F)
    where
        F: Fn(T) -> R + Send + Sync + 'static,
        T: Send + 'static,
        R: Send + 'static,
    {
        let entry = Entry {
            function: Arc::new(Callable::new(function)),
            serde: None,
        };
        self.insert(name, entry);
    }

    /// Exports the async `function` as `name`, callable by a child process too.
    pub(crate) fn insert_async_serde<T, F, Fut>(&mut self, name: &str, function: F)
    where
        F: Fn(T) -> Fut + Send + Sync + 'static,
        T: DeserializeOwned + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Serialize + Send + 'static,
    {
        let callable = Arc::new(AsyncCallable::new(function));
        let entry = Entry {
            function: callable.clone(),
            serde: Some(callable),
        };
        self.insert(name, entry);
    }

    /// Exports the async `function` as `name`, for the threads runtime only.
    pub(crate) fn insert_async_local<T, F, Fut>(&mut self, name: &str, function: F)
    where
        F: Fn(T) -> Fut + Send + Sync + 'static,
        T: Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        let entry = Entry {
            function: Arc::new(AsyncCallable::new(function)),
            serde: None,
        };
        self.insert(name, entry);
    }

    /// Whether any function is async: only then does a worker thread hold more than one
    /// task at a time.
    pub(crate) fn has_async(&self) -> bool {
        self.functions
            .values()
            .any(|entry| entry.function.is_async())
    }

    /// The names of the async functions that a child can call, sorted: a child tells its
    /// pool, which then sends their tasks together and aborts them without killing it.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    pub(crate) fn async_names(&self) -> Vec<String> {
        // The default export is among them too, under `DEFAULT_NAME`.
        let mut names: Vec<String> = (self.functions.iter())
            .filter(|(_, entry)| entry.function.is_async() && entry.serde.is_some())
            .map(|(name, _)| name.to_string())
            .collect();
        names.sort_unstable();
        names
    }

    /// The names of all the async functions, local ones too (what a worker thread runs): the
    /// scheduler lets an abortable task of one of them share its worker.
    pub(crate) fn async_names_on_threads(&self) -> std::collections::HashSet<Box<str>> {
        self.functions
            .iter()
            .filter(|(_, entry)| entry.function.is_async())
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn insert(&mut self, name: &str, entry: Entry) {
        if name == DEFAULT_NAME {
            self.default = Some(entry.clone());
        }
        self.functions.insert(name.into(), entry);
    }

    /// Adds every function of `other` (its default export too, if it has one), replacing
    /// functions of the same name: so that one
    /// [`serve_if_worker`](crate::worker::serve_if_worker) serves the exports of several
    /// libraries.
    ///
    /// ```
    /// use tinypool::Exports;
    ///
    /// fn images() -> Exports {
    ///     Exports::new().export("thumbnail", |bytes: Vec<u8>| bytes.len() / 4)
    /// }
    /// fn text() -> Exports {
    ///     Exports::new().export("words", |text: String| text.split_whitespace().count())
    /// }
    ///
    /// let exports = images().merge(text());
    /// assert!(exports.contains("thumbnail") && exports.contains("words"));
    /// ```
    pub fn merge(mut self, other: Exports) -> Self {
        if other.default.is_some() {
            self.default = other.default;
        }
        self.functions.extend(other.functions);
        self
    }

    /// Whether a function is exported as `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    /// The function exported as `name`, local or not: what the threads runtime calls.
    pub(crate) fn get(&self, name: &str) -> Option<&dyn Function> {
        self.entry(name).map(|entry| &*entry.function)
    }

    /// The function exported as `name` unless it is local: what a child calls (to a child,
    /// a local function does not exist).
    #[cfg_attr(not(unix), allow(dead_code))] // Used by the child-process runtime (Unix).
    pub(crate) fn get_serde(&self, name: &str) -> Option<&dyn SerdeFunction> {
        self.entry(name)?.serde.as_deref()
    }

    #[inline]
    fn entry(&self, name: &str) -> Option<&Entry> {
        if name == DEFAULT_NAME {
            return self.default.as_ref();
        }
        self.functions.get(name)
    }

    /// The names of the local functions, sorted.
    pub(crate) fn local_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = (self.functions.iter())
            .filter(|(_, entry)| entry.serde.is_none())
            .map(|(name, _)| &**name)
            .collect();
        names.sort_unstable();
        names
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// Runs the setup export `name` in the worker about to start. Its failure is the message
    /// of the worker's [`Error::WorkerStartFailed`]: it names the setup and says why (not
    /// exported, local, not taking `()`, panicked, or returned an `Err`).
    pub(crate) fn run_setup(&self, name: &str) -> Result<(), String> {
        let failed = |why: String| format!("setup \"{name}\" failed: {why}");
        let Some(entry) = self.entry(name) else {
            return Err(failed("no function is exported as that name".to_owned()));
        };
        let Some(export) = entry.serde.as_deref() else {
            return Err(failed(
                "it is a local export (a setup must be a serde one)".to_owned(),
            ));
        };
        if export.arg_type() != type_name::<()>() {
            return Err(failed(format!(
                "it must take `()`, not `{}`",
                export.arg_type()
            )));
        }
        export.call_setup(name).map_err(failed)
    }
}

impl fmt::Debug for Exports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.functions.keys().map(|name| &**name).collect();
        names.sort_unstable();
        f.debug_struct("Exports")
            .field("functions", &names)
            .finish()
    }
}

/// An exported function with its types erased, called with values that move.
pub(crate) trait Function: Send + Sync {
    /// Calls the function, exported as `name`, with the argument in `arg` (an `Option<A>`)
    /// and puts its result in `out` (an `Option<R>`). The types must be exactly the
    /// function's, else [`Error::TypeMismatch`] naming the export, and the function is not
    /// called.
    fn call(
        &self,
        name: &str,
        arg: &mut dyn Any,
        arg_type: &str,
        out: &mut dyn Any,
        out_type: &str,
    ) -> Result<(), Error>;

    /// Calls a teardown function, exported as `name` (it takes `()`), dropping its result.
    fn call_teardown(&self, name: &str) -> Result<(), Error>;

    /// The type of the argument.
    fn arg_type(&self) -> &'static str;

    /// Whether it is an async export, started with [`call_async`](Function::call_async).
    fn is_async(&self) -> bool {
        false
    }

    /// Starts an async export: takes the argument from `arg` (an `Option<A>`) and puts the
    /// function's future in `out` (an `Option<LocalFuture<Result<R, Error>>>`), the types
    /// checked as in [`call`](Function::call). Only an async export implements it.
    fn call_async(
        &self,
        name: &str,
        arg: &mut dyn Any,
        arg_type: &str,
        out: &mut dyn Any,
        out_type: &str,
    ) -> Result<(), Error> {
        let _ = (arg, arg_type, out, out_type);
        Err(Error::InvalidOptions(format!(
            "\"{name}\" is not an async export"
        )))
    }
}

/// An exported function whose argument and result are serde types: a child process can call
/// it too.
#[cfg_attr(not(unix), allow(dead_code))] // Used by the child-process runtime (Unix).
pub(crate) trait SerdeFunction: Function {
    /// Calls the function in a child process: the argument arrives encoded with `codec`, the
    /// result leaves encoded. The type names are the caller's; they must be the function's.
    fn call_encoded(
        &self,
        name: &str,
        codec: Serialization,
        arg: &[u8],
        arg_type: &str,
        out_type: &str,
    ) -> Result<Vec<u8>, Error>;

    /// Calls a setup function, exported as `name` (it takes `()`); on failure, says why (it
    /// panicked, or returned a `Result::Err`, which only a serde value shows).
    fn call_setup(&self, name: &str) -> Result<(), String>;

    /// Starts the function in a child process: a future of its encoded result, which the
    /// child polls among its other tasks (see [`Function::call_async`]). A plain function
    /// runs to its end here, and its future is ready at once.
    fn call_encoded_async(
        &self,
        name: &str,
        codec: Serialization,
        arg: &[u8],
        arg_type: &str,
        out_type: &str,
    ) -> Result<LocalFuture<Result<Vec<u8>, Error>>, Error> {
        let result = self.call_encoded(name, codec, arg, arg_type, out_type);
        Ok(Box::pin(std::future::ready(result)))
    }
}

/// A user's function with its types, behind [`Function`] (and [`SerdeFunction`]).
struct Callable<F, T, R> {
    function: F,
    types: PhantomData<fn(T) -> R>,
}

impl<F, T, R> Callable<F, T, R>
where
    F: Fn(T) -> R,
{
    fn new(function: F) -> Self {
        Callable {
            function,
            types: PhantomData,
        }
    }

    /// Calls the function; a panic becomes the task's error, with its message and location.
    fn invoke(&self, arg: T) -> Result<R, Error> {
        catch_unwind(AssertUnwindSafe(|| (self.function)(arg)))
            .map_err(|payload| panics::caught(&*payload, |message| message))
    }
}

impl<F, T, R> Function for Callable<F, T, R>
where
    F: Fn(T) -> R + Send + Sync + 'static,
    T: Send + 'static,
    R: Send + 'static,
{
    fn call(
        &self,
        name: &str,
        arg: &mut dyn Any,
        arg_type: &str,
        out: &mut dyn Any,
        out_type: &str,
    ) -> Result<(), Error> {
        let Some(arg) = arg.downcast_mut::<Option<T>>() else {
            return Err(argument_mismatch::<T>(name, arg_type));
        };
        let Some(out) = out.downcast_mut::<Option<R>>() else {
            return Err(result_mismatch::<R>(name, out_type));
        };
        // Not `ok_or`: an `Error` made and dropped on every task's path.
        let Some(arg) = arg.take() else {
            return Err(Error::Terminated);
        };
        *out = Some(self.invoke(arg)?);
        Ok(())
    }

    fn call_teardown(&self, name: &str) -> Result<(), Error> {
        let mut arg = Some(());
        let mut out: Option<R> = None;
        self.call(
            name,
            &mut arg,
            type_name::<()>(),
            &mut out,
            type_name::<R>(),
        )
    }

    fn arg_type(&self) -> &'static str {
        type_name::<T>()
    }
}

impl<F, T, R> SerdeFunction for Callable<F, T, R>
where
    F: Fn(T) -> R + Send + Sync + 'static,
    T: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    fn call_encoded(
        &self,
        name: &str,
        codec: Serialization,
        arg: &[u8],
        arg_type: &str,
        out_type: &str,
    ) -> Result<Vec<u8>, Error> {
        if arg_type != type_name::<T>() {
            return Err(argument_mismatch::<T>(name, arg_type));
        }
        if out_type != type_name::<R>() {
            return Err(result_mismatch::<R>(name, out_type));
        }
        codec.encode(&self.invoke(codec.decode(arg)?)?)
    }

    fn call_setup(&self, name: &str) -> Result<(), String> {
        let mut arg = Some(());
        let mut out: Option<R> = None;
        let called = self.call(
            name,
            &mut arg,
            type_name::<()>(),
            &mut out,
            type_name::<R>(),
        );
        match called {
            Err(Error::Panicked { message, location }) => Err(match location {
                Some(location) => format!("it panicked at {location}: {message}"),
                None => format!("it panicked: {message}"),
            }),
            Err(other) => Err(other.to_string()),
            Ok(()) => match out.as_ref().and_then(outcome::error_of) {
                Some(error) => Err(format!("it returned an error: {error}")),
                None => Ok(()),
            },
        }
    }
}

/// The task passed a `found` where the export `name` takes a `T`.
pub(crate) fn argument_mismatch<T>(name: &str, found: &str) -> Error {
    let what = TypeRole::Argument {
        function: name.to_owned(),
    };
    Error::type_mismatch(what, type_name::<T>(), found)
}

/// The task expects a `found` where the export `name` returns an `R`.
pub(crate) fn result_mismatch<R>(name: &str, found: &str) -> Error {
    let what = TypeRole::Result {
        function: name.to_owned(),
    };
    Error::type_mismatch(what, type_name::<R>(), found)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{self, Sender};

    use super::*;

    fn exports() -> Exports {
        Exports::new()
            .export("double", |n: u32| n * 2)
            .export_local("notify", |done: Sender<u32>| done.send(1).is_ok())
            .export_local("zero", |()| 0u8)
    }

    /// A child serves its exports through `get_serde`: a local function is not there for it,
    /// while the threads runtime (`get`) finds every function.
    #[test]
    fn a_child_sees_only_the_serde_functions() {
        let exports = exports();
        assert!(exports.get_serde("double").is_some());
        for local in ["notify", "zero"] {
            assert!(exports.contains(local));
            assert!(exports.get(local).is_some(), "{local}");
            assert!(exports.get_serde(local).is_none(), "{local}");
        }
        assert_eq!(exports.local_names(), ["notify", "zero"]);
    }

    /// A later export of the same name replaces the earlier one, and its kind with it; merged
    /// exports keep theirs.
    #[test]
    fn replacing_an_export_replaces_its_kind() {
        let exports = exports()
            .export("notify", |n: u32| n)
            .export_local("double", |n: u32| n)
            .merge(Exports::new().export_local("default", |()| ()));
        assert!(exports.get_serde("notify").is_some());
        assert!(exports.get_serde("double").is_none());
        assert!(exports.get("default").is_some() && exports.get_serde("default").is_none());
        assert_eq!(exports.local_names(), ["default", "double", "zero"]);
    }

    /// A local function is called with values that move, as the threads runtime calls it.
    #[test]
    fn a_local_function_is_called_with_moved_values() {
        let exports = exports();
        let (done, notified) = mpsc::channel::<u32>();
        let mut arg = Some(done);
        let mut out: Option<bool> = None;
        let notify = exports.get("notify").expect("exported");
        let called = notify.call(
            "notify",
            &mut arg,
            type_name::<Sender<u32>>(),
            &mut out,
            type_name::<bool>(),
        );
        assert_eq!(called, Ok(()));
        assert_eq!((out, notified.recv()), (Some(true), Ok(1)));
    }
}
