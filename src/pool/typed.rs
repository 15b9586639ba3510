//! Calling an export through its typed handle ([`Export`]): the compiler checks the argument
//! and the result, and a [`Local`](crate::Local) handle's values only move.

use std::borrow::Cow;

use super::Pool;
use crate::exports::typed::Export;
use crate::exports::wire::Wire;
use crate::options::RunOptions;
use crate::task::Task;

impl Pool {
    /// Runs the export `export` names with `arg`: [`run`](Pool::run) with the types checked
    /// by the compiler, since the handle carries them. A wrong argument type, or a result
    /// taken as another type, does not compile (see [`Export`]).
    ///
    /// Like `run`, it never blocks nor panics: an export that does not exist is the task's
    /// [`Error::NoSuchFunction`](crate::Error::NoSuchFunction). A [`Local`](crate::Local) handle runs only on a threads
    /// pool; on a child-process pool its task fails at once with
    /// [`Error::InvalidOptions`](crate::Error::InvalidOptions).
    ///
    /// ```
    /// use tinypool::{Export, Exports, Pool, Task};
    ///
    /// const ADD: Export<(i32, i32), i32> = Export::new("add");
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().register(ADD, |(a, b)| a + b))
    ///     .build()?;
    /// let tasks: Vec<Task<i32>> = (0..4).map(|n| pool.call(ADD, (n, n))).collect();
    /// let sums = tasks.into_iter().map(Task::wait).collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(sums, [0, 2, 4, 6]);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn call<A, R, W>(&self, export: Export<A, R, W>, arg: A) -> Task<R>
    where
        W: Wire<A, R>,
        A: Send + 'static,
        R: Send + 'static,
    {
        self.call_with(export, arg, RunOptions::new())
    }

    /// [`call`](Pool::call) with options: an abort signal, a channel, a priority. The handle
    /// names the export: a name in `options` is ignored.
    ///
    /// ```
    /// use tinypool::{AbortController, Error, Export, Exports, Pool, RunOptions};
    ///
    /// const DOUBLE: Export<u32, u32> = Export::new("double");
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().register(DOUBLE, |n| n * 2))
    ///     .build()?;
    /// let controller = AbortController::new();
    /// controller.abort(); // The user gave up before it started, say.
    /// let options = RunOptions::new().signal(controller.signal()).name("ignored");
    /// assert!(matches!(
    ///     pool.call_with(DOUBLE, 21, options).wait(),
    ///     Err(Error::Aborted { .. })
    /// ));
    /// let options = RunOptions::new().name("ignored");
    /// assert_eq!(pool.call_with(DOUBLE, 21, options).wait()?, 42); // The handle's export.
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn call_with<A, R, W>(
        &self,
        export: Export<A, R, W>,
        arg: A,
        options: RunOptions,
    ) -> Task<R>
    where
        W: Wire<A, R>,
        A: Send + 'static,
        R: Send + 'static,
    {
        if W::LOCAL && !self.handle.runs_local {
            return self.scheduler().refuse(export.refused_by_processes());
        }
        let mut options = options;
        options.name = Some(Cow::Borrowed(export.name()));
        self.scheduler().submit_on::<W, A, R>(arg, options)
    }
}
