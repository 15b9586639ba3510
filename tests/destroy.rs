//! Destroying a pool with worker threads only (spec §1.4, §2.8, scenario 43): a running
//! task fails at once, while its function, which sees `worker::aborted()`, is still winding
//! down. The rest of destroy and teardown (scenarios 44, 66, 67, 69, 73-75, the stuck worker,
//! the dropped pool) is tested for both runtimes in `tests/runtimes.rs`.

mod common;

use std::time::Duration;

use common::{finish, live, Counter};
use tinypool::{worker, Error, Exports, Pool};

/// Blocks until the pool is destroyed (or the task aborted), as a well-behaved long function.
fn until_aborted() {
    while !worker::aborted() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

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
