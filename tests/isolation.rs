//! Isolated workers, worker ids, and recycling (spec §2.13, scenarios 19-25, 34, 35, and
//! §2.19 item 5).

mod common;

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{eventually, finish, threads_named, Counter, Gate};
use tinypool::{worker, Error, Exports, Pool, RunOptions, Task};

/// A number unique to the calling thread: tells whether two tasks ran on the same worker.
fn marker() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static MARKER: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    MARKER.with(|marker| *marker)
}

/// Scenario 19's "isolated" fixture: returns a thread-local counter, post-incremented. The
/// thread-local is the Rust counterpart of module-level state.
fn counting() -> Exports {
    thread_local! {
        static COUNT: Cell<u32> = const { Cell::new(0) };
    }
    Exports::new().default(|()| COUNT.with(|count| count.replace(count.get() + 1)))
}

/// Tasks that wait until `target` tasks in all have reached them (so they provably run at
/// the same time), then return their worker's id and thread marker.
fn meeting(met: &Counter) -> Exports {
    let met = met.clone();
    Exports::new().default(move |target: usize| {
        met.bump();
        met.wait_for(target);
        (worker::id().expect("inside a worker"), marker())
    })
}

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

#[test]
fn without_isolation_thread_local_state_carries_over_between_tasks() {
    // Scenario 19.
    let pool = Pool::builder()
        .exports(counting())
        .min_threads(1)
        .max_threads(1)
        .isolate_workers(false)
        .thread_name("i-shared")
        .build()
        .unwrap();
    let counts: Vec<u32> = (0..3)
        .map(|_| finish(pool.run::<u32, _>(())).unwrap())
        .collect();
    assert_eq!(counts, [0, 1, 2]);
}

#[test]
fn with_isolation_thread_local_state_never_carries_over() {
    // Scenario 20.
    let pool = Pool::builder()
        .exports(counting().export("marker", |()| marker()))
        .min_threads(1)
        .max_threads(1)
        .isolate_workers(true)
        .thread_name("i-isolated")
        .build()
        .unwrap();
    let counts: Vec<u32> = (0..3)
        .map(|_| finish(pool.run::<u32, _>(())).unwrap())
        .collect();
    assert_eq!(counts, [0, 0, 0]);
    let marker =
        |pool: &Pool| finish(pool.run_with::<u64, _>((), RunOptions::new().name("marker")));
    let (first, second) = (marker(&pool).unwrap(), marker(&pool).unwrap());
    assert_ne!(first, second, "every task gets a fresh thread");
}

#[test]
fn isolated_worker_ids_never_exceed_max_threads_1() {
    // Scenario 21. Unlike Tinypool, a destroyed pool runs nothing: build a fresh one.
    let destroyed = Pool::builder()
        .exports(Exports::new().default(|()| worker::id()))
        .isolate_workers(true)
        .max_threads(1)
        .thread_name("i-destroyed")
        .build()
        .unwrap();
    destroyed.destroy().wait().unwrap();
    assert_eq!(
        finish(destroyed.run::<Option<usize>, _>(())),
        Err(Error::Terminated)
    );

    let pool = Pool::builder()
        .exports(Exports::new().default(|()| worker::id()))
        .isolate_workers(true)
        .max_threads(1)
        .thread_name("i-id1")
        .build()
        .unwrap();
    for _ in 0..5 {
        assert_eq!(finish(pool.run::<Option<usize>, _>(())), Ok(Some(1)));
    }
}

#[test]
fn isolated_worker_ids_never_exceed_max_threads() {
    // Scenario 22, with the tasks submitted at once rather than one after another.
    let max = 3;
    let pool = Pool::builder()
        .exports(Exports::new().default(|()| worker::id()))
        .isolate_workers(true)
        .min_threads(0)
        .max_threads(max)
        .thread_name("i-idmax")
        .build()
        .unwrap();
    for _ in 0..3 {
        let tasks: Vec<Task<Option<usize>>> = (0..8).map(|_| pool.run(())).collect();
        for task in tasks {
            let id = finish(task).unwrap().expect("inside a worker");
            assert!(
                (1..=max).contains(&id),
                "worker id {id} > max_threads {max}"
            );
        }
    }
}

#[test]
fn an_isolated_pool_is_back_at_min_threads_when_each_run_resolves() {
    // Scenario 23.
    let pool = Pool::builder()
        .exports(counting())
        .isolate_workers(true)
        .min_threads(2)
        .max_threads(3)
        .thread_name("i-keepmin")
        .build()
        .unwrap();
    assert_eq!(pool.threads(), 2);
    for run in 0..6 {
        assert_eq!(finish(pool.run::<u32, _>(())), Ok(0));
        assert_eq!(pool.threads(), 2, "after run {run}");
        assert_eq!(pool.queue_size(), 0);
    }
}

#[test]
fn concurrently_running_tasks_never_share_a_worker_id() {
    // Scenario 24: the tasks of each round wait for one another, so they really overlap.
    let max = 3;
    let met = Counter::new();
    let pool = Pool::builder()
        .exports(meeting(&met))
        .isolate_workers(true)
        .max_threads(max)
        .thread_name("i-unique")
        .build()
        .unwrap();
    let mut seen_markers = HashSet::new();
    for round in 0..10 {
        let pairs = meet(&pool, max, round);
        let ids: HashSet<usize> = pairs.iter().map(|&(id, _)| id).collect();
        assert_eq!(
            ids.len(),
            max,
            "round {round}: duplicate worker ids in {pairs:?}"
        );
        assert!(ids.iter().all(|id| (1..=max).contains(id)), "{pairs:?}");
        let fresh = markers(&pairs);
        assert_eq!(fresh.len(), max);
        assert!(
            fresh.is_disjoint(&seen_markers),
            "round {round}: an isolated worker ran a second task"
        );
        seen_markers.extend(fresh);
    }
}

#[test]
fn an_isolated_pool_with_min_threads_0_never_halts() {
    // Scenario 25 (Tinypool issue #42): more tasks than max_threads, none kept alive.
    let pool = Pool::builder()
        .exports(Exports::new().default(|i: u32| (i, worker::id())))
        .isolate_workers(true)
        .min_threads(0)
        .max_threads(3)
        .thread_name("i-nohalt")
        .build()
        .unwrap();
    let tasks: Vec<Task<(u32, Option<usize>)>> = (0..7u32).map(|i| pool.run(i)).collect();
    for (i, task) in (0..7u32).zip(tasks) {
        let (value, id) = finish(task).unwrap();
        assert_eq!(value, i);
        assert!(matches!(id, Some(1..=3)), "{id:?}");
    }
    eventually("every worker left", || pool.threads() == 0);
    assert_eq!(pool.queue_size(), 0);
}

#[test]
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

    finish(pool.recycle_workers()).unwrap();
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

#[test]
fn recycle_workers_replaces_busy_workers_only_after_their_task() {
    // Scenario 35: the busy worker finishes its task, then goes; the idle one goes at once.
    let (gate, started) = (Gate::new(), Counter::new());
    let met = Counter::new();
    let exports = {
        let (gate, started) = (gate.clone(), started.clone());
        meeting(&met).export("block", move |()| {
            started.bump();
            gate.wait();
            marker()
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(2)
        .max_threads(2)
        .thread_name("i-recbusy")
        .build()
        .unwrap();
    let old = markers(&meet(&pool, 2, 0));
    let busy = pool.run_with::<u64, _>((), RunOptions::new().name("block"));
    started.wait_for(1);

    let recycled = pool.recycle_workers();
    finish(recycled).expect("resolves once the idle worker stopped");
    assert!(
        !busy.is_finished(),
        "the busy worker's task was not cut short"
    );
    assert_eq!(pool.threads(), 2, "the idle worker was replaced");
    let mut load: Vec<usize> = pool.workers().iter().map(|w| w.running).collect();
    load.sort_unstable();
    assert_eq!(load, [0, 1]);

    // A new task goes to the replacement, not to the worker marked for recycling.
    let (_, fresh) = finish(pool.run::<(usize, u64), _>(1usize)).unwrap();
    assert!(!old.contains(&fresh));

    gate.open();
    let busy = finish(busy).unwrap();
    assert!(
        old.contains(&busy),
        "the task ran to its end on its old worker"
    );

    let new = markers(&meet(&pool, 2, 1));
    assert!(new.is_disjoint(&old), "old {old:?}, new {new:?}");
    assert_eq!(pool.threads(), 2);
}

#[test]
fn recycle_workers_resolves_at_once_when_every_worker_is_busy() {
    let (gate, started) = (Gate::new(), Counter::new());
    let exports = {
        let (gate, started) = (gate.clone(), started.clone());
        Exports::new().default(move |()| {
            started.bump();
            gate.wait();
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .thread_name("i-recall")
        .build()
        .unwrap();
    let busy = pool.run::<(), _>(());
    started.wait_for(1);
    finish(pool.recycle_workers()).unwrap();
    assert!(!busy.is_finished());
    gate.open();
    finish(busy).unwrap();
}

#[test]
fn recycling_never_fails_sibling_tasks_with_concurrency_2() {
    // §2.19 item 5: Tinypool rejects the other tasks of a recycled worker.
    let (gate, started) = (Gate::new(), Counter::new());
    let exports = {
        let (gate, started) = (gate.clone(), started.clone());
        Exports::new().default(move |i: u32| {
            started.bump();
            gate.wait();
            (i, marker())
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .thread_name("i-recsib")
        .build()
        .unwrap();
    let first = pool.run::<(u32, u64), _>(1u32);
    let second = pool.run::<(u32, u64), _>(2u32);
    started.wait_for(1);
    assert_eq!(
        pool.workers()[0].running,
        2,
        "both tasks are on the one worker"
    );
    finish(pool.recycle_workers()).unwrap();

    gate.open();
    let (one, old) = finish(first).unwrap();
    let (two, same) = finish(second).unwrap();
    assert_eq!((one, two), (1, 2));
    assert_eq!(old, same, "both ran on the recycled worker");
    let (_, new) = finish(pool.run::<(u32, u64), _>(3u32)).unwrap();
    assert_ne!(new, old, "then it was replaced");
}

#[test]
fn isolation_never_fails_sibling_tasks_with_concurrency_2() {
    // §2.19 item 5 with isolate_workers: every task still resolves, each on a fresh worker.
    let (gate, started) = (Gate::new(), Counter::new());
    let exports = {
        let (gate, started) = (gate.clone(), started.clone());
        counting().export("block", move |i: u32| {
            started.bump();
            gate.wait();
            (i, marker())
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .isolate_workers(true)
        .thread_name("i-isosib")
        .build()
        .unwrap();
    let block = || RunOptions::new().name("block");
    let tasks: Vec<Task<(u32, u64)>> = (0..4u32).map(|i| pool.run_with(i, block())).collect();
    started.wait_for(1);
    gate.open();
    let results: Vec<(u32, u64)> = tasks.into_iter().map(|t| finish(t).unwrap()).collect();
    let values: Vec<u32> = results.iter().map(|&(i, _)| i).collect();
    assert_eq!(values, [0, 1, 2, 3]);
    let distinct: HashSet<u64> = results.iter().map(|&(_, marker)| marker).collect();
    assert_eq!(
        distinct.len(),
        4,
        "isolation holds: no two tasks shared a thread"
    );
    // And thread-local state still never carries over.
    for _ in 0..3 {
        assert_eq!(finish(pool.run::<u32, _>(())), Ok(0));
    }
}
