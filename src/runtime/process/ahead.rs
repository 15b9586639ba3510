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
//! another worker. It looks so before each wait for that answer, not only the first: a frame
//! that is not the answer (the message of a panic the task caught, which comes at once) says
//! nothing of how long the task still runs. It then sends none ahead until the slow task ends.
//! Whoever comes first wins: the task runs once.
//!
//! A task past the depth that never went out (it resolved on its way: aborted, say) is given
//! back the same way, so that the scheduler knows that the worker runs its oldest alone: a
//! `Task::abort` of that one, which could not stop the child while another task was on its way
//! there, then does (see the scheduler's `hand_back`).
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

    /// Before each wait for the oldest's answer (the first, and each after a frame that was not
    /// the answer: a panic the task caught says so at once, and the task may run on for long):
    /// takes the task ahead back if that answer does not come within a spin and the child has
    /// not claimed the task; and drops, as taken back, a task past the depth that never went
    /// out (it resolved on its way, or could not be encoded). Returns whether it did: the
    /// task, the last started, is no longer its to finish.
    pub(super) fn takes_back(&mut self) -> bool {
        // Past the depth, behind an oldest that was sent: nothing waits behind one that was
        // not (it resolved on its way), since its end is read at once.
        let behind = self.in_flight.len() > self.depth;
        if !behind || !matches!(self.in_flight.front(), Some(Some(_))) {
            return false;
        }
        match self.ahead {
            // Never sent: the scheduler has it still, which it drops (it resolved).
            None if self.in_flight.back() == Some(&None) => {}
            // Sent as an ordinary task (no claim word was free): the child runs it in order.
            None => return false,
            Some(ahead) => {
                if self.spin_for_frame() {
                    return false;
                }
                self.ahead = None;
                let region = self.region.as_ref().expect("sent ahead through the rings");
                if !region.take_back(ahead) {
                    return false; // The child started it: the oldest's answer is on its way.
                }
                debug_assert_eq!(self.in_flight.back(), Some(&Some(ahead.task())));
            }
        }
        self.in_flight.pop_back();
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
