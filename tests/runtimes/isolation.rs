//! Isolation and recycling (spec §2.13, scenarios 19-25, 34, 35, §2.19 item 5): a worker's
//! state carries over unless workers are isolated; isolated workers' ids and count;
//! `recycle_workers` replacing idle workers at once and busy ones after their tasks, never
//! failing a sibling task. Threads only: the recycled workers' threads exit and the
//! replacements stay.

use std::collections::HashSet;

use tinypool::{Pool, Runtime, Task};

use crate::common::{self, eventually, finish, next, procfs::threads_named, Counter};
use crate::{bodies, call, held, hold, loads, meeting, pool, sizes, Body, Held, Hold};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            state_carries_over_unless_isolated,
            isolated_workers_have_unique_ids_within_max_threads,
            an_isolated_pool_is_back_at_min_threads_when_each_task_resolves,
            an_isolated_pool_with_min_threads_0_never_halts,
            isolation_never_fails_sibling_tasks_with_concurrency_2,
            recycle_replaces_every_worker,
            recycle_replaces_busy_workers_only_after_their_task,
            recycling_never_fails_sibling_tasks_with_concurrency_2,
        ],
        threads: [
            recycle_workers_replaces_idle_workers_at_once,
        ],
    }
}

fn state_carries_over_unless_isolated(runtime: Runtime) {
    for (isolate, expected) in [(false, [0, 1, 2]), (true, [0, 0, 0])] {
        let pool = pool(runtime)
            .max_threads(1)
            .isolate_workers(isolate)
            .build()
            .unwrap();
        let counts: Vec<u32> = (0..3)
            .map(|_| finish(call::<u32>(&pool, "counter")).unwrap())
            .collect();
        assert_eq!(counts, expected, "isolate_workers({isolate})");
        assert_eq!(pool.threads(), 1, "the minimum stays after each task");
        pool.destroy().wait().unwrap();
    }
}

/// Scenarios 21, 22 and 24: isolated workers that run at the same time never share an id,
/// ids stay within max_threads, and no worker runs a second task.
fn isolated_workers_have_unique_ids_within_max_threads(runtime: Runtime) {
    let max = 3;
    let pool = pool(runtime)
        .isolate_workers(true)
        .min_threads(0)
        .max_threads(max)
        .build()
        .unwrap();
    let mut seen = HashSet::new();
    for round in 0..10 {
        let holds: Vec<Hold> = (0..max as u32).map(|tag| hold(&pool, tag)).collect();
        for (tag, (_, port)) in (0..).zip(&holds) {
            assert_eq!(next(port), Ok(tag), "round {round}: all run at once");
        }
        for (_, port) in &holds {
            port.send(0).unwrap();
        }
        let ran: Vec<Held> = holds.into_iter().map(|(task, _)| held(task)).collect();
        let ids: HashSet<usize> = ran.iter().map(|h| h.1.expect("in a worker")).collect();
        assert_eq!(ids, (1..=max).collect(), "round {round}: {ran:?}");
        let fresh: HashSet<String> = ran.into_iter().map(|h| h.2).collect();
        assert_eq!(fresh.len(), max);
        assert!(
            fresh.is_disjoint(&seen),
            "round {round}: an isolated worker ran a second task"
        );
        seen.extend(fresh);
    }
    // Many more tasks than workers, all at once.
    for _ in 0..3 {
        let tasks: Vec<Task<Option<usize>>> = (0..8).map(|_| call(&pool, "id")).collect();
        for task in tasks {
            let id = finish(task).unwrap();
            assert!(matches!(id, Some(1..=3)), "{id:?}");
        }
    }
    pool.destroy().wait().unwrap();
}

/// Scenario 23: an isolated pool counts its replacements before a task resolves, so it is
/// at min_threads after each one.
fn an_isolated_pool_is_back_at_min_threads_when_each_task_resolves(runtime: Runtime) {
    let pool = pool(runtime)
        .isolate_workers(true)
        .min_threads(2)
        .max_threads(3)
        .build()
        .unwrap();
    assert_eq!(pool.threads(), 2);
    for run in 0..6 {
        assert_eq!(finish(call::<u32>(&pool, "counter")), Ok(0), "run {run}");
        assert_eq!(sizes(&pool), (2, 0), "after run {run}");
    }
    pool.destroy().wait().unwrap();
}

/// Scenario 25 (Tinypool #42): more tasks than max_threads on an isolated pool with
/// min_threads 0: every one resolves, and the workers then go.
fn an_isolated_pool_with_min_threads_0_never_halts(runtime: Runtime) {
    let pool = pool(runtime)
        .isolate_workers(true)
        .min_threads(0)
        .max_threads(3)
        .build()
        .unwrap();
    let tasks: Vec<Task<i32>> = (0..7).map(|i| pool.run((i, 100))).collect();
    for (i, task) in (0..7).zip(tasks) {
        assert_eq!(finish(task), Ok(i + 100));
    }
    eventually("every worker left", || pool.threads() == 0);
    assert_eq!(pool.queue_size(), 0);
    pool.destroy().wait().unwrap();
}

/// §2.19 item 5 with isolate_workers and concurrency 2: every task still resolves, in order,
/// each on a fresh worker.
fn isolation_never_fails_sibling_tasks_with_concurrency_2(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .isolate_workers(true)
        .build()
        .unwrap();
    let holds: Vec<Hold> = (0..4).map(|tag| hold(&pool, tag)).collect();
    for (tag, (_, port)) in (0..).zip(&holds) {
        assert_eq!(next(port), Ok(tag));
        port.send(0).unwrap();
    }
    let ran: Vec<Held> = holds.into_iter().map(|(task, _)| held(task)).collect();
    let tags: Vec<u32> = ran.iter().map(|h| h.0).collect();
    assert_eq!(tags, [0, 1, 2, 3]);
    let distinct: HashSet<&String> = ran.iter().map(|h| &h.2).collect();
    assert_eq!(distinct.len(), 4, "no two tasks shared a worker");
    for _ in 0..3 {
        assert_eq!(finish(call::<u32>(&pool, "counter")), Ok(0));
    }
    pool.destroy().wait().unwrap();
}

fn recycle_replaces_every_worker(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let before: String = finish(call(&pool, "identity")).unwrap();
    common::recycle(&pool);
    assert_eq!(pool.threads(), 1);
    let after: String = finish(call(&pool, "identity")).unwrap();
    assert_ne!(before, after, "a new worker serves after recycling");
    pool.destroy().wait().unwrap();
}

/// Scenario 35: `recycle_workers` replaces the idle worker at once and the busy one only
/// after its task, which is not cut short; new tasks go to new workers.
fn recycle_replaces_busy_workers_only_after_their_task(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).max_threads(2).build().unwrap();
    let both = [hold(&pool, 0), hold(&pool, 1)];
    for (tag, (_, port)) in (0..).zip(&both) {
        assert_eq!(next(port), Ok(tag));
        port.send(0).unwrap();
    }
    let old: HashSet<String> = both.into_iter().map(|(task, _)| held(task).2).collect();
    assert_eq!(old.len(), 2);

    let (busy, port) = hold(&pool, 2);
    assert_eq!(next(&port), Ok(2));
    common::recycle(&pool); // Resolves once the idle worker stopped.
    assert!(
        !busy.is_finished(),
        "the busy worker's task was not cut short"
    );
    assert_eq!(pool.threads(), 2, "the idle worker was replaced");
    assert_eq!(loads(&pool), [0, 1]);
    let fresh: String = finish(call(&pool, "identity")).unwrap();
    assert!(!old.contains(&fresh), "a new task goes to the replacement");

    port.send(0).unwrap();
    let busy = held(busy).2;
    assert!(
        old.contains(&busy),
        "the task ran to its end on its old worker"
    );
    let both = [hold(&pool, 3), hold(&pool, 4)];
    for (tag, (_, port)) in (3..).zip(&both) {
        assert_eq!(next(port), Ok(tag));
        port.send(0).unwrap();
    }
    let new: HashSet<String> = both.into_iter().map(|(task, _)| held(task).2).collect();
    assert_eq!(new.len(), 2);
    assert!(new.is_disjoint(&old), "old {old:?}, new {new:?}");
    assert_eq!(pool.threads(), 2);
    pool.destroy().wait().unwrap();
}

/// §2.19 item 5: Tinypool fails the other tasks of a recycled worker; here both tasks of the
/// worker run to their end on it, and then it is replaced.
fn recycling_never_fails_sibling_tasks_with_concurrency_2(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let (first, first_port) = hold(&pool, 1);
    let (second, second_port) = hold(&pool, 2);
    assert_eq!(next(&first_port), Ok(1));
    assert_eq!(loads(&pool), [2], "both tasks are on the one worker");
    common::recycle(&pool);

    first_port.send(0).unwrap();
    assert_eq!(next(&second_port), Ok(2));
    second_port.send(0).unwrap();
    let (one, two) = (held(first), held(second));
    assert_eq!((one.0, two.0), (1, 2));
    assert_eq!(one.2, two.2, "both ran on the recycled worker");
    let new: String = finish(call(&pool, "identity")).unwrap();
    assert_ne!(new, one.2, "then it was replaced");
    pool.destroy().wait().unwrap();
}

// ---- Threads only -------------------------------------------------------------------------------

/// Runs `n` meeting tasks at once (the `round`-th such batch on this counter); returns their
/// (worker id, marker) pairs.
fn meet(pool: &Pool, n: usize, round: usize) -> Vec<(usize, u64)> {
    let target = n * (round + 1);
    let tasks: Vec<Task<(usize, u64)>> = (0..n).map(|_| pool.run(target)).collect();
    tasks
        .into_iter()
        .map(|task| finish(task).unwrap())
        .collect()
}

fn markers(pairs: &[(usize, u64)]) -> HashSet<u64> {
    pairs.iter().map(|&(_, marker)| marker).collect()
}

fn recycle_workers_replaces_idle_workers_at_once() {
    // Scenario 34.
    let met = Counter::new();
    let pool = Pool::builder()
        .exports(meeting(&met))
        .min_threads(2)
        .max_threads(2)
        .thread_name("i-recidle")
        .build()
        .unwrap();
    let old = markers(&meet(&pool, 2, 0));
    assert_eq!(old.len(), 2);
    assert_eq!(
        markers(&meet(&pool, 2, 1)),
        old,
        "without recycling, workers stay"
    );

    common::recycle(&pool);
    assert_eq!(pool.threads(), 2);
    let new = markers(&meet(&pool, 2, 2));
    assert_eq!(new.len(), 2);
    assert!(new.is_disjoint(&old), "old {old:?}, new {new:?}");
    eventually("the old threads exited", || threads_named("i-recidle") == 2);
    assert_eq!(
        markers(&meet(&pool, 2, 3)),
        new,
        "the new workers stay in turn"
    );
}
