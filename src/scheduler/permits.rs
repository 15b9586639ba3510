//! Backpressure: places in a bounded queue, reserved ahead of the tasks that fill them
//! (`Pool::reserve`, which resolves to a `Permit`).
//!
//! The rules, all applied under the state lock:
//!
//! - A *place* is one of `max_queue`'s. A queued task holds one, and so does every permit
//!   granted and not yet used or given back (`outstanding`). A plain submit that would have
//!   to queue is refused (`QueueFull`) once `queue.len() + outstanding >= max_queue`; a
//!   permit's task takes the place its permit held, so it is never refused for room (see
//!   [`Scheduler::place`]).
//! - A request is granted at once if nobody waits and a place is free; otherwise it waits,
//!   first come, first granted. Waiters are granted, oldest first, wherever a place may have
//!   come free: a worker took from the queue, a task left it (abort, cancel, a pool whose
//!   workers cannot start), a permit's task went straight to a worker, a permit or a granted
//!   request was dropped. Where nobody waits, each of those costs a test of an empty list.
//!   So while anyone waits, no place is free, and a plain submit cannot overtake a waiter.
//! - A place is granted under the lock (the ticket is marked, `outstanding` counts it) and
//!   its waiter woken once the lock is released ([`Answers::deliver`]); a request dropped in
//!   between finds its ticket granted, and gives the place back to the next waiter.
//! - An unbounded queue counts nothing: a request is granted at once, and its permit holds no
//!   place. A pool without a queue (`max_queue` 0) refuses at once with `NoQueue`: it has no
//!   place to reserve, and a permit could not keep its promise (the idle worker it waited for
//!   may be taken by another task before the permit's own arrives).
//! - Close and destroy fail every waiter (`Closed`, `Terminated`) and refuse later requests;
//!   a permit used after that fails its task the same way (the pool takes no new task), and
//!   is given back.
//!
//! The counts and the line are plain data in the state
//! ([`Permits`](super::places::Permits), in `places.rs`); this file is the scheduler's side:
//! the lock, the pool's options, and when to grant.

use std::sync::Arc;

use super::places::{Answers, Request, Ticket};
use super::state::SchedulerState;
use super::Scheduler;
use crate::sync::MutexGuard;
use crate::Error;

impl Scheduler {
    /// Reserves a place in the queue for a task to come, or waits for one (see the module's
    /// doc).
    pub(crate) fn request_place(&self) -> Request {
        let mut state = self.lock();
        if state.destroyed {
            return Request::Refused(Error::Terminated);
        }
        if state.closing {
            return Request::Refused(Error::Closed);
        }
        match self.options.max_queue {
            None => Request::Granted { counted: false },
            Some(0) => Request::Refused(Error::NoQueue),
            Some(limit) => {
                let queued = state.queue.len();
                state.permits.request(queued, limit)
            }
        }
    }

    /// A request given up before it saw its answer (its `Reserve` dropped): it leaves the
    /// line, or, granted meanwhile, gives its place to the next waiter.
    pub(crate) fn withdraw(&self, ticket: &Arc<Ticket>) {
        let mut state = self.lock();
        if state.permits.withdraw(ticket) {
            self.give_back(state);
        }
    }

    /// An unused permit's place, given back (the permit dropped).
    pub(crate) fn release_place(&self) {
        self.give_back(self.lock());
    }

    fn give_back(&self, mut state: MutexGuard<'_, SchedulerState>) {
        state.permits.use_one();
        let granted = self.grant(&mut state);
        drop(state);
        granted.deliver();
    }

    /// Grants free places to the waiters, oldest first; they are told once the lock is
    /// released. Called wherever a place may have come free; a test of an empty list when
    /// nobody waits.
    #[inline]
    pub(super) fn grant(&self, state: &mut SchedulerState) -> Answers {
        // Only a bounded queue has waiters.
        match self.options.max_queue {
            Some(limit) if state.permits.anyone_waiting() => {
                let queued = state.queue.len();
                state.permits.grant(queued, limit)
            }
            _ => Answers::none(),
        }
    }
}
