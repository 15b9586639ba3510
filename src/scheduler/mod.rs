//! The scheduler: the queue, which worker takes a task, and when workers come and go. A pool
//! holds one [`Scheduler`], and every worker thread runs its loop; the same code drives both
//! runtimes, which only decide how a worker executes a task (see [`crate::runtime`]).
//!
//! # What it guarantees
//!
//! - **One lock, held briefly.** All bookkeeping ([`SchedulerState`]: the queue, the workers'
//!   records, their threads') sits behind one mutex, held only for a few pointer moves and
//!   never while user code runs. Per task: one lock to submit (none while the intake is
//!   open), one on the worker once the task is done; one allocation, the task's own cell.
//! - **Placement** ([`Scheduler::submit`]). A task goes to the first idle worker, else to a new
//!   worker while there are fewer than `max_threads`, else to the least loaded worker with
//!   room below `concurrent_tasks_per_worker`, else it waits in the queue (and, while tasks
//!   wait, one that arrives adds a worker for the oldest if there is room), or fails
//!   (`NoQueue`, `QueueFull`, `Terminated`). A task with an abort signal only goes to an empty
//!   worker, which then takes nothing else (*exclusive*), unless its export is async (its
//!   abort only drops its future, so it shares its worker like any task): a threads pool
//!   knows its exports at submit; a child's are its own, named in its handshake, so a worker
//!   learns them when it starts ([`RunningWorker::async_exports`]), and such a task shares
//!   only a worker that has its export among them (a worker not started yet takes it alone).
//!
//!   [`RunningWorker::async_exports`]: crate::runtime::RunningWorker::async_exports
//! - **Order** ([`queue`]). Tasks leave the queue from its head, into the inbox of a worker
//!   with room; an exclusive head waits for an empty worker. The head is the oldest task of
//!   the highest priority: FIFO within a priority. A saturated pool's submitters of
//!   default-priority tasks append to the [`Intake`] instead, which only ever joins those
//!   tasks at their back.
//! - **Abort.** Firing a task's signal removes it from the queue or a worker's inbox and fails
//!   it; a running task fails at once, and its worker is *retired* (a thread cannot be
//!   stopped: it leaves once the function returns, and a replacement starts now). A timeout
//!   ([`timer`]) and [`Task::abort`] take the same path, with their own error. A task with a
//!   timeout is abortable like one with a signal (it runs alone unless its export is async;
//!   an async task's abort drops its future and its worker goes on). `Task::abort` may also hit
//!   a task that shares its worker: one running in a child with tasks sent ahead to it only
//!   fails (the child finishes it), and the tasks a retired worker had taken and not started
//!   go back to the head of the queue. At one task per child, the task sent ahead behind a
//!   running one is taken back when that one is slow: its worker is retired then, if it was
//!   aborted meanwhile (`worker_loop.rs`'s `hand_back`).
//! - **Workers** ([`lifecycle`]). Reserved in the state under the lock (they count at once),
//!   started outside it, *retired* when they leave (removed from the state, their id free,
//!   the reason noted for `on_worker_exit`), replaced up to `min_threads` and what the queue
//!   needs; every thread is joined. A worker that fails to start (its setup included) fails
//!   the tasks it took and is not replaced: the next task that needs one tries again. An
//!   isolated pool starts a worker's successor, a *spare* ([`spare`]), while the worker has
//!   its task, outside the state's workers; a reservation promotes it when its id is free.
//! - **The loop** ([`worker_loop`]). BUSY: take a batch, run its oldest task with the lock
//!   released, book it; IDLE: wait on the doorbell. It leaves when retired, recycled, isolated,
//!   told to by its runtime, or idle for `idle_timeout` above `min_threads`.
//! - **Close** ([`Scheduler::close`]). A closing pool refuses new tasks (`Closed`) and runs
//!   what it holds; a worker that then finds nothing to do stops instead of idling, and no
//!   worker is replaced beyond what the queue needs. It is *drained* once no worker is left;
//!   only then does `terminate_timeout` start counting, for the teardowns. A close waited for
//!   inside a task or hook of one of its own workers waits for the other workers only: that
//!   one runs what is still queued once the waiting task returns, and stops.
//! - **Idle.** The pool is idle when nothing is queued, in the intake, or held by a worker,
//!   and no worker still has its last task to publish (a worker notes that in its record
//!   when it goes idle, a store under the lock it holds anyway); `Pool::idle` waiters are
//!   checked wherever that can become true (a worker about to idle or leave, an abort, a
//!   cancel, a failed start, a thread's end, destroy), and only while there are any.
//! - **Exactly once.** Every task resolves exactly once: the worker stages a result and
//!   publishes it once the lock is released; abort, `destroy` and `cancel_pending_tasks`
//!   complete it with an error; whichever comes first wins (see [`crate::task`]).
//! - **Backpressure** ([`permits`]). With a bounded queue, `Pool::reserve` holds one of its
//!   places for a task to come: granted first come, first granted, while `queue.len() +
//!   permits < max_queue`, wherever a place comes free; the permit's task is never refused
//!   for room, and a plain task that would queue counts the permits as queued.
//!
//! # Files
//!
//! - `mod.rs`: the [`Scheduler`] a pool holds: the intake's opening and closing, closing and
//!   idleness, the pool's operations (cancel, recycle, destroy) and what it can observe.
//! - `submit.rs`: how a task comes in, and where it goes.
//! - `abort.rs`: a task failed wherever it is (signal, `Task::abort`, timeout).
//! - `state.rs`: the state behind the lock, and the records of workers and threads.
//! - `lifecycle.rs`: reserve, start, leave, join.
//! - `spare.rs`: an isolated pool's spares: started ahead, promoted, discarded.
//! - `worker_loop.rs`: the loop, step by step.
//! - `queue.rs`: the queue, by priority.
//! - `intake.rs`: the intake, and when it opens and closes.
//! - `hooks.rs`: the worker hooks (`on_worker_start`, `on_worker_exit`), called on the
//!   worker's thread outside the lock, their panics caught.
//! - `timer.rs`: the one thread that times out the tasks with a timeout.
//! - `permits.rs`: places reserved in a bounded queue, and who waits for one; their
//!   bookkeeping in `places.rs`.
//! - `meter.rs`: what is measured for `Pool::stats`; `snapshot.rs`: adding it up.
//! - `loom.rs`: model checks of all of the above, under `--cfg loom`.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use self::intake::Intake;
pub(crate) use self::places::{Request, Ticket};
use self::state::{Countdown, JobRef, SchedulerState, Spares};
use self::timer::Timer;
use crate::hooks::{Exit, WorkerHooks, WorkerInfo};
use crate::runtime::{Launcher, WorkerOptions};
use crate::stats::Tally;
// From `std`, or from loom under `--cfg loom` (see loom.rs).
use crate::sync::{
    lock, wait_timeout, AtomicUsize, CachePadded, Condvar, Mutex, MutexGuard, Ordering,
};
use crate::task::{Origin, Slot, Task};
use crate::wait::deadline_after;
use crate::Error;

mod abort;
mod hooks;
mod intake;
mod lifecycle;
#[cfg(all(test, loom))]
mod loom;
mod meter;
mod permits;
mod places;
mod queue;
mod snapshot;
mod spare;
mod state;
mod submit;
mod timer;
mod worker_loop;

/// What the scheduler decides with: the pool's options about its workers and its queue.
pub(crate) struct SchedulerOptions {
    pub(crate) min_threads: usize,
    pub(crate) max_threads: usize,
    pub(crate) idle_timeout: Duration,
    /// `None`: unbounded.
    pub(crate) max_queue: Option<usize>,
    pub(crate) isolate_workers: bool,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    /// `on_worker_start`, `on_worker_exit`.
    pub(crate) hooks: WorkerHooks,
    /// The timeout of a task that sets none.
    pub(crate) task_timeout: Option<Duration>,
    /// Whether tasks' run and wait times are measured (`Builder::record_timing`).
    pub(crate) record_timing: bool,
    /// The names of a threads pool's async exports (empty for most pools, and for child
    /// processes, whose workers learn theirs as they start): an abortable task of one of them
    /// does not run alone.
    pub(crate) async_exports: HashSet<Box<str>>,
}

/// The pool's scheduler, shared by its handles and its workers.
pub(crate) struct Scheduler {
    options: SchedulerOptions,
    /// `worker_options.concurrent_tasks_per_worker`, read here on every placement.
    concurrency: usize,
    /// Makes the workers, each handed `worker_options`.
    launcher: Box<dyn Launcher>,
    worker_options: Arc<WorkerOptions>,
    /// On cache lines of its own: the workers write it on every task, and a submitter reads
    /// the fields around it (its options, the origin its tasks lead back to) on every task.
    state: CachePadded<Mutex<SchedulerState>>,
    /// Tasks submitted while the pool is saturated, on their way to the queue; on lines of
    /// their own too, apart from the state.
    intake: CachePadded<Intake>,
    /// Notified whenever a worker thread finishes.
    thread_finished: Condvar,
    created: Instant,
    /// Times out the tasks with a timeout.
    timer: Timer,
    /// What the pool's tasks' handles lead back to, for [`Task::abort`].
    origin: Arc<dyn Origin>,
    /// Where the tasks the scheduler fails are counted, from whatever thread fails them.
    tally: Tally,
}

impl Scheduler {
    /// A scheduler that starts `min_threads` workers of `launcher` now.
    pub(crate) fn new(
        options: SchedulerOptions,
        launcher: Box<dyn Launcher>,
        worker_options: WorkerOptions,
    ) -> Arc<Self> {
        let scheduler = Arc::new_cyclic(|weak| Scheduler {
            state: CachePadded(Mutex::new(SchedulerState {
                // Grown as workers are reserved, never sized by `max_threads` up front: that
                // may be `usize::MAX` ("no limit"), which no vector can hold.
                ids_in_use: Vec::new(),
                note_exits: options.hooks.wants_exit(),
                spares: Spares {
                    enabled: options.isolate_workers && launcher.spares_pay(&worker_options),
                    min_threads: options.min_threads,
                    list: Vec::new(),
                },
                ..SchedulerState::default()
            })),
            options,
            concurrency: worker_options.concurrent_tasks_per_worker,
            launcher,
            worker_options: Arc::new(worker_options),
            intake: CachePadded(Intake::new()),
            thread_finished: Condvar::new(),
            created: Instant::now(),
            timer: Timer::new(Arc::new(PoolOrigin(weak.clone()))),
            origin: Arc::new(PoolOrigin(weak.clone())),
            tally: Tally::shared(),
        });
        let starts = {
            let mut state = scheduler.lock();
            (0..scheduler.options.min_threads)
                .map(|_| Self::reserve(&mut state, None))
                .collect()
        };
        scheduler.start_all(starts);
        scheduler
    }

    /// The state lock.
    fn lock(&self) -> MutexGuard<'_, SchedulerState> {
        lock(&*self.state)
    }

    // ---- The intake (see intake.rs) ---------------------------------------------------------

    /// Moves the intake's tasks to the back of the queue, closing it if `close`; returns
    /// whether any moved.
    fn take_intake(&self, state: &mut SchedulerState, close: bool) -> bool {
        if !state.intake_open {
            return false;
        }
        state.intake_open = !close;
        let before = state.queue.len();
        self.intake
            .drain_into(&mut state.queue, &mut state.intake_spare, close);
        state.queue.len() > before
    }

    /// Opens the intake when a task joins the queue of a pool that can do nothing else with
    /// the next ones: it is at `max_threads`, every worker is saturated (so each comes back to
    /// the lock as a task ends: a worker of async tasks with room may wait on tasks that never
    /// end), and the queue is unbounded.
    fn open_intake_if_saturated(&self, state: &mut SchedulerState) {
        let saturated = !state.intake_open
            && !state.destroyed
            && !state.closing
            && self.options.max_queue.is_none()
            && !state.queue.is_empty()
            && state.workers.len() == self.options.max_threads
            && state
                .workers
                .iter()
                .all(|w| w.is_saturated(self.concurrency));
        if saturated {
            self.intake.open();
            state.intake_open = true;
        }
    }

    // ---- Closing and idleness -----------------------------------------------------------------

    /// What to do after the state changed in a way that may have drained a closing pool or
    /// made it idle: wakes whoever waits for the drain, and returns the idle waiters to
    /// resolve once the lock is released (and the task just finished, if any, published).
    fn settle(&self, state: &mut SchedulerState) -> Vec<Arc<Slot<()>>> {
        if state.closing && state.workers.len() <= 1 {
            // Also for the last but one: a close waited for inside a task of the last one
            // waits for the others only (see `wait_closed`).
            self.thread_finished.notify_all();
        }
        if state.closing && state.workers.is_empty() {
            // Drained: nothing is left to time out.
            self.timer.halt();
        }
        if state.idle_waiters.is_empty() {
            return Vec::new();
        }
        let in_intake = state.intake_open && self.intake.len() > 0;
        let nothing_held = state.queue.is_empty()
            && !in_intake
            && state.workers.iter().all(|worker| worker.load() == 0);
        if !nothing_held {
            return Vec::new();
        }
        // A worker that went idle (or left) with its last task still to publish: that task may
        // not have resolved yet. An idle one is rung, to come back under the lock once it
        // published (and settle again); a leaving one is waited for until its thread ends.
        let mut publishing = false;
        for worker in state.workers.iter().filter(|worker| worker.publishing) {
            worker.bell.ring();
            publishing = true;
        }
        publishing |= state
            .threads
            .iter()
            .any(|record| record.publishing && !record.finished);
        if publishing {
            Vec::new()
        } else {
            std::mem::take(&mut state.idle_waiters)
        }
    }

    /// Closes the pool: it takes no new task, runs what it holds, and then its workers stop.
    /// Idempotent; on a destroyed pool, it changes nothing.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        if state.closing {
            return;
        }
        state.closing = true;
        state.spares.discard_all();
        // From now on every submitter takes the lock, and finds the pool closing.
        self.take_intake(&mut state, true);
        // Idle workers wake, find nothing, and stop (see `worker_loop`); busy ones stop once
        // the queue is empty.
        for worker in &state.workers {
            worker.bell.ring();
        }
        self.settle(&mut state);
        let refused = state.permits.refuse_all(Error::Closed);
        drop(state);
        refused.deliver();
    }

    /// Waits until a closed pool has drained (no worker left but `own`, the worker whose task
    /// or hook is waiting, if any: it stops once that returns), then for its threads to
    /// finish, for at most `terminate_timeout` from the drain on.
    pub(crate) fn wait_closed(&self, own: Option<u64>) -> Result<(), Error> {
        let mut state = self.lock();
        // Unbounded: the tasks themselves may take as long as they take. (Notified by
        // `settle` when the last workers go, and by `destroy`.)
        while state
            .workers
            .iter()
            .any(|worker| Some(worker.serial) != own)
        {
            state = wait_timeout(&self.thread_finished, state, Duration::from_secs(3600));
        }
        drop(state);
        if own.is_none() {
            // The timer's thread stops with the last worker, which may be the caller's.
            self.timer.join();
        }
        self.join_threads(self.stop_deadline(), own)
    }

    /// What a close resolves with, if it is over already: no worker left, and every thread
    /// finished (they are joined here). `None` if it still has to wait.
    pub(crate) fn closed_already(&self) -> Option<Result<(), Error>> {
        {
            let state = self.lock();
            if !state.workers.is_empty() || state.threads.iter().any(|record| !record.finished) {
                return None;
            }
        }
        self.timer.join();
        Some(self.join_threads(Instant::now(), None))
    }

    /// A task resolved once nothing is queued or running (at once if so).
    pub(crate) fn idle(&self) -> Task<()> {
        let slot = Arc::new(Slot::new());
        let mut state = self.lock();
        state.idle_waiters.push(slot.clone());
        let idle = self.settle(&mut state);
        drop(state);
        resolve(idle);
        Task::new(slot)
    }

    /// Whether the queue holds `max_queue` tasks, counting the places permits hold (always
    /// false for an unbounded queue).
    pub(crate) fn needs_drain(&self) -> bool {
        self.options.max_queue.is_some_and(|limit| {
            let state = self.lock();
            state.queue.len() + state.permits.outstanding() >= limit
        })
    }

    // ---- Pool operations --------------------------------------------------------------------

    pub(crate) fn cancel_pending(&self) {
        let (cancelled, idle, granted): (Vec<JobRef>, _, _) = {
            let mut state = self.lock();
            self.take_intake(&mut state, false);
            state.cancels += 1;
            let SchedulerState { queue, workers, .. } = &mut *state;
            let mut cancelled: Vec<JobRef> = queue.drain();
            for worker in workers.iter_mut() {
                cancelled.extend(worker.inbox.drain(..));
                worker.exclusive = worker.holds_exclusive();
            }
            let granted = self.grant(&mut state);
            (cancelled, self.settle(&mut state), granted)
        };
        for job in cancelled {
            job.fail(Error::Cancelled, &self.tally);
        }
        resolve(idle);
        granted.deliver();
    }

    pub(crate) fn recycle(self: &Arc<Self>) -> Task<()> {
        let countdown = Arc::new(Countdown {
            remaining: AtomicUsize::new(1),
            slot: Slot::new(),
        });
        let mut state = self.lock();
        // Started before the call: not the fresh workers it asks for.
        state.spares.discard_all();
        let mut index = 0;
        while index < state.workers.len() {
            if state.workers[index].load() > 0 {
                state.workers[index].recycle = true;
                index += 1;
                continue;
            }
            let serial = state.retire(index, Exit::Recycled).serial;
            if let Some(record) = state.threads.iter_mut().find(|r| r.serial == serial) {
                countdown.remaining.fetch_add(1, Ordering::Relaxed);
                record.on_exit.push(countdown.clone());
            }
        }
        let starts = self.replenish(&mut state);
        drop(state);
        self.start_all(starts);
        // The count started at 1 so that no exit could complete it while idle workers were
        // still being counted.
        countdown.count_down();
        Task::new(countdown)
    }

    /// Fails every task, retires every worker and marks the pool destroyed. Idempotent.
    pub(crate) fn shut_down(&self) {
        let (doomed, retired, idle, refused): (Vec<JobRef>, Vec<_>, _, _) = {
            let mut state = self.lock();
            state.destroyed = true;
            state.spares.discard_all();
            self.take_intake(&mut state, true);
            let mut doomed: Vec<JobRef> = state.queue.drain();
            let mut retired = Vec::new();
            while !state.workers.is_empty() {
                let worker = state.retire(0, Exit::Destroyed);
                retired.push(worker.retired);
                doomed.extend(worker.running);
                doomed.extend(worker.inbox);
            }
            let refused = state.permits.refuse_all(Error::Terminated);
            let idle = std::mem::take(&mut state.idle_waiters);
            (doomed, retired, idle, refused)
        };
        for job in doomed {
            job.fail(Error::Terminated, &self.tally);
        }
        refused.deliver();
        // Only now told: a function that returns once it sees `worker::aborted()` would
        // otherwise race its value against the `Terminated` above.
        for flag in retired {
            flag.store(true, Ordering::Release);
        }
        // Nothing is left to run; a `close` waiting for its workers sees them gone.
        resolve(idle);
        self.thread_finished.notify_all();
        self.timer.join();
    }

    // ---- Observation ----------------------------------------------------------------------

    pub(crate) fn threads(&self) -> usize {
        self.lock().workers.len()
    }

    pub(crate) fn queue_size(&self) -> usize {
        let state = self.lock();
        let in_intake = if state.intake_open {
            self.intake.len()
        } else {
            0
        };
        state.queue.len() + in_intake
    }

    pub(crate) fn workers(&self) -> Vec<WorkerInfo> {
        self.lock()
            .workers
            .iter()
            .map(|worker| WorkerInfo {
                id: worker.id,
                pid: worker.pid,
                running: worker.load(),
            })
            .collect()
    }

    pub(crate) fn completed(&self) -> u64 {
        self.lock().completed
    }

    pub(crate) fn duration(&self) -> Duration {
        self.created.elapsed()
    }

    /// When a worker told to stop now must be gone: `terminate_timeout`, plus the runtime's
    /// grace for reaping what it killed at that deadline.
    pub(crate) fn stop_deadline(&self) -> Instant {
        deadline_after(
            self.worker_options
                .terminate_timeout
                .saturating_add(self.launcher.stop_grace()),
        )
    }

    pub(crate) fn is_destroyed(&self) -> bool {
        self.lock().destroyed
    }

    /// Worker threads are named `{thread_name}-{id}`; the pool's other threads take it too.
    pub(crate) fn thread_name(&self) -> &str {
        &self.options.thread_name
    }
}

/// The way back from a task's handle to its pool (see [`Task::abort`]): the scheduler, if it
/// is still there, which then aborts the task wherever it is.
struct PoolOrigin(Weak<Scheduler>);

impl Origin for PoolOrigin {
    fn abort(&self, job: &JobRef, error: Error) {
        if let Some(scheduler) = self.0.upgrade() {
            scheduler.abort(job, error);
        }
    }
}

/// Resolves the idle waiters [`Scheduler::settle`] returned.
fn resolve(waiters: Vec<Arc<Slot<()>>>) {
    for waiter in waiters {
        waiter.complete(Ok(()));
    }
}
