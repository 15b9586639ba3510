//! A sleep for the async exports of the benchmark, completed by a timer thread.
//!
//! The bench builds tinypool without its `tokio` feature, so a worker polls its async tasks
//! with tinypool's own small executor, which has no timers: a future there must be completed
//! by someone else. [`sleep`] registers its deadline and waker with one timer thread per
//! process (started at the first sleep, never before, so the other workloads do not see it),
//! which wakes each sleep once its deadline has passed. Enabling tinypool's `tokio` feature in
//! the bench instead would change the workers of every workload (each would run a tokio
//! runtime), so the sync numbers would no longer be the ones users of the default build get.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// What a sleep and the timer thread share.
struct Shared {
    /// Set by the timer thread once the deadline passed.
    fired: AtomicBool,
    /// The waker of the sleep's last poll.
    waker: Mutex<Option<Waker>>,
}

/// A pending deadline, ordered by time, then by registration.
struct Entry {
    /// When it fires.
    at: Instant,
    /// Registration order: ties fire in order.
    seq: u64,
    /// The sleep to wake.
    shared: Arc<Shared>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The process's timer: pending deadlines, earliest first, and a condvar to wake its thread.
struct Timer {
    /// The deadlines and the next registration number.
    pending: Mutex<(BinaryHeap<Reverse<Entry>>, u64)>,
    /// Signalled when a deadline earlier than every other one arrives.
    changed: Condvar,
}

impl Timer {
    /// The process's timer, its thread started on first use. The thread lives as long as the
    /// process: it holds nothing but the deadlines.
    fn get() -> &'static Timer {
        static TIMER: OnceLock<&'static Timer> = OnceLock::new();
        TIMER.get_or_init(|| {
            let timer: &'static Timer = Box::leak(Box::new(Timer {
                pending: Mutex::new((BinaryHeap::new(), 0)),
                changed: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("bench-timer".into())
                .spawn(move || timer.run())
                .expect("cannot start the bench's timer thread");
            timer
        })
    }

    /// Adds a deadline.
    fn add(&self, at: Instant, shared: Arc<Shared>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let seq = pending.1;
        pending.1 += 1;
        let earliest = pending.0.peek().is_none_or(|Reverse(top)| at < top.at);
        pending.0.push(Reverse(Entry { at, seq, shared }));
        if earliest {
            self.changed.notify_one();
        }
    }

    /// The timer thread: wakes every sleep whose deadline passed, then waits for the next.
    fn run(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while pending.0.peek().is_some_and(|Reverse(top)| top.at <= now) {
                due.push(pending.0.pop().expect("peeked").0.shared);
            }
            if !due.is_empty() {
                // Wake outside the lock: a waker may poll, or register another sleep, at once.
                drop(pending);
                for shared in due {
                    shared.fired.store(true, Ordering::Release);
                    let waker = shared
                        .waker
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take();
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                }
                pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            pending = match pending.0.peek().map(|Reverse(top)| top.at) {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(pending, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self
                    .changed
                    .wait(pending)
                    .unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// A future that is ready once `duration` has passed since its first poll.
pub struct Sleep {
    /// How long.
    duration: Duration,
    /// Set at the first poll, which registers the deadline.
    shared: Option<Arc<Shared>>,
}

/// Sleeps for `duration` without holding a thread: the timer thread wakes the task.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep {
        duration,
        shared: None,
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.shared {
            None => {
                let shared = Arc::new(Shared {
                    fired: AtomicBool::new(false),
                    waker: Mutex::new(Some(cx.waker().clone())),
                });
                // A deadline past Instant's range never fires: the task waits for its abort.
                if let Some(at) = Instant::now().checked_add(self.duration) {
                    Timer::get().add(at, shared.clone());
                }
                self.shared = Some(shared);
                Poll::Pending
            }
            Some(shared) => {
                // The waker is stored before `fired` is read, so a timer that fires in between
                // finds it (or we see `fired`).
                *shared.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
                if shared.fired.load(Ordering::Acquire) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
    }
}
