//! The loop every worker thread runs, in two states as tokio's blocking pool has them:
//!
//! - BUSY, while it has work: *take a batch* under the lock (refill its inbox from the queue,
//!   start what it may), *run* the oldest task with the lock released (publishing the one
//!   finished before), then *book* it under the lock again, and leave if it must.
//! - IDLE, once it has none: publish the last task, *wait* on its doorbell (spinning briefly,
//!   then parked) until it is rung, its idle deadline passes (above `min_threads`), or its
//!   runtime's health check is due; then take the lock again.
//!
//! It leaves when it finds itself retired (abort, destroy, `recycle_workers` while idle), when
//! it is recycled and has nothing left, after every task when isolated (having started its
//! spare as it took the task, and dropped it if it idles first: see `spare.rs`), when its runtime says
//! so (a child that died, or passed its memory limit once its batch is done), or after
//! `idle_timeout` idle above `min_threads`.
//!
//! A finished task is published only once the worker's bookkeeping is done and the lock
//! released again ([`Shift::done`] holds it meanwhile): a caller woken by its result finds the
//! worker free (a `max_queue(0)` pool takes its next task, `workers()` shows it idle), or, when
//! the worker leaves, its replacement already counted. It costs no extra lock: per task, the
//! worker takes the lock once.
//!
//! For `Pool::stats` with `record_timing` (see `meter.rs`), the worker's busy time is read on
//! its transitions only: the clock is read under the lock when it takes work after idling and
//! when it goes idle (a read it needs anyway, for its idle deadline), so a caller woken by the
//! last task already sees that busy time; each task is timed with the lock released and
//! booked with it. Without it, no clock is read on a task's way to its caller.

use std::sync::Arc;
use std::time::Instant;

use super::meter::{Sample, Stopwatch};
use super::state::{JobRef, Reservation, Reserved, SchedulerState};
use super::Scheduler;
use crate::hooks::Exit;
use crate::runtime::{Flow, RunningWorker};
use crate::stats::Tally;
use crate::sync::MutexGuard;
use crate::task::Slot;
use crate::trace;
use crate::wait::deadline_after;
use crate::Error;

/// What the loop carries from one step to the next.
struct Shift {
    /// How many tasks the worker may hold started and not finished.
    depth: usize,
    /// Whether its runtime sends tasks ahead ([`RunningWorker::sends_ahead`]).
    sends_ahead: bool,
    /// The worker's id (for its tasks' trace spans).
    worker: usize,
    /// Whether its runtime makes its tasks' spans ([`RunningWorker::traces_tasks`]).
    traces_tasks: bool,
    /// The task finished last, published at the next release of the lock.
    done: Option<JobRef>,
    /// The tasks to hand over at the next release of the lock (kept to reuse its buffer).
    starting: Vec<JobRef>,
    /// Whether they are gathered: the runtime starts tasks ahead, or they are timed. (Else
    /// a task's way to its worker costs no reference count more.)
    gathers: bool,
    /// Told to leave once what it started has finished ([`Flow::Leave`]).
    draining: bool,
    /// When it went idle (`None` while busy): its idle time counts from there, across the
    /// wake-ups that check a child's health. Taken on the way into IDLE, not after each task,
    /// so that the per-task path reads no clock.
    idle_since: Option<Instant>,
    /// Times the tasks, with `record_timing`.
    stopwatch: Stopwatch,
    /// The times of the task finished last, booked with it.
    sample: Option<Sample>,
    /// The span of the task being finished, kept while `finish` is called again for it.
    span: Option<trace::TaskSpan>,
    /// How many `cancel_pending_tasks` calls came before the task sent ahead was taken.
    ahead_since: u64,
}

/// What a worker does once the lock is released after [`Scheduler::hand_back`].
#[derive(Default)]
struct HandedBack {
    /// The task handed back, if it resolved meanwhile, dropped with the lock released: what
    /// it holds is user code's.
    dropped: Option<JobRef>,
    /// The task handed back, cancelled since it was taken.
    cancelled: Option<JobRef>,
    /// The oldest, aborted meanwhile, whose worker was retired: its driver stops the child.
    aborted: Option<JobRef>,
    /// Workers to start: one for the task handed back, a retired worker's replacement.
    starts: Vec<Reserved>,
    /// `Pool::idle` waiters to resolve.
    idle: Vec<Arc<Slot<()>>>,
}

impl HandedBack {
    fn is_empty(&self) -> bool {
        self.dropped.is_none()
            && self.cancelled.is_none()
            && self.aborted.is_none()
            && self.starts.is_empty()
            && self.idle.is_empty()
    }

    /// Does it, the lock released; returns the aborted oldest, if its worker was retired.
    fn finish(self, scheduler: &Arc<Scheduler>) -> Option<JobRef> {
        if let Some(job) = self.cancelled {
            job.fail(Error::Cancelled, &scheduler.tally);
        }
        drop(self.dropped);
        scheduler.start_all(self.starts);
        super::resolve(self.idle);
        self.aborted
    }
}

/// How an idle worker's wait ended.
enum Woken {
    /// Its doorbell rang: work for it, or a change of its record (retired, recycled).
    Rung,
    /// Its runtime's health check was due, and said this.
    Checked(Flow),
    /// Its idle deadline passed.
    IdleTimeout,
}

impl Scheduler {
    /// The worker thread's loop (see the module's doc), until the worker leaves.
    pub(super) fn worker_loop(self: &Arc<Self>, me: &Reservation, worker: &mut dyn RunningWorker) {
        let isolated = self.options.isolate_workers;
        // An isolated worker runs one task per worker: nothing may be sent ahead.
        let depth = if isolated { 1 } else { worker.depth().max(1) };
        me.bell.bind_current_thread();
        let mut shift = Shift {
            depth,
            sends_ahead: worker.sends_ahead(),
            worker: me.me.id,
            traces_tasks: worker.traces_tasks(),
            done: None,
            starting: Vec::new(),
            gathers: worker.starts_ahead() || self.options.record_timing,
            draining: false,
            idle_since: None,
            stopwatch: Stopwatch::new(self.options.record_timing, worker.sends_ahead()),
            sample: None,
            span: None,
            ahead_since: 0,
        };
        let tally = &*me.me.tally;
        let mut state = self.lock();
        if let Some(index) = state.position(me.serial) {
            state.workers[index].waits_with_room = depth > 1 && !shift.sends_ahead;
        }
        // Until it finds itself retired (aborted, recycled while idle, the pool destroyed).
        while let Some(index) = state.position(me.serial) {
            // BUSY
            let ahead = !isolated && worker.may_send_ahead();
            if let Some(oldest) = self.take_batch(&mut state, index, &mut shift, ahead) {
                // An isolated worker's successor starts now, while it runs its task.
                let spare = if isolated {
                    Self::reserve_spare(&mut state, me.me.id)
                } else {
                    None
                };
                // `refill` may have taken from the queue: a place for a `Pool::reserve` waiter.
                let granted = self.grant(&mut state);
                if self.options.record_timing {
                    let meter = &mut state.workers[index].meter;
                    if !meter.is_busy() {
                        meter.busy_from(Instant::now());
                    }
                }
                release(state, &mut shift.done, tally);
                granted.deliver();
                if let Some(spare) = spare {
                    self.start_thread(spare);
                }
                let flow = run_oldest(worker, oldest, &mut shift);
                state = self.lock();
                if flow == Flow::Pending {
                    // The oldest has not finished: the others that did are published now,
                    // and the worker takes what it was given before it waits again.
                    state = self.publish_early(state, me.serial, &shift, tally);
                    continue;
                }
                if flow == Flow::TookBack {
                    // The oldest is slow: the task sent ahead behind it goes to a free
                    // worker, a new one, or back to the head of the queue.
                    let after = self.hand_back(&mut state, me.serial, shift.ahead_since);
                    if !after.is_empty() {
                        drop(state);
                        if let Some(oldest) = after.finish(self) {
                            // Retired: it stops its child as at any abort of a running task
                            // (the worker sees itself retired), and then leaves.
                            worker.finish(&oldest);
                        }
                        state = self.lock();
                    }
                    continue;
                }
                match self.book(state, me.serial, flow, &mut shift, tally) {
                    Some(relocked) => state = relocked,
                    None => return, // It left.
                }
                continue;
            }
            if state.workers[index].recycle || shift.draining {
                let exit = if state.workers[index].recycle {
                    Exit::Recycled
                } else {
                    Exit::MemoryRecycled
                };
                return self.leave(state, index, shift.done, exit, tally);
            }
            // About to idle: the pool is no longer saturated. Tasks that came in meanwhile
            // are this worker's to take.
            if self.take_intake(&mut state, true) {
                continue;
            }
            if state.closing {
                // Nothing is left for it, and a closing pool takes nothing new: it stops
                // (nothing replaces it: the queue is empty).
                state.retire(index, Exit::Closed);
                state.publishing(me.serial, shift.done.is_some());
                let idle = self.settle(&mut state);
                release(state, &mut shift.done, tally);
                return super::resolve(idle);
            }
            if isolated {
                // Waiting for work, it needs no successor yet.
                state.spares.discard(me.me.id);
            }
            // A store to its own record, and a test of an empty list unless someone waits on
            // `Pool::idle`.
            state.workers[index].publishing = shift.done.is_some();
            let idle = self.settle(&mut state);

            // IDLE
            let may_idle_out = state.workers.len() > self.options.min_threads;
            if shift.idle_since.is_none() && self.options.record_timing {
                // Read under the lock, so that a caller woken by the last task already sees
                // its busy time.
                let now = Instant::now();
                state.workers[index].meter.idle_from(now);
                shift.stopwatch.idle();
                shift.idle_since = Some(now);
            }
            release(state, &mut shift.done, tally);
            super::resolve(idle);
            // Otherwise read once the task is published: off its caller's path.
            let idle_since = *shift.idle_since.get_or_insert_with(Instant::now);
            let woken = self.wait_idle(me, worker, may_idle_out, idle_since);
            state = self.lock();
            match woken {
                Woken::Rung | Woken::Checked(Flow::Continue) => {}
                Woken::Checked(flow) => {
                    if let Some(index) = state.position(me.serial) {
                        return self.leave(state, index, None, exit_of(flow), tally);
                    }
                }
                Woken::IdleTimeout => {
                    if self.idle_out(&mut state, me.serial) {
                        return;
                    }
                }
            }
        }
        release(state, &mut shift.done, tally);
    }

    /// BUSY, under the lock: refills the worker's inbox from the queue, then moves what it may
    /// start to `running` (and to `shift.starting`, handed over once the lock is released).
    /// Returns the oldest task it runs, or `None` if it runs none.
    /// With `ahead`, it may take one task past its depth, if one is queued (see
    /// [`RunningWorker::may_send_ahead`]).
    fn take_batch(
        &self,
        state: &mut SchedulerState,
        index: usize,
        shift: &mut Shift,
        ahead: bool,
    ) -> Option<JobRef> {
        self.refill(state, index);
        let record = &mut state.workers[index];
        // Topped up once half of what it holds has finished, so that tasks leave in batches
        // (one write for many `RUN` frames) rather than one per finished task.
        let top_up = !shift.sends_ahead || record.running.len() <= shift.depth / 2;
        while top_up && !shift.draining && record.running.len() < shift.depth {
            // A task with a channel runs alone: its messages follow its `RUN` frame, and a
            // child reads no further than the next task while one runs. (So if one is
            // running, it is the only one, at the front.)
            let alone = |job: &JobRef| shift.sends_ahead && job.port().is_some();
            let Some(next) = record.inbox.front() else {
                break;
            };
            if let Some(first) = record.running.front() {
                if alone(next) || alone(first) {
                    break;
                }
            }
            let job = record.inbox.pop_front().expect("checked above");
            if shift.gathers {
                shift.starting.push(job.clone());
            }
            record.running.push_back(job);
        }
        if ahead && !shift.draining {
            self.take_ahead(state, index, shift);
        }
        state.workers[index].running.front().cloned()
    }

    /// BUSY, under the lock, after [`take_batch`](Self::take_batch) filled the worker: one task
    /// more, sent ahead (see [`RunningWorker::may_send_ahead`]): the queue's head, if one is
    /// queued and may share the worker (no channel, not exclusive), and the worker runs no
    /// task with a channel (which runs alone).
    fn take_ahead(&self, state: &mut SchedulerState, index: usize, shift: &mut Shift) {
        if state.queue.fifo_len() == 0 {
            self.take_intake(state, false);
        }
        let SchedulerState {
            queue,
            workers,
            cancels,
            ..
        } = &mut *state;
        let record = &mut workers[index];
        let full = record.running.len() == shift.depth && record.inbox.is_empty();
        if !full || record.recycle || record.exclusive {
            return;
        }
        let plain = |job: &JobRef| job.port().is_none() && !record.exclusive_for(&**job);
        if !record.running.front().is_some_and(plain) || !queue.front().is_some_and(plain) {
            return;
        }
        let job = queue.pop_front().expect("its front was just seen");
        shift.starting.push(job.clone());
        shift.ahead_since = *cancels;
        record.running.push_back(job);
    }

    /// Moves queued tasks into the worker's inbox while it has room, in the queue's order: an
    /// exclusive task at the head waits until the worker is empty, and then goes alone. The
    /// places it frees go to `Pool::reserve`'s waiters as the loop releases the lock.
    fn refill(&self, state: &mut SchedulerState, index: usize) {
        let concurrency = self.concurrency;
        if state.workers[index].recycle || state.workers[index].exclusive {
            return;
        }
        // Only when the queue's default-priority tasks (those the intake's go behind) cannot
        // fill the worker: each take is a cache miss for the submitting thread.
        if state.queue.fifo_len() < concurrency - state.workers[index].load() {
            self.take_intake(state, false);
        }
        loop {
            let SchedulerState { queue, workers, .. } = &mut *state;
            let record = &mut workers[index];
            while record.load() < concurrency {
                let Some(head) = queue.front() else { break };
                let exclusive = record.exclusive_for(&**head);
                if exclusive && record.load() > 0 {
                    break;
                }
                let job = queue.pop_front().expect("its front was just seen");
                record.inbox.push_back(job);
                if exclusive {
                    record.exclusive = true;
                    break;
                }
            }
            // Left with room, a worker of async tasks may wait on them without coming back to
            // this lock, the only place that drains the intake: a task offered there would
            // wait unseen for as long as they run (forever, for a future that never ends). So
            // the intake closes (what it took meanwhile joins the queue, for one more pass),
            // and the next task is handed to a worker, whose doorbell it rings.
            let room = record.waits_with_room && record.load() < concurrency;
            if !room || !state.intake_open || !self.take_intake(state, true) {
                return;
            }
        }
    }

    /// BUSY, under the lock again after [`run_oldest`]: counts the task, takes it off the worker, and
    /// decides whether the worker goes on. Returns the lock, or `None` if the worker left (the
    /// task is then published, after its replacement was counted).
    fn book<'a>(
        self: &'a Arc<Self>,
        mut state: MutexGuard<'a, SchedulerState>,
        serial: u64,
        flow: Flow,
        shift: &mut Shift,
        tally: &Tally,
    ) -> Option<MutexGuard<'a, SchedulerState>> {
        // Counted under the lock the worker takes anyway: a shared atomic would be one more
        // cache line bouncing between the workers on every task.
        state.completed += 1;
        let sample = shift.sample.take();
        let Some(index) = state.position(serial) else {
            // Retired while running (aborted, destroyed): the task already failed, and the
            // loop ends.
            return Some(state);
        };
        let record = &mut state.workers[index];
        record.meter.book(sample);
        record.running.pop_front();
        record.exclusive = record.holds_exclusive();
        shift.draining |= flow == Flow::Leave;
        let finished = record.running.is_empty();
        let recycled = record.recycle && record.inbox.is_empty() && finished;
        if flow == Flow::Dead
            || (finished && (shift.draining || self.options.isolate_workers))
            || recycled
        {
            let exit = match flow {
                Flow::Dead => exit_of(flow),
                _ if recycled => Exit::Recycled,
                _ if shift.draining => Exit::MemoryRecycled,
                _ => Exit::Isolated,
            };
            self.leave(state, index, shift.done.take(), exit, tally);
            return None;
        }
        Some(state)
    }

    /// BUSY, under the lock, after [`Flow::TookBack`]: the task sent ahead, the worker's last,
    /// never started. It goes where a task submitted now would, in the queue's order (it was
    /// the head when it was taken): to an idle worker, to a new worker if the pool has room for
    /// one (a worker left while the task was ahead: it idled out, or stopped in a closing pool,
    /// finding nothing queued), or it waits at the head of the queue for the next free worker.
    /// It fails `Cancelled` instead if `cancel_pending_tasks` came since it was taken (`since`:
    /// the count of cancels then), and it is dropped if it resolved meanwhile (aborted). And
    /// if the oldest was aborted meanwhile (which could not stop the child while the task ahead
    /// was on its way there), the worker now runs it alone, and is retired as that abort would
    /// have retired it: its child is stopped.
    fn hand_back(&self, state: &mut SchedulerState, serial: u64, since: u64) -> HandedBack {
        let mut after = HandedBack::default();
        // Retired meanwhile (`destroy`): its tasks failed with it.
        let Some(index) = state.position(serial) else {
            return after;
        };
        let Some(job) = state.workers[index].running.pop_back() else {
            return after;
        };
        if job.ended() {
            after.dropped = Some(job);
        } else if state.cancels != since {
            after.cancelled = Some(job);
        } else {
            state.queue.push_front(job);
            let room = state.workers.len() < self.options.max_threads;
            let SchedulerState { queue, workers, .. } = &mut *state;
            if let Some(idle) = (workers.iter_mut()).find(|w| w.load() == 0 && !w.recycle) {
                let head = queue.pop_front().expect("it was just put there");
                idle.exclusive = idle.exclusive_for(&*head);
                idle.inbox.push_back(head);
                idle.bell.ring();
            } else if room {
                let head = state.queue.pop_front();
                after.starts.push(Self::reserve(state, head));
            }
        }
        let record = &mut state.workers[index];
        if record.running.front().is_some_and(|oldest| oldest.ended()) {
            after.aborted = record.running.pop_front();
            let (starts, idle) = self.retire_aborted(state, index, Exit::Aborted);
            after.starts.extend(starts);
            after.idle = idle;
        }
        after
    }

    /// BUSY, under the lock, after [`Flow::Pending`]: takes the tasks that finished before
    /// the oldest off the worker (an async task's future staged its result, or the task was
    /// aborted), books them and publishes them with the lock released. Only a worker that
    /// does not send its tasks ahead finishes them out of order.
    fn publish_early<'a>(
        &'a self,
        mut state: MutexGuard<'a, SchedulerState>,
        serial: u64,
        shift: &Shift,
        tally: &Tally,
    ) -> MutexGuard<'a, SchedulerState> {
        let Some(index) = state.position(serial).filter(|_| !shift.sends_ahead) else {
            return state;
        };
        let record = &mut state.workers[index];
        let mut early = Vec::new();
        // The oldest is the one still waited for.
        let mut at = 1;
        while at < record.running.len() {
            if record.running[at].settled() {
                early.extend(record.running.remove(at));
            } else {
                at += 1;
            }
        }
        if early.is_empty() {
            return state;
        }
        for job in &early {
            record.meter.book(shift.stopwatch.settled(&**job));
        }
        record.exclusive = record.holds_exclusive();
        state.completed += early.len() as u64;
        drop(state);
        for job in early {
            if let Some(port) = job.port() {
                port.close();
            }
            job.publish(tally);
        }
        self.lock()
    }

    /// IDLE, the lock released: waits on the doorbell until it rings, the idle deadline passes
    /// (only if `may_idle_out`), or the runtime's health check is due, which it then runs.
    fn wait_idle(
        &self,
        me: &Reservation,
        worker: &mut dyn RunningWorker,
        may_idle_out: bool,
        idle_since: Instant,
    ) -> Woken {
        // `None`: never (an `idle_timeout` too long to count is no timeout).
        let idle_deadline = may_idle_out
            .then(|| idle_since.checked_add(self.options.idle_timeout))
            .flatten();
        let check_deadline = worker.check_interval().map(deadline_after);
        let deadline = match (idle_deadline, check_deadline) {
            (Some(idle), Some(check)) => Some(idle.min(check)),
            (idle, check) => idle.or(check),
        };
        if me.bell.wait(deadline) {
            return Woken::Rung;
        }
        if idle_deadline.is_none_or(|idle| Instant::now() < idle) {
            // Woken to check the worker's health, not to leave for idleness.
            return Woken::Checked(worker.check());
        }
        Woken::IdleTimeout
    }

    /// IDLE, under the lock again after its idle deadline: a worker still idle, still above
    /// `min_threads` and with nothing queued retires (nothing replaces it). Returns whether it
    /// did.
    fn idle_out(&self, state: &mut SchedulerState, serial: u64) -> bool {
        if state.workers.len() > self.options.min_threads && state.queue.is_empty() {
            if let Some(index) = state.position(serial) {
                if state.workers[index].load() == 0 {
                    state.retire(index, Exit::IdleTimeout);
                    // It may have been the last worker of a pool closed meanwhile.
                    super::resolve(self.settle(state));
                    return true;
                }
            }
        }
        false
    }
}

/// BUSY, the lock released: hands the batch's new tasks to the worker and sees `oldest` to its
/// end; it is published at the next release of the lock.
fn run_oldest(worker: &mut dyn RunningWorker, oldest: JobRef, shift: &mut Shift) -> Flow {
    if !shift.starting.is_empty() {
        shift.stopwatch.handing(&shift.starting);
        worker.start(&shift.starting);
        shift.starting.clear();
    }
    // Only a worker that makes its tasks' spans itself returns `Pending`: the one span made
    // here covers the task's whole run.
    let span = (shift.span.take())
        .or_else(|| (!shift.traces_tasks).then(|| trace::task(&*oldest, shift.worker)));
    let flow = worker.finish(&oldest);
    if flow.unfinished() {
        shift.span = span;
        return flow;
    }
    if let Some(span) = span {
        span.done();
    }
    shift.sample = shift.stopwatch.finished(&*oldest);
    shift.idle_since = None;
    if let Some(port) = oldest.port() {
        port.close();
    }
    shift.done = Some(oldest);
    flow
}

/// Why a worker leaves that its runtime told to: a dead one crashed (its exit status is read
/// from its runtime once it stopped), one told to leave passed its memory limit.
fn exit_of(flow: Flow) -> Exit {
    match flow {
        Flow::Leave => Exit::MemoryRecycled,
        _ => Exit::Crashed {
            code: None,
            signal: None,
        },
    }
}

/// Releases the state lock, then publishes the task the worker just finished, counted in the
/// worker's `tally`.
fn release(state: MutexGuard<'_, SchedulerState>, done: &mut Option<JobRef>, tally: &Tally) {
    drop(state);
    publish(done.take(), tally);
}

fn publish(done: Option<JobRef>, tally: &Tally) {
    if let Some(job) = done {
        job.publish(tally);
    }
}
