//! The scheduler, with worker threads only: what in-process functions show precisely (how
//! many tasks run at once, threads leaving after `idle_timeout`). The rest of the scheduler's
//! behaviour (spec §2.3-2.7, scenarios 31-33, 65-70, 105, §2.19 item 6) is tested for both
//! runtimes in `tests/runtimes.rs`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, finish, marker, threads_named, Counter, Gate};
use tinypool::{Exports, Pool, Task};

/// A default export that waits until `target` tasks in all have reached it, so that tasks
/// provably run at the same time, and returns its thread's marker.
fn meeting(met: &Counter) -> Exports {
    let met = met.clone();
    Exports::new().export_default(move |target: usize| {
        met.bump();
        met.wait_for(target);
        marker()
    })
}

fn sizes(pool: &Pool) -> (usize, usize) {
    (pool.threads(), pool.queue_size())
}

#[test]
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

#[test]
fn idle_timeout_zero_lets_every_worker_above_min_leave_once_idle() {
    let met = Counter::new();
    let pool = Pool::builder()
        .exports(meeting(&met))
        .min_threads(0)
        .max_threads(2)
        .thread_name("s-idle0")
        .build()
        .unwrap();
    let burst: Vec<Task<u64>> = vec![pool.run(2usize), pool.run(2usize)];
    assert_eq!(pool.threads(), 2);
    for task in burst {
        finish(task).unwrap();
    }
    eventually("both workers left", || pool.threads() == 0);
    eventually("their threads exited", || threads_named("s-idle0") == 0);
    // And the pool still works.
    let burst: Vec<Task<u64>> = vec![pool.run(4usize), pool.run(4usize)];
    for task in burst {
        finish(task).unwrap();
    }
}

#[test]
fn workers_at_min_threads_never_idle_out() {
    let pool = Pool::builder()
        .exports(Exports::new().export_default(|()| marker()))
        .min_threads(1)
        .max_threads(1)
        .idle_timeout(Duration::from_millis(1))
        .thread_name("s-keep")
        .build()
        .unwrap();
    let first = finish(pool.run::<u64, _>(())).unwrap();
    // Many rounds of idling far past the timeout: the only worker must stay the same.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(pool.threads(), 1);
        assert_eq!(finish(pool.run::<u64, _>(())), Ok(first));
    }
}
