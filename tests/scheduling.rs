//! The scheduler: when workers are added and leave, the queue and its limits, concurrency per
//! worker, and the counters (spec §2.3-2.7, scenarios 31-33, 65-70, 105, §2.19 item 6).

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{block_on, eventually, finish, threads_named, Counter, Gate};
use tinypool::{Error, Exports, MaxQueue, Pool, RunOptions, Task};

/// A number unique to the calling thread: tells whether two tasks ran on the same worker.
fn marker() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static MARKER: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    MARKER.with(|marker| *marker)
}

/// A default export that reports it started and then blocks until `gate` opens.
fn blocking(gate: &Gate, started: &Counter) -> Exports {
    let (gate, started) = (gate.clone(), started.clone());
    Exports::new().default(move |()| {
        started.bump();
        gate.wait();
    })
}

/// A default export that waits until `target` tasks in all have reached it, so that tasks
/// provably run at the same time, and returns its thread's marker.
fn meeting(met: &Counter) -> Exports {
    let met = met.clone();
    Exports::new().default(move |target: usize| {
        met.bump();
        met.wait_for(target);
        marker()
    })
}

fn sizes(pool: &Pool) -> (usize, usize) {
    (pool.threads(), pool.queue_size())
}

#[test]
fn a_worker_is_added_per_blocked_task_up_to_max_threads_then_tasks_queue() {
    // Scenarios 65 and 105.
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .min_threads(2)
        .max_threads(3)
        .thread_name("s-growth")
        .build()
        .unwrap();
    assert_eq!(sizes(&pool), (2, 0));
    let mut tasks: Vec<Task<()>> = Vec::new();
    for expected in [(2, 0), (2, 0), (3, 0), (3, 1)] {
        tasks.push(pool.run(()));
        assert_eq!(sizes(&pool), expected, "after run {}", tasks.len());
    }
    started.wait_for(3);
    assert_eq!(sizes(&pool), (3, 1));

    gate.open();
    started.wait_for(4);
    assert_eq!(pool.queue_size(), 0, "the queued task was taken");
    for task in tasks {
        finish(task).unwrap();
    }
}

#[test]
fn a_full_queue_rejects_with_queue_full_and_destroy_fails_the_rest() {
    // Scenario 66.
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .min_threads(0)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(2))
        .thread_name("s-qfull")
        .build()
        .unwrap();
    let mut tasks: Vec<Task<()>> = Vec::new();
    for expected in [(1, 0), (1, 1), (1, 2)] {
        tasks.push(pool.run(()));
        assert_eq!(sizes(&pool), expected, "after run {}", tasks.len());
    }
    let fourth = pool.run::<(), _>(());
    assert_eq!(finish(fourth), Err(Error::QueueFull));
    assert_eq!(sizes(&pool), (1, 2), "a rejected task leaves no trace");
    started.wait_for(1);

    let destroyed = pool.destroy();
    for task in tasks {
        assert_eq!(finish(task), Err(Error::Terminated));
    }
    gate.open();
    destroyed.wait().unwrap();
}

#[test]
fn max_queue_zero_rejects_with_no_queue_when_the_only_worker_is_busy() {
    // Scenario 67: the worker is started on demand.
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .min_threads(0)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .thread_name("s-noq")
        .build()
        .unwrap();
    let first = pool.run::<(), _>(());
    assert_eq!(
        sizes(&pool),
        (1, 0),
        "a worker being started takes the task: no queue needed"
    );
    let second = pool.run::<(), _>(());
    assert_eq!(finish(second), Err(Error::NoQueue));
    assert_eq!(sizes(&pool), (1, 0));

    started.wait_for(1);
    let destroyed = pool.destroy();
    assert_eq!(finish(first), Err(Error::Terminated));
    gate.open();
    destroyed.wait().unwrap();
}

#[test]
fn max_queue_zero_rejects_with_no_queue_on_fixed_threads() {
    // Scenario 68.
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .min_threads(1)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .thread_name("s-noqfix")
        .build()
        .unwrap();
    let first = pool.run::<(), _>(());
    assert_eq!(sizes(&pool), (1, 0));
    assert_eq!(finish(pool.run::<(), _>(())), Err(Error::NoQueue));
    started.wait_for(1);
    assert_eq!(finish(pool.run::<(), _>(())), Err(Error::NoQueue));

    gate.open();
    finish(first).unwrap();
    // Once the worker is free again, a task is accepted.
    finish(pool.run::<(), _>(())).unwrap();
}

#[test]
fn a_resolved_task_no_longer_occupies_its_worker() {
    // Once a caller has its result, the worker is free: with no queue, the next task is
    // accepted, every time, and the snapshot shows the worker idle.
    let pool = Pool::builder()
        .exports(Exports::new().default(|x: u32| x + 1))
        .min_threads(1)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .thread_name("s-free")
        .build()
        .unwrap();
    for x in 0..500u32 {
        assert_eq!(finish(pool.run::<u32, _>(x)), Ok(x + 1), "task {x}");
        let running: Vec<usize> = pool.workers().iter().map(|w| w.running).collect();
        assert_eq!(running, [0], "after task {x}");
    }
    assert_eq!(pool.completed(), 500);
}

#[test]
fn two_tasks_share_a_worker_with_concurrency_2_and_no_queue_until_destroy() {
    // Scenario 69.
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .min_threads(0)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .concurrent_tasks_per_worker(2)
        .thread_name("s-share")
        .build()
        .unwrap();
    let first = pool.run::<(), _>(());
    assert_eq!(sizes(&pool), (1, 0));
    let second = pool.run::<(), _>(());
    assert_eq!(sizes(&pool), (1, 0));
    assert!(
        !second.is_finished(),
        "the worker has room for a second task"
    );
    assert_eq!(pool.workers()[0].running, 2);
    let third = pool.run::<(), _>(());
    assert_eq!(finish(third), Err(Error::NoQueue));

    started.wait_for(1);
    let destroyed = pool.destroy();
    assert_eq!(finish(first), Err(Error::Terminated));
    assert_eq!(finish(second), Err(Error::Terminated));
    gate.open();
    destroyed.wait().unwrap();
}

#[test]
fn two_tasks_share_a_fixed_worker_with_concurrency_2_and_both_finish() {
    // Scenario 70. Functions are synchronous, so the worker runs its two tasks one after the
    // other; both are accepted although max_queue is 0.
    let (gate, started) = (Gate::new(), Counter::new());
    let exports = {
        let (gate, started) = (gate.clone(), started.clone());
        Exports::new().default(move |x: i32| {
            started.bump();
            gate.wait();
            -x
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .concurrent_tasks_per_worker(2)
        .thread_name("s-share2")
        .build()
        .unwrap();
    let first = pool.run::<i32, _>(1i32);
    assert_eq!(sizes(&pool), (1, 0));
    let second = pool.run::<i32, _>(2i32);
    assert_eq!(sizes(&pool), (1, 0));
    started.wait_for(1);
    gate.open();
    assert_eq!(finish(first), Ok(-1));
    assert_eq!(finish(second), Ok(-2));
    assert_eq!(sizes(&pool), (1, 0));
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
        Exports::new().default(move |i: u32| {
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
fn a_new_worker_takes_as_many_queued_tasks_as_its_concurrency_allows() {
    // §2.19 item 6: Tinypool's newly ready worker takes a single queued task.
    let (first_gate, second_gate) = (Gate::new(), Gate::new());
    let started = Counter::new();
    let exports = {
        let (first_gate, second_gate, started) =
            (first_gate.clone(), second_gate.clone(), started.clone());
        Exports::new().default(move |second: bool| {
            started.bump();
            if second {
                second_gate.wait();
            } else {
                first_gate.wait();
            }
            marker()
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .thread_name("s-refill")
        .build()
        .unwrap();
    let old: Vec<Task<u64>> = vec![pool.run(false), pool.run(false)];
    started.wait_for(1);
    let new: Vec<Task<u64>> = vec![pool.run(true), pool.run(true)];
    assert_eq!(sizes(&pool), (1, 2));

    // The busy worker is replaced once its two tasks are done; its replacement is new.
    let recycled = pool.recycle_workers();
    finish(recycled).unwrap();
    first_gate.open();
    let old: Vec<u64> = old.into_iter().map(|task| finish(task).unwrap()).collect();
    assert_eq!(old[0], old[1]);

    started.wait_for(3);
    assert_eq!(
        pool.queue_size(),
        0,
        "the new worker took both queued tasks at once"
    );
    let running: Vec<usize> = pool.workers().iter().map(|w| w.running).collect();
    assert_eq!(running, [2]);
    assert_eq!(started.get(), 3);

    second_gate.open();
    let new: Vec<u64> = new.into_iter().map(|task| finish(task).unwrap()).collect();
    assert_eq!(new[0], new[1]);
    assert_ne!(new[0], old[0]);
}

#[test]
fn queued_tasks_start_in_submission_order() {
    let (gate, started) = (Gate::new(), Counter::new());
    let order = Arc::new(Mutex::new(Vec::new()));
    let exports = {
        let (gate, started, order) = (gate.clone(), started.clone(), order.clone());
        Exports::new().default(move |i: u32| {
            order.lock().unwrap().push(i);
            started.bump();
            gate.wait();
            i
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .thread_name("s-fifo")
        .build()
        .unwrap();
    let tasks: Vec<Task<u32>> = (0..8u32).map(|i| pool.run(i)).collect();
    started.wait_for(1);
    assert_eq!(pool.queue_size(), 7);
    gate.open();
    for (i, task) in (0..8u32).zip(tasks) {
        assert_eq!(finish(task), Ok(i));
    }
    assert_eq!(*order.lock().unwrap(), (0..8u32).collect::<Vec<_>>());
}

#[test]
fn idle_timeout_lets_workers_above_min_leave_and_they_come_back_on_demand() {
    // Scenario 33: min 1 / max 2; two tasks that wait for each other need two workers.
    let met = Counter::new();
    let pool = Pool::builder()
        .exports(meeting(&met))
        .min_threads(1)
        .max_threads(2)
        .idle_timeout(Duration::from_millis(50))
        .thread_name("s-idle")
        .build()
        .unwrap();
    assert_eq!(pool.threads(), 1);
    let burst: Vec<Task<u64>> = vec![pool.run(2usize), pool.run(2usize)];
    assert_eq!(pool.threads(), 2);
    let mut markers: Vec<u64> = burst.into_iter().map(|t| finish(t).unwrap()).collect();
    assert_ne!(markers[0], markers[1]);

    eventually("the idle worker above min_threads left", || {
        pool.threads() == 1
    });
    eventually("its thread exited", || threads_named("s-idle") == 1);

    let burst: Vec<Task<u64>> = vec![pool.run(4usize), pool.run(4usize)];
    assert_eq!(pool.threads(), 2);
    markers.extend(burst.into_iter().map(|t| finish(t).unwrap()));
    markers.sort_unstable();
    markers.dedup();
    assert_eq!(markers.len(), 3, "one worker stayed, one left, one came");
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
        .exports(Exports::new().default(|()| marker()))
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

#[test]
fn ten_thousand_tasks_on_two_workers_all_resolve_with_correct_values() {
    // Scenario 32.
    let pool = Pool::builder()
        .exports(Exports::new().default(|x: u64| x * 3 + 1))
        .min_threads(2)
        .max_threads(2)
        .thread_name("s-10k")
        .build()
        .unwrap();
    let tasks: Vec<Task<u64>> = (0..10_000u64).map(|x| pool.run(x)).collect();
    for (x, task) in (0..10_000u64).zip(tasks) {
        assert_eq!(finish(task), Ok(x * 3 + 1));
    }
    assert_eq!(pool.completed(), 10_000);
    assert_eq!(sizes(&pool), (2, 0));
}

#[test]
fn ten_thousand_tasks_from_four_caller_threads_all_resolve_with_correct_values() {
    let pool = Pool::builder()
        .exports(Exports::new().default(|x: u64| x * 3 + 1))
        .min_threads(2)
        .max_threads(2)
        .thread_name("s-10k4")
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        for caller in 0..4u64 {
            let pool = pool.clone();
            scope.spawn(move || {
                let values = caller * 2_500..(caller + 1) * 2_500;
                let tasks: Vec<Task<u64>> = values.clone().map(|x| pool.run(x)).collect();
                for (x, task) in values.zip(tasks) {
                    // Half the callers block, half poll the task as a future.
                    let result = if caller % 2 == 0 {
                        finish(task)
                    } else {
                        block_on(task)
                    };
                    assert_eq!(result, Ok(x * 3 + 1));
                }
            });
        }
    });
    assert_eq!(pool.completed(), 10_000);
    assert_eq!(sizes(&pool), (2, 0));
}

#[test]
fn completed_counts_tasks_that_ran_with_a_value_or_an_error_but_not_rejected_ones() {
    let (gate, started) = (Gate::new(), Counter::new());
    let exports = {
        let (gate, started) = (gate.clone(), started.clone());
        Exports::new()
            .default(|x: u32| x)
            .export("panic", |()| -> u32 { panic!("counted") })
            .export("block", move |()| {
                started.bump();
                gate.wait();
            })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .thread_name("s-count")
        .build()
        .unwrap();
    assert_eq!(pool.completed(), 0);
    assert_eq!(finish(pool.run::<u32, _>(1u32)), Ok(1));
    assert_eq!(pool.completed(), 1);
    assert!(finish(pool.run_with::<u32, _>((), RunOptions::new().name("panic"))).is_err());
    assert!(finish(pool.run_with::<u32, _>((), RunOptions::new().name("nope"))).is_err());
    assert!(finish(pool.run::<u32, _>(1i64)).is_err());
    assert_eq!(pool.completed(), 4, "errors from the worker count");

    let blocked = pool.run_with::<(), _>((), RunOptions::new().name("block"));
    started.wait_for(1);
    assert_eq!(finish(pool.run::<u32, _>(2u32)), Err(Error::NoQueue));
    assert_eq!(pool.completed(), 4, "a rejected task never ran");
    gate.open();
    finish(blocked).unwrap();
    assert_eq!(pool.completed(), 5);
}

#[test]
fn duration_is_the_time_since_build() {
    let before = Instant::now();
    let pool = Pool::builder()
        .exports(Exports::new().default(|x: u32| x))
        .min_threads(0)
        .max_threads(1)
        .thread_name("s-dur")
        .build()
        .unwrap();
    let first = pool.duration();
    assert!(first <= before.elapsed());
    std::thread::sleep(Duration::from_millis(5));
    let second = pool.duration();
    assert!(
        second >= first + Duration::from_millis(5),
        "{first:?} then {second:?}"
    );
    assert!(second <= before.elapsed());
}

#[test]
fn workers_lists_each_live_worker_with_its_id_and_load() {
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .min_threads(2)
        .max_threads(3)
        .thread_name("s-snap")
        .build()
        .unwrap();
    let ids = |pool: &Pool| {
        let mut ids: Vec<usize> = pool.workers().iter().map(|w| w.id).collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(ids(&pool), [1, 2]);
    assert!(pool
        .workers()
        .iter()
        .all(|w| w.running == 0 && w.pid.is_none()));

    let tasks: Vec<Task<()>> = (0..4).map(|_| pool.run(())).collect();
    started.wait_for(3);
    assert_eq!(ids(&pool), [1, 2, 3]);
    assert!(pool.workers().iter().all(|w| w.running == 1));
    assert_eq!(pool.queue_size(), 1, "a queued task is on no worker");

    gate.open();
    for task in tasks {
        finish(task).unwrap();
    }
    eventually("the worker above min_threads left", || {
        pool.workers().len() == 2
    });
    assert!(pool.workers().iter().all(|w| w.running == 0));
}
