//! The pool's options (the [`Builder`]) and a task's ([`RunOptions`]).

use std::any::type_name;
use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::abort::AbortSignal;
use crate::channel::{ErasedPort, Port};
use crate::codec::Serialization;
use crate::exports::Exports;
use crate::pool::Pool;
use crate::protocol::{DEFAULT_MAX_MESSAGE_SIZE, WORKER_ENV};
use crate::task::DEFAULT_NAME;
use crate::worker::WorkerData;
use crate::Error;

/// Where a pool's workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Runtime {
    /// Threads of this process: arguments and results move, nothing is serialized.
    #[default]
    Threads,
    /// Child processes (Unix): each worker is this program re-executed, which must then serve
    /// first ([`worker::serve_if_worker`](crate::worker::serve_if_worker) in `main`, or
    /// [`test_workers!`](crate::test_workers) in a test binary), or the `filename`
    /// executable; it talks to the pool over a private socket. A crash, abort or `exit` in a
    /// child fails only its own task; the pool replaces the child.
    ChildProcess,
}

/// Where a child process's standard output or error goes, for [`Builder::stdout`] and
/// [`Builder::stderr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ChildOutput {
    /// The pool's process's own: what a child prints shows where the program's output does.
    #[default]
    Inherit,
    /// Discarded (`/dev/null`).
    Null,
    /// The pool's process's standard error: for a program that speaks a protocol on its
    /// standard output, which its workers' prints must not corrupt.
    Stderr,
}

/// How many tasks may wait for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxQueue {
    /// No limit.
    #[default]
    Unbounded,
    /// `max_threads²`, as Tinypool's `'auto'`.
    Auto,
    /// At most this many; 0 means no queue at all: a task that no worker can take at once
    /// fails with [`Error::NoQueue`].
    Limit(usize),
}

/// Limits put on each worker.
///
/// Each limit applies to one runtime only; one the pool's runtime cannot honour makes
/// [`Builder::build`] fail with [`Error::InvalidOptions`]. For worker threads, see
/// [`Builder::resource_limits`].
///
/// ```
/// use std::time::Duration;
/// use tinypool::{Error, Exports, Pool, ResourceLimits, Runtime};
///
/// // Untrusted input, in child processes capped at 512 MiB and 30 s of CPU: a task that
/// // hits a cap fails with `Error::ResourceLimit`, and its child is replaced.
/// let limits = ResourceLimits::new()
///     .max_memory(512 << 20)
///     .max_cpu_time(Duration::from_secs(30));
/// let builder = Pool::builder().runtime(Runtime::ChildProcess).resource_limits(limits);
///
/// // Worker threads share this process's memory and CPU time: they cannot be capped.
/// let threads = Pool::builder()
///     .exports(Exports::new().export_default(|n: u32| n))
///     .resource_limits(limits)
///     .build();
/// assert!(matches!(threads, Err(Error::InvalidOptions { .. })));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ResourceLimits {
    /// Stack size of each worker thread, in bytes (default: Rust's, 2 MiB). Threads runtime.
    pub stack_size: Option<usize>,
    /// A hard cap on each child's address space (`RLIMIT_AS`), in bytes. Child processes;
    /// a child applies it once started, before its first task.
    pub max_memory: Option<u64>,
    /// A cap on each child's CPU time (`RLIMIT_CPU`, whole seconds, rounded up), counted
    /// from the child's start. Child processes.
    pub max_cpu_time: Option<Duration>,
}

impl ResourceLimits {
    /// No limits.
    pub fn new() -> Self {
        ResourceLimits::default()
    }

    /// Sets the stack size of each worker thread, in bytes.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Caps each child's address space, in bytes. A task that hits it fails with
    /// [`Error::ResourceLimit`].
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// Caps each child's CPU time, counted from the child's start (not per task): the task
    /// running when the child reaches it fails with [`Error::ResourceLimit`], and the child is
    /// replaced. To bound each task, combine it with `isolate_workers(true)`.
    pub fn max_cpu_time(mut self, time: Duration) -> Self {
        self.max_cpu_time = Some(time);
        self
    }
}

pub(crate) type ErrorHook = Arc<dyn Fn(Error) + Send + Sync>;

/// The options of a [`Pool`], validated and resolved.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) exports: Arc<Exports>,
    pub(crate) name: Option<Cow<'static, str>>,
    pub(crate) min_threads: usize,
    pub(crate) max_threads: usize,
    pub(crate) idle_timeout: Duration,
    /// `None`: unbounded.
    pub(crate) max_queue: Option<usize>,
    pub(crate) concurrent_tasks_per_worker: usize,
    pub(crate) isolate_workers: bool,
    pub(crate) terminate_timeout: Duration,
    pub(crate) teardown: Option<String>,
    pub(crate) worker_data: Option<WorkerData>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) thread_name: String,
    pub(crate) on_error: Option<ErrorHook>,
    /// Set for the child-process runtime.
    pub(crate) process: Option<Arc<ProcessOptions>>,
}

/// What the child-process runtime needs to start and drive children.
#[cfg_attr(not(unix), allow(dead_code))] // Used by the child-process runtime (Unix).
pub(crate) struct ProcessOptions {
    /// The worker executable's path: its name in messages, and its children's `argv[0]`.
    pub(crate) program: PathBuf,
    /// What is executed. When the worker is this program re-executed, on Linux, the running
    /// image itself (`/proc/self/exe`): the file at `program` may have been replaced since
    /// (an upgrade), and workers must run the same code as their pool.
    pub(crate) executable: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) stdout: ChildOutput,
    pub(crate) stderr: ChildOutput,
    pub(crate) serialization: Serialization,
    pub(crate) startup_timeout: Duration,
    pub(crate) max_message_size: usize,
    pub(crate) memory_recycle: Option<u64>,
    pub(crate) max_memory: Option<u64>,
    pub(crate) max_cpu_time: Option<Duration>,
    /// `worker_data`, encoded once for every child: its type name and bytes.
    pub(crate) worker_data: Option<(&'static str, Vec<u8>)>,
}

/// Builds a [`Pool`]. Tinypool's options are here in snake case; the rest (`stdout`, `stderr`,
/// `startup_timeout`, `max_message_size`, `thread_name`, and `resource_limits`, which sets
/// thread stack sizes or process rlimits rather than V8's heap) are this crate's own.
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
pub struct Builder {
    exports: Option<Exports>,
    runtime: Runtime,
    name: Option<Cow<'static, str>>,
    min_threads: Option<usize>,
    max_threads: Option<usize>,
    idle_timeout: Duration,
    max_queue: MaxQueue,
    concurrent_tasks_per_worker: usize,
    isolate_workers: bool,
    terminate_timeout: Duration,
    teardown: Option<String>,
    worker_data: Option<WorkerData>,
    resource_limits: ResourceLimits,
    thread_name: String,
    on_error: Option<ErrorHook>,
    filename: Option<PathBuf>,
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdout: ChildOutput,
    stderr: ChildOutput,
    serialization: Serialization,
    startup_timeout: Duration,
    max_message_size: usize,
    memory_recycle: Option<u64>,
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

    /// The export [`Pool::run`] calls (default: `"default"`).
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
    /// rather than wait behind an ever longer line.
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

    /// How many tasks one worker takes at once (default: 1). Exported functions are
    /// synchronous, so a worker runs its tasks one after another from its own short queue.
    ///
    /// A child-process worker sends the tasks it takes to its child together (many per
    /// write), which is the way to many small tasks per second across processes: such tasks
    /// count as started, so [`Pool::cancel_pending_tasks`](crate::Pool::cancel_pending_tasks)
    /// leaves them be. A task with a channel or an abort signal still runs alone. The default
    /// of 1 keeps a short task from waiting behind a long one in a busy child while another
    /// worker is free.
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

    /// How long [`Pool::destroy`] waits for the workers to stop (default: 1 s). A worker
    /// still running a function after that is reported as [`Error::TerminateTimeout`]; a
    /// child process is killed. `Duration::MAX` waits for as long as it takes.
    pub fn terminate_timeout(mut self, timeout: Duration) -> Self {
        self.terminate_timeout = timeout;
        self
    }

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
    ///     .exports(Exports::new().export_default(|query: String| query.len()).export("close", close))
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
    /// `"tinypool"`).
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// Called with errors that belong to no task, such as a teardown that panicked (default:
    /// they are dropped).
    ///
    /// The hook runs on a worker's thread: keep it short (log, or send the error elsewhere).
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

    /// Child processes: the worker executable (default: this program, re-executed); a name
    /// without a `/` is looked up in `PATH`. Its `main` must call
    /// [`worker::serve_if_worker`](crate::worker::serve_if_worker) first (a child that exits
    /// without the handshake fails its tasks with [`Error::WorkerStartFailed`] saying so).
    /// [`build`](Self::build) refuses a path that is not an executable file with
    /// [`Error::InvalidOptions`].
    ///
    /// The worker, a small program of its own:
    ///
    /// ```no_run
    /// // thumbnailer/src/main.rs
    /// use std::process::ExitCode;
    ///
    /// fn main() -> ExitCode {
    ///     let exports = tinypool::Exports::new().export_default(|image: Vec<u8>| image.len() / 4);
    ///     tinypool::worker::serve_if_worker(exports); // Serves, then exits.
    ///     eprintln!("thumbnailer: only a tinypool pool runs this program");
    ///     ExitCode::from(2)
    /// }
    /// ```
    ///
    /// The application, which starts it rather than re-execute its whole self:
    ///
    /// ```no_run
    /// use tinypool::{Pool, Runtime};
    ///
    /// let worker = std::env::current_exe().expect("a path").with_file_name("thumbnailer");
    /// let pool = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .filename(worker)
    ///     .build()?;
    /// let size = pool.run::<usize, _>(vec![0u8; 1024]).wait()?;
    /// assert_eq!(size, 256);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    ///
    /// In a package's tests, a worker binary of the package is at hand through the variable
    /// Cargo sets for integration tests, `CARGO_BIN_EXE_<name>`:
    ///
    /// ```no_run
    /// use tinypool::{Pool, Runtime};
    ///
    /// # fn main() -> Result<(), tinypool::Error> {
    /// # macro_rules! env { ($name:literal) => { "target/debug/my-worker" } }
    /// // In tests/adding.rs, for a `[[bin]]` named `my-worker` whose `main` serves first:
    /// let pool = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .filename(env!("CARGO_BIN_EXE_my-worker"))
    ///     .build()?;
    /// assert_eq!(pool.run::<i32, _>((4, 6)).wait()?, 10);
    /// # Ok(())
    /// # }
    /// ```
    pub fn filename(mut self, path: impl Into<PathBuf>) -> Self {
        self.filename = Some(path.into());
        self
    }

    /// Child processes: the arguments each child is started with (default: none).
    ///
    /// ```
    /// use tinypool::{Pool, Runtime};
    ///
    /// // Each child starts as `<program> --log-level warn`; its exports can read that with
    /// // `std::env::args()`.
    /// let builder = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .argv(["--log-level", "warn"]);
    /// ```
    pub fn argv<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.argv = args.into_iter().map(Into::into).collect();
        self
    }

    /// Child processes: sets an environment variable for each child, as `Command::env` does.
    /// Children inherit this process's environment, then these are applied.
    ///
    /// ```
    /// use tinypool::{Error, Exports, Pool, Runtime};
    ///
    /// let builder = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .env("RUST_LOG", "warn")
    ///     .env("OMP_NUM_THREADS", "1"); // One thread per child: the pool is the parallelism.
    ///
    /// // Worker threads share this process's environment: there is none of their own to set.
    /// let threads = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u32| n))
    ///     .env("RUST_LOG", "warn")
    ///     .build();
    /// assert!(matches!(threads, Err(Error::InvalidOptions { .. })));
    /// ```
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Child processes: where each child's standard output goes (default: this process's).
    ///
    /// ```
    /// use tinypool::{ChildOutput, Pool, Runtime};
    ///
    /// // This program's stdout carries its own protocol: workers print to stderr instead.
    /// let builder = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .stdout(ChildOutput::Stderr);
    /// ```
    pub fn stdout(mut self, output: ChildOutput) -> Self {
        self.stdout = output;
        self
    }

    /// Child processes: where each child's standard error goes (default: this process's).
    /// [`ChildOutput::Stderr`] is the same as [`ChildOutput::Inherit`] here.
    pub fn stderr(mut self, output: ChildOutput) -> Self {
        self.stderr = output;
        self
    }

    /// Child processes: how values cross to a child (default: [`Serialization::Postcard`]).
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use tinypool::{Pool, Runtime, Serialization};
    ///
    /// // Arguments of this type need a self-describing format: postcard cannot carry an
    /// // untagged enum, JSON (the `json` feature) can.
    /// #[derive(Serialize, Deserialize)]
    /// #[serde(untagged)]
    /// enum UserId {
    ///     Number(u64),
    ///     Name(String),
    /// }
    ///
    /// let builder = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .serialization(Serialization::Json);
    /// ```
    pub fn serialization(mut self, serialization: Serialization) -> Self {
        self.serialization = serialization;
        self
    }

    /// Child processes: how long a child may take to start and answer the handshake before
    /// its tasks fail with [`Error::WorkerStartFailed`] (default: 10 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Child processes: the largest message between the pool and a child, in bytes (default:
    /// 64 MiB). A bigger one fails its task with [`Error::Protocol`]; a `worker_data` too big
    /// for it makes [`build`](Builder::build) fail with [`Error::InvalidOptions`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Child processes: a child whose resident memory exceeds `bytes` after a task is
    /// replaced (default: never).
    ///
    /// ```
    /// use tinypool::{Pool, Runtime};
    ///
    /// // The exports call a library that leaks: a child that grew past 256 MiB is replaced
    /// // once its task is done, instead of growing until the machine swaps.
    /// let builder = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .max_memory_limit_before_recycle(256 << 20);
    /// ```
    pub fn max_memory_limit_before_recycle(mut self, bytes: u64) -> Self {
        self.memory_recycle = Some(bytes);
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

    pub(crate) fn into_options(mut self) -> Result<Options, Error> {
        let invalid = |message: &str| Err(Error::InvalidOptions(message.to_owned()));
        let threads = self.runtime == Runtime::Threads;
        let exports = match self.exports.take() {
            Some(exports) if exports.is_empty() => {
                return invalid("exports: no function is exported");
            }
            Some(exports) => exports,
            None if threads => return invalid("exports: a threads pool needs exports"),
            // A child-process pool's workers own their exports.
            None => Exports::new(),
        };
        let process_only = [
            (self.filename.is_some(), "filename"),
            (!self.argv.is_empty(), "argv"),
            (!self.env.is_empty(), "env"),
            (self.stdout != ChildOutput::Inherit, "stdout"),
            (self.stderr != ChildOutput::Inherit, "stderr"),
            (
                self.memory_recycle.is_some(),
                "max_memory_limit_before_recycle",
            ),
            (
                self.resource_limits.max_memory.is_some(),
                "resource_limits.max_memory",
            ),
            (
                self.resource_limits.max_cpu_time.is_some(),
                "resource_limits.max_cpu_time",
            ),
        ];
        for (set, option) in process_only {
            if threads && set {
                return Err(Error::InvalidOptions(format!(
                    "{option}: only the ChildProcess runtime can honour it"
                )));
            }
        }
        if !threads && self.resource_limits.stack_size.is_some() {
            return invalid("resource_limits.stack_size: only the Threads runtime can honour it");
        }
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (min_threads, max_threads) = match (self.min_threads, self.max_threads) {
            (Some(min), Some(max)) if min > max => {
                return invalid("min_threads and max_threads must not conflict (min > max)");
            }
            (Some(min), Some(max)) => (min, max),
            (Some(min), None) => (min, parallelism.max(min)),
            (None, Some(max)) => ((parallelism / 2).max(1).min(max), max),
            (None, None) => ((parallelism / 2).max(1), parallelism),
        };
        if max_threads == 0 {
            return invalid("max_threads must be at least 1");
        }
        if self.concurrent_tasks_per_worker == 0 {
            return invalid("concurrent_tasks_per_worker must be at least 1");
        }
        if let Some(teardown) = self.teardown.as_ref().filter(|_| threads) {
            match exports.get(teardown) {
                None => {
                    return Err(Error::InvalidOptions(format!(
                        "teardown: no function is exported as \"{teardown}\""
                    )))
                }
                Some(export) if export.arg_type() != type_name::<()>() => {
                    return Err(Error::InvalidOptions(format!(
                        "teardown: \"{teardown}\" must take `()`, not `{}`",
                        export.arg_type()
                    )))
                }
                Some(_) => {}
            }
        }
        let max_queue = match self.max_queue {
            MaxQueue::Unbounded => None,
            MaxQueue::Auto => Some(max_threads.saturating_mul(max_threads)),
            MaxQueue::Limit(limit) => Some(limit),
        };
        let process = if threads {
            None
        } else {
            Some(Arc::new(self.process_options()?))
        };
        Ok(Options {
            process,
            exports: Arc::new(exports),
            name: self.name.filter(|name| name != DEFAULT_NAME),
            min_threads,
            max_threads,
            idle_timeout: self.idle_timeout,
            max_queue,
            concurrent_tasks_per_worker: self.concurrent_tasks_per_worker,
            isolate_workers: self.isolate_workers,
            terminate_timeout: self.terminate_timeout,
            teardown: self.teardown,
            worker_data: self.worker_data,
            stack_size: self.resource_limits.stack_size,
            thread_name: self.thread_name,
            on_error: self.on_error,
        })
    }
}

impl Builder {
    fn process_options(&self) -> Result<ProcessOptions, Error> {
        let invalid = |message: String| Err(Error::InvalidOptions(message));
        if !cfg!(unix) {
            return invalid("runtime: the ChildProcess runtime needs a Unix system".into());
        }
        if std::env::var_os(WORKER_ENV).is_some() {
            return invalid(format!(
                "runtime: this process was started as a tinypool worker ({WORKER_ENV} is set) \
                 but did not call tinypool::worker::serve_if_worker first in main"
            ));
        }
        if !self.serialization.available() {
            return invalid("serialization: Json needs the crate's `json` feature".into());
        }
        if self.max_message_size < 64 {
            return invalid("max_message_size must be at least 64 bytes".into());
        }
        let (program, executable) = match &self.filename {
            Some(path) => {
                #[cfg(unix)]
                check_executable(path)?;
                (path.clone(), path.clone())
            }
            None => {
                let program = std::env::current_exe().map_err(|e| {
                    Error::InvalidOptions(format!("filename: cannot find this executable: {e}"))
                })?;
                let running = Path::new("/proc/self/exe");
                let executable = if cfg!(target_os = "linux") && running.exists() {
                    running.to_owned()
                } else {
                    program.clone()
                };
                (program, executable)
            }
        };
        let worker_data = match &self.worker_data {
            Some(data) => Some((data.type_name, (data.encode)(self.serialization)?)),
            None => None,
        };
        if let Some((type_name, bytes)) = &worker_data {
            // `INIT` carries it, with a few fields beside: it must fit under the cap.
            let teardown = self.teardown.as_ref().map_or(0, String::len);
            let init = bytes.len() + type_name.len() + teardown + 128;
            if init > self.max_message_size {
                return invalid(format!(
                    "worker_data: {} bytes encoded, more than max_message_size ({} bytes) \
                     lets a child receive",
                    bytes.len(),
                    self.max_message_size
                ));
            }
        }
        if self.filename.is_none() {
            // Re-executing a program that does not serve first would run it whole in every
            // worker (under `cargo test`, the whole test suite): refused before any child.
            crate::worker::check_reexecutable().map_err(Error::InvalidOptions)?;
        }
        Ok(ProcessOptions {
            program,
            executable,
            args: self.argv.clone(),
            stdout: self.stdout,
            stderr: self.stderr,
            env: self.env.clone(),
            serialization: self.serialization,
            startup_timeout: self.startup_timeout,
            max_message_size: self.max_message_size,
            memory_recycle: self.memory_recycle,
            max_memory: self.resource_limits.max_memory,
            max_cpu_time: self.resource_limits.max_cpu_time,
            worker_data,
        })
    }
}

/// Refuses a `filename` that names no executable file, as `posix_spawnp` would find it (a
/// bare name is looked up in `PATH`): the mistake is named once, at `build`, rather than as
/// the start failure of every worker.
#[cfg(unix)]
fn check_executable(path: &Path) -> Result<(), Error> {
    use std::os::unix::ffi::OsStrExt;

    let refuse = |why: &str| {
        Err(Error::InvalidOptions(format!(
            "filename: `{}` {why}",
            path.display()
        )))
    };
    let executable = |candidate: &Path| {
        let Ok(c_path) = std::ffi::CString::new(candidate.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: access reads the NUL-terminated path, which outlives the call.
        candidate.is_file() && unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0
    };
    if path.as_os_str().is_empty() {
        return refuse("is empty");
    }
    if !path.as_os_str().as_bytes().contains(&b'/') {
        // glibc's default when PATH is unset.
        let search = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
        if std::env::split_paths(&search).any(|dir| executable(&dir.join(path))) {
            return Ok(());
        }
        return refuse("is not an executable file in any directory of PATH");
    }
    match std::fs::metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => refuse("does not exist"),
        Err(error) => refuse(&format!("cannot be read: {error}")),
        Ok(metadata) if !metadata.is_file() => refuse("is not a file"),
        Ok(_) if !executable(path) => refuse("is not executable (no execute permission)"),
        Ok(_) => Ok(()),
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

/// Options of one task, for [`Pool::run_with`].
///
/// ```
/// use tinypool::{AbortController, RunOptions};
///
/// let controller = AbortController::new();
/// let (_main, worker) = tinypool::channel::<String>();
/// let options = RunOptions::new()
///     .name("multiply")
///     .signal(controller.signal())
///     .channel(worker);
/// # drop(options);
/// ```
#[derive(Default)]
#[must_use = "options do nothing until given to `Pool::run_with`"]
pub struct RunOptions {
    pub(crate) name: Option<Cow<'static, str>>,
    pub(crate) signal: Option<AbortSignal>,
    pub(crate) port: Option<Box<dyn ErasedPort>>,
}

impl RunOptions {
    /// No options: the pool's default export, no signal, no channel.
    pub fn new() -> Self {
        RunOptions::default()
    }

    /// Runs the export of this name instead of the pool's default.
    ///
    /// ```
    /// use tinypool::{Exports, Pool, RunOptions};
    ///
    /// let pool = Pool::builder()
    ///     .exports(
    ///         Exports::new()
    ///             .export("add", |(a, b): (i32, i32)| a + b)
    ///             .export("multiply", |(a, b): (i32, i32)| a * b),
    ///     )
    ///     .build()?;
    /// // The export chosen at run time, by a command the user typed, say.
    /// for (command, expected) in [("add", 10), ("multiply", 24)] {
    ///     let task = pool.run_with::<i32, _>((4, 6), RunOptions::new().name(command));
    ///     assert_eq!(task.wait()?, expected);
    /// }
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Aborts the task when `signal` fires. An abortable task never shares a worker.
    ///
    /// One signal can cancel a whole batch, running and queued tasks alike:
    ///
    /// ```
    /// use tinypool::{worker, AbortController, Error, Exports, Pool, RunOptions, Task};
    ///
    /// # // A long job that runs until it is aborted, checking between steps.
    /// # let pool = Pool::builder()
    /// #     .exports(Exports::new().export_default(|n: u32| {
    /// #         while !worker::aborted() {
    /// #             std::thread::sleep(std::time::Duration::from_millis(1)); // A step.
    /// #         }
    /// #         n
    /// #     }))
    /// #     .max_threads(2)
    /// #     .build()?;
    /// let search = AbortController::new();
    /// let tasks: Vec<Task<u32>> = (0..4u32)
    ///     .map(|n| pool.run_with(n, RunOptions::new().signal(search.signal())))
    ///     .collect();
    /// search.abort_with("the user found it");
    /// for task in tasks {
    ///     assert!(matches!(task.wait(), Err(Error::Aborted { .. })));
    /// }
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn signal(mut self, signal: AbortSignal) -> Self {
        self.signal = Some(signal);
        self
    }

    /// Hands `port` to the task, which reaches it with
    /// [`worker::port`](crate::worker::port). The port closes when the task ends.
    ///
    /// However it ends: a caller reading until [`Error::Disconnected`] never waits forever.
    ///
    /// ```
    /// use tinypool::{worker, Error, Exports, Pool, RunOptions};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|rows: u32| {
    ///         let results = worker::port::<u32>().expect("run with a channel");
    ///         for row in 0..rows {
    ///             assert!(row < 2, "row {row} is malformed");
    ///             results.send(row).expect("the caller listens");
    ///         }
    ///     }))
    ///     .build()?;
    /// let (results, port) = tinypool::channel::<u32>();
    /// let task = pool.run_with::<(), _>(5u32, RunOptions::new().channel(port));
    /// let received: Vec<u32> = std::iter::from_fn(|| results.recv().ok()).collect();
    /// assert_eq!(received, [0, 1]); // What was sent before the panic, then `Disconnected`.
    /// assert!(matches!(task.wait(), Err(Error::Panicked { .. })));
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn channel<T>(mut self, port: Port<T>) -> Self
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        self.port = Some(Box::new(port));
        self
    }
}

impl fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("name", &self.name)
            .field("signal", &self.signal)
            .field("channel", &self.port.is_some())
            .finish()
    }
}
