//! The functions a worker exports, looked up by name.

use std::any::{type_name, Any};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::Serialization;
use crate::error::TypeRole;
use crate::panics;
use crate::Error;

mod outcome;

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
pub struct Exports {
    functions: HashMap<Box<str>, Arc<dyn Export>>,
    /// The default export again, so that the common case skips the hash lookup.
    default: Option<Arc<dyn Export>>,
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
        let export: Arc<dyn Export> = Arc::new(Typed {
            function,
            types: PhantomData,
        });
        if name == DEFAULT_NAME {
            self.default = Some(export.clone());
        }
        self.functions.insert(name.into(), export);
        self
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

    pub(crate) fn get(&self, name: &str) -> Option<&dyn Export> {
        if name == DEFAULT_NAME {
            return self.default.as_deref();
        }
        self.functions.get(name).map(|export| &**export)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// Runs the setup export `name` in the worker about to start. Its failure is the message
    /// of the worker's [`Error::WorkerStartFailed`]: it names the setup and says why (not
    /// exported, not taking `()`, panicked, or returned an `Err`).
    pub(crate) fn run_setup(&self, name: &str) -> Result<(), String> {
        let failed = |why: String| format!("setup \"{name}\" failed: {why}");
        let Some(export) = self.get(name) else {
            return Err(failed("no function is exported as that name".to_owned()));
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

/// An exported function with its types erased.
#[cfg_attr(not(unix), allow(dead_code))] // Used by the child-process runtime (Unix).
pub(crate) trait Export: Send + Sync {
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

    /// Calls a teardown function, exported as `name` (it takes `()`), dropping its result.
    fn call_teardown(&self, name: &str) -> Result<(), Error>;

    /// Calls a setup function, exported as `name` (it takes `()`); on failure, says why (it
    /// panicked, or returned a `Result::Err`).
    fn call_setup(&self, name: &str) -> Result<(), String>;

    /// The type of the argument.
    fn arg_type(&self) -> &'static str;
}

struct Typed<F, T, R> {
    function: F,
    types: PhantomData<fn(T) -> R>,
}

impl<F, T, R> Typed<F, T, R>
where
    F: Fn(T) -> R,
{
    /// Calls the function; a panic becomes the task's error, with its message and location.
    fn invoke(&self, arg: T) -> Result<R, Error> {
        catch_unwind(AssertUnwindSafe(|| (self.function)(arg)))
            .map_err(|payload| panics::caught(&*payload, |message| message))
    }
}

impl<F, T, R> Export for Typed<F, T, R>
where
    F: Fn(T) -> R + Send + Sync + 'static,
    T: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
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
        *out = Some(self.invoke(arg.take().ok_or(Error::Terminated)?)?);
        Ok(())
    }

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

    fn arg_type(&self) -> &'static str {
        type_name::<T>()
    }
}

/// The task passed a `found` where the export `name` takes a `T`.
fn argument_mismatch<T>(name: &str, found: &str) -> Error {
    let what = TypeRole::Argument {
        function: name.to_owned(),
    };
    Error::type_mismatch(what, type_name::<T>(), found)
}

/// The task expects a `found` where the export `name` returns an `R`.
fn result_mismatch<R>(name: &str, found: &str) -> Error {
    let what = TypeRole::Result {
        function: name.to_owned(),
    };
    Error::type_mismatch(what, type_name::<R>(), found)
}
