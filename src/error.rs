//! The one error type of the crate.

use std::fmt;

/// Everything that can go wrong with a task, a pool or a channel.
///
/// Every task resolves exactly once, either with its value or with one of these. The messages
/// are written for the person reading a log, and the variants are for the code that matches on
/// them.
///
/// The enum is `#[non_exhaustive]`, and fields may be added to its variants: match with a
/// catch-all arm and `..` in struct patterns.
///
/// ```
/// use tinypool::{Error, Exports, Pool};
///
/// # let pool = Pool::builder()
/// #     .exports(Exports::new().default(|path: String| {
/// #         assert!(!path.is_empty(), "empty path");
/// #         path.len()
/// #     }))
/// #     .build()?;
/// fn describe(result: Result<usize, Error>) -> String {
///     match result {
///         Ok(n) => format!("{n} bytes"),
///         Err(Error::Panicked { message, .. }) => format!("bug in the export: {message}"),
///         Err(Error::Aborted { reason, .. }) => format!("cancelled: {reason:?}"),
///         Err(Error::QueueFull | Error::NoQueue) => "busy, try again later".to_owned(),
///         Err(Error::WorkerExited { code, signal, .. }) => {
///             format!("the worker crashed (code {code:?}, signal {signal:?})")
///         }
///         Err(Error::Terminated) => "shutting down".to_owned(),
///         Err(other) => format!("failed: {other}"),
///     }
/// }
/// assert_eq!(describe(pool.run("a.txt".to_owned()).wait()), "5 bytes");
/// assert_eq!(describe(pool.run(String::new()).wait()), "bug in the export: empty path");
/// # Ok::<(), tinypool::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The queue already holds `max_queue` tasks.
    QueueFull,
    /// `max_queue` is 0 and every worker is busy.
    NoQueue,
    /// The task's abort signal fired, with the reason given to
    /// [`AbortController::abort_with`](crate::AbortController::abort_with), if any.
    Aborted {
        /// The reason passed to the controller, if any.
        reason: Option<String>,
    },
    /// The task was still queued when [`Pool::cancel_pending_tasks`](crate::Pool::cancel_pending_tasks)
    /// was called.
    Cancelled,
    /// The pool was destroyed (or dropped) before the task finished, or the task was submitted
    /// after that.
    Terminated,
    /// A worker was still busy `terminate_timeout` after [`Pool::destroy`](crate::Pool::destroy).
    /// A thread cannot be killed: it is left to finish on its own, detached from the pool.
    TerminateTimeout {
        /// The id of the (first) worker that did not stop in time.
        worker: usize,
    },
    /// The exported function panicked; the message is the panic's payload.
    Panicked {
        /// The panic message (`"<non-string panic payload>"` when it was not a string).
        message: String,
    },
    /// No function is exported under this name.
    NoSuchFunction {
        /// The name that was asked for (`"default"` for the default export).
        name: String,
    },
    /// The argument or the result does not have the exact type of the export (no conversions:
    /// `i32` is not `i64`), or a worker asked for data or a port of another type than was
    /// given.
    TypeMismatch {
        /// The type the export (or the data, or the port) has.
        expected: String,
        /// The type the caller used.
        found: String,
    },
    /// A builder option is invalid; the message names it.
    InvalidOptions(String),
    /// The other side of a [`Port`](crate::Port) is closed: the task ended, or every handle to
    /// the other side was dropped.
    Disconnected,
    /// [`worker::port`](crate::worker::port) was called outside a task that was given a channel.
    NoChannel,
    /// A worker could not be started: the operating system refused a thread or a process, or
    /// a child never completed the handshake (wrong binary, `serve_if_worker` not called,
    /// crashed at start, `startup_timeout` passed).
    WorkerStartFailed {
        /// What went wrong, with the worker executable's path for a child process.
        message: String,
    },
    /// A child-process worker died while running the task: `exit(n)`, a signal (a crash, a
    /// kill from outside, `abort()`), or a panic in a build with `panic = "abort"`.
    WorkerExited {
        /// The exit code, if it exited.
        code: Option<i32>,
        /// The signal that killed it, if one did.
        signal: Option<i32>,
        /// The panic message, when the child could send it before dying.
        message: Option<String>,
    },
    /// A child-process worker hit a limit set with `resource_limits`.
    ResourceLimit {
        /// The limit: `"memory"` or `"cpu time"`.
        limit: String,
    },
    /// A message between the pool and a child-process worker was malformed, truncated or over
    /// `max_message_size`, or could not be (de)serialized.
    Protocol {
        /// What was wrong with it.
        message: String,
    },
}

impl Error {
    pub(crate) fn type_mismatch(expected: &str, found: &str) -> Self {
        Error::TypeMismatch {
            expected: expected.to_owned(),
            found: found.to_owned(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::QueueFull => f.write_str("task queue is at limit"),
            Error::NoQueue => f.write_str("no task queue available and all workers are busy"),
            Error::Aborted { reason: None } => f.write_str("the task has been aborted"),
            Error::Aborted {
                reason: Some(reason),
            } => write!(f, "the task has been aborted: {reason}"),
            Error::Cancelled => f.write_str("the task has been cancelled"),
            Error::Terminated => f.write_str("the pool has been destroyed (terminating worker)"),
            Error::TerminateTimeout { worker } => {
                write!(
                    f,
                    "failed to terminate worker {worker} within terminate_timeout"
                )
            }
            Error::Panicked { message } => write!(f, "the task panicked: {message}"),
            Error::NoSuchFunction { name } => write!(f, "no function exported as \"{name}\""),
            Error::TypeMismatch { expected, found } => {
                write!(f, "type mismatch: expected `{expected}`, found `{found}`")
            }
            Error::InvalidOptions(message) => write!(f, "invalid options: {message}"),
            Error::Disconnected => f.write_str("the other side of the channel is closed"),
            Error::NoChannel => f.write_str("this task was not given a channel"),
            Error::WorkerStartFailed { message } => {
                write!(f, "failed to start a worker: {message}")
            }
            Error::WorkerExited {
                code,
                signal,
                message,
            } => {
                f.write_str("the worker process exited")?;
                if let Some(code) = code {
                    write!(f, " with code {code}")?;
                }
                if let Some(signal) = signal {
                    write!(f, " on signal {signal}")?;
                }
                if let Some(message) = message {
                    write!(f, " after a panic: {message}")?;
                }
                Ok(())
            }
            Error::ResourceLimit { limit } => {
                write!(f, "the worker process hit its {limit} limit")
            }
            Error::Protocol { message } => write!(f, "worker protocol error: {message}"),
        }
    }
}

impl std::error::Error for Error {}
