//! `cancel_pending_tasks` (spec §1.4, scenario 72): queued tasks fail with `Cancelled` at once
//! and their channels close, tasks a worker took but did not start too; running ones finish;
//! with nothing queued nothing changes; afterwards the pool serves as before.

use tinypool::{AbortController, Error, RunOptions, Runtime, Task};

use crate::common::{finish, next};
use crate::{bodies, call, held, hold, loads, pool, sizes, start_gate, Body, Hold};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            cancel_fails_queued_tasks_only,
            cancel_fails_queued_tasks_and_closes_their_channels,
            cancel_also_fails_tasks_a_worker_took_but_did_not_start,
            cancel_with_nothing_queued_changes_nothing,
            pool_keeps_serving_after_a_cancel,
        ],
        threads: [],
    }
}

fn cancel_fails_queued_tasks_only(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let (running, port) = start_gate(&pool);
    let queued: Vec<Task<i32>> = (0..3).map(|i| pool.run((i, i))).collect();
    assert_eq!(pool.queue_size(), 3);
    pool.cancel_pending_tasks();
    assert_eq!(pool.queue_size(), 0);
    for task in queued {
        assert_eq!(finish(task), Err(Error::Cancelled));
    }
    port.send(5).unwrap();
    assert_eq!(finish(running).unwrap().unwrap().1, 5);
    assert_eq!(finish(pool.run::<i32, _>((2, 3))), Ok(5));
    pool.destroy().wait().unwrap();
}

/// Scenario 72: min 0, max 1: cancelling fails every queued task with `Cancelled` at once and
/// closes their channels; the running one finishes; none of the cancelled ones ever ran.
fn cancel_fails_queued_tasks_and_closes_their_channels(runtime: Runtime) {
    let pool = pool(runtime).min_threads(0).max_threads(1).build().unwrap();
    let (running, port) = hold(&pool, 0);
    let queued: Vec<Task<i32>> = (0..8).map(|i| pool.run((i, i))).collect();
    let (talk, talk_port) = hold(&pool, 9);
    assert_eq!(next(&port), Ok(0));
    assert_eq!(pool.queue_size(), 9);

    pool.cancel_pending_tasks();
    assert_eq!(pool.queue_size(), 0, "the queue empties at once");
    assert!(queued.iter().all(Task::is_finished), "synchronously");
    assert!(talk.is_finished());
    assert_eq!(talk_port.try_recv(), Err(Error::Disconnected));
    assert_eq!(talk_port.send(1), Err(Error::Disconnected));
    for task in queued {
        assert_eq!(finish(task), Err(Error::Cancelled));
    }
    let error = finish(talk).unwrap_err();
    assert_eq!(error, Error::Cancelled);
    assert_eq!(error.to_string(), "the task has been cancelled");

    assert!(!running.is_finished());
    port.send(3).unwrap();
    assert_eq!(held(running).3, 3);
    assert_eq!(pool.completed(), 1, "no cancelled task ran");
    assert_eq!(
        finish(pool.run::<i32, _>((2, 3))),
        Ok(5),
        "the pool serves on"
    );
    pool.destroy().wait().unwrap();
}

/// Tasks a worker took but did not start (concurrency 2) are cancelled too, and so are queued
/// abortable ones (a later abort changes nothing); none of them ever runs.
fn cancel_also_fails_tasks_a_worker_took_but_did_not_start(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let (running, port) = hold(&pool, 0);
    let in_worker_queue = call::<u32>(&pool, "counter");
    let queued = call::<u32>(&pool, "counter");
    let controller = AbortController::new();
    let options = RunOptions::new()
        .name("counter")
        .signal(controller.signal());
    let abortable = pool.run_with::<u32, _>((), options);
    assert_eq!(next(&port), Ok(0));
    assert_eq!(loads(&pool), [2]);
    assert_eq!(pool.queue_size(), 2);

    pool.cancel_pending_tasks();
    assert_eq!(pool.queue_size(), 0);
    assert_eq!(loads(&pool), [1]);
    controller.abort();
    assert_eq!(finish(in_worker_queue), Err(Error::Cancelled));
    assert_eq!(finish(queued), Err(Error::Cancelled));
    assert_eq!(finish(abortable), Err(Error::Cancelled));
    port.send(0).unwrap();
    held(running);
    assert_eq!(
        finish(call::<u32>(&pool, "counter")),
        Ok(0),
        "no cancelled task ran on the worker"
    );
    pool.destroy().wait().unwrap();
}

/// With nothing queued, cancelling changes nothing: an idle pool keeps its worker, a running
/// task finishes, and the pool serves on.
fn cancel_with_nothing_queued_changes_nothing(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    pool.cancel_pending_tasks();
    assert_eq!(pool.threads(), 1);
    let (running, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    pool.cancel_pending_tasks();
    assert!(!running.is_finished());
    assert_eq!(sizes(&pool), (1, 0));
    port.send(8).unwrap();
    assert_eq!(held(running).3, 8);
    pool.cancel_pending_tasks();
    assert_eq!(finish(pool.run::<i32, _>((4, 4))), Ok(8));
    pool.destroy().wait().unwrap();
}

/// After a cancel the pool takes and runs new tasks as before, queue included: with both
/// workers still busy, new tasks wait in the queue, then each runs once.
fn pool_keeps_serving_after_a_cancel(runtime: Runtime) {
    let pool = pool(runtime).min_threads(0).max_threads(2).build().unwrap();
    let first: Vec<Hold> = (0..5).map(|tag| hold(&pool, tag)).collect();
    for (tag, (_, port)) in (0..2).zip(&first) {
        assert_eq!(next(port), Ok(tag));
    }
    assert_eq!(pool.queue_size(), 3);
    pool.cancel_pending_tasks();
    assert_eq!(pool.queue_size(), 0);

    let second: Vec<Hold> = (10..15).map(|tag| hold(&pool, tag)).collect();
    assert_eq!(pool.queue_size(), 5, "the two workers are still busy");
    // Each task is let go once it runs: the first two, then the new ones as workers free up.
    for (_, port) in &first[..2] {
        port.send(0).unwrap();
    }
    for (tag, (_, port)) in (10..).zip(&second) {
        assert_eq!(next(port), Ok(tag));
        port.send(0).unwrap();
    }
    let tags = |holds: Vec<Hold>| -> Vec<Result<u32, Error>> {
        let tasks = holds.into_iter().map(|(task, _)| task);
        tasks
            .map(|task| finish(task).map(|held| held.expect("released").0))
            .collect()
    };
    assert_eq!(
        tags(first),
        [
            Ok(0),
            Ok(1),
            Err(Error::Cancelled),
            Err(Error::Cancelled),
            Err(Error::Cancelled)
        ]
    );
    assert_eq!(tags(second), [Ok(10), Ok(11), Ok(12), Ok(13), Ok(14)]);
    assert_eq!(pool.completed(), 7);
    pool.destroy().wait().unwrap();
}
