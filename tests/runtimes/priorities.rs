//! Priorities (`RunOptions::priority`): on a busy pool, queued tasks run highest priority
//! first, in the order they came within a priority, whichever way they entered the queue.

use tinypool::{AbortController, RunOptions, Runtime, Task};

use crate::common::{finish, next};
use crate::{bodies, held, hold, pool};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            queued_tasks_run_by_priority_then_in_order,
            a_priority_overtakes_tasks_that_queued_through_the_fast_path,
            a_low_priority_waits_for_every_default_task,
            abortable_tasks_keep_their_priority,
        ],
        threads: [],
    }
}

use crate::Body;

/// "counter" with a priority: returns how many "counter" tasks its worker ran before it, that
/// is, with one worker, where the task came in the order of runs.
fn counter(pool: &tinypool::Pool, priority: i32) -> Task<u32> {
    let options = RunOptions::new().name("counter").priority(priority);
    pool.run_with((), options)
}

/// A one-worker pool, its worker held by a "hold" task while `queue` submits; returns the
/// run order of each task `queue` submitted (0 ran first), once released.
fn run_order(runtime: Runtime, queue: impl FnOnce(&tinypool::Pool) -> Vec<Task<u32>>) -> Vec<u32> {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (task, port) = hold(&pool, 1);
    assert_eq!(next(&port), Ok(1), "the worker is busy");
    let tasks = queue(&pool);
    port.send(0).unwrap();
    held(task);
    let order = tasks
        .into_iter()
        .map(|task| finish(task).unwrap())
        .collect();
    pool.destroy().wait().unwrap();
    order
}

fn queued_tasks_run_by_priority_then_in_order(runtime: Runtime) {
    let priorities = [0, -1, 5, 0, 5, 10, -1, i32::MIN, i32::MAX];
    let order = run_order(runtime, |pool| {
        let tasks = priorities.iter().map(|&p| counter(pool, p)).collect();
        assert_eq!(pool.queue_size(), priorities.len());
        tasks
    });
    // Highest first; equal priorities in the order they were submitted.
    assert_eq!(order, [4, 6, 2, 5, 3, 1, 7, 8, 0], "{priorities:?}");
}

/// Twenty default-priority tasks fill the queue of a saturated pool, most of them through its
/// lock-free intake; a task of higher priority submitted after them still runs first.
fn a_priority_overtakes_tasks_that_queued_through_the_fast_path(runtime: Runtime) {
    let order = run_order(runtime, |pool| {
        let mut tasks: Vec<Task<u32>> = (0..20).map(|_| counter(pool, 0)).collect();
        tasks.push(counter(pool, 1));
        tasks
    });
    let expected: Vec<u32> = (1..=20).chain([0]).collect();
    assert_eq!(order, expected);
}

/// A task of negative priority waits for every default task, those still in the intake too.
fn a_low_priority_waits_for_every_default_task(runtime: Runtime) {
    let order = run_order(runtime, |pool| {
        let mut tasks = vec![counter(pool, -1)];
        tasks.extend((0..20).map(|_| counter(pool, 0)));
        tasks
    });
    let expected: Vec<u32> = [20].into_iter().chain(0..20).collect();
    assert_eq!(order, expected);
}

/// Tasks with an abort signal (which run alone) are ordered by priority too, and one aborted
/// while queued leaves the others' order intact.
fn abortable_tasks_keep_their_priority(runtime: Runtime) {
    let order = run_order(runtime, |pool| {
        let controllers: Vec<AbortController> = (0..4).map(|_| AbortController::new()).collect();
        let tasks: Vec<Task<u32>> = [(0, 1), (1, 3), (2, 2), (3, 3)]
            .into_iter()
            .map(|(i, priority)| {
                let options = RunOptions::new()
                    .name("counter")
                    .priority(priority)
                    .signal(controllers[i].signal());
                pool.run_with((), options)
            })
            .collect();
        controllers[1].abort();
        let mut tasks = tasks.into_iter();
        let first = tasks.next().unwrap();
        let aborted = tasks.next().unwrap();
        assert!(matches!(
            finish(aborted),
            Err(tinypool::Error::Aborted { .. })
        ));
        std::iter::once(first).chain(tasks).collect()
    });
    assert_eq!(order, [2, 1, 0]);
}
