//! The pool handle users hold.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::hooks::WorkerInfo;
use crate::options::{Builder, Options, RunOptions};
use crate::reserve::Reserve;
#[cfg(any(unix, windows))]
use crate::runtime::process::Processes;
use crate::runtime::thread::Threads;
use crate::runtime::{Launcher, Reporter, WorkerOptions};
use crate::scheduler::{Scheduler, SchedulerOptions};
use crate::stats::Stats;
use crate::task::Task;
use crate::Error;

mod ending;
mod typed;

pub use self::ending::{Close, Destroy, Idle, Recycle};

/// A pool of workers that run exported functions by name.
///
/// Cheap to clone; every clone drives the same workers. Dropping the last clone
/// [closes](Pool::close) the pool in the background: the tasks it holds still run and resolve
/// with their values, then its workers stop; the drop itself does not wait. A pending [`Task`]
/// does not keep the pool open. To stop at once, [`destroy`](Pool::destroy) it instead.
///
/// ```
/// use tinypool::{Exports, Pool, RunOptions};
///
/// let pool = Pool::builder()
///     .exports(
///         Exports::new()
///             .export_default(|(a, b): (i32, i32)| a + b)
///             .export("multiply", |(a, b): (i32, i32)| a * b),
///     )
///     .build()?;
/// assert_eq!(pool.run::<i32, _>((4, 6)).wait()?, 10);
/// let product = pool.run_with::<i32, _>((4, 6), RunOptions::new().name("multiply"));
/// assert_eq!(product.wait()?, 24);
/// pool.destroy().wait()?;
/// # Ok::<(), tinypool::Error>(())
/// ```
#[derive(Clone)]
pub struct Pool {
    handle: Arc<Handle>,
}

/// Closes the pool when the last [`Pool`] clone goes.
struct Handle {
    scheduler: Arc<Scheduler>,
    /// The export a task runs when it names none (`Builder::name`).
    name: Option<Cow<'static, str>>,
    /// Whether the workers are threads, which alone run local exports.
    runs_local: bool,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Without waiting: the workers finish the tasks, whose callers may still wait on
        // them, and then stop; their threads end on their own (the last one drops the
        // scheduler, detaching what nobody joined).
        self.scheduler.close();
    }
}

impl Pool {
    /// A [`Builder`] with every option at its default.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn start(options: Options) -> Result<Pool, Error> {
        // Before any worker can panic: the hook notes where, for `Error::Panicked`.
        crate::panics::install();
        let runs_local = options.process.is_none();
        // The async exports whose tasks with a signal or timeout may share a worker thread
        // (an abort drops the future). A child's exports are its own, which the pool may not
        // know (a separate worker executable): each child names them as it starts, and the
        // scheduler notes them in its worker's record.
        let async_exports = if runs_local {
            options.exports.async_names_on_threads()
        } else {
            Default::default()
        };
        // The runtime, and what the scheduler and every worker are told: each its part of
        // the options.
        let launcher: Box<dyn Launcher> = match options.process {
            #[cfg(any(unix, windows))]
            Some(process) => Box::new(Processes::new(process)),
            #[cfg(not(any(unix, windows)))]
            Some(_) => unreachable!("the builder refuses child processes off Unix and Windows"),
            None => Box::new(Threads {
                exports: options.exports,
                worker_data: options.worker_data,
            }),
        };
        let worker_options = WorkerOptions {
            terminate_timeout: options.terminate_timeout,
            teardown: options.teardown,
            setup: options.setup,
            concurrent_tasks_per_worker: options.concurrent_tasks_per_worker,
            reporter: Reporter::new(options.on_error),
        };
        let scheduler_options = SchedulerOptions {
            min_threads: options.min_threads,
            max_threads: options.max_threads,
            idle_timeout: options.idle_timeout,
            max_queue: options.max_queue,
            isolate_workers: options.isolate_workers,
            thread_name: options.thread_name,
            stack_size: options.stack_size,
            hooks: options.hooks,
            task_timeout: options.task_timeout,
            record_timing: options.record_timing,
            async_exports,
        };
        let scheduler = Scheduler::new(scheduler_options, launcher, worker_options);
        Ok(Pool {
            handle: Arc::new(Handle {
                scheduler,
                name: options.name,
                runs_local,
            }),
        })
    }

    fn scheduler(&self) -> &Arc<Scheduler> {
        &self.handle.scheduler
    }

    /// Runs the pool's default export (see [`Builder::name`]) with `arg`.
    ///
    /// Never panics and never blocks: every error, a full queue or a destroyed pool included,
    /// arrives through the returned [`Task`]. The argument and result types must be exactly
    /// the export's, else [`Error::TypeMismatch`].
    ///
    /// ```
    /// use tinypool::{Error, Exports, Pool, Task};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u64| n * n))
    ///     .build()?;
    /// // `run` returns at once: these run in parallel, as workers come free.
    /// let tasks: Vec<Task<u64>> = (1..=4u64).map(|n| pool.run(n)).collect();
    /// let squares = tasks.into_iter().map(Task::wait).collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(squares, [1, 4, 9, 16]);
    ///
    /// // The types are the export's exactly: a `u32` is not a `u64`.
    /// let wrong = pool.run::<u64, _>(2u32);
    /// assert!(matches!(wrong.wait(), Err(Error::TypeMismatch { .. })));
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn run<R, A>(&self, arg: A) -> Task<R>
    where
        A: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        self.run_with(arg, RunOptions::new())
    }

    /// Runs a task with options: another export, an abort signal, a channel, a timeout.
    ///
    /// Like [`run`](Pool::run), it never blocks: an export that does not exist, say, is the
    /// task's error.
    ///
    /// ```
    /// use tinypool::{Error, Exports, Pool, RunOptions};
    ///
    /// let pool = Pool::builder()
    ///     .exports(
    ///         Exports::new()
    ///             .export_default(|text: String| text.len())
    ///             .export("upper", |text: String| text.to_uppercase()),
    ///     )
    ///     .build()?;
    /// let upper = pool.run_with::<String, _>("tiny".to_owned(), RunOptions::new().name("upper"));
    /// assert_eq!(upper.wait()?, "TINY");
    ///
    /// let lower = pool.run_with::<String, _>("TINY".to_owned(), RunOptions::new().name("lower"));
    /// match lower.wait() {
    ///     Err(Error::NoSuchFunction { name, .. }) => assert_eq!(name, "lower"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn run_with<R, A>(&self, arg: A, options: RunOptions) -> Task<R>
    where
        A: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        let mut options = options;
        if options.name.is_none() {
            options.name = self.handle.name.clone();
        }
        self.scheduler().submit(arg, options)
    }

    /// Destroys the pool: queued and running tasks fail with [`Error::Terminated`], running
    /// functions see [`worker::aborted`](crate::worker::aborted), every worker runs its
    /// teardown and stops. Later tasks fail with [`Error::Terminated`].
    ///
    /// The returned [`Destroy`] can be awaited or waited on; it resolves once every worker
    /// thread has been joined, or with [`Error::TerminateTimeout`] naming a worker still
    /// running a function `terminate_timeout` later (a thread cannot be killed; it is left
    /// to finish, detached).
    ///
    /// ```
    /// use tinypool::{worker, Error, Exports, Pool, RunOptions};
    ///
    /// # // One worker; a task given a channel says it started, then waits for a message.
    /// # let pool = Pool::builder()
    /// #     .exports(Exports::new().export_default(|()| {
    /// #         if let Ok(port) = worker::port::<()>() {
    /// #             port.send(()).unwrap();
    /// #             let _ = port.recv(); // `Disconnected` once the task ended.
    /// #         }
    /// #     }))
    /// #     .max_threads(1)
    /// #     .build()?;
    /// let (started, port) = tinypool::channel::<()>();
    /// let running = pool.run_with::<(), _>((), RunOptions::new().channel(port));
    /// started.recv()?;
    /// let queued = pool.run::<(), _>(());
    ///
    /// pool.destroy().wait()?;
    /// assert_eq!(running.wait(), Err(Error::Terminated));
    /// assert_eq!(queued.wait(), Err(Error::Terminated));
    /// assert_eq!(pool.run::<(), _>(()).wait(), Err(Error::Terminated)); // For good.
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn destroy(&self) -> Destroy {
        let scheduler = self.scheduler().clone();
        scheduler.shut_down();
        Destroy::new(scheduler)
    }

    /// Closes the pool gracefully (Piscina's `close()`, Python's `shutdown(wait=True)`): from
    /// now on, tasks fail at once with [`Error::Closed`]; the queued and running ones finish
    /// and resolve with their values; then every worker runs its teardown and stops.
    ///
    /// The returned [`Close`] can be awaited or waited on; it resolves once every worker
    /// thread has been joined. `terminate_timeout` bounds only the stop after the last task
    /// (not the tasks themselves): a worker still running its teardown by then is named in
    /// [`Error::TerminateTimeout`]. [`destroy`](Pool::destroy) cuts a close short (the tasks
    /// still queued fail with [`Error::Terminated`], and the `Close` resolves). Closing twice
    /// is fine; closing a destroyed pool resolves at once. Waited on (or awaited) inside a
    /// task or a hook of one of the pool's own workers, it resolves once every *other*
    /// worker has stopped: that one runs what is still queued once the task returns, then
    /// stops.
    ///
    /// ```
    /// use tinypool::{Error, Exports, Pool, Task};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u64| n * n))
    ///     .max_threads(2)
    ///     .build()?;
    /// let tasks: Vec<Task<u64>> = (1..=8u64).map(|n| pool.run(n)).collect();
    ///
    /// let close = pool.close();
    /// assert_eq!(pool.run::<u64, _>(9u64).wait(), Err(Error::Closed)); // No new tasks...
    /// close.wait()?; // ...and the queued ones ran: the workers are gone now.
    /// assert_eq!(pool.threads(), 0);
    /// let squares = tasks.into_iter().map(Task::wait).collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(squares, [1, 4, 9, 16, 25, 36, 49, 64]);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn close(&self) -> Close {
        let scheduler = self.scheduler().clone();
        scheduler.close();
        Close::new(scheduler)
    }

    /// Resolves once nothing is queued or running (at once if so); the pool stays open.
    ///
    /// ```
    /// use tinypool::{Exports, Pool, Task};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u64| n + 1))
    ///     .build()?;
    /// let tasks: Vec<Task<u64>> = (0..16u64).map(|n| pool.run(n)).collect();
    /// pool.idle().wait(); // Or `.await` it.
    /// assert!(tasks.iter().all(Task::is_finished));
    /// assert_eq!(pool.queue_size(), 0);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn idle(&self) -> Idle {
        Idle::new(self.scheduler().idle())
    }

    /// Whether the queue is at `max_queue` (Piscina's `needsDrain`; the places
    /// [`Permit`](crate::Permit)s hold count as queued tasks), so that the next task would
    /// fail with [`Error::QueueFull`] unless a worker takes one first: a producer's cue to
    /// wait, for [`idle`](Pool::idle) say, or to [`reserve`](Pool::reserve) a place instead.
    /// Always `false` with an unbounded queue.
    ///
    /// ```
    /// use tinypool::{Exports, MaxQueue, Pool, Task};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u32| n))
    ///     .max_queue(MaxQueue::Limit(64))
    ///     .build()?;
    /// let mut tasks = Vec::new();
    /// for n in 0..1000u32 {
    ///     if pool.needs_drain() {
    ///         pool.idle().wait(); // Let the queue drain before adding more.
    ///     }
    ///     tasks.push(pool.run::<u32, _>(n));
    /// }
    /// // None failed with `QueueFull`.
    /// let values = tasks.into_iter().map(Task::wait).collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(values.len(), 1000);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn needs_drain(&self) -> bool {
        self.scheduler().needs_drain()
    }

    /// Waits for room in the queue instead of failing with [`Error::QueueFull`]: the returned
    /// [`Reserve`], waited on or awaited, resolves to a [`Permit`](crate::Permit) once one
    /// of `max_queue`'s places is free, and holds that place for the permit's task
    /// ([`Permit::run`](crate::Permit::run)). Requests are granted in the order they were
    /// made; while permits hold places, a plain [`run`](Pool::run) that would have to queue
    /// counts them as queued.
    ///
    /// With an unbounded queue it resolves at once (there is nothing to count); with no queue
    /// at all (`max_queue` 0) it resolves at once with [`Error::NoQueue`], as there is no place
    /// to wait for. Closing or destroying the pool fails the waiting ones with
    /// [`Error::Closed`] or [`Error::Terminated`]. Do not wait on it from inside a task of
    /// the same pool: a place may only come free once that very worker takes the next task.
    ///
    /// ```
    /// use tinypool::{Exports, MaxQueue, Pool, Task};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u64| n * 3))
    ///     .max_threads(2)
    ///     .max_queue(MaxQueue::Limit(4))
    ///     .build()?;
    /// let mut tasks: Vec<Task<u64>> = Vec::new();
    /// for n in 0..200u64 {
    ///     // Waits while the queue is full (or `.await` it in async code).
    ///     let permit = pool.reserve().wait()?;
    ///     tasks.push(permit.run(n)); // Never `QueueFull`.
    /// }
    /// let values = tasks.into_iter().map(Task::wait).collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(values, (0..200u64).map(|n| n * 3).collect::<Vec<_>>());
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn reserve(&self) -> Reserve {
        Reserve::new(
            self.scheduler().clone(),
            self.handle.name.clone(),
            self.handle.runs_local,
        )
    }

    /// Fails every task that no worker has started with [`Error::Cancelled`]; running tasks
    /// finish. Tasks already sent to a child process count as started (see
    /// [`Builder::concurrent_tasks_per_worker`](crate::Builder::concurrent_tasks_per_worker)),
    /// but for a task sent ahead at one task per child that its driver then takes back from
    /// behind a slow one: its child never started it, and it fails `Cancelled` then.
    ///
    /// ```
    /// use tinypool::{worker, Error, Exports, Pool, RunOptions, Task};
    ///
    /// # // One worker; a task given a channel says it started, then waits for a go.
    /// # let pool = Pool::builder()
    /// #     .exports(Exports::new().export_default(|n: u32| {
    /// #         if let Ok(port) = worker::port::<()>() {
    /// #             port.send(()).unwrap();
    /// #             port.recv().unwrap();
    /// #         }
    /// #         n
    /// #     }))
    /// #     .max_threads(1)
    /// #     .build()?;
    /// let (busy, port) = tinypool::channel::<()>();
    /// let running = pool.run_with::<u32, _>(0u32, RunOptions::new().channel(port));
    /// busy.recv()?; // It started; the next ones wait in the queue.
    /// let queued: Vec<Task<u32>> = (1..=3u32).map(|n| pool.run(n)).collect();
    ///
    /// pool.cancel_pending_tasks(); // The user changed their mind, say.
    /// for task in queued {
    ///     assert_eq!(task.wait(), Err(Error::Cancelled));
    /// }
    /// busy.send(())?;
    /// assert_eq!(running.wait()?, 0); // A started task finishes.
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn cancel_pending_tasks(&self) {
        self.scheduler().cancel_pending();
    }

    /// Replaces every worker: idle ones now, busy ones once the tasks they took are done
    /// (they take no new ones meanwhile). The [`Recycle`] it returns resolves once the
    /// workers idle at the call have stopped; it does not wait for the busy ones.
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use tinypool::{Exports, Pool};
    ///
    /// thread_local! {
    ///     // A per-worker cache that only grows (parsed templates, say).
    ///     static CACHE: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// }
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|name: String| {
    ///         CACHE.with_borrow_mut(|cache| {
    ///             cache.push(name);
    ///             cache.len()
    ///         })
    ///     }))
    ///     .max_threads(1)
    ///     .build()?;
    /// assert_eq!(pool.run::<usize, _>("a".to_owned()).wait()?, 1);
    /// assert_eq!(pool.run::<usize, _>("b".to_owned()).wait()?, 2);
    /// pool.recycle_workers().wait(); // The templates changed on disk, say.
    /// assert_eq!(pool.run::<usize, _>("c".to_owned()).wait()?, 1); // A fresh worker.
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn recycle_workers(&self) -> Recycle {
        Recycle::new(self.scheduler().recycle())
    }

    /// How many workers are alive, starting ones included (retired ones, still finishing an
    /// aborted function, are not).
    pub fn threads(&self) -> usize {
        self.scheduler().threads()
    }

    /// A snapshot of the live workers.
    ///
    /// ```
    /// use tinypool::{worker, Exports, Pool, RunOptions};
    ///
    /// # // A task given a channel says it started, then waits for a go.
    /// # let pool = Pool::builder()
    /// #     .exports(Exports::new().export_default(|()| {
    /// #         let port = worker::port::<()>().unwrap();
    /// #         port.send(()).unwrap();
    /// #         port.recv().unwrap();
    /// #     }))
    /// #     .min_threads(2)
    /// #     .max_threads(2)
    /// #     .build()?;
    /// let (busy, port) = tinypool::channel::<()>();
    /// let task = pool.run_with::<(), _>((), RunOptions::new().channel(port));
    /// busy.recv()?; // It started.
    ///
    /// let workers = pool.workers();
    /// assert_eq!(workers.len(), 2);
    /// let running: Vec<usize> = workers.iter().map(|worker| worker.running).collect();
    /// assert_eq!(running.iter().sum::<usize>(), 1); // One busy, one idle.
    /// assert!(workers.iter().all(|worker| worker.pid.is_none())); // Threads, not processes.
    /// busy.send(())?;
    /// task.wait()?;
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.scheduler().workers()
    }

    /// How many tasks wait for a worker (tasks a worker has taken are not counted).
    pub fn queue_size(&self) -> usize {
        self.scheduler().queue_size()
    }

    /// How many tasks a worker has run to the end, with a value or an error (Tinypool's
    /// `completed`): a task whose function panicked counts, one that failed before a worker
    /// ran it (aborted while queued, cancelled, refused) does not.
    ///
    /// [`stats()`](Pool::stats) counts outcomes instead: [`Stats::succeeded`] (resolved with
    /// a value), [`Stats::failed`] by error kind, wherever the task failed, and
    /// [`Stats::resolved`], their sum. A task aborted while it ran (without waiting for it)
    /// counts there once it fails, and here only if its worker got to its end.
    pub fn completed(&self) -> u64 {
        self.scheduler().completed()
    }

    /// How long ago the pool was built.
    pub fn duration(&self) -> Duration {
        self.scheduler().duration()
    }

    /// A snapshot of the pool's statistics: tasks succeeded and failed (by [`ErrorKind`]),
    /// each live worker's tasks, and with
    /// [`Builder::record_timing`](crate::Builder::record_timing) run and wait times, busy
    /// time and utilization. See [`Stats`].
    ///
    /// Every task counts once it resolves, before its caller can see its result: once `N`
    /// tasks have resolved, [`Stats::resolved`] is `N`. The snapshot takes the pool's lock
    /// for a moment (merging the workers' histograms, with timing on: microseconds).
    ///
    /// ```
    /// use tinypool::{ErrorKind, Exports, Pool, RunOptions, Task};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u64| n * 2))
    ///     .min_threads(2) // Workers that stay: `workers` lists them all.
    ///     .max_threads(2)
    ///     .record_timing(true)
    ///     .build()?;
    /// let tasks: Vec<Task<u64>> = (0..10u64).map(|n| pool.run(n)).collect();
    /// let unknown = pool.run_with::<u64, _>(1u64, RunOptions::new().name("missing"));
    /// for task in tasks {
    ///     task.wait()?;
    /// }
    /// assert!(unknown.wait().is_err());
    ///
    /// let stats = pool.stats();
    /// assert_eq!(stats.succeeded(), 10);
    /// assert_eq!(stats.failed(ErrorKind::NoSuchFunction), 1);
    /// assert_eq!(stats.run_time.count, 11); // Every task a worker ran, failed or not.
    /// assert!(stats.wait_time.max >= stats.wait_time.min);
    /// assert!((0.0..=1.0).contains(&stats.utilization));
    /// let ran: u64 = stats.workers.iter().map(|worker| worker.tasks).sum();
    /// assert_eq!(ran, 11); // (A worker that left would no longer be listed.)
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    ///
    /// [`ErrorKind`]: crate::ErrorKind
    pub fn stats(&self) -> Stats {
        self.scheduler().stats()
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheduler = self.scheduler();
        f.debug_struct("Pool")
            .field("threads", &scheduler.threads())
            .field("queue_size", &scheduler.queue_size())
            .field("completed", &scheduler.completed())
            .field("destroyed", &scheduler.is_destroyed())
            .finish()
    }
}
