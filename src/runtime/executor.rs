//! The executor of one worker's async tasks: their futures, polled on the worker's thread.
//!
//! A worker that starts an async export's task ([`Exports::export_async`]) keeps its future
//! here, beside the others it holds (up to `concurrent_tasks_per_worker`), and polls them
//! while it waits for one to finish: they interleave at their await points, as the async
//! tasks of a Node worker do. The futures need not be `Send`: they never leave the thread.
//!
//! - **Wake-ups.** Each future has a waker of its own (one per slot, reused), which puts its
//!   slot on the ready list and wakes the thread that runs [`Executor::run_until`]: a woken
//!   future is polled at its next turn, and no other. A future completed by another thread
//!   (a channel, a result) therefore needs no reactor of its own.
//! - **Reactor.** Without features the thread parks while nothing is ready: futures that
//!   bring their own reactor (`async-io`'s, whose driver thread wakes them) work, and so do
//!   those woken by other threads. With the `tokio` feature, the worker's futures run inside
//!   a current-thread tokio runtime of its own, with I/O and time enabled: the thread waits
//!   in tokio's driver, so `tokio::time::sleep` and `tokio::net` work, and `tokio::spawn`
//!   from inside an export runs beside the tasks on the same thread.
//! - **Interruptions.** [`run_until`](Executor::run_until) returns when its condition holds
//!   (the task the scheduler waits for finished) or when the worker's doorbell rings (the
//!   scheduler gave it more work), so that a worker with room starts new tasks at once.
//!
//! [`Exports::export_async`]: crate::Exports::export_async

use std::future::poll_fn;
#[cfg(not(feature = "tokio"))]
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crate::exports::LocalFuture;
use crate::sync::lock;
use crate::wait::Doorbell;

/// A worker's async tasks.
pub(crate) struct Executor {
    /// The futures by slot; `None`: a free slot.
    slots: Vec<Option<LocalFuture<()>>>,
    /// Each slot's waker, made once and reused (a stale wake-up of a reused slot only polls
    /// its new future once more, which a future allows).
    wakers: Vec<Waker>,
    free: Vec<usize>,
    shared: Arc<Shared>,
    /// The ready list, taken in one swap per turn.
    turn: Vec<usize>,
    /// Futures other than the awaited one ended in the turn that ended `run_until`: their
    /// tasks are staged, and must be published before the worker waits for the next.
    others_ended: bool,
    #[cfg(feature = "tokio")]
    runtime: tokio::runtime::Runtime,
    /// Unparks this thread, which waits in [`block_on`].
    #[cfg(not(feature = "tokio"))]
    unpark: Waker,
}

/// What the wakers share with the executor.
struct Shared {
    ready: Mutex<Vec<usize>>,
    /// Whoever waits for a wake-up: the thread in `block_on`, or tokio's.
    waiter: Mutex<Option<Waker>>,
}

/// The waker of one slot.
struct SlotWaker {
    slot: usize,
    shared: Arc<Shared>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        lock(&self.shared.ready).push(self.slot);
        let waiter = lock(&self.shared.waiter).clone();
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }
}

impl Executor {
    /// An executor for the current thread; with the `tokio` feature, the runtime it needs
    /// (an error if it cannot be built).
    pub(crate) fn new() -> Result<Self, String> {
        Ok(Executor {
            slots: Vec::new(),
            wakers: Vec::new(),
            free: Vec::new(),
            shared: Arc::new(Shared {
                ready: Mutex::new(Vec::new()),
                waiter: Mutex::new(None),
            }),
            turn: Vec::new(),
            others_ended: false,
            #[cfg(feature = "tokio")]
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("building the worker's tokio runtime: {e}"))?,
            #[cfg(not(feature = "tokio"))]
            unpark: Waker::from(Arc::new(Unpark(std::thread::current()))),
        })
    }

    /// Makes a future with the waker of a free slot and keeps it there, to be polled at the
    /// next turn; returns whether `make` made one. `make` runs inside the tokio runtime (with
    /// the feature), so that the future may use it from its very creation.
    pub(crate) fn spawn(&mut self, make: impl FnOnce(&Waker) -> Option<LocalFuture<()>>) -> bool {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = self.slots.len();
                self.slots.push(None);
                self.wakers.push(Waker::from(Arc::new(SlotWaker {
                    slot,
                    shared: self.shared.clone(),
                })));
                slot
            }
        };
        #[cfg(feature = "tokio")]
        let _inside = self.runtime.enter();
        match make(&self.wakers[slot]) {
            Some(future) => {
                self.slots[slot] = Some(future);
                lock(&self.shared.ready).push(slot);
                true
            }
            None => {
                self.free.push(slot);
                false
            }
        }
    }

    /// Polls the futures woken since the last turn, if any (a task resolved from outside
    /// wakes its future, which then drops itself): what ended counts for
    /// [`take_others_ended`](Self::take_others_ended).
    pub(crate) fn poll_woken(&mut self, bell: &Doorbell) {
        if !lock(&self.shared.ready).is_empty() {
            self.run_until(|| true, bell);
        }
    }

    /// Whether futures other than the awaited one ended in the turn that last ended
    /// [`run_until`](Self::run_until) with `true` (their tasks are staged, not published yet);
    /// cleared by asking.
    pub(crate) fn take_others_ended(&mut self) -> bool {
        std::mem::take(&mut self.others_ended)
    }

    /// Polls the futures as they are woken until `done` says so (`true`), or until another
    /// future finishes or `bell` rings (`false`; the ring is taken).
    pub(crate) fn run_until(&mut self, mut done: impl FnMut() -> bool, bell: &Doorbell) -> bool {
        let Executor {
            slots,
            wakers,
            free,
            shared,
            turn,
            others_ended,
            ..
        } = self;
        let turns = poll_fn(|cx| {
            set_waiter(shared, cx.waker());
            loop {
                let done_before = done();
                let Some(ended) = poll_turn(shared, turn, slots, wakers, free) else {
                    break;
                };
                if done() {
                    // One future ending is the awaited task's own (if it was not done yet);
                    // any other's task is staged, for `take_others_ended` to say. What was
                    // woken meanwhile is polled once more (see `poll_late`).
                    let late = poll_late(shared, turn, slots, wakers, free);
                    *others_ended |= ended + late > usize::from(!done_before);
                    return Poll::Ready(true);
                }
                if ended > 0 {
                    // Another task finished: the scheduler publishes it now, not after this
                    // one.
                    return Poll::Ready(false);
                }
            }
            if done() {
                *others_ended |= poll_late(shared, turn, slots, wakers, free) > 0;
                return Poll::Ready(true);
            }
            if bell.take_ring() {
                return Poll::Ready(false);
            }
            #[cfg(feature = "tokio")]
            if bell.wake_too(Some(cx.waker())) && bell.take_ring() {
                return Poll::Ready(false);
            }
            Poll::Pending
        });
        #[cfg(feature = "tokio")]
        let finished = self.runtime.block_on(turns);
        #[cfg(not(feature = "tokio"))]
        let finished = block_on(&self.unpark, turns);
        #[cfg(feature = "tokio")]
        bell.wake_too(None);
        *lock(&self.shared.waiter) = None;
        finished
    }
}

fn set_waiter(shared: &Shared, waker: &Waker) {
    let mut waiter = lock(&shared.waiter);
    match &*waiter {
        Some(old) if old.will_wake(waker) => {}
        _ => *waiter = Some(waker.clone()),
    }
}

/// Polls the future in `slot`, if it is still there, and frees the slot once it finished;
/// returns whether it did.
/// Polls the futures woken since the last turn, in slot order; how many ended, or `None` if
/// none was woken.
fn poll_turn(
    shared: &Shared,
    turn: &mut Vec<usize>,
    slots: &mut [Option<LocalFuture<()>>],
    wakers: &[Waker],
    free: &mut Vec<usize>,
) -> Option<usize> {
    std::mem::swap(&mut *lock(&shared.ready), turn);
    if turn.is_empty() {
        return None;
    }
    turn.sort_unstable();
    turn.dedup();
    let ended = turn
        .iter()
        .filter(|&&slot| poll_slot(slots, wakers, free, slot))
        .count();
    turn.clear();
    Some(ended)
}

/// One more turn once the awaited task is done: a task resolved from outside wakes its future
/// (which, polled, drops itself) before it reads as done, so this turn drops it now rather
/// than whenever the worker next runs its executor. How many futures ended.
fn poll_late(
    shared: &Shared,
    turn: &mut Vec<usize>,
    slots: &mut [Option<LocalFuture<()>>],
    wakers: &[Waker],
    free: &mut Vec<usize>,
) -> usize {
    poll_turn(shared, turn, slots, wakers, free).unwrap_or(0)
}

fn poll_slot(
    slots: &mut [Option<LocalFuture<()>>],
    wakers: &[Waker],
    free: &mut Vec<usize>,
    slot: usize,
) -> bool {
    let Some(future) = slots[slot].as_mut() else {
        return false; // Finished since it was woken.
    };
    let mut cx = Context::from_waker(&wakers[slot]);
    if future.as_mut().poll(&mut cx).is_pending() {
        return false;
    }
    slots[slot] = None;
    free.push(slot);
    true
}

/// Polls `future` on this thread, parking it until `unpark` (a waker of this thread) is
/// woken.
#[cfg(not(feature = "tokio"))]
fn block_on<T>(unpark: &Waker, future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(unpark);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        // A wake-up (or a ring of the worker's doorbell, which unparks this very thread)
        // that came before this park makes it return at once.
        std::thread::park();
    }
}

/// Wakes a thread parked in [`block_on`].
#[cfg(not(feature = "tokio"))]
struct Unpark(std::thread::Thread);

#[cfg(not(feature = "tokio"))]
impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl Drop for Executor {
    /// Drops the futures left (their tasks already resolved: a worker leaves with futures
    /// only when destroyed or retired), inside the runtime they may need to drop.
    fn drop(&mut self) {
        #[cfg(feature = "tokio")]
        let _inside = self.runtime.enter();
        for slot in &mut self.slots {
            let future = slot.take();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(future)));
        }
    }
}
