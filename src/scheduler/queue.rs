//! The queue: tasks no worker has taken, in the order they are to run.
//!
//! Higher priorities run first, and FIFO within a priority ([`RunOptions::priority`]). Nearly
//! every task has the default priority, so those keep a plain FIFO of their own, as cheap as
//! a `VecDeque`; the others wait in an ordered map beside it, and the head of the queue is
//! whichever of the two ranks first. The [`Intake`](super::intake::Intake) only ever holds
//! default-priority tasks, which join the FIFO at its back.
//!
//! [`RunOptions::priority`]: crate::RunOptions::priority

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::task::Job;

/// A task, as the scheduler holds it.
pub(super) type JobRef = Arc<dyn Job>;

/// Whether two handles point to the same task.
pub(super) fn same(a: &JobRef, b: &JobRef) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// The tasks waiting for a worker.
#[derive(Default)]
pub(super) struct Queue {
    /// Tasks of the default priority (0), oldest first.
    fifo: VecDeque<JobRef>,
    /// Tasks of any other priority, by priority (highest first), then by `sequence`.
    ranked: BTreeMap<(Reverse<i32>, i64), JobRef>,
    /// The next `sequence` at the back (counting up) and at the front (counting down): a task
    /// put back at the front goes before every task of its priority.
    next_back: i64,
    next_front: i64,
}

/// Which of the two holds the head.
enum Head {
    Fifo,
    Ranked,
}

impl Queue {
    pub(super) fn len(&self) -> usize {
        self.fifo.len() + self.ranked.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.fifo.is_empty() && self.ranked.is_empty()
    }

    /// How many default-priority tasks wait: those the intake's tasks queue behind.
    pub(super) fn fifo_len(&self) -> usize {
        self.fifo.len()
    }

    fn head(&self) -> Option<Head> {
        let Some((&(Reverse(priority), _), _)) = self.ranked.first_key_value() else {
            return (!self.fifo.is_empty()).then_some(Head::Fifo);
        };
        if priority > 0 || self.fifo.is_empty() {
            Some(Head::Ranked)
        } else {
            Some(Head::Fifo)
        }
    }

    /// The task to run next.
    pub(super) fn front(&self) -> Option<&JobRef> {
        match self.head()? {
            Head::Fifo => self.fifo.front(),
            Head::Ranked => self.ranked.first_key_value().map(|(_, job)| job),
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<JobRef> {
        match self.head()? {
            Head::Fifo => self.fifo.pop_front(),
            Head::Ranked => self.ranked.pop_first().map(|(_, job)| job),
        }
    }

    /// Queues `job` behind every task of its priority.
    pub(super) fn push_back(&mut self, job: JobRef) {
        let priority = job.priority();
        if priority == 0 {
            self.fifo.push_back(job);
        } else {
            self.next_back += 1;
            self.ranked.insert((Reverse(priority), self.next_back), job);
        }
    }

    /// Appends the intake's tasks (all of the default priority) at the back, emptying `jobs`.
    pub(super) fn append_fifo(&mut self, jobs: &mut Vec<JobRef>) {
        debug_assert!(jobs.iter().all(|job| job.priority() == 0));
        self.fifo.extend(jobs.drain(..));
    }

    /// Puts `job` back ahead of every task of its priority (a task a worker took and never
    /// started).
    pub(super) fn push_front(&mut self, job: JobRef) {
        let priority = job.priority();
        if priority == 0 {
            self.fifo.push_front(job);
        } else {
            self.next_front -= 1;
            self.ranked
                .insert((Reverse(priority), self.next_front), job);
        }
    }

    /// Removes `job` if it is queued; returns whether it was.
    pub(super) fn remove(&mut self, job: &JobRef) -> bool {
        if job.priority() == 0 {
            let Some(index) = self.fifo.iter().position(|queued| same(queued, job)) else {
                return false;
            };
            self.fifo.remove(index);
            return true;
        }
        let key = self
            .ranked
            .iter()
            .find(|(_, queued)| same(queued, job))
            .map(|(key, _)| *key);
        key.and_then(|key| self.ranked.remove(&key)).is_some()
    }

    /// Takes every task out, in the order they would have run.
    pub(super) fn drain(&mut self) -> Vec<JobRef> {
        let mut all = Vec::with_capacity(self.len());
        while let Some(job) = self.pop_front() {
            all.push(job);
        }
        all
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use crate::scheduler::queue::{same, JobRef, Queue};
    use crate::task::TaskCell;

    fn job(tag: u32, priority: i32) -> JobRef {
        Arc::new(TaskCell::<u32, u32>::new(
            tag, None, None, false, priority, None,
        ))
    }

    /// The tags in the order the queue gives its tasks, by their priorities.
    fn tags(queue: &mut Queue, jobs: &[(u32, JobRef)]) -> Vec<u32> {
        queue
            .drain()
            .iter()
            .map(|out| jobs.iter().find(|(_, job)| same(job, out)).unwrap().0)
            .collect()
    }

    #[test]
    fn highest_priority_first_then_in_order_and_put_back_tasks_first() {
        let jobs: Vec<(u32, JobRef)> = [(0, 0), (1, -3), (2, 7), (3, 0), (4, 7), (5, -3)]
            .into_iter()
            .map(|(tag, priority)| (tag, job(tag, priority)))
            .collect();
        let mut queue = Queue::default();
        for (_, job) in &jobs[..5] {
            queue.push_back(job.clone());
        }
        assert_eq!(queue.len(), 5);
        assert!(same(queue.front().unwrap(), &jobs[2].1));
        // Taken, then given back: ahead of its priority's others.
        let first = queue.pop_front().unwrap();
        queue.push_front(first);
        queue.push_front(jobs[5].1.clone());
        assert!(queue.remove(&jobs[3].1));
        assert!(!queue.remove(&jobs[3].1), "removed once");
        assert_eq!(tags(&mut queue, &jobs), [2, 4, 0, 5, 1]);
        assert!(queue.is_empty());
    }
}
