//! Workers as a pool's user sees them: a snapshot of one ([`WorkerInfo`]), why one left the
//! pool ([`Exit`]), and the hooks that are told
//! ([`Builder::on_worker_start`](crate::Builder::on_worker_start),
//! [`Builder::on_worker_exit`](crate::Builder::on_worker_exit)).
//!
//! The scheduler knows the reason where it retires the worker, and notes it there (on the
//! record of the worker's thread); the worker's thread reads it once the worker has stopped
//! (its teardown run, its child reaped) and calls the hook with it.

use std::fmt;
use std::sync::Arc;

/// What [`Builder::on_worker_start`](crate::Builder::on_worker_start) keeps.
pub(crate) type StartHook = Arc<dyn Fn(&WorkerInfo) + Send + Sync>;
/// What [`Builder::on_worker_exit`](crate::Builder::on_worker_exit) keeps.
pub(crate) type ExitHook = Arc<dyn Fn(&WorkerInfo, &Exit) + Send + Sync>;

/// The pool's worker hooks (none by default), called as `hooks.rs` says.
#[derive(Clone, Default)]
pub(crate) struct WorkerHooks {
    pub(crate) start: Option<StartHook>,
    pub(crate) exit: Option<ExitHook>,
}

/// A snapshot of one worker, from [`Pool::workers`](crate::Pool::workers), or as the worker
/// hooks ([`Builder::on_worker_start`](crate::Builder::on_worker_start),
/// [`Builder::on_worker_exit`](crate::Builder::on_worker_exit)) are handed it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's id, as [`worker::id`](crate::worker::id) returns it inside.
    pub id: usize,
    /// The child's process id in the child-process runtime; `None` for threads, and for a
    /// child still starting (spawned, its handshake not yet done): a worker is listed from the
    /// moment the pool reserves it.
    pub pid: Option<u32>,
    /// Tasks the worker has taken: the running one and those waiting in its own queue.
    pub running: usize,
}

/// Why a worker left the pool, as
/// [`Builder::on_worker_exit`](crate::Builder::on_worker_exit) is told.
///
/// A worker leaves for exactly one of these reasons; when two apply at once (an isolated child
/// over its memory limit, say), the one listed first here wins, except that `Crashed` always
/// wins over the rest.
///
/// ```
/// use tinypool::Exit;
///
/// let exit = Exit::Crashed { code: None, signal: Some(9) };
/// assert_eq!(exit.to_string(), "crashed (signal 9)");
/// assert!(exit.is_crash());
/// assert!(!Exit::IdleTimeout.is_crash());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Exit {
    /// It stayed idle for [`idle_timeout`](crate::Builder::idle_timeout) while the pool had
    /// more than `min_threads` workers. (Not [`Pool::idle`](crate::Pool::idle), which waits
    /// for the pool to have nothing to do.)
    IdleTimeout,
    /// [`Pool::recycle_workers`](crate::Pool::recycle_workers) replaced it (at once if it was
    /// idle, else once its tasks were done).
    Recycled,
    /// Its child process passed the soft limit
    /// [`max_memory_limit_before_recycle`](crate::Builder::max_memory_limit_before_recycle):
    /// it finished the tasks it had started and was replaced. (A child that hits a hard
    /// [`ResourceLimits`](crate::ResourceLimits) cap dies of it instead: its task fails with
    /// [`Error::ResourceLimit`](crate::Error::ResourceLimit), and the worker exits `Crashed`.)
    MemoryRecycled,
    /// It ran its one task of an [`isolate_workers`](crate::Builder::isolate_workers) pool.
    Isolated,
    /// Its running task was aborted (its [`AbortSignal`](crate::AbortSignal) fired, or
    /// [`Task::abort`](crate::Task::abort) was called): a thread left once the function
    /// returned, a child was killed. (Not for an async export's task: its abort drops its
    /// future, and the worker stays.)
    Aborted,
    /// Its running task reached its timeout ([`RunOptions::timeout`](crate::RunOptions::timeout),
    /// [`Builder::task_timeout`](crate::Builder::task_timeout)): as for `Aborted`.
    TimedOut,
    /// It died: a child process that exited, was killed by a signal, or crashed, with its exit
    /// status (`code` for an exit, `signal` for a signal). Both are `None` for a worker
    /// thread lost to a panic inside the pool itself (a bug of this crate).
    Crashed {
        /// The exit code of a child that exited. On Windows, the process's exit code, which
        /// for a crash is its `NTSTATUS` (`0xC0000005` for an access violation, say).
        code: Option<i32>,
        /// The signal that ended a child (Unix); always `None` on Windows.
        signal: Option<i32>,
    },
    /// The pool was [destroyed](crate::Pool::destroy).
    Destroyed,
    /// The pool was [closed](crate::Pool::close) (or its last handle dropped), and the worker
    /// found nothing left to do.
    Closed,
}

impl Exit {
    /// Whether the worker died rather than being let go ([`Exit::Crashed`]).
    pub const fn is_crash(&self) -> bool {
        matches!(self, Exit::Crashed { .. })
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::IdleTimeout => f.write_str("idle timeout"),
            Exit::Recycled => f.write_str("recycled"),
            Exit::MemoryRecycled => f.write_str("recycled over its memory limit"),
            Exit::Isolated => f.write_str("isolated: its task is done"),
            Exit::Aborted => f.write_str("its task was aborted"),
            Exit::TimedOut => f.write_str("its task timed out"),
            Exit::Crashed { code, signal } => {
                f.write_str("crashed")?;
                match (code, signal) {
                    (Some(code), _) => write!(f, " (exit code {code})"),
                    (None, Some(signal)) => write!(f, " (signal {signal})"),
                    (None, None) => Ok(()),
                }
            }
            Exit::Destroyed => f.write_str("the pool was destroyed"),
            Exit::Closed => f.write_str("the pool was closed"),
        }
    }
}
