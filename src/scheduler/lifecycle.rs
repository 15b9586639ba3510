//! How workers come and go. A worker is *reserved* in the state under the lock (it counts at
//! once, and may be handed its first task), and its thread started after the lock is released
//! (spawning is a syscall); the thread makes itself a worker of its runtime and runs the loop.
//! A worker *leaves* (retired: removed from the state, its id free) and is *replaced* up to
//! `min_threads` and what the queue needs; in an isolated pool a reservation first promotes a
//! spare whose id is free, whose thread runs already (see `spare.rs`). Every thread marks itself finished as its last step,
//! however it ends; finished threads are joined by whoever next takes the lock to start one,
//! and by `destroy`, which waits for them all.

use std::sync::Arc;
use std::time::Instant;

use super::state::{JobRef, Reservation, Reserved, SchedulerState, ThreadRecord, WorkerRecord};
use super::Scheduler;
use crate::hooks::Exit;
use crate::hooks::WorkerInfo;
use crate::runtime::WorkerStart;
use crate::stats::Tally;
use crate::sync::thread::{self, JoinHandle};
use crate::sync::{wait_timeout, AtomicBool, MutexGuard};
use crate::trace;
use crate::wait::Doorbell;
use crate::Error;

impl Scheduler {
    // ---- Reserve and start ------------------------------------------------------------------

    /// Adds a worker to the state (it counts at once) and returns what to start for it: its
    /// thread, unless a spare was promoted instead (see `spare.rs`), and, in an isolated pool
    /// with work in sight (`first`, or a queue), a spare to succeed it.
    pub(super) fn reserve(state: &mut SchedulerState, first: Option<JobRef>) -> Reserved {
        let with_work = first.is_some() || !state.queue.is_empty();
        // Its exports are known once it started: until then an abortable task runs alone.
        let exclusive = first.as_ref().is_some_and(|job| job.exclusive());
        let inbox = first.into_iter().collect();
        let (thread, id) = match state.spares.promotable(&state.ids_in_use) {
            Some(spare) => {
                let id = spare.id;
                state.ids_in_use[id - 1] = true;
                spare.bell.ring();
                state.workers.push(WorkerRecord::new(
                    spare.serial,
                    id,
                    spare.bell,
                    spare.retired,
                    spare.pid,
                    inbox,
                    exclusive,
                ));
                (None, id)
            }
            None => {
                // The lowest free id; a new one only when all are taken (callers never
                // exceed `max_threads`, so neither does the list).
                let ids = &mut state.ids_in_use;
                let index = match ids.iter().position(|used| !used) {
                    Some(index) => index,
                    None => {
                        ids.push(false);
                        ids.len() - 1
                    }
                };
                ids[index] = true;
                let start = Self::new_thread(state, index + 1, false);
                state.workers.push(WorkerRecord::new(
                    start.serial,
                    index + 1,
                    start.bell.clone(),
                    start.me.retired.clone(),
                    None,
                    inbox,
                    exclusive,
                ));
                (Some(start), index + 1)
            }
        };
        let spare = if with_work {
            Self::reserve_spare(state, id)
        } else {
            None
        };
        Reserved { thread, spare }
    }

    /// Records a thread to start for worker `id` (or for its spare) and returns what it needs.
    pub(super) fn new_thread(state: &mut SchedulerState, id: usize, spare: bool) -> Reservation {
        let serial = state.next_serial;
        state.next_serial += 1;
        let bell = Arc::new(Doorbell::new());
        let retired = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::owned());
        state.threads.push(ThreadRecord {
            serial,
            id,
            handle: None,
            finished: false,
            publishing: false,
            on_exit: Vec::new(),
            exit: None,
            tally: Some(tally.clone()),
        });
        Reservation {
            serial,
            bell: bell.clone(),
            me: WorkerStart {
                id,
                retired,
                tally,
                bell,
            },
            spare,
        }
    }

    /// Reserves workers until there are `min_threads` (none once closing), and enough for the
    /// queue.
    pub(super) fn replenish(&self, state: &mut SchedulerState) -> Vec<Reserved> {
        // The pool has lost a worker: the intake's tasks join the queue, which counts.
        self.take_intake(state, true);
        if state.destroyed {
            return Vec::new();
        }
        let options = &self.options;
        let floor = if state.closing {
            0
        } else {
            options.min_threads
        };
        let wanted = floor.max(state.queue.len().min(options.max_threads));
        let mut starts = Vec::new();
        while state.workers.len() < wanted {
            starts.push(Self::reserve(state, None));
        }
        starts
    }

    pub(super) fn start_all(self: &Arc<Self>, starts: Vec<Reserved>) {
        for start in starts {
            self.start(start);
        }
    }

    /// Starts what [`reserve`](Self::reserve) gave, outside the lock (spawning is a syscall):
    /// the worker's thread first, then its spare's.
    pub(super) fn start(self: &Arc<Self>, reserved: Reserved) {
        for start in reserved.thread.into_iter().chain(reserved.spare) {
            self.start_thread(start);
        }
    }

    /// Starts the thread of a reserved worker or spare.
    pub(super) fn start_thread(self: &Arc<Self>, start: Reservation) {
        let serial = start.serial;
        let spare = start.spare;
        let options = &self.options;
        let mut builder =
            thread::Builder::new().name(format!("{}-{}", options.thread_name, start.me.id));
        if let Some(size) = options.stack_size {
            builder = builder.stack_size(size);
        }
        let scheduler = self.clone();
        let spawned = builder.spawn(move || scheduler.run_worker(start));
        let mut state = self.lock();
        let finished = take_finished(&mut state);
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
                    spare,
                    Error::WorkerStartFailed {
                        message: format!("spawning a thread: {error}"),
                    },
                );
            }
        }
        join_all(finished);
    }

    /// The body of every worker thread: become a worker of the runtime, run the loop, stop.
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
        let _marked = OwnWorker::mark(&self, me.serial);
        // The setup export runs in here (see the runtimes): a worker whose setup fails does
        // not start.
        let mut worker = match self.launcher.start(&self.worker_options, &me.me) {
            Ok(worker) => worker,
            Err(error) => return self.start_failed(me.serial, me.spare, error),
        };
        // A spare serves once promoted; one discarded stops unannounced.
        if me.spare && !self.await_promotion(&me, &mut *worker) {
            worker.stop();
            return;
        }
        let mut info = WorkerInfo {
            id: me.me.id,
            pid: worker.pid(),
            running: 0,
        };
        let async_exports = worker.async_exports();
        if info.pid.is_some() || self.options.hooks.start.is_some() || !async_exports.is_empty() {
            let mut state = self.lock();
            if let Some(index) = state.position(me.serial) {
                let record = &mut state.workers[index];
                record.pid = info.pid;
                info.running = record.load();
                if !async_exports.is_empty() {
                    record.async_exports = async_exports;
                    // Its first task may share it after all.
                    record.exclusive = record.holds_exclusive();
                }
            }
        }
        let reporter = &self.worker_options.reporter;
        trace::worker_started(info.id, info.pid);
        self.options.hooks.started(&info, reporter);
        self.worker_loop(&me, &mut *worker);
        // A dead child was reaped before its runtime said so: its status is known.
        let (code, signal) = worker.exit_status();
        worker.stop();
        if self.options.hooks.wants_exit() {
            let noted = {
                let mut state = self.lock();
                let record = state.threads.iter_mut().find(|r| r.serial == me.serial);
                record.and_then(|record| record.exit.take())
            };
            // The loop ends only once the worker is retired, which notes a reason.
            let exit = match noted.unwrap_or(Exit::Crashed { code, signal }) {
                Exit::Crashed { .. } => Exit::Crashed { code, signal },
                exit => exit,
            };
            info.running = 0;
            trace::worker_exited(info.id, info.pid, &exit);
            self.options.hooks.exited(&info, &exit, reporter);
        }
    }

    /// A worker could not start: the tasks it took fail, and so does the queue when no other
    /// worker is left to take it. Nothing is respawned here, so a pool whose workers cannot
    /// start fails its tasks instead of spinning; the next task tries again. A `spare` not
    /// promoted holds no task: its error goes to `on_error`, unless it was discarded.
    fn start_failed(&self, serial: u64, spare: bool, error: Error) {
        let mut state = self.lock();
        if spare && state.position(serial).is_none() {
            let listed = state.spares.take(serial).is_some();
            drop(state);
            if listed {
                self.worker_options.reporter.report(error);
            }
            return;
        }
        let mut failed: Vec<JobRef> = Vec::new();
        // A worker retired while it started (abort, destroy) has nothing to report.
        let live = state.position(serial);
        if let Some(index) = live {
            // Never read: a worker that did not start gets no `on_worker_exit`.
            let never_started = Exit::Crashed {
                code: None,
                signal: None,
            };
            failed.extend(state.retire(index, never_started).inbox);
        }
        self.take_intake(&mut state, true);
        if state.workers.is_empty() {
            failed.extend(state.queue.drain());
        }
        let idle = self.settle(&mut state);
        let granted = self.grant(&mut state);
        drop(state);
        granted.deliver();
        if failed.is_empty() {
            if live.is_some() {
                self.worker_options.reporter.report(error);
            }
        } else {
            for job in failed {
                job.fail(error.clone(), &self.tally);
            }
        }
        super::resolve(idle);
    }

    // ---- Leave --------------------------------------------------------------------------------

    /// Retires the worker at `index`, which leaves for `exit`, and starts its replacements;
    /// publishes `done`, the task it finished last, once its replacements count (counted in
    /// the worker's `tally`).
    pub(super) fn leave(
        self: &Arc<Self>,
        mut state: MutexGuard<'_, SchedulerState>,
        index: usize,
        done: Option<JobRef>,
        exit: Exit,
        tally: &Tally,
    ) {
        let left = state.retire(index, exit);
        state.publishing(left.serial, done.is_some());
        // Tasks it took but never started go back to the head of the queue, in order, for an
        // idle worker or a replacement; dropping them would hang their callers. They are the
        // siblings of an isolated task (with `concurrent_tasks_per_worker` > 1), and the tasks
        // sent ahead to a child that died: a child runs its tasks in order, so those after the
        // one it died in never started.
        let taken: Vec<JobRef> = left.running.into_iter().chain(left.inbox).collect();
        if !taken.is_empty() {
            for job in taken.into_iter().rev() {
                state.queue.push_front(job);
            }
            for idle in state.workers.iter().filter(|w| w.load() == 0 && !w.recycle) {
                idle.bell.ring();
            }
        }
        let starts = self.replenish(&mut state);
        let idle = self.settle(&mut state);
        drop(state);
        if let Some(job) = done {
            job.publish(tally);
        }
        self.start_all(starts);
        super::resolve(idle);
    }

    /// Called by every worker thread as its very last step.
    fn thread_finished(self: &Arc<Self>, serial: u64) {
        let mut state = self.lock();
        let mut countdowns = Vec::new();
        let mut tally = None;
        if let Some(record) = state.threads.iter_mut().find(|r| r.serial == serial) {
            record.finished = true;
            countdowns = std::mem::take(&mut record.on_exit);
            tally = record.tally.take();
        }
        // Its worker counts nothing more: what it counted joins the pool's totals.
        if let Some(tally) = tally {
            state.meter.thread_ended(&tally);
        }
        // A worker that left its loop by a panic (a bug of ours) is still listed: retire it
        // and fail what it held, so nothing hangs.
        let mut orphans: Vec<JobRef> = Vec::new();
        let mut starts = Vec::new();
        // Likewise a spare, which holds nothing.
        state.spares.take(serial);
        if let Some(index) = state.position(serial) {
            let lost = Exit::Crashed {
                code: None,
                signal: None,
            };
            let orphaned = state.retire(index, lost);
            orphans.extend(orphaned.running.into_iter().chain(orphaned.inbox));
            starts = self.replenish(&mut state);
        }
        let idle = self.settle(&mut state);
        drop(state);
        for job in orphans {
            job.fail(Error::Terminated, &self.tally);
        }
        super::resolve(idle);
        self.start_all(starts);
        self.thread_finished.notify_all();
        for countdown in countdowns {
            countdown.count_down();
        }
    }

    // ---- Join -----------------------------------------------------------------------------------

    /// Waits until every worker thread has finished or `deadline` passes, and joins them.
    /// The calling thread, when it is one of them, is not waited for, nor is the thread of
    /// worker `own` (whose task awaits this on another thread).
    pub(crate) fn join_threads(&self, deadline: Instant, own: Option<u64>) -> Result<(), Error> {
        let me = thread::current().id();
        let is_me = |record: &ThreadRecord| {
            Some(record.serial) == own
                || record
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
        let finished = take_finished(&mut state);
        let ended = state.destroyed || state.closing;
        drop(state);
        join_all(finished);
        if ended {
            // No worker is left to start: what the runtime keeps for them (a fork server)
            // goes now, not with the last handle of the pool.
            self.launcher.release();
        }
        match stuck {
            None => Ok(()),
            Some(worker) => Err(Error::TerminateTimeout { worker }),
        }
    }
}

#[cfg(not(loom))]
thread_local! {
    /// The scheduler (its address) and the serial of the worker this thread runs, if any.
    static OWN_WORKER: std::cell::Cell<Option<(usize, u64)>> = const { std::cell::Cell::new(None) };
}
// loom runs its threads as coroutines of one OS thread: a std thread-local would be shared.
#[cfg(loom)]
loom::thread_local! {
    static OWN_WORKER: std::cell::Cell<Option<(usize, u64)>> = std::cell::Cell::new(None);
}

/// Marks the current thread as the one of a worker of a scheduler while it lives: a wait for
/// that pool's end from inside one of its tasks or hooks knows not to wait for its own worker.
struct OwnWorker;

impl OwnWorker {
    fn mark(scheduler: &Scheduler, serial: u64) -> OwnWorker {
        let address = scheduler as *const Scheduler as usize;
        OWN_WORKER.with(|own| own.set(Some((address, serial))));
        OwnWorker
    }
}

impl Drop for OwnWorker {
    fn drop(&mut self) {
        OWN_WORKER.with(|own| own.set(None));
    }
}

impl Scheduler {
    /// The serial of this pool's worker that the current thread runs, if it runs one (a task
    /// or a hook of that worker is calling).
    pub(crate) fn own_worker(&self) -> Option<u64> {
        let address = self as *const Scheduler as usize;
        let own = OWN_WORKER.with(|own| own.get())?;
        (own.0 == address).then_some(own.1)
    }
}

/// Takes the handles of the finished threads out of the state, to be joined once it is
/// released.
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
