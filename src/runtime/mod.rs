//! The runtimes: where a worker's tasks actually run.
//!
//! The scheduler gives every worker a thread of its own and drives it with its worker loop. A
//! [`Launcher`] turns that thread into a worker ([`Launcher::start`]) and says, through the
//! [`RunningWorker`] it returns, how one task is executed. In the threads runtime the thread
//! *is* the worker and calls the exported function itself; in the child-process runtime it
//! drives a child over a socket.
//!
//! This is the seam between the two: a runtime knows nothing of the scheduler. It is handed
//! what it needs: its own options (given to its [`Launcher`] when the pool is built), the few
//! pool options every worker reads ([`WorkerOptions`], with a [`Reporter`] for errors no task
//! can carry), and who the new worker is ([`WorkerStart`]).

use std::sync::Arc;
use std::time::Duration;

use crate::stats::Tally;
use crate::sync::AtomicBool;
use crate::task::Job;
use crate::wait::Doorbell;
use crate::Error;

#[cfg(any(unix, windows))]
pub(crate) mod child;
pub(crate) mod executor;
#[cfg(unix)]
mod fds;
#[cfg(any(unix, windows))]
pub(crate) mod process;
#[cfg(any(unix, windows))]
mod spawn;
pub(crate) mod thread;

/// What the worker does after a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Takes the next task.
    Continue,
    /// Finishes the tasks it started, then leaves the pool (its child passed its memory
    /// limit); a replacement starts.
    Leave,
    /// Leaves the pool at once: it is gone (its child died or was killed). The tasks started
    /// after this one never ran, and go back to the queue.
    Dead,
    /// The task has not finished: the worker was given more work meanwhile (its doorbell
    /// rang), which it takes and starts before it waits again. Only a worker that holds
    /// async tasks says so (see [`RunningWorker::finish`]).
    Pending,
    /// The task has not finished, and is slow to: the task sent past the worker's depth (see
    /// [`RunningWorker::may_send_ahead`]), which its child has not started, was taken back.
    /// The scheduler gives that one, the last started, to another worker, then calls `finish`
    /// for the same job again.
    TookBack,
}

impl Flow {
    /// Whether the task `finish` was called for has not finished: the scheduler calls
    /// `finish` for it again.
    pub(crate) fn unfinished(self) -> bool {
        matches!(self, Flow::Pending | Flow::TookBack)
    }
}

/// Who a new worker is, as its runtime needs to know.
pub(crate) struct WorkerStart {
    /// 1 to `max_threads`, unique among the live workers ([`worker::id`](crate::worker::id)).
    /// A spare of an isolated pool is started with the id of the worker it will replace: it
    /// starts (its setup runs) while that worker still runs its task.
    pub(crate) id: usize,
    /// Set when the scheduler retires the worker while it may be busy (its task was aborted,
    /// or the pool destroyed): whatever it runs or waits for should stop. A worker retired
    /// idle (idle timeout, `recycle_workers`) just finds itself gone from the scheduler.
    pub(crate) retired: Arc<AtomicBool>,
    /// Where the worker counts the tasks it resolves (a task it fails itself, say), on its
    /// own thread only: see [`Tally::owned`].
    pub(crate) tally: Arc<Tally>,
    /// The worker's doorbell, which the scheduler rings when it gives the worker work: a
    /// worker waiting for an async task returns [`Flow::Pending`] then.
    pub(crate) bell: Arc<Doorbell>,
}

/// The pool's options that every worker reads, whatever its runtime; one per pool, shared.
pub(crate) struct WorkerOptions {
    /// How long a stopping worker may take before it is killed (a child process).
    pub(crate) terminate_timeout: Duration,
    /// The export a worker runs before it stops.
    pub(crate) teardown: Option<String>,
    /// The export a worker runs before its first task, in [`Launcher::start`]: a worker whose
    /// setup fails does not start ([`Error::WorkerStartFailed`], naming the setup and why).
    pub(crate) setup: Option<String>,
    /// How many tasks a worker may take at once (a child process is sent them ahead).
    pub(crate) concurrent_tasks_per_worker: usize,
    pub(crate) reporter: Reporter,
}

/// Where an error goes that no task can carry (a child that died while idle, a teardown that
/// failed, a worker that could not start with no task to fail): the pool's `on_error` hook.
#[derive(Clone, Default)]
pub(crate) struct Reporter {
    hook: Option<Arc<dyn Fn(Error) + Send + Sync>>,
}

impl Reporter {
    pub(crate) fn new(hook: Option<Arc<dyn Fn(Error) + Send + Sync>>) -> Self {
        Reporter { hook }
    }

    /// Calls the hook, if any. A hook that panics is caught: it runs on a worker's thread
    /// (in the middle of its start, its stop, its teardown's report), which must not unwind
    /// (its tasks would fail as `Terminated`, its exit hook be skipped). Its panic has nowhere
    /// to be reported but the panic hook, which has printed it already.
    pub(crate) fn report(&self, error: Error) {
        if let Some(hook) = &self.hook {
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(error)));
            if let Err(payload) = caught {
                // Nor may the payload's own drop unwind the worker.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    drop(payload);
                }));
            }
        }
    }
}

/// Makes workers of one kind.
pub(crate) trait Launcher: Send + Sync + 'static {
    /// Runs on the new worker's thread and makes it a worker, its setup export run (in the
    /// worker: on this thread, or in the child), or says why it could not.
    fn start(
        &self,
        pool: &Arc<WorkerOptions>,
        me: &WorkerStart,
    ) -> Result<Box<dyn RunningWorker>, Error>;

    /// How long after `terminate_timeout` a stopping worker may still take to be gone (a
    /// child killed at the deadline still has to be reaped).
    fn stop_grace(&self) -> Duration {
        Duration::ZERO
    }

    /// Whether starting a worker costs enough that an isolated pool should start each
    /// worker's successor ahead, as a spare that waits parked until it replaces it. By
    /// default, only when there is a setup export to run: a bare worker thread starts in
    /// about the time a parked one takes to wake, and a spare would only add that wake-up.
    fn spares_pay(&self, pool: &WorkerOptions) -> bool {
        pool.setup.is_some()
    }

    /// The pool is closed or destroyed, its worker threads finished: lets go of what it keeps
    /// for workers to come (a fork server). A worker started after all is started without it.
    fn release(&self) {}
}

/// A started worker, owned by its thread.
pub(crate) trait RunningWorker {
    /// The worker's process id, when it is a process.
    fn pid(&self) -> Option<u32> {
        None
    }

    /// How many tasks it may hold started and not finished. One runs a task at a time; a
    /// child process takes `concurrent_tasks_per_worker` at once (many `RUN` frames per
    /// write), and runs them in order.
    fn depth(&self) -> usize {
        1
    }

    /// Whether the tasks it holds are sent ahead, to run elsewhere in order (a child process):
    /// then the scheduler tops them up in batches, once half have finished (one write for
    /// many), and a task with a channel goes alone. A worker thread takes each task as soon
    /// as it has room.
    fn sends_ahead(&self) -> bool {
        true
    }

    /// Whether it may be given one task more than its [`depth`](RunningWorker::depth) now,
    /// while tasks are queued, so that its child finds its next task as soon as it ends one:
    /// a child running one task at a time, which claims each task sent ahead before running
    /// it. `finish` takes that task back ([`Flow::TookBack`]) if the one before it is slow.
    fn may_send_ahead(&self) -> bool {
        false
    }

    /// Whether it needs [`start`](RunningWorker::start) called: a worker thread of plain
    /// functions starts each task in `finish`, so the scheduler does not gather them for it.
    fn starts_ahead(&self) -> bool {
        true
    }

    /// Its async exports, sorted, when only it knows them (a child's, from its `HELLO`): an
    /// abortable task of one of them may share it, since its abort drops its future and the
    /// worker goes on. Empty for a worker thread, whose pool knows its exports.
    fn async_exports(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether it makes its tasks' trace spans itself (the `tracing` feature): a worker that
    /// holds several tasks at once gives each its own span, made when it starts it. Otherwise
    /// the scheduler makes the oldest's around [`finish`](RunningWorker::finish).
    fn traces_tasks(&self) -> bool {
        false
    }

    /// Starts `jobs`, in order, after those already started and not finished.
    fn start(&mut self, jobs: &[Arc<dyn Job>]) {
        let _ = jobs; // A thread starts a task when it gets to it, in `finish`.
    }

    /// Sees the oldest started job to its end: stages its result, or fails it. A worker
    /// that holds async tasks polls them all meanwhile, and may return [`Flow::Pending`]
    /// before that job finished, when its doorbell rings: the scheduler then starts what it
    /// was given and calls `finish` for the same job again. (The seam stays first in, first
    /// out: a task that finishes before an older one is published after it.)
    fn finish(&mut self, job: &Arc<dyn Job>) -> Flow;

    /// How often an idle worker calls [`check`](RunningWorker::check); `None`: never.
    fn check_interval(&self) -> Option<Duration> {
        None
    }

    /// Checks an idle worker's health.
    fn check(&mut self) -> Flow {
        Flow::Continue
    }

    /// How a dead worker ended, once it said [`Flow::Dead`] (its child reaped): its exit code
    /// and the signal that ended it, each if any. `(None, None)` for a thread.
    fn exit_status(&mut self) -> (Option<i32>, Option<i32>) {
        (None, None)
    }

    /// Stops the worker for good: runs the teardown, then ends the worker.
    fn stop(self: Box<Self>);
}
