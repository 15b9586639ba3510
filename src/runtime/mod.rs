//! The runtimes: where a worker's tasks actually run.
//!
//! The scheduler owns one thread per worker and drives it with
//! [`Shared::worker_loop`](crate::scheduler::Shared::worker_loop); a runtime starts that thread
//! and says how it executes one task. In the threads runtime the thread *is* the worker and
//! calls the exported function itself.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::scheduler::{Shared, WorkerStart};

pub(crate) mod thread;

/// Starts worker threads for the scheduler.
pub(crate) trait Runtime: Send + Sync + 'static {
    /// Spawns the thread of the worker `start`, which must run `shared.worker_loop` and call
    /// `shared.thread_finished` as its last step.
    fn spawn(&self, shared: Arc<Shared>, start: WorkerStart) -> io::Result<JoinHandle<()>>;
}
