//! The pool's options (the [`Builder`]) and a task's ([`RunOptions`]): what each option
//! means is documented on its builder method; `validate.rs` turns a builder into the
//! [`Options`] a pool runs with, refusing what no runtime could honour.

use std::borrow::Cow;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::Serialization;
use crate::exports::Exports;
use crate::hooks::WorkerHooks;
use crate::worker::context::WorkerData;
use crate::Error;

mod builder;
mod lifecycle;
mod process;
mod run;
mod validate;

pub use builder::Builder;
pub use run::RunOptions;

/// Where a pool's workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Runtime {
    /// Threads of this process: arguments and results move, nothing is serialized.
    #[default]
    Threads,
    /// Child processes, on Unix and Windows: each worker is this program re-executed, which
    /// must then serve first ([`worker::serve_if_worker`](crate::worker::serve_if_worker) in
    /// `main`, or [`test_workers!`](crate::test_workers) in a test binary), or the `filename`
    /// executable; it talks to the pool over a socket (Unix) or two anonymous pipes
    /// (Windows). A crash, abort or `exit` in a child fails only its own task; the pool
    /// replaces the child.
    ChildProcess,
}

/// Where a child process's standard output or error goes, for [`Builder::stdout`] and
/// [`Builder::stderr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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
    /// a child applies it once started, before its first task. On Windows, the cap of its
    /// Job Object on its committed memory (`JOB_OBJECT_LIMIT_PROCESS_MEMORY`), from its start.
    pub max_memory: Option<u64>,
    /// A cap on each child's CPU time (`RLIMIT_CPU`, whole seconds, rounded up), counted
    /// from the child's start. Child processes. On Windows, the cap of its Job Object on its
    /// user-mode CPU time (`PerProcessUserTimeLimit`, in units of 100 ns).
    pub max_cpu_time: Option<Duration>,
}

impl ResourceLimits {
    /// No limits.
    pub const fn new() -> Self {
        ResourceLimits {
            stack_size: None,
            max_memory: None,
            max_cpu_time: None,
        }
    }

    /// Sets the stack size of each worker thread, in bytes.
    #[must_use = "the builder methods return the changed limits"]
    pub const fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Caps each child's address space (on Windows, its committed memory), in bytes. A task
    /// that hits it fails with [`Error::ResourceLimit`].
    #[must_use = "the builder methods return the changed limits"]
    pub const fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// Caps each child's CPU time, counted from the child's start (not per task): the task
    /// running when the child reaches it fails with [`Error::ResourceLimit`], and the child is
    /// replaced. To bound each task, combine it with `isolate_workers(true)`. (On Windows only
    /// user-mode time counts, and the system checks it now and then, so a child may run on a
    /// little past the cap; the job's accounting tells a child it ended from one that died
    /// otherwise.)
    #[must_use = "the builder methods return the changed limits"]
    pub const fn max_cpu_time(mut self, time: Duration) -> Self {
        self.max_cpu_time = Some(time);
        self
    }
}

pub(crate) type ErrorHook = Arc<dyn Fn(Error) + Send + Sync>;

/// The options of a [`Pool`](crate::Pool), validated and resolved.
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
    pub(crate) setup: Option<String>,
    pub(crate) hooks: WorkerHooks,
    pub(crate) worker_data: Option<WorkerData>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) thread_name: String,
    pub(crate) on_error: Option<ErrorHook>,
    pub(crate) task_timeout: Option<Duration>,
    /// Set for the child-process runtime.
    pub(crate) process: Option<Arc<ProcessOptions>>,
    pub(crate) record_timing: bool,
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
    /// Fork workers from a fork server (Linux).
    pub(crate) fork_server: bool,
    /// `worker_data`, encoded once for every child: its type name and bytes.
    pub(crate) worker_data: Option<(&'static str, Vec<u8>)>,
}
