//! The pool handle users hold.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::options::{Builder, Options, RunOptions};
#[cfg(unix)]
use crate::runtime::process::Processes;
use crate::runtime::thread::Threads;
use crate::runtime::{Launcher, Reporter, WorkerOptions};
use crate::scheduler::{Scheduler, SchedulerOptions, WorkerInfo};
use crate::task::{Slot, Task};
use crate::Error;

/// A pool of workers that run exported functions by name.
///
/// Cheap to clone; every clone drives the same workers. Dropping the last clone destroys the
/// pool (waiting at most `terminate_timeout`); a pending [`Task`] does not keep it alive.
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

/// Destroys the pool when the last [`Pool`] clone goes.
struct Handle {
    scheduler: Arc<Scheduler>,
    /// The export a task runs when it names none (`Builder::name`).
    name: Option<Cow<'static, str>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.scheduler.shut_down();
        let deadline = self.scheduler.stop_deadline();
        // Nobody is left to hear about a stuck worker; it stays detached.
        let _ = self.scheduler.join_threads(deadline);
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
        // The runtime, and what the scheduler and every worker are told: each its part of
        // the options.
        let launcher: Box<dyn Launcher> = match options.process {
            #[cfg(unix)]
            Some(process) => Box::new(Processes { options: process }),
            #[cfg(not(unix))]
            Some(_) => unreachable!("the builder refuses child processes off Unix"),
            None => Box::new(Threads {
                exports: options.exports,
                worker_data: options.worker_data,
            }),
        };
        let worker_options = WorkerOptions {
            terminate_timeout: options.terminate_timeout,
            teardown: options.teardown,
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
        };
        let scheduler = Scheduler::new(scheduler_options, launcher, worker_options);
        Ok(Pool {
            handle: Arc::new(Handle {
                scheduler,
                name: options.name,
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

    /// Runs a task with options: another export, an abort signal, a channel.
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
        let RunOptions { name, signal, port } = options;
        let name = name.or_else(|| self.handle.name.clone());
        self.scheduler().submit(arg, name, port, signal)
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
        Destroy {
            deadline: scheduler.stop_deadline(),
            scheduler,
            reaper: None,
        }
    }

    /// Fails every task that no worker has started with [`Error::Cancelled`]; running tasks
    /// finish. Tasks already sent to a child process count as started (see
    /// [`Builder::concurrent_tasks_per_worker`](crate::Builder::concurrent_tasks_per_worker)).
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
    /// (they take no new ones meanwhile). The task resolves when the idle ones have stopped.
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
    /// pool.recycle_workers().wait()?; // The templates changed on disk, say.
    /// assert_eq!(pool.run::<usize, _>("c".to_owned()).wait()?, 1); // A fresh worker.
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn recycle_workers(&self) -> Task<()> {
        self.scheduler().recycle()
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

    /// How many tasks a worker has run to the end, with a value or an error.
    pub fn completed(&self) -> u64 {
        self.scheduler().completed()
    }

    /// How long ago the pool was built.
    pub fn duration(&self) -> Duration {
        self.scheduler().duration()
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

/// The end of [`Pool::destroy`]: wait on it, or await it.
#[must_use = "the pool is already destroyed; wait on this to know that its workers stopped"]
pub struct Destroy {
    scheduler: Arc<Scheduler>,
    deadline: Instant,
    /// Waits for the workers on a thread of its own when awaited, so no executor blocks.
    reaper: Option<Task<()>>,
}

impl Destroy {
    /// Blocks until every worker thread is joined, or `terminate_timeout` passes. In async
    /// code, `.await` it instead: it then waits on a thread of its own, and the executor's
    /// thread stays free.
    ///
    /// A function that never checks [`worker::aborted`](crate::worker::aborted) (blocked in
    /// a call that knows nothing of tinypool, say) cannot be stopped: `wait` gives up on it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tinypool::{Error, Exports, Pool};
    ///
    /// let (release, blocked) = tinypool::channel::<()>();
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(move |()| {
    ///         blocked.send(()).unwrap(); // It started...
    ///         let _ = blocked.recv(); // ...and blocks until `release` says.
    ///     }))
    ///     .max_threads(1)
    ///     .terminate_timeout(Duration::from_millis(100))
    ///     .build()?;
    /// let task = pool.run::<(), _>(());
    /// release.recv()?;
    /// let stopped = pool.destroy().wait(); // Returns after 100 ms.
    /// assert!(matches!(stopped, Err(Error::TerminateTimeout { worker: 1, .. })));
    /// assert_eq!(task.wait(), Err(Error::Terminated));
    /// release.send(())?; // The detached thread finishes on its own.
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn wait(self) -> Result<(), Error> {
        self.scheduler.join_threads(self.deadline)
    }
}

impl Future for Destroy {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.reaper.is_none() {
            let slot = Arc::new(Slot::new());
            let (scheduler, deadline, done) = (self.scheduler.clone(), self.deadline, slot.clone());
            let name = format!("{}-destroy", self.scheduler.thread_name());
            let spawned = std::thread::Builder::new().name(name).spawn(move || {
                done.complete(scheduler.join_threads(deadline));
            });
            if spawned.is_err() {
                // No thread to wait on: wait here, which is bounded by the deadline.
                return Poll::Ready(self.scheduler.join_threads(self.deadline));
            }
            self.reaper = Some(Task::new(slot));
        }
        let reaper = self.reaper.as_mut().expect("set above");
        Pin::new(reaper).poll(cx)
    }
}

impl fmt::Debug for Destroy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destroy")
            .field("deadline", &self.deadline)
            .finish()
    }
}
