//! Aborting tasks with an `AbortController`, with worker threads only (spec §2.10, §2.19
//! item 4, scenarios 84, 89, 93): what in-process functions show (a function that ignores the
//! abort, `worker::aborted()`, the retired thread, the exact order tasks ran in) and the
//! reason in the error's message. The other scenarios (86-91) are tested for both runtimes in
//! `tests/runtimes.rs`.

mod common;

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, finish, live, Counter, Gate};
use tinypool::{worker, AbortController, Error, Exports, Pool, RunOptions, Task};

fn aborted(reason: Option<&str>) -> Error {
    Error::Aborted {
        reason: reason.map(str::to_owned),
    }
}

fn with_signal(controller: &AbortController) -> RunOptions {
    RunOptions::new().signal(controller.signal())
}

fn named_with_signal(name: &'static str, controller: &AbortController) -> RunOptions {
    RunOptions::new().name(name).signal(controller.signal())
}

/// Blocks until the running task is aborted (or the pool destroyed), as a well-behaved long
/// function does.
fn until_aborted() {
    while !worker::aborted() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

thread_local! {
    static RUNS: Cell<u32> = const { Cell::new(0) };
}

/// Counts the tasks this worker thread ran.
fn bump_runs() -> u32 {
    RUNS.with(|runs| {
        runs.set(runs.get() + 1);
        runs.get()
    })
}

/// Scenario 84: aborting a running task fails it at once, although the function (which
/// ignores the abort here) is still blocked.
#[test]
fn abort_while_running_fails_the_task_at_once() {
    let (started, release) = (Counter::new(), Gate::new());
    let exports = {
        let (started, release) = (started.clone(), release.clone());
        Exports::new().export_default(move |()| {
            started.bump();
            release.wait();
            1u32
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();
    let controller = AbortController::new();
    let task = pool.run_with::<u32, _>((), with_signal(&controller));
    started.wait_for(1);
    assert!(!task.is_finished());

    controller.abort();
    assert!(
        task.is_finished(),
        "an abort resolves the task synchronously"
    );
    let error = finish(task).unwrap_err();
    assert_eq!(error, aborted(None));
    assert_eq!(error.to_string(), "the task has been aborted");

    release.open();
    // The retired thread finishes once its function returns, and destroy joins it.
    pool.destroy().wait().unwrap();
}

/// A running abort retires the worker at once (with `min_threads` 0 nothing replaces it), the
/// function sees `worker::aborted()` and can return early, and the pool keeps serving on a
/// new worker while the old thread is still finishing.
#[test]
fn running_abort_retires_the_worker_and_the_function_sees_aborted() {
    const P: &str = "ab-ret";
    let (started, saw_abort, release) = (Counter::new(), Counter::new(), Gate::new());
    let exports = {
        let (started, saw_abort, release) = (started.clone(), saw_abort.clone(), release.clone());
        Exports::new()
            .export_default(move |()| {
                started.bump();
                until_aborted();
                saw_abort.bump();
                release.wait();
                1u32
            })
            .export("probe", |()| (worker::id(), worker::aborted()))
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(0)
        .max_threads(1)
        .thread_name(P)
        .build()
        .unwrap();
    let controller = AbortController::new();
    let task = pool.run_with::<u32, _>((), with_signal(&controller));
    started.wait_for(1);
    assert_eq!(pool.threads(), 1);

    controller.abort_with("enough");
    assert_eq!(pool.threads(), 0, "the aborted worker no longer counts");
    assert!(pool.workers().is_empty());
    assert_eq!(finish(task), Err(aborted(Some("enough"))));
    saw_abort.wait_for(1);
    // The old thread is still alive (its function waits at `release`), yet the pool, whose
    // max_threads is 1, starts a new worker for the next task; its id is free again and it
    // has not been aborted.
    let probe = pool.run_with::<(Option<usize>, bool), _>((), RunOptions::new().name("probe"));
    assert_eq!(finish(probe), Ok((Some(1), false)));
    assert!(live(P) >= 1);

    release.open();
    pool.destroy().wait().unwrap();
    assert_eq!(live(P), 0);
    assert_eq!(started.get(), 1);
}

/// With `min_threads` 1 the retired worker is replaced at once, and the replacement runs
/// tasks while the old thread is still stuck in the aborted function.
#[test]
fn running_abort_starts_a_replacement_up_to_min_threads() {
    const P: &str = "ab-repl";
    let (started, release) = (Counter::new(), Gate::new());
    let exports = {
        let (started, release) = (started.clone(), release.clone());
        Exports::new()
            .export_default(move |()| {
                started.bump();
                release.wait();
                bump_runs()
            })
            .export("runs", |()| bump_runs())
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .thread_name(P)
        .build()
        .unwrap();
    let controller = AbortController::new();
    let task = pool.run_with::<u32, _>((), with_signal(&controller));
    started.wait_for(1);

    controller.abort();
    assert_eq!(pool.threads(), 1, "a replacement counts at once");
    let workers = pool.workers();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].id, 1, "the retired worker's id is reused");
    assert_eq!(workers[0].running, 0);
    assert_eq!(finish(task), Err(aborted(None)));

    // A fresh thread: its thread-local count starts over.
    let next = pool.run_with::<u32, _>((), RunOptions::new().name("runs"));
    assert_eq!(finish(next), Ok(1));
    assert_eq!(
        live(P),
        2,
        "the replacement and the old thread, still in the aborted function"
    );

    release.open();
    eventually("the retired thread exits", || live(P) == 1);
    assert_eq!(pool.threads(), 1);
    pool.destroy().wait().unwrap();
    assert_eq!(live(P), 0);
}

/// Scenario 89: an abortable task waits until its worker is empty, so it runs only after
/// both tasks the worker had already taken.
#[test]
fn abortable_task_waits_for_an_empty_worker() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (gates, started) = ([Gate::new(), Gate::new()], Counter::new());
    let exports = {
        let (log, gates, started) = (log.clone(), gates.clone(), started.clone());
        Exports::new().export_default(move |i: usize| {
            log.lock().unwrap().push(format!("start {i}"));
            started.bump();
            if let Some(gate) = gates.get(i) {
                gate.wait();
            }
            log.lock().unwrap().push(format!("end {i}"));
            i
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let controller = AbortController::new();
    let a = pool.run::<usize, _>(0usize);
    let b = pool.run::<usize, _>(1usize);
    let c = pool.run_with::<usize, _>(2usize, with_signal(&controller));
    assert_eq!(pool.queue_size(), 1);
    assert_eq!(pool.workers()[0].running, 2);

    started.wait_for(1);
    gates[0].open();
    assert_eq!(finish(a), Ok(0));
    started.wait_for(2);
    // `b` runs; the worker has room for one more task, but not for the abortable one.
    assert_eq!(pool.queue_size(), 1);
    assert_eq!(pool.workers()[0].running, 1);
    assert!(!c.is_finished());

    gates[1].open();
    assert_eq!(finish(b), Ok(1));
    assert_eq!(finish(c), Ok(2));
    assert_eq!(
        *log.lock().unwrap(),
        ["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]
    );
    pool.destroy().wait().unwrap();
}

/// Scenario 93: the reason given to `abort_with` travels in `Error::Aborted`, whether the
/// signal fired before the run, while the task was queued or while it ran.
#[test]
fn abort_reason_travels_in_the_error() {
    let started = Counter::new();
    let exports = {
        let started = started.clone();
        Exports::new().export_default(move |()| {
            started.bump();
            until_aborted();
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();

    let pre = AbortController::new();
    pre.abort_with("before");
    assert_eq!(pre.signal().reason().as_deref(), Some("before"));
    let task = pool.run_with::<(), _>((), with_signal(&pre));
    let error = finish(task).unwrap_err();
    assert_eq!(error, aborted(Some("before")));
    assert_eq!(error.to_string(), "the task has been aborted: before");

    let running = AbortController::new();
    let queued = AbortController::new();
    let first = pool.run_with::<(), _>((), with_signal(&running));
    let second = pool.run_with::<(), _>((), with_signal(&queued));
    started.wait_for(1);
    assert_eq!(pool.queue_size(), 1);
    queued.abort_with("while queued");
    assert_eq!(finish(second), Err(aborted(Some("while queued"))));
    running.abort_with("while running");
    assert_eq!(finish(first), Err(aborted(Some("while running"))));

    // Firing again changes nothing: the first reason stays.
    running.abort_with("again");
    assert_eq!(running.signal().reason().as_deref(), Some("while running"));
    pool.destroy().wait().unwrap();
}

/// §2.19 item 4: an aborted task is never run later, whichever queue it waited in, even with
/// room for two tasks per worker.
#[test]
fn aborted_tasks_never_run_later() {
    let (release, started, victims) = (Gate::new(), Counter::new(), Counter::new());
    let exports = {
        let (release, started, victims) = (release.clone(), started.clone(), victims.clone());
        Exports::new()
            .export_default(move |x: u32| {
                started.bump();
                release.wait();
                x
            })
            .export("victim", move |()| victims.bump())
            .export("plain", |x: u32| x)
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let controller = AbortController::new();
    let running = pool.run::<u32, _>(1u32);
    let victims_tasks: Vec<Task<()>> = (0..3)
        .map(|_| pool.run_with::<(), _>((), named_with_signal("victim", &controller)))
        .collect();
    let after = pool.run_with::<u32, _>(9u32, RunOptions::new().name("plain"));
    started.wait_for(1);
    assert_eq!(pool.queue_size(), 4);

    controller.abort();
    assert_eq!(pool.queue_size(), 1);
    release.open();
    assert_eq!(finish(running), Ok(1));
    assert_eq!(finish(after), Ok(9));
    for task in victims_tasks {
        assert_eq!(finish(task), Err(aborted(None)));
    }
    assert_eq!(victims.get(), 0);
    pool.destroy().wait().unwrap();
    assert_eq!(victims.get(), 0);
}

/// One signal shared by many tasks, some running and some queued, aborts them all; a task
/// with another signal is untouched and runs on a worker started for it.
#[test]
fn one_signal_aborts_every_task_that_shares_it() {
    const P: &str = "ab-many";
    let (started, after_abort) = (Counter::new(), Counter::new());
    let exports = {
        let (started, after_abort) = (started.clone(), after_abort.clone());
        Exports::new()
            .export_default(move |()| {
                started.bump();
                until_aborted();
                after_abort.bump();
            })
            .export("other", |x: u32| x + 1)
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(0)
        .max_threads(2)
        .thread_name(P)
        .build()
        .unwrap();
    let shared = AbortController::new();
    let other = AbortController::new();
    let tasks: Vec<Task<()>> = (0..5)
        .map(|_| pool.run_with::<(), _>((), with_signal(&shared)))
        .collect();
    let survivor = pool.run_with::<u32, _>(1u32, named_with_signal("other", &other));
    started.wait_for(2);
    assert_eq!(pool.threads(), 2);
    assert_eq!(pool.queue_size(), 4);

    shared.abort_with("all of them");
    for task in &tasks {
        assert!(task.is_finished());
    }
    for task in tasks {
        assert_eq!(finish(task), Err(aborted(Some("all of them"))));
    }
    assert_eq!(finish(survivor), Ok(2));
    assert!(!other.signal().aborted());
    after_abort.wait_for(2);

    pool.destroy().wait().unwrap();
    assert_eq!(live(P), 0);
    assert_eq!(started.get(), 2, "the queued tasks never ran");
}
