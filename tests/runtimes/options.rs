//! Builder options (spec §1.2, scenarios 4, 26-28, 105, 106): `min_threads` workers at build,
//! conflicting limits, options only the other runtime can honour, `Duration::MAX` meaning
//! never, a child's environment and arguments. Threads only: the defaults, thread names, how
//! min/max are reconciled when only one is given, what is rejected, and what `MaxQueue::Auto`
//! and the default `max_queue` resolve to.

use std::time::Duration;

use tinypool::{
    Builder, ChildOutput, Error, Exports, MaxQueue, Pool, ResourceLimits, RunOptions, Runtime, Task,
};

use crate::common::{
    block_on, eventually, finish, next,
    procfs::{live, threads_named},
    Counter, Gate,
};
use crate::{bodies, call, held, hold, pool, prefix, Body};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            build_starts_min_threads_and_refuses_conflicting_limits,
            each_runtime_refuses_the_options_only_the_other_can_honour,
            duration_max_options_mean_never,
            max_threads_usize_max_builds_a_pool_that_grows_on_demand,
            a_thread_name_with_a_nul_byte_is_invalid,
            env_and_argv_the_system_cannot_pass_are_invalid,
            children_get_env_and_argv,
            a_fork_server_pool_serves_on_every_system,
        ],
        threads: [
            defaults_start_half_the_parallelism_and_grow_to_all_of_it,
            default_thread_name_is_tinypool_dash_worker_id,
            thread_name_sets_the_prefix_of_worker_thread_names,
            only_max_threads_given_lowers_the_default_min_to_it,
            only_max_threads_given_keeps_the_default_min_when_it_fits,
            only_min_threads_given_raises_the_default_max_to_it,
            max_threads_zero_is_invalid_instead_of_hanging,
            a_pool_without_exports_is_invalid,
            a_pool_with_empty_exports_is_invalid,
            a_pool_with_only_named_exports_is_valid,
            the_threads_runtime_is_the_default_and_can_be_named,
            a_teardown_that_does_not_take_unit_is_invalid,
            max_queue_auto_uses_the_reconciled_max_threads,
            max_queue_is_unbounded_by_default,
            builder_debug_shows_the_thread_limits,
        ],
    }
}

/// `min_threads` workers (and their threads) are there right after build, min 0 included,
/// and equal limits are fine; conflicting limits are refused, naming the options.
fn build_starts_min_threads_and_refuses_conflicting_limits(runtime: Runtime) {
    for min in [0, 1, 2] {
        let prefix = prefix(&format!("rt-min{min}"), runtime);
        let pool = pool(runtime)
            .min_threads(min)
            .max_threads(2)
            .thread_name(&prefix)
            .build()
            .unwrap();
        assert_eq!(pool.threads(), min);
        assert_eq!(pool.workers().len(), min);
        eventually("min_threads worker threads run", || live(&prefix) == min);
        assert_eq!(finish(pool.run::<i32, _>((20, 22))), Ok(42), "min {min}");
        pool.destroy().wait().unwrap();
    }
    let invalid = |builder: tinypool::Builder, options: &[&str]| {
        let message = invalid_options(builder.build());
        for option in options {
            assert!(message.contains(option), "{message}");
        }
    };
    invalid(
        pool(runtime).min_threads(3).max_threads(2),
        &["min_threads", "max_threads"],
    );
    invalid(
        pool(runtime).min_threads(0).max_threads(0),
        &["max_threads"],
    );
    invalid(
        pool(runtime).concurrent_tasks_per_worker(0),
        &["concurrent_tasks_per_worker"],
    );
}

/// Each runtime honours its own options and refuses, naming it, an option only the other
/// runtime can honour (a thread has a stack size; a child has an address space, a memory
/// recycle limit, an executable).
fn each_runtime_refuses_the_options_only_the_other_can_honour(runtime: Runtime) {
    let own = match runtime {
        Runtime::Threads => {
            pool(runtime).resource_limits(ResourceLimits::new().stack_size(1 << 20))
        }
        _ => pool(runtime).max_memory_limit_before_recycle(1 << 40),
    };
    let pool_ok = own.build().unwrap();
    assert_eq!(finish(pool_ok.run::<i32, _>((1, 2))), Ok(3));
    pool_ok.destroy().wait().unwrap();

    let others: Vec<(tinypool::Builder, &str)> = match runtime {
        Runtime::Threads => vec![
            (pool(runtime).filename("/bin/true"), "filename"),
            (
                pool(runtime).resource_limits(ResourceLimits::new().max_memory(1 << 30)),
                "resource_limits.max_memory",
            ),
            (
                pool(runtime).max_memory_limit_before_recycle(1 << 30),
                "max_memory_limit_before_recycle",
            ),
            (pool(runtime).stdout(ChildOutput::Null), "stdout"),
            (pool(runtime).stderr(ChildOutput::Stderr), "stderr"),
        ],
        _ => vec![(
            pool(runtime).resource_limits(ResourceLimits::new().stack_size(1 << 20)),
            "resource_limits.stack_size",
        )],
    };
    for (builder, option) in others {
        let message = invalid_options(builder.build());
        assert!(message.contains(option), "{message}");
    }
}

/// Every `Duration` option takes any value, `Duration::MAX` meaning "never": a worker above
/// the minimum stays (the same two serve both rounds, none replaced), tasks run, and `destroy`
/// returns, waited on or awaited.
fn duration_max_options_mean_never(runtime: Runtime) {
    let build = || {
        let builder = pool(runtime)
            .idle_timeout(Duration::MAX)
            .terminate_timeout(Duration::MAX)
            .startup_timeout(Duration::MAX);
        match runtime {
            Runtime::Threads => builder,
            _ => builder.resource_limits(ResourceLimits::new().max_cpu_time(Duration::MAX)),
        }
        .build()
        .unwrap()
    };
    let pool = build();
    let mut rounds = Vec::new();
    for _ in 0..2 {
        let holds = [hold(&pool, 0), hold(&pool, 1)];
        for (tag, (_, port)) in (0..).zip(&holds) {
            assert_eq!(next(port), Ok(tag), "both run at once");
        }
        for (_, port) in &holds {
            port.send(0).unwrap();
        }
        let mut workers: Vec<String> = holds.into_iter().map(|(t, _)| held(t).2).collect();
        workers.sort();
        rounds.push(workers);
    }
    assert_eq!(
        rounds[0], rounds[1],
        "the same two workers served both rounds"
    );
    assert_eq!(pool.threads(), 2);
    assert_eq!(pool.destroy().wait(), Ok(()));
    let pool = build();
    assert_eq!(finish(pool.run::<i32, _>((1, 2))), Ok(3));
    assert_eq!(block_on(pool.destroy()), Ok(()));
}

/// `max_threads(usize::MAX)` (with `MaxQueue::Auto`, its square saturated) is "no limit": the
/// pool builds, starts only `min_threads`, grows a worker per task held at once, and is
/// destroyed; nothing is sized by the limit up front.
fn max_threads_usize_max_builds_a_pool_that_grows_on_demand(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(usize::MAX)
        .max_queue(MaxQueue::Auto)
        .build()
        .expect("a pool with no practical limit");
    assert_eq!(pool.threads(), 1);
    let holds: Vec<_> = (0..3).map(|tag| hold(&pool, tag)).collect();
    for (tag, (_, port)) in (0..).zip(&holds) {
        assert_eq!(next(port), Ok(tag), "all three run at once");
    }
    assert_eq!(pool.threads(), 3);
    for (_, port) in &holds {
        port.send(0).unwrap();
    }
    for (tag, (task, _)) in (0..).zip(holds) {
        assert_eq!(held(task).0, tag);
    }
    assert_eq!(pool.destroy().wait(), Ok(()));
}

/// A thread name cannot hold a NUL byte (the system's names are C strings): `build` refuses
/// such a prefix, naming the option, instead of panicking as it starts its first worker.
fn a_thread_name_with_a_nul_byte_is_invalid(runtime: Runtime) {
    let built = pool(runtime).thread_name("tiny\0pool").build();
    let message = invalid_options(built);
    assert!(message.contains("thread_name"), "{message}");
}

/// What no system can pass to a child (a NUL byte, an environment key that is empty or holds
/// `=`) is refused by `build()`, not by each worker's start. (On threads, `env` and `argv` are
/// refused at all.)
fn env_and_argv_the_system_cannot_pass_are_invalid(runtime: Runtime) {
    let cases: [(&str, Builder); 5] = [
        ("argv", pool(runtime).argv(["ok", "a\0b"])),
        ("env", pool(runtime).env("A\0B", "x")),
        ("env", pool(runtime).env("KEY", "x\0y")),
        ("env", pool(runtime).env("A=B", "x")),
        ("env", pool(runtime).env("", "x")),
    ];
    for (option, builder) in cases {
        let message = invalid_options(builder.build());
        assert!(message.starts_with(option), "{message}");
    }
}

fn children_get_env_and_argv(runtime: Runtime) {
    let built = pool(runtime)
        .env("TINYPOOL_TEST_VAR", "yes")
        .argv(["a", "b"])
        .build();
    let pool = match (runtime, built) {
        (Runtime::Threads, Err(Error::InvalidOptions(message))) => {
            assert!(
                message.contains("env") || message.contains("argv"),
                "{message}"
            );
            return;
        }
        (_, built) => built.unwrap(),
    };
    let var = |key: &str| -> Option<String> {
        finish(pool.run_with(key.to_owned(), RunOptions::new().name("env"))).unwrap()
    };
    assert_eq!(var("TINYPOOL_TEST_VAR").as_deref(), Some("yes"));
    assert_eq!(
        var("PATH"),
        std::env::var("PATH").ok(),
        "the environment is inherited"
    );
    let args: Vec<String> = finish(call(&pool, "args")).unwrap();
    assert_eq!(args, ["a", "b"]);
    pool.destroy().wait().unwrap();
}

// ---- Threads only -------------------------------------------------------------------------------

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

/// The message of the `InvalidOptions` error `result` must be.
fn invalid_options(result: Result<Pool, Error>) -> String {
    match result {
        Err(Error::InvalidOptions(message)) => message,
        other => panic!("expected Error::InvalidOptions, got {other:?}"),
    }
}

fn double() -> Exports {
    Exports::new().export_default(|x: u32| x * 2)
}

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

fn a_pool_without_exports_is_invalid() {
    let message = invalid_options(Pool::builder().build());
    assert!(message.contains("exports"), "{message}");
}

fn a_pool_with_empty_exports_is_invalid() {
    let message = invalid_options(Pool::builder().exports(Exports::new()).build());
    assert!(message.contains("exports"), "{message}");
}

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

fn builder_debug_shows_the_thread_limits() {
    let builder = Pool::builder()
        .exports(double())
        .min_threads(1)
        .max_threads(2);
    let text = format!("{builder:?}");
    assert!(text.contains("min_threads: Some(1)"), "{text}");
    assert!(text.contains("max_threads: Some(2)"), "{text}");
}

/// `fork_server(true)` on a child-process pool: isolated tasks each get a fresh worker, forked
/// on Linux, spawned elsewhere (where the option changes nothing). A threads pool refuses it.
fn a_fork_server_pool_serves_on_every_system(runtime: Runtime) {
    if runtime == Runtime::Threads {
        let message = invalid_options(pool(runtime).fork_server(true).build());
        assert!(message.contains("fork_server"), "{message}");
        return;
    }
    let pool = pool(runtime)
        .max_threads(2)
        .isolate_workers(true)
        .fork_server(true)
        .build()
        .unwrap();
    let mut pids: Vec<u32> = (0..4)
        .map(|_| crate::pid_of(&finish(call::<String>(&pool, "identity")).unwrap()))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 4, "a fresh worker a task: {pids:?}");
    assert_eq!(finish(pool.run::<i32, _>((1, 2))), Ok(3));
    pool.destroy().wait().unwrap();
}
