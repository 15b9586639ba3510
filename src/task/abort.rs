//! [`Task::abort`]: stopping a task without an `AbortController`, through the way back to its
//! pool that its handle keeps ([`Origin`](super::Origin)).

use super::Task;
use crate::Error;

impl<R: Send + 'static> Task<R> {
    /// Aborts the task, without an [`AbortController`](crate::AbortController): it fails with
    /// [`Error::Aborted`] (no reason), as if its signal had fired.
    ///
    /// - Still queued, or taken by a worker that has not started it: it is removed, and never
    ///   runs. (A child process at `concurrent_tasks_per_worker(1)` may be sent its next task
    ///   while it runs one, when tasks are queued: such a task fails at once, and the child
    ///   skips it, unless it reached it first, as it ended the task before: then it runs, and
    ///   its result is dropped.)
    /// - Running alone on its worker (always with threads and plain functions, which run one
    ///   task at a time; with child processes, unless other tasks were sent with it to the
    ///   same child, with `concurrent_tasks_per_worker` above 1): it fails at once and its
    ///   worker is retired and replaced, as for a signal. A thread leaves once the function
    ///   returns (which sees [`worker::aborted`](crate::worker::aborted) turn true); a child
    ///   process is killed (if the next task was on its way to it, once its driver took that
    ///   task back, a few microseconds later). Tasks the worker had taken and not started go
    ///   back to the head of the queue, in order.
    /// - Running as an async export's task
    ///   ([`Exports::export_async`](crate::Exports::export_async)): it fails at once, and its
    ///   worker drops its future at its next poll and goes on with its other tasks; nothing
    ///   is retired.
    /// - Running in a child alongside tasks sent ahead to it (`concurrent_tasks_per_worker`
    ///   above 1): it fails at once, but killing the child would kill the others too, so the
    ///   child finishes it, and its result is dropped. To be sure that a running task's work
    ///   stops, give it a [signal](crate::RunOptions::signal) or a
    ///   [timeout](crate::RunOptions::timeout): those run alone (unless the export is async).
    /// - Already resolved: nothing happens, the result stays.
    ///
    /// ```
    /// use tinypool::{worker, Error, Exports, Pool, Task};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u64| {
    ///         // A long computation that checks whether to go on between steps.
    ///         let mut steps = 0;
    ///         while steps < n && !worker::aborted() {
    ///             std::thread::sleep(std::time::Duration::from_millis(1));
    ///             steps += 1;
    ///         }
    ///         steps
    ///     }))
    ///     .max_threads(1)
    ///     .build()?;
    /// let running: Task<u64> = pool.run(u64::MAX);
    /// let queued: Task<u64> = pool.run(3u64);
    /// queued.abort(); // Removed from the queue: it never runs.
    /// running.abort(); // Its worker is retired; a new one serves the next task.
    /// assert_eq!(queued.wait(), Err(Error::Aborted { reason: None }));
    /// assert_eq!(running.wait(), Err(Error::Aborted { reason: None }));
    /// assert_eq!(pool.run::<u64, _>(2u64).wait()?, 2);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn abort(&self) {
        self.abort_because(None);
    }

    /// [`abort`](Task::abort)s the task with a reason, which [`Error::Aborted`] carries.
    ///
    /// ```
    /// use tinypool::{Error, Exports, Pool};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|ms: u64| {
    ///         std::thread::sleep(std::time::Duration::from_millis(ms));
    ///         ms
    ///     }))
    ///     .max_threads(1)
    ///     .build()?;
    /// let first = pool.run::<u64, _>(20u64);
    /// let second = pool.run::<u64, _>(20u64); // Queued behind the first.
    /// second.abort_with("the user went away");
    /// assert_eq!(
    ///     second.wait(),
    ///     Err(Error::Aborted { reason: Some("the user went away".to_owned()) })
    /// );
    /// while !first.is_finished() {
    ///     std::thread::yield_now();
    /// }
    /// first.abort_with("too late"); // Already resolved: nothing happens.
    /// assert_eq!(first.wait()?, 20);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn abort_with(&self, reason: impl Into<String>) {
        self.abort_because(Some(reason.into()));
    }

    fn abort_because(&self, reason: Option<String>) {
        if self.completion.slot().is_ready() {
            return;
        }
        let Some(origin) = &self.origin else { return };
        if let Some(job) = self.completion.clone().job() {
            origin.abort(&job, Error::Aborted { reason });
        }
    }
}
