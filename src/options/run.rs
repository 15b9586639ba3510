//! [`RunOptions`]: the options of one task.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::abort::AbortSignal;
use crate::channel::{ErasedPort, Port};

/// Options of one task, for [`Pool::run_with`](crate::Pool::run_with).
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
    pub(crate) priority: i32,
    pub(crate) timeout: Option<Duration>,
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
    /// However it ends: a caller reading until [`Error::Disconnected`](crate::Error::Disconnected)
    /// never waits forever.
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

impl RunOptions {
    /// Where the task stands in the queue: a task of higher priority runs before every queued
    /// task of lower priority, and tasks of one priority run in the order they came. The
    /// default is 0; negative priorities run after it.
    ///
    /// Priority orders the queue only: a task a worker has already taken, or one that finds
    /// a worker free, runs now whatever its priority. Tasks of the default priority take
    /// the pool's fastest path; the others cost a little more to queue (an ordered map).
    ///
    /// An interactive request overtaking a batch on a busy pool:
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use tinypool::{worker, Exports, Pool, RunOptions};
    ///
    /// static STARTED: AtomicU32 = AtomicU32::new(0);
    /// let pool = Pool::builder()
    ///     .exports(
    ///         Exports::new()
    ///             // Returns the job and how many jobs started before it.
    ///             .export_default(|job: String| (job, STARTED.fetch_add(1, Ordering::Relaxed)))
    /// #           // Says it started, then waits: keeps the one worker busy.
    /// #           .export("hold", |()| {
    /// #               let port = worker::port::<()>().unwrap();
    /// #               port.send(()).unwrap();
    /// #               let _ = port.recv();
    /// #           }),
    ///     )
    ///     .max_threads(1)
    ///     .build()?;
    /// # let (gate, port) = tinypool::channel::<()>();
    /// # let held = pool.run_with::<(), _>((), RunOptions::new().name("hold").channel(port));
    /// # gate.recv()?;
    /// // The one worker is busy: these wait in the queue.
    /// let batch: Vec<_> = (0..3)
    ///     .map(|i| pool.run_with::<(String, u32), _>(format!("batch {i}"), RunOptions::new()))
    ///     .collect();
    /// let urgent = RunOptions::new().priority(10);
    /// let urgent = pool.run_with::<(String, u32), _>("urgent".to_owned(), urgent);
    /// # gate.send(()).unwrap();
    /// # held.wait()?;
    /// assert_eq!(urgent.wait()?, ("urgent".to_owned(), 0)); // First, though it came last.
    /// for (i, task) in batch.into_iter().enumerate() {
    ///     assert_eq!(task.wait()?, (format!("batch {i}"), i as u32 + 1));
    /// }
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Fails the task with [`Error::TimedOut`](crate::Error::TimedOut) if it has not resolved
    /// `timeout` after its submission, whether it is still queued or running; it overrides
    /// the pool's [`Builder::task_timeout`](crate::Builder::task_timeout).
    ///
    /// A timeout is an abort the pool fires itself: a queued task is removed and never runs;
    /// a running one fails at once, and its worker is retired and replaced, as for an
    /// [`AbortSignal`]. A thread cannot be stopped: it leaves once the function returns, and
    /// a long function should poll [`worker::aborted`](crate::worker::aborted), which turns
    /// true. A child process is killed (SIGTERM, then SIGKILL after `terminate_timeout`; on
    /// Windows, `TerminateProcess`). So that this stops nothing else, a plain function's task
    /// with a timeout runs alone on its worker, like one with a signal. An async export's
    /// task ([`Exports::export_async`](crate::Exports::export_async)) is different: its
    /// future is dropped and its worker goes on, so it shares its worker like any task.
    ///
    /// `Duration::ZERO` fails the task at once, without running it; a timeout too long to
    /// count (`Duration::MAX`) never fires. The pool counts all deadlines on one thread of its
    /// own, `{thread_name}-timer`, started at the first task with a timeout and stopped with
    /// the pool.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tinypool::{worker, Error, Exports, Pool, RunOptions};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u64| {
    ///         // A search that may never end, which stops when told to.
    ///         let mut x = n;
    ///         while x != 1 && !worker::aborted() {
    ///             x = if x % 2 == 0 { x / 2 } else { 3 * x + 1 };
    ///         }
    ///         x
    ///     }))
    ///     .build()?;
    /// let quick = RunOptions::new().timeout(Duration::from_secs(60));
    /// assert_eq!(pool.run_with::<u64, _>(27u64, quick).wait()?, 1);
    ///
    /// let stuck = RunOptions::new().timeout(Duration::from_millis(50));
    /// let error = pool.run_with::<u64, _>(0u64, stuck).wait().unwrap_err(); // 0 never ends.
    /// assert_eq!(error, Error::TimedOut { after: Duration::from_millis(50) });
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("name", &self.name)
            .field("signal", &self.signal)
            .field("channel", &self.port.is_some())
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .finish()
    }
}
