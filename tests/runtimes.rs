//! Behaviour both runtimes share: every test body here runs once with worker threads and once
//! with child processes. The binary is also its own worker executable: `main` first lets a
//! worker process serve, as every program with a child-process pool must.

mod common;

use std::cell::Cell;
use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use common::{block_on, eventually, run_cases};
use tinypool::{
    worker, AbortController, Error, Exports, MaxQueue, Pool, RunOptions, Runtime, Task,
};

thread_local! {
    static COUNTER: Cell<u32> = const { Cell::new(0) };
}

/// The functions both kinds of worker export.
fn exports() -> Exports {
    Exports::new()
        .default(|(a, b): (i32, i32)| a + b)
        .export("multiply", |(a, b): (i32, i32)| a * b)
        .export("panic", |message: String| -> i32 { panic!("{message}") })
        .export("id", |()| worker::id())
        // Unique per worker in both runtimes: a child's pid, a thread's id.
        .export("identity", |()| {
            format!("{}/{:?}", std::process::id(), std::thread::current().id())
        })
        .export("counter", |()| COUNTER.with(|c| c.replace(c.get() + 1)))
        .export("data", |()| {
            worker::data::<String>().map_err(|e| e.to_string())
        })
        // Announces itself on its channel, then waits for the value to return.
        .export("gate", |()| -> Result<(Option<usize>, u32), String> {
            let port = worker::port::<u32>().map_err(|e| e.to_string())?;
            port.send(0).map_err(|e| e.to_string())?;
            let value = port.recv().map_err(|e| e.to_string())?;
            Ok((worker::id(), value))
        })
        // Answers every number with its successor until the caller hangs up.
        .export("echo", |()| -> u32 {
            let Ok(port) = worker::port::<u32>() else {
                return 0;
            };
            let mut answered = 0;
            while let Ok(n) = port.recv() {
                if port.send(n + 1).is_err() {
                    break;
                }
                answered += 1;
            }
            answered
        })
        // Announces itself on its channel, if it has one, then spins until aborted.
        .export("spin", |()| {
            if let Ok(port) = worker::port::<u32>() {
                let _ = port.send(0);
            }
            while !worker::aborted() {
                std::hint::spin_loop();
            }
        })
        .export("env", |key: String| std::env::var(key).ok())
        .export("args", |()| {
            std::env::args().skip(1).collect::<Vec<String>>()
        })
        .export("teardown", |()| {
            if let Ok(Some(path)) = worker::data::<String>() {
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .expect("teardown log");
                // One write per line: workers append concurrently.
                let line = format!("teardown {:?}\n", worker::id());
                file.write_all(line.as_bytes()).expect("teardown log");
            }
        })
}

/// A test body, run once per runtime.
type Body = fn(Runtime);
/// What the "gate" export returns: its worker's id and the value it was released with.
type Gate = Task<Result<(Option<usize>, u32), String>>;

fn main() {
    worker::serve_if_worker(exports());
    let tests: &[(&str, Body)] = &[
        ("default_and_named_exports", default_and_named_exports),
        (
            "unknown_names_fail_their_task",
            unknown_names_fail_their_task,
        ),
        ("a_panic_fails_only_its_task", a_panic_fails_only_its_task),
        ("types_must_match_exactly", types_must_match_exactly),
        (
            "worker_ids_are_unique_and_within_max",
            worker_ids_are_unique_and_within_max,
        ),
        (
            "worker_data_reaches_every_worker",
            worker_data_reaches_every_worker,
        ),
        (
            "state_carries_over_unless_isolated",
            state_carries_over_unless_isolated,
        ),
        (
            "teardown_runs_once_per_worker",
            teardown_runs_once_per_worker,
        ),
        (
            "recycle_replaces_every_worker",
            recycle_replaces_every_worker,
        ),
        (
            "queue_limits_reject_with_errors",
            queue_limits_reject_with_errors,
        ),
        (
            "cancel_fails_queued_tasks_only",
            cancel_fails_queued_tasks_only,
        ),
        (
            "abort_in_the_queue_and_while_running",
            abort_in_the_queue_and_while_running,
        ),
        (
            "channels_carry_messages_both_ways",
            channels_carry_messages_both_ways,
        ),
        (
            "destroy_fails_running_and_queued_tasks",
            destroy_fails_running_and_queued_tasks,
        ),
        (
            "a_worker_takes_several_tasks_at_once",
            a_worker_takes_several_tasks_at_once,
        ),
        (
            "many_tasks_all_resolve_correctly",
            many_tasks_all_resolve_correctly,
        ),
        (
            "idle_workers_above_the_minimum_leave",
            idle_workers_above_the_minimum_leave,
        ),
        ("tasks_are_futures", tasks_are_futures),
        ("children_get_env_and_argv", children_get_env_and_argv),
    ];
    let mut cases: Vec<(String, Box<dyn Fn()>)> = Vec::new();
    for &(name, body) in tests {
        for (label, runtime) in [
            ("threads", Runtime::Threads),
            ("child_process", Runtime::ChildProcess),
        ] {
            cases.push((format!("{name}::{label}"), Box::new(move || body(runtime))));
        }
    }
    run_cases(cases);
}

fn pool(runtime: Runtime) -> tinypool::Builder {
    let builder = Pool::builder()
        .runtime(runtime)
        .min_threads(1)
        .max_threads(2);
    match runtime {
        Runtime::Threads => builder.exports(exports()),
        _ => builder,
    }
}

/// Starts a "gate" task and waits until it runs; returns its handle and port.
fn start_gate(pool: &Pool) -> (Gate, tinypool::Port<u32>) {
    let (port, theirs) = tinypool::channel::<u32>();
    let task = pool.run_with((), RunOptions::new().name("gate").channel(theirs));
    assert_eq!(port.recv(), Ok(0), "the gate task started");
    (task, port)
}

fn named<R>(pool: &Pool, name: &'static str) -> Task<R>
where
    R: serde::de::DeserializeOwned + Send + 'static,
{
    pool.run_with((), RunOptions::new().name(name))
}

fn default_and_named_exports(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    assert_eq!(pool.run::<i32, _>((4, 6)).wait(), Ok(10));
    let product = pool.run_with::<i32, _>((4, 6), RunOptions::new().name("multiply"));
    assert_eq!(product.wait(), Ok(24));
    let pool_b = pool_with_name(runtime);
    assert_eq!(pool_b.run::<i32, _>((4, 6)).wait(), Ok(24));
    pool.destroy().wait().unwrap();
    pool_b.destroy().wait().unwrap();
}

fn pool_with_name(runtime: Runtime) -> Pool {
    pool(runtime).name("multiply").build().unwrap()
}

fn unknown_names_fail_their_task(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let missing = pool.run_with::<i32, _>((1, 2), RunOptions::new().name("divide"));
    assert_eq!(
        missing.wait(),
        Err(Error::NoSuchFunction {
            name: "divide".into()
        })
    );
    assert_eq!(pool.run::<i32, _>((1, 2)).wait(), Ok(3));
    pool.destroy().wait().unwrap();
}

fn a_panic_fails_only_its_task(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let before: String = named(&pool, "identity").wait().unwrap();
    let panicked = pool.run_with::<i32, _>("boom".to_owned(), RunOptions::new().name("panic"));
    assert_eq!(
        panicked.wait(),
        Err(Error::Panicked {
            message: "boom".into()
        })
    );
    let after: String = named(&pool, "identity").wait().unwrap();
    assert_eq!(before, after, "the same worker serves on");
    pool.destroy().wait().unwrap();
}

fn types_must_match_exactly(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let wrong_arg = pool.run::<i32, _>((4i64, 6i64)).wait();
    assert_eq!(
        wrong_arg,
        Err(Error::TypeMismatch {
            expected: "(i32, i32)".into(),
            found: "(i64, i64)".into()
        })
    );
    let wrong_result = pool.run::<i64, _>((4i32, 6i32)).wait();
    assert_eq!(
        wrong_result,
        Err(Error::TypeMismatch {
            expected: "i32".into(),
            found: "i64".into()
        })
    );
    pool.destroy().wait().unwrap();
}

fn worker_ids_are_unique_and_within_max(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).build().unwrap();
    let (first, first_port) = start_gate(&pool);
    let (second, second_port) = start_gate(&pool);
    first_port.send(1).unwrap();
    second_port.send(2).unwrap();
    let (a, b) = (
        first.wait().unwrap().unwrap(),
        second.wait().unwrap().unwrap(),
    );
    let ids: HashSet<Option<usize>> = [a.0, b.0].into();
    assert_eq!(ids, [Some(1), Some(2)].into());
    for _ in 0..10 {
        let id: Option<usize> = named(&pool, "id").wait().unwrap();
        assert!(matches!(id, Some(1..=2)), "{id:?}");
    }
    pool.destroy().wait().unwrap();
}

fn worker_data_reaches_every_worker(runtime: Runtime) {
    let pool = pool(runtime).worker_data("ABC".to_owned()).build().unwrap();
    let data: Result<Option<String>, String> = named(&pool, "data").wait().unwrap();
    assert_eq!(data, Ok(Some("ABC".to_owned())));
    let none = pool_without_data(runtime);
    let data: Result<Option<String>, String> = named(&none, "data").wait().unwrap();
    assert_eq!(data, Ok(None));
    pool.destroy().wait().unwrap();
    none.destroy().wait().unwrap();
}

fn pool_without_data(runtime: Runtime) -> Pool {
    pool(runtime).build().unwrap()
}

fn state_carries_over_unless_isolated(runtime: Runtime) {
    for (isolate, expected) in [(false, [0, 1, 2]), (true, [0, 0, 0])] {
        let pool = pool(runtime)
            .max_threads(1)
            .isolate_workers(isolate)
            .build()
            .unwrap();
        let counts: Vec<u32> = (0..3)
            .map(|_| named::<u32>(&pool, "counter").wait().unwrap())
            .collect();
        assert_eq!(counts, expected, "isolate_workers({isolate})");
        assert_eq!(pool.threads(), 1, "the minimum stays after each task");
        pool.destroy().wait().unwrap();
    }
}

fn teardown_runs_once_per_worker(runtime: Runtime) {
    let log = std::env::temp_dir().join(format!(
        "tinypool-teardown-{}-{runtime:?}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&log);
    let pool = pool(runtime)
        .min_threads(2)
        .teardown("teardown")
        .worker_data(log.to_string_lossy().into_owned())
        .build()
        .unwrap();
    for _ in 0..4 {
        assert_eq!(pool.run::<i32, _>((1, 1)).wait(), Ok(2));
    }
    pool.destroy().wait().unwrap();
    let lines = std::fs::read_to_string(&log).unwrap_or_default();
    let mut lines: Vec<&str> = lines.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["teardown Some(1)", "teardown Some(2)"]);
    let _ = std::fs::remove_file(&log);
}

fn recycle_replaces_every_worker(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let before: String = named(&pool, "identity").wait().unwrap();
    pool.recycle_workers().wait().unwrap();
    assert_eq!(pool.threads(), 1);
    let after: String = named(&pool, "identity").wait().unwrap();
    assert_ne!(before, after, "a new worker serves after recycling");
    pool.destroy().wait().unwrap();
}

fn queue_limits_reject_with_errors(runtime: Runtime) {
    let pool = pool(runtime)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(1))
        .build()
        .unwrap();
    let (running, port) = start_gate(&pool);
    let queued = pool.run::<i32, _>((1, 2));
    assert_eq!(pool.queue_size(), 1);
    assert_eq!(pool.run::<i32, _>((1, 2)).wait(), Err(Error::QueueFull));
    port.send(7).unwrap();
    assert_eq!(running.wait().unwrap().unwrap().1, 7);
    assert_eq!(queued.wait(), Ok(3));
    pool.destroy().wait().unwrap();

    let pool = pool_no_queue(runtime);
    let (running, port) = start_gate(&pool);
    assert_eq!(pool.run::<i32, _>((1, 2)).wait(), Err(Error::NoQueue));
    port.send(1).unwrap();
    assert!(running.wait().unwrap().is_ok());
    pool.destroy().wait().unwrap();
}

fn pool_no_queue(runtime: Runtime) -> Pool {
    pool(runtime)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .build()
        .unwrap()
}

fn cancel_fails_queued_tasks_only(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let (running, port) = start_gate(&pool);
    let queued: Vec<Task<i32>> = (0..3).map(|i| pool.run((i, i))).collect();
    assert_eq!(pool.queue_size(), 3);
    pool.cancel_pending_tasks();
    assert_eq!(pool.queue_size(), 0);
    for task in queued {
        assert_eq!(task.wait(), Err(Error::Cancelled));
    }
    port.send(5).unwrap();
    assert_eq!(running.wait().unwrap().unwrap().1, 5);
    assert_eq!(pool.run::<i32, _>((2, 3)).wait(), Ok(5));
    pool.destroy().wait().unwrap();
}

fn abort_in_the_queue_and_while_running(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let before: String = named(&pool, "identity").wait().unwrap();
    let running = AbortController::new();
    let (started, theirs) = tinypool::channel::<u32>();
    let spinning = pool.run_with::<(), _>(
        (),
        RunOptions::new()
            .name("spin")
            .signal(running.signal())
            .channel(theirs),
    );
    assert_eq!(started.recv(), Ok(0), "the spinning task started");
    let queued = AbortController::new();
    let waiting = pool.run_with::<i32, _>((1, 1), RunOptions::new().signal(queued.signal()));
    queued.abort_with("not needed");
    assert_eq!(
        waiting.wait(),
        Err(Error::Aborted {
            reason: Some("not needed".into())
        })
    );
    running.abort();
    assert_eq!(spinning.wait(), Err(Error::Aborted { reason: None }));
    assert_eq!(
        pool.run::<i32, _>((1, 1)).wait(),
        Ok(2),
        "the pool serves on"
    );
    let after: String = named(&pool, "identity").wait().unwrap();
    assert_ne!(before, after, "the aborted worker was replaced");
    pool.destroy().wait().unwrap();
}

fn channels_carry_messages_both_ways(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (port, theirs) = tinypool::channel::<u32>();
    // Sent before the task starts: it waits in the channel.
    port.send(1).unwrap();
    let task: Task<u32> = pool.run_with((), RunOptions::new().name("echo").channel(theirs));
    assert_eq!(port.recv(), Ok(2));
    for n in 10..110 {
        port.send(n).unwrap();
        assert_eq!(port.recv(), Ok(n + 1));
    }
    drop(port);
    assert_eq!(task.wait(), Ok(101));
    pool.destroy().wait().unwrap();
}

fn destroy_fails_running_and_queued_tasks(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let (running, _port) = start_gate(&pool);
    let queued = pool.run::<i32, _>((1, 2));
    pool.destroy().wait().unwrap();
    assert_eq!(running.wait(), Err(Error::Terminated));
    assert_eq!(queued.wait(), Err(Error::Terminated));
    assert_eq!(pool.threads(), 0);
    assert_eq!(pool.run::<i32, _>((1, 2)).wait(), Err(Error::Terminated));
}

fn a_worker_takes_several_tasks_at_once(runtime: Runtime) {
    let pool = pool(runtime)
        .max_threads(1)
        .concurrent_tasks_per_worker(3)
        .max_queue(MaxQueue::Limit(0))
        .build()
        .unwrap();
    let (running, port) = start_gate(&pool);
    // With no queue, these are accepted only because the busy worker has room.
    let more: Vec<Task<i32>> = (0..2).map(|i| pool.run((i, 1))).collect();
    assert_eq!(pool.workers()[0].running, 3);
    assert_eq!(pool.run::<i32, _>((9, 9)).wait(), Err(Error::NoQueue));
    port.send(3).unwrap();
    assert_eq!(running.wait().unwrap().unwrap().1, 3);
    let sums: Vec<i32> = more.into_iter().map(|t| t.wait().unwrap()).collect();
    assert_eq!(sums, [1, 2]);
    pool.destroy().wait().unwrap();
}

fn many_tasks_all_resolve_correctly(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).build().unwrap();
    let tasks: Vec<Task<i32>> = (0..2_000).map(|i| pool.run((i, 1))).collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.wait(), Ok(i as i32 + 1));
    }
    assert_eq!(pool.completed(), 2_000);
    pool.destroy().wait().unwrap();
}

fn idle_workers_above_the_minimum_leave(runtime: Runtime) {
    let pool = pool(runtime)
        .idle_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    let (first, first_port) = start_gate(&pool);
    let (second, second_port) = start_gate(&pool);
    assert_eq!(pool.threads(), 2);
    first_port.send(1).unwrap();
    second_port.send(2).unwrap();
    assert!(first.wait().unwrap().is_ok() && second.wait().unwrap().is_ok());
    eventually("the extra worker left", || pool.threads() == 1);
    assert_eq!(pool.run::<i32, _>((1, 2)).wait(), Ok(3));
    pool.destroy().wait().unwrap();
}

fn tasks_are_futures(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let sum = block_on(async {
        let a = pool.run::<i32, _>((1, 2));
        let b = pool.run::<i32, _>((3, 4));
        a.await.unwrap() + b.await.unwrap()
    });
    assert_eq!(sum, 10);
    block_on(pool.destroy()).unwrap();
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
        pool.run_with(key.to_owned(), RunOptions::new().name("env"))
            .wait()
            .unwrap()
    };
    assert_eq!(var("TINYPOOL_TEST_VAR").as_deref(), Some("yes"));
    assert_eq!(
        var("PATH"),
        std::env::var("PATH").ok(),
        "the environment is inherited"
    );
    let args: Vec<String> = named(&pool, "args").wait().unwrap();
    assert_eq!(args, ["a", "b"]);
    pool.destroy().wait().unwrap();
}
