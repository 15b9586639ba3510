//! Aborting: a task failed wherever it is, by its signal, [`Task::abort`](crate::Task::abort)
//! or its timeout (see the scheduler's rules). A queued task or one in a worker's inbox is
//! removed; a running one fails at once and its worker is retired (a thread leaves once the
//! function returns, a child is killed), unless it shares the worker with tasks that would
//! die with it. At one task per child, that is the next task sent ahead, which the driver
//! takes back when the running one is slow: the worker is retired then
//! (`worker_loop.rs`'s `hand_back`).

use std::sync::{Arc, Weak};

use super::state::{same, JobRef, Reserved, SchedulerState};
use super::{resolve, Scheduler};
use crate::hooks::Exit;
use crate::sync::Ordering;
use crate::task::{Job, Slot};
use crate::Error;

impl Scheduler {
    /// What `job`'s abort signal calls when it fires: aborts the task, if the pool and the task
    /// are still there.
    pub(super) fn abort_listener(self: &Arc<Self>, job: &JobRef) -> impl FnOnce(Option<String>) {
        let scheduler = Arc::downgrade(self);
        let job: Weak<dyn Job> = Arc::downgrade(job);
        move |reason| {
            if let (Some(scheduler), Some(job)) = (scheduler.upgrade(), job.upgrade()) {
                scheduler.abort(&job, Error::Aborted { reason });
            }
        }
    }

    /// Fails `job` with `error` wherever it is (a fired signal, [`Task::abort`](crate::Task::abort), a timeout):
    /// see the module's doc. Nothing if it is nowhere: it resolved.
    pub(super) fn abort(self: &Arc<Self>, job: &JobRef, error: Error) {
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
            worker.exclusive = worker.holds_exclusive();
            let idle = self.settle(&mut state);
            drop(state);
            job.fail(error, &self.tally);
            resolve(idle);
        } else if let Some(index) = running {
            let runs_async = job.runs_async();
            if state.workers[index].running.len() > 1 || runs_async {
                // Sent to a child with others (`Task::abort` of a task that does not run
                // alone): stopping the child would stop them too. It fails now; the child
                // finishes it, and that result is dropped. (At one task per child, the other
                // is the next task, sent ahead: if this one is slow, its driver takes that one
                // back, and the worker is retired then, as here: see `hand_back`.) An async
                // task's worker drops its
                // future and goes on: a thread's, woken by the failure itself; a child's
                // driver, rung once the task failed, tells the child to.
                let bell = runs_async.then(|| state.workers[index].bell.clone());
                drop(state);
                job.fail(error, &self.tally);
                if let Some(bell) = bell {
                    bell.ring();
                }
                return;
            }
            let exit = match error {
                Error::TimedOut { .. } => Exit::TimedOut,
                _ => Exit::Aborted,
            };
            // Failed under the lock, so that the worker cannot book the task meanwhile; what
            // it held (a child's task keeps its argument) is dropped once the lock is released:
            // user code, which may call the pool.
            let Some(leftover) = job.fail_leaving(error, &self.tally) else {
                return; // It resolved first.
            };
            let (starts, idle) = self.retire_aborted(&mut state, index, exit);
            drop(state);
            drop(leftover);
            self.start_all(starts);
            resolve(idle);
        }
    }

    /// Under the lock: retires the worker at `index`, whose running task was just failed by
    /// an abort, alone on it (a thread cannot be stopped: it leaves once the function returns
    /// and no longer counts toward `max_threads`; a child is killed). Nothing else was running
    /// on it; what it had taken and not started goes back to the head of the queue, in order,
    /// for an idle worker or a replacement. Returns the replacements to start and the idle
    /// waiters to resolve, once the lock is released.
    pub(super) fn retire_aborted(
        &self,
        state: &mut SchedulerState,
        index: usize,
        exit: Exit,
    ) -> (Vec<Reserved>, Vec<Arc<Slot<()>>>) {
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
        (self.replenish(state), self.settle(state))
    }
}
