//! The one error type of the crate.

use std::fmt;
use std::time::Duration;

/// Everything that can go wrong with a task, a pool or a channel.
///
/// Every task resolves exactly once, either with its value or with one of these. The messages
/// are written for the person reading a log, and say what to do where they can; the variants
/// are for the code that matches on them.
///
/// The enum is `#[non_exhaustive]`, and fields may be added to its variants: match with a
/// catch-all arm and `..` in struct patterns.
///
/// ```
/// use tinypool::{Error, Exports, Pool};
///
/// # let pool = Pool::builder()
/// #     .exports(Exports::new().export_default(|path: String| {
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
///
/// A mismatch names the export and the side:
///
/// ```
/// use tinypool::{Error, Exports, Pool, RunOptions, TypeRole};
///
/// let pool = Pool::builder()
///     .exports(Exports::new().export("add", |(a, b): (i32, i32)| a + b))
///     .build()?;
/// let error = pool
///     .run_with::<i32, _>((1u32, 2u32), RunOptions::new().name("add"))
///     .wait()
///     .unwrap_err();
/// assert!(matches!(
///     &error,
///     Error::TypeMismatch { what: TypeRole::Argument { function }, .. } if function == "add"
/// ));
/// assert_eq!(
///     error.to_string(),
///     "the argument of \"add\" has the wrong type: the export takes `(i32, i32)`, the task \
///      passed `(u32, u32)`"
/// );
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The queue already holds `max_queue` tasks (counting the places
    /// [`Permit`](crate::Permit)s hold); [`Pool::reserve`](crate::Pool::reserve) waits for
    /// room instead.
    QueueFull,
    /// `max_queue` is 0 and every worker is busy.
    NoQueue,
    /// The task was aborted: its abort signal fired, with the reason given to
    /// [`AbortController::abort_with`](crate::AbortController::abort_with), if any, or
    /// [`Task::abort`](crate::Task::abort) (or [`abort_with`](crate::Task::abort_with)) was
    /// called. A running task's worker is
    /// retired (a thread left to finish the function, a child killed), except for an async
    /// export's task, whose future is dropped while its worker goes on.
    Aborted {
        /// The reason passed to the controller or to `abort_with`, if any.
        reason: Option<String>,
    },
    /// The task was still queued or running when its timeout passed
    /// ([`RunOptions::timeout`](crate::RunOptions::timeout), or the pool's
    /// [`Builder::task_timeout`](crate::Builder::task_timeout)); it is then treated as an
    /// abort.
    TimedOut {
        /// The timeout the task was given, counted from its submission.
        after: Duration,
    },
    /// The task was still queued when
    /// [`Pool::cancel_pending_tasks`](crate::Pool::cancel_pending_tasks) was called.
    Cancelled,
    /// The pool was destroyed before the task finished, or the task was submitted after that.
    #[doc(alias = "Destroyed")]
    Terminated,
    /// The task was submitted after [`Pool::close`](crate::Pool::close) (or after the last
    /// [`Pool`](crate::Pool) handle was dropped): a closing pool finishes the tasks it has
    /// and takes no new ones.
    Closed,
    /// A worker had not stopped `terminate_timeout` after [`Pool::destroy`](crate::Pool::destroy),
    /// or after a [`Pool::close`](crate::Pool::close) had drained the pool (what
    /// [`Destroy`](crate::Destroy) and [`Close`](crate::Close) return): still running a
    /// function, or its teardown. A thread cannot be killed: it is left to finish on its own,
    /// detached from the pool. (A child process is killed instead.)
    TerminateTimeout {
        /// The id of the (first) worker that did not stop in time.
        worker: usize,
    },
    /// The exported function panicked (or, in the child-process runtime, a `Serialize` or
    /// `Deserialize` impl did); the message is the panic's payload.
    Panicked {
        /// The panic message (`"<non-string panic payload>"` when it was not a string).
        message: String,
        /// Where the panic happened, as `file:line:column` (what the default panic hook
        /// prints). `None` when the crate's panic hook did not see the panic: a hook set
        /// after the first pool was built that does not call the one it replaced.
        location: Option<String>,
    },
    /// No function is exported under this name.
    NoSuchFunction {
        /// The name that was asked for (`"default"` for the default export).
        name: String,
    },
    /// The argument or the result does not have the exact type of the export (no conversions:
    /// `i32` is not `i64`), or a worker asked for data or a port of another type than was
    /// given. `what` says which.
    TypeMismatch {
        /// What has the wrong type: the argument or the result of which export, the task's
        /// channel, or `worker_data`.
        what: TypeRole,
        /// The type that is there: the export's argument or result type, the channel's
        /// message type, the type of the pool's `worker_data`.
        expected: String,
        /// The type that was asked for: the task's argument or result type, the type given
        /// to [`worker::port`](crate::worker::port) or [`worker::data`](crate::worker::data).
        found: String,
    },
    /// A builder option is invalid, or one the chosen runtime cannot honour (`env` for
    /// threads, say, or exports with local functions for child processes); the message names
    /// it (and, for `filename`, the path that does not exist or is not an executable file).
    /// Also the error of a task that calls a local export
    /// ([`Export::local`](crate::Export::local)) on a child-process pool.
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
        /// What went wrong, with the worker executable's path for a child process. A child
        /// that ended without a word of the handshake is told that its `main` must call
        /// [`worker::serve_if_worker`](crate::worker::serve_if_worker) first.
        message: String,
    },
    /// A child-process worker died while running the task: `exit(n)`, a signal (a crash, a
    /// kill from outside, `abort()`), or a panic in a build with `panic = "abort"`.
    ///
    /// Windows has no signals: there a crash or an `abort()` ends the worker with the code of
    /// its exception (`0xC0000005` for an access violation, `0xC0000409` for `abort()`, as an
    /// `i32`; displayed in hex, with what it means), and one terminated from outside with the
    /// code its terminator chose.
    WorkerExited {
        /// The exit code, if it exited. On Windows, the process's exit code, which for a
        /// crash is its `NTSTATUS` (`0xC0000005` for an access violation, say).
        code: Option<i32>,
        /// The signal that killed it, if one did (Unix); always `None` on Windows.
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
    /// `max_message_size`, or could not be (de)serialized. A type that postcard cannot carry
    /// (an untagged enum, `#[serde(flatten)]`, `serde_json::Value`) says to use
    /// [`Serialization::Json`](crate::Serialization::Json).
    Protocol {
        /// What was wrong with it.
        message: String,
    },
}

/// Defines [`ErrorKind`] and its list of every kind from one table, so that the two cannot
/// drift apart.
macro_rules! error_kinds {
    ($($kind:ident: $describe:literal,)*) => {
        /// The kind of an [`Error`]: its variant, without the fields ([`Error::kind`]).
        ///
        /// Each kind is the [`Error`] variant of the same name; it displays as a few words.
        /// Like the error, it is `#[non_exhaustive]`: match with a catch-all arm.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $(
                #[doc = concat!("[`Error::", stringify!($kind), "`]: ", $describe, ".")]
                $kind,
            )*
        }

        impl ErrorKind {
            /// Every kind, each at the index `kind as usize`: what
            /// [`Stats`](crate::Stats) counts by.
            pub(crate) const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind),*];

            /// What the kind means, in a few words.
            fn describe(self) -> &'static str {
                match self {
                    $(ErrorKind::$kind => $describe,)*
                }
            }
        }
    };
}

error_kinds! {
    QueueFull: "task queue full",
    NoQueue: "no task queue",
    Aborted: "aborted",
    TimedOut: "timed out",
    Cancelled: "cancelled",
    Terminated: "pool destroyed",
    Closed: "pool closed",
    TerminateTimeout: "worker did not terminate in time",
    Panicked: "panicked",
    NoSuchFunction: "no such function",
    TypeMismatch: "type mismatch",
    InvalidOptions: "invalid options",
    Disconnected: "channel disconnected",
    NoChannel: "no channel",
    WorkerStartFailed: "worker start failed",
    WorkerExited: "worker process exited",
    ResourceLimit: "resource limit hit",
    Protocol: "worker protocol error",
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// `text` cut to at most `limit` bytes, at a character's boundary, and marked with `…`.
fn cut_text(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// What has the wrong type in an [`Error::TypeMismatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypeRole {
    /// The argument a task passed to an export.
    Argument {
        /// The export's name (`"default"` for the default export).
        function: String,
    },
    /// The result a task expects of an export.
    Result {
        /// The export's name (`"default"` for the default export).
        function: String,
    },
    /// The messages of the task's channel, asked for with [`worker::port`](crate::worker::port).
    Channel,
    /// The pool's `worker_data`, asked for with [`worker::data`](crate::worker::data).
    WorkerData,
}

impl fmt::Display for TypeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeRole::Argument { function } => write!(f, "the argument of \"{function}\""),
            TypeRole::Result { function } => write!(f, "the result of \"{function}\""),
            TypeRole::Channel => f.write_str("the task's channel"),
            TypeRole::WorkerData => f.write_str("worker_data"),
        }
    }
}

impl Error {
    /// The same error with each of its texts cut to at most `limit` bytes (and `…`): what a
    /// child sends when the whole would not fit in a frame (a long panic message, say).
    pub(crate) fn cut_to(self, limit: usize) -> Error {
        let cut = |text: String| cut_text(text, limit);
        match self {
            Error::Panicked { message, location } => Error::Panicked {
                message: cut(message),
                location: location.map(cut),
            },
            Error::NoSuchFunction { name } => Error::NoSuchFunction { name: cut(name) },
            Error::TypeMismatch {
                what,
                expected,
                found,
            } => Error::TypeMismatch {
                what: match what {
                    TypeRole::Argument { function } => TypeRole::Argument {
                        function: cut(function),
                    },
                    TypeRole::Result { function } => TypeRole::Result {
                        function: cut(function),
                    },
                    other => other,
                },
                expected: cut(expected),
                found: cut(found),
            },
            Error::Aborted { reason } => Error::Aborted {
                reason: reason.map(cut),
            },
            Error::InvalidOptions(message) => Error::InvalidOptions(cut(message)),
            Error::WorkerStartFailed { message } => Error::WorkerStartFailed {
                message: cut(message),
            },
            Error::WorkerExited {
                code,
                signal,
                message,
            } => Error::WorkerExited {
                code,
                signal,
                message: message.map(cut),
            },
            Error::ResourceLimit { limit: which } => Error::ResourceLimit { limit: cut(which) },
            Error::Protocol { message } => Error::Protocol {
                message: cut(message),
            },
            other => other,
        }
    }

    /// The error's kind: its variant without its fields, to count, compare or match on
    /// cheaply (as [`std::io::ErrorKind`] is to [`std::io::Error`]). [`Stats`](crate::Stats)
    /// counts failed tasks by kind.
    ///
    /// ```
    /// use tinypool::{ErrorKind, Exports, Pool, RunOptions};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u32| n))
    ///     .build()?;
    /// let missing = pool.run_with::<u32, _>(1u32, RunOptions::new().name("nope")).wait();
    /// assert_eq!(missing.unwrap_err().kind(), ErrorKind::NoSuchFunction);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::QueueFull => ErrorKind::QueueFull,
            Error::NoQueue => ErrorKind::NoQueue,
            Error::Aborted { .. } => ErrorKind::Aborted,
            Error::TimedOut { .. } => ErrorKind::TimedOut,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Terminated => ErrorKind::Terminated,
            Error::Closed => ErrorKind::Closed,
            Error::TerminateTimeout { .. } => ErrorKind::TerminateTimeout,
            Error::Panicked { .. } => ErrorKind::Panicked,
            Error::NoSuchFunction { .. } => ErrorKind::NoSuchFunction,
            Error::TypeMismatch { .. } => ErrorKind::TypeMismatch,
            Error::InvalidOptions(_) => ErrorKind::InvalidOptions,
            Error::Disconnected => ErrorKind::Disconnected,
            Error::NoChannel => ErrorKind::NoChannel,
            Error::WorkerStartFailed { .. } => ErrorKind::WorkerStartFailed,
            Error::WorkerExited { .. } => ErrorKind::WorkerExited,
            Error::ResourceLimit { .. } => ErrorKind::ResourceLimit,
            Error::Protocol { .. } => ErrorKind::Protocol,
        }
    }

    pub(crate) fn type_mismatch(what: TypeRole, expected: &str, found: &str) -> Self {
        Error::TypeMismatch {
            what,
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
            Error::TimedOut { after } => write!(f, "the task timed out after {after:?}"),
            Error::Cancelled => f.write_str("the task has been cancelled"),
            Error::Terminated => f.write_str("the pool has been destroyed (terminating worker)"),
            Error::Closed => {
                f.write_str("the pool is closed: it finishes its tasks and takes no new ones")
            }
            Error::TerminateTimeout { worker } => {
                write!(
                    f,
                    "failed to terminate worker {worker} within terminate_timeout"
                )
            }
            Error::Panicked {
                message,
                location: None,
            } => write!(f, "the task panicked: {message}"),
            Error::Panicked {
                message,
                location: Some(location),
            } => write!(f, "the task panicked at {location}: {message}"),
            Error::NoSuchFunction { name } => write!(f, "no function exported as \"{name}\""),
            Error::TypeMismatch {
                what,
                expected,
                found,
            } => {
                write!(f, "{what} has the wrong type: ")?;
                match what {
                    TypeRole::Argument { .. } => write!(
                        f,
                        "the export takes `{expected}`, the task passed `{found}`"
                    ),
                    TypeRole::Result { .. } => write!(
                        f,
                        "the export returns `{expected}`, the task expects `{found}`"
                    ),
                    TypeRole::Channel => write!(
                        f,
                        "it carries `{expected}`, the function asked for a port of `{found}`"
                    ),
                    TypeRole::WorkerData => write!(
                        f,
                        "the pool was given a `{expected}`, the function asked for a `{found}`"
                    ),
                }
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
                match code.map(|code| (code, exception(code))) {
                    Some((code, Some(name))) => {
                        write!(f, " with code {:#X} ({name})", code as u32)?
                    }
                    Some((code, None)) => write!(f, " with code {code}")?,
                    None => {}
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

/// What a Windows process's exit `code` says, if it is the code of an exception that ended
/// it (a crash, an `abort()`), which an exit code on Unix never is (it is 0 to 255).
fn exception(code: i32) -> Option<&'static str> {
    Some(match code as u32 {
        0xC000_0005 => "an access violation",
        0xC000_001D => "an illegal instruction",
        0xC000_0094 => "an integer division by zero",
        0xC000_00FD => "a stack overflow",
        0xC000_0374 => "a corrupted heap",
        0xC000_0409 => "a fast fail, as `abort()` ends a process",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cut text fits its limit, ends at a character's boundary with `…`, and keeps what it
    /// keeps; a text that fits is left alone.
    #[test]
    fn a_cut_text_fits_and_keeps_whole_characters() {
        let text = "héllo wörld, ünïcode ✓✓✓ and more";
        for limit in 3..=text.len() + 1 {
            let cut = cut_text(text.to_owned(), limit);
            assert!(cut.len() <= limit, "{cut:?} over {limit}");
            match cut.strip_suffix('…') {
                Some(kept) if text.len() > limit => assert!(text.starts_with(kept), "{cut:?}"),
                _ => assert_eq!(cut, text, "cut at {limit}"),
            }
        }
        let error = Error::Panicked {
            message: "x".repeat(100),
            location: Some("src/lib.rs:1:1".to_owned()),
        };
        match error.cut_to(8) {
            Error::Panicked { message, location } => {
                assert_eq!(message, "xxxxx…");
                assert_eq!(location.as_deref(), Some("src/l…"));
            }
            other => panic!("the kind changed: {other:?}"),
        }
    }

    fn mismatch(what: TypeRole) -> String {
        Error::type_mismatch(what, "(i32, i32)", "(u32, u32)").to_string()
    }

    #[test]
    fn a_type_mismatch_says_what_and_where() {
        let function = || "add".to_owned();
        assert_eq!(
            mismatch(TypeRole::Argument {
                function: function()
            }),
            "the argument of \"add\" has the wrong type: the export takes `(i32, i32)`, the \
             task passed `(u32, u32)`"
        );
        assert_eq!(
            mismatch(TypeRole::Result {
                function: function()
            }),
            "the result of \"add\" has the wrong type: the export returns `(i32, i32)`, the \
             task expects `(u32, u32)`"
        );
        assert_eq!(
            mismatch(TypeRole::Channel),
            "the task's channel has the wrong type: it carries `(i32, i32)`, the function \
             asked for a port of `(u32, u32)`"
        );
        assert_eq!(
            mismatch(TypeRole::WorkerData),
            "worker_data has the wrong type: the pool was given a `(i32, i32)`, the function \
             asked for a `(u32, u32)`"
        );
    }

    #[test]
    fn every_kind_sits_at_its_own_index() {
        for (index, &kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind as usize, index, "{kind:?}");
        }
        assert_eq!(Error::Cancelled.kind(), ErrorKind::Cancelled);
        assert_eq!(ErrorKind::Panicked.to_string(), "panicked");
    }

    #[test]
    fn a_panic_says_where_when_known() {
        let panicked = |location: Option<&str>| Error::Panicked {
            message: "boom".to_owned(),
            location: location.map(str::to_owned),
        };
        assert_eq!(
            panicked(Some("src/main.rs:3:5")).to_string(),
            "the task panicked at src/main.rs:3:5: boom"
        );
        assert_eq!(panicked(None).to_string(), "the task panicked: boom");
    }

    #[test]
    fn a_timeout_says_after_how_long() {
        let error = Error::TimedOut {
            after: Duration::from_millis(250),
        };
        assert_eq!(error.to_string(), "the task timed out after 250ms");
    }

    #[test]
    fn a_windows_crash_says_which_exception_ended_the_worker() {
        let exited = |code: u32| Error::WorkerExited {
            code: Some(code as i32),
            signal: None,
            message: None,
        };
        assert_eq!(
            exited(0xC000_0005).to_string(),
            "the worker process exited with code 0xC0000005 (an access violation)"
        );
        // Any other code, as it is.
        assert_eq!(
            exited(3).to_string(),
            "the worker process exited with code 3"
        );
        assert_eq!(
            exited(0xC000_0135).to_string(),
            "the worker process exited with code -1073741515"
        );
    }
}
