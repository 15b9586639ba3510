//! `Pool::stats`: every resolved task counts exactly once, as succeeded or as failed with its
//! error's kind, wherever it failed; per-worker tasks; with `record_timing`, run and wait
//! times, busy time and utilization (between 0 and 1), empty or zero without. Timings are only
//! ever given lower bounds: a loaded machine makes everything slower, never faster.

use std::collections::BTreeMap;
use std::time::Duration;

use tinypool::{
    AbortController, Error, ErrorKind, MaxQueue, RunOptions, Runtime, Stats, Summary, Task,
};

use crate::common::{finish, next};
use crate::{bodies, call, held, hold, pool, Body};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            stats_add_up_to_the_tasks_run,
            failures_are_counted_by_kind_wherever_they_happen,
            a_long_task_counts_its_run_and_busy_time,
            without_timing_counts_still_add_up_and_summaries_are_empty,
            every_task_counts_once_when_aborts_and_destroy_race_it,
        ],
        threads: [],
    }
}

/// `min ≤ p50 ≤ p90 ≤ p99 ≤ max`, the mean within `[min, max]`, and `count` as expected.
#[track_caller]
fn check_summary(summary: &Summary, count: u64) {
    assert_eq!(summary.count, count, "{summary:?}");
    assert!(summary.min <= summary.p50, "{summary:?}");
    assert!(summary.p50 <= summary.p90, "{summary:?}");
    assert!(summary.p90 <= summary.p99, "{summary:?}");
    assert!(summary.p99 <= summary.max, "{summary:?}");
    assert!(
        summary.min <= summary.mean && summary.mean <= summary.max,
        "{summary:?}"
    );
}

#[track_caller]
fn check_utilization(stats: &Stats) {
    assert!(
        (0.0..=1.0).contains(&stats.utilization),
        "utilization {}",
        stats.utilization
    );
}

/// N tasks on two workers that stay: succeeded N, none failed, both summaries of N, the
/// workers' tasks adding up to N.
fn stats_add_up_to_the_tasks_run(runtime: Runtime) {
    const N: u64 = 200;
    let pool = pool(runtime)
        .min_threads(2)
        .max_threads(2)
        .record_timing(true)
        .build()
        .unwrap();
    let before = pool.stats();
    assert_eq!((before.succeeded(), before.failed_total()), (0, 0));
    assert_eq!(before.run_time, Summary::default());
    check_utilization(&before);

    let tasks: Vec<Task<i32>> = (0..N as i32).map(|n| pool.run((n, 1))).collect();
    for (n, task) in (0..).zip(tasks) {
        assert_eq!(finish(task), Ok(n + 1));
    }
    let stats = pool.stats();
    assert_eq!(stats.succeeded(), N);
    assert_eq!(stats.failed_total(), 0);
    assert_eq!(stats.failures().count(), 0);
    assert_eq!(stats.resolved(), N);
    assert_eq!(pool.completed(), N);
    check_summary(&stats.run_time, N);
    check_summary(&stats.wait_time, N);
    check_utilization(&stats);
    assert!(stats.duration > Duration::ZERO);
    assert!(stats.busy_time > Duration::ZERO);

    let ids: Vec<usize> = stats.workers.iter().map(|worker| worker.id).collect();
    assert_eq!(ids, [1, 2]);
    let ran: u64 = stats.workers.iter().map(|worker| worker.tasks).sum();
    assert_eq!(ran, N, "{:?}", stats.workers);
    let busy = stats
        .workers
        .iter()
        .map(|worker| worker.busy_time)
        .sum::<Duration>();
    assert_eq!(busy, stats.busy_time, "no worker gone: the total is theirs");
    pool.destroy().wait().unwrap();
}

/// One task of each kind of failure the pool has, on one worker with a queue of one: each is
/// counted under its kind, and the values under succeeded.
fn failures_are_counted_by_kind_wherever_they_happen(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(1))
        .build()
        .unwrap();
    // Staged by the worker.
    let panic = pool.run_with::<i32, _>("boom".to_owned(), RunOptions::new().name("panic"));
    assert!(matches!(finish(panic), Err(Error::Panicked { .. })));
    let unknown = call::<i32>(&pool, "no_such_export");
    assert_eq!(
        finish(unknown).unwrap_err().kind(),
        ErrorKind::NoSuchFunction
    );
    let mismatch = pool.run::<i64, _>((1, 2));
    assert_eq!(
        finish(mismatch).unwrap_err().kind(),
        ErrorKind::TypeMismatch
    );

    // Failed by the scheduler: a full queue, then a cancel of what waits in it.
    let (running, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    let queued = pool.run::<i32, _>((1, 1));
    let refused = pool.run::<i32, _>((1, 1));
    assert_eq!(finish(refused), Err(Error::QueueFull));
    pool.cancel_pending_tasks();
    assert_eq!(finish(queued), Err(Error::Cancelled));
    port.send(0).unwrap();
    held(running);

    // Aborted while running, and before it was even submitted.
    let controller = AbortController::new();
    let (started, theirs) = tinypool::channel::<u32>();
    let options = RunOptions::new()
        .name("spin")
        .signal(controller.signal())
        .channel(theirs);
    let spinning = pool.run_with::<(), _>((), options);
    assert_eq!(next(&started), Ok(0));
    controller.abort();
    assert_eq!(finish(spinning).unwrap_err().kind(), ErrorKind::Aborted);
    let options = RunOptions::new().signal(controller.signal());
    let pre_aborted = pool.run_with::<i32, _>((1, 1), options);
    assert_eq!(finish(pre_aborted).unwrap_err().kind(), ErrorKind::Aborted);
    assert_eq!(finish(pool.run::<i32, _>((2, 3))), Ok(5));

    // Refused by a closed pool, then by a destroyed one.
    let _closing = pool.close();
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::Closed));
    pool.destroy().wait().unwrap();
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::Terminated));

    let stats = pool.stats();
    let failures: BTreeMap<ErrorKind, u64> = stats.failures().collect();
    let expected = BTreeMap::from([
        (ErrorKind::QueueFull, 1),
        (ErrorKind::Aborted, 2),
        (ErrorKind::Cancelled, 1),
        (ErrorKind::Terminated, 1),
        (ErrorKind::Closed, 1),
        (ErrorKind::Panicked, 1),
        (ErrorKind::NoSuchFunction, 1),
        (ErrorKind::TypeMismatch, 1),
    ]);
    assert_eq!(failures, expected, "{stats:?}");
    assert_eq!(stats.failed(ErrorKind::Panicked), 1);
    assert_eq!(stats.failed(ErrorKind::WorkerExited), 0);
    assert_eq!(stats.failed_total(), 9);
    assert_eq!(stats.succeeded(), 2, "the held task and the sum");
    assert_eq!(stats.resolved(), 11, "every task submitted");
    check_utilization(&stats);
}

/// A task that sleeps 30 ms runs at least 30 ms, and keeps its worker busy that long.
fn a_long_task_counts_its_run_and_busy_time(runtime: Runtime) {
    const NAP: Duration = Duration::from_millis(30);
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .record_timing(true)
        .build()
        .unwrap();
    let nap = pool.run_with::<u64, _>(30u64, RunOptions::new().name("sleep_ms"));
    assert_eq!(finish(nap), Ok(30));
    let stats = pool.stats();
    assert_eq!(stats.succeeded(), 1);
    check_summary(&stats.run_time, 1);
    check_summary(&stats.wait_time, 1);
    assert!(stats.run_time.min >= NAP, "{:?}", stats.run_time);
    assert!(stats.busy_time >= NAP, "{:?}", stats.busy_time);
    assert_eq!(stats.workers.len(), 1);
    assert!(stats.workers[0].busy_time >= NAP, "{:?}", stats.workers);
    assert_eq!(stats.workers[0].tasks, 1);
    assert!(stats.utilization > 0.0);
    check_utilization(&stats);
    // Later snapshots never go back.
    let later = pool.stats();
    assert!(later.busy_time >= stats.busy_time && later.duration >= stats.duration);
    pool.destroy().wait().unwrap();
    let after = pool.stats();
    assert!(
        after.busy_time >= stats.busy_time,
        "a retired worker's time stays"
    );
    assert!(after.workers.is_empty());
    assert_eq!(after.run_time, stats.run_time);
}

/// The default, no timing: outcomes and per-worker tasks are there; the summaries are empty,
/// busy time and utilization zero.
fn without_timing_counts_still_add_up_and_summaries_are_empty(runtime: Runtime) {
    const N: u64 = 50;
    let pool = pool(runtime).min_threads(2).max_threads(2).build().unwrap();
    let tasks: Vec<Task<i32>> = (0..N as i32).map(|n| pool.run((n, n))).collect();
    let panic = pool.run_with::<i32, _>("boom".to_owned(), RunOptions::new().name("panic"));
    for task in tasks {
        finish(task).unwrap();
    }
    assert!(finish(panic).is_err());
    let stats = pool.stats();
    assert_eq!(stats.succeeded(), N);
    assert_eq!(stats.failed(ErrorKind::Panicked), 1);
    assert_eq!(stats.resolved(), N + 1);
    assert_eq!(stats.run_time, Summary::default());
    assert_eq!(stats.wait_time.count, 0);
    let ran: u64 = stats.workers.iter().map(|worker| worker.tasks).sum();
    assert_eq!(ran, N + 1, "a panicked task ran too");
    assert_eq!(stats.busy_time, Duration::ZERO);
    assert_eq!(stats.utilization, 0.0);
    pool.destroy().wait().unwrap();
}

/// Tasks aborted in the queue, while running, or after they finished, and a destroy while
/// others run and publish: whoever resolves a task counts it, once. The counts equal what the
/// callers got, kind by kind.
fn every_task_counts_once_when_aborts_and_destroy_race_it(runtime: Runtime) {
    const N: usize = 120;
    let pool = pool(runtime)
        .min_threads(2)
        .max_threads(2)
        .record_timing(true)
        .build()
        .unwrap();
    let mut tasks: Vec<Task<i32>> = Vec::with_capacity(N);
    let mut controllers = Vec::new();
    for n in 0..N as i32 {
        if n % 3 == 0 {
            let controller = AbortController::new();
            tasks.push(pool.run_with((n, n), RunOptions::new().signal(controller.signal())));
            controllers.push(controller);
        } else {
            tasks.push(pool.run((n, n)));
        }
        if n % 5 == 0 {
            if let Some(controller) = controllers.pop() {
                controller.abort();
            }
        }
    }
    for controller in controllers.drain(..) {
        controller.abort();
    }
    let destroyed = pool.destroy();
    let mut got: BTreeMap<Option<ErrorKind>, u64> = BTreeMap::new();
    for task in tasks {
        let kind = finish(task).err().map(|error| error.kind());
        *got.entry(kind).or_default() += 1;
    }
    // A thread cannot be stopped, but these tasks return at once.
    destroyed.wait().unwrap();
    let stats = pool.stats();
    let mut counted: BTreeMap<Option<ErrorKind>, u64> = stats
        .failures()
        .map(|(kind, count)| (Some(kind), count))
        .collect();
    if stats.succeeded() > 0 {
        counted.insert(None, stats.succeeded());
    }
    assert_eq!(counted, got, "{stats:?}");
    assert_eq!(stats.resolved(), N as u64);
    assert!(stats.run_time.count <= N as u64);
    check_utilization(&stats);
}
