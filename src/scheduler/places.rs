//! The bookkeeping behind `Pool::reserve`: how many places of a bounded queue permits hold,
//! and the line of requests waiting for one. Plain data, kept in the scheduler's state and
//! changed only under its lock; the rules that use it are in `permits.rs`.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::sync::{AtomicBool, Ordering};
use crate::task::{Completion, Outcome, Slot};
use crate::Error;

/// The places permits hold in a bounded queue, and who waits for one.
#[derive(Default)]
pub(super) struct Permits {
    /// Places granted and not yet used nor given back.
    outstanding: usize,
    /// Requests waiting for a place, oldest first.
    waiting: VecDeque<Arc<Ticket>>,
}

impl Permits {
    /// How many places permits hold.
    pub(super) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// How many requests wait for a place.
    #[cfg(all(test, loom))]
    pub(super) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// A place for a request made now, with `queued` tasks in a queue of `limit` places:
    /// granted if nobody waits and one is free, else the request joins the line.
    pub(super) fn request(&mut self, queued: usize, limit: usize) -> Request {
        if self.waiting.is_empty() && queued + self.outstanding < limit {
            self.outstanding += 1;
            return Request::Granted { counted: true };
        }
        let ticket = Arc::new(Ticket {
            slot: Slot::new(),
            granted: AtomicBool::new(false),
        });
        self.waiting.push_back(ticket.clone());
        Request::Waiting(ticket)
    }

    /// Grants the free places to the waiters, oldest first.
    pub(super) fn grant(&mut self, queued: usize, limit: usize) -> Answers {
        let mut granted = Vec::new();
        while queued + self.outstanding < limit {
            let Some(ticket) = self.waiting.pop_front() else {
                break;
            };
            ticket.granted.store(true, Ordering::Relaxed);
            self.outstanding += 1;
            granted.push(ticket);
        }
        Answers::of(granted, Ok(()))
    }

    /// Whether anyone waits: where nobody does, granting is skipped.
    pub(super) fn anyone_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// A request given up before it saw its answer: it leaves the line (nobody behind it
    /// gains a place: places are free only when nobody waits). Returns whether it had been
    /// granted a place meanwhile, which it then gives back (see [`use_one`](Self::use_one)).
    pub(super) fn withdraw(&mut self, ticket: &Arc<Ticket>) -> bool {
        if let Some(index) = self.waiting.iter().position(|w| Arc::ptr_eq(w, ticket)) {
            self.waiting.remove(index);
            return false;
        }
        // Read and cleared under the lock that set it: a place is given back once.
        ticket.granted.swap(false, Ordering::Relaxed)
    }

    /// A place a permit held is no longer held by it: its task took it (and holds it, if it
    /// queues), or it was given back.
    pub(super) fn use_one(&mut self) {
        debug_assert!(self.outstanding > 0, "a place given up twice");
        self.outstanding = self.outstanding.saturating_sub(1);
    }

    /// Fails every waiter with `error` (close, destroy).
    pub(super) fn refuse_all(&mut self, error: Error) -> Answers {
        Answers::of(self.waiting.drain(..).collect(), Err(error))
    }
}

/// A request waiting for a place: what its `Reserve` waits on.
pub(crate) struct Ticket {
    /// `Ok` once granted; the error that refused it otherwise.
    slot: Slot<()>,
    /// Set under the state lock when a place is granted to it; cleared, under the lock too,
    /// when a request dropped before it saw the grant gives the place back.
    granted: AtomicBool,
}

impl Completion<()> for Ticket {
    fn slot(&self) -> &dyn Outcome<()> {
        &self.slot
    }
}

/// How a request for a place ends up, at once or later.
pub(crate) enum Request {
    /// A place is reserved (`counted`), or there is nothing to count (an unbounded queue).
    Granted { counted: bool },
    /// Waiting for a place; the ticket resolves when it is granted or refused.
    Waiting(Arc<Ticket>),
    /// The pool has no place to give (`NoQueue`), or takes no new task (`Closed`,
    /// `Terminated`).
    Refused(Error),
}

/// Waiters answered under the lock, told once it is released: waking one may unpark a thread
/// or run a waker, neither of which belongs under the state lock.
#[must_use = "deliver the answers once the lock is released"]
pub(super) struct Answers(
    /// `None` when nobody was answered: what every task's path carries, so it costs a test.
    Option<Box<Answered>>,
);

/// The waiters answered, and what they are told.
struct Answered {
    tickets: Vec<Arc<Ticket>>,
    outcome: Result<(), Error>,
}

impl Answers {
    /// No answer: nobody waited.
    #[inline]
    pub(super) fn none() -> Self {
        Answers(None)
    }

    fn of(tickets: Vec<Arc<Ticket>>, outcome: Result<(), Error>) -> Self {
        if tickets.is_empty() {
            return Answers::none();
        }
        Answers(Some(Box::new(Answered { tickets, outcome })))
    }

    /// Tells the waiters answered; called once the state lock is released. Inlined to the
    /// test of `None` that every task's path pays; the telling itself is out of line.
    #[inline(always)]
    pub(super) fn deliver(self) {
        if let Some(answered) = self.0 {
            (*answered).tell();
        }
    }
}

impl Answered {
    #[inline(never)]
    fn tell(self) {
        for ticket in self.tickets {
            ticket.slot.complete(self.outcome.clone());
        }
    }
}
