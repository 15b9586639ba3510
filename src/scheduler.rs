//! The scheduler: the queue, which worker takes a task, and when workers come and go.
//!
//! All bookkeeping sits in one [`SchedulerState`] behind one mutex, held only for a few pointer moves
//! and never while user code runs. A task is handed to the first idle worker, else to a new
//! worker while there are fewer than `max_threads`, else to the least loaded worker with room
//! (`concurrent_tasks_per_worker`), else it waits in the FIFO queue. Each worker has an inbox
//! (the tasks it has taken) and a [`Doorbell`]; a worker that runs out of work refills its inbox
//! from the queue, spins briefly on its doorbell and then parks. The same loop drives both
//! runtimes: a [`Launcher`] only decides how one job is executed.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::abort::AbortSignal;
use crate::channel::ErasedPort;
use crate::intake::Intake;
use crate::runtime::{Flow, Launcher, RunningWorker, WorkerOptions, WorkerStart};
// From `std`, or from loom under `--cfg loom` (see the loom tests at the bottom).
use crate::sync::thread::{self, JoinHandle};
use crate::sync::{
    lock, wait_timeout, AtomicBool, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering,
};
use crate::task::{Completion, Job, Slot, Task, TaskCell};
use crate::wait::deadline_after;
use crate::wait::Doorbell;
use crate::Error;

type JobRef = Arc<dyn Job>;

/// Whether two handles point to the same task.
fn same(a: &JobRef, b: &JobRef) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// A live worker, as the scheduler sees it.
struct WorkerRecord {
    serial: u64,
    id: usize,
    /// Tasks taken and not started.
    inbox: VecDeque<JobRef>,
    /// Tasks handed to the executor and not finished, oldest first: the running one, and in
    /// the child-process runtime those sent ahead to the child (see [`RunningWorker::depth`]).
    running: VecDeque<JobRef>,
    /// Holds an abortable task, so it takes no other.
    exclusive: bool,
    /// Leaves once its inbox is empty, taking nothing new (`recycle_workers`).
    recycle: bool,
    bell: Arc<Doorbell>,
    retired: Arc<AtomicBool>,
    /// The child's process id, in the child-process runtime.
    pid: Option<u32>,
}

impl WorkerRecord {
    fn load(&self) -> usize {
        self.inbox.len() + self.running.len()
    }

    /// Whether it holds an abortable task, which it runs alone.
    fn holds_abortable(&self) -> bool {
        self.running
            .front()
            .or(self.inbox.front())
            .is_some_and(|job| job.abortable())
    }
}

/// A thread the pool started and has not joined yet (live, retired or finished).
struct ThreadRecord {
    serial: u64,
    id: usize,
    handle: Option<JoinHandle<()>>,
    finished: bool,
    /// Completed when this thread finishes (`recycle_workers` waits on them).
    on_exit: Vec<Arc<Countdown>>,
}

#[derive(Default)]
struct SchedulerState {
    queue: VecDeque<JobRef>,
    workers: Vec<WorkerRecord>,
    /// `ids_in_use[id - 1]`: whether a live worker has that id.
    ids_in_use: Vec<bool>,
    next_serial: u64,
    destroyed: bool,
    /// Tasks the workers ran to their end (`Pool::completed`).
    completed: u64,
    threads: Vec<ThreadRecord>,
    /// Whether the [`Intake`] is open (it opens and closes only under this lock).
    intake_open: bool,
    /// The buffer swapped into the intake when it is emptied.
    intake_spare: Vec<JobRef>,
}

impl SchedulerState {
    fn position(&self, serial: u64) -> Option<usize> {
        self.workers
            .iter()
            .position(|worker| worker.serial == serial)
    }

    /// Removes a worker from the pool: it no longer counts, takes nothing, and its id is free.
    /// Its thread leaves as soon as it notices.
    fn retire(&mut self, index: usize) -> WorkerRecord {
        let worker = self.workers.remove(index);
        self.ids_in_use[worker.id - 1] = false;
        worker.bell.ring();
        worker
    }
}

/// A worker reserved in the state, whose thread is yet to start: what that thread needs.
pub(crate) struct Reservation {
    serial: u64,
    bell: Arc<Doorbell>,
    /// What its runtime is told.
    me: WorkerStart,
}

/// A snapshot of one worker, from [`Pool::workers`](crate::Pool::workers).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's id, as [`worker::id`](crate::worker::id) returns it inside.
    pub id: usize,
    /// The child's process id in the child-process runtime; `None` for threads, and for a
    /// child still starting (spawned, its handshake not yet done): a worker is listed from the
    /// moment the pool reserves it.
    pub pid: Option<u32>,
    /// Tasks the worker has taken: the running one and those waiting in its own queue.
    pub running: usize,
}

/// Counts workers down to zero, then resolves a task (`recycle_workers`).
struct Countdown {
    remaining: AtomicUsize,
    slot: Slot<()>,
}

impl Countdown {
    fn count_down(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.slot.complete(Ok(()));
        }
    }
}

impl Completion<()> for Countdown {
    fn slot(&self) -> &Slot<()> {
        &self.slot
    }
}

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
}

/// The pool's state, shared by its handles and its workers.
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
}

impl Scheduler {
    pub(crate) fn new(
        options: SchedulerOptions,
        launcher: Box<dyn Launcher>,
        worker_options: WorkerOptions,
    ) -> Arc<Self> {
        let shared = Arc::new(Scheduler {
            state: Mutex::new(SchedulerState {
                ids_in_use: vec![false; options.max_threads],
                ..SchedulerState::default()
            }),
            options,
            concurrency: worker_options.concurrent_tasks_per_worker,
            launcher,
            worker_options: Arc::new(worker_options),
            intake: Intake::new(),
            thread_finished: Condvar::new(),
            created: Instant::now(),
        });
        let starts = {
            let mut state = shared.lock();
            (0..shared.options.min_threads)
                .map(|_| Self::reserve(&mut state, None))
                .collect()
        };
        shared.start_all(starts);
        shared
    }

    fn lock(&self) -> MutexGuard<'_, SchedulerState> {
        lock(&self.state)
    }

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

    /// Runs export `name` (`None`: the default) with `arg`: the one way a task comes in. With
    /// `signal`, the task runs alone, and firing the signal aborts it wherever it is.
    pub(crate) fn submit<A, R>(
        self: &Arc<Self>,
        arg: A,
        name: Option<Cow<'static, str>>,
        port: Option<Box<dyn ErasedPort>>,
        signal: Option<AbortSignal>,
    ) -> Task<R>
    where
        A: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        let Some(signal) = signal else {
            let cell = Arc::new(TaskCell::new(arg, name, port, false));
            self.place(cell.clone());
            return Task::new(cell);
        };
        if signal.aborted() {
            return Task::ready(Err(Error::Aborted {
                reason: signal.reason(),
            }));
        }
        let cell = Arc::new(TaskCell::new(arg, name, port, true));
        let job: JobRef = cell.clone();
        self.place(job.clone());
        // Registered after `place`, so that the listener finds the task wherever it went; a
        // signal that fired in between is handled the same way right here.
        match signal.add_listener(self.abort_listener(&job)) {
            Some(listener) => cell.set_abort_hook(signal, listener),
            None => (self.abort_listener(&job))(signal.reason()),
        }
        Task::new(cell)
    }

    /// Hands `job` to a worker or queues it; fails it if the pool cannot take it.
    fn place(self: &Arc<Self>, job: JobRef) {
        // A task with an abort signal needs the scheduler's choice of worker (it runs alone).
        let job = if job.abortable() {
            job
        } else {
            match self.intake.offer(job) {
                Ok(()) => return,
                Err(job) => job,
            }
        };
        let options = &self.options;
        let mut state = self.lock();
        if state.destroyed {
            drop(state);
            job.fail(Error::Terminated);
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
                return;
            }
            if state.workers.len() < options.max_threads {
                let start = Self::reserve(&mut state, Some(job));
                drop(state);
                self.start(start);
                return;
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
                    return;
                }
            }
        } else if state.workers.len() < options.max_threads {
            // Tasks wait although a worker could be added (the oldest is abortable and every
            // worker busy): add one for the oldest, and queue this one behind the rest.
            let oldest = state.queue.pop_front();
            start = Some(Self::reserve(&mut state, oldest));
        }
        let rejected = match options.max_queue {
            Some(0) => Some(Error::NoQueue),
            Some(limit) if state.queue.len() >= limit => Some(Error::QueueFull),
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
        drop(state);
        if let Some(start) = start {
            self.start(start);
        }
        if let Some((job, error)) = rejected {
            job.fail(error);
        }
    }

    /// What `job`'s abort signal calls when it fires: aborts the task, if the pool and the task
    /// are still there.
    fn abort_listener(self: &Arc<Self>, job: &JobRef) -> impl FnOnce(Option<String>) {
        let shared = Arc::downgrade(self);
        let job: Weak<dyn Job> = Arc::downgrade(job);
        move |reason| {
            if let (Some(shared), Some(job)) = (shared.upgrade(), job.upgrade()) {
                shared.abort(&job, reason);
            }
        }
    }

    fn abort(self: &Arc<Self>, job: &JobRef, reason: Option<String>) {
        let error = Error::Aborted { reason };
        let mut state = self.lock();
        if let Some(index) = state.queue.iter().position(|queued| same(queued, job)) {
            state.queue.remove(index);
            drop(state);
            job.fail(error);
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
            drop(state);
            job.fail(error);
        } else if let Some(index) = running {
            if !job.fail(error) {
                return; // It resolved first.
            }
            // A thread cannot be stopped: retire the worker, so that it leaves once the
            // function returns and no longer counts toward `max_threads`. (An abortable task
            // runs alone, so nothing else was running on it.)
            let worker = state.retire(index);
            worker.retired.store(true, Ordering::Release);
            let starts = self.replenish(&mut state);
            drop(state);
            self.start_all(starts);
        }
    }

    // ---- Workers coming and going ---------------------------------------------------------

    /// Adds a worker to the state (it counts at once) and returns what its thread needs.
    fn reserve(state: &mut SchedulerState, first: Option<JobRef>) -> Reservation {
        let index = state
            .ids_in_use
            .iter()
            .position(|used| !used)
            .expect("callers never exceed max_threads");
        state.ids_in_use[index] = true;
        let serial = state.next_serial;
        state.next_serial += 1;
        let bell = Arc::new(Doorbell::new());
        let retired = Arc::new(AtomicBool::new(false));
        let exclusive = first.as_ref().is_some_and(|job| job.abortable());
        state.workers.push(WorkerRecord {
            serial,
            id: index + 1,
            inbox: first.into_iter().collect(),
            running: VecDeque::new(),
            exclusive,
            recycle: false,
            bell: bell.clone(),
            retired: retired.clone(),
            pid: None,
        });
        state.threads.push(ThreadRecord {
            serial,
            id: index + 1,
            handle: None,
            finished: false,
            on_exit: Vec::new(),
        });
        Reservation {
            serial,
            bell,
            me: WorkerStart {
                id: index + 1,
                retired,
            },
        }
    }

    /// Reserves workers until there are `min_threads`, and enough for the queue.
    fn replenish(&self, state: &mut SchedulerState) -> Vec<Reservation> {
        // The pool has lost a worker: the intake's tasks join the queue, which counts.
        self.take_intake(state, true);
        if state.destroyed {
            return Vec::new();
        }
        let options = &self.options;
        let wanted = options
            .min_threads
            .max(state.queue.len().min(options.max_threads));
        let mut starts = Vec::new();
        while state.workers.len() < wanted {
            starts.push(Self::reserve(state, None));
        }
        starts
    }

    fn start_all(self: &Arc<Self>, starts: Vec<Reservation>) {
        for start in starts {
            self.start(start);
        }
    }

    /// Starts the thread of a reserved worker, outside the lock (spawning is a syscall).
    fn start(self: &Arc<Self>, start: Reservation) {
        let serial = start.serial;
        let options = &self.options;
        let mut builder =
            thread::Builder::new().name(format!("{}-{}", options.thread_name, start.me.id));
        if let Some(size) = options.stack_size {
            builder = builder.stack_size(size);
        }
        let shared = self.clone();
        let spawned = builder.spawn(move || shared.run_worker(start));
        let mut state = self.lock();
        let finished = Self::take_finished(&mut state);
        match spawned {
            Ok(handle) => {
                if let Some(record) = state.threads.iter_mut().find(|r| r.serial == serial) {
                    record.handle = Some(handle);
                }
                drop(state);
            }
            Err(error) => {
                state.threads.retain(|record| record.serial != serial);
                drop(state);
                self.start_failed(
                    serial,
                    Error::WorkerStartFailed {
                        message: format!("spawning a thread: {error}"),
                    },
                );
            }
        }
        join_all(finished);
    }

    /// The body of every worker thread.
    fn run_worker(self: Arc<Self>, me: Reservation) {
        /// Marks the thread finished however it ends, so that `destroy` never waits for a
        /// thread that is gone.
        struct Finished<'a>(&'a Arc<Scheduler>, u64);
        impl Drop for Finished<'_> {
            fn drop(&mut self) {
                self.0.thread_finished(self.1);
            }
        }
        let _finished = Finished(&self, me.serial);
        let mut executor = match self.launcher.start(&self.worker_options, &me.me) {
            Ok(executor) => executor,
            Err(error) => return self.start_failed(me.serial, error),
        };
        if let Some(pid) = executor.pid() {
            let mut state = self.lock();
            if let Some(index) = state.position(me.serial) {
                state.workers[index].pid = Some(pid);
            }
        }
        self.worker_loop(&me, &mut *executor);
        executor.stop();
    }

    /// A worker could not start: the tasks it took fail, and so does the queue when no other
    /// worker is left to take it. Nothing is respawned here, so a pool whose workers cannot
    /// start fails its tasks instead of spinning; the next task tries again.
    fn start_failed(&self, serial: u64, error: Error) {
        let mut state = self.lock();
        let mut failed: Vec<JobRef> = Vec::new();
        // A worker retired while it started (abort, destroy) has nothing to report.
        let live = state.position(serial);
        if let Some(index) = live {
            failed.extend(state.retire(index).inbox);
        }
        self.take_intake(&mut state, true);
        if state.workers.is_empty() {
            failed.extend(state.queue.drain(..));
        }
        drop(state);
        if failed.is_empty() {
            if live.is_some() {
                self.worker_options.reporter.report(error);
            }
        } else {
            for job in failed {
                job.fail(error.clone());
            }
        }
    }

    fn take_finished(state: &mut SchedulerState) -> Vec<JoinHandle<()>> {
        let mut handles = Vec::new();
        state.threads.retain_mut(|record| {
            if record.finished && record.handle.is_some() {
                handles.extend(record.handle.take());
                false
            } else {
                true
            }
        });
        handles
    }

    /// The worker thread's loop: take tasks, hand them to the executor, publish each as it
    /// finishes, repeat; leave when retired, recycled, isolated, told to by the executor, or
    /// idle for `idle_timeout` above `min_threads`.
    ///
    /// A finished task is published only once the worker's bookkeeping is done and the lock
    /// released again (`done` holds it meanwhile): a caller woken by its result finds the
    /// worker free (a `max_queue(0)` pool takes its next task, `workers()` shows it idle), or,
    /// when the worker leaves, its replacement already counted. It costs no extra lock.
    pub(crate) fn worker_loop(
        self: &Arc<Self>,
        me: &Reservation,
        executor: &mut dyn RunningWorker,
    ) {
        let options = &self.options;
        // An isolated worker runs one task per worker: nothing may be sent ahead.
        let depth = if options.isolate_workers {
            1
        } else {
            executor.depth().max(1)
        };
        me.bell.bind_current_thread();
        let mut done: Option<JobRef> = None;
        // The tasks to hand over at the next release of the lock (kept to reuse its buffer).
        let mut starting: Vec<JobRef> = Vec::new();
        // Told to leave once what it started has finished.
        let mut draining = false;
        // When it last finished a task, or started: its idle time counts from there, across
        // the wake-ups that check a child's health.
        let mut idle_since = Instant::now();
        let mut state = self.lock();
        // The loop ends when the worker is retired: aborted, recycled while idle, or the pool
        // was destroyed.
        while let Some(index) = state.position(me.serial) {
            self.refill(&mut state, index);
            let worker = &mut state.workers[index];
            // Topped up once half of what it holds has finished, so that tasks leave in
            // batches (one write for many `RUN` frames) rather than one per finished task.
            let top_up = worker.running.len() <= depth / 2;
            while top_up && !draining && worker.running.len() < depth {
                // A task with a channel runs alone: its messages follow its `RUN` frame, and
                // a child reads no further than the next task while one runs. (So if one is
                // running, it is the only one, at the front.)
                let alone = |job: &JobRef| job.port().is_some();
                let Some(next) = worker.inbox.front() else {
                    break;
                };
                if let Some(first) = worker.running.front() {
                    if alone(next) || alone(first) {
                        break;
                    }
                }
                let job = worker.inbox.pop_front().expect("checked above");
                worker.running.push_back(job.clone());
                starting.push(job);
            }
            if let Some(job) = worker.running.front().cloned() {
                release(state, &mut done);
                if !starting.is_empty() {
                    executor.start(&starting);
                    starting.clear();
                }
                let flow = executor.finish(&job);
                idle_since = Instant::now();
                if let Some(port) = job.port() {
                    port.close();
                }
                done = Some(job);
                state = self.lock();
                // Counted under the lock the worker takes anyway: a shared atomic would be
                // one more cache line bouncing between the workers on every task.
                state.completed += 1;
                let Some(index) = state.position(me.serial) else {
                    break; // Retired while running (aborted, destroyed): it already failed.
                };
                let worker = &mut state.workers[index];
                worker.running.pop_front();
                worker.exclusive = worker.holds_abortable();
                draining |= flow == Flow::Leave;
                let finished = worker.running.is_empty();
                let recycled = worker.recycle && worker.inbox.is_empty() && finished;
                if flow == Flow::Dead
                    || (finished && (draining || options.isolate_workers))
                    || recycled
                {
                    self.leave(state, index);
                    return publish(done);
                }
                continue;
            }
            if worker.recycle || draining {
                self.leave(state, index);
                return publish(done);
            }
            // About to idle: the pool is no longer saturated. Tasks that came in meanwhile
            // are this worker's to take.
            if self.take_intake(&mut state, true) {
                continue;
            }
            let may_idle_out = state.workers.len() > options.min_threads;
            release(state, &mut done);
            // `None`: never (an `idle_timeout` too long to count is no timeout).
            let idle_deadline = may_idle_out
                .then(|| idle_since.checked_add(options.idle_timeout))
                .flatten();
            let check_deadline = executor.check_interval().map(deadline_after);
            let deadline = match (idle_deadline, check_deadline) {
                (Some(idle), Some(check)) => Some(idle.min(check)),
                (idle, check) => idle.or(check),
            };
            let rung = me.bell.wait(deadline);
            if !rung && idle_deadline.is_none_or(|idle| Instant::now() < idle) {
                // Woken to check the worker's health, not to leave for idleness.
                let healthy = executor.check() == Flow::Continue;
                state = self.lock();
                match state.position(me.serial) {
                    Some(index) if !healthy => return self.leave(state, index),
                    _ => continue,
                }
            }
            state = self.lock();
            if !rung && state.workers.len() > options.min_threads && state.queue.is_empty() {
                if let Some(index) = state.position(me.serial) {
                    if state.workers[index].load() == 0 {
                        state.retire(index);
                        return;
                    }
                }
            }
        }
        release(state, &mut done);
    }

    /// Retires the worker at `index` and starts its replacements.
    fn leave(self: &Arc<Self>, mut state: MutexGuard<'_, SchedulerState>, index: usize) {
        let worker = state.retire(index);
        // Tasks it took but never started go back to the head of the queue, in order, for an
        // idle worker or a replacement; dropping them would hang their callers. They are the
        // siblings of an isolated task (with `concurrent_tasks_per_worker` > 1), and the tasks
        // sent ahead to a child that died: a child runs its tasks in order, so those after the
        // one it died in never started.
        let taken: Vec<JobRef> = worker.running.into_iter().chain(worker.inbox).collect();
        if !taken.is_empty() {
            for job in taken.into_iter().rev() {
                state.queue.push_front(job);
            }
            for worker in state.workers.iter().filter(|w| w.load() == 0 && !w.recycle) {
                worker.bell.ring();
            }
        }
        let starts = self.replenish(&mut state);
        drop(state);
        self.start_all(starts);
    }

    /// Moves queued tasks into the worker's inbox while it has room. FIFO is kept: an
    /// abortable task at the head waits until the worker is empty, and then goes alone.
    fn refill(&self, state: &mut SchedulerState, index: usize) {
        let concurrency = self.concurrency;
        if state.workers[index].recycle || state.workers[index].exclusive {
            return;
        }
        // Only when the queue cannot fill the worker: each take is a cache miss for the
        // submitting thread.
        if state.queue.len() < concurrency - state.workers[index].load() {
            self.take_intake(state, false);
        }
        let SchedulerState { queue, workers, .. } = state;
        let worker = &mut workers[index];
        while worker.load() < concurrency {
            let Some(head) = queue.front() else { break };
            if head.abortable() {
                if worker.load() == 0 {
                    worker.exclusive = true;
                    worker.inbox.extend(queue.pop_front());
                }
                break;
            }
            worker.inbox.extend(queue.pop_front());
        }
    }

    /// Called by every worker thread as its very last step.
    pub(crate) fn thread_finished(self: &Arc<Self>, serial: u64) {
        let mut state = self.lock();
        let mut countdowns = Vec::new();
        if let Some(record) = state.threads.iter_mut().find(|r| r.serial == serial) {
            record.finished = true;
            countdowns = std::mem::take(&mut record.on_exit);
        }
        // A worker that left its loop by a panic (a bug of ours) is still listed: retire it
        // and fail what it held, so nothing hangs.
        let mut orphans: Vec<JobRef> = Vec::new();
        let mut starts = Vec::new();
        if let Some(index) = state.position(serial) {
            let worker = state.retire(index);
            orphans.extend(worker.running.into_iter().chain(worker.inbox));
            starts = self.replenish(&mut state);
        }
        drop(state);
        for job in orphans {
            job.fail(Error::Terminated);
        }
        self.start_all(starts);
        self.thread_finished.notify_all();
        for countdown in countdowns {
            countdown.count_down();
        }
    }

    // ---- Pool operations --------------------------------------------------------------------

    pub(crate) fn cancel_pending(&self) {
        let cancelled: Vec<JobRef> = {
            let mut state = self.lock();
            self.take_intake(&mut state, false);
            let SchedulerState { queue, workers, .. } = &mut *state;
            let mut cancelled: Vec<JobRef> = queue.drain(..).collect();
            for worker in workers.iter_mut() {
                cancelled.extend(worker.inbox.drain(..));
                worker.exclusive = worker.holds_abortable();
            }
            cancelled
        };
        for job in cancelled {
            job.fail(Error::Cancelled);
        }
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
            let serial = state.retire(index).serial;
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
        let doomed: Vec<JobRef> = {
            let mut state = self.lock();
            state.destroyed = true;
            self.take_intake(&mut state, true);
            let mut doomed: Vec<JobRef> = state.queue.drain(..).collect();
            while !state.workers.is_empty() {
                let worker = state.retire(0);
                worker.retired.store(true, Ordering::Release);
                doomed.extend(worker.running);
                doomed.extend(worker.inbox);
            }
            doomed
        };
        for job in doomed {
            job.fail(Error::Terminated);
        }
    }

    /// Waits until every worker thread has finished or `deadline` passes, and joins them.
    /// The calling thread, when it is one of them, is not waited for.
    pub(crate) fn join_threads(&self, deadline: Instant) -> Result<(), Error> {
        let me = thread::current().id();
        let is_me = |record: &ThreadRecord| {
            record
                .handle
                .as_ref()
                .is_some_and(|handle| handle.thread().id() == me)
        };
        let mut state = self.lock();
        let stuck = loop {
            let stuck = state
                .threads
                .iter()
                .filter(|record| !record.finished && !is_me(record))
                .map(|record| record.id)
                .min();
            let now = Instant::now();
            match stuck {
                None => break None,
                Some(id) if now >= deadline => break Some(id),
                Some(_) => {
                    state = wait_timeout(&self.thread_finished, state, deadline - now);
                }
            }
        };
        let finished = Self::take_finished(&mut state);
        drop(state);
        join_all(finished);
        match stuck {
            None => Ok(()),
            Some(worker) => Err(Error::TerminateTimeout { worker }),
        }
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

/// Releases the state lock, then publishes the task the worker just finished.
fn release(state: MutexGuard<'_, SchedulerState>, done: &mut Option<JobRef>) {
    drop(state);
    publish(done.take());
}

fn publish(done: Option<JobRef>) {
    if let Some(job) = done {
        job.publish();
    }
}

fn join_all(handles: Vec<JoinHandle<()>>) {
    let me = thread::current().id();
    for handle in handles {
        // A thread that finishes may itself start a replacement (`thread_finished`, after a
        // bug of ours made it leave its loop), whose start collects finished threads: its own
        // handle among them. Joining itself would fail; dropping the handle detaches it.
        if handle.thread().id() == me {
            continue;
        }
        // A worker thread catches every panic of user code; an error here is a bug of ours,
        // and its tasks were already failed by `thread_finished`.
        let _ = handle.join();
    }
}

/// Model checks of the scheduler's own code, a real [`Scheduler`] driving threads-runtime
/// workers: `RUSTFLAGS="--cfg loom" cargo test --lib loom`.
///
/// Time: loom models no clock, and a timed wait under loom is an untimed one (src/sync.rs).
/// So every deadline here is either already past when the scheduler computes it, or far
/// beyond the model's run, and no outcome depends on how much real time passes:
/// - `idle_timeout` is zero: an idle worker above `min_threads` finds its idle deadline
///   (`now + 0`) already passed after its brief spin on the doorbell, never parks, and
///   retires unless work arrived. Every interleaving of that exit with a submit is explored.
///   (With `min_threads` workers, the idle ones have no deadline and park untimed.)
/// - `terminate_timeout` is an hour: `join_threads` only ever ends by the last worker's
///   notification, as it must whenever workers finish their functions, so a model left
///   waiting there is a real lost notification, which loom reports as a deadlock.
///
/// loom allows five threads per model, the models' own included, and every worker the
/// scheduler spawns (a replacement too) is one.
#[cfg(all(test, loom))]
mod loom_tests {
    use std::time::Duration;

    use super::*;
    use crate::abort::AbortController;
    use crate::exports::Exports;
    use crate::runtime::thread::Threads;
    use crate::runtime::Reporter;

    /// `terminate_timeout`: never reached while a model runs (see the module's doc).
    const FAR: Duration = Duration::from_secs(3600);

    /// Checks `f` under every interleaving with at most `preemptions` preemptions (a switch
    /// away from a thread that could go on; switches where a thread blocks are free).
    /// Unbounded, these models do not finish in minutes: each scheduler step is a few locks
    /// and atomics, and DPOR still leaves millions of interleavings. The bounds keep each
    /// model within seconds; `LOOM_MAX_PREEMPTIONS` overrides them for a deeper local run.
    fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = builder.preemption_bound.or(Some(preemptions));
        builder.check(f);
    }

    /// A threads-runtime pool of `min_threads..=max_threads` workers that idle out at once,
    /// whose default export adds.
    fn pool(min_threads: usize, max_threads: usize) -> Arc<Scheduler> {
        let options = SchedulerOptions {
            min_threads,
            max_threads,
            idle_timeout: Duration::ZERO,
            max_queue: None,
            isolate_workers: false,
            thread_name: "tinypool".to_owned(),
            stack_size: None,
        };
        let threads = Threads {
            exports: Arc::new(Exports::new().export_default(|(a, b): (i32, i32)| a + b)),
            worker_data: None,
        };
        let worker_options = WorkerOptions {
            terminate_timeout: FAR,
            teardown: None,
            concurrent_tasks_per_worker: 1,
            reporter: Reporter::default(),
        };
        Scheduler::new(options, Box::new(threads), worker_options)
    }

    /// `Pool::run_with`: the default export, with an abort signal or without.
    fn run(shared: &Arc<Scheduler>, arg: (i32, i32), abort: Option<&AbortController>) -> Task<i32> {
        shared.submit(arg, None, None, abort.map(AbortController::signal))
    }

    /// The bookkeeping agrees with itself: ids unique, in range and marked in use, each live
    /// worker with its thread record.
    fn check_consistent(shared: &Scheduler) {
        let state = shared.lock();
        let mut in_use = vec![false; shared.options.max_threads];
        for worker in &state.workers {
            assert!((1..=in_use.len()).contains(&worker.id), "id out of range");
            assert!(
                !in_use[worker.id - 1],
                "two live workers share id {}",
                worker.id
            );
            in_use[worker.id - 1] = true;
            assert!(
                state
                    .threads
                    .iter()
                    .any(|r| r.serial == worker.serial && !r.finished),
                "a live worker without a running thread"
            );
        }
        assert_eq!(
            state.ids_in_use, in_use,
            "ids_in_use disagrees with the workers"
        );
        if !state.intake_open {
            assert_eq!(shared.intake.len(), 0, "a closed intake holds tasks");
        }
    }

    /// `Pool::destroy().wait()`: every worker retired, every thread finished.
    fn destroy(shared: &Arc<Scheduler>) {
        shared.shut_down();
        assert_eq!(shared.join_threads(shared.stop_deadline()), Ok(()));
        let state = shared.lock();
        assert!(state.workers.is_empty() && state.queue.is_empty());
        assert!(state.threads.iter().all(|record| record.finished));
        assert!(state.ids_in_use.iter().all(|used| !used));
    }

    /// A worker idles out the moment it has nothing to do (`min_threads` 0, zero
    /// `idle_timeout`), racing the next submit: that task goes to it, or to a new worker once
    /// it is gone, never nowhere.
    #[test]
    fn loom_submit_races_a_worker_idling_out() {
        model(4, || {
            let shared = pool(0, 1);
            assert_eq!(run(&shared, (1, 2), None).wait(), Ok(3));
            check_consistent(&shared);
            assert_eq!(run(&shared, (3, 4), None).wait(), Ok(7));
            check_consistent(&shared);
            assert_eq!(shared.completed(), 2);
            destroy(&shared);
        });
    }

    /// Two callers submit at once to a one-worker pool whose worker idles out between tasks:
    /// the second task is handed to the busy worker's queue, to the idle worker, or to a new
    /// worker, and both resolve with their own value.
    #[test]
    fn loom_concurrent_submits_each_resolve_once() {
        model(2, || {
            let shared = pool(0, 1);
            let other = {
                let shared = shared.clone();
                loom::thread::spawn(move || run(&shared, (10, 20), None).wait())
            };
            assert_eq!(run(&shared, (1, 2), None).wait(), Ok(3));
            assert_eq!(other.join().unwrap(), Ok(30));
            check_consistent(&shared);
            assert_eq!(shared.completed(), 2);
            destroy(&shared);
        });
    }

    /// An abort fired from another thread while the worker runs (or is about to run, or has
    /// just finished) the task: the caller sees one outcome, the worker is retired only if
    /// the abort won, and its replacement (`min_threads` 1) takes the next task.
    #[test]
    fn loom_abort_races_publish() {
        model(2, || {
            let shared = pool(1, 1);
            let controller = AbortController::new();
            let task = run(&shared, (1, 2), Some(&controller));
            let aborter = loom::thread::spawn(move || controller.abort());
            let outcome = task.wait();
            assert!(
                matches!(outcome, Ok(3) | Err(Error::Aborted { reason: None })),
                "{outcome:?}"
            );
            aborter.join().unwrap();
            check_consistent(&shared);
            let ids: Vec<usize> = shared.workers().iter().map(|w| w.id).collect();
            assert_eq!(ids, [1], "one worker, the first or its replacement");
            assert_eq!(run(&shared, (3, 4), None).wait(), Ok(7));
            destroy(&shared);
        });
    }

    /// `destroy` from another thread while the task runs, or before it starts, or after it
    /// finished: the task resolves (value or `Terminated`), every worker thread finishes and
    /// `join_threads` sees it, and later tasks are refused.
    #[test]
    fn loom_destroy_races_a_running_task() {
        model(4, || {
            let shared = pool(0, 1);
            let task = run(&shared, (1, 2), None);
            let destroyer = {
                let shared = shared.clone();
                loom::thread::spawn(move || {
                    shared.shut_down();
                    shared.join_threads(shared.stop_deadline())
                })
            };
            let outcome = task.wait();
            assert!(
                matches!(outcome, Ok(3) | Err(Error::Terminated)),
                "{outcome:?}"
            );
            assert_eq!(destroyer.join().unwrap(), Ok(()));
            destroy(&shared);
            assert_eq!(run(&shared, (3, 4), None).wait(), Err(Error::Terminated));
        });
    }

    /// A one-worker pool that idles out at once, three tasks submitted back to back: the
    /// second joins the queue while the worker is busy (opening the intake), the third may go
    /// through the intake while the worker empties the queue, idles and leaves. Whatever the
    /// order, every task resolves with its own value.
    #[test]
    fn loom_tasks_in_the_intake_are_never_lost() {
        model(2, || {
            let shared = pool(0, 1);
            let tasks = [(1, 2), (3, 4), (5, 6)].map(|arg| run(&shared, arg, None));
            let results = tasks.map(Task::wait);
            assert_eq!(results, [Ok(3), Ok(7), Ok(11)]);
            check_consistent(&shared);
            assert_eq!(shared.completed(), 3);
            destroy(&shared);
        });
    }

    /// `destroy` racing submits that may go through the open intake: each task resolves with
    /// its value or `Terminated`, and nothing is left in the intake.
    #[test]
    fn loom_destroy_races_the_intake() {
        model(2, || {
            let shared = pool(1, 1);
            let first = [(1, 2), (3, 4)].map(|arg| run(&shared, arg, None));
            let destroyer = {
                let shared = shared.clone();
                loom::thread::spawn(move || shared.shut_down())
            };
            let last = run(&shared, (5, 6), None);
            destroyer.join().unwrap();
            let [a, b] = first.map(Task::wait);
            let outcomes = [a, b, last.wait()];
            for (outcome, value) in outcomes.into_iter().zip([3, 7, 11]) {
                assert!(
                    matches!(&outcome, Ok(v) if *v == value) || outcome == Err(Error::Terminated),
                    "{outcome:?}"
                );
            }
            assert_eq!(shared.intake.len(), 0);
            destroy(&shared);
        });
    }
}
