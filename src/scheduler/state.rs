//! The scheduler's state: the queue, and the records of the workers and of their threads. All
//! of it sits behind the one state lock ([`Scheduler::lock`](super::Scheduler)), held only for
//! a few pointer moves and never while user code runs.

use std::collections::VecDeque;
use std::sync::Arc;

use super::meter::{PoolMeter, WorkerMeter};
use super::places::Permits;
use super::queue::Queue;
use crate::hooks::Exit;
use crate::runtime::WorkerStart;
use crate::stats::Tally;
use crate::sync::thread::JoinHandle;
use crate::sync::{AtomicBool, AtomicUsize, Ordering};
use crate::task::{Completion, Job, Outcome, Slot};
use crate::wait::Doorbell;

pub(super) use super::queue::{same, JobRef};

#[derive(Default)]
pub(super) struct SchedulerState {
    /// Tasks no worker has taken, in the order they are to run.
    pub(super) queue: Queue,
    /// The live workers: reserved, starting or running; not the retired ones.
    pub(super) workers: Vec<WorkerRecord>,
    /// `ids_in_use[id - 1]`: whether a live worker has that id. As long as the most workers
    /// that were alive at once (at most `max_threads`): every id handed out is below its end.
    pub(super) ids_in_use: Vec<bool>,
    pub(super) next_serial: u64,
    pub(super) destroyed: bool,
    /// `Pool::close` (or the last handle's drop): no new task is taken, and each worker stops
    /// once it finds nothing left to do.
    pub(super) closing: bool,
    /// What `Pool::idle` handed out, resolved once nothing is queued or running.
    pub(super) idle_waiters: Vec<Arc<Slot<()>>>,
    /// Tasks the workers ran to their end (`Pool::completed`).
    pub(super) completed: u64,
    /// `cancel_pending_tasks` calls so far: a task sent ahead and taken back after one was
    /// never started, and fails as a queued task did (see `worker_loop.rs`'s `hand_back`).
    pub(super) cancels: u64,
    /// Every thread started and not joined yet, live workers' and retired ones'.
    pub(super) threads: Vec<ThreadRecord>,
    /// Whether the [`Intake`](super::intake::Intake) is open (it opens and closes only under
    /// this lock).
    pub(super) intake_open: bool,
    /// The buffer swapped into the intake when it is emptied.
    pub(super) intake_spare: Vec<JobRef>,
    /// Whether [`retire`](Self::retire) notes why a worker left (an `on_worker_exit` hook,
    /// or the `tracing` feature, reads it).
    pub(super) note_exits: bool,
    /// The places permits hold in a bounded queue, and who waits for one (`Pool::reserve`).
    pub(super) permits: Permits,
    /// What the workers gone measured, for `Pool::stats`.
    pub(super) meter: PoolMeter,
    /// The workers' successors started ahead in an isolated pool (see `spare.rs`).
    pub(super) spares: Spares,
}

impl SchedulerState {
    /// Where the live worker `serial` is in `workers`; `None` once it is retired.
    pub(super) fn position(&self, serial: u64) -> Option<usize> {
        self.workers
            .iter()
            .position(|worker| worker.serial == serial)
    }

    /// Notes on the thread record of a retired worker `serial` whether it leaves with a task
    /// to publish.
    pub(super) fn publishing(&mut self, serial: u64, publishing: bool) {
        if let Some(record) = self.threads.iter_mut().find(|r| r.serial == serial) {
            record.publishing = publishing;
        }
    }

    /// Removes a worker from the pool: it no longer counts, takes nothing, and its id is free.
    /// Its thread leaves as soon as it notices, and tells `on_worker_exit` it left for `exit`
    /// (noted on its thread's record only when something reads it: a few retirements find
    /// the record gone, and the per-task path of an isolated pool passes here).
    pub(super) fn retire(&mut self, index: usize, exit: Exit) -> WorkerRecord {
        let mut worker = self.workers.remove(index);
        self.ids_in_use[worker.id - 1] = false;
        self.meter.retire(&mut worker.meter);
        if self.note_exits {
            if let Some(record) = self.threads.iter_mut().find(|r| r.serial == worker.serial) {
                record.exit.get_or_insert(exit);
            }
        }
        worker.bell.ring();
        if self.spares.enabled {
            // Unless it is promoted before the lock is released, its spare is no longer wanted.
            self.spares.ring(worker.id);
        }
        worker
    }
}

/// A live worker, as the scheduler sees it.
pub(super) struct WorkerRecord {
    /// Unique for the pool's life (an id is reused once its worker is retired).
    pub(super) serial: u64,
    pub(super) id: usize,
    /// Tasks taken and not started.
    pub(super) inbox: VecDeque<JobRef>,
    /// Tasks handed to the worker's runtime and not finished, oldest first: the running one,
    /// and in the child-process runtime those sent ahead to the child (see
    /// [`RunningWorker::depth`](crate::runtime::RunningWorker::depth)).
    pub(super) running: VecDeque<JobRef>,
    /// Holds an exclusive task (abortable, its export not async), so it takes no other.
    pub(super) exclusive: bool,
    /// Its own async exports, as its runtime learnt them once it started (a child's, from its
    /// `HELLO`), sorted: an abortable task of one of them may share it. Empty for a worker
    /// thread, whose pool knows its exports at submit (see [`Job::exclusive`]).
    pub(super) async_exports: Vec<String>,
    /// It runs several tasks at once and waits for them with room for more, without coming
    /// back to the lock as they end (a worker of async exports, which a task may keep waiting
    /// for ever): see the intake's rules. Set as its loop begins (until then the intake may
    /// open: harmless, since the loop's first refill closes it again when it has room).
    pub(super) waits_with_room: bool,
    /// Leaves once its inbox is empty, taking nothing new (`recycle_workers`).
    pub(super) recycle: bool,
    pub(super) bell: Arc<Doorbell>,
    /// Set when it is retired while it may be busy (abort, destroy): see [`WorkerStart`].
    pub(super) retired: Arc<AtomicBool>,
    /// The child's process id, in the child-process runtime.
    pub(super) pid: Option<u32>,
    /// Set when it went idle with a finished task to publish once the lock is released: until
    /// it is back under the lock, that task may not have resolved yet (`Pool::idle` waits).
    pub(super) publishing: bool,
    /// Its tasks and busy time, for `Pool::stats`.
    pub(super) meter: WorkerMeter,
}

impl WorkerRecord {
    /// A new worker's record: `inbox` its first task, if any.
    pub(super) fn new(
        serial: u64,
        id: usize,
        bell: Arc<Doorbell>,
        retired: Arc<AtomicBool>,
        pid: Option<u32>,
        inbox: VecDeque<JobRef>,
        exclusive: bool,
    ) -> Self {
        WorkerRecord {
            serial,
            id,
            inbox,
            running: VecDeque::new(),
            exclusive,
            async_exports: Vec::new(),
            waits_with_room: false,
            recycle: false,
            bell,
            retired,
            pid,
            publishing: false,
            meter: Default::default(),
        }
    }

    pub(super) fn load(&self) -> usize {
        self.inbox.len() + self.running.len()
    }

    /// Busy, and back at the lock as its tasks end: so it finds what the intake holds. One
    /// that [`waits_with_room`](Self::waits_with_room) is only once it is full.
    pub(super) fn is_saturated(&self, concurrency: usize) -> bool {
        let load = self.load();
        load > 0 && (!self.waits_with_room || load >= concurrency)
    }

    /// Whether it holds an exclusive task, which it runs alone.
    pub(super) fn holds_exclusive(&self) -> bool {
        self.running
            .front()
            .or(self.inbox.front())
            .is_some_and(|job| self.exclusive_for(&**job))
    }

    /// Whether `job` would run alone on this worker: it is exclusive, unless its export is one
    /// of this worker's async exports (its abort drops its future, and the worker goes on).
    pub(super) fn exclusive_for(&self, job: &dyn Job) -> bool {
        job.exclusive()
            && (self.async_exports)
                .binary_search_by(|name| name.as_str().cmp(job.name()))
                .is_err()
    }
}

/// A thread the pool started and has not joined yet (live, retired or finished).
pub(super) struct ThreadRecord {
    pub(super) serial: u64,
    pub(super) id: usize,
    pub(super) handle: Option<JoinHandle<()>>,
    pub(super) finished: bool,
    /// Its worker left with a finished task to publish: until the thread finishes, that task
    /// may not have resolved yet (`Pool::idle` waits).
    pub(super) publishing: bool,
    /// Completed when this thread finishes (`recycle_workers` waits on them).
    pub(super) on_exit: Vec<Arc<Countdown>>,
    /// Why its worker left, noted where it was retired (the first reason wins); read by the
    /// thread once the worker has stopped, for `on_worker_exit`.
    pub(super) exit: Option<Exit>,
    /// Where its worker counts the tasks it resolves (the runtime's copy is in
    /// [`WorkerStart`]); folded into the pool's totals once the thread has finished.
    pub(super) tally: Option<Arc<Tally>>,
}

/// A worker reserved in the state, whose thread is yet to start: what that thread needs.
pub(super) struct Reservation {
    pub(super) serial: u64,
    pub(super) bell: Arc<Doorbell>,
    /// What its runtime is told.
    pub(super) me: WorkerStart,
    /// A spare (see `spare.rs`): once started, it waits to be promoted before it serves.
    pub(super) spare: bool,
}

/// What reserving a worker gave: the thread to start for it (`None` when a spare was
/// promoted: its thread runs already), and a spare to start for it.
pub(super) struct Reserved {
    pub(super) thread: Option<Reservation>,
    pub(super) spare: Option<Reservation>,
}

/// The spares of an isolated pool (see `spare.rs`), one at most per worker id.
#[derive(Default)]
pub(super) struct Spares {
    /// Whether the pool starts spares: it isolates its workers.
    pub(super) enabled: bool,
    /// The pool's `min_threads`: a worker leaving is replaced to keep that many.
    pub(super) min_threads: usize,
    pub(super) list: Vec<Spare>,
}

/// A spare, as the scheduler sees it until it is promoted or discarded.
pub(super) struct Spare {
    pub(super) serial: u64,
    /// The id of the worker it replaces, and will have.
    pub(super) id: usize,
    pub(super) bell: Arc<Doorbell>,
    pub(super) retired: Arc<AtomicBool>,
    /// Its child's pid, once it has started.
    pub(super) pid: Option<u32>,
    /// Whether it has started (and waits to be promoted).
    pub(super) started: bool,
}

/// Counts workers down to zero, then resolves a task (`recycle_workers`).
pub(super) struct Countdown {
    pub(super) remaining: AtomicUsize,
    pub(super) slot: Slot<()>,
}

impl Countdown {
    pub(super) fn count_down(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.slot.complete(Ok(()));
        }
    }
}

impl Completion<()> for Countdown {
    fn slot(&self) -> &dyn Outcome<()> {
        &self.slot
    }
}
