//! `cancel_pending_tasks` with worker threads only: after a cancel, a pool with two busy
//! workers queues and runs new tasks as before. Scenario 72 and the rest of cancelling
//! (spec §1.4) are tested for both runtimes in `tests/runtimes.rs`.

mod common;

use common::{finish, Counter, Gate};
use tinypool::{Error, Exports, Pool, Task};

/// A default export that reports it started, blocks until `gate` opens and returns its
/// argument.
fn blocking(gate: &Gate, started: &Counter) -> Exports {
    let (gate, started) = (gate.clone(), started.clone());
    Exports::new().export_default(move |x: u32| {
        started.bump();
        gate.wait();
        x
    })
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
