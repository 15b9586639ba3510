//! A pool's statistics ([`Pool::stats`](crate::Pool::stats)): how its tasks resolved, how long
//! they waited and ran, how busy its workers were.
//!
//! # What is counted, and where
//!
//! - **Outcomes.** Every task counts exactly once, when it resolves and before its caller can
//!   see the result: as *succeeded* (a value) or as *failed* with its error's
//!   [`ErrorKind`]. Whoever resolves it counts it (the result slot's transition takes a
//!   [`Tally`]): a worker publishing what the function returned or how it failed (panic,
//!   unknown name, type mismatch, a child that died...), or the scheduler failing it (abort,
//!   cancel, destroy, a full queue, a closed pool, a worker that could not start...). So once
//!   the `N` tasks submitted have resolved, `succeeded() + failed_total() == N`, however they
//!   ended. A worker counts in a tally of its own (its thread is the only writer: a plain
//!   load and store per task, no cache line shared with the other workers), folded into
//!   the pool's totals when its thread ends; the scheduler's failures, from any thread, go to
//!   one shared tally.
//! - **Busy time**, only with [`Builder::record_timing`](crate::Builder::record_timing): a
//!   worker is busy from the moment it takes work after idling to the moment it goes idle
//!   again, measured on those transitions (not per task), under the state lock the worker
//!   holds there anyway (two clock reads on a lone task's way to its caller: 0.2 µs of a
//!   0.5 µs round trip on a 2-core machine, so not by default). A retired worker's busy time
//!   joins the pool's total when it is retired. [`Stats::utilization`] is that total over the
//!   pool's duration times `max_threads`, as Piscina defines it.
//! - **Run and wait time**, only with [`Builder::record_timing`](crate::Builder::record_timing)
//!   (two or three clock reads per task): wait time from submission to the start of the run,
//!   run time from that start to the result, as the worker sees them. Each worker records
//!   them in a [`Histogram`] of its own under the lock it takes after every task; the
//!   histograms are merged when [`Pool::stats`](crate::Pool::stats) is called.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::ErrorKind;

mod histogram;

pub(crate) use histogram::Histogram;

/// How many error kinds are counted.
const KINDS: usize = ErrorKind::ALL.len();

/// A snapshot of a pool's statistics, from [`Pool::stats`](crate::Pool::stats).
///
/// Counts cover the pool's whole life, and it can be taken at any time, before or after
/// `close` or `destroy`; it is a moment's picture of a pool whose workers run on. From one
/// snapshot to the next, counts, [`busy_time`](Self::busy_time) and
/// [`duration`](Self::duration) never decrease.
///
/// ```
/// use tinypool::{ErrorKind, Exports, Pool, Task};
///
/// let pool = Pool::builder()
///     .exports(Exports::new().export_default(|n: u32| {
///         assert!(n != 3, "three is right out");
///         n
///     }))
///     .build()?;
/// let tasks: Vec<Task<u32>> = (0..5u32).map(|n| pool.run(n)).collect();
/// let failed = tasks.into_iter().map(Task::wait).filter(Result::is_err).count();
///
/// let stats = pool.stats();
/// assert_eq!((stats.succeeded(), stats.failed_total()), (4, 1));
/// assert_eq!(stats.resolved(), 5);
/// assert_eq!(failed, 1);
/// assert_eq!(stats.failed(ErrorKind::Panicked), 1);
/// assert!((0.0..=1.0).contains(&stats.utilization));
/// # Ok::<(), tinypool::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Stats {
    /// Tasks that resolved with a value: see [`succeeded`](Stats::succeeded).
    succeeded: u64,
    /// Tasks that failed, by error kind: see [`failed`](Stats::failed).
    failed: Failures,
    /// How long tasks ran, from their start to their result, as the worker sees it: on a
    /// thread, the function's call; in a child process, the round trip to the child (with
    /// `concurrent_tasks_per_worker` > 1, from the end of the task before it). Every task a
    /// worker ran counts, whatever its result. Empty (`count` 0) unless
    /// [`Builder::record_timing`](crate::Builder::record_timing) is on.
    pub run_time: Summary,
    /// How long tasks waited, from their submission to the start of their run. Empty (`count`
    /// 0) unless [`Builder::record_timing`](crate::Builder::record_timing) is on.
    pub wait_time: Summary,
    /// How long the workers were busy, all together: from taking work after idling to going
    /// idle again, while they belonged to the pool (a worker retired while its function still
    /// runs, by an abort, stops counting then). Zero unless
    /// [`Builder::record_timing`](crate::Builder::record_timing) is on.
    pub busy_time: Duration,
    /// How long ago the pool was built ([`Pool::duration`](crate::Pool::duration)).
    pub duration: Duration,
    /// The share of the pool's capacity used so far, from 0 to 1: [`busy_time`](Self::busy_time)
    /// over [`duration`](Self::duration) times `max_threads` (Piscina's `utilization`). Zero
    /// unless [`Builder::record_timing`](crate::Builder::record_timing) is on.
    pub utilization: f64,
    /// The live workers (not those retired), by id.
    pub workers: Vec<WorkerStats>,
}

impl Stats {
    /// How many tasks resolved with a value (their function returned, and its result reached
    /// the caller's [`Task`](crate::Task)).
    ///
    /// Not [`Pool::completed`](crate::Pool::completed), Tinypool's count of the tasks a
    /// worker ran to their end *whatever their result*: a task whose function panicked is
    /// completed there and [failed](Stats::failed) here, and a task that failed before it
    /// ran (aborted in the queue, cancelled, refused) is only counted here.
    ///
    /// ```
    /// use tinypool::{Exports, Pool, Task};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u32| {
    ///         assert!(n > 0, "zero");
    ///         n
    ///     }))
    ///     .build()?;
    /// let tasks: Vec<Task<u32>> = (0..3u32).map(|n| pool.run(n)).collect();
    /// tasks.into_iter().for_each(|task| drop(task.wait()));
    /// let stats = pool.stats();
    /// assert_eq!(stats.succeeded(), 2);
    /// assert_eq!(pool.completed(), 3); // The panicked one ran to its end too.
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    #[doc(alias = "completed")]
    pub fn succeeded(&self) -> u64 {
        self.succeeded
    }

    /// How many tasks failed with an error of `kind`, wherever they failed: in their
    /// function (a panic, a type mismatch) or before it ran or finished (aborted, timed out,
    /// cancelled, refused by a full queue or a closed pool, a dead child...).
    ///
    /// ```
    /// use tinypool::{Error, ErrorKind, Exports, Pool, RunOptions};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u32| n))
    ///     .build()?;
    /// let unknown = pool.run_with::<u32, _>(1u32, RunOptions::new().name("nope"));
    /// assert!(matches!(unknown.wait(), Err(Error::NoSuchFunction { .. })));
    /// pool.destroy().wait()?;
    /// assert_eq!(pool.run::<u32, _>(2u32).wait(), Err(Error::Terminated));
    ///
    /// let stats = pool.stats();
    /// assert_eq!(stats.failed(ErrorKind::NoSuchFunction), 1);
    /// assert_eq!(stats.failed(ErrorKind::Terminated), 1);
    /// assert_eq!(stats.failed(ErrorKind::Panicked), 0);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn failed(&self, kind: ErrorKind) -> u64 {
        self.failed.0[kind as usize]
    }

    /// How many tasks failed, whatever the error: the sum of [`failed`](Stats::failed) over
    /// every [`ErrorKind`].
    pub fn failed_total(&self) -> u64 {
        self.failed.0.iter().sum()
    }

    /// The kinds of error tasks failed with, each with how many did (kinds none failed with
    /// are left out).
    ///
    /// ```
    /// use tinypool::{ErrorKind, Exports, Pool};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u32| n))
    ///     .build()?;
    /// assert!(pool.run::<u64, _>(1u32).wait().is_err()); // A u32 is not a u64.
    /// let failures: Vec<(ErrorKind, u64)> = pool.stats().failures().collect();
    /// assert_eq!(failures, [(ErrorKind::TypeMismatch, 1)]);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn failures(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        self.failed.nonzero()
    }

    /// How many tasks resolved so far, with a value or an error:
    /// [`succeeded`](Stats::succeeded)` + `[`failed_total`](Stats::failed_total). Once every
    /// task submitted has resolved, it is the number submitted.
    pub fn resolved(&self) -> u64 {
        self.succeeded + self.failed_total()
    }
}

/// Failed tasks by kind, indexed by `kind as usize`.
#[derive(Clone, Default)]
struct Failures([u64; KINDS]);

impl Failures {
    fn nonzero(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        ErrorKind::ALL
            .iter()
            .zip(self.0)
            .filter(|(_, count)| *count > 0)
            .map(|(&kind, count)| (kind, count))
    }
}

impl fmt::Debug for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.nonzero()).finish()
    }
}

/// A summary of durations: how many, the extremes, the mean and three percentiles.
///
/// `min`, `max` and `mean` are exact; the percentiles come from a histogram and are within
/// 1/64 (1.6 %) of the value they stand for. `min ≤ p50 ≤ p90 ≤ p99 ≤ max`. All zero when
/// `count` is 0. Durations are counted in nanoseconds, up to `u64::MAX` of them (584 years):
/// a longer one counts as that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Summary {
    /// How many durations were recorded.
    pub count: u64,
    /// The shortest.
    pub min: Duration,
    /// The arithmetic mean.
    pub mean: Duration,
    /// The median: half of the durations are this long or shorter.
    pub p50: Duration,
    /// 90 % of the durations are this long or shorter.
    pub p90: Duration,
    /// 99 % of the durations are this long or shorter.
    pub p99: Duration,
    /// The longest.
    pub max: Duration,
}

/// One live worker in [`Stats::workers`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// The worker's id, as in [`WorkerInfo::id`](crate::WorkerInfo::id).
    pub id: usize,
    /// Tasks it ran to their end, whatever their result.
    pub tasks: u64,
    /// How long it was busy (see [`Stats::busy_time`]).
    pub busy_time: Duration,
}

/// How a task resolved, as it is counted: `Ok` with a value, else its error's kind.
pub(crate) type Outcome = Result<(), ErrorKind>;

/// The outcome of a task's result (its error held as it is, or boxed as a slot holds it).
pub(crate) fn outcome<R, E: std::borrow::Borrow<crate::Error>>(result: &Result<R, E>) -> Outcome {
    match result {
        Ok(_) => Ok(()),
        Err(error) => Err(error.borrow().kind()),
    }
}

/// Where tasks' outcomes are counted, by whoever resolves them.
pub(crate) struct Tally {
    /// `[0]`: succeeded; `[1 + kind]`: failed with that kind.
    counts: [AtomicU64; 1 + KINDS],
    /// Counted by one thread only (a worker's): a load and a store rather than an atomic
    /// read-modify-write, which costs more even on a cache line nobody else writes.
    owned: bool,
}

impl Tally {
    /// A tally only its worker's thread counts in.
    pub(crate) fn owned() -> Tally {
        Tally {
            counts: Default::default(),
            owned: true,
        }
    }

    /// A tally any thread counts in.
    pub(crate) fn shared() -> Tally {
        Tally {
            counts: Default::default(),
            owned: false,
        }
    }

    pub(crate) fn count(&self, outcome: Outcome) {
        let counter = &self.counts[match outcome {
            Ok(()) => 0,
            Err(kind) => 1 + kind as usize,
        }];
        // Relaxed: the count is read after the task's result, which the slot publishes with
        // release after this store (and a reader acquires), or at a `stats()` that reads
        // whatever has been counted.
        if self.owned {
            counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        } else {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds what it counted to `into`.
    pub(crate) fn add_to(&self, into: &mut Counts) {
        for (sum, count) in into.0.iter_mut().zip(&self.counts) {
            *sum += count.load(Ordering::Relaxed);
        }
    }
}

/// Outcomes added up (see [`Tally`]).
#[derive(Clone, Default)]
pub(crate) struct Counts([u64; 1 + KINDS]);

/// Run and wait times: one pair of histograms per worker, and one for the retired ones.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timings {
    pub(crate) run: Histogram,
    pub(crate) wait: Histogram,
}

impl Timings {
    pub(crate) fn merge(&mut self, other: &Timings) {
        self.run.merge(&other.run);
        self.wait.merge(&other.wait);
    }
}

/// What [`Stats`] is made from, gathered by the scheduler.
pub(crate) struct Parts {
    pub(crate) counts: Counts,
    pub(crate) timings: Timings,
    pub(crate) busy_time: Duration,
    pub(crate) duration: Duration,
    pub(crate) max_threads: usize,
    pub(crate) workers: Vec<WorkerStats>,
}

impl Parts {
    pub(crate) fn stats(self) -> Stats {
        let [succeeded, failed @ ..] = self.counts.0;
        let capacity = self.duration.as_secs_f64() * self.max_threads as f64;
        let utilization = if capacity > 0.0 {
            (self.busy_time.as_secs_f64() / capacity).clamp(0.0, 1.0)
        } else {
            0.0
        };
        Stats {
            succeeded,
            failed: Failures(failed),
            run_time: self.timings.run.summary(),
            wait_time: self.timings.wait.summary(),
            busy_time: self.busy_time,
            duration: self.duration,
            utilization,
            workers: self.workers,
        }
    }
}

impl WorkerStats {
    pub(crate) fn new(id: usize, tasks: u64, busy_time: Duration) -> Self {
        WorkerStats {
            id,
            tasks,
            busy_time,
        }
    }
}
