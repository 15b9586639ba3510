//! Builder options with worker threads only: their defaults, thread names, how min/max are
//! reconciled when only one is given, what is rejected, and what `MaxQueue::Auto` resolves to
//! (spec §1.2, scenarios 4, 26-28, 105, 106). `min_threads` at build, conflicting limits,
//! `MaxQueue` limits and a teardown that is not exported are tested for both runtimes in
//! `tests/runtimes.rs`.

mod common;

use common::{eventually, finish, threads_named, Counter, Gate};
use tinypool::{Error, Exports, MaxQueue, Pool, Runtime, Task};

fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A default export that reports it started and then blocks until `gate` opens.
fn blocking(gate: &Gate, started: &Counter) -> Exports {
    let (gate, started) = (gate.clone(), started.clone());
    Exports::new().export_default(move |()| {
        started.bump();
        gate.wait();
    })
}

fn invalid_options(result: Result<Pool, Error>) -> String {
    match result {
        Err(Error::InvalidOptions(message)) => message,
        other => panic!("expected Error::InvalidOptions, got {other:?}"),
    }
}

fn double() -> Exports {
    Exports::new().export_default(|x: u32| x * 2)
}

#[test]
fn defaults_start_half_the_parallelism_and_grow_to_all_of_it() {
    let parallelism = parallelism();
    let default_min = (parallelism / 2).max(1);
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .thread_name("o-defaults")
        .build()
        .unwrap();
    assert_eq!(pool.threads(), default_min);
    assert_eq!(pool.queue_size(), 0);

    // One task per worker (default concurrency 1) up to max = parallelism, then the queue
    // (unbounded by default) takes the rest.
    let tasks: Vec<Task<()>> = (0..parallelism + 3).map(|_| pool.run(())).collect();
    started.wait_for(parallelism);
    assert_eq!(pool.threads(), parallelism);
    assert_eq!(pool.queue_size(), 3);
    assert!(tasks.iter().all(|task| !task.is_finished()));

    gate.open();
    for task in tasks {
        finish(task).unwrap();
    }
    // Default idle_timeout is 0: the workers above min leave as soon as they are idle.
    eventually("the pool is back to its default min_threads", || {
        pool.threads() == default_min
    });
    eventually("the extra threads have exited", || {
        threads_named("o-defaults") == default_min
    });
}

#[test]
fn default_thread_name_is_tinypool_dash_worker_id() {
    let pool = Pool::builder()
        .exports(Exports::new().export_default(|()| {
            let name = std::thread::current().name().map(str::to_owned);
            (name, tinypool::worker::id())
        }))
        .max_threads(1)
        .build()
        .unwrap();
    let (name, id) = finish(pool.run::<(Option<String>, Option<usize>), _>(())).unwrap();
    assert_eq!(id, Some(1));
    assert_eq!(name.as_deref(), Some("tinypool-1"));
}

#[test]
fn thread_name_sets_the_prefix_of_worker_thread_names() {
    let pool = Pool::builder()
        .exports(
            Exports::new().export_default(|()| std::thread::current().name().map(str::to_owned)),
        )
        .min_threads(1)
        .max_threads(1)
        .thread_name("o-named")
        .build()
        .unwrap();
    let name = finish(pool.run::<Option<String>, _>(())).unwrap();
    assert_eq!(name.as_deref(), Some("o-named-1"));
}

#[test]
fn only_max_threads_given_lowers_the_default_min_to_it() {
    // The default min is half the parallelism; a smaller max must pull it down instead of
    // conflicting with it.
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .max_threads(1)
        .thread_name("o-onlymax")
        .build()
        .expect("a max_threads below the default min is not a conflict");
    assert_eq!(pool.threads(), 1);
    let first = pool.run::<(), _>(());
    let second = pool.run::<(), _>(());
    started.wait_for(1);
    assert_eq!(pool.threads(), 1, "max_threads 1 is kept");
    assert_eq!(pool.queue_size(), 1);
    gate.open();
    finish(first).unwrap();
    finish(second).unwrap();
}

#[test]
fn only_max_threads_given_keeps_the_default_min_when_it_fits() {
    let parallelism = parallelism();
    let default_min = (parallelism / 2).max(1);
    let pool = Pool::builder()
        .exports(double())
        .max_threads(default_min + 1)
        .thread_name("o-maxfits")
        .build()
        .unwrap();
    assert_eq!(pool.threads(), default_min);
}

#[test]
fn only_min_threads_given_raises_the_default_max_to_it() {
    let parallelism = parallelism();
    let min = parallelism + 1;
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .min_threads(min)
        .thread_name("o-onlymin")
        .build()
        .expect("a min_threads above the default max is not a conflict");
    assert_eq!(pool.threads(), min, "all min_threads workers start");

    let tasks: Vec<Task<()>> = (0..min + 1).map(|_| pool.run(())).collect();
    started.wait_for(min);
    assert_eq!(
        pool.threads(),
        min,
        "max_threads was raised to min_threads, no further"
    );
    assert_eq!(pool.queue_size(), 1);
    gate.open();
    for task in tasks {
        finish(task).unwrap();
    }
}

#[test]
fn max_threads_zero_is_invalid_instead_of_hanging() {
    for builder in [
        Pool::builder().exports(double()).max_threads(0),
        Pool::builder()
            .exports(double())
            .min_threads(0)
            .max_threads(0),
    ] {
        let message = invalid_options(builder.build());
        assert!(message.contains("max_threads"), "{message}");
    }
}

#[test]
fn a_pool_without_exports_is_invalid() {
    let message = invalid_options(Pool::builder().build());
    assert!(message.contains("exports"), "{message}");
}

#[test]
fn a_pool_with_empty_exports_is_invalid() {
    let message = invalid_options(Pool::builder().exports(Exports::new()).build());
    assert!(message.contains("exports"), "{message}");
}

#[test]
fn a_pool_with_only_named_exports_is_valid() {
    let pool = Pool::builder()
        .exports(Exports::new().export("b", |()| 'b'))
        .name("b")
        .max_threads(1)
        .thread_name("o-onlynamed")
        .build()
        .unwrap();
    assert_eq!(finish(pool.run::<char, _>(())), Ok('b'));
}

#[test]
fn the_threads_runtime_is_the_default_and_can_be_named() {
    assert_eq!(Runtime::default(), Runtime::Threads);
    let pool = Pool::builder()
        .exports(double())
        .runtime(Runtime::Threads)
        .max_threads(1)
        .thread_name("o-runtime")
        .build()
        .unwrap();
    assert_eq!(finish(pool.run::<u32, _>(4u32)), Ok(8));
    // Threads are no child processes.
    assert!(pool.workers().iter().all(|worker| worker.pid.is_none()));
}

#[test]
fn a_teardown_that_does_not_take_unit_is_invalid() {
    let message = invalid_options(
        Pool::builder()
            .exports(double().export("namedTeardown", |x: i32| x))
            .teardown("namedTeardown")
            .build(),
    );
    assert!(message.contains("namedTeardown"), "{message}");
    assert!(message.contains("()"), "{message}");
    assert!(message.contains("i32"), "{message}");
}

/// Fills `max_threads` workers with blocking tasks, then queues until the queue refuses
/// (failing if it accepts more than `at_most`). Returns how many tasks the queue accepted.
fn queued_before_queue_full(
    pool: &Pool,
    workers: usize,
    started: &Counter,
    at_most: usize,
) -> usize {
    let mut tasks: Vec<Task<()>> = (0..workers).map(|_| pool.run(())).collect();
    started.wait_for(workers);
    let accepted = loop {
        let task = pool.run::<(), _>(());
        if task.is_finished() {
            assert_eq!(finish(task), Err(Error::QueueFull));
            break tasks.len() - workers;
        }
        tasks.push(task);
        let queued = tasks.len() - workers;
        assert!(
            queued <= at_most,
            "the queue took more than {at_most} tasks"
        );
    };
    assert_eq!(pool.queue_size(), accepted);
    tasks.into_iter().for_each(drop);
    accepted
}

#[test]
fn max_queue_auto_uses_the_reconciled_max_threads() {
    // Only min_threads given: max is raised to it before `Auto` is resolved.
    let min = parallelism() + 1;
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .min_threads(min)
        .max_queue(MaxQueue::Auto)
        .thread_name("o-autorec")
        .build()
        .unwrap();
    let accepted = queued_before_queue_full(&pool, min, &started, min * min);
    assert_eq!(accepted, min * min);
    gate.open();
}

#[test]
fn max_queue_is_unbounded_by_default() {
    let (gate, started) = (Gate::new(), Counter::new());
    let pool = Pool::builder()
        .exports(blocking(&gate, &started))
        .min_threads(1)
        .max_threads(1)
        .thread_name("o-unbound")
        .build()
        .unwrap();
    let tasks: Vec<Task<()>> = (0..500).map(|_| pool.run(())).collect();
    started.wait_for(1);
    assert_eq!(pool.queue_size(), 499);
    assert!(tasks.iter().all(|task| !task.is_finished()));
    gate.open();
    for task in tasks {
        finish(task).unwrap();
    }
    assert_eq!(pool.completed(), 500);
}

#[test]
fn builder_debug_shows_the_thread_limits() {
    let builder = Pool::builder()
        .exports(double())
        .min_threads(1)
        .max_threads(2);
    let text = format!("{builder:?}");
    assert!(text.contains("min_threads: Some(1)"), "{text}");
    assert!(text.contains("max_threads: Some(2)"), "{text}");
}
