//! The runtimes: where a worker's tasks actually run.
//!
//! The scheduler gives every worker a thread of its own and drives it with
//! [`Scheduler::worker_loop`](crate::scheduler::Scheduler::worker_loop). A [`Launcher`] turns that
//! thread into a worker ([`Launcher::start`]) and says, through the [`RunningWorker`] it returns, how
//! one task is executed. In the threads runtime the thread *is* the worker and calls the
//! exported function itself; in the child-process runtime it drives a child over a socket.

use std::sync::Arc;
use std::time::Duration;

use crate::scheduler::{Scheduler, WorkerStart};
use crate::task::Job;
use crate::Error;

#[cfg(unix)]
pub(crate) mod child;
#[cfg(unix)]
pub(crate) mod process;
#[cfg(unix)]
mod ring;
#[cfg(unix)]
mod socket;
#[cfg(unix)]
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
}

/// Makes workers of one kind.
pub(crate) trait Launcher: Send + Sync + 'static {
    /// Runs on the new worker's thread and makes it a worker, or says why it could not.
    fn start(
        &self,
        shared: &Arc<Scheduler>,
        me: &WorkerStart,
    ) -> Result<Box<dyn RunningWorker>, Error>;

    /// How long after `terminate_timeout` a stopping worker may still take to be gone (a
    /// child killed at the deadline still has to be reaped).
    fn stop_grace(&self) -> Duration {
        Duration::ZERO
    }
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

    /// Starts `jobs`, in order, after those already started and not finished.
    fn start(&mut self, jobs: &[Arc<dyn Job>]) {
        let _ = jobs; // A thread starts a task when it gets to it, in `finish`.
    }

    /// Sees the oldest started job to its end: stages its result, or fails it.
    fn finish(&mut self, job: &Arc<dyn Job>) -> Flow;

    /// How often an idle worker calls [`check`](RunningWorker::check); `None`: never.
    fn check_interval(&self) -> Option<Duration> {
        None
    }

    /// Checks an idle worker's health.
    fn check(&mut self) -> Flow {
        Flow::Continue
    }

    /// Stops the worker for good: runs the teardown, then ends the worker.
    fn stop(self: Box<Self>);
}
