//! Closing a pool gracefully (`Pool::close`, and the drop of its last handle): later runs fail
//! with `Closed`; queued and running tasks still resolve with their values; then every worker
//! stops. `destroy` cuts a close short. And what waits on a busy pool: `idle()`, and
//! `needs_drain()` at `max_queue`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use tinypool::{AbortController, Error, Exports, MaxQueue, Pool, RunOptions, Runtime, Task};

use crate::common::{
    block_on, block_on_until, eventually, finish, next,
    procfs::{self, live},
};
use crate::{bodies, held, hold, one_thread, pids, pool, prefix, sizes, Body};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            close_runs_the_queued_tasks_then_stops_every_worker,
            a_run_after_close_fails_with_closed,
            close_twice_and_close_after_destroy_resolve,
            destroy_during_close_cuts_it_short,
            dropping_the_last_pool_clone_closes_it,
            idle_resolves_once_the_tasks_finished,
            needs_drain_says_when_the_queue_is_at_max_queue,
        ],
        threads: [
            close_waited_inside_a_task_waits_for_the_other_workers_only,
            close_awaited_inside_an_async_task_resolves,
        ],
    }
}

/// Sums queued behind two running "hold" tasks.
fn sums(pool: &tinypool::Pool, n: i32) -> Vec<Task<i32>> {
    (0..n).map(|i| pool.run::<i32, _>((i, i))).collect()
}

/// Both workers hold a task and six wait in the queue when the pool is closed: every task
/// resolves with its value, and then no worker thread (nor child) is left.
fn close_runs_the_queued_tasks_then_stops_every_worker(runtime: Runtime) {
    let prefix = prefix("cl-all", runtime);
    let pool = pool(runtime)
        .min_threads(2)
        .max_threads(2)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let holds: Vec<_> = (0..2).map(|tag| hold(&pool, tag)).collect();
    assert_eq!(next(&holds[0].1), Ok(0));
    assert_eq!(next(&holds[1].1), Ok(1));
    let queued = sums(&pool, 6);
    assert_eq!(pool.queue_size(), 6);
    let children = pids(&pool, runtime);

    let close = pool.close();
    assert_eq!(live(&prefix), 2, "closing stops no busy worker");
    for (tag, (task, port)) in holds.into_iter().enumerate() {
        port.send(10 + tag as u32).unwrap();
        let (said, _, _, value) = held(task);
        assert_eq!((said, value), (tag as u32, 10 + tag as u32));
    }
    assert_eq!(close.wait(), Ok(()));
    assert_eq!(live(&prefix), 0, "every worker thread is joined");
    assert!(
        children.iter().all(|&pid| procfs::gone(pid)),
        "every child is reaped"
    );
    assert_eq!(sizes(&pool), (0, 0));
    let values: Vec<i32> = queued.into_iter().map(|t| finish(t).unwrap()).collect();
    assert_eq!(values, [0, 2, 4, 6, 8, 10]);
}

/// After `close`, a run fails at once with `Closed` (abortable or not), while the task the pool
/// already held still runs.
fn a_run_after_close_fails_with_closed(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let (running, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    let close = pool.close();

    let late = pool.run::<i32, _>((1, 2));
    assert!(late.is_finished());
    let error = finish(late).unwrap_err();
    assert_eq!(error, Error::Closed);
    assert_eq!(
        error.to_string(),
        "the pool is closed: it finishes its tasks and takes no new ones"
    );
    let controller = AbortController::new();
    let abortable = pool.run_with::<i32, _>((1, 2), RunOptions::new().signal(controller.signal()));
    assert_eq!(finish(abortable), Err(Error::Closed));

    port.send(7).unwrap();
    assert_eq!(held(running).3, 7);
    assert_eq!(block_on(close), Ok(()));
    assert_eq!(finish(pool.run::<i32, _>((1, 2))), Err(Error::Closed));
}

/// Two closes both resolve, awaited or waited on; a close after `destroy` resolves at once,
/// and runs still fail with `Terminated` there.
fn close_twice_and_close_after_destroy_resolve(runtime: Runtime) {
    let prefix = prefix("cl-twice", runtime);
    let pool = pool(runtime).thread_name(&prefix).build().unwrap();
    let task = pool.run::<i32, _>((2, 3));
    let (first, second) = (pool.close(), pool.clone().close());
    assert_eq!(block_on(first), Ok(()));
    assert_eq!(second.wait(), Ok(()));
    assert_eq!(finish(task), Ok(5));
    assert_eq!(live(&prefix), 0);

    let destroyed = crate::pool(runtime).build().unwrap();
    destroyed.destroy().wait().unwrap();
    let close = destroyed.close();
    assert_eq!(block_on_until(close, Instant::now()), Some(Ok(())));
    assert_eq!(
        finish(destroyed.run::<i32, _>((1, 2))),
        Err(Error::Terminated)
    );
}

/// `destroy` during a close: the running and the queued tasks fail with `Terminated`, and the
/// close resolves.
fn destroy_during_close_cuts_it_short(runtime: Runtime) {
    let prefix = prefix("cl-cut", runtime);
    let pool = pool(runtime)
        .max_threads(1)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let (running, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    let (queued_hold, queued_port) = hold(&pool, 1);
    let queued = sums(&pool, 2);
    let close = pool.close();

    assert_eq!(pool.destroy().wait(), Ok(()));
    assert_eq!(block_on(close), Ok(()));
    assert_eq!(finish(running), Err(Error::Terminated));
    assert_eq!(finish(queued_hold), Err(Error::Terminated));
    assert_eq!(
        next(&queued_port),
        Err(Error::Disconnected),
        "never started"
    );
    for task in queued {
        assert_eq!(finish(task), Err(Error::Terminated));
    }
    assert_eq!(live(&prefix), 0);
}

/// Dropping the last `Pool` clone closes the pool in the background: the drop returns while a
/// task still runs (it waits for this test), the queued tasks then run and resolve with their
/// values, and the worker stops after the last one.
fn dropping_the_last_pool_clone_closes_it(runtime: Runtime) {
    let prefix = prefix("cl-drop", runtime);
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let (running, port) = hold(&pool, 0);
    let (queued_hold, queued_port) = hold(&pool, 1);
    assert_eq!(next(&port), Ok(0));
    let queued = sums(&pool, 3);
    let children = pids(&pool, runtime);
    let clone = pool.clone();

    drop(pool);
    assert_eq!(clone.queue_size(), 4, "a clone still holds the pool");
    drop(clone);
    assert!(!running.is_finished(), "the drop did not wait for the task");
    assert_eq!(live(&prefix), 1, "nor stop its worker");

    port.send(1).unwrap();
    assert_eq!(held(running).3, 1);
    assert_eq!(next(&queued_port), Ok(1), "the queued task started");
    queued_port.send(2).unwrap();
    assert_eq!(held(queued_hold).3, 2);
    let values: Vec<i32> = queued.into_iter().map(|t| finish(t).unwrap()).collect();
    assert_eq!(values, [0, 2, 4]);
    eventually("the worker stopped", || live(&prefix) == 0);
    eventually("its child is reaped", || {
        children.iter().all(|&pid| procfs::gone(pid))
    });
}

/// `idle()` resolves at once on an idle pool, and otherwise once the queued and running tasks
/// have finished (awaited and waited on); the pool stays open.
fn idle_resolves_once_the_tasks_finished(runtime: Runtime) {
    let pool = pool(runtime).max_threads(2).build().unwrap();
    assert_eq!(block_on_until(pool.idle(), Instant::now()), Some(()));
    pool.idle().wait();

    let holds: Vec<_> = (0..2).map(|tag| hold(&pool, tag)).collect();
    assert_eq!(next(&holds[0].1), Ok(0));
    assert_eq!(next(&holds[1].1), Ok(1));
    let queued = sums(&pool, 4);
    let (awaited, waited) = (pool.idle(), pool.idle());
    let awaited = block_on_until(awaited, Instant::now());
    assert!(awaited.is_none(), "tasks are running");
    let waiter = std::thread::spawn(move || waited.wait());

    for (task, port) in holds {
        port.send(3).unwrap();
        assert_eq!(held(task).3, 3);
    }
    block_on(pool.idle());
    waiter.join().unwrap();
    assert!(queued.iter().all(Task::is_finished));
    assert_eq!(pool.queue_size(), 0);
    let values: Vec<i32> = queued.into_iter().map(|t| finish(t).unwrap()).collect();
    assert_eq!(values, [0, 2, 4, 6]);
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Ok(2), "still open");
}

/// With `max_queue(Limit(2))` and the one worker busy, `needs_drain` turns true with the
/// second queued task (a third fails with `QueueFull`) and false again once it drained; an
/// unbounded pool never needs draining.
fn needs_drain_says_when_the_queue_is_at_max_queue(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(2))
        .build()
        .unwrap();
    let (running, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    assert!(!pool.needs_drain());
    let first = pool.run::<i32, _>((1, 1));
    assert!(!pool.needs_drain());
    let second = pool.run::<i32, _>((2, 2));
    assert!(pool.needs_drain());
    assert_eq!(finish(pool.run::<i32, _>((3, 3))), Err(Error::QueueFull));

    port.send(0).unwrap();
    pool.idle().wait();
    assert!(!pool.needs_drain());
    assert_eq!(held(running).3, 0);
    assert_eq!((finish(first), finish(second)), (Ok(2), Ok(4)));

    let unbounded = crate::pool(runtime).max_threads(1).build().unwrap();
    let (blocker, port) = hold(&unbounded, 0);
    assert_eq!(next(&port), Ok(0));
    let queued = sums(&unbounded, 8);
    assert!(!unbounded.needs_drain());
    port.send(0).unwrap();
    assert_eq!(held(blocker).3, 0);
    assert!(queued.into_iter().all(|t| finish(t).is_ok()));
}

/// A pool its own exports can reach (taken out at the end: the pool holds its exports).
type Reach = Arc<Mutex<Option<Pool>>>;

fn reach(reach: &Reach) -> Pool {
    reach
        .lock()
        .unwrap()
        .clone()
        .expect("the pool is set before any task runs")
}

/// A task that closes its own pool and waits for the close: the wait ends once the other
/// worker has finished its task and stopped (its task's flag is set by then), not never; its
/// own worker stops once the task returns.
fn close_waited_inside_a_task_waits_for_the_other_workers_only() {
    let reached: Reach = Arc::default();
    let other_done = Arc::new(AtomicBool::new(false));
    let (release, released) = mpsc::channel::<()>();
    let (closing, closing_seen) = mpsc::channel::<()>();
    let (released, closing) = (Mutex::new(released), Mutex::new(closing));
    let exports = Exports::new()
        .export("other", {
            let done = other_done.clone();
            move |()| {
                let _ = released.lock().unwrap().recv();
                done.store(true, Ordering::SeqCst);
                1u32
            }
        })
        .export("closer", {
            let (reached, done) = (reached.clone(), other_done.clone());
            move |()| {
                closing.lock().unwrap().send(()).unwrap();
                let closed = reach(&reached).close().wait();
                (closed == Ok(()), done.load(Ordering::SeqCst))
            }
        });
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(2)
        .max_threads(2)
        .build()
        .unwrap();
    *reached.lock().unwrap() = Some(pool.clone());
    let other: Task<u32> = pool.run_with((), RunOptions::new().name("other"));
    let closer: Task<(bool, bool)> = pool.run_with((), RunOptions::new().name("closer"));
    closing_seen.recv().unwrap();
    release.send(()).unwrap();
    assert_eq!(
        finish(closer),
        Ok((true, true)),
        "closed once the other worker stopped"
    );
    assert_eq!(finish(other), Ok(1));
    assert_eq!(pool.close().wait(), Ok(()));
    assert_eq!(pool.threads(), 0);
    reached.lock().unwrap().take();
}

/// The same close, awaited by an async export: its worker's executor keeps running while the
/// close waits (on a thread of its own) for the pool's other workers only.
fn close_awaited_inside_an_async_task_resolves() {
    let reached: Reach = Arc::default();
    let exports = Exports::new().export_async("closer", {
        let reached = reached.clone();
        move |()| {
            let pool = reach(&reached);
            async move { pool.close().await == Ok(()) }
        }
    });
    let pool = one_thread(exports);
    *reached.lock().unwrap() = Some(pool.clone());
    let closer: Task<bool> = pool.run_with((), RunOptions::new().name("closer"));
    assert_eq!(finish(closer), Ok(true));
    assert_eq!(pool.close().wait(), Ok(()));
    assert_eq!(pool.threads(), 0);
    reached.lock().unwrap().take();
}
