//! The synchronization primitives of the pool's own machinery (the result slot, the doorbell,
//! the abort signal and the scheduler: its lock, condvar, atomics and worker threads), from
//! `std`, or from `loom` when built with `--cfg loom`, so that the same code is model-checked
//! (see the loom tests in `task.rs`, `wait.rs` and `scheduler/loom.rs`). Without loom these are
//! plain re-exports of `std`, and the helpers below compile to the very same calls.
//!
//! Time under loom: loom models no clock, so a timed wait is an untimed one (loom's
//! `Condvar::wait_timeout` never times out either). The models choose their options so that
//! every deadline is either already past when it is computed (a zero `idle_timeout`: the
//! caller sees it passed and never waits) or far beyond the model's run (an hour-long
//! `terminate_timeout`: in reality too, only a wake-up ends that wait). A wait loom cannot
//! end is then a real lost wake-up, which loom reports as a deadlock. `untimed` catches a
//! model that breaks this rule, rather than letting it fail as a misleading deadlock.

use std::time::Duration;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// `T` on cache lines of its own: 128 bytes, two lines, for the adjacent-line prefetcher. For
/// what one side writes on every task next to what another side reads on every task (the
/// scheduler's state, which the workers write, beside the fields a submitter reads).
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

pub(crate) mod thread {
    // loom's `Builder` takes a name and a stack size like std's, and its `JoinHandle` gives the
    // thread (and so its id) like std's: no shim needed for spawning and joining.
    #[cfg(loom)]
    pub(crate) use loom::thread::{yield_now, Builder, JoinHandle};
    #[cfg(not(loom))]
    pub(crate) use std::thread::{
        current, park, park_timeout, yield_now, Builder, JoinHandle, Thread,
    };

    #[cfg(loom)]
    pub(crate) use self::parker::{current, park, Thread};

    /// loom models no time: a timed park is a park (see the module's doc and [`untimed`]).
    ///
    /// [`untimed`]: super::untimed
    #[cfg(loom)]
    pub(crate) fn park_timeout(timeout: std::time::Duration) {
        super::untimed(timeout);
        park();
    }

    /// `park` and `unpark` with std's meaning under loom. loom 0.7's `Thread::unpark` wakes
    /// its thread whatever it is blocked on, so a ring that reaches a worker while it waits
    /// for a mutex (harmless with std: the token just waits for the next `park`) resumes it
    /// without the lock, and loom aborts the model (tokio-rs/loom#249). Here each thread
    /// parks on a token of its own, a `loom::sync::Notify`: `unpark` sets it and wakes only
    /// a thread waiting on it, `park` takes it or waits for it, with the same
    /// release/acquire edge as std's. (loom may also wake it once spuriously, which std's
    /// `park` allows too.)
    #[cfg(loom)]
    mod parker {
        use std::sync::Arc;

        use loom::sync::Notify;

        loom::thread_local! {
            static TOKEN: Arc<Notify> = Arc::new(Notify::new());
        }

        #[derive(Clone, Debug)]
        pub(crate) struct Thread {
            thread: loom::thread::Thread,
            token: Arc<Notify>,
        }

        impl Thread {
            pub(crate) fn id(&self) -> loom::thread::ThreadId {
                self.thread.id()
            }

            pub(crate) fn unpark(&self) {
                self.token.notify();
            }
        }

        pub(crate) fn current() -> Thread {
            Thread {
                thread: loom::thread::current(),
                token: TOKEN.with(Arc::clone),
            }
        }

        pub(crate) fn park() {
            TOKEN.with(Arc::clone).wait();
        }
    }
}

#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(not(loom))]
pub(crate) use std::hint::spin_loop;

/// Clears `flag` and returns whether it was set: `swap(false, AcqRel)`.
#[cfg(not(loom))]
#[inline]
pub(crate) fn take(flag: &AtomicBool) -> bool {
    flag.swap(false, Ordering::AcqRel)
}

/// loom 0.7 can order another thread's plain store between the read and the write of a swap,
/// which no real execution does (an RMW reads the value just before its own write:
/// tokio-rs/loom#254). A doorbell's swap that finds it unrung then erases a ring stored just
/// after, and loom reports a lost wake-up that cannot happen. A compare-exchange that fails
/// writes nothing, so nothing can be ordered under it; one that succeeds says rung, and the
/// caller looks for its work anyway. For a flag that others only set, it is the same as the
/// swap: a read that acquires, and `false` left behind.
#[cfg(loom)]
pub(crate) fn take(flag: &AtomicBool) -> bool {
    flag.compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// Locks a mutex, ignoring poisoning: every critical section in this crate leaves its data
/// consistent before anything that may panic, and user code never runs under these locks.
///
/// The one lock helper of the crate, for this module's [`Mutex`] and for `std`'s alike: under
/// loom they differ, and the code loom does not model (channels, the child-process runtime)
/// keeps `std`'s.
#[inline]
pub(crate) fn lock<L: Lock + ?Sized>(mutex: &L) -> L::Guard<'_> {
    mutex.lock_ignoring_poison()
}

/// A mutex [`lock`] takes (through an `Arc` too, as a plain `&Mutex` argument would coerce).
pub(crate) trait Lock {
    type Guard<'a>
    where
        Self: 'a;

    fn lock_ignoring_poison(&self) -> Self::Guard<'_>;
}

impl<T: ?Sized> Lock for std::sync::Mutex<T> {
    type Guard<'a>
        = std::sync::MutexGuard<'a, T>
    where
        Self: 'a;

    #[inline]
    fn lock_ignoring_poison(&self) -> Self::Guard<'_> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(loom)]
impl<T> Lock for loom::sync::Mutex<T> {
    type Guard<'a>
        = loom::sync::MutexGuard<'a, T>
    where
        Self: 'a;

    fn lock_ignoring_poison(&self) -> Self::Guard<'_> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<L: Lock + ?Sized> Lock for std::sync::Arc<L> {
    type Guard<'a>
        = L::Guard<'a>
    where
        Self: 'a;

    #[inline]
    fn lock_ignoring_poison(&self) -> Self::Guard<'_> {
        (**self).lock_ignoring_poison()
    }
}

/// Waits on `condvar` for at most `timeout` (or a notification, or spuriously), ignoring
/// poisoning. Under loom it waits for a notification only (see `untimed`).
pub(crate) fn wait_timeout<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> MutexGuard<'a, T> {
    #[cfg(loom)]
    untimed(timeout);
    condvar
        .wait_timeout(guard, timeout)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .0
}

/// Under loom a timed wait ends only by a wake-up, which is faithful only when the timeout
/// could not have fired during the model anyway. A model that waits with a short timeout
/// would otherwise be reported as a deadlock that is none: it fails here, saying why.
#[cfg(loom)]
pub(crate) fn untimed(timeout: Duration) {
    assert!(
        timeout >= Duration::from_secs(60),
        "a loom model waited with a {timeout:?} timeout, which loom cannot let fire: give \
         it a zero timeout (already past) or one far beyond the model (see src/sync.rs)"
    );
}
