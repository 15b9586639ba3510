//! Typed exports: a handle, [`Export<A, R, W>`], that names an export together with its
//! argument type `A`, its result type `R` and its [`Wire`] `W`, so that the compiler checks
//! both ends: [`Exports::register`] takes only a function from `A` to `R`, and
//! [`Pool::call`](crate::Pool::call) only an `A`, for a [`Task<R>`](crate::Task).
//!
//! A handle is a name and types, nothing more: registering it is exporting a function under
//! that name, and a task by name ([`Pool::run_with`](crate::Pool::run_with)) reaches the same
//! function. The compile-time check covers what goes through the same handle; a function
//! exported under the handle's name by other means is still checked at run time
//! ([`Error::TypeMismatch`](crate::Error::TypeMismatch)).

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire::{Local, Serde, Wire};
use super::Exports;

/// A typed handle to an export: its name, the type `A` of its argument, the type `R` of its
/// result, and its wire `W` ([`Serde`] by default, or [`Local`]). A `const` is the place for
/// it, shared by the code that registers the function and the code that calls it:
///
/// ```
/// use tinypool::{Export, Exports, Pool, RunOptions};
///
/// const ADD: Export<(i32, i32), i32> = Export::new("add");
/// const SHOUT: Export<String, String> = Export::new("shout");
///
/// let pool = Pool::builder()
///     .exports(
///         Exports::new()
///             .register(ADD, |(a, b)| a + b) // `(a, b)` is an `(i32, i32)`...
///             .register(SHOUT, |text| text.to_uppercase()), // ...and `text` a `String`.
///     )
///     .build()?;
/// let sum = pool.call(ADD, (4, 6)); // A `Task<i32>`.
/// assert_eq!(sum.wait()?, 10);
/// assert_eq!(pool.call(SHOUT, "hi".to_owned()).wait()?, "HI");
///
/// // The same export by name, with the types checked at run time.
/// let by_name = pool.run_with::<i32, _>((4, 6), RunOptions::new().name(ADD.name()));
/// assert_eq!(by_name.wait()?, 10);
/// assert_eq!(format!("{ADD:?}"), "Export(\"add\": (i32, i32) -> i32, Serde)");
/// # Ok::<(), tinypool::Error>(())
/// ```
///
/// A function of other types does not compile:
///
/// ```compile_fail,E0631
/// use tinypool::{Export, Exports};
///
/// const ADD: Export<(i32, i32), i32> = Export::new("add");
/// let exports = Exports::new().register(ADD, |(a, b): (i64, i64)| a + b);
/// ```
///
/// Nor does a call with an argument of another type:
///
/// ```compile_fail,E0308
/// # use tinypool::{Export, Exports, Pool};
/// # const ADD: Export<(i32, i32), i32> = Export::new("add");
/// # let pool = Pool::builder().exports(Exports::new().register(ADD, |(a, b)| a + b)).build()?;
/// let sum = pool.call(ADD, (4i64, 6i64));
/// # Ok::<(), tinypool::Error>(())
/// ```
///
/// Nor a result taken as another type:
///
/// ```compile_fail,E0308
/// # use tinypool::{Export, Exports, Pool, Task};
/// # const ADD: Export<(i32, i32), i32> = Export::new("add");
/// # let pool = Pool::builder().exports(Exports::new().register(ADD, |(a, b)| a + b)).build()?;
/// let sum: Task<i64> = pool.call(ADD, (4, 6));
/// # Ok::<(), tinypool::Error>(())
/// ```
///
/// A [`Local`] handle ([`Export::local`]) carries values that are not serde types, on the
/// threads runtime.
pub struct Export<A, R, W = Serde> {
    name: &'static str,
    // `fn` pointers: a handle is `Copy`, `Send` and `Sync` whatever the types.
    types: PhantomData<fn(A, W) -> R>,
}

impl<A, R> Export<A, R, Serde>
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    /// A handle to the export `name`, whose argument and result are serde types: it runs in
    /// either runtime. `"default"` names the default export.
    ///
    /// ```
    /// use tinypool::{Export, Exports, Pool};
    ///
    /// const SQUARE: Export<u64, u64> = Export::new("square");
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().register(SQUARE, |n| n * n))
    ///     .build()?;
    /// assert_eq!(pool.call(SQUARE, 9).wait()?, 81);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub const fn new(name: &'static str) -> Self {
        Export {
            name,
            types: PhantomData,
        }
    }
}

impl<A, R> Export<A, R, Local>
where
    A: Send + 'static,
    R: Send + 'static,
{
    /// A handle to the *local* export `name`: its argument and result only move, so they need
    /// not be serde types (an `Arc`, a channel's `Sender`, a `File`), and only the threads
    /// runtime runs it (see [`Exports::export_local`]). Registered with
    /// [`Exports::register`], it is a local export.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use tinypool::{Export, Exports, Local, Pool};
    ///
    /// // A shared tally: an `Arc<Mutex<_>>` goes in, and comes back out.
    /// const TALLY: Export<Arc<Mutex<u32>>, Arc<Mutex<u32>>, Local> = Export::local("tally");
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().register(TALLY, |tally| {
    ///         *tally.lock().unwrap() += 1;
    ///         tally
    ///     }))
    ///     .build()?;
    /// let tally = Arc::new(Mutex::new(0));
    /// let back = pool.call(TALLY, tally.clone()).wait()?;
    /// assert!(Arc::ptr_eq(&back, &tally)); // The same `Arc`: it moved, nothing was copied.
    /// assert_eq!(*tally.lock().unwrap(), 1);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub const fn local(name: &'static str) -> Self {
        Export {
            name,
            types: PhantomData,
        }
    }
}

impl<A, R, W> Export<A, R, W> {
    /// The export's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Why a pool of child processes refuses this handle's task (a [`Local`] handle's values
    /// cannot cross to a child): what `Pool::call` and `Permit::call` fail it with.
    pub(crate) fn refused_by_processes(&self) -> crate::Error {
        crate::Error::InvalidOptions(format!(
            "call: \"{}\" is a local export (`Export::local`): only a Threads pool runs it, \
             and this pool runs child processes",
            self.name
        ))
    }
}

impl<A, R, W> Clone for Export<A, R, W> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R, W> Copy for Export<A, R, W> {}

impl<A, R, W> fmt::Debug for Export<A, R, W> {
    /// `Export("add": (i32, i32) -> i32, Serde)`, say.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = |name: &'static str| name.rsplit("::").next().unwrap_or(name);
        write!(
            f,
            "Export({:?}: {} -> {}, {})",
            self.name,
            std::any::type_name::<A>(),
            std::any::type_name::<R>(),
            short(std::any::type_name::<W>()),
        )
    }
}

impl Exports {
    /// Exports `function` under the handle's name, replacing any function of that name. Its
    /// argument and result types are the handle's: the closure's are inferred from it, and a
    /// function of other types does not compile (see [`Export`]). A [`Local`] handle makes it
    /// a local export, as [`export_local`](Exports::export_local) does.
    ///
    /// ```
    /// use tinypool::{Export, Exports, Pool};
    ///
    /// const WORDS: Export<String, usize> = Export::new("words");
    /// let exports = Exports::new().register(WORDS, |text| text.split_whitespace().count());
    /// assert!(exports.contains("words"));
    ///
    /// let pool = Pool::builder().exports(exports).build()?;
    /// assert_eq!(pool.call(WORDS, "a tiny pool".to_owned()).wait()?, 3);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn register<A, R, W, F>(mut self, export: Export<A, R, W>, function: F) -> Self
    where
        W: Wire<A, R>,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        W::insert(&mut self, export.name, function);
        self
    }

    /// Exports the async `function` under the handle's name (see
    /// [`export_async`](Exports::export_async)): its future's output is the handle's result
    /// type, so a call through the handle ([`Pool::call`](crate::Pool::call)) is checked at
    /// compile time as for [`register`](Exports::register). A separate method rather than
    /// `register` taking both kinds: a closure that returns a future is a plain function too
    /// (of a future), and the handle's result type, not the closure, says which is meant.
    ///
    /// ```
    /// use tinypool::{Export, Exports, Pool};
    ///
    /// const DOUBLE: Export<u64, u64> = Export::new("double");
    /// let exports = Exports::new().register_async(DOUBLE, |n| async move { n * 2 });
    /// let pool = Pool::builder().exports(exports).build()?;
    /// assert_eq!(pool.call(DOUBLE, 21).wait()?, 42);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn register_async<A, R, W, F, Fut>(mut self, export: Export<A, R, W>, function: F) -> Self
    where
        W: Wire<A, R>,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = R> + 'static,
    {
        W::insert_async(&mut self, export.name, function);
        self
    }
}
