//! The torture's async exports, and what they share within one process: a count of their live
//! futures and an alarm clock.
//!
//! - `async_mix (x, yields)`: yields that many times (each yield wakes itself), then returns
//!   `mix(x)`.
//! - `async_sleep (x, micros, tokio)`: waits `micros` on the alarm clock (a thread of this
//!   process that wakes the future), or, with the `tokio` feature and `tokio` set, on tokio's
//!   timer (the worker's runtime); then returns `mix(x)`.
//! - `async_pending x`: never ends; only an abort, a timeout, a destroy or its worker's death
//!   ends its task (the caller always gives it a bounded way to end).
//! - `async_panic (id, micros)`: yields (`micros` 0) or waits on the alarm clock, then panics
//!   with `PANIC_PREFIX` and `id`.
//!
//! Each future counts itself in [`LIVE`] from its making (the export's call, before the first
//! poll) to its drop, whatever ends it: so a pool of threads that forgets the future of a task
//! resolved from outside, or keeps one past its destroy, leaves the count above zero. Child
//! processes count their own futures in their own copy, which the test process does not see.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use tinypool::Exports;

use super::common::yield_once;
use super::{mix, PANIC_PREFIX};

/// Adds the async exports to `exports`.
pub fn with_async(exports: Exports) -> Exports {
    exports
        .export_async("async_mix", |(x, yields): (u64, u32)| {
            let live = Live::new();
            async move {
                let _live = live;
                for _ in 0..yields {
                    yield_once().await;
                }
                mix(x)
            }
        })
        .export_async("async_sleep", |(x, micros, tokio): (u64, u32, bool)| {
            let live = Live::new();
            async move {
                let _live = live;
                let duration = Duration::from_micros(micros.into());
                #[cfg(feature = "tokio")]
                if tokio {
                    tokio::time::sleep(duration).await;
                    return mix(x);
                }
                #[cfg(not(feature = "tokio"))]
                let _ = tokio;
                alarm(duration).await;
                mix(x)
            }
        })
        .export_async("async_pending", |x: u64| {
            let live = Live::new();
            async move {
                let _live = live;
                std::future::pending::<()>().await;
                mix(x)
            }
        })
        .export_async("async_panic", |(id, micros): (u64, u32)| {
            let live = Live::new();
            async move {
                let _live = live;
                if micros == 0 {
                    yield_once().await;
                } else {
                    alarm(Duration::from_micros(micros.into())).await;
                }
                panic_with(id)
            }
        })
}

/// Panics with the message a task `id` that panics is expected to end with (typed, for an
/// export's result).
fn panic_with(id: u64) -> u64 {
    panic!("{PANIC_PREFIX}{id}")
}

// ---- Live futures ---------------------------------------------------------------------------

/// The async exports' futures alive in this process, and the condition variable notified when
/// the count falls to zero.
static LIVE: Mutex<u64> = Mutex::new(0);
static NONE_LIVE: Condvar = Condvar::new();
/// The futures made in this process, ever.
static MADE: AtomicU64 = AtomicU64::new(0);

fn live_count() -> MutexGuard<'static, u64> {
    // Never poisoned (nothing panics while holding it); a poisoned count still counts.
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Held by one future of an async export, from its making to its drop.
struct Live(());

impl Live {
    fn new() -> Self {
        *live_count() += 1;
        MADE.fetch_add(1, Ordering::Relaxed);
        Live(())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut live = live_count();
        *live -= 1;
        if *live == 0 {
            NONE_LIVE.notify_all();
        }
    }
}

/// How many futures of the async exports this process has made, ever.
pub fn made() -> u64 {
    MADE.load(Ordering::Relaxed)
}

/// Waits until no future of the async exports is alive in this process; `Err` with how many
/// still are after `bound`.
pub fn wait_none_live(bound: Duration) -> Result<(), u64> {
    let (live, _) = NONE_LIVE
        .wait_timeout_while(live_count(), bound, |live| *live != 0)
        .unwrap_or_else(PoisonError::into_inner);
    match *live {
        0 => Ok(()),
        left => Err(left),
    }
}

// ---- Await points ---------------------------------------------------------------------------

/// Whether an alarm rang, and the waker to wake when it does.
type Alarm = Arc<Mutex<(bool, Option<Waker>)>>;

/// Ends once `duration` has passed: the alarm clock's thread wakes it.
fn alarm(duration: Duration) -> impl Future<Output = ()> {
    let alarm: Alarm = Arc::default();
    let mut set = false;
    poll_fn(move |cx| {
        let mut state = alarm.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0 {
            return Poll::Ready(());
        }
        state.1 = Some(cx.waker().clone());
        drop(state);
        if !std::mem::replace(&mut set, true) {
            set_alarm(Instant::now() + duration, alarm.clone());
        }
        Poll::Pending
    })
}

/// The alarm clock of this process: started at its first alarm (in a child worker, after the
/// fork that made it), it lives as long as the process.
fn set_alarm(at: Instant, alarm: Alarm) {
    static CLOCK: Mutex<Option<Sender<(Instant, Alarm)>>> = Mutex::new(None);
    let mut clock = CLOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let sender = clock.get_or_insert_with(|| {
        let (sender, receiver) = mpsc::channel();
        thread::Builder::new()
            .name("alarm-clock".into())
            .spawn(move || ring_alarms(receiver))
            .expect("the alarm clock's thread");
        sender
    });
    sender
        .send((at, alarm))
        .expect("the alarm clock lives as long as the process");
}

/// The alarm clock's loop: takes alarms, and rings each when its time comes.
fn ring_alarms(receiver: Receiver<(Instant, Alarm)>) {
    // By time, then by arrival (alarms are not ordered).
    let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut alarms: HashMap<u64, Alarm> = HashMap::new();
    let mut next = 0u64;
    loop {
        let now = Instant::now();
        while let Some(&Reverse((at, key))) = due.peek() {
            if at > now {
                break;
            }
            due.pop();
            let alarm = alarms.remove(&key).expect("each alarm is due once");
            let waker = {
                let mut state = alarm.lock().unwrap_or_else(PoisonError::into_inner);
                state.0 = true;
                state.1.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        }
        let received = match due.peek() {
            Some(&Reverse((at, _))) => {
                receiver.recv_timeout(at.saturating_duration_since(Instant::now()))
            }
            None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok((at, alarm)) => {
                due.push(Reverse((at, next)));
                alarms.insert(next, alarm);
                next += 1;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
