//! What the scheduler measures for [`Pool::stats`](crate::Pool::stats) (see
//! [`crate::stats`] for what each figure means):
//!
//! - per live worker, in its record under the state lock: the tasks it ran and, with
//!   `record_timing`, its busy time (from taking work after idling to going idle, read on
//!   those transitions only) and its run and wait times ([`WorkerMeter`]);
//! - per worker thread, its [`Tally`] of outcomes, written by that thread alone as it
//!   publishes, read by `stats()`, and folded into the pool's totals when the thread ends;
//! - for the pool, what the workers gone measured ([`PoolMeter`]), and the scheduler's own
//!   tally of the tasks it failed (the [`Scheduler`](super::Scheduler)'s).
//!
//! [`Scheduler::stats`](super::Scheduler::stats) adds them all up under the state lock.
//!
//! With `record_timing`, a worker's [`Stopwatch`] times each task with the lock released: a
//! clock read when it hands tasks to its runtime and one when the oldest has finished; the
//! sample is booked under the lock the worker takes next anyway.

use std::time::{Duration, Instant};

use super::queue::JobRef;
use crate::stats::{Counts, Tally, Timings};
use crate::task::Job;

/// What the scheduler measures of one live worker (in its record, under the state lock).
#[derive(Default)]
pub(super) struct WorkerMeter {
    /// Tasks it ran to their end.
    pub(super) tasks: u64,
    /// Its busy time, up to `busy_since`.
    busy: Duration,
    /// Busy since then (`None` while idle).
    busy_since: Option<Instant>,
    /// With `record_timing`, once it ran a task.
    pub(super) timings: Option<Box<Timings>>,
}

impl WorkerMeter {
    pub(super) fn is_busy(&self) -> bool {
        self.busy_since.is_some()
    }

    /// It took work at `at`, after idling (or as it started).
    pub(super) fn busy_from(&mut self, at: Instant) {
        self.busy_since.get_or_insert(at);
    }

    /// It goes idle at `at`.
    pub(super) fn idle_from(&mut self, at: Instant) {
        if let Some(since) = self.busy_since.take() {
            self.busy = self
                .busy
                .saturating_add(at.saturating_duration_since(since));
        }
    }

    /// Its busy time up to `now`.
    pub(super) fn busy_time(&self, now: Instant) -> Duration {
        let ongoing = self
            .busy_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        self.busy.saturating_add(ongoing)
    }

    /// It ran a task to its end, timed if `sample` says how long.
    pub(super) fn book(&mut self, sample: Option<Sample>) {
        self.tasks += 1;
        if let Some(sample) = sample {
            let timings = self.timings.get_or_insert_with(Box::default);
            timings.run.record(sample.run);
            timings.wait.record(sample.wait);
        }
    }
}

/// What the pool's workers measured once they are gone, and the outcomes their threads
/// counted (in the state, under the lock).
#[derive(Default)]
pub(super) struct PoolMeter {
    pub(super) busy: Duration,
    pub(super) timings: Timings,
    pub(super) counts: Counts,
}

impl PoolMeter {
    /// Keeps what a retired worker measured; its busy time ends now.
    pub(super) fn retire(&mut self, worker: &mut WorkerMeter) {
        if worker.is_busy() {
            worker.idle_from(Instant::now());
        }
        self.busy = self.busy.saturating_add(worker.busy);
        if let Some(timings) = &worker.timings {
            self.timings.merge(timings);
        }
    }

    /// Keeps what a worker thread counted, once it has ended (nothing more is counted there).
    pub(super) fn thread_ended(&mut self, tally: &Tally) {
        tally.add_to(&mut self.counts);
    }
}

/// One task's times.
pub(super) struct Sample {
    run: Duration,
    wait: Duration,
}

/// Times a worker's tasks, with `record_timing` (on its thread, the lock released).
#[derive(Default)]
pub(super) struct Stopwatch {
    on: bool,
    /// Its runtime sends tasks ahead, which start in order, each once the one before it is
    /// done; otherwise (a worker thread with async exports) each starts as it is handed over,
    /// and they may end in any order.
    sends_ahead: bool,
    /// When the worker last handed tasks to its runtime.
    handed: Option<Instant>,
    /// When its last task finished, while it has been busy since: a task sent ahead to a
    /// child starts once the one before it is done.
    last_end: Option<Instant>,
}

impl Stopwatch {
    pub(super) fn new(on: bool, sends_ahead: bool) -> Self {
        Stopwatch {
            on,
            sends_ahead,
            ..Stopwatch::default()
        }
    }

    /// The worker is about to hand `jobs` to its runtime.
    #[inline]
    pub(super) fn handing(&mut self, jobs: &[JobRef]) {
        if self.on {
            let now = Instant::now();
            self.handed = Some(now);
            if !self.sends_ahead {
                for job in jobs {
                    job.mark_started(now);
                }
            }
        }
    }

    /// `job`, which its worker does not send ahead, has just settled out of order (an async
    /// task's future ended before the oldest's): its times, if timed.
    pub(super) fn settled(&self, job: &dyn Job) -> Option<Sample> {
        if !self.on {
            return None;
        }
        let submitted = job.submitted()?;
        let started = job
            .started()
            .map_or(submitted, |started| started.max(submitted));
        let end = Instant::now();
        Some(Sample {
            run: end.saturating_duration_since(started),
            wait: started.saturating_duration_since(submitted),
        })
    }

    /// The worker's oldest task, `job`, has just finished: its times, if timed.
    #[inline]
    pub(super) fn finished(&mut self, job: &dyn Job) -> Option<Sample> {
        if !self.on {
            return None;
        }
        if !self.sends_ahead {
            return self.settled(job);
        }
        let end = Instant::now();
        let started = self.handed.max(self.last_end);
        self.last_end = Some(end);
        let submitted = job.submitted()?;
        // A task starts once handed over and once the one before it is done, never before
        // it was submitted.
        let started = started.map_or(submitted, |started| started.max(submitted));
        Some(Sample {
            run: end.saturating_duration_since(started),
            wait: started.saturating_duration_since(submitted),
        })
    }

    /// The worker goes idle: the next task starts when it is handed over.
    pub(super) fn idle(&mut self) {
        self.last_end = None;
    }
}
