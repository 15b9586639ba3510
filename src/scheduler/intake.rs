//! The intake: where tasks submitted to a saturated pool wait for the scheduler, without its
//! lock.
//!
//! When every worker is busy and tasks already wait, a new task can only join the back of the
//! queue. Taking the pool's state lock for that made the submitting thread and the workers
//! fight over one mutex on every task (the largest item of a saturated pool's profile). So the
//! scheduler *opens* the intake while the pool is saturated, and a submitter then only appends
//! to it, under a lock of its own that the workers take once per batch: a worker that empties
//! the queue moves the whole intake into it in one swap.
//!
//! The rules that keep every task found (all under the state lock, taken before this one; the
//! scheduler's `take_intake` and `open_intake_if_saturated` apply them):
//! - open only while every worker is busy, so that each comes back to the state lock as a
//!   task ends; a worker of async tasks, which waits on them with room for more, only while
//!   it is full (`concurrent_tasks_per_worker` tasks), and one that finds itself with room
//!   once the queue is drained closes it (with room, it may wait on tasks that never end, and
//!   never come back);
//! - a worker about to idle, a pool losing a worker and a destroyed pool close it, and move
//!   what it holds to the queue (or fail it);
//! - a task goes to the queue only after what the intake holds, so that FIFO holds.
//!
//! A task with an abort signal never comes here: it needs the scheduler's choice of worker. Nor
//! does one of another priority than the default: it takes its place in the queue at once.

use super::queue::Queue;
use super::state::JobRef;
use crate::sync::{lock, AtomicBool, Mutex, Ordering};

/// Held on cache lines of its own ([`CachePadded`](crate::sync::CachePadded) in the
/// scheduler), so that the workers' writes to the pool's state next to it do not slow every
/// submitter down.
pub(super) struct Intake {
    inner: Mutex<Inner>,
    /// `inner.open`, readable without the lock: a submitter that sees it closed goes straight
    /// to the scheduler. Only a hint: `inner.open` decides.
    open_hint: AtomicBool,
}

struct Inner {
    open: bool,
    jobs: Vec<JobRef>,
}

impl Intake {
    pub(super) fn new() -> Self {
        Intake {
            inner: Mutex::new(Inner {
                open: false,
                jobs: Vec::new(),
            }),
            open_hint: AtomicBool::new(false),
        }
    }

    /// Takes `job` if the intake is open; gives it back otherwise.
    pub(super) fn offer(&self, job: JobRef) -> Result<(), JobRef> {
        if !self.open_hint.load(Ordering::Relaxed) {
            return Err(job);
        }
        let mut inner = lock(&self.inner);
        if !inner.open {
            return Err(job);
        }
        inner.jobs.push(job);
        Ok(())
    }

    /// Opens the intake. Called with the state lock held, the pool saturated.
    pub(super) fn open(&self) {
        let mut inner = lock(&self.inner);
        inner.open = true;
        self.open_hint.store(true, Ordering::Relaxed);
    }

    /// Moves what the intake holds to the back of `queue`, and closes it if `close`.
    /// Called with the state lock held; `spare` is an empty buffer swapped in, so that the
    /// intake's lock is held for a swap, not for a copy.
    pub(super) fn drain_into(&self, queue: &mut Queue, spare: &mut Vec<JobRef>, close: bool) {
        {
            let mut inner = lock(&self.inner);
            if close {
                inner.open = false;
                self.open_hint.store(false, Ordering::Relaxed);
            }
            std::mem::swap(&mut inner.jobs, spare);
        }
        queue.append_fifo(spare);
    }

    /// How many tasks it holds.
    pub(super) fn len(&self) -> usize {
        lock(&self.inner).jobs.len()
    }
}
