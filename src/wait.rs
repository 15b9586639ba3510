//! How a thread waits for another: spin briefly, then yield, then park.
//!
//! Parking and waking a thread costs tens of microseconds on a small VM, while two spinning
//! threads exchange a value in well under one. Most waits in a pool are short (the next task
//! arrives, the result comes back), so both the workers and [`Task::wait`](crate::Task::wait)
//! first spin on an atomic, then yield (which lets the other thread run when both share one
//! core), and only then park. The budget is small and fixed, so an idle pool parks within
//! microseconds and burns no CPU.
//!
//! A caller waiting for its task stops yielding as soon as a yield let another thread run on
//! its core ([`spin_until_alone`]): on a shared core every yielding thread takes a turn in the
//! scheduler's round robin, and a caller whose task makes a round trip through a child
//! process's driver and the child would take one in each of the two rounds that trip needs.

use std::task::Waker;

use crate::sync::thread::{self, Thread};
use crate::sync::{spin_loop, take, AtomicBool, Ordering};

/// Rounds of busy-spinning, each twice as long as the last, before yielding: 31 `PAUSE`s in
/// all. Short on purpose: when both threads share one core (a `taskset -c 0` run), spinning
/// only delays the thread that would answer, and 127 pauses cost a pinned round trip 9 µs
/// instead of 4.4 µs here; unpinned, the answer usually arrives within these few rounds.
#[cfg(not(loom))]
const SPIN_ROUNDS: u32 = 5;
/// Under loom every spin is a scheduling point: keep the model small.
#[cfg(loom)]
const SPIN_ROUNDS: u32 = 1;
/// Calls to `yield_now` before parking: they let a thread sharing the core run, and cost a
/// cheap syscall when none does.
#[cfg(not(loom))]
const YIELDS: u32 = 32;
#[cfg(loom)]
const YIELDS: u32 = 1;

/// Spins, then yields, until `done` returns true or the budget runs out; returns the last
/// answer of `done`.
pub(crate) fn spin_until(mut done: impl FnMut() -> bool) -> bool {
    if spin(&mut done) {
        return true;
    }
    for _ in 0..YIELDS {
        if done() {
            return true;
        }
        thread::yield_now();
    }
    done()
}

/// At most about what a `yield_now` that let no other thread run takes (a system call: ~0.5 µs
/// on a 2-vCPU VM, under 1 µs at the 99.9th percentile). One that took longer let another
/// thread run on this core, for at least two context switches.
#[cfg(not(loom))]
const LONE_YIELD: std::time::Duration = std::time::Duration::from_micros(3);

/// How often a thread that learned to skip its yields ([`spin_until_alone`]) yields once
/// again, to see whether it still shares its core: one wait in this many.
#[cfg(not(loom))]
const PROBE_EVERY: u8 = 32;

#[cfg(not(loom))]
std::thread_local! {
    /// Waits left before this thread yields again (0: it yields): set when a yield let
    /// another thread run and the wait went on, counted down by each wait after it.
    static SKIP_YIELDS: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// [`spin_until`] for a waiter that would rather be woken than take turns with the threads it
/// waits for (a caller waiting for its task): once one of its yields let another thread run
/// on its core and the wait still went on, the thread's next waits skip their yields (they
/// spin, then return `done`'s answer, for the caller to park), but for one in
/// [`PROBE_EVERY`], which yields to see whether the core is still shared. Alone on its core,
/// its yields return at once and it yields as `spin_until` does.
///
/// Pinned to one core, a child process's task is a round trip through three threads (caller,
/// driver, child) that the scheduler runs in turn: a caller that yields takes a turn in every
/// round, six context switches a round trip instead of four. Were the caller's task a thread's,
/// the worker it yields to usually finishes the task in that turn: the wait ends, and nothing
/// is learned.
#[cfg(not(loom))]
pub(crate) fn spin_until_alone(mut done: impl FnMut() -> bool) -> bool {
    if spin(&mut done) {
        return true;
    }
    let skip = SKIP_YIELDS.get();
    if skip > 0 {
        SKIP_YIELDS.set(skip - 1);
        return done();
    }
    for _ in 0..YIELDS {
        let before = std::time::Instant::now();
        thread::yield_now();
        if done() {
            return true;
        }
        if before.elapsed() > LONE_YIELD {
            // Another thread ran, and the wait goes on: it will need more turns.
            SKIP_YIELDS.set(PROBE_EVERY);
            return false;
        }
    }
    false
}

/// loom models no clock, and its runs must not depend on one: the plain spin.
#[cfg(loom)]
pub(crate) fn spin_until_alone(done: impl FnMut() -> bool) -> bool {
    spin_until(done)
}

/// The busy-spinning rounds; whether `done` said so.
fn spin(done: &mut impl FnMut() -> bool) -> bool {
    for round in 0..SPIN_ROUNDS {
        if done() {
            return true;
        }
        for _ in 0..(1u32 << round) {
            spin_loop();
        }
    }
    false
}

/// Whoever waits for an event: nobody, a blocked thread, or an async task.
#[derive(Default)]
pub(crate) enum Waiter {
    #[default]
    Nobody,
    Thread(Thread),
    Task(Waker),
}

impl Waiter {
    /// Registers `waker`, keeping the old one when it would wake the same task.
    pub(crate) fn set_waker(&mut self, waker: &Waker) {
        if let Waiter::Task(old) = self {
            if old.will_wake(waker) {
                return;
            }
        }
        *self = Waiter::Task(waker.clone());
    }

    pub(crate) fn wake(self) {
        match self {
            Waiter::Nobody => {}
            Waiter::Thread(thread) => thread.unpark(),
            Waiter::Task(waker) => waker.wake(),
        }
    }
}

/// A one-bit mailbox a worker sleeps on: set by whoever hands it work, cleared by the worker.
pub(crate) struct Doorbell {
    rung: AtomicBool,
    thread: std::sync::OnceLock<Thread>,
    /// Called by every ring, for a thread that sleeps elsewhere than in `park` (a child's
    /// driver in `poll`): see [`Doorbell::also_call`].
    also: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// A worker whose async tasks run on tokio waits in tokio's driver, which an `unpark`
    /// does not reach: it leaves a waker here meanwhile (see [`Doorbell::wake_too`]).
    #[cfg(feature = "tokio")]
    waker: std::sync::Mutex<Option<Waker>>,
    #[cfg(feature = "tokio")]
    wants_waker: std::sync::atomic::AtomicBool,
}

impl Default for Doorbell {
    fn default() -> Self {
        Doorbell::new()
    }
}

impl Doorbell {
    pub(crate) fn new() -> Self {
        Doorbell {
            rung: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
            also: std::sync::OnceLock::new(),
            #[cfg(feature = "tokio")]
            waker: std::sync::Mutex::new(None),
            #[cfg(feature = "tokio")]
            wants_waker: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Called by the sleeping thread itself before it first looks for work, so that a ring
    /// can never miss it: a ringer that finds no thread here rang before that first look.
    pub(crate) fn bind_current_thread(&self) {
        let _ = self.thread.set(thread::current());
    }

    /// Wakes the bound thread. `unpark` is a plain atomic swap unless the thread is parked.
    pub(crate) fn ring(&self) {
        self.rung.store(true, Ordering::Release);
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
        if let Some(also) = self.also.get() {
            also();
        }
        #[cfg(feature = "tokio")]
        {
            use std::sync::atomic::{fence, Ordering::SeqCst};
            // Paired with the fence in `wake_too`: either that side sees `rung`, or this
            // one sees its waker.
            fence(SeqCst);
            if self.wants_waker.load(Ordering::Relaxed) {
                if let Some(waker) = &*crate::sync::lock(&self.waker) {
                    waker.wake_by_ref();
                }
            }
        }
    }

    /// Has every ring from now on also call `hook` (after the bell is set), for a thread that
    /// may sleep elsewhere than in `park`; returns `false` if a hook was set already. Only
    /// such bells pay for it: a bell without one costs a ring one load more.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn also_call(&self, hook: Box<dyn Fn() + Send + Sync>) -> bool {
        self.also.set(hook).is_ok()
    }

    /// Whether the bell was rung and not cleared yet; it stays so.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn is_rung(&self) -> bool {
        self.rung.load(Ordering::Acquire)
    }

    /// Clears the bell and returns whether it was rung, without waiting.
    pub(crate) fn take_ring(&self) -> bool {
        take(&self.rung)
    }

    /// Has a ring also wake `waker` (`None`: no more) and returns whether the bell was rung
    /// already, without clearing it: for a thread that waits elsewhere than in `park`.
    #[cfg(feature = "tokio")]
    pub(crate) fn wake_too(&self, waker: Option<&Waker>) -> bool {
        use std::sync::atomic::{fence, Ordering::SeqCst};
        let wants = waker.is_some();
        {
            let mut slot = crate::sync::lock(&self.waker);
            match (&*slot, waker) {
                (Some(old), Some(new)) if old.will_wake(new) => {}
                _ => *slot = waker.cloned(),
            }
        }
        self.wants_waker.store(wants, Ordering::Relaxed);
        fence(SeqCst);
        self.rung.load(Ordering::Acquire)
    }

    /// Waits until rung or until `deadline`; returns whether it was rung.
    pub(crate) fn wait(&self, deadline: Option<std::time::Instant>) -> bool {
        if spin_until(|| self.rung.load(Ordering::Acquire)) {
            self.rung.store(false, Ordering::Relaxed);
            return true;
        }
        loop {
            if take(&self.rung) {
                return true;
            }
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    thread::park_timeout(deadline - now);
                }
            }
        }
    }
}

/// The instant `timeout` from now. Every `Duration` option accepts any value: one too large to
/// count from now (`Duration::MAX`) means "never", a deadline a century away.
pub(crate) fn deadline_after(timeout: std::time::Duration) -> std::time::Instant {
    const CENTURY: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
    let now = std::time::Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(CENTURY))
        .unwrap_or(now)
}

/// Model checks of the wake-up path: `RUSTFLAGS="--cfg loom" cargo test --lib loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use std::sync::Arc;

    use super::Doorbell;

    #[test]
    fn a_ring_is_never_lost_whenever_it_comes() {
        loom::model(|| {
            let bell = Arc::new(Doorbell::new());
            let ringer = {
                let bell = bell.clone();
                loom::thread::spawn(move || bell.ring())
            };
            // Bound after the ringer may already have rung: the flag must carry it.
            bell.bind_current_thread();
            assert!(bell.wait(None));
            ringer.join().unwrap();
        });
    }

    /// The scheduler's hand-off, in its shape: work is pushed under the lock and the bell rung
    /// after; the worker looks under the lock and waits on the bell after releasing it. No
    /// interleaving may leave the work unseen and the worker asleep.
    #[test]
    fn work_handed_over_under_a_lock_is_never_missed() {
        use crate::sync::{lock, Mutex};
        loom::model(|| {
            let inbox = Arc::new(Mutex::new(Vec::new()));
            let bell = Arc::new(Doorbell::new());
            bell.bind_current_thread();
            let submitter = {
                let (inbox, bell) = (inbox.clone(), bell.clone());
                loom::thread::spawn(move || {
                    lock(&inbox).push(1);
                    bell.ring();
                })
            };
            let taken = loop {
                if let Some(job) = lock(&inbox).pop() {
                    break job;
                }
                bell.wait(None);
            };
            assert_eq!(taken, 1);
            submitter.join().unwrap();
        });
    }
}
