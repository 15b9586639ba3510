//! Recycling with worker threads only (scenario 34): idle workers are replaced at once,
//! their threads exit, and the replacements stay. Isolation, worker ids and the rest of
//! recycling (spec §2.13, scenarios 19-25, 35, §2.19 item 5) are tested for both runtimes in
//! `tests/runtimes.rs`.

mod common;

use std::collections::HashSet;

use common::{eventually, finish, marker, threads_named, Counter};
use tinypool::{worker, Exports, Pool, Task};

/// Tasks that wait until `target` tasks in all have reached them (so they provably run at
/// the same time), then return their worker's id and thread marker.
fn meeting(met: &Counter) -> Exports {
    let met = met.clone();
    Exports::new().export_default(move |target: usize| {
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
