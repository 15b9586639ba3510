//! The pool's timer: one thread per pool, not one per task, that fails the tasks still queued
//! or running at their deadline with [`Error::TimedOut`], through the pool's [`Origin`]: the
//! scheduler's abort, as for a signal.
//!
//! - **Lazy.** The thread, `{thread_name}-timer`, starts with the first task that has a
//!   timeout; a pool that never sets one has none, and a task without a timeout never touches
//!   the timer (no clock read, no lock).
//! - **In order.** The deadlines sit in a map ordered by deadline, then by a sequence number
//!   (two tasks may share one); the thread sleeps until the first, or until an earlier one is
//!   added.
//! - **Bounded.** A task that resolves before its deadline leaves the map at once (its cell
//!   keeps its key, see [`DeadlineHook`]): the map holds the pending tasks only, however many
//!   have come and gone. It holds them weakly, so that it never keeps a task alive.
//! - **Never leaked.** The timer stops once nothing is left to time out: when the pool is
//!   destroyed, when a closing pool has drained, and when the scheduler is dropped; it is
//!   joined by whichever of these waits (`destroy`, a close waited on, the drop), unless that
//!   runs on the timer's own thread (the abort it fires may wake user code that destroys the
//!   pool, or drop the scheduler's last reference), which then just leaves.
//!
//! Locks: the timer's lock is taken under the state lock (a task resolved there forgets its
//! deadline), never the other way round: the thread releases it before it aborts anything.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::sync::thread::{self, JoinHandle};
use crate::sync::{lock, wait_timeout, Condvar, Mutex};
use crate::task::{DeadlineHook, DeadlineKey, Deadlines, Job, Origin};
use crate::Error;

/// A pool's timer (see the module's doc).
pub(super) struct Timer {
    shared: Arc<Shared>,
    /// Aborts a task in the pool, if the pool is still there.
    origin: Arc<dyn Origin>,
}

/// What the timer's thread and the tasks' hooks share.
struct Shared {
    state: Mutex<TimerState>,
    /// Notified when a deadline earlier than all others is added, and on stop.
    changed: Condvar,
}

#[derive(Default)]
struct TimerState {
    /// The pending tasks with a timeout, earliest deadline first, with the timeout each was
    /// given.
    deadlines: BTreeMap<DeadlineKey, (Weak<dyn Job>, Duration)>,
    next: u64,
    thread: Option<JoinHandle<()>>,
    /// For good: a stopped timer takes no deadline and starts no thread.
    stopped: bool,
}

impl Timer {
    pub(super) fn new(origin: Arc<dyn Origin>) -> Self {
        Timer {
            shared: Arc::new(Shared {
                state: Mutex::new(TimerState::default()),
                changed: Condvar::new(),
            }),
            origin,
        }
    }

    /// Fails `job` with `TimedOut { after }` at `deadline` unless it resolved first; starts
    /// the timer's thread, named `{name}-timer`, if it is the first. Returns the hook the task
    /// keeps, `None` if the timer has stopped (the pool is destroyed or drained: the task has
    /// resolved already), or the error if the thread could not start.
    pub(super) fn watch(
        &self,
        job: &Arc<dyn Job>,
        deadline: Instant,
        after: Duration,
        name: &str,
    ) -> Result<Option<DeadlineHook>, Error> {
        let mut state = lock(&self.shared.state);
        if state.stopped {
            return Ok(None);
        }
        if state.thread.is_none() {
            let (shared, origin) = (self.shared.clone(), self.origin.clone());
            let spawned = thread::Builder::new()
                .name(format!("{name}-timer"))
                .spawn(move || run(&shared, &*origin));
            match spawned {
                Ok(handle) => state.thread = Some(handle),
                Err(error) => {
                    return Err(Error::WorkerStartFailed {
                        message: format!("spawning the timer thread: {error}"),
                    })
                }
            }
        }
        let key = (deadline, state.next);
        state.next += 1;
        let first = state
            .deadlines
            .first_key_value()
            .is_none_or(|(earliest, _)| key < *earliest);
        state.deadlines.insert(key, (Arc::downgrade(job), after));
        if first {
            self.shared.changed.notify_one();
        }
        Ok(Some(DeadlineHook {
            timer: self.shared.clone(),
            key,
            after,
        }))
    }

    /// Stops the timer for good, without waiting for its thread (callers may hold the state
    /// lock).
    pub(super) fn halt(&self) {
        let mut state = lock(&self.shared.state);
        state.stopped = true;
        state.deadlines.clear();
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Stops the timer and waits for its thread to end (at once: it only ever waits on its
    /// condvar, or fires an abort, which takes no lock the caller holds).
    pub(super) fn join(&self) {
        self.halt();
        let handle = lock(&self.shared.state).thread.take();
        if let Some(handle) = handle {
            // On the timer's own thread (see the module's doc), it leaves on its own.
            if handle.thread().id() != thread::current().id() {
                // The thread catches nothing: an error here would be a panic of ours, and
                // the tasks it would have timed out are resolved by whoever stopped it.
                let _ = handle.join();
            }
        }
    }
}

#[cfg(all(test, loom))]
impl Timer {
    /// Whether its thread was started and not joined yet.
    pub(super) fn has_thread(&self) -> bool {
        lock(&self.shared.state).thread.is_some()
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.join();
    }
}

impl Deadlines for Shared {
    fn forget(&self, key: DeadlineKey) {
        lock(&self.state).deadlines.remove(&key);
    }
}

/// The timer's thread: sleeps until the first deadline, then aborts every task whose
/// deadline passed, until it is stopped.
fn run(shared: &Shared, origin: &dyn Origin) {
    let mut due = Vec::new();
    loop {
        let mut state = lock(&shared.state);
        loop {
            if state.stopped {
                return;
            }
            let now = Instant::now();
            match state.deadlines.first_key_value() {
                None => {
                    state = shared
                        .changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some((&(deadline, _), _)) if deadline > now => {
                    state = wait_timeout(&shared.changed, state, deadline - now);
                }
                Some(_) => break,
            }
        }
        let now = Instant::now();
        while let Some(entry) = state.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        // Released before aborting: `abort` takes the state lock, under which tasks that
        // resolve take this one.
        drop(state);
        for (job, after) in due.drain(..) {
            if let Some(job) = job.upgrade() {
                origin.abort(&job, Error::TimedOut { after });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::{mpsc, Arc};
    use std::time::{Duration, Instant};

    // From the crate's root rather than `super::*`, which the module-graph check reads as
    // the scheduler.
    use crate::scheduler::timer::Timer;
    use crate::stats::Tally;
    use crate::sync::{lock, Mutex};
    use crate::task::{Completion, Job, Origin, TaskCell};
    use crate::wait::deadline_after;
    use crate::Error;

    /// An origin that fails the task, as the scheduler would, and says with what.
    struct Recorder(Mutex<mpsc::Sender<Error>>);

    impl Origin for Recorder {
        fn abort(&self, job: &Arc<dyn Job>, error: Error) {
            job.fail(error.clone(), &Tally::shared());
            let _ = lock(&self.0).send(error);
        }
    }

    fn timer() -> (Timer, mpsc::Receiver<Error>) {
        let (fired, heard) = mpsc::channel();
        (Timer::new(Arc::new(Recorder(Mutex::new(fired)))), heard)
    }

    fn watched(timer: &Timer, deadline: Instant, after: Duration) -> Arc<TaskCell<u32, u32>> {
        let cell = Arc::new(TaskCell::<u32, u32>::new(1, None, None, true, 0, None));
        let job: Arc<dyn Job> = cell.clone();
        let hook = timer.watch(&job, deadline, after, "test").unwrap();
        cell.set_deadline(hook.expect("a running timer takes it"));
        cell
    }

    fn pending(timer: &Timer) -> usize {
        lock(&timer.shared.state).deadlines.len()
    }

    #[test]
    fn a_task_that_resolves_leaves_the_timer() {
        let (timer, heard) = timer();
        let hour = Duration::from_secs(3600);
        let cells: Vec<_> = (0..1000)
            .map(|_| watched(&timer, deadline_after(hour), hour))
            .collect();
        assert_eq!(pending(&timer), 1000);
        for cell in &cells {
            assert!(cell.fail(Error::Cancelled, &Tally::shared()));
        }
        assert_eq!(pending(&timer), 0, "nothing kept until its deadline");
        assert!(heard.try_recv().is_err(), "nothing fired");
    }

    #[test]
    fn deadlines_fire_in_order_and_a_stopped_timer_takes_none() {
        let (timer, heard) = timer();
        let now = Instant::now();
        let (later, sooner) = (Duration::from_millis(30), Duration::from_millis(10));
        let cells = [
            watched(&timer, now + later, later),
            watched(&timer, now + sooner, sooner),
        ];
        let bound = Duration::from_secs(30);
        assert_eq!(
            heard.recv_timeout(bound),
            Ok(Error::TimedOut { after: sooner })
        );
        assert_eq!(
            heard.recv_timeout(bound),
            Ok(Error::TimedOut { after: later })
        );
        assert!(cells.iter().all(|cell| cell.slot().is_ready()));
        assert_eq!(pending(&timer), 0);

        timer.join();
        assert!(lock(&timer.shared.state).thread.is_none(), "joined");
        let job: Arc<dyn Job> = Arc::new(TaskCell::<u32, u32>::new(1, None, None, true, 0, None));
        assert!(matches!(timer.watch(&job, now, sooner, "test"), Ok(None)));
    }
}
