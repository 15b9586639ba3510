//! [`Builder`]: the options every pool has, and `build`. Those that hook into a worker's life
//! are in `lifecycle.rs`, the child-process runtime's own in `process.rs`.

use std::any::type_name;
use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{ChildOutput, ErrorHook, MaxQueue, ResourceLimits, Runtime};
use crate::codec::Serialization;
use crate::exports::Exports;
use crate::hooks::WorkerHooks;
use crate::pool::Pool;
use crate::protocol::DEFAULT_MAX_MESSAGE_SIZE;
use crate::worker::context::WorkerData;
use crate::Error;

/// Builds a [`Pool`]. Tinypool's options are here in snake case; `record_timing` is Piscina's
/// `recordTiming`, and `on_worker_start`/`on_worker_exit` stand for Piscina's `workerCreate`
/// and `workerDestroy` events; the rest (`setup`, `task_timeout`, `stdout`, `stderr`,
/// `startup_timeout`, `max_message_size`, `fork_server`, `thread_name`, and `resource_limits`,
/// which sets thread stack sizes or process limits rather than V8's heap) are this crate's own.
///
/// A builder is [`Clone`]: one set of options can build several pools (they share the
/// exported functions and the hooks, which are reference-counted).
///
/// ```
/// use std::time::Duration;
/// use tinypool::{Exports, MaxQueue, Pool};
///
/// let pool = Pool::builder()
///     .exports(Exports::new().export_default(|x: u64| x * 2))
///     .min_threads(1)
///     .max_threads(4)
///     .idle_timeout(Duration::from_secs(1))
///     .max_queue(MaxQueue::Auto)
///     .build()?;
/// assert_eq!(pool.run::<u64, _>(21u64).wait()?, 42);
/// # Ok::<(), tinypool::Error>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
#[derive(Clone)]
pub struct Builder {
    pub(super) exports: Option<Exports>,
    pub(super) runtime: Runtime,
    pub(super) name: Option<Cow<'static, str>>,
    pub(super) min_threads: Option<usize>,
    pub(super) max_threads: Option<usize>,
    pub(super) idle_timeout: Duration,
    pub(super) max_queue: MaxQueue,
    pub(super) concurrent_tasks_per_worker: usize,
    pub(super) isolate_workers: bool,
    pub(super) terminate_timeout: Duration,
    pub(super) teardown: Option<String>,
    pub(super) setup: Option<String>,
    pub(super) hooks: WorkerHooks,
    pub(super) worker_data: Option<WorkerData>,
    pub(super) resource_limits: ResourceLimits,
    pub(super) thread_name: String,
    pub(super) on_error: Option<ErrorHook>,
    pub(super) filename: Option<PathBuf>,
    pub(super) argv: Vec<OsString>,
    pub(super) env: Vec<(OsString, OsString)>,
    pub(super) stdout: ChildOutput,
    pub(super) stderr: ChildOutput,
    pub(super) serialization: Serialization,
    pub(super) startup_timeout: Duration,
    pub(super) max_message_size: usize,
    pub(super) memory_recycle: Option<u64>,
    pub(super) fork_server: bool,
    pub(super) task_timeout: Option<Duration>,
    pub(super) record_timing: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            exports: None,
            runtime: Runtime::Threads,
            name: None,
            min_threads: None,
            max_threads: None,
            idle_timeout: Duration::ZERO,
            max_queue: MaxQueue::Unbounded,
            concurrent_tasks_per_worker: 1,
            isolate_workers: false,
            terminate_timeout: Duration::from_secs(1),
            teardown: None,
            setup: None,
            hooks: WorkerHooks::default(),
            worker_data: None,
            resource_limits: ResourceLimits::default(),
            thread_name: "tinypool".to_owned(),
            on_error: None,
            filename: None,
            argv: Vec::new(),
            env: Vec::new(),
            stdout: ChildOutput::Inherit,
            stderr: ChildOutput::Inherit,
            serialization: Serialization::Postcard,
            startup_timeout: Duration::from_secs(10),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            memory_recycle: None,
            fork_server: false,
            task_timeout: None,
            record_timing: false,
        }
    }
}

impl Builder {
    /// The functions the workers run (required for the threads runtime).
    pub fn exports(mut self, exports: Exports) -> Self {
        self.exports = Some(exports);
        self
    }

    /// Threads (the default) or child processes.
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = runtime;
        self
    }

    /// The export [`Pool::run`](crate::Pool::run) calls (default: `"default"`).
    ///
    /// ```
    /// use tinypool::{Exports, Pool};
    ///
    /// // One set of exports (a library's, say), and a pool whose `run` makes thumbnails.
    /// let exports = Exports::new()
    ///     .export("thumbnail", |width: u32| width / 8)
    ///     .export("preview", |width: u32| width / 2);
    /// let thumbnails = Pool::builder().exports(exports).name("thumbnail").build()?;
    /// assert_eq!(thumbnails.run::<u32, _>(1600u32).wait()?, 200);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Workers kept alive even when idle (default: half the available parallelism, at least
    /// 1; lowered to `max_threads` when only that was given and is smaller).
    pub fn min_threads(mut self, n: usize) -> Self {
        self.min_threads = Some(n);
        self
    }

    /// The most workers alive at once (default: the available parallelism; raised to
    /// `min_threads` when only that was given and is larger). Must be at least 1.
    pub fn max_threads(mut self, n: usize) -> Self {
        self.max_threads = Some(n);
        self
    }

    /// How long a worker above `min_threads` may stay idle before it exits (default: 0, it
    /// exits as soon as it finds nothing to do). Like every `Duration` option, any value is
    /// accepted: one too large to count from now (`Duration::MAX`) means "never".
    ///
    /// ```
    /// use std::time::Duration;
    /// use tinypool::{Exports, Pool};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u64| n * 2))
    ///     .min_threads(0) // No worker while the pool is unused...
    ///     .max_threads(1)
    ///     .idle_timeout(Duration::from_secs(30)) // ...but one kept 30 s after a task.
    ///     .build()?;
    /// assert_eq!(pool.threads(), 0);
    /// assert_eq!(pool.run::<u64, _>(21u64).wait()?, 42);
    /// assert_eq!(pool.threads(), 1); // Still there: the next task starts no thread.
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How many tasks may wait for a worker (default: [`MaxQueue::Unbounded`]).
    ///
    /// A bounded queue is backpressure: a task that finds it full fails at once with
    /// [`Error::QueueFull`] (with [`MaxQueue::Limit(0)`](MaxQueue::Limit), [`Error::NoQueue`]),
    /// rather than wait behind an ever longer line. A producer that would rather wait for room
    /// reserves a place first with [`Pool::reserve`](crate::Pool::reserve).
    ///
    /// ```
    /// use tinypool::{worker, Error, Exports, MaxQueue, Pool, RunOptions};
    ///
    /// let pool = Pool::builder()
    ///     // .exports(..): a task given a channel says it started, then waits for a go.
    /// #   .exports(Exports::new().export_default(|n: u32| {
    /// #       if let Ok(port) = worker::port::<()>() {
    /// #           port.send(()).unwrap();
    /// #           port.recv().unwrap();
    /// #       }
    /// #       n
    /// #   }))
    ///     .max_threads(1)
    ///     .max_queue(MaxQueue::Limit(1))
    ///     .build()?;
    /// let (busy, port) = tinypool::channel::<()>();
    /// let running = pool.run_with::<u32, _>(1u32, RunOptions::new().channel(port));
    /// busy.recv()?; // The only worker is busy.
    /// let queued = pool.run::<u32, _>(2u32);
    /// let refused = pool.run::<u32, _>(3u32);
    /// assert_eq!(refused.wait(), Err(Error::QueueFull)); // Try again later.
    ///
    /// busy.send(())?;
    /// assert_eq!((running.wait()?, queued.wait()?), (1, 2));
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn max_queue(mut self, max_queue: MaxQueue) -> Self {
        self.max_queue = max_queue;
        self
    }

    /// How many tasks one worker takes at once (default: 1).
    ///
    /// - **Async exports** ([`Exports::export_async`](crate::Exports::export_async)): a worker
    ///   thread keeps up to this many of their futures in flight, interleaved at their await
    ///   points, so that 1 worker with `n` tasks waiting on I/O does the work of `n`. This
    ///   holds for tasks with an abort signal or a timeout too (aborting one drops its future
    ///   and leaves the others be). A plain function's task still blocks its worker while it
    ///   runs; a pool with no async export runs one task per worker thread, whatever this is.
    /// - **Child processes**: a worker sends the tasks it takes to its child together (many
    ///   per write), which is the way to many small tasks per second across processes: such
    ///   tasks count as started, so
    ///   [`Pool::cancel_pending_tasks`](crate::Pool::cancel_pending_tasks) leaves them be.
    ///   The child runs them one after another.
    ///
    /// A task with a channel, or a plain function's task with an abort signal or a timeout,
    /// still runs alone. The default of 1 keeps a short task from waiting behind a long one
    /// in a busy worker while another is free. Child processes at 1 are still sent their next
    /// task while they run one, when tasks are queued (on Linux and Windows), so that a child
    /// need not wait for its driver between two tasks; but the driver takes that task back if
    /// the one before it has not ended by the time it would sleep (a few microseconds), and
    /// the next free worker runs it: it never waits for a slow task.
    ///
    /// ```no_run
    /// use tinypool::{Exports, Pool, Runtime, Task};
    ///
    /// fn main() -> Result<(), tinypool::Error> {
    ///     tinypool::worker::serve_if_worker(Exports::new().export_default(|n: u64| n * 2));
    ///
    ///     // Many tiny tasks: each child gets up to 32 at once, in a few writes.
    ///     let pool = Pool::builder()
    ///         .runtime(Runtime::ChildProcess)
    ///         .concurrent_tasks_per_worker(32)
    ///         .build()?;
    ///     let tasks: Vec<Task<u64>> = (0..100_000u64).map(|n| pool.run(n)).collect();
    ///     let sum = tasks.into_iter().map(Task::wait).sum::<Result<u64, _>>()?;
    ///     assert_eq!(sum, 2 * (0..100_000u64).sum::<u64>());
    ///     pool.destroy().wait()
    /// }
    /// ```
    pub fn concurrent_tasks_per_worker(mut self, n: usize) -> Self {
        self.concurrent_tasks_per_worker = n;
        self
    }

    /// Gives every task a fresh worker (default: false): no thread-local state carries over.
    ///
    /// A worker's successor starts while it has its task, if one will be wanted (tasks queued,
    /// or the pool at `min_threads`): a *spare*, child, handshake and [`setup`](Builder::setup)
    /// done (threads: only with a setup), so the next task does not wait for it. Until it
    /// replaces its worker a spare is no worker: it counts neither toward `max_threads` (up to
    /// one per worker) nor in `Pool::threads`, gets no hook call (one that never serves gets
    /// none), and is dropped when its worker idles, after `idle_timeout` unneeded, and on
    /// close, destroy or recycle; one that fails to start reports to
    /// [`on_error`](Builder::on_error). On Linux, child processes can also be forked from a
    /// fork server rather than executed anew ([`fork_server`](Builder::fork_server)).
    ///
    /// ```
    /// use std::cell::Cell;
    /// use tinypool::{Exports, Pool};
    ///
    /// thread_local! {
    ///     // State a library keeps per thread, which one task must not leave to the next.
    ///     static CALLS: Cell<u32> = const { Cell::new(0) };
    /// }
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|()| {
    ///         CALLS.with(|calls| calls.replace(calls.get() + 1) + 1)
    ///     }))
    ///     .max_threads(1)
    ///     .isolate_workers(true)
    ///     .build()?;
    /// assert_eq!(pool.run::<u32, _>(()).wait()?, 1);
    /// assert_eq!(pool.run::<u32, _>(()).wait()?, 1); // Another thread: it starts from 0.
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn isolate_workers(mut self, isolate: bool) -> Self {
        self.isolate_workers = isolate;
        self
    }

    /// How long [`Pool::destroy`](crate::Pool::destroy) waits for the workers to stop (default: 1
    /// s). A worker
    /// still running a function after that is reported as [`Error::TerminateTimeout`]; a
    /// child process is killed. `Duration::MAX` waits for as long as it takes.
    pub fn terminate_timeout(mut self, timeout: Duration) -> Self {
        self.terminate_timeout = timeout;
        self
    }

    /// A value every worker can read with [`worker::data`](crate::worker::data) (default:
    /// none).
    ///
    /// Worker threads share this one value; each child process receives a copy, serialized.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use tinypool::{worker, Exports, Pool};
    ///
    /// #[derive(Clone, Serialize, Deserialize)]
    /// struct Settings {
    ///     greeting: String,
    /// }
    ///
    /// let pool = Pool::builder()
    ///     .worker_data(Settings { greeting: "Hello".to_owned() })
    ///     .exports(Exports::new().export_default(|name: String| {
    ///         let settings = worker::data::<Settings>().unwrap().expect("the pool has some");
    ///         format!("{}, {name}!", settings.greeting)
    ///     }))
    ///     .build()?;
    /// assert_eq!(pool.run::<String, _>("Ada".to_owned()).wait()?, "Hello, Ada!");
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn worker_data<D>(mut self, data: D) -> Self
    where
        D: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let value = Arc::new(data);
        let encoded = value.clone();
        self.worker_data = Some(WorkerData {
            value,
            type_name: type_name::<D>(),
            encode: Arc::new(move |codec| codec.encode(&*encoded)),
        });
        self
    }

    /// Limits put on each worker (default: none). See [`ResourceLimits`] for child processes.
    ///
    /// ```
    /// use tinypool::{Exports, Pool, ResourceLimits};
    ///
    /// fn depth(n: u64) -> u64 {
    ///     if n == 0 { 0 } else { 1 + depth(n - 1) }
    /// }
    ///
    /// // Deep recursion (a parser on nested input, say) needs more than the default 2 MiB.
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(depth))
    ///     .resource_limits(ResourceLimits::new().stack_size(64 << 20))
    ///     .build()?;
    /// assert_eq!(pool.run::<u64, _>(100_000u64).wait()?, 100_000);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn resource_limits(mut self, limits: ResourceLimits) -> Self {
        self.resource_limits = limits;
        self
    }

    /// The prefix of the worker threads' names, which end in `-<worker id>` (default:
    /// `"tinypool"`). A NUL byte in it is [`Error::InvalidOptions`] at `build`.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// The timeout of every task that sets none of its own with
    /// [`RunOptions::timeout`](crate::RunOptions::timeout) (default: none), which says what a
    /// timeout does: a task still queued or running `timeout` after its submission fails with
    /// [`Error::TimedOut`], and a running one's worker is retired and replaced (a child process
    /// is killed), or, for an async export's task, its future is dropped.
    ///
    /// A plain function's task with a timeout runs alone on its worker, so that stopping it
    /// stops nothing else: with this option every such task does, and
    /// `concurrent_tasks_per_worker` no longer sends several of them to a child at once. An
    /// async export's task does not: its timeout drops its future, and its worker goes on
    /// with its other tasks. `Duration::ZERO` fails every task at once; `Duration::MAX`
    /// never fires.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tinypool::{worker, Error, Exports, Pool, RunOptions};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|ms: u64| {
    ///         // A call that hangs unless told to stop, say a request without a timeout.
    ///         let start = std::time::Instant::now();
    ///         while start.elapsed() < Duration::from_millis(ms) && !worker::aborted() {
    ///             std::thread::sleep(Duration::from_millis(1));
    ///         }
    ///         ms
    ///     }))
    ///     .task_timeout(Duration::from_millis(100))
    ///     .build()?;
    /// assert_eq!(pool.run::<u64, _>(1u64).wait()?, 1);
    /// let hung = pool.run::<u64, _>(3_600_000u64).wait();
    /// assert_eq!(hung, Err(Error::TimedOut { after: Duration::from_millis(100) }));
    ///
    /// // A task's own timeout overrides the pool's.
    /// let patient = RunOptions::new().timeout(Duration::from_secs(60));
    /// assert_eq!(pool.run_with::<u64, _>(200u64, patient).wait()?, 200);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Whether [`Pool::stats`](crate::Pool::stats) measures time: each task's run and wait
    /// times, and each worker's busy time, hence the pool's utilization (Piscina's
    /// `recordTiming`; default: false).
    ///
    /// Without it, the statistics still count every task's outcome and each worker's tasks,
    /// but [`Stats::run_time`](crate::Stats::run_time) and
    /// [`Stats::wait_time`](crate::Stats::wait_time) stay empty (`count` 0), and
    /// [`Stats::busy_time`](crate::Stats::busy_time) and
    /// [`Stats::utilization`](crate::Stats::utilization) zero. With it, each task costs three
    /// clock reads (one as it is submitted, two on its worker) and a small allocation beside
    /// its cell, which its worker then reads, plus two reads when a worker wakes and idles
    /// (0.2 µs of a lone task's 0.5 µs round trip on threads): on a 2-core machine,
    /// a saturated threads pool of tasks that take 200 ns ran 40–45 % fewer tasks per second
    /// with it, about 0.3 µs more per task; tasks that take 100 µs or more barely notice, and
    /// child-process round trips hide it. Off by default, so that a pool that does not look
    /// at these times does not pay for them.
    ///
    /// ```
    /// use tinypool::{Exports, Pool, Task};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u64| (1..=n).sum::<u64>()))
    ///     .record_timing(true)
    ///     .build()?;
    /// let tasks: Vec<Task<u64>> = (0..100u64).map(|n| pool.run(n)).collect();
    /// for task in tasks {
    ///     task.wait()?;
    /// }
    /// let run_time = pool.stats().run_time;
    /// assert_eq!(run_time.count, 100);
    /// assert!(run_time.min <= run_time.p50 && run_time.p50 <= run_time.max);
    /// println!("median run time: {:?}, p99: {:?}", run_time.p50, run_time.p99);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn record_timing(mut self, record: bool) -> Self {
        self.record_timing = record;
        self
    }

    /// Validates the options and starts `min_threads` workers.
    ///
    /// A [`Runtime::ChildProcess`] pool without [`filename`](Builder::filename) re-executes
    /// this program as its workers, so the program must serve first when it is one: `build`
    /// fails with [`Error::InvalidOptions`] unless
    /// [`worker::serve_if_worker`](crate::worker::serve_if_worker) was called on the main
    /// thread (first thing in `main`) or the binary has
    /// [`test_workers!`](crate::test_workers) (a test file). A call only on another thread,
    /// such as inside a `#[test]`, does not count: the worker would run the test suite again.
    /// The message names the fix.
    ///
    /// ```
    /// use tinypool::{Error, Exports, Pool};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u32| n + 1))
    ///     .min_threads(2)
    ///     .max_threads(4)
    ///     .build()?;
    /// assert_eq!(pool.threads(), 2); // Started at once, not at the first task.
    ///
    /// // Options are checked here, not when the first task runs.
    /// let conflicting = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u32| n + 1))
    ///     .min_threads(8)
    ///     .max_threads(2)
    ///     .build();
    /// assert!(matches!(conflicting, Err(Error::InvalidOptions { .. })));
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    ///
    /// ```
    /// use tinypool::{Error, Pool, Runtime};
    ///
    /// // This example's `main` never calls `serve_if_worker`.
    /// let refused = Pool::builder().runtime(Runtime::ChildProcess).build();
    /// assert!(matches!(refused, Err(Error::InvalidOptions(m)) if m.contains("serve_if_worker")));
    /// ```
    pub fn build(self) -> Result<Pool, Error> {
        Pool::start(self.into_options()?)
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("exports", &self.exports)
            .field("runtime", &self.runtime)
            .field("min_threads", &self.min_threads)
            .field("max_threads", &self.max_threads)
            .field("max_queue", &self.max_queue)
            .field("isolate_workers", &self.isolate_workers)
            .finish_non_exhaustive()
    }
}
