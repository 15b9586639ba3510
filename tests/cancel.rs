//! `cancel_pending_tasks` (spec §1.4, scenario 72): tasks no worker has started fail with
//! `Cancelled`, running tasks finish, and the pool keeps serving.

mod common;

use common::{finish, Counter, Gate};
use tinypool::{AbortController, Error, Exports, Pool, RunOptions, Task};

/// A default export that reports it started, blocks until `gate` opens and returns its
/// argument.
fn blocking(gate: &Gate, started: &Counter) -> Exports {
    let (gate, started) = (gate.clone(), started.clone());
    Exports::new().default(move |x: u32| {
        started.bump();
        gate.wait();
        x
    })
}

/// Scenario 72: min 0, max 1, ten blocking tasks. Cancelling empties the queue at once and
/// fails the nine queued tasks with `Cancelled`; the running one finishes with its value.
#[test]
fn cancel_pending_tasks_fails_queued_tasks_and_lets_the_running_one_finish() {
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .min_threads(0)
        .max_threads(1)
        .build()
        .unwrap();
    let mut tasks: Vec<Task<u32>> = (0..10u32).map(|x| pool.run(x)).collect();
    started.wait_for(1);
    assert_eq!(pool.queue_size(), 9);

    pool.cancel_pending_tasks();
    assert_eq!(pool.queue_size(), 0, "the queue empties at once");
    let running = tasks.remove(0);
    assert!(!running.is_finished());
    for task in &tasks {
        assert!(task.is_finished(), "cancelled tasks fail synchronously");
    }
    let errors: Vec<Error> = tasks.into_iter().map(|t| finish(t).unwrap_err()).collect();
    assert_eq!(errors, vec![Error::Cancelled; 9]);
    assert_eq!(errors[0].to_string(), "the task has been cancelled");

    gate.open();
    assert_eq!(finish(running), Ok(0));
    assert_eq!(started.get(), 1, "no cancelled task ever starts");
    assert_eq!(pool.completed(), 1);
    pool.destroy().wait().unwrap();
}

/// Tasks waiting in a worker's own queue (concurrency 2) have not started either: they are
/// cancelled too, and so are queued abortable tasks (with `Cancelled`, which a later abort
/// does not change).
#[test]
fn cancel_pending_tasks_also_cancels_tasks_a_worker_took_but_did_not_start() {
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let controller = AbortController::new();
    let running = pool.run::<u32, _>(1u32);
    let in_worker_queue = pool.run::<u32, _>(2u32);
    let queued = pool.run::<u32, _>(3u32);
    let abortable = pool.run_with::<u32, _>(4u32, RunOptions::new().signal(controller.signal()));
    started.wait_for(1);
    assert_eq!(pool.workers()[0].running, 2);
    assert_eq!(pool.queue_size(), 2);

    pool.cancel_pending_tasks();
    assert_eq!(pool.queue_size(), 0);
    assert_eq!(pool.workers()[0].running, 1);
    controller.abort();
    assert_eq!(finish(in_worker_queue), Err(Error::Cancelled));
    assert_eq!(finish(queued), Err(Error::Cancelled));
    assert_eq!(finish(abortable), Err(Error::Cancelled));

    gate.open();
    assert_eq!(finish(running), Ok(1));
    assert_eq!(started.get(), 1);
    pool.destroy().wait().unwrap();
}

/// With nothing queued, cancelling changes nothing: a running task finishes, an idle pool
/// keeps its workers.
#[test]
fn cancel_with_nothing_queued_is_a_no_op() {
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();
    pool.cancel_pending_tasks();
    assert_eq!(pool.threads(), 1);

    let running = pool.run::<u32, _>(7u32);
    started.wait_for(1);
    pool.cancel_pending_tasks();
    assert!(!running.is_finished());
    assert_eq!(pool.threads(), 1);
    gate.open();
    assert_eq!(finish(running), Ok(7));

    pool.cancel_pending_tasks();
    assert_eq!(finish(pool.run::<u32, _>(8u32)), Ok(8));
    pool.destroy().wait().unwrap();
}

/// After a cancel the pool takes and runs new tasks as before, queue included.
#[test]
fn pool_keeps_serving_after_a_cancel() {
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .min_threads(0)
        .max_threads(2)
        .build()
        .unwrap();
    let first: Vec<Task<u32>> = (0..5u32).map(|x| pool.run(x)).collect();
    started.wait_for(2);
    assert_eq!(pool.queue_size(), 3);
    pool.cancel_pending_tasks();
    assert_eq!(pool.queue_size(), 0);

    let second: Vec<Task<u32>> = (10..15u32).map(|x| pool.run(x)).collect();
    assert_eq!(pool.queue_size(), 5, "the two workers are still busy");
    gate.open();
    let results: Vec<Result<u32, Error>> = first.into_iter().map(finish).collect();
    assert_eq!(
        results,
        [
            Ok(0),
            Ok(1),
            Err(Error::Cancelled),
            Err(Error::Cancelled),
            Err(Error::Cancelled)
        ]
    );
    let results: Vec<Result<u32, Error>> = second.into_iter().map(finish).collect();
    assert_eq!(results, [Ok(10), Ok(11), Ok(12), Ok(13), Ok(14)]);
    assert_eq!(started.get(), 7);
    pool.destroy().wait().unwrap();
}
