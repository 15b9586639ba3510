//! What the pool tells [`tracing`](https://docs.rs/tracing) subscribers, with the `tracing`
//! feature: a span per task, events for workers that start, exit and die. Without the feature
//! every function here is an empty inline one, so call sites stay one line and nothing of it
//! is compiled in.
//!
//! | what | level | name / message | fields |
//! |---|---|---|---|
//! | a task, while its worker sees it to its end | `DEBUG` | span `task` | `export`, `worker` (its id), `wait_us` (from submit to the start of the span), `run_us` (recorded at its end) |
//! | a worker started (setup done) | `DEBUG` | event `worker started` | `worker`, `pid` (a child's) |
//! | a worker stopped (teardown run, child reaped) | `DEBUG` | event `worker exited` | `worker`, `pid`, `exit` (the [`Exit`], displayed) |
//! | a worker died ([`Exit::Crashed`]) | `WARN` | event `worker died` | `worker`, `pid`, `exit`, `code`, `signal` |
//! | a fork server ([`Builder::fork_server`](crate::Builder::fork_server), Linux) did not become ready: the pool spawns its workers | `WARN` | event `fork server unusable` | `reason` (why, displayed: it refused, as a process of more than one thread; it did not answer; ...) |
//!
//! Every event has the target `tinypool`. In the child-process runtime the task's span is the
//! driver's: it covers the wait for the child's result, on the worker's thread of the pool's
//! process; in the threads runtime the function runs inside it, so its own events nest there.
//!
//! A worker that holds several tasks at once (async exports: a worker thread's executor, or a
//! child that runs them concurrently) gives each its own span ([`AsyncSpan`]), made once when
//! the task starts and closed when it ends: on a thread it is entered exactly while that
//! task's future is polled (and while the export makes it), so that an event of one task
//! never nests in another's; a concurrent child's tasks' spans are never entered (the driver
//! waits for them all at once), and only time them.

use crate::hooks::Exit;
use crate::task::Job;

/// A task's span, entered on the worker's thread until [`TaskSpan::done`].
#[cfg(feature = "tracing")]
pub(crate) struct TaskSpan {
    span: tracing::span::EnteredSpan,
    started: std::time::Instant,
}

/// Nothing, without the `tracing` feature.
#[cfg(not(feature = "tracing"))]
pub(crate) struct TaskSpan;

/// Enters the span of `job`, which worker `worker` is about to see to its end.
#[cfg(feature = "tracing")]
pub(crate) fn task(job: &dyn Job, worker: usize) -> TaskSpan {
    let (span, started) = new_span(job, worker);
    TaskSpan {
        span: span.entered(),
        started,
    }
}

/// The span of `job` on worker `worker`, not entered, and when it started.
#[cfg(feature = "tracing")]
fn new_span(job: &dyn Job, worker: usize) -> (tracing::Span, std::time::Instant) {
    let started = std::time::Instant::now();
    let waited = job
        .submitted()
        .map_or(std::time::Duration::ZERO, |submitted| {
            started.saturating_duration_since(submitted)
        });
    let span = tracing::debug_span!(
        target: "tinypool",
        "task",
        export = job.name(),
        worker,
        wait_us = micros(waited),
        run_us = tracing::field::Empty,
    );
    (span, started)
}

#[cfg(not(feature = "tracing"))]
#[inline(always)]
pub(crate) fn task(_job: &dyn Job, _worker: usize) -> TaskSpan {
    TaskSpan
}

impl TaskSpan {
    /// Records the run time and leaves the span.
    #[cfg(feature = "tracing")]
    pub(crate) fn done(self) {
        self.span.record("run_us", micros(self.started.elapsed()));
    }

    #[cfg(not(feature = "tracing"))]
    #[inline(always)]
    pub(crate) fn done(self) {}
}

/// The span of a task that runs beside others: made when it starts, entered only around
/// what is its own ([`AsyncSpan::enter`]), its run time recorded by [`AsyncSpan::done`], and
/// closed when dropped.
#[cfg(feature = "tracing")]
pub(crate) struct AsyncSpan {
    span: tracing::Span,
    started: std::time::Instant,
}

/// Nothing, without the `tracing` feature.
#[cfg(not(feature = "tracing"))]
pub(crate) struct AsyncSpan;

/// What [`AsyncSpan::enter`] returns without the `tracing` feature: nothing to leave.
#[cfg(not(feature = "tracing"))]
pub(crate) struct NotEntered;

/// The span of `job`, which worker `worker` starts now beside others; not entered.
#[cfg(feature = "tracing")]
pub(crate) fn task_async(job: &dyn Job, worker: usize) -> AsyncSpan {
    // Made as its worker starts it, where no other task's span is entered: it nests in none.
    let (span, started) = new_span(job, worker);
    AsyncSpan { span, started }
}

#[cfg(not(feature = "tracing"))]
#[inline(always)]
pub(crate) fn task_async(_job: &dyn Job, _worker: usize) -> AsyncSpan {
    AsyncSpan
}

impl AsyncSpan {
    /// Enters the span until the guard is dropped.
    #[cfg(feature = "tracing")]
    pub(crate) fn enter(&self) -> tracing::span::Entered<'_> {
        self.span.enter()
    }

    #[cfg(not(feature = "tracing"))]
    #[inline(always)]
    pub(crate) fn enter(&self) -> NotEntered {
        NotEntered
    }

    /// Records the run time (the task ended); the span closes when it is dropped.
    #[cfg(feature = "tracing")]
    pub(crate) fn done(&self) {
        self.span.record("run_us", micros(self.started.elapsed()));
    }

    #[cfg(not(feature = "tracing"))]
    #[inline(always)]
    pub(crate) fn done(&self) {}
}

#[cfg(feature = "tracing")]
fn micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// A worker started: its setup is done, its pid known.
#[cfg(feature = "tracing")]
pub(crate) fn worker_started(worker: usize, pid: Option<u32>) {
    tracing::debug!(target: "tinypool", worker, pid, "worker started");
}

#[cfg(not(feature = "tracing"))]
#[inline(always)]
pub(crate) fn worker_started(_worker: usize, _pid: Option<u32>) {}

/// A worker stopped, for `exit`; a crash is a warning.
#[cfg(feature = "tracing")]
pub(crate) fn worker_exited(worker: usize, pid: Option<u32>, exit: &Exit) {
    match *exit {
        Exit::Crashed { code, signal } => tracing::warn!(
            target: "tinypool",
            worker,
            pid,
            exit = %exit,
            code,
            signal,
            "worker died"
        ),
        _ => tracing::debug!(target: "tinypool", worker, pid, exit = %exit, "worker exited"),
    }
}

#[cfg(not(feature = "tracing"))]
#[inline(always)]
pub(crate) fn worker_exited(_worker: usize, _pid: Option<u32>, _exit: &Exit) {}

/// A pool's fork server did not become ready, for `reason`: its workers are spawned.
#[cfg(all(feature = "tracing", target_os = "linux"))]
pub(crate) fn fork_server_unusable(reason: &dyn std::fmt::Display) {
    tracing::warn!(target: "tinypool", reason = %reason, "fork server unusable");
}

#[cfg(all(not(feature = "tracing"), target_os = "linux"))]
#[inline(always)]
pub(crate) fn fork_server_unusable(_reason: &dyn std::fmt::Display) {}
