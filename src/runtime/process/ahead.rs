//! Tasks sent ahead: a child that runs one task at a time (`concurrent_tasks_per_worker` 1)
//! is sent its next task while it runs one, when tasks are queued, so that it finds that
//! task as soon as it ends the one before, instead of waiting for its driver to read the
//! answer, take the next task and send it. (Child-process W2 ran more than twice as fast so.)
//!
//! A task sent ahead must still start only when a worker is free for it, as a queued task
//! does. So it goes with a claim word (`transport/claims.rs`), which the child claims before
//! running it; and when the answer of the task before it is slow (it does not come while the
//! driver spins, which a round trip takes), the driver takes the task ahead back before it
//! sleeps ([`Flow::TookBack`](super::Flow::TookBack)), and the scheduler gives the task to
//! another worker. It then sends none ahead until the slow task ends. Whoever comes first
//! wins: the task runs once.
//!
//! Only through the rings: without them (macOS) nothing is sent ahead.

use super::ChildWorker;
use crate::transport::Ahead;

impl ChildWorker {
    /// Whether the scheduler may give it one task past its depth now.
    pub(super) fn can_send_ahead(&self) -> bool {
        self.depth == 1
            && self.flights.is_none()
            && self.ahead.is_none()
            && !self.took_back
            && (self.region.as_ref()).is_some_and(|region| region.can_send_ahead())
    }

    /// Marks `task` as sent ahead, before its `RUN` goes out: `None` if it cannot be (it then
    /// goes as an ordinary task, which the child runs as it comes).
    pub(super) fn mark_ahead(&self, task: u64) -> Option<Ahead> {
        self.region.as_ref()?.send_ahead(task)
    }

    /// `mark`'s task was not sent after all.
    pub(super) fn unmark_ahead(&self, mark: Option<Ahead>) {
        if let (Some(region), Some(mark)) = (&self.region, mark) {
            region.unsend(mark);
        }
    }

    /// Before it waits for the oldest's answer: takes the task ahead back if that answer does
    /// not come within a spin and the child has not claimed the task. Returns whether it did
    /// (the task, the last started, is no longer its to finish).
    pub(super) fn takes_back(&mut self) -> bool {
        // (Nothing to wait for if the oldest was never sent: it resolved on its way.)
        let waits = matches!(self.in_flight.front(), Some(Some(_)));
        if self.ahead.is_none() || !waits || self.spin_for_frame() {
            return false;
        }
        let (Some(ahead), Some(region)) = (self.ahead.take(), &self.region) else {
            return false;
        };
        if !region.take_back(ahead) {
            return false; // The child started it: the oldest's answer is on its way.
        }
        let last = self.in_flight.pop_back();
        debug_assert_eq!(last, Some(Some(ahead.task())), "the task ahead is the last");
        self.took_back = true;
        true
    }

    /// The oldest task ended: the one sent ahead, if any, is the oldest now, and tasks may be
    /// sent ahead again.
    pub(super) fn oldest_ended(&mut self) {
        self.took_back = false;
        let front = self.in_flight.front().copied().flatten();
        if self.ahead.is_some_and(|ahead| front == Some(ahead.task())) {
            self.ahead = None;
        }
    }
}
