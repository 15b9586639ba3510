//! Destroying a pool (spec §1.4, §2.8, scenarios 43, 44): queued and running tasks fail with
//! `Terminated` and every worker stops; destroying twice, or right after build; a worker deaf
//! to `destroy`. (Dropping the last clone closes the pool instead: see `close.rs`.) Threads
//! only: a running task fails at once while its function, which sees `worker::aborted()`, is
//! still winding down.

use std::time::Duration;

use tinypool::{AbortController, Error, Exports, Pool, RunOptions, Runtime};

use crate::common::{
    block_on, eventually, finish, next,
    procfs::{self, live},
    Counter,
};
use crate::{
    bodies, hold, pids, pool, prefix, sizes, start_gate, until_aborted, Body, Hold, STUCK,
};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            destroy_fails_running_and_queued_tasks,
            destroy_fails_queued_and_running_tasks_and_stops_every_worker,
            destroy_twice_is_fine_and_later_runs_fail_with_terminated,
            destroy_right_after_build_fails_the_task,
            a_worker_deaf_to_destroy_times_out_as_a_thread_and_is_killed_as_a_child,
        ],
        threads: [
            destroy_while_running_fails_the_task_with_terminated,
        ],
    }
}

fn destroy_fails_running_and_queued_tasks(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let (running, _port) = start_gate(&pool);
    let queued = pool.run::<i32, _>((1, 2));
    pool.destroy().wait().unwrap();
    assert_eq!(finish(running), Err(Error::Terminated));
    assert_eq!(finish(queued), Err(Error::Terminated));
    assert_eq!(pool.threads(), 0);
    assert_eq!(finish(pool.run::<i32, _>((1, 2))), Err(Error::Terminated));
}

/// Destroy (awaited here) fails queued and running tasks on several workers; queued ones never
/// start, and no worker thread (nor child) is left once it resolved.
fn destroy_fails_queued_and_running_tasks_and_stops_every_worker(runtime: Runtime) {
    let prefix = prefix("rt-dall", runtime);
    let pool = pool(runtime)
        .min_threads(2)
        .max_threads(2)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let holds: Vec<Hold> = (0..6).map(|tag| hold(&pool, tag)).collect();
    assert_eq!(next(&holds[0].1), Ok(0));
    assert_eq!(next(&holds[1].1), Ok(1));
    assert_eq!(pool.queue_size(), 4);
    assert_eq!(live(&prefix), 2);
    let children = pids(&pool, runtime);

    assert_eq!(block_on(pool.destroy()), Ok(()));
    assert_eq!(live(&prefix), 0, "every worker thread is joined");
    assert!(
        children.iter().all(|&pid| procfs::gone(pid)),
        "every child is reaped"
    );
    assert_eq!(sizes(&pool), (0, 0));
    for (tag, (task, port)) in holds.into_iter().enumerate() {
        if tag >= 2 {
            assert_eq!(next(&port), Err(Error::Disconnected), "{tag} never started");
        }
        assert_eq!(block_on(task), Err(Error::Terminated));
    }
}

/// Destroying twice, or from two clones, is fine; afterwards every run fails with
/// `Terminated` at once and starts no worker.
fn destroy_twice_is_fine_and_later_runs_fail_with_terminated(runtime: Runtime) {
    let prefix = prefix("rt-twice", runtime);
    let pool = pool(runtime)
        .max_threads(1)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let (task, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    let clone = pool.clone();
    let (first, second) = (pool.destroy(), clone.destroy());
    assert_eq!(first.wait(), Ok(()));
    assert_eq!(second.wait(), Ok(()));
    assert_eq!(pool.destroy().wait(), Ok(()));
    assert_eq!(block_on(clone.destroy()), Ok(()));
    assert_eq!(finish(task), Err(Error::Terminated));

    let late = pool.run::<i32, _>((1, 2));
    assert!(late.is_finished());
    assert_eq!(finish(late), Err(Error::Terminated));
    let controller = AbortController::new();
    let abortable = pool.run_with::<i32, _>((1, 2), RunOptions::new().signal(controller.signal()));
    assert_eq!(finish(abortable), Err(Error::Terminated));
    assert_eq!(sizes(&pool), (0, 0));
    assert_eq!(live(&prefix), 0);
}

/// Scenario 44: destroying an isolated pool right after it was built, with a task submitted
/// (its worker, a child maybe still starting, is stopped all the same).
fn destroy_right_after_build_fails_the_task(runtime: Runtime) {
    let prefix = prefix("rt-init", runtime);
    let pool = pool(runtime)
        .isolate_workers(true)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let (task, _port) = hold(&pool, 0);
    let destroy = pool.destroy();
    assert_eq!(finish(task), Err(Error::Terminated));
    assert_eq!(destroy.wait(), Ok(()));
    assert_eq!(live(&prefix), 0);
}

/// A function deaf to `destroy` (it ignores aborts and its channel). Both runtimes fail its
/// task with `Terminated`, but only a child can be stopped from outside: a thread makes
/// destroy report `TerminateTimeout` naming its worker and is left to finish, detached, while
/// a child is killed and destroy succeeds.
fn a_worker_deaf_to_destroy_times_out_as_a_thread_and_is_killed_as_a_child(runtime: Runtime) {
    let prefix = prefix("rt-deaf", runtime);
    let pool = pool(runtime)
        .min_threads(2)
        .max_threads(2)
        .terminate_timeout(Duration::from_millis(500))
        .thread_name(&prefix)
        .build()
        .unwrap();
    let (stuck_port, theirs) = tinypool::channel::<u32>();
    let stuck = pool.run_with::<(), _>((), RunOptions::new().name("stuck").channel(theirs));
    let stuck_id = next(&stuck_port).unwrap() as usize;
    let (fine, port) = hold(&pool, 1);
    assert_eq!(next(&port), Ok(1));
    let children = pids(&pool, runtime);

    let result = pool.destroy().wait();
    assert_eq!(finish(stuck), Err(Error::Terminated));
    assert_eq!(finish(fine), Err(Error::Terminated));
    match runtime {
        Runtime::Threads => {
            assert_eq!(result, Err(Error::TerminateTimeout { worker: stuck_id }));
            assert_eq!(
                result.unwrap_err().to_string(),
                format!("failed to terminate worker {stuck_id} within terminate_timeout")
            );
            assert_eq!(live(&prefix), 1, "only the stuck worker's thread is left");
            let (open, changed) = &STUCK;
            *open.lock().unwrap() = true;
            changed.notify_all();
            eventually("the stuck function returned", || live(&prefix) == 0);
            assert_eq!(
                pool.destroy().wait(),
                Ok(()),
                "its thread is joined at last"
            );
        }
        _ => {
            assert_eq!(result, Ok(()));
            assert_eq!(live(&prefix), 0);
            assert!(
                children.iter().all(|&pid| procfs::gone(pid)),
                "the child was killed"
            );
        }
    }
}

// ---- Threads only -------------------------------------------------------------------------------

/// A default export that reports it started and then runs until the pool is destroyed.
fn cooperative(started: &Counter) -> Exports {
    let started = started.clone();
    Exports::new().export_default(move |()| {
        started.bump();
        until_aborted();
    })
}

/// Scenario 43: a running task fails with `Terminated`, its function sees `worker::aborted()`,
/// and destroy waits for the thread.
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
