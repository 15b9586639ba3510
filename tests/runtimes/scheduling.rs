//! The scheduler (spec §2.3-2.7, scenarios 31-33, 65-70, 105, §2.19 item 6): a worker added
//! per blocked task up to `max_threads`, then the queue and its limits; tasks per worker;
//! submission order; idle workers leaving and coming back; what `workers()`, `completed()` and
//! `duration()` report; many tasks from many callers. Threads only: what in-process functions
//! show precisely (how many tasks run at once, threads leaving after `idle_timeout`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tinypool::{AbortController, Error, Exports, MaxQueue, Pool, RunOptions, Runtime, Task};

use crate::common::{
    self, block_on, eventually, finish, next,
    procfs::{live, threads_named},
    Counter, Gate,
};
use crate::{
    bodies, call, held, hold, loads, meeting, pid_of, pids, pool, prefix, sizes, start_gate, Body,
    Held, Hold,
};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            a_worker_is_added_per_blocked_task_up_to_max_then_tasks_queue,
            a_full_queue_rejects_with_queue_full_and_destroy_fails_the_rest,
            queue_limits_reject_with_errors,
            no_queue_rejects_while_the_only_worker_is_busy,
            max_queue_auto_is_max_threads_squared,
            a_worker_takes_several_tasks_at_once,
            two_tasks_share_a_worker_with_concurrency_2_until_destroy,
            two_workers_with_concurrency_2_take_four_tasks_and_run_two,
            a_new_worker_takes_as_many_queued_tasks_as_its_concurrency_allows,
            queued_tasks_start_in_submission_order,
            abortable_and_plain_tasks_start_in_submission_order,
            idle_workers_above_the_minimum_leave,
            idle_workers_leave_and_come_back_on_demand,
            workers_at_min_threads_never_idle_out,
            workers_lists_each_live_worker_with_its_id_pid_and_load,
            completed_counts_tasks_that_ran_and_duration_grows,
            many_tasks_all_resolve_correctly,
            tasks_from_several_caller_threads_all_resolve,
            a_resolved_task_no_longer_occupies_its_worker,
        ],
        threads: [
            concurrency_2_on_2_workers_runs_2_tasks_at_once_and_holds_4,
            idle_timeout_zero_lets_every_worker_above_min_leave_once_idle,
        ],
    }
}

/// Scenario 65 (and 105): min 2 / max 3; a worker is added for the third blocked task, the
/// fourth waits in the queue until a worker is free.
fn a_worker_is_added_per_blocked_task_up_to_max_then_tasks_queue(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).max_threads(3).build().unwrap();
    assert_eq!(sizes(&pool), (2, 0));
    let mut holds: Vec<Hold> = Vec::new();
    for (tag, expected) in [(2, 0), (2, 0), (3, 0), (3, 1)].into_iter().enumerate() {
        holds.push(hold(&pool, tag as u32));
        assert_eq!(sizes(&pool), expected, "after run {}", tag + 1);
    }
    for (tag, (_, port)) in holds.iter().enumerate().take(3) {
        assert_eq!(next(port), Ok(tag as u32));
    }
    assert_eq!(sizes(&pool), (3, 1));
    assert_eq!(holds[3].1.try_recv(), Ok(None), "the queued task waits");

    holds[0].1.send(0).unwrap();
    assert_eq!(next(&holds[3].1), Ok(3), "a freed worker took it");
    assert_eq!(sizes(&pool), (3, 0));
    for (_, port) in &holds[1..] {
        port.send(0).unwrap();
    }
    for (tag, (task, _)) in holds.into_iter().enumerate() {
        assert_eq!(held(task).0, tag as u32);
    }
    pool.destroy().wait().unwrap();
}

/// Scenario 66: min 0, max 1, max_queue 2: 1/0, 1/1, 1/2, then `QueueFull`; destroy fails the
/// three accepted tasks, and the queued ones never start.
fn a_full_queue_rejects_with_queue_full_and_destroy_fails_the_rest(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(0)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(2))
        .build()
        .unwrap();
    let mut holds: Vec<Hold> = Vec::new();
    for (tag, expected) in [(1, 0), (1, 1), (1, 2)].into_iter().enumerate() {
        holds.push(hold(&pool, tag as u32));
        assert_eq!(sizes(&pool), expected, "after run {}", tag + 1);
    }
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::QueueFull));
    assert_eq!(sizes(&pool), (1, 2), "a rejected task leaves no trace");
    assert_eq!(next(&holds[0].1), Ok(0));

    pool.destroy().wait().unwrap();
    // Checked while the task handles live (dropping one drops its channel too).
    for (tag, (task, port)) in holds.into_iter().enumerate() {
        if tag > 0 {
            assert_eq!(next(&port), Err(Error::Disconnected), "{tag} never started");
        }
        assert_eq!(finish(task), Err(Error::Terminated));
    }
}

fn queue_limits_reject_with_errors(runtime: Runtime) {
    let pool = pool(runtime)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(1))
        .build()
        .unwrap();
    let (running, port) = start_gate(&pool);
    let queued = pool.run::<i32, _>((1, 2));
    assert_eq!(pool.queue_size(), 1);
    assert_eq!(finish(pool.run::<i32, _>((1, 2))), Err(Error::QueueFull));
    port.send(7).unwrap();
    assert_eq!(finish(running).unwrap().unwrap().1, 7);
    assert_eq!(finish(queued), Ok(3));
    pool.destroy().wait().unwrap();

    let pool = pool_no_queue(runtime);
    let (running, port) = start_gate(&pool);
    assert_eq!(finish(pool.run::<i32, _>((1, 2))), Err(Error::NoQueue));
    port.send(1).unwrap();
    assert!(finish(running).unwrap().is_ok());
    pool.destroy().wait().unwrap();
}

fn pool_no_queue(runtime: Runtime) -> Pool {
    pool(runtime)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .build()
        .unwrap()
}

/// Scenarios 67 and 68: with max_queue 0 the one worker (started on demand, or fixed) takes
/// one task and refuses the next with `NoQueue`; once it is free it takes one again.
fn no_queue_rejects_while_the_only_worker_is_busy(runtime: Runtime) {
    for min in [0, 1] {
        let pool = pool(runtime)
            .min_threads(min)
            .max_threads(1)
            .max_queue(MaxQueue::Limit(0))
            .build()
            .unwrap();
        let (first, port) = hold(&pool, 0);
        assert_eq!(sizes(&pool), (1, 0), "min {min}: the worker takes the task");
        assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::NoQueue));
        assert_eq!(next(&port), Ok(0));
        assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::NoQueue));
        assert_eq!(sizes(&pool), (1, 0));
        if min == 0 {
            pool.destroy().wait().unwrap();
            assert_eq!(finish(first), Err(Error::Terminated));
        } else {
            port.send(5).unwrap();
            assert_eq!(held(first).3, 5);
            assert_eq!(finish(pool.run::<i32, _>((1, 2))), Ok(3), "free again");
            pool.destroy().wait().unwrap();
        }
    }
}

/// `MaxQueue::Auto` is max_threads²: with 2 busy workers, 4 tasks wait and the fifth is
/// refused.
fn max_queue_auto_is_max_threads_squared(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(0)
        .max_threads(2)
        .max_queue(MaxQueue::Auto)
        .build()
        .unwrap();
    let running = [hold(&pool, 0), hold(&pool, 1)];
    for (tag, (_, port)) in (0..).zip(&running) {
        assert_eq!(next(port), Ok(tag));
    }
    let queued: Vec<Task<i32>> = (0..4).map(|i| pool.run((i, i))).collect();
    assert_eq!(pool.queue_size(), 4);
    assert!(queued.iter().all(|task| !task.is_finished()));
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::QueueFull));
    assert_eq!(pool.queue_size(), 4);

    for (_, port) in &running {
        port.send(0).unwrap();
    }
    for (task, _) in running {
        held(task);
    }
    for (i, task) in (0..4).zip(queued) {
        assert_eq!(finish(task), Ok(2 * i));
    }
    pool.destroy().wait().unwrap();
}

/// Scenario 70, with concurrency 3: with no queue, a fixed worker takes as many tasks as its
/// concurrency allows, refuses the next, and every task it took finishes.
fn a_worker_takes_several_tasks_at_once(runtime: Runtime) {
    let pool = pool(runtime)
        .max_threads(1)
        .concurrent_tasks_per_worker(3)
        .max_queue(MaxQueue::Limit(0))
        .build()
        .unwrap();
    let (running, port) = start_gate(&pool);
    // With no queue, these are accepted only because the busy worker has room.
    let more: Vec<Task<i32>> = (0..2).map(|i| pool.run((i, 1))).collect();
    assert_eq!(sizes(&pool), (1, 0));
    assert_eq!(pool.workers()[0].running, 3);
    assert_eq!(finish(pool.run::<i32, _>((9, 9))), Err(Error::NoQueue));
    port.send(3).unwrap();
    assert_eq!(finish(running).unwrap().unwrap().1, 3);
    let sums: Vec<i32> = more.into_iter().map(|t| finish(t).unwrap()).collect();
    assert_eq!(sums, [1, 2]);
    assert_eq!(sizes(&pool), (1, 0));
    pool.destroy().wait().unwrap();
}

/// Scenario 69: min 0, max 1, max_queue 0, concurrency 2: both tasks are taken by the one
/// worker, a third is refused, and destroy fails both (the second never started).
fn two_tasks_share_a_worker_with_concurrency_2_until_destroy(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(0)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let (first, first_port) = hold(&pool, 0);
    assert_eq!(sizes(&pool), (1, 0));
    let (second, second_port) = hold(&pool, 1);
    assert_eq!(sizes(&pool), (1, 0));
    assert!(
        !second.is_finished(),
        "the worker has room for a second task"
    );
    assert_eq!(loads(&pool), [2]);
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::NoQueue));
    assert_eq!(next(&first_port), Ok(0));

    pool.destroy().wait().unwrap();
    assert_eq!(
        next(&second_port),
        Err(Error::Disconnected),
        "never started"
    );
    assert_eq!(finish(first), Err(Error::Terminated));
    assert_eq!(finish(second), Err(Error::Terminated));
}

/// Scenario 31, adapted: 2 workers of concurrency 2 take all 4 tasks (none queued), but each
/// runs one function at a time.
fn two_workers_with_concurrency_2_take_four_tasks_and_run_two(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(2)
        .max_threads(2)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let holds: Vec<Hold> = (0..4).map(|tag| hold(&pool, tag)).collect();
    assert_eq!(next(&holds[0].1), Ok(0));
    assert_eq!(next(&holds[1].1), Ok(1));
    assert_eq!(sizes(&pool), (2, 0));
    assert_eq!(loads(&pool), [2, 2]);
    assert_eq!(
        holds[2].1.try_recv(),
        Ok(None),
        "waits in its worker's queue"
    );
    assert_eq!(
        holds[3].1.try_recv(),
        Ok(None),
        "waits in its worker's queue"
    );

    holds[0].1.send(0).unwrap();
    holds[1].1.send(0).unwrap();
    assert_eq!(next(&holds[2].1), Ok(2));
    assert_eq!(next(&holds[3].1), Ok(3));
    holds[2].1.send(0).unwrap();
    holds[3].1.send(0).unwrap();
    let identities: Vec<String> = holds.into_iter().map(|(task, _)| held(task).2).collect();
    assert_eq!(
        identities[0], identities[2],
        "tasks 0 and 2 shared a worker"
    );
    assert_eq!(
        identities[1], identities[3],
        "tasks 1 and 3 shared a worker"
    );
    assert_ne!(identities[0], identities[1]);
    pool.destroy().wait().unwrap();
}

/// §2.19 item 6: Tinypool's newly ready worker takes a single queued task; here a new worker
/// takes as many as its concurrency allows, at once.
fn a_new_worker_takes_as_many_queued_tasks_as_its_concurrency_allows(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let old = [hold(&pool, 0), hold(&pool, 1)];
    assert_eq!(next(&old[0].1), Ok(0));
    let new = [hold(&pool, 2), hold(&pool, 3)];
    assert_eq!(sizes(&pool), (1, 2));

    // The busy worker is replaced once its two tasks are done; its replacement is new.
    common::recycle(&pool);
    old[0].1.send(0).unwrap();
    assert_eq!(next(&old[1].1), Ok(1));
    old[1].1.send(0).unwrap();
    let [first, second] = old;
    let old_identity = held(first.0).2;
    assert_eq!(held(second.0).2, old_identity);

    assert_eq!(next(&new[0].1), Ok(2));
    assert_eq!(
        pool.queue_size(),
        0,
        "the new worker took both queued tasks at once"
    );
    assert_eq!(loads(&pool), [2]);
    assert_eq!(new[1].1.try_recv(), Ok(None), "one function at a time");
    new[0].1.send(0).unwrap();
    assert_eq!(next(&new[1].1), Ok(3));
    new[1].1.send(0).unwrap();
    let [first, second] = new;
    let new_identity = held(first.0).2;
    assert_eq!(held(second.0).2, new_identity);
    assert_ne!(new_identity, old_identity);
    pool.destroy().wait().unwrap();
}

/// One worker runs queued tasks in submission order: each "counter" task returns how many
/// ran on the worker before it.
fn queued_tasks_start_in_submission_order(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (first, port) = hold(&pool, 0);
    let counters: Vec<Task<u32>> = (0..8).map(|_| call(&pool, "counter")).collect();
    assert_eq!(next(&port), Ok(0));
    assert_eq!(pool.queue_size(), 8);
    port.send(0).unwrap();
    held(first);
    for (position, task) in counters.into_iter().enumerate() {
        assert_eq!(finish(task), Ok(position as u32));
    }
    pool.destroy().wait().unwrap();
}

/// The order holds when tasks with an abort signal (which the scheduler places itself) are
/// submitted among tasks without one (which join a saturated pool's queue by the intake):
/// each "counter" task returns how many ran on the one worker before it.
fn abortable_and_plain_tasks_start_in_submission_order(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (first, port) = hold(&pool, 0);
    let controller = AbortController::new();
    let counters: Vec<Task<u32>> = (0..12)
        .map(|i| {
            let mut options = RunOptions::new().name("counter");
            if i % 4 == 3 {
                options = options.signal(controller.signal());
            }
            pool.run_with((), options)
        })
        .collect();
    assert_eq!(next(&port), Ok(0));
    assert_eq!(pool.queue_size(), 12);
    port.send(0).unwrap();
    held(first);
    for (position, task) in counters.into_iter().enumerate() {
        assert_eq!(finish(task), Ok(position as u32));
    }
    assert_eq!(pool.queue_size(), 0);
    pool.destroy().wait().unwrap();
}

/// At a realistic `idle_timeout` as well as a tiny one: a second is longer than the interval
/// at which an idle driver checks its child (200 ms), and idle time counts from when the worker
/// went idle, across those wake-ups.
fn idle_workers_above_the_minimum_leave(runtime: Runtime) {
    for idle_timeout in [Duration::from_millis(20), Duration::from_secs(1)] {
        let pool = pool(runtime).idle_timeout(idle_timeout).build().unwrap();
        let (first, first_port) = start_gate(&pool);
        let (second, second_port) = start_gate(&pool);
        assert_eq!(pool.threads(), 2);
        first_port.send(1).unwrap();
        second_port.send(2).unwrap();
        assert!(finish(first).unwrap().is_ok() && finish(second).unwrap().is_ok());
        eventually("the extra worker left", || pool.threads() == 1);
        assert_eq!(finish(pool.run::<i32, _>((1, 2))), Ok(3));
        pool.destroy().wait().unwrap();
    }
}

/// Scenario 33: min 1 / max 2, idle_timeout: the second worker leaves once idle and a new
/// one comes for the next burst (one stayed, one left, one came: 3 identities).
fn idle_workers_leave_and_come_back_on_demand(runtime: Runtime) {
    let prefix = prefix("rt-idle", runtime);
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(2)
        .idle_timeout(Duration::from_millis(20))
        .thread_name(&prefix)
        .build()
        .unwrap();
    assert_eq!(pool.threads(), 1);
    let mut identities = Vec::new();
    for burst in 0..2u32 {
        let holds = [hold(&pool, 2 * burst), hold(&pool, 2 * burst + 1)];
        assert_eq!(pool.threads(), 2, "burst {burst}");
        for (tag, (_, port)) in (2 * burst..).zip(&holds) {
            assert_eq!(next(port), Ok(tag), "both run at once");
        }
        for (_, port) in &holds {
            port.send(0).unwrap();
        }
        let burst_identities: Vec<String> = holds.into_iter().map(|(t, _)| held(t).2).collect();
        assert_ne!(burst_identities[0], burst_identities[1]);
        identities.extend(burst_identities);
        eventually("the idle worker above min_threads left", || {
            pool.threads() == 1
        });
        eventually("its thread exited", || live(&prefix) == 1);
    }
    let distinct: HashSet<&String> = identities.iter().collect();
    assert_eq!(distinct.len(), 3, "one stayed, one left, one came");
    pool.destroy().wait().unwrap();
}

/// Workers at `min_threads` never idle out: idling far past a tiny `idle_timeout`, round
/// after round, the only worker stays the same.
fn workers_at_min_threads_never_idle_out(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .idle_timeout(Duration::from_millis(1))
        .thread_name(prefix("s-keep", runtime))
        .build()
        .unwrap();
    let first: String = finish(call(&pool, "identity")).unwrap();
    // Many rounds of idling far past the timeout: the only worker must stay the same.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(pool.threads(), 1);
        assert_eq!(finish(call(&pool, "identity")), Ok(first.clone()));
    }
    pool.destroy().wait().unwrap();
}

/// `workers()` lists the live workers: ids within max, their load, and for child processes
/// each child's pid (the very process that runs its tasks); threads have none.
fn workers_lists_each_live_worker_with_its_id_pid_and_load(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).max_threads(3).build().unwrap();
    assert_eq!(sorted_ids(&pool), [1, 2]);
    assert_eq!(loads(&pool), [0, 0]);

    let holds: Vec<Hold> = (0..4).map(|tag| hold(&pool, tag)).collect();
    for (tag, (_, port)) in (0..3).zip(&holds) {
        assert_eq!(next(port), Ok(tag));
    }
    assert_eq!(sorted_ids(&pool), [1, 2, 3]);
    assert_eq!(loads(&pool), [1, 1, 1]);
    assert_eq!(pool.queue_size(), 1, "a queued task is on no worker");
    let listed: HashSet<u32> = pids(&pool, runtime).into_iter().collect();

    for (_, port) in &holds[..3] {
        port.send(0).unwrap();
    }
    assert_eq!(next(&holds[3].1), Ok(3));
    holds[3].1.send(0).unwrap();
    let ran: Vec<Held> = holds.into_iter().map(|(task, _)| held(task)).collect();
    if runtime == Runtime::ChildProcess {
        let ran_in: HashSet<u32> = ran[..3].iter().map(|h| pid_of(&h.2)).collect();
        assert_eq!(
            ran_in, listed,
            "the listed pids are the children that ran the tasks"
        );
    }
    eventually("the worker above min_threads left", || {
        pool.workers().len() == 2
    });
    assert_eq!(loads(&pool), [0, 0]);
    pool.destroy().wait().unwrap();
}

fn sorted_ids(pool: &Pool) -> Vec<usize> {
    let mut ids: Vec<usize> = pool.workers().iter().map(|w| w.id).collect();
    ids.sort_unstable();
    ids
}

/// `completed` counts tasks a worker ran, to a value or an error, and not refused ones;
/// `duration` is the time since build.
fn completed_counts_tasks_that_ran_and_duration_grows(runtime: Runtime) {
    let before = Instant::now();
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .build()
        .unwrap();
    let built = pool.duration();
    assert!(built <= before.elapsed());
    assert_eq!(pool.completed(), 0);
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Ok(2));
    assert_eq!(pool.completed(), 1);
    let panic = pool.run_with::<i32, _>("counted".to_owned(), RunOptions::new().name("panic"));
    assert!(finish(panic).is_err());
    assert!(finish(pool.run_with::<i32, _>((1, 1), RunOptions::new().name("nope"))).is_err());
    assert!(finish(pool.run::<i64, _>((1, 1))).is_err());
    assert_eq!(pool.completed(), 4, "errors from the worker count");

    let (blocked, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::NoQueue));
    assert_eq!(pool.completed(), 4, "a refused task never ran");
    port.send(0).unwrap();
    held(blocked);
    assert_eq!(pool.completed(), 5);

    std::thread::sleep(Duration::from_millis(5));
    let later = pool.duration();
    assert!(
        later >= built + Duration::from_millis(5),
        "{built:?} then {later:?}"
    );
    assert!(later <= before.elapsed());
    pool.destroy().wait().unwrap();
}

/// Scenario 32: ten thousand tasks on two workers all resolve with their own values.
fn many_tasks_all_resolve_correctly(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).max_threads(2).build().unwrap();
    let tasks: Vec<Task<i32>> = (0..10_000).map(|i| pool.run((i, 1))).collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(finish(task), Ok(i as i32 + 1));
    }
    assert_eq!(pool.completed(), 10_000);
    assert_eq!(sizes(&pool), (2, 0));
    pool.destroy().wait().unwrap();
}

/// Four caller threads submit at once, half waiting and half awaiting: every task resolves
/// with its own value.
fn tasks_from_several_caller_threads_all_resolve(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).max_threads(2).build().unwrap();
    std::thread::scope(|scope| {
        for caller in 0..4i32 {
            let pool = pool.clone();
            scope.spawn(move || {
                let tasks: Vec<Task<i32>> =
                    (0..2_500).map(|i| pool.run((i, caller * 10_000))).collect();
                for (i, task) in (0..2_500).zip(tasks) {
                    let result = if caller % 2 == 0 {
                        finish(task)
                    } else {
                        block_on(task)
                    };
                    assert_eq!(result, Ok(i + caller * 10_000));
                }
            });
        }
    });
    assert_eq!(pool.completed(), 10_000);
    assert_eq!(sizes(&pool), (2, 0));
    pool.destroy().wait().unwrap();
}

/// Once a caller has its result the worker is free: with no queue, the next task is accepted,
/// every time, and the snapshot shows the worker idle.
fn a_resolved_task_no_longer_occupies_its_worker(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .build()
        .unwrap();
    for x in 0..500 {
        assert_eq!(finish(pool.run::<i32, _>((x, 1))), Ok(x + 1), "task {x}");
        assert_eq!(loads(&pool), [0], "after task {x}");
    }
    assert_eq!(pool.completed(), 500);
    pool.destroy().wait().unwrap();
}

// ---- Threads only -------------------------------------------------------------------------------

fn concurrency_2_on_2_workers_runs_2_tasks_at_once_and_holds_4() {
    // Scenario 31, adapted: each worker runs its tasks one after another, so 4 tasks on 2
    // workers of concurrency 2 are all taken (none queued) but only 2 run at once.
    let (gate, started) = (Gate::new(), Counter::new());
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let exports = {
        let (gate, started) = (gate.clone(), started.clone());
        let (running, peak) = (running.clone(), peak.clone());
        Exports::new().export_default(move |i: u32| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            started.bump();
            gate.wait();
            running.fetch_sub(1, Ordering::SeqCst);
            i
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(2)
        .max_threads(2)
        .concurrent_tasks_per_worker(2)
        .thread_name("s-conc2")
        .build()
        .unwrap();
    let tasks: Vec<Task<u32>> = (0..4u32).map(|i| pool.run(i)).collect();
    started.wait_for(2);
    assert_eq!(sizes(&pool), (2, 0));
    let running_per_worker: Vec<usize> = pool.workers().iter().map(|w| w.running).collect();
    assert_eq!(running_per_worker, [2, 2]);
    assert_eq!(started.get(), 2, "a worker runs one function at a time");

    gate.open();
    for (i, task) in (0..4u32).zip(tasks) {
        assert_eq!(finish(task), Ok(i));
    }
    assert_eq!(started.get(), 4);
    assert_eq!(peak.load(Ordering::SeqCst), 2);
}

fn idle_timeout_zero_lets_every_worker_above_min_leave_once_idle() {
    let met = Counter::new();
    let pool = Pool::builder()
        .exports(meeting(&met))
        .min_threads(0)
        .max_threads(2)
        .thread_name("s-idle0")
        .build()
        .unwrap();
    let burst: Vec<Task<(usize, u64)>> = vec![pool.run(2usize), pool.run(2usize)];
    assert_eq!(pool.threads(), 2);
    for task in burst {
        finish(task).unwrap();
    }
    eventually("both workers left", || pool.threads() == 0);
    eventually("their threads exited", || threads_named("s-idle0") == 0);
    // And the pool still works.
    let burst: Vec<Task<(usize, u64)>> = vec![pool.run(4usize), pool.run(4usize)];
    for task in burst {
        finish(task).unwrap();
    }
}
