//! Warm spares: an isolated pool starts a worker's successor while the worker still has its
//! task, so that the next task does not wait for a spawn and a handshake.
//!
//! In an [`isolate_workers`](crate::Builder::isolate_workers) pool every worker leaves after
//! one task, and a replacement used to start only then: its thread, and in the child-process
//! runtime its child, its handshake and its setup, all on the next task's way. A *spare* is
//! that replacement started early, for one worker, and kept out of the pool until it is
//! needed:
//!
//! - **Which pools.** Isolated pools whose runtime says a spare pays
//!   ([`Launcher::spares_pay`](crate::runtime::Launcher::spares_pay)): child processes, and
//!   threads with a setup export (a bare thread starts about as fast as a parked spare
//!   wakes: measured, spares made the threads W4 benchmark slower).
//! - **When one starts.** For worker `k` of an isolated pool that is neither closing nor
//!   destroyed, and has no spare yet: when `k` takes a task, and when `k` is itself
//!   reserved, or promoted, with work in sight (a first task, or tasks queued). The latter lets
//!   a pool that keeps its queue full start two workers per slot at a time: a worker's
//!   successor starts with it, not after its task. Only if the successor is wanted as things
//!   stand: tasks are queued, or the pool is at or below `min_threads` (a pool of
//!   `min_threads(0)` fed one task at a time starts no spare, which it would discard).
//! - **What it is meanwhile.** A thread (and a child) that made itself a worker of its runtime,
//!   setup included, and told the id of the worker it will replace (`k`, so a spare's setup
//!   may run while `k` still runs its task); it is *not* a worker of the pool: it counts
//!   neither toward `max_threads` nor in `Pool::threads`/`workers`, takes no task, gets no
//!   hook call. So at most `max_threads` spares exist beside `max_threads` workers, one per
//!   worker id. While waiting, a child-process spare has its health checked as an idle worker
//!   has: one that died is reported to `on_error` and dropped.
//! - **Promotion.** Wherever a worker is reserved (a task with no idle worker, the replacement
//!   of a worker that left), a spare whose id is free (its worker left) joins the pool instead
//!   of a new one: it counts from then on, may be handed tasks at once (even while still
//!   starting), and is announced to `on_worker_start` once it has started; from then on it is
//!   a worker like any other, and gets exactly one `on_worker_exit`.
//! - **Discarded** when its worker goes idle without a task (an isolated worker waiting for
//!   work needs no successor yet), when its worker left and no replacement is wanted for
//!   `idle_timeout` (default 0: at once), and on `close`, `destroy` and `recycle_workers`. A
//!   discarded spare still starting stops as a worker destroyed while starting does (its
//!   child killed, within the handshake's 50 ms poll); one that has started stops as an idle
//!   worker does (teardown run, child reaped). `destroy` and `close` wait for its thread as for
//!   any worker's. No spare starts after `close` or `destroy`.
//! - **A spare that fails to start** reports its error to `on_error` (it holds no task to fail)
//!   and is dropped; nothing restarts it, so a pool whose workers cannot start does not loop:
//!   the next worker that takes a task tries again, once. A spare promoted while starting
//!   that then fails is a worker that failed to start: its tasks fail.

use std::sync::Arc;
use std::time::Instant;

use super::state::{Reservation, SchedulerState, Spare, Spares};
use super::Scheduler;
use crate::hooks::Exit;
use crate::runtime::{Flow, RunningWorker};
use crate::sync::thread;
use crate::sync::Ordering;
use crate::wait::{deadline_after, Doorbell};

impl Spares {
    /// Whether worker `id` has a spare.
    pub(super) fn has(&self, id: usize) -> bool {
        self.list.iter().any(|spare| spare.id == id)
    }

    pub(super) fn add(&mut self, spare: Spare) {
        self.list.push(spare);
    }

    /// Takes out a spare whose worker left (its id is free), to join the pool.
    pub(super) fn promotable(&mut self, ids_in_use: &[bool]) -> Option<Spare> {
        let at = (self.list.iter()).position(|spare| !ids_in_use[spare.id - 1])?;
        Some(self.list.swap_remove(at))
    }

    /// Takes out the spare `serial`, if it is still one.
    pub(super) fn take(&mut self, serial: u64) -> Option<Spare> {
        let at = self.list.iter().position(|spare| spare.serial == serial)?;
        Some(self.list.swap_remove(at))
    }

    /// Wakes the spare of worker `id`, if any, to see whether it is still wanted (its worker
    /// left).
    pub(super) fn ring(&self, id: usize) {
        for spare in self.list.iter().filter(|spare| spare.id == id) {
            spare.bell.ring();
        }
    }

    /// Discards the spare of worker `id`, if any.
    pub(super) fn discard(&mut self, id: usize) {
        if let Some(at) = self.list.iter().position(|spare| spare.id == id) {
            discarded(self.list.swap_remove(at));
        }
    }

    /// Discards every spare.
    pub(super) fn discard_all(&mut self) {
        self.list.drain(..).for_each(discarded);
    }
}

/// Tells a spare taken out of the list that it is not wanted: one still starting is retired
/// (its handshake or setup stops, its child is killed), one waiting wakes to stop as an idle
/// worker does.
fn discarded(spare: Spare) {
    if !spare.started {
        spare.retired.store(true, Ordering::Release);
    }
    spare.bell.ring();
}

impl Scheduler {
    /// Reserves a spare for worker `id` (its thread to be started once the lock is released),
    /// unless the pool starts none now, `id` has one already, or nothing would want it: the
    /// worker leaving is replaced only to keep `min_threads` or for queued tasks (else a
    /// spare would be discarded unused, and each task of a pool fed one at a time would start
    /// two workers).
    pub(super) fn reserve_spare(state: &mut SchedulerState, id: usize) -> Option<Reservation> {
        if !state.spares.enabled || state.closing || state.destroyed || state.spares.has(id) {
            return None;
        }
        let queued = !state.queue.is_empty() || state.intake_open;
        if !queued && state.workers.len() > state.spares.min_threads {
            return None;
        }
        let start = Self::new_thread(state, id, true);
        state.spares.add(Spare {
            serial: start.serial,
            id,
            bell: start.bell.clone(),
            retired: start.me.retired.clone(),
            pid: None,
            started: false,
        });
        Some(start)
    }

    /// Runs on a spare's thread once its worker has started: waits until it is promoted
    /// (`true`: it serves) or discarded (`false`: it stops, unannounced), checking its health
    /// meanwhile.
    pub(super) fn await_promotion(
        self: &Arc<Self>,
        me: &Reservation,
        worker: &mut dyn RunningWorker,
    ) -> bool {
        me.bell.bind_current_thread();
        let pid = worker.pid();
        // Since when no worker has its id and none is wanted: it idles out from there.
        let mut orphaned_since: Option<Instant> = None;
        loop {
            let mut state = self.lock();
            if let Some(index) = state.position(me.serial) {
                state.workers[index].pid = pid;
                return true;
            }
            let SchedulerState {
                spares, ids_in_use, ..
            } = &mut *state;
            let Some(spare) = spares.list.iter_mut().find(|s| s.serial == me.serial) else {
                return false; // Discarded.
            };
            spare.pid = pid;
            spare.started = true;
            let idle_deadline = if ids_in_use[spare.id - 1] {
                orphaned_since = None;
                None
            } else {
                let since = *orphaned_since.get_or_insert_with(Instant::now);
                since.checked_add(self.options.idle_timeout)
            };
            if idle_deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                spares.take(me.serial);
                return false;
            }
            drop(state);
            let check_deadline = worker.check_interval().map(deadline_after);
            let deadline = match (idle_deadline, check_deadline) {
                (Some(idle), Some(check)) => Some(idle.min(check)),
                (idle, check) => idle.or(check),
            };
            if park_until_rung(&me.bell, deadline) {
                continue;
            }
            if check_deadline.is_some_and(|check| Instant::now() >= check)
                && worker.check() != Flow::Continue
            {
                // Its child died (reported by the check). It may have been promoted meanwhile:
                // then it leaves as a worker that was never announced, its tasks requeued.
                let mut state = self.lock();
                state.spares.take(me.serial);
                if let Some(index) = state.position(me.serial) {
                    let crashed = Exit::Crashed {
                        code: None,
                        signal: None,
                    };
                    self.leave(state, index, None, crashed, &me.me.tally);
                }
                return false;
            }
        }
    }
}

/// Parks until `bell` rings or `deadline` passes; returns whether it rang. Unlike
/// [`Doorbell::wait`], it neither spins nor yields first: a spare waits for a whole task (or
/// for good), and a spinning spare would only take the CPU from the workers and the children
/// starting.
fn park_until_rung(bell: &Doorbell, deadline: Option<Instant>) -> bool {
    loop {
        if bell.take_ring() {
            return true;
        }
        match deadline {
            None => thread::park(),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return false;
                }
                thread::park_timeout(deadline - now);
            }
        }
    }
}
