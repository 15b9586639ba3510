//! The options that hook into a worker's life: the exports it runs first and last (`setup`,
//! `teardown`), and the pool's callbacks when a worker starts or exits and for errors that
//! belong to no task (`on_worker_start`, `on_worker_exit`, `on_error`).

use std::sync::Arc;

use super::Builder;
use crate::hooks::{Exit, WorkerInfo};
use crate::Error;

impl Builder {
    /// The name of an export taking `()` that each worker runs before it stops (default:
    /// none). A panic in it is reported to [`on_error`](Builder::on_error). A threads pool
    /// checks at [`build`](Builder::build) that the export exists and takes `()`; a
    /// child-process pool cannot see its children's exports, so each child reports a missing or
    /// mistyped teardown to `on_error` when it stops.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use tinypool::{Exports, Pool};
    ///
    /// let closed = Arc::new(AtomicUsize::new(0));
    /// let close = {
    ///     let closed = closed.clone();
    ///     // Would close this worker's database connection, say.
    ///     move |()| closed.fetch_add(1, Ordering::SeqCst)
    /// };
    /// let pool = Pool::builder()
    /// .exports(Exports::new().export_default(|query: String| query.len()).export("close", close))
    ///     .teardown("close")
    ///     .min_threads(2)
    ///     .max_threads(2)
    ///     .build()?;
    /// assert_eq!(pool.run::<usize, _>("SELECT 1".to_owned()).wait()?, 8);
    /// pool.destroy().wait()?;
    /// assert_eq!(closed.load(Ordering::SeqCst), 2); // Once per worker.
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn teardown(mut self, name: impl Into<String>) -> Self {
        self.teardown = Some(name.into());
        self
    }

    /// The name of an export taking `()` that each worker runs before its first task, inside
    /// the worker (default: none): on the worker's thread, or in the child process, so that
    /// what it prepares there (a thread-local, a connection, a cache) is its tasks'. The
    /// counterpart of [`teardown`](Builder::teardown), which runs only for a worker whose
    /// setup succeeded.
    ///
    /// A setup that panics, returns a `Result::Err`, is not exported or does not take `()`
    /// fails that worker's start: the worker is not started, the tasks it had taken fail with
    /// [`Error::WorkerStartFailed`], whose message names the setup and says why, and with no
    /// task to fail the error goes to [`on_error`](Builder::on_error). Nothing is retried on
    /// its own: each later task that needs a worker tries to start one again, and fails the
    /// same way while the setup does, so a broken setup never spins. A threads pool checks at
    /// [`build`](Builder::build) that the export exists and takes `()`; a child-process pool
    /// cannot see its children's exports, so there a bad name fails the workers' starts.
    ///
    /// In the child-process runtime the pool waits for a child's setup without a deadline,
    /// as it waits for a task (`startup_timeout` ends when the child says hello, before it);
    /// [`destroy`](crate::Pool::destroy) kills a child still in its setup.
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use tinypool::{Error, Exports, Pool};
    ///
    /// thread_local! {
    ///     // Per worker: a connection, say.
    ///     static GREETING: RefCell<Option<String>> = const { RefCell::new(None) };
    /// }
    /// let exports = Exports::new()
    ///     .export("connect", |()| GREETING.with(|g| *g.borrow_mut() = Some("Hello".into())))
    ///     .export_default(|name: String| {
    ///         GREETING.with(|g| format!("{}, {name}!", g.borrow().as_deref().unwrap_or("?")))
    ///     })
    ///     .export("refuse", |()| -> Result<(), String> { Err("no database".into()) });
    /// let pool = Pool::builder().exports(exports.clone()).setup("connect").build()?;
    /// assert_eq!(pool.run::<String, _>("Ada".to_owned()).wait()?, "Hello, Ada!");
    ///
    /// let broken = Pool::builder().exports(exports).setup("refuse").min_threads(0).build()?;
    /// match broken.run::<String, _>("Ada".to_owned()).wait() {
    ///     Err(Error::WorkerStartFailed { message }) => assert_eq!(
    ///         message,
    ///         "setup \"refuse\" failed: it returned an error: no database"
    ///     ),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn setup(mut self, name: impl Into<String>) -> Self {
        self.setup = Some(name.into());
        self
    }

    /// Called in the pool's process each time a worker has started: on the worker's thread,
    /// once its [`setup`](Builder::setup) is done and its pid known (default: none). Its
    /// [`WorkerInfo`] has the worker's id, its child's pid, and the tasks it already took
    /// (which wait for the hook to return: keep it short).
    ///
    /// A worker that fails to start gets no call (its error goes to its tasks or to
    /// [`on_error`](Builder::on_error)), nor a spare before it serves; every worker that gets one
    /// later gets exactly one [`on_worker_exit`](Builder::on_worker_exit). A hook that panics is
    /// caught: the worker goes on, and the panic is reported to `on_error` as [`Error::Panicked`],
    /// its message starting with `on_worker_start: `.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use tinypool::{Exports, Pool};
    ///
    /// let started = Arc::new(Mutex::new(Vec::new()));
    /// let seen = started.clone();
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u32| n + 1))
    ///     .min_threads(2)
    ///     .max_threads(2)
    ///     .on_worker_start(move |worker| seen.lock().unwrap().push(worker.id))
    ///     .build()?;
    /// assert_eq!(pool.run::<u32, _>(1u32).wait()?, 2);
    /// pool.destroy().wait()?;
    /// let mut ids = started.lock().unwrap().clone();
    /// ids.sort_unstable();
    /// assert_eq!(ids, [1, 2]);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn on_worker_start(mut self, hook: impl Fn(&WorkerInfo) + Send + Sync + 'static) -> Self {
        self.hooks.start = Some(Arc::new(hook));
        self
    }

    /// Called in the pool's process each time a worker has left the pool, with why
    /// ([`Exit`]): on the worker's thread, once the worker has stopped (its teardown run, its
    /// child reaped), before its thread ends (default: none). Its [`WorkerInfo`] has the
    /// worker's id and its child's pid; `running` is 0.
    ///
    /// Each worker that got [`on_worker_start`](Builder::on_worker_start) gets exactly one
    /// call, and a worker that failed to start gets neither. When
    /// [`destroy`](crate::Pool::destroy), [`close`](crate::Pool::close) or
    /// [`recycle_workers`](crate::Pool::recycle_workers) resolves, the hooks of the workers it
    /// stopped have returned (but for a thread still stuck in a function at
    /// `terminate_timeout`). A hook that panics is caught and reported to
    /// [`on_error`](Builder::on_error) as [`Error::Panicked`], its message starting with
    /// `on_worker_exit: `.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use tinypool::{Exit, Exports, Pool};
    ///
    /// let exits = Arc::new(Mutex::new(Vec::new()));
    /// let seen = exits.clone();
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u32| n + 1))
    ///     .min_threads(1)
    ///     .max_threads(1)
    ///     .on_worker_exit(move |worker, exit| seen.lock().unwrap().push((worker.id, exit.clone())))
    ///     .build()?;
    /// assert_eq!(pool.run::<u32, _>(1u32).wait()?, 2);
    /// pool.recycle_workers().wait();
    /// pool.destroy().wait()?;
    /// assert_eq!(*exits.lock().unwrap(), [(1, Exit::Recycled), (1, Exit::Destroyed)]);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn on_worker_exit(
        mut self,
        hook: impl Fn(&WorkerInfo, &Exit) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.exit = Some(Arc::new(hook));
        self
    }

    /// Called with errors that belong to no task, such as a teardown that panicked, a setup
    /// that failed with no task waiting for its worker, or a worker hook that panicked
    /// (default: they are dropped).
    ///
    /// The hook runs on a worker's thread: keep it short (log, or send the error elsewhere).
    /// A panic in it is caught (after the panic hook printed it): the worker goes on.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use tinypool::{Error, Exports, Pool};
    ///
    /// fn flush_log(_: ()) {
    ///     panic!("disk full");
    /// }
    ///
    /// let (errors, reported) = mpsc::channel();
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u32| n).export("flush", flush_log))
    ///     .teardown("flush")
    ///     .max_threads(1)
    ///     .on_error(move |error| errors.send(error).expect("the receiver lives"))
    ///     .build()?;
    /// pool.destroy().wait()?;
    /// match reported.try_recv() {
    ///     Ok(Error::Panicked { message, .. }) => assert_eq!(message, "disk full"),
    ///     other => panic!("not reported: {other:?}"),
    /// }
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn on_error(mut self, hook: impl Fn(Error) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Arc::new(hook));
        self
    }
}
