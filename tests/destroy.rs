//! Destroying a pool (spec §1.4, §2.8, §2.9, §2.14; scenarios 43, 44, 66, 67, 69, 73, 74,
//! 75): what happens to queued and running tasks, to the worker threads, to a stuck worker,
//! to a dropped pool, and when teardown runs.

mod common;

use std::cell::Cell;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{block_on, eventually, finish, live, Counter, Gate};
use tinypool::{worker, AbortController, Error, Exports, MaxQueue, Pool, RunOptions, Task};

fn next<T>(rx: &Receiver<T>) -> T {
    rx.recv_timeout(Duration::from_secs(30))
        .expect("no message within 30 s")
}

/// Blocks until the pool is destroyed (or the task aborted), as a well-behaved long function.
fn until_aborted() {
    while !worker::aborted() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A default export that reports it started and then runs until the pool is destroyed.
fn cooperative(started: &Counter) -> Exports {
    let started = started.clone();
    Exports::new().default(move |()| {
        started.bump();
        until_aborted();
    })
}

thread_local! {
    static RUNS: Cell<u32> = const { Cell::new(0) };
}

fn bump_runs() -> u32 {
    RUNS.with(|runs| {
        runs.set(runs.get() + 1);
        runs.get()
    })
}

/// Exports a default that counts this thread's runs (`"Output of task #n"`, as the fixture)
/// and a teardown that sends the worker's id and that count.
fn teardown_exports(tx: mpsc::Sender<(Option<usize>, u32)>) -> Exports {
    Exports::new()
        .default(|()| format!("Output of task #{}", bump_runs()))
        .export("teardown", move |()| {
            let runs = RUNS.with(Cell::get);
            tx.send((worker::id(), runs)).unwrap();
        })
}

/// Scenario 43: a running task fails with `Terminated`, its function sees `worker::aborted()`,
/// and destroy waits for the thread.
#[test]
fn destroy_while_running_fails_the_task_with_terminated() {
    const P: &str = "d-run";
    let started = Counter::new();
    let pool = Pool::builder()
        .exports(cooperative(&started))
        .max_threads(1)
        .thread_name(P)
        .build()
        .unwrap();
    let task = pool.run::<(), _>(());
    started.wait_for(1);

    let destroy = pool.destroy();
    assert!(task.is_finished(), "destroy fails running tasks at once");
    assert_eq!(finish(task), Err(Error::Terminated));
    assert_eq!(destroy.wait(), Ok(()));
    assert_eq!(live(P), 0);
    assert_eq!(pool.threads(), 0);
}

/// Scenario 44: destroying an isolated pool right after it was built, with a task submitted.
#[test]
fn destroy_right_after_build_fails_the_task_with_terminated() {
    const P: &str = "d-init";
    let started = Counter::new();
    let pool = Pool::builder()
        .exports(cooperative(&started))
        .isolate_workers(true)
        .thread_name(P)
        .build()
        .unwrap();
    let task = pool.run::<(), _>(());
    let destroy = pool.destroy();
    assert_eq!(finish(task), Err(Error::Terminated));
    assert_eq!(destroy.wait(), Ok(()));
    assert_eq!(live(P), 0);
}

/// Queued and running tasks all fail with `Terminated`, across several workers, and no
/// worker thread is left once destroy returned.
#[test]
fn destroy_fails_queued_and_running_tasks_and_joins_every_thread() {
    const P: &str = "d-all";
    let started = Counter::new();
    let pool = Pool::builder()
        .exports(cooperative(&started))
        .min_threads(2)
        .max_threads(2)
        .thread_name(P)
        .build()
        .unwrap();
    let tasks: Vec<Task<()>> = (0..6).map(|_| pool.run(())).collect();
    started.wait_for(2);
    assert_eq!(pool.queue_size(), 4);
    assert_eq!(live(P), 2);

    pool.destroy().wait().unwrap();
    assert_eq!(live(P), 0, "every worker thread is joined");
    assert_eq!(pool.threads(), 0);
    assert_eq!(pool.queue_size(), 0);
    for task in tasks {
        assert_eq!(finish(task), Err(Error::Terminated));
    }
    assert_eq!(started.get(), 2, "queued tasks never start");
}

/// Scenario 66, destroy part: the queued and the running task fail with `Terminated`.
#[test]
fn destroy_after_a_full_queue_fails_the_accepted_tasks() {
    let started = Counter::new();
    let pool = Pool::builder()
        .exports(cooperative(&started))
        .min_threads(0)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(2))
        .build()
        .unwrap();
    let mut accepted = Vec::new();
    for queued in 0..3 {
        accepted.push(pool.run::<(), _>(()));
        assert_eq!(pool.threads(), 1);
        assert_eq!(pool.queue_size(), queued);
    }
    assert_eq!(finish(pool.run::<(), _>(())), Err(Error::QueueFull));
    pool.destroy().wait().unwrap();
    for task in accepted {
        assert_eq!(finish(task), Err(Error::Terminated));
    }
}

/// Scenario 67, destroy part: with no queue, the second task is refused and the first one
/// fails with `Terminated` at destroy.
#[test]
fn destroy_without_a_queue_fails_the_running_task() {
    let started = Counter::new();
    let pool = Pool::builder()
        .exports(cooperative(&started))
        .min_threads(0)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .build()
        .unwrap();
    let first = pool.run::<(), _>(());
    assert_eq!(pool.threads(), 1);
    assert_eq!(pool.queue_size(), 0);
    assert_eq!(finish(pool.run::<(), _>(())), Err(Error::NoQueue));
    pool.destroy().wait().unwrap();
    assert_eq!(finish(first), Err(Error::Terminated));
}

/// Scenario 69, destroy part: two tasks sharing one worker (concurrency 2, no queue) both fail
/// with `Terminated`; the one still waiting in the worker's own queue never starts.
#[test]
fn destroy_fails_both_tasks_sharing_a_worker() {
    let started = Counter::new();
    let pool = Pool::builder()
        .exports(cooperative(&started))
        .min_threads(0)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let first = pool.run::<(), _>(());
    let second = pool.run::<(), _>(());
    assert_eq!(pool.threads(), 1);
    assert_eq!(pool.queue_size(), 0);
    started.wait_for(1);
    pool.destroy().wait().unwrap();
    assert_eq!(finish(first), Err(Error::Terminated));
    assert_eq!(finish(second), Err(Error::Terminated));
    assert_eq!(started.get(), 1);
}

/// `destroy` can be awaited without any async runtime, and resolves once the workers stopped.
#[test]
fn destroy_can_be_awaited() {
    let started = Counter::new();
    let pool = Pool::builder()
        .exports(cooperative(&started))
        .min_threads(1)
        .max_threads(2)
        .build()
        .unwrap();
    let tasks: Vec<Task<()>> = (0..3).map(|_| pool.run(())).collect();
    started.wait_for(2);
    assert_eq!(block_on(pool.destroy()), Ok(()));
    assert_eq!(pool.threads(), 0);
    for task in tasks {
        assert_eq!(block_on(task), Err(Error::Terminated));
    }
}

/// After destroy every run fails with `Terminated` at once, and starts no worker.
#[test]
fn run_after_destroy_fails_with_terminated() {
    const P: &str = "d-after";
    let pool = Pool::builder()
        .exports(Exports::new().default(|x: u32| x + 1))
        .min_threads(1)
        .max_threads(1)
        .thread_name(P)
        .build()
        .unwrap();
    assert_eq!(finish(pool.run::<u32, _>(1u32)), Ok(2));
    pool.destroy().wait().unwrap();

    let task = pool.run::<u32, _>(1u32);
    assert!(task.is_finished());
    assert_eq!(finish(task), Err(Error::Terminated));
    let controller = AbortController::new();
    let abortable = pool.run_with::<u32, _>(1u32, RunOptions::new().signal(controller.signal()));
    assert_eq!(finish(abortable), Err(Error::Terminated));
    assert_eq!(pool.threads(), 0);
    assert_eq!(pool.queue_size(), 0);
    assert_eq!(live(P), 0);
}

/// Destroying twice (or from two clones) is fine: both resolve `Ok`.
#[test]
fn destroy_twice_is_fine() {
    let started = Counter::new();
    let pool = Pool::builder()
        .exports(cooperative(&started))
        .max_threads(1)
        .build()
        .unwrap();
    let task = pool.run::<(), _>(());
    started.wait_for(1);
    let clone = pool.clone();
    let first = pool.destroy();
    let second = clone.destroy();
    assert_eq!(first.wait(), Ok(()));
    assert_eq!(second.wait(), Ok(()));
    assert_eq!(pool.destroy().wait(), Ok(()));
    assert_eq!(block_on(clone.destroy()), Ok(()));
    assert_eq!(finish(task), Err(Error::Terminated));
}

/// A function that ignores `worker::aborted()` makes destroy give up after
/// `terminate_timeout` and name that worker; every other worker is joined. Once the stuck
/// function returns, a second destroy joins its thread too.
#[test]
fn stuck_worker_makes_destroy_report_terminate_timeout() {
    const P: &str = "d-stuck";
    let (stuck, started, stuck_id) = (Gate::new(), Counter::new(), Arc::new(Mutex::new(None)));
    let exports = {
        let (stuck, stuck_id) = (stuck.clone(), stuck_id.clone());
        let (started1, started2) = (started.clone(), started.clone());
        Exports::new()
            .default(move |()| {
                *stuck_id.lock().unwrap() = worker::id();
                started1.bump();
                stuck.wait();
            })
            .export("cooperative", move |()| {
                started2.bump();
                until_aborted();
            })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(2)
        .max_threads(2)
        .terminate_timeout(Duration::from_millis(250))
        .thread_name(P)
        .build()
        .unwrap();
    let stuck_task = pool.run::<(), _>(());
    let fine_task = pool.run_with::<(), _>((), RunOptions::new().name("cooperative"));
    started.wait_for(2);
    let stuck_id = stuck_id.lock().unwrap().expect("ran in a worker");

    let result = pool.destroy().wait();
    assert_eq!(result, Err(Error::TerminateTimeout { worker: stuck_id }));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!("failed to terminate worker {stuck_id} within terminate_timeout")
    );
    assert_eq!(finish(stuck_task), Err(Error::Terminated));
    assert_eq!(finish(fine_task), Err(Error::Terminated));
    assert_eq!(live(P), 1, "only the stuck worker's thread is left");

    stuck.open();
    eventually("the stuck function returned and its thread ended", || {
        live(P) == 0
    });
    // Its thread is joined by the next destroy, which has nothing left to wait for.
    assert_eq!(pool.destroy().wait(), Ok(()));
}

/// Dropping the last `Pool` clone destroys the pool: its threads are gone when the drop
/// returns, and a pending `Task` (which does not keep the pool alive) fails with
/// `Terminated`.
#[test]
fn dropping_the_last_pool_clone_destroys_it() {
    const P: &str = "d-drop";
    let started = Counter::new();
    let pool = Pool::builder()
        .exports(cooperative(&started))
        .min_threads(1)
        .max_threads(1)
        .thread_name(P)
        .build()
        .unwrap();
    let running = pool.run::<(), _>(());
    let queued = pool.run::<(), _>(());
    started.wait_for(1);
    let clone = pool.clone();

    drop(pool);
    assert!(!running.is_finished(), "a clone still holds the pool");
    assert_eq!(clone.queue_size(), 1);
    assert_eq!(live(P), 1);

    drop(clone);
    assert_eq!(live(P), 0, "the drop joined the worker thread");
    assert_eq!(finish(running), Err(Error::Terminated));
    assert_eq!(finish(queued), Err(Error::Terminated));
    assert_eq!(started.get(), 1);
}

/// A function may build a pool of its own, run a task on it and destroy it.
#[test]
fn nested_pools_work() {
    const OUTER: &str = "d-outer";
    const INNER: &str = "d-inner";
    let exports = Exports::new().default(|x: u32| -> Result<u32, String> {
        let inner = Pool::builder()
            .exports(Exports::new().default(|x: u32| x * 2))
            .max_threads(1)
            .isolate_workers(true)
            .thread_name(INNER)
            .build()
            .map_err(|e| e.to_string())?;
        let doubled = inner.run::<u32, _>(x).wait().map_err(|e| e.to_string())?;
        inner.destroy().wait().map_err(|e| e.to_string())?;
        Ok(doubled + 1)
    });
    let pool = Pool::builder()
        .exports(exports)
        .max_threads(2)
        .isolate_workers(true)
        .thread_name(OUTER)
        .build()
        .unwrap();
    let tasks: Vec<Task<Result<u32, String>>> = (0..6u32).map(|x| pool.run(x)).collect();
    for (x, task) in (0..6u32).zip(tasks) {
        assert_eq!(finish(task), Ok(Ok(x * 2 + 1)));
    }
    pool.destroy().wait().unwrap();
    assert_eq!(live(OUTER), 0);
    assert_eq!(live(INNER), 0);
}

/// Scenario 73: in an isolated pool every worker runs one task, and its teardown runs when it
/// is removed after that task, seeing that task's thread-local state.
#[test]
fn isolated_pool_runs_teardown_once_per_task() {
    let (tx, rx) = mpsc::channel();
    let pool = Pool::builder()
        .exports(teardown_exports(tx))
        .teardown("teardown")
        .min_threads(1)
        .max_threads(1)
        .isolate_workers(true)
        .build()
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            finish(pool.run::<String, _>(())),
            Ok("Output of task #1".to_owned())
        );
        assert_eq!(
            next(&rx),
            (Some(1), 1),
            "the teardown of that task's worker"
        );
    }
    pool.destroy().wait().unwrap();
    // The replacement that was waiting for a sixth task is removed too; it ran no task.
    assert_eq!(rx.try_recv(), Ok((Some(1), 0)));
    assert!(rx.try_recv().is_err(), "exactly one teardown per removal");
}

/// Scenario 74: without isolation the teardown runs only at destroy, once per worker, and
/// sees the state the tasks left in the thread.
#[test]
fn non_isolated_pool_runs_teardown_once_per_worker_at_destroy() {
    let (tx, rx) = mpsc::channel();
    let pool = Pool::builder()
        .exports(teardown_exports(tx))
        .teardown("teardown")
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();
    for n in 1..=5 {
        assert_eq!(
            finish(pool.run::<String, _>(())),
            Ok(format!("Output of task #{n}"))
        );
    }
    assert!(rx.try_recv().is_err(), "no teardown while the worker lives");
    pool.destroy().wait().unwrap();
    assert_eq!(rx.try_recv(), Ok((Some(1), 5)));
    assert!(rx.try_recv().is_err(), "exactly one teardown per worker");
}

/// Every worker runs its teardown exactly once at destroy.
#[test]
fn destroy_runs_the_teardown_of_every_worker_once() {
    let (tx, rx) = mpsc::channel();
    let pool = Pool::builder()
        .exports(teardown_exports(tx))
        .teardown("teardown")
        .min_threads(2)
        .max_threads(2)
        .build()
        .unwrap();
    assert_eq!(pool.threads(), 2);
    pool.destroy().wait().unwrap();
    let mut ids: Vec<_> = rx.try_iter().collect();
    ids.sort();
    assert_eq!(ids, [(Some(1), 0), (Some(2), 0)]);
}

/// A worker that leaves after `idle_timeout` runs its teardown.
#[test]
fn idle_timeout_runs_the_teardown() {
    const P: &str = "d-idle";
    let (tx, rx) = mpsc::channel();
    let pool = Pool::builder()
        .exports(teardown_exports(tx))
        .teardown("teardown")
        .min_threads(0)
        .max_threads(1)
        .idle_timeout(Duration::ZERO)
        .thread_name(P)
        .build()
        .unwrap();
    assert_eq!(
        finish(pool.run::<String, _>(())),
        Ok("Output of task #1".to_owned())
    );
    assert_eq!(next(&rx), (Some(1), 1));
    eventually("the idle worker is gone", || {
        pool.threads() == 0 && live(P) == 0
    });
    pool.destroy().wait().unwrap();
    assert!(rx.try_recv().is_err(), "no worker was left to tear down");
}

/// `recycle_workers` runs the teardown of the workers it replaces (before its task resolves,
/// for idle ones), and the replacements run theirs at destroy.
#[test]
fn recycle_workers_runs_the_teardown() {
    let (tx, rx) = mpsc::channel();
    let pool = Pool::builder()
        .exports(teardown_exports(tx))
        .teardown("teardown")
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();
    assert_eq!(
        finish(pool.run::<String, _>(())),
        Ok("Output of task #1".to_owned())
    );
    assert_eq!(finish(pool.recycle_workers()), Ok(()));
    assert_eq!(rx.try_recv(), Ok((Some(1), 1)));
    assert_eq!(
        finish(pool.run::<String, _>(())),
        Ok("Output of task #1".to_owned()),
        "a fresh worker thread"
    );
    pool.destroy().wait().unwrap();
    assert_eq!(rx.try_recv(), Ok((Some(1), 1)));
    assert!(rx.try_recv().is_err());
}

/// An aborted worker runs its teardown once the aborted function returns.
#[test]
fn abort_runs_the_teardown_of_the_retired_worker() {
    let (tx, rx) = mpsc::channel();
    let started = Counter::new();
    let exports = {
        let started = started.clone();
        teardown_exports(tx).export("long", move |()| {
            bump_runs();
            started.bump();
            until_aborted();
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .teardown("teardown")
        .min_threads(0)
        .max_threads(1)
        .build()
        .unwrap();
    let controller = AbortController::new();
    let options = RunOptions::new().name("long").signal(controller.signal());
    let task = pool.run_with::<(), _>((), options);
    started.wait_for(1);
    controller.abort();
    assert_eq!(finish(task), Err(Error::Aborted { reason: None }));
    assert_eq!(next(&rx), (Some(1), 1));
    pool.destroy().wait().unwrap();
    assert!(rx.try_recv().is_err());
}

/// A teardown that panics is reported to `on_error` (once per worker), and destroy still
/// joins every worker and returns `Ok`.
#[test]
fn panicking_teardown_is_reported_and_destroy_still_returns() {
    const P: &str = "d-panic";
    let errors = Arc::new(Mutex::new(Vec::new()));
    let exports = Exports::new()
        .default(|x: u32| x)
        .export("teardown", |()| -> u32 { panic!("teardown failed") });
    let pool = Pool::builder()
        .exports(exports)
        .teardown("teardown")
        .min_threads(2)
        .max_threads(2)
        .thread_name(P)
        .on_error({
            let errors = errors.clone();
            move |error| errors.lock().unwrap().push(error)
        })
        .build()
        .unwrap();
    assert_eq!(finish(pool.run::<u32, _>(7u32)), Ok(7));
    assert_eq!(pool.destroy().wait(), Ok(()));
    assert_eq!(live(P), 0);
    let panicked = Error::Panicked {
        message: "teardown failed".to_owned(),
    };
    assert_eq!(*errors.lock().unwrap(), [panicked.clone(), panicked]);
}
