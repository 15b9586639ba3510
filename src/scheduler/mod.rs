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
//!   worker, which then takes nothing else (*exclusive*).
//! - **Order** ([`queue`]). Tasks leave the queue from its head, into the inbox of a worker
//!   with room; an abortable head waits for an empty worker. The head is the oldest task of
//!   the highest priority: FIFO within a priority. A saturated pool's submitters of
//!   default-priority tasks append to the [`Intake`] instead, which only ever joins those
//!   tasks at their back.
//! - **Abort.** Firing a task's signal removes it from the queue or a worker's inbox and fails
//!   it; a running task fails at once, and its worker is *retired* (a thread cannot be
//!   stopped: it leaves once the function returns, and a replacement starts now). A timeout
//!   ([`timer`]) and [`Task::abort`] take the same path, with their own error. A task with a
//!   timeout is abortable like one with a signal (it runs alone). `Task::abort` may also hit
//!   a task that shares its worker: one running in a child with tasks sent ahead to it only
//!   fails (the child finishes it), and the tasks a retired worker had taken and not started
//!   go back to the head of the queue.
//! - **Workers** ([`lifecycle`]). Reserved in the state under the lock (they count at once),
//!   started outside it, *retired* when they leave (removed from the state, their id free,
//!   the reason noted for `on_worker_exit`), replaced up to `min_threads` and what the queue
//!   needs; every thread is joined. A worker that fails to start (its setup included) fails
//!   the tasks it took and is not replaced: the next task that needs one tries again.
//! - **The loop** ([`worker_loop`]). BUSY: take a batch, run its oldest task with the lock
//!   released, book it; IDLE: wait on the doorbell. It leaves when retired, recycled, isolated,
//!   told to by its runtime, or idle for `idle_timeout` above `min_threads`.
//! - **Close** ([`Scheduler::close`]). A closing pool refuses new tasks (`Closed`) and runs
//!   what it holds; a worker that then finds nothing to do stops instead of idling, and no
//!   worker is replaced beyond what the queue needs. It is *drained* once no worker is left;
//!   only then does `terminate_timeout` start counting, for the teardowns.
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
//! - `mod.rs`: the [`Scheduler`] a pool holds: submitting, aborting, the pool's operations
//!   (cancel, recycle, destroy) and what it can observe.
//! - `state.rs`: the state behind the lock, and the records of workers and threads.
//! - `lifecycle.rs`: reserve, start, leave, join.
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

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use self::intake::Intake;
pub(crate) use self::places::{Request, Ticket};
use self::state::{same, Countdown, JobRef, SchedulerState};
use self::timer::Timer;
use crate::exports::wire::{Carry, Serde};
use crate::hooks::{Exit, WorkerHooks, WorkerInfo};
use crate::options::RunOptions;
use crate::runtime::{Launcher, WorkerOptions};
use crate::stats::Tally;
// From `std`, or from loom under `--cfg loom` (see loom.rs).
use crate::sync::{lock, wait_timeout, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};
use crate::task::{Job, Origin, Slot, Task, TaskCell};
use crate::wait::deadline_after;
use crate::Error;

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
mod state;
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
}

/// The pool's scheduler, shared by its handles and its workers.
pub(crate) struct Scheduler {
    options: SchedulerOptions,
    /// `worker_options.concurrent_tasks_per_worker`, read here on every placement.
    concurrency: usize,
    /// Makes the workers, each handed `worker_options`.
    launcher: Box<dyn Launcher>,
    worker_options: Arc<WorkerOptions>,
    state: Mutex<SchedulerState>,
    /// Tasks submitted while the pool is saturated, on their way to the queue.
    intake: Intake,
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
            state: Mutex::new(SchedulerState {
                ids_in_use: vec![false; options.max_threads],
                note_exits: options.hooks.wants_exit(),
                ..SchedulerState::default()
            }),
            options,
            concurrency: worker_options.concurrent_tasks_per_worker,
            launcher,
            worker_options: Arc::new(worker_options),
            intake: Intake::new(),
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
        lock(&self.state)
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
    /// the next ones: it is at `max_threads`, every worker is busy (so each comes back to the
    /// lock), and the queue is unbounded.
    fn open_intake_if_saturated(&self, state: &mut SchedulerState) {
        let saturated = !state.intake_open
            && !state.destroyed
            && !state.closing
            && self.options.max_queue.is_none()
            && !state.queue.is_empty()
            && state.workers.len() == self.options.max_threads
            && state.workers.iter().all(|worker| worker.load() > 0);
        if saturated {
            self.intake.open();
            state.intake_open = true;
        }
    }

    // ---- Submitting -------------------------------------------------------------------------

    /// Runs the export `options` name (`None`: the default) with `arg`: the one way a task
    /// comes in. With a signal or a timeout (its own, else the pool's), the task runs alone,
    /// and firing the signal or reaching the deadline aborts it wherever it is.
    pub(crate) fn submit<A, R>(self: &Arc<Self>, arg: A, options: RunOptions) -> Task<R>
    where
        A: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        self.submit_on::<Serde, A, R>(arg, options)
    }

    /// [`submit`](Self::submit) with the task's wire chosen (see [`crate::exports::wire`]):
    /// a [`Local`](crate::exports::wire::Local) task's values only move. The wire changes
    /// nothing here; the pool sends a local task only to a threads runtime.
    pub(crate) fn submit_on<W, A, R>(self: &Arc<Self>, arg: A, options: RunOptions) -> Task<R>
    where
        W: Carry<A, R>,
        A: Send + 'static,
        R: Send + 'static,
    {
        self.submit_reserved::<W, A, R>(arg, options, false)
    }

    /// [`submit_on`](Self::submit_on), into a place a permit holds if `reserved` (see
    /// [`permits`]): the task takes that place, and is never refused for room.
    pub(crate) fn submit_reserved<W, A, R>(
        self: &Arc<Self>,
        arg: A,
        options: RunOptions,
        reserved: bool,
    ) -> Task<R>
    where
        W: Carry<A, R>,
        A: Send + 'static,
        R: Send + 'static,
    {
        let RunOptions {
            name,
            signal,
            port,
            priority,
            timeout,
        } = options;
        let timeout = timeout.or(self.options.task_timeout);
        // When it was submitted: only measured if something reads it (a clock read per task).
        let submitted =
            (self.options.record_timing || cfg!(feature = "tracing")).then(Instant::now);
        if signal.is_none() && timeout.is_none() {
            let cell = Arc::new(TaskCell::<A, R, W>::new(
                arg, name, port, false, priority, submitted,
            ));
            self.place(cell.clone(), reserved);
            return Task::of_pool(cell, &self.origin);
        }
        let refused = match (&signal, timeout) {
            (Some(signal), _) if signal.aborted() => Some(Error::Aborted {
                reason: signal.reason(),
            }),
            // Its deadline is its submission: it times out before it could start.
            (_, Some(Duration::ZERO)) => Some(Error::TimedOut {
                after: Duration::ZERO,
            }),
            _ => None,
        };
        if let Some(error) = refused {
            if reserved {
                self.release_place();
            }
            return self.refuse(error);
        }
        // Counted from the submission; a timeout too long to count is a century away.
        let deadline = timeout.map(|timeout| (deadline_after(timeout), timeout));
        let cell = Arc::new(TaskCell::<A, R, W>::new(
            arg, name, port, true, priority, submitted,
        ));
        let job: JobRef = cell.clone();
        self.place(job.clone(), reserved);
        // Registered after `place`, so that the listener finds the task wherever it went; a
        // signal that fired in between is handled the same way right here.
        if let Some(signal) = signal {
            match signal.add_listener(self.abort_listener(&job)) {
                Some(listener) => cell.set_abort_hook(signal, listener),
                None => (self.abort_listener(&job))(signal.reason()),
            }
        }
        // Likewise: a deadline that passed meanwhile fires as soon as the timer sees it (and a
        // task that resolved meanwhile leaves the timer as soon as its hook is set).
        if let Some((deadline, after)) = deadline {
            match self.timer.watch(&job, deadline, after, self.thread_name()) {
                Ok(Some(hook)) => cell.set_deadline(hook),
                Ok(None) => {}
                Err(error) => self.abort(&job, error),
            }
        }
        Task::of_pool(cell, &self.origin)
    }

    /// A task that fails with `error` before it is even queued (counted for `Pool::stats`).
    pub(crate) fn refuse<R: Send + 'static>(&self, error: Error) -> Task<R> {
        self.tally.count(Err(error.kind()));
        Task::ready(Err(error))
    }

    /// Hands `job` to a worker or queues it; fails it if the pool cannot take it. A
    /// `reserved` job takes the place its permit held, so it is never refused for room.
    fn place(self: &Arc<Self>, job: JobRef, reserved: bool) {
        // A task with an abort signal needs the scheduler's choice of worker (it runs alone),
        // and one of another priority its place in the queue. (The intake only opens for an
        // unbounded queue, whose permits hold no place.)
        let job = if job.abortable() || job.priority() != 0 || reserved {
            job
        } else {
            match self.intake.offer(job) {
                Ok(()) => return,
                Err(job) => job,
            }
        };
        let options = &self.options;
        let mut state = self.lock();
        if reserved {
            state.permits.use_one();
        }
        if state.destroyed || state.closing {
            let error = if state.destroyed {
                Error::Terminated
            } else {
                Error::Closed
            };
            drop(state);
            job.fail(error, &self.tally);
            return;
        }
        // Behind what the intake holds, which was submitted earlier.
        self.take_intake(&mut state, false);
        let mut start = None;
        if state.queue.is_empty() {
            if let Some(worker) = state
                .workers
                .iter_mut()
                .find(|w| w.load() == 0 && !w.recycle)
            {
                worker.exclusive = job.abortable();
                worker.inbox.push_back(job);
                worker.bell.ring();
                // A permit's task that did not queue frees its place.
                let granted = self.grant(&mut state);
                drop(state);
                return granted.deliver();
            }
            if state.workers.len() < options.max_threads {
                let start = Self::reserve(&mut state, Some(job));
                let granted = self.grant(&mut state);
                drop(state);
                self.start(start);
                return granted.deliver();
            }
            if !job.abortable() {
                let concurrency = self.concurrency;
                let roomiest = state
                    .workers
                    .iter_mut()
                    .filter(|w| !w.exclusive && !w.recycle && w.load() < concurrency)
                    .min_by_key(|w| w.load());
                if let Some(worker) = roomiest {
                    worker.inbox.push_back(job);
                    worker.bell.ring();
                    let granted = self.grant(&mut state);
                    drop(state);
                    return granted.deliver();
                }
            }
        } else if state.workers.len() < options.max_threads {
            // Tasks wait although a worker could be added (the oldest is abortable and every
            // worker busy): add one for the oldest, and queue this one behind the rest.
            let oldest = state.queue.pop_front();
            start = Some(Self::reserve(&mut state, oldest));
        }
        // The places permits hold count as queued; a permit's task takes its own.
        let rejected = match options.max_queue {
            Some(0) => Some(Error::NoQueue),
            Some(limit)
                if !reserved && state.queue.len() + state.permits.outstanding() >= limit =>
            {
                Some(Error::QueueFull)
            }
            _ => None,
        };
        let rejected = match rejected {
            None => {
                state.queue.push_back(job);
                self.open_intake_if_saturated(&mut state);
                None
            }
            Some(error) => Some((job, error)),
        };
        let granted = self.grant(&mut state);
        drop(state);
        if let Some(start) = start {
            self.start(start);
        }
        if let Some((job, error)) = rejected {
            job.fail(error, &self.tally);
        }
        granted.deliver();
    }

    // ---- Aborting ---------------------------------------------------------------------------

    /// What `job`'s abort signal calls when it fires: aborts the task, if the pool and the task
    /// are still there.
    fn abort_listener(self: &Arc<Self>, job: &JobRef) -> impl FnOnce(Option<String>) {
        let scheduler = Arc::downgrade(self);
        let job: Weak<dyn Job> = Arc::downgrade(job);
        move |reason| {
            if let (Some(scheduler), Some(job)) = (scheduler.upgrade(), job.upgrade()) {
                scheduler.abort(&job, Error::Aborted { reason });
            }
        }
    }

    /// Fails `job` with `error` wherever it is (a fired signal, [`Task::abort`], a timeout):
    /// see the module's doc. Nothing if it is nowhere: it resolved.
    fn abort(self: &Arc<Self>, job: &JobRef, error: Error) {
        let mut state = self.lock();
        // A task without signal or timeout (`Task::abort`) may be in the intake.
        self.take_intake(&mut state, false);
        if state.queue.remove(job) {
            let idle = self.settle(&mut state);
            let granted = self.grant(&mut state);
            drop(state);
            job.fail(error, &self.tally);
            resolve(idle);
            granted.deliver();
            return;
        }
        let running = state
            .workers
            .iter()
            .position(|worker| worker.running.iter().any(|running| same(running, job)));
        let waiting = state
            .workers
            .iter()
            .position(|worker| worker.inbox.iter().any(|queued| same(queued, job)));
        if let Some(index) = waiting {
            let worker = &mut state.workers[index];
            worker.inbox.retain(|queued| !same(queued, job));
            worker.exclusive = worker.holds_abortable();
            let idle = self.settle(&mut state);
            drop(state);
            job.fail(error, &self.tally);
            resolve(idle);
        } else if let Some(index) = running {
            if state.workers[index].running.len() > 1 || job.runs_async() {
                // Sent to a child with others (`Task::abort` of a task that does not run
                // alone): stopping the child would stop them too. It fails now; the child
                // finishes it, and that result is dropped. An async task's worker drops its
                // future at its next poll (the failure wakes it), and goes on.
                drop(state);
                job.fail(error, &self.tally);
                return;
            }
            let exit = match error {
                Error::TimedOut { .. } => Exit::TimedOut,
                _ => Exit::Aborted,
            };
            if !job.fail(error, &self.tally) {
                return; // It resolved first.
            }
            // A thread cannot be stopped: retire the worker, so that it leaves once the
            // function returns and no longer counts toward `max_threads`. Nothing else was
            // running on it; what it had taken and not started goes back to the head of the
            // queue, in order, for an idle worker or a replacement.
            let worker = state.retire(index, exit);
            worker.retired.store(true, Ordering::Release);
            if !worker.inbox.is_empty() {
                for queued in worker.inbox.into_iter().rev() {
                    state.queue.push_front(queued);
                }
                for idle in state.workers.iter().filter(|w| w.load() == 0 && !w.recycle) {
                    idle.bell.ring();
                }
            }
            let starts = self.replenish(&mut state);
            let idle = self.settle(&mut state);
            drop(state);
            self.start_all(starts);
            resolve(idle);
        }
    }

    // ---- Closing and idleness -----------------------------------------------------------------

    /// What to do after the state changed in a way that may have drained a closing pool or
    /// made it idle: wakes whoever waits for the drain, and returns the idle waiters to
    /// resolve once the lock is released (and the task just finished, if any, published).
    fn settle(&self, state: &mut SchedulerState) -> Vec<Arc<Slot<()>>> {
        if state.closing && state.workers.is_empty() {
            self.thread_finished.notify_all();
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

    /// Waits until a closed pool has drained (no worker left), then for its threads to
    /// finish, for at most `terminate_timeout` from the drain on.
    pub(crate) fn wait_closed(&self) -> Result<(), Error> {
        let mut state = self.lock();
        // Unbounded: the tasks themselves may take as long as they take. (Notified by
        // `settle` when the last worker goes, and by `destroy`.)
        while !state.workers.is_empty() {
            state = wait_timeout(&self.thread_finished, state, Duration::from_secs(3600));
        }
        drop(state);
        self.timer.join();
        self.join_threads(self.stop_deadline())
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
        Some(self.join_threads(Instant::now()))
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
            let SchedulerState { queue, workers, .. } = &mut *state;
            let mut cancelled: Vec<JobRef> = queue.drain();
            for worker in workers.iter_mut() {
                cancelled.extend(worker.inbox.drain(..));
                worker.exclusive = worker.holds_abortable();
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
