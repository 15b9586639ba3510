//! Aborting tasks with an `AbortController` (spec §2.10, §2.19 item 4, scenarios 84, 86-91,
//! 93): in the queue and while running, a signal fired before the run or after the result, one
//! signal shared by many tasks; an abortable task never shares a worker; a running abort
//! retires its worker at once. Threads only: what in-process functions show (a function that
//! ignores the abort, `worker::aborted()`, the retired thread still finishing, the exact order
//! tasks ran in) and the reason in the error's message.

use std::cell::Cell;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tinypool::{worker, AbortController, Error, Exports, Pool, RunOptions, Runtime, Task};

use crate::common::{
    eventually, finish, next,
    procfs::{self, live},
    Counter, Gate,
};
use crate::{
    aborted, bodies, call, held, hold, hold_with, loads, one_thread, pids, pool, prefix, sizes,
    until_aborted, Body, Held, Hold,
};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            abort_in_the_queue_and_while_running,
            an_aborted_queued_task_never_runs,
            an_abortable_task_never_shares_a_busy_worker,
            a_task_behind_a_running_abortable_one_waits_for_the_abort,
            an_abortable_task_waits_for_an_empty_worker,
            destroy_fails_a_queued_abortable_task_with_terminated,
            a_pre_aborted_signal_fails_at_once_and_queues_nothing,
            an_abort_after_the_task_finished_keeps_the_result_and_the_worker,
            one_signal_aborts_every_task_that_shares_it,
            a_running_abort_replaces_the_worker_at_once,
            an_abort_of_a_task_handed_to_a_starting_worker_fails_it,
            an_aborted_running_tasks_argument_is_dropped_outside_the_pools_lock,
        ],
        threads: [
            abort_while_running_fails_the_task_at_once,
            running_abort_retires_the_worker_and_the_function_sees_aborted,
            running_abort_starts_a_replacement_up_to_min_threads,
            an_abortable_task_starts_once_the_tasks_before_it_ended,
            abort_reason_travels_in_the_error,
            aborted_tasks_never_run_later,
            every_function_sharing_an_aborted_signal_returns_and_the_queued_ones_never_run,
        ],
    }
}

fn abort_in_the_queue_and_while_running(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let before: String = finish(call(&pool, "identity")).unwrap();
    let running = AbortController::new();
    let (started, theirs) = tinypool::channel::<u32>();
    let spinning = pool.run_with::<(), _>(
        (),
        RunOptions::new()
            .name("spin")
            .signal(running.signal())
            .channel(theirs),
    );
    assert_eq!(next(&started), Ok(0), "the spinning task started");
    let queued = AbortController::new();
    let waiting = pool.run_with::<i32, _>((1, 1), RunOptions::new().signal(queued.signal()));
    queued.abort_with("not needed");
    assert_eq!(
        finish(waiting),
        Err(Error::Aborted {
            reason: Some("not needed".into())
        })
    );
    running.abort();
    assert_eq!(finish(spinning), Err(Error::Aborted { reason: None }));
    assert_eq!(
        finish(pool.run::<i32, _>((1, 1))),
        Ok(2),
        "the pool serves on"
    );
    let after: String = finish(call(&pool, "identity")).unwrap();
    assert_ne!(before, after, "the aborted worker was replaced");
    pool.destroy().wait().unwrap();
}

/// Scenario 86: aborting a queued task removes it: it is not counted and never runs (had it
/// run on the one worker, the next "counter" would return 1).
fn an_aborted_queued_task_never_runs(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (first, port) = hold(&pool, 0);
    let controller = AbortController::new();
    let options = RunOptions::new()
        .name("counter")
        .signal(controller.signal());
    let victim = pool.run_with::<u32, _>((), options);
    assert_eq!(pool.queue_size(), 1);

    controller.abort();
    assert!(
        victim.is_finished(),
        "an abort resolves the task synchronously"
    );
    assert_eq!(pool.queue_size(), 0);
    assert_eq!(finish(victim), Err(aborted(None)));
    assert!(!first.is_finished());
    assert_eq!(next(&port), Ok(0));
    port.send(7).unwrap();
    assert_eq!(held(first).3, 7);
    assert_eq!(
        finish(call::<u32>(&pool, "counter")),
        Ok(0),
        "the aborted task never ran"
    );
    assert_eq!(pool.completed(), 2);
    pool.destroy().wait().unwrap();
}

/// Scenario 87: with concurrency 2 a plain task shares a busy worker, an abortable one never
/// does: it waits in the queue although the worker has room.
fn an_abortable_task_never_shares_a_busy_worker(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let multiply = || RunOptions::new().name("multiply");
    let (blocking, port) = hold(&pool, 0);
    let shared = pool.run_with::<i32, _>((2, 10), multiply());
    assert_eq!(pool.queue_size(), 0, "a plain task shares the worker");
    assert_eq!(loads(&pool), [2]);
    assert_eq!(next(&port), Ok(0));
    port.send(0).unwrap();
    held(blocking);
    assert_eq!(finish(shared), Ok(20));

    let (blocking, port) = hold(&pool, 1);
    let controller = AbortController::new();
    let abortable = pool.run_with::<i32, _>((3, 10), multiply().signal(controller.signal()));
    assert_eq!(pool.queue_size(), 1, "an abortable task never shares");
    assert_eq!(loads(&pool), [1]);
    assert_eq!(next(&port), Ok(1));
    port.send(0).unwrap();
    held(blocking);
    assert_eq!(finish(abortable), Ok(30));
    pool.destroy().wait().unwrap();
}

/// Scenario 88: a task behind a running abortable one waits (although the worker has room)
/// and runs once that one is aborted, on a worker started for it.
fn a_task_behind_a_running_abortable_one_waits_for_the_abort(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(0)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let controller = AbortController::new();
    let (abortable, port) = hold_with(&pool, 0, Some(controller.signal()));
    assert_eq!(next(&port), Ok(0));
    let answer = pool.run_with::<i32, _>((6, 7), RunOptions::new().name("multiply"));
    assert_eq!(pool.queue_size(), 1);
    assert_eq!(loads(&pool), [1]);

    controller.abort();
    assert_eq!(finish(abortable), Err(aborted(None)));
    assert_eq!(finish(answer), Ok(42));
    pool.destroy().wait().unwrap();
}

/// Scenario 89: an abortable task waits until its worker is empty, so it runs only after both
/// tasks the worker had already taken.
fn an_abortable_task_waits_for_an_empty_worker(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let (a, a_port) = hold(&pool, 0);
    let (b, b_port) = hold(&pool, 1);
    let controller = AbortController::new();
    let options = RunOptions::new()
        .name("counter")
        .signal(controller.signal());
    let c = pool.run_with::<u32, _>((), options);
    assert_eq!(pool.queue_size(), 1);
    assert_eq!(loads(&pool), [2]);

    assert_eq!(next(&a_port), Ok(0));
    a_port.send(0).unwrap();
    held(a);
    assert_eq!(next(&b_port), Ok(1));
    // `b` runs; the worker has room for one more task, but not for the abortable one.
    assert_eq!(pool.queue_size(), 1);
    assert_eq!(loads(&pool), [1]);
    assert!(!c.is_finished());
    b_port.send(0).unwrap();
    held(b);
    assert_eq!(finish(c), Ok(0));
    pool.destroy().wait().unwrap();
}

/// Scenario 90: destroy fails a queued abortable task with `Terminated`, and a later abort
/// does not change that; the queued tasks never start.
fn destroy_fails_a_queued_abortable_task_with_terminated(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (running, port) = hold(&pool, 0);
    let (queued, queued_port) = hold(&pool, 1);
    let controller = AbortController::new();
    let (abortable, abortable_port) = hold_with(&pool, 2, Some(controller.signal()));
    assert_eq!(next(&port), Ok(0));
    assert_eq!(pool.queue_size(), 2);

    let destroy = pool.destroy();
    controller.abort();
    assert_eq!(finish(running), Err(Error::Terminated));
    destroy.wait().unwrap();
    // Checked while the task handles live (dropping one drops its channel too).
    for port in [&queued_port, &abortable_port] {
        assert_eq!(next(port), Err(Error::Disconnected), "never started");
    }
    assert_eq!(finish(queued), Err(Error::Terminated));
    assert_eq!(finish(abortable), Err(Error::Terminated));
}

/// Scenario 91: a task whose signal already fired fails at once: nothing is queued, no
/// worker starts, and its channel is closed without being handed over.
fn a_pre_aborted_signal_fails_at_once_and_queues_nothing(runtime: Runtime) {
    let prefix = prefix("rt-pre", runtime);
    let pool = pool(runtime)
        .min_threads(0)
        .max_threads(1)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let controller = AbortController::new();
    controller.abort_with("before");
    let (port, theirs) = tinypool::channel::<u32>();
    let options = RunOptions::new()
        .name("hold")
        .signal(controller.signal())
        .channel(theirs);
    let task = pool.run_with::<Result<Held, String>, _>(0u32, options);
    assert!(task.is_finished(), "a pre-aborted task fails synchronously");
    assert_eq!(sizes(&pool), (0, 0), "no worker was started for it");
    assert_eq!(live(&prefix), 0);
    assert_eq!(finish(task), Err(aborted(Some("before"))));
    assert_eq!(port.recv(), Err(Error::Disconnected));
    assert_eq!(port.send(1), Err(Error::Disconnected));

    // The same on a busy pool with a queue: the task does not join it.
    let (running, port) = hold(&pool, 0);
    let queued = pool.run::<i32, _>((1, 1));
    assert_eq!(next(&port), Ok(0));
    assert_eq!(pool.queue_size(), 1);
    let pre = pool.run_with::<i32, _>((1, 1), RunOptions::new().signal(controller.signal()));
    assert!(pre.is_finished());
    assert_eq!(pool.queue_size(), 1);
    assert_eq!(finish(pre), Err(aborted(Some("before"))));
    port.send(0).unwrap();
    held(running);
    assert_eq!(finish(queued), Ok(2));
    assert_eq!(pool.completed(), 2);
    pool.destroy().wait().unwrap();
}

/// An abort after the task finished keeps its result and leaves its worker alone: the
/// worker's state carries on.
fn an_abort_after_the_task_finished_keeps_the_result_and_the_worker(runtime: Runtime) {
    let prefix = prefix("rt-late", runtime);
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let counter = |signal: &AbortController| {
        let options = RunOptions::new().name("counter").signal(signal.signal());
        pool.run_with::<u32, _>((), options)
    };
    // Aborted after its result was read.
    let controller = AbortController::new();
    assert_eq!(finish(counter(&controller)), Ok(0));
    controller.abort();

    // Aborted after it finished but before its result was read: one worker runs tasks in
    // order, so once the next task resolved, this one had resolved too.
    let late = AbortController::new();
    let task = counter(&late);
    assert_eq!(finish(call::<u32>(&pool, "counter")), Ok(2));
    assert!(task.is_finished());
    late.abort_with("too late");
    assert_eq!(finish(task), Ok(1));

    assert_eq!(pool.threads(), 1);
    assert_eq!(
        finish(call::<u32>(&pool, "counter")),
        Ok(3),
        "the same worker"
    );
    assert_eq!(live(&prefix), 1);
    pool.destroy().wait().unwrap();
}

/// One signal shared by running and queued tasks aborts them all (the queued ones never
/// start); a task with another signal is untouched and runs on a worker started for it.
fn one_signal_aborts_every_task_that_shares_it(runtime: Runtime) {
    let pool = pool(runtime).min_threads(0).max_threads(2).build().unwrap();
    let (shared, other) = (AbortController::new(), AbortController::new());
    let holds: Vec<Hold> = (0..5)
        .map(|tag| hold_with(&pool, tag, Some(shared.signal())))
        .collect();
    let survivor = pool.run_with::<i32, _>((1, 1), RunOptions::new().signal(other.signal()));
    assert_eq!(next(&holds[0].1), Ok(0));
    assert_eq!(next(&holds[1].1), Ok(1));
    assert_eq!(sizes(&pool), (2, 4));

    shared.abort_with("all of them");
    assert!(holds.iter().all(|(task, _)| task.is_finished()));
    for (task, port) in holds {
        assert_eq!(
            next(&port),
            Err(Error::Disconnected),
            "nothing more was sent"
        );
        assert_eq!(finish(task), Err(aborted(Some("all of them"))));
    }
    assert_eq!(finish(survivor), Ok(2));
    assert!(!other.signal().aborted());
    pool.destroy().wait().unwrap();
}

/// Aborting a running task retires its worker at once: with min_threads 0 none is left, with
/// min_threads 1 a replacement (with the freed id) counts at once. The reason travels in the
/// error and the task's channel closes.
fn a_running_abort_replaces_the_worker_at_once(runtime: Runtime) {
    for min in [0, 1] {
        let pool = pool(runtime)
            .min_threads(min)
            .max_threads(1)
            .build()
            .unwrap();
        let controller = AbortController::new();
        let (task, port) = hold_with(&pool, 0, Some(controller.signal()));
        assert_eq!(next(&port), Ok(0));
        let before: Vec<u32> = pids(&pool, runtime);

        controller.abort_with("enough");
        assert_eq!(pool.threads(), min, "the aborted worker no longer counts");
        let workers = pool.workers();
        assert!(
            workers.iter().all(|w| w.id == 1 && w.running == 0),
            "{workers:?}"
        );
        assert_eq!(next(&port), Err(Error::Disconnected));
        assert_eq!(finish(task), Err(aborted(Some("enough"))));
        let id: Option<usize> = finish(call(&pool, "id")).unwrap();
        assert_eq!(id, Some(1), "the freed id is reused");
        assert_eq!(
            finish(call::<u32>(&pool, "counter")),
            Ok(0),
            "a fresh worker"
        );
        // The aborted child was killed and reaped.
        for pid in before {
            eventually("the aborted child is reaped", || procfs::gone(pid));
        }
        pool.destroy().wait().unwrap();
    }
}

/// An abortable task given to a worker that may not have started it yet is aborted all the
/// same, and the pool keeps serving.
fn an_abort_of_a_task_handed_to_a_starting_worker_fails_it(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(0)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    for _ in 0..20 {
        let controller = AbortController::new();
        let options = RunOptions::new().name("spin").signal(controller.signal());
        let task = pool.run_with::<(), _>((), options);
        controller.abort();
        assert!(task.is_finished());
        assert_eq!(finish(task), Err(aborted(None)));
        let answer = pool.run_with::<i32, _>((6, 7), RunOptions::new().name("multiply"));
        assert_eq!(finish(answer), Ok(42));
    }
    pool.destroy().wait().unwrap();
}

// ---- Threads only -------------------------------------------------------------------------------

fn with_signal(controller: &AbortController) -> RunOptions {
    RunOptions::new().signal(controller.signal())
}

fn named_with_signal(name: &'static str, controller: &AbortController) -> RunOptions {
    RunOptions::new().name(name).signal(controller.signal())
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
    let pool = one_thread(exports);
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

/// Scenario 89, in the order the functions ran: an abortable task waits until its worker is
/// empty, so it starts only once both tasks the worker had already taken have ended. (What the
/// pool reports meanwhile: `an_abortable_task_waits_for_an_empty_worker`, both runtimes.)
fn an_abortable_task_starts_once_the_tasks_before_it_ended() {
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

    started.wait_for(1);
    gates[0].open();
    assert_eq!(finish(a), Ok(0));
    started.wait_for(2);
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
fn abort_reason_travels_in_the_error() {
    let started = Counter::new();
    let exports = {
        let started = started.clone();
        Exports::new().export_default(move |()| {
            started.bump();
            until_aborted();
        })
    };
    let pool = one_thread(exports);

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

/// One signal shared by running and queued tasks: the running functions see
/// `worker::aborted()` and return, the queued ones never run, and no thread is left after
/// destroy. (What the tasks resolve to, and that a task with another signal is untouched:
/// `one_signal_aborts_every_task_that_shares_it`, both runtimes.)
fn every_function_sharing_an_aborted_signal_returns_and_the_queued_ones_never_run() {
    const P: &str = "ab-many";
    let (started, after_abort) = (Counter::new(), Counter::new());
    let exports = {
        let (started, after_abort) = (started.clone(), after_abort.clone());
        Exports::new().export_default(move |()| {
            started.bump();
            until_aborted();
            after_abort.bump();
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(0)
        .max_threads(2)
        .thread_name(P)
        .build()
        .unwrap();
    let shared = AbortController::new();
    let _tasks: Vec<Task<()>> = (0..5)
        .map(|_| pool.run_with::<(), _>((), with_signal(&shared)))
        .collect();
    started.wait_for(2);

    shared.abort_with("all of them");
    after_abort.wait_for(2);

    pool.destroy().wait().unwrap();
    assert_eq!(live(P), 0);
    assert_eq!(started.get(), 2, "the queued tasks never ran");
}

/// An argument whose `Drop` (user code) reads its pool's stats, taking the pool's lock; it
/// crosses to a child as nothing, and is dropped there without a pool.
#[derive(Serialize, Deserialize)]
pub struct Probe {
    #[serde(skip)]
    pool: Option<Pool>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            let _ = pool.stats();
        }
    }
}

/// The "probe" export: announces itself on its channel, then waits until it closes.
pub fn probe(_: Probe) {
    let port = worker::port::<u32>().expect("a channel");
    port.send(0).expect("the caller listens");
    while port.recv().is_ok() {}
}

/// The abort of a running task drops its argument, if the pool still holds it (a child's task,
/// kept for a resend), with no lock of the pool held: its `Drop` may call the pool.
fn an_aborted_running_tasks_argument_is_dropped_outside_the_pools_lock(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let controller = AbortController::new();
    let (port, theirs) = tinypool::channel::<u32>();
    let options = RunOptions::new()
        .name("probe")
        .channel(theirs)
        .signal(controller.signal());
    let task = pool.run_with::<(), _>(
        Probe {
            pool: Some(pool.clone()),
        },
        options,
    );
    assert_eq!(next(&port), Ok(0), "the task runs");
    crate::common::within("the abort", move || controller.abort());
    assert_eq!(finish(task), Err(aborted(None)));
    assert_eq!(
        finish(call::<u32>(&pool, "counter")),
        Ok(0),
        "a fresh worker"
    );
    pool.destroy().wait().unwrap();
}
