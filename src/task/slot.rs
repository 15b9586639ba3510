//! The result slot: where a task's argument waits for its worker and its result for its
//! reader, under one lock.
//!
//! A slot moves through `Pending(argument) → Running → Staged → Ready → Taken`. A worker takes
//! the argument (`Running`), *stages* a result and *publishes* it once its own bookkeeping is
//! done; a child process's driver only lends the argument out to encode it (it comes back, so
//! that a task whose child died before starting it can be sent again) and stages the decoded
//! result straight from `Pending`. An async task on a worker thread runs as
//! `RunningAsync(waker)`: resolved from outside, it wakes its future (under the lock, before
//! it reads as resolved), which, polled, finds it resolved and drops itself. An abort or
//! `destroy` completes the task with an error at any point before publication. Whatever
//! comes first wins; everything after it is dropped.
//!
//! The argument and the result share the state's one variant tag and bytes: a saturated pool
//! holds hundreds of thousands of cells and faults their pages in, so every word counts.
//! What the slot drops (an argument, a staged result beaten by an abort) is dropped after its
//! lock is released: user code does not run under it. A caller that resolves a task under a
//! lock of its own (the scheduler's, aborting a running task) takes it as a [`Leftover`]
//! instead, to drop once that lock is released too.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use super::Job;
use crate::stats::{outcome, Tally};
use crate::sync::{lock, thread, AtomicBool, Mutex, MutexGuard, Ordering};
use crate::wait::{spin_until_alone, Waiter};
use crate::Error;

enum State<R, A> {
    /// Not started: the argument waits here.
    Pending(A),
    /// Started: the argument is out, taken by the worker or lent to an encoder.
    Running,
    /// Started as an async task on a worker thread, whose future this wakes: resolved from
    /// outside, the task's future is polled once more, and drops itself. (In the bytes the
    /// argument and the result take: no cell grows for it.)
    RunningAsync(Waker),
    Staged(Held<R>),
    Ready(Held<R>),
    Taken,
}

/// A result as a slot holds it: the error boxed, since an [`Error`] is ten words and most
/// results are values.
type Held<R> = Result<R, Box<Error>>;

struct SlotInner<R, A> {
    state: State<R, A>,
    waiter: Waiter,
}

/// What a task held when it was resolved from outside (its argument, kept for a resend to a
/// child; a result staged): dropping it runs user code, which may call the pool, so whoever
/// resolved the task under a lock drops it once that lock is released.
#[must_use = "dropped once no lock is held"]
pub(crate) struct Leftover {
    _held: Option<Box<dyn Send>>,
}

/// Where a task's argument waits for its worker and its result for its reader. `A` is `()`
/// for what has no argument (a reservation's ticket, a countdown).
pub(crate) struct Slot<R, A = ()> {
    /// Mirrors `state` being `Ready` or `Taken`, so that waiters can spin without the lock.
    ready: AtomicBool,
    /// Started as an async task (see [`Slot::mark_async`]). Beside `ready`, in bytes the lock's
    /// alignment leaves free.
    is_async: AtomicBool,
    inner: Mutex<SlotInner<R, A>>,
}

impl<R> Slot<R> {
    pub(crate) fn new() -> Self {
        Slot::with_arg(())
    }

    /// A slot that already holds `result`.
    pub(crate) fn ready(result: Result<R, Error>) -> Self {
        let slot = Slot::new();
        slot.complete(result);
        slot
    }
}

impl<R, A> Slot<R, A> {
    /// A pending slot holding its task's argument.
    pub(crate) fn with_arg(arg: A) -> Self {
        Slot {
            ready: AtomicBool::new(false),
            is_async: AtomicBool::new(false),
            inner: Mutex::new(SlotInner {
                state: State::Pending(arg),
                waiter: Waiter::Nobody,
            }),
        }
    }

    /// Takes the argument to run the task: `None` if it resolved, or was started already.
    pub(super) fn take_arg(&self) -> Option<A> {
        let mut inner = lock(&self.inner);
        match std::mem::replace(&mut inner.state, State::Running) {
            State::Pending(arg) => Some(arg),
            other => {
                inner.state = other;
                None
            }
        }
    }

    /// Runs `f` on the argument, lent out of the slot and outside its lock (`f` is user code:
    /// an encoder), then puts it back unless the task resolved meanwhile. `None` if there is
    /// no argument to lend (resolved, or started).
    pub(super) fn lend_arg<T>(&self, f: impl FnOnce(&A) -> T) -> Option<T> {
        let arg = self.take_arg()?;
        let out = f(&arg);
        let mut inner = lock(&self.inner);
        if let State::Running = inner.state {
            inner.state = State::Pending(arg);
        } else {
            drop(inner);
            drop(arg);
        }
        Some(out)
    }

    /// Holds `result` back until [`publish`](Self::publish); ignored if the task already
    /// resolved. A driver stages straight from `Pending`: the argument is dropped then.
    pub(super) fn stage(&self, result: Result<R, Error>) {
        let mut inner = lock(&self.inner);
        if let State::Pending(_) | State::Running | State::RunningAsync(_) = inner.state {
            let old = std::mem::replace(&mut inner.state, State::Staged(result.map_err(Box::new)));
            drop(inner);
            drop(old);
        }
    }

    /// Makes a staged result visible, counted in `tally`; returns false if the task had
    /// already resolved (or nothing was staged).
    pub(super) fn publish(&self, tally: &Tally) -> bool {
        let mut inner = lock(&self.inner);
        match std::mem::replace(&mut inner.state, State::Taken) {
            State::Staged(held) => {
                tally.count(outcome(&held));
                self.make_ready(inner, held);
                true
            }
            other => {
                inner.state = other;
                false
            }
        }
    }

    /// Resolves the task with `result` unless it already resolved; returns whether it did.
    /// A staged result is dropped: an abort or a termination wins over it.
    pub(crate) fn complete(&self, result: Result<R, Error>) -> bool {
        self.complete_counted(result, None)
    }

    /// [`complete`](Self::complete), counting the outcome in `tally` if it resolves the task:
    /// under the slot's lock, so before the result can be seen.
    pub(super) fn complete_counted(&self, result: Result<R, Error>, tally: Option<&Tally>) -> bool {
        self.resolve(result, tally).map(drop).is_some()
    }

    /// [`complete_counted`](Self::complete_counted), handing back what the task held instead
    /// of dropping it; `None` if it had already resolved.
    pub(super) fn complete_leaving(
        &self,
        result: Result<R, Error>,
        tally: Option<&Tally>,
    ) -> Option<Leftover>
    where
        R: Send + 'static,
        A: Send + 'static,
    {
        let old = self.resolve(result, tally)?;
        let held: Option<Box<dyn Send>> = match old {
            // Nothing to drop (a worker has the argument; its future's waker, woken already,
            // is ours), and nothing to allocate.
            State::Running | State::RunningAsync(_) => None,
            old => Some(Box::new(old)),
        };
        Some(Leftover { _held: held })
    }

    /// Resolves the task with `result`, counted in `tally`, unless it already resolved;
    /// returns what the state held before.
    fn resolve(&self, result: Result<R, Error>, tally: Option<&Tally>) -> Option<State<R, A>> {
        let inner = lock(&self.inner);
        if let State::Ready(_) | State::Taken = inner.state {
            return None;
        }
        if let Some(tally) = tally {
            tally.count(outcome(&result));
        }
        Some(self.make_ready(inner, result.map_err(Box::new)))
    }

    /// Resolves the task with `held` and wakes its reader (and the future of an async task
    /// resolved from outside, which its worker then drops); returns what the state held
    /// before, to be dropped by the caller.
    fn make_ready(&self, mut inner: MutexGuard<'_, SlotInner<R, A>>, held: Held<R>) -> State<R, A> {
        let old = std::mem::replace(&mut inner.state, State::Ready(held));
        if let State::RunningAsync(runner) = &old {
            // Before the task reads as resolved (under the lock, and before `ready`): a worker
            // that finds it resolved finds its future woken too, and polls it once more. (The
            // runner is the worker's executor's waker, which takes no lock of ours.)
            runner.wake_by_ref();
        }
        let waiter = std::mem::take(&mut inner.waiter);
        self.ready.store(true, Ordering::Release);
        drop(inner);
        waiter.wake();
        old
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// [`is_ready`](Self::is_ready), asked of the state itself when the flag is not set yet:
    /// what an async task's future asks when it is polled, since resolving the task wakes
    /// that future before the flag is set (see `make_ready`), and the poll the wake brings
    /// must see the task resolved.
    pub(super) fn is_resolved(&self) -> bool {
        self.is_ready() || matches!(lock(&self.inner).state, State::Ready(_) | State::Taken)
    }

    /// Whether a result is staged or the task resolved: an async task's future is done.
    pub(super) fn is_settled(&self) -> bool {
        self.is_ready()
            || matches!(
                lock(&self.inner).state,
                State::Staged(_) | State::Ready(_) | State::Taken
            )
    }

    /// Marks the task as an async one, started on its worker: resolved from outside, it leaves
    /// that worker be, which drops the task's future. `runner`, on a worker thread: the
    /// future's waker, woken then (a child's driver hears its doorbell instead, which the
    /// scheduler rings).
    pub(super) fn mark_async(&self, runner: Option<&Waker>) {
        if let Some(runner) = runner {
            let mut inner = lock(&self.inner);
            if let State::Running = inner.state {
                inner.state = State::RunningAsync(runner.clone());
            }
        }
        self.is_async.store(true, Ordering::Release);
    }

    /// Started as an async task and not resolved (a result staged counts as not resolved).
    pub(super) fn runs_async(&self) -> bool {
        self.is_async.load(Ordering::Acquire) && !self.is_ready()
    }

    fn take(&self) -> Result<R, Error> {
        let mut inner = lock(&self.inner);
        match std::mem::replace(&mut inner.state, State::Taken) {
            State::Ready(held) => held.map_err(|error| *error),
            _ => panic!("tinypool::Task polled after it returned its result"),
        }
    }
}

/// A slot as the [`Task`](super::Task) waiting on it sees it, whatever its argument's type.
pub(crate) trait Outcome<R>: Send + Sync {
    /// Whether the result is ready.
    fn is_ready(&self) -> bool;
    /// The result if it is ready; otherwise `cx`'s waker is registered.
    fn poll(&self, cx: &mut Context<'_>) -> Poll<Result<R, Error>>;
    /// Blocks until the result is ready or `deadline` passes (`None` then).
    fn wait(&self, deadline: Option<Instant>) -> Option<Result<R, Error>>;
}

impl<R: Send, A: Send> Outcome<R> for Slot<R, A> {
    fn is_ready(&self) -> bool {
        Slot::is_ready(self)
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<Result<R, Error>> {
        if !self.is_ready() {
            let mut inner = lock(&self.inner);
            if !matches!(inner.state, State::Ready(_) | State::Taken) {
                inner.waiter.set_waker(cx.waker());
                return Poll::Pending;
            }
        }
        Poll::Ready(self.take())
    }

    fn wait(&self, deadline: Option<Instant>) -> Option<Result<R, Error>> {
        if !spin_until_alone(|| self.is_ready()) {
            {
                let mut inner = lock(&self.inner);
                if self.is_ready() {
                    drop(inner);
                    return Some(self.take());
                }
                inner.waiter = Waiter::Thread(thread::current());
            }
            while !self.is_ready() {
                match deadline {
                    None => thread::park(),
                    Some(deadline) => {
                        let now = Instant::now();
                        if now >= deadline {
                            let mut inner = lock(&self.inner);
                            if self.is_ready() {
                                break;
                            }
                            inner.waiter = Waiter::Nobody;
                            return None;
                        }
                        thread::park_timeout(deadline - now);
                    }
                }
            }
        }
        Some(self.take())
    }
}

/// What a [`Task`](super::Task) reads its result from.
pub(crate) trait Completion<R>: Send + Sync {
    fn slot(&self) -> &dyn Outcome<R>;

    /// The task as its pool sees it, for [`Task::abort`](super::Task::abort); `None` if it is
    /// no pool's task.
    fn job(self: Arc<Self>) -> Option<Arc<dyn Job>> {
        None
    }
}

impl<R: Send> Completion<R> for Slot<R> {
    fn slot(&self) -> &dyn Outcome<R> {
        self
    }
}

/// A value that counts its drops: a task's argument or result in the tests of this slot and
/// its loom models.
#[cfg(test)]
pub(super) struct Counted(pub(super) Arc<crate::sync::AtomicUsize>);

#[cfg(test)]
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::sync::AtomicUsize;

    use super::*;

    /// Resolving a task from outside hands back its argument (kept for a resend), or a result
    /// staged, undropped: dropped with the leftover, once; nothing comes back if it resolved.
    #[test]
    fn a_leftover_holds_the_argument_or_staged_result_until_dropped() {
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = Slot::<u32, Counted>::with_arg(Counted(drops.clone()));
        assert_eq!(slot.lend_arg(|_| ()), Some(()), "lent and put back");
        let leftover = slot.complete_leaving(Err(Error::Terminated), None);
        assert!(leftover.is_some(), "it resolved the task");
        assert_eq!(drops.load(Ordering::SeqCst), 0, "the argument waits");
        drop(leftover);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped with the leftover");
        assert!(slot
            .complete_leaving(Err(Error::Terminated), None)
            .is_none());
        assert_eq!(slot.wait(None), Some(Err(Error::Terminated)));

        let staged = Slot::<Counted, ()>::new();
        staged.stage(Ok(Counted(drops.clone())));
        let leftover = staged.complete_leaving(Err(Error::Terminated), None);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "the staged result waits");
        drop(leftover);
        assert_eq!(drops.load(Ordering::SeqCst), 2, "dropped with the leftover");
        assert!(matches!(staged.wait(None), Some(Err(Error::Terminated))));
    }
}
