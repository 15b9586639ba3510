//! Behaviour both runtimes share: every test body here runs once with worker threads and once
//! with child processes. The binary is also its own worker executable: `main` first lets a
//! worker process serve, as every program with a child-process pool must.

mod common;

use std::any::type_name;
use std::cell::Cell;
use std::collections::HashSet;
use std::future::{poll_fn, Future};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::{pin, Pin};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use common::{block_on, eventually, live, run_cases};
use serde::{Deserialize, Serialize};
use tinypool::{
    worker, AbortController, AbortSignal, ChildOutput, Error, Exports, MaxQueue, Pool, Port,
    ResourceLimits, RunOptions, Runtime, Task, TypeRole,
};

thread_local! {
    static COUNTER: Cell<u32> = const { Cell::new(0) };
}

/// Where the "stuck" export waits. Only the threads case of the stuck-worker test opens it (in
/// this process); a child's copy is never opened: the child is killed instead.
static STUCK: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

/// A `worker_data` that is a struct: a child gets it through serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Config {
    name: String,
    level: u8,
}

/// A recursive value, as deep as one likes. Dropped iteratively: a deep chain of boxes would
/// otherwise recurse once per level.
#[derive(Debug, Serialize, Deserialize)]
enum Nest {
    Leaf,
    Node(Box<Nest>),
}

impl Nest {
    fn new(depth: u32) -> Nest {
        (0..depth).fold(Nest::Leaf, |inner, _| Nest::Node(Box::new(inner)))
    }

    fn depth(&self) -> u32 {
        let (mut depth, mut at) = (0, self);
        while let Nest::Node(inner) = at {
            (depth, at) = (depth + 1, inner);
        }
        depth
    }
}

impl Drop for Nest {
    fn drop(&mut self) {
        // Each level is unlinked before it is dropped, so each drop sees a leaf below it.
        let Nest::Node(inner) = self else { return };
        let mut next = std::mem::replace(&mut **inner, Nest::Leaf);
        while let Nest::Node(inner) = &mut next {
            next = std::mem::replace(&mut **inner, Nest::Leaf);
        }
    }
}

/// Unique per worker in both runtimes: a child's pid, a thread's id.
fn identity() -> String {
    format!("{}/{:?}", std::process::id(), std::thread::current().id())
}

/// The pid part of an [`identity`].
fn pid_of(identity: &str) -> u32 {
    identity
        .split('/')
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("an identity starts with a pid")
}

/// The functions both kinds of worker export.
fn exports() -> Exports {
    Exports::new()
        .export_default(|(a, b): (i32, i32)| a + b)
        .export("multiply", |(a, b): (i32, i32)| a * b)
        .export("panic", |message: String| -> i32 { panic!("{message}") })
        .export("id", |()| worker::id())
        .export("identity", |()| identity())
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
        .export("nest", Nest::new)
        .export("depth", |nest: Nest| nest.depth())
        // Another library's exports, served by the same `serve_if_worker`.
        .merge(Exports::new().export("words", |text: String| text.split_whitespace().count()))
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
        // Announces its tag on its channel, then waits for the value to return (a sleep-free
        // "block until released"). A closed channel ends it with an error.
        .export("hold", |tag: u32| -> Result<Held, String> {
            let port = worker::port::<u32>().map_err(|e| e.to_string())?;
            port.send(tag).map_err(|e| e.to_string())?;
            let value = port.recv().map_err(|e| e.to_string())?;
            Ok((tag, worker::id(), identity(), value))
        })
        // Announces its worker's id on its channel, then blocks on [`STUCK`], deaf to the
        // channel, to aborts and to `destroy`.
        .export("stuck", |()| {
            let port = worker::port::<u32>().expect("a channel");
            let id = worker::id().expect("inside a worker") as u32;
            port.send(id).expect("the test listens");
            let (open, changed) = &STUCK;
            let mut open = open.lock().unwrap();
            while !*open {
                open = changed.wait(open).unwrap();
            }
        })
        // Logs the worker's id and its "counter" state to the file named by worker_data.
        .export("log_teardown", |()| {
            let path = worker::data::<String>()
                .expect("worker_data is a String")
                .expect("worker_data is the log's path");
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .expect("teardown log");
            let line = format!(
                "teardown {:?} after {}\n",
                worker::id(),
                COUNTER.with(Cell::get)
            );
            file.write_all(line.as_bytes()).expect("teardown log");
        })
        .export("panic_teardown", |()| -> u32 { panic!("teardown failed") })
        // Sends 0..n on its channel.
        .export("send_n", |n: u32| -> Result<(), String> {
            let port = worker::port::<u32>().map_err(|e| e.to_string())?;
            for i in 0..n {
                port.send(i).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        // Announces itself, receives until the channel closes, then tries to send.
        .export("drain", |()| -> Result<(Vec<u32>, bool, bool), String> {
            let port = worker::port::<u32>().map_err(|e| e.to_string())?;
            port.send(0).map_err(|e| e.to_string())?;
            let mut got = Vec::new();
            let end = loop {
                match port.recv() {
                    Ok(n) => got.push(n),
                    Err(error) => break error,
                }
            };
            Ok((
                got,
                end == Error::Disconnected,
                port.send(9) == Err(Error::Disconnected),
            ))
        })
        // The types of a channel's mismatch, and how the error reads.
        .export("port_type", |()| match worker::port::<u32>() {
            Err(error) => match &error {
                Error::TypeMismatch {
                    what: TypeRole::Channel,
                    expected,
                    found,
                } => Some((expected.clone(), found.clone(), error.to_string())),
                _ => None,
            },
            Ok(_) => None,
        })
        .export("has_port", |()| match worker::port::<u32>() {
            Ok(_) => "ok".to_owned(),
            Err(Error::NoChannel) => "none".to_owned(),
            Err(other) => other.to_string(),
        })
        .export("panic_any", |()| -> u32 { std::panic::panic_any(7u8) })
        .export("checked", |x: i32| -> Result<u32, String> {
            u32::try_from(x).map_err(|_| format!("{x} is negative"))
        })
        // `worker_data` as a u32, or the types of the mismatch and how the error reads.
        .export(
            "data_u32",
            |()| -> Result<Option<u32>, (String, String, String)> {
                match worker::data::<u32>() {
                    Ok(data) => Ok(data),
                    Err(error) => match &error {
                        Error::TypeMismatch {
                            what: TypeRole::WorkerData,
                            expected,
                            found,
                        } => Err((expected.clone(), found.clone(), error.to_string())),
                        other => Err((other.to_string(), String::new(), String::new())),
                    },
                }
            },
        )
        .export("config", |()| {
            worker::data::<Config>().map_err(|e| e.to_string())
        })
        .export("context", |()| {
            (worker::is_worker(), worker::aborted(), worker::id())
        })
        // Runs a pool of its own inside the worker, of threads or of child processes (this
        // binary again, as grandchildren); returns x + x + 1 and the pid of its worker.
        .export(
            "nested",
            |(x, children): (i32, bool)| -> Result<(i32, u32), String> {
                let runtime = if children {
                    Runtime::ChildProcess
                } else {
                    Runtime::Threads
                };
                let inner = Pool::builder()
                    .runtime(runtime)
                    .exports(exports())
                    .min_threads(1)
                    .max_threads(1)
                    .thread_name("nested")
                    .build()
                    .map_err(|e| e.to_string())?;
                let sum = inner
                    .run::<i32, _>((x, x))
                    .wait()
                    .map_err(|e| e.to_string())?;
                let options = RunOptions::new().name("identity");
                let identity: String = inner
                    .run_with((), options)
                    .wait()
                    .map_err(|e| e.to_string())?;
                inner.destroy().wait().map_err(|e| e.to_string())?;
                Ok((sum + 1, pid_of(&identity)))
            },
        )
}

/// A test body, run once per runtime.
type Body = fn(Runtime);
/// What the "gate" export returns: its worker's id and the value it was released with.
type Gate = Task<Result<(Option<usize>, u32), String>>;
/// What the "hold" export returns: its tag, its worker's id and identity, and the value it was
/// released with.
type Held = (u32, Option<usize>, String, u32);
/// A "hold" task and the caller's side of its channel.
type Hold = (Task<Result<Held, String>>, Port<u32>);

/// `(name, body)` pairs, each named after its body.
macro_rules! bodies {
    ($($body:ident),* $(,)?) => {
        [$((stringify!($body), $body as Body)),*]
    };
}

fn main() {
    worker::serve_if_worker(exports());
    let tests = bodies![
        // ---- One of each area ----
        default_and_named_exports,
        unknown_names_fail_their_task,
        a_panic_fails_only_its_task,
        types_must_match_exactly,
        worker_ids_are_unique_and_within_max,
        worker_data_reaches_every_worker,
        state_carries_over_unless_isolated,
        teardown_runs_once_per_worker,
        recycle_replaces_every_worker,
        queue_limits_reject_with_errors,
        cancel_fails_queued_tasks_only,
        abort_in_the_queue_and_while_running,
        channels_carry_messages_both_ways,
        destroy_fails_running_and_queued_tasks,
        a_worker_takes_several_tasks_at_once,
        many_tasks_all_resolve_correctly,
        idle_workers_above_the_minimum_leave,
        duration_max_options_mean_never,
        values_nested_too_deep_for_a_child_fail_with_protocol,
        merged_exports_serve_both_sets,
        tasks_are_futures,
        children_get_env_and_argv,
        // ---- Scheduling ----
        a_worker_is_added_per_blocked_task_up_to_max_then_tasks_queue,
        a_full_queue_rejects_with_queue_full_and_destroy_fails_the_rest,
        no_queue_rejects_while_the_only_worker_is_busy,
        two_tasks_share_a_worker_with_concurrency_2_until_destroy,
        two_workers_with_concurrency_2_take_four_tasks_and_run_two,
        a_new_worker_takes_as_many_queued_tasks_as_its_concurrency_allows,
        queued_tasks_start_in_submission_order,
        abortable_and_plain_tasks_start_in_submission_order,
        idle_workers_leave_and_come_back_on_demand,
        workers_lists_each_live_worker_with_its_id_pid_and_load,
        completed_counts_tasks_that_ran_and_duration_grows,
        tasks_from_several_caller_threads_all_resolve,
        a_resolved_task_no_longer_occupies_its_worker,
        max_queue_auto_is_max_threads_squared,
        each_runtime_refuses_the_options_only_the_other_can_honour,
        build_starts_min_threads_and_refuses_conflicting_limits,
        // ---- Isolation and recycling ----
        isolated_workers_have_unique_ids_within_max_threads,
        an_isolated_pool_is_back_at_min_threads_when_each_task_resolves,
        an_isolated_pool_with_min_threads_0_never_halts,
        recycle_replaces_busy_workers_only_after_their_task,
        recycling_never_fails_sibling_tasks_with_concurrency_2,
        isolation_never_fails_sibling_tasks_with_concurrency_2,
        // ---- Abort ----
        an_aborted_queued_task_never_runs,
        an_abortable_task_never_shares_a_busy_worker,
        a_task_behind_a_running_abortable_one_waits_for_the_abort,
        an_abortable_task_waits_for_an_empty_worker,
        destroy_fails_a_queued_abortable_task_with_terminated,
        a_pre_aborted_signal_fails_at_once_and_queues_nothing,
        an_abort_after_the_task_finished_keeps_the_result_and_the_worker,
        one_signal_aborts_every_task_that_shares_it,
        a_running_abort_replaces_the_worker_at_once,
        an_abort_of_a_task_handed_to_a_starting_worker_fails_it,
        // ---- Destroy and teardown ----
        destroy_fails_queued_and_running_tasks_and_stops_every_worker,
        destroy_twice_is_fine_and_later_runs_fail_with_terminated,
        dropping_the_last_pool_clone_destroys_it,
        destroy_right_after_build_fails_the_task,
        a_worker_deaf_to_destroy_times_out_as_a_thread_and_is_killed_as_a_child,
        an_isolated_pool_runs_the_teardown_once_per_task,
        a_shared_worker_runs_its_teardown_only_at_destroy,
        recycle_runs_the_teardown_of_the_replaced_worker,
        idle_timeout_runs_the_teardown,
        an_aborted_thread_runs_its_teardown_but_a_killed_child_cannot,
        a_panicking_teardown_is_reported_to_on_error,
        a_teardown_that_is_not_exported_is_refused_or_reported,
        // ---- Cancel ----
        cancel_fails_queued_tasks_and_closes_their_channels,
        cancel_also_fails_tasks_a_worker_took_but_did_not_start,
        cancel_with_nothing_queued_changes_nothing,
        // ---- Channels ----
        the_caller_drains_what_was_sent_then_gets_disconnected,
        send_to_a_finished_task_fails_with_disconnected,
        recv_timeout_and_try_recv_give_none_while_nothing_was_sent,
        recv_async_is_woken_by_the_tasks_message,
        worker_port_of_the_wrong_type_is_a_type_mismatch,
        worker_port_without_a_channel_is_no_channel,
        a_task_blocked_on_recv_wakes_with_disconnected_when_the_caller_drops_its_port,
        // ---- Exports ----
        a_panic_with_a_non_string_payload_fails_the_task,
        domain_errors_are_result_values_not_task_errors,
        worker_data_of_another_type_is_a_type_mismatch_and_zero_is_kept,
        worker_data_of_a_struct_reaches_every_worker,
        the_default_export_can_be_named_and_a_missing_pool_name_fails,
        the_worker_context_is_visible_only_inside_a_worker,
        a_function_can_run_a_pool_of_its_own,
        // ---- Tasks as futures and handles ----
        tasks_can_be_awaited_on_tokio_runtimes,
        a_pending_task_is_woken_when_it_finishes,
        wait_timeout_gives_the_handle_back,
        a_dropped_task_still_runs,
        is_finished_tells_whether_wait_would_block,
    ];
    let mut cases: Vec<(String, Box<dyn Fn()>)> = Vec::new();
    for (name, body) in tests {
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
    assert_eq!(next(&port), Ok(0), "the gate task started");
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
    assert_eq!(finish(pool.run::<i32, _>((4, 6))), Ok(10));
    let product = pool.run_with::<i32, _>((4, 6), RunOptions::new().name("multiply"));
    assert_eq!(finish(product), Ok(24));
    let pool_b = pool_with_name(runtime);
    assert_eq!(finish(pool_b.run::<i32, _>((4, 6))), Ok(24));
    pool.destroy().wait().unwrap();
    pool_b.destroy().wait().unwrap();
}

fn pool_with_name(runtime: Runtime) -> Pool {
    pool(runtime).name("multiply").build().unwrap()
}

/// Scenario 82: an unknown name fails its task with `NoSuchFunction`, and the same worker
/// runs the next task.
fn unknown_names_fail_their_task(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let before: String = finish(named(&pool, "identity")).unwrap();
    let missing = pool.run_with::<i32, _>((1, 2), RunOptions::new().name("divide"));
    let error = finish(missing).unwrap_err();
    assert_eq!(
        error,
        Error::NoSuchFunction {
            name: "divide".into()
        }
    );
    assert!(error.to_string().contains("\"divide\""), "{error}");
    assert_eq!(finish(pool.run::<i32, _>((1, 2))), Ok(3));
    let after: String = finish(named(&pool, "identity")).unwrap();
    assert_eq!(before, after, "the same worker serves on");
    pool.destroy().wait().unwrap();
}

/// Scenarios 78 and 110: a panic fails its task with its message (a formatted one or a
/// literal) and the location of the `panic!`, and the same worker serves on.
fn a_panic_fails_only_its_task(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let before: String = finish(named(&pool, "identity")).unwrap();
    let panicked = pool.run_with::<i32, _>("boom".to_owned(), RunOptions::new().name("panic"));
    let error = finish(panicked).unwrap_err();
    let location = panicked_here(&error, "boom");
    assert_eq!(
        error.to_string(),
        format!("the task panicked at {location}: boom")
    );
    // `panic!` with a literal: a `&'static str` payload.
    panicked_here(
        &finish(named::<u32>(&pool, "panic_teardown")).unwrap_err(),
        "teardown failed",
    );
    let after: String = finish(named(&pool, "identity")).unwrap();
    assert_eq!(before, after, "the same worker serves on");
    assert_eq!(pool.threads(), 1);
    pool.destroy().wait().unwrap();
}

/// A mismatch names the export and says whether the argument or the result differs.
fn types_must_match_exactly(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let wrong_arg = finish(pool.run::<i32, _>((4i64, 6i64))).unwrap_err();
    assert_eq!(
        wrong_arg,
        Error::TypeMismatch {
            what: TypeRole::Argument {
                function: "default".into()
            },
            expected: "(i32, i32)".into(),
            found: "(i64, i64)".into()
        }
    );
    assert_eq!(
        wrong_arg.to_string(),
        "the argument of \"default\" has the wrong type: the export takes `(i32, i32)`, the \
         task passed `(i64, i64)`"
    );
    let multiply = RunOptions::new().name("multiply");
    let wrong_result = finish(pool.run_with::<i64, _>((4i32, 6i32), multiply)).unwrap_err();
    assert_eq!(
        wrong_result,
        Error::TypeMismatch {
            what: TypeRole::Result {
                function: "multiply".into()
            },
            expected: "i32".into(),
            found: "i64".into()
        }
    );
    assert_eq!(
        wrong_result.to_string(),
        "the result of \"multiply\" has the wrong type: the export returns `i32`, the task \
         expects `i64`"
    );
    pool.destroy().wait().unwrap();
}

/// Checks that `error` is a panic with `message` located at a `panic!` of this file (the
/// hook's `file:line:column`); returns the location.
#[track_caller]
fn panicked_here(error: &Error, message: &str) -> String {
    let Error::Panicked {
        message: said,
        location: Some(location),
    } = error
    else {
        panic!("expected a located panic saying {message:?}, got {error:?}");
    };
    assert_eq!(said, message);
    let mut parts = location.rsplitn(3, ':');
    let (_column, line, file) = (parts.next(), parts.next(), parts.next());
    assert!(
        file.is_some_and(|file| file.ends_with("tests/runtimes.rs")),
        "{location}"
    );
    let line: usize = line.and_then(|line| line.parse().ok()).expect("a line");
    let source = include_str!("runtimes.rs").lines().nth(line - 1);
    assert!(
        source.is_some_and(|source| source.contains("panic")),
        "{location} is a panic: {source:?}"
    );
    location.clone()
}

fn worker_ids_are_unique_and_within_max(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).build().unwrap();
    let (first, first_port) = start_gate(&pool);
    let (second, second_port) = start_gate(&pool);
    first_port.send(1).unwrap();
    second_port.send(2).unwrap();
    let (a, b) = (
        finish(first).unwrap().unwrap(),
        finish(second).unwrap().unwrap(),
    );
    let ids: HashSet<Option<usize>> = [a.0, b.0].into();
    assert_eq!(ids, [Some(1), Some(2)].into());
    for _ in 0..10 {
        let id: Option<usize> = finish(named(&pool, "id")).unwrap();
        assert!(matches!(id, Some(1..=2)), "{id:?}");
    }
    pool.destroy().wait().unwrap();
}

fn worker_data_reaches_every_worker(runtime: Runtime) {
    let pool = pool(runtime).worker_data("ABC".to_owned()).build().unwrap();
    let data: Result<Option<String>, String> = finish(named(&pool, "data")).unwrap();
    assert_eq!(data, Ok(Some("ABC".to_owned())));
    let none = pool_without_data(runtime);
    let data: Result<Option<String>, String> = finish(named(&none, "data")).unwrap();
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
            .map(|_| finish(named::<u32>(&pool, "counter")).unwrap())
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
        assert_eq!(finish(pool.run::<i32, _>((1, 1))), Ok(2));
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
    let before: String = finish(named(&pool, "identity")).unwrap();
    finish(pool.recycle_workers()).unwrap();
    assert_eq!(pool.threads(), 1);
    let after: String = finish(named(&pool, "identity")).unwrap();
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
    assert_eq!(finish(pool.run::<i32, _>((1, 2))), Err(Error::QueueFull));
    port.send(7).unwrap();
    assert_eq!(finish(running).unwrap().unwrap().1, 7);
    assert_eq!(finish(queued), Ok(3));
    pool.destroy().wait().unwrap();

    let pool = pool_no_queue(runtime);
    let (running, port) = start_gate(&pool);
    assert_eq!(finish(pool.run::<i32, _>((1, 2))), Err(Error::NoQueue));
    port.send(1).unwrap();
    assert!(finish(running).unwrap().is_ok());
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
        assert_eq!(finish(task), Err(Error::Cancelled));
    }
    port.send(5).unwrap();
    assert_eq!(finish(running).unwrap().unwrap().1, 5);
    assert_eq!(finish(pool.run::<i32, _>((2, 3))), Ok(5));
    pool.destroy().wait().unwrap();
}

fn abort_in_the_queue_and_while_running(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let before: String = finish(named(&pool, "identity")).unwrap();
    let running = AbortController::new();
    let (started, theirs) = tinypool::channel::<u32>();
    let spinning = pool.run_with::<(), _>(
        (),
        RunOptions::new()
            .name("spin")
            .signal(running.signal())
            .channel(theirs),
    );
    assert_eq!(next(&started), Ok(0), "the spinning task started");
    let queued = AbortController::new();
    let waiting = pool.run_with::<i32, _>((1, 1), RunOptions::new().signal(queued.signal()));
    queued.abort_with("not needed");
    assert_eq!(
        finish(waiting),
        Err(Error::Aborted {
            reason: Some("not needed".into())
        })
    );
    running.abort();
    assert_eq!(finish(spinning), Err(Error::Aborted { reason: None }));
    assert_eq!(
        finish(pool.run::<i32, _>((1, 1))),
        Ok(2),
        "the pool serves on"
    );
    let after: String = finish(named(&pool, "identity")).unwrap();
    assert_ne!(before, after, "the aborted worker was replaced");
    pool.destroy().wait().unwrap();
}

fn channels_carry_messages_both_ways(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (port, theirs) = tinypool::channel::<u32>();
    // Sent before the task starts: it waits in the channel.
    port.send(1).unwrap();
    let task: Task<u32> = pool.run_with((), RunOptions::new().name("echo").channel(theirs));
    assert_eq!(next(&port), Ok(2));
    for n in 10..110 {
        port.send(n).unwrap();
        assert_eq!(next(&port), Ok(n + 1));
    }
    drop(port);
    assert_eq!(finish(task), Ok(101));
    pool.destroy().wait().unwrap();
}

fn destroy_fails_running_and_queued_tasks(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let (running, _port) = start_gate(&pool);
    let queued = pool.run::<i32, _>((1, 2));
    pool.destroy().wait().unwrap();
    assert_eq!(finish(running), Err(Error::Terminated));
    assert_eq!(finish(queued), Err(Error::Terminated));
    assert_eq!(pool.threads(), 0);
    assert_eq!(finish(pool.run::<i32, _>((1, 2))), Err(Error::Terminated));
}

/// Scenario 70, with concurrency 3: with no queue, a fixed worker takes as many tasks as its
/// concurrency allows, refuses the next, and every task it took finishes.
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
    assert_eq!(sizes(&pool), (1, 0));
    assert_eq!(pool.workers()[0].running, 3);
    assert_eq!(finish(pool.run::<i32, _>((9, 9))), Err(Error::NoQueue));
    port.send(3).unwrap();
    assert_eq!(finish(running).unwrap().unwrap().1, 3);
    let sums: Vec<i32> = more.into_iter().map(|t| finish(t).unwrap()).collect();
    assert_eq!(sums, [1, 2]);
    assert_eq!(sizes(&pool), (1, 0));
    pool.destroy().wait().unwrap();
}

/// Scenario 32: ten thousand tasks on two workers all resolve with their own values.
fn many_tasks_all_resolve_correctly(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).max_threads(2).build().unwrap();
    let tasks: Vec<Task<i32>> = (0..10_000).map(|i| pool.run((i, 1))).collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(finish(task), Ok(i as i32 + 1));
    }
    assert_eq!(pool.completed(), 10_000);
    assert_eq!(sizes(&pool), (2, 0));
    pool.destroy().wait().unwrap();
}

/// At a realistic `idle_timeout` as well as a tiny one: a second is longer than the interval
/// at which an idle driver checks its child (200 ms), and idle time counts from when the worker
/// went idle, across those wake-ups.
fn idle_workers_above_the_minimum_leave(runtime: Runtime) {
    for idle_timeout in [Duration::from_millis(20), Duration::from_secs(1)] {
        let pool = pool(runtime).idle_timeout(idle_timeout).build().unwrap();
        let (first, first_port) = start_gate(&pool);
        let (second, second_port) = start_gate(&pool);
        assert_eq!(pool.threads(), 2);
        first_port.send(1).unwrap();
        second_port.send(2).unwrap();
        assert!(finish(first).unwrap().is_ok() && finish(second).unwrap().is_ok());
        eventually("the extra worker left", || pool.threads() == 1);
        assert_eq!(finish(pool.run::<i32, _>((1, 2))), Ok(3));
        pool.destroy().wait().unwrap();
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

/// Threads move a value of any depth; a child process's values are encoded and decoded, which
/// recurses once per level: deeper than the codec allows (in either direction), the task fails
/// with `Protocol`, never with a stack overflow that aborts the process; and the pool serves on.
fn values_nested_too_deep_for_a_child_fail_with_protocol(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let deep = 20_000;
    let made = finish(pool.run_with::<Nest, _>(deep, RunOptions::new().name("nest")));
    let measured =
        finish(pool.run_with::<u32, _>(Nest::new(deep), RunOptions::new().name("depth")));
    match runtime {
        Runtime::Threads => {
            assert_eq!(made.map(|nest| nest.depth()), Ok(deep));
            assert_eq!(measured, Ok(deep));
        }
        _ => {
            for result in [made.map(|nest| nest.depth()), measured] {
                match result {
                    Err(Error::Protocol { message }) => {
                        assert!(message.contains("Nest"), "{message}")
                    }
                    other => panic!("expected a protocol error, got {other:?}"),
                }
            }
        }
    }
    let shallow = finish(pool.run_with::<Nest, _>(100u32, RunOptions::new().name("nest")));
    assert_eq!(shallow.map(|nest| nest.depth()), Ok(100));
    let shallow = finish(pool.run_with::<u32, _>(Nest::new(100), RunOptions::new().name("depth")));
    assert_eq!(shallow, Ok(100));
    pool.destroy().wait().unwrap();
}

/// Merged exports serve both sets, in both runtimes.
fn merged_exports_serve_both_sets(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let words = pool.run_with::<usize, _>("two words".to_owned(), RunOptions::new().name("words"));
    assert_eq!(finish(words), Ok(2));
    assert_eq!(finish(pool.run::<i32, _>((1, 2))), Ok(3));
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
        finish(pool.run_with(key.to_owned(), RunOptions::new().name("env"))).unwrap()
    };
    assert_eq!(var("TINYPOOL_TEST_VAR").as_deref(), Some("yes"));
    assert_eq!(
        var("PATH"),
        std::env::var("PATH").ok(),
        "the environment is inherited"
    );
    let args: Vec<String> = finish(named(&pool, "args")).unwrap();
    assert_eq!(args, ["a", "b"]);
    pool.destroy().wait().unwrap();
}

// ---- Helpers of the bodies below ------------------------------------------------------------

/// A bound that only a bug reaches: it turns a hang into a failure. Never a timing assertion.
const BOUND: Duration = Duration::from_secs(30);

fn finish<R: Send + 'static>(task: Task<R>) -> Result<R, Error> {
    task.wait_timeout(BOUND)
        .unwrap_or_else(|_| panic!("the task did not resolve within {BOUND:?}"))
}

/// The next message on `port`, or the error that ended it; a hang fails the test.
fn next<T: Send + 'static>(port: &Port<T>) -> Result<T, Error> {
    match port.recv_timeout(BOUND) {
        Ok(Some(message)) => Ok(message),
        Ok(None) => panic!("no message within {BOUND:?}"),
        Err(error) => Err(error),
    }
}

/// Submits a "hold" task tagged `tag` (it announces the tag on its port once it runs).
fn hold(pool: &Pool, tag: u32) -> Hold {
    hold_with(pool, tag, None)
}

fn hold_with(pool: &Pool, tag: u32, signal: Option<AbortSignal>) -> Hold {
    let (port, theirs) = tinypool::channel::<u32>();
    let mut options = RunOptions::new().name("hold").channel(theirs);
    if let Some(signal) = signal {
        options = options.signal(signal);
    }
    (pool.run_with(tag, options), port)
}

/// What a released "hold" task returned.
fn held(task: Task<Result<Held, String>>) -> Held {
    finish(task)
        .expect("the task succeeded")
        .expect("the function got its value")
}

fn sizes(pool: &Pool) -> (usize, usize) {
    (pool.threads(), pool.queue_size())
}

fn sorted_ids(pool: &Pool) -> Vec<usize> {
    let mut ids: Vec<usize> = pool.workers().iter().map(|w| w.id).collect();
    ids.sort_unstable();
    ids
}

fn loads(pool: &Pool) -> Vec<usize> {
    let mut loads: Vec<usize> = pool.workers().iter().map(|w| w.running).collect();
    loads.sort_unstable();
    loads
}

fn aborted(reason: Option<&str>) -> Error {
    Error::Aborted {
        reason: reason.map(str::to_owned),
    }
}

/// A thread-name prefix of its own for each runtime (both runtimes give every worker a thread
/// named `<prefix>-<id>`: the worker itself, or the driver of its child).
fn prefix(base: &str, runtime: Runtime) -> String {
    let tag = match runtime {
        Runtime::Threads => "t",
        _ => "c",
    };
    format!("{base}-{tag}")
}

/// Whether the process `pid` is gone and reaped (a zombie still exists).
fn gone(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let result = unsafe { libc::kill(pid as libc::pid_t, 0) };
    result == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// The pids of the pool's workers: `Some` and distinct for child processes, `None` for
/// threads.
fn pids(pool: &Pool, runtime: Runtime) -> Vec<u32> {
    let pids: Vec<Option<u32>> = pool.workers().iter().map(|w| w.pid).collect();
    match runtime {
        Runtime::Threads => {
            assert!(pids.iter().all(Option::is_none), "threads have no pid");
            Vec::new()
        }
        _ => {
            let pids: Vec<u32> = pids.into_iter().map(|pid| pid.expect("a pid")).collect();
            let distinct: HashSet<u32> = pids.iter().copied().collect();
            assert_eq!(distinct.len(), pids.len(), "one child per worker: {pids:?}");
            pids
        }
    }
}

/// A fresh log file for the "log_teardown" export, named for the test and the runtime.
fn log_path(test: &str, runtime: Runtime) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "tinypool-{test}-{}-{runtime:?}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// The log's lines, sorted (workers append concurrently).
fn log_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort_unstable();
    lines
}

fn logging_pool(runtime: Runtime, log: &Path) -> tinypool::Builder {
    pool(runtime)
        .teardown("log_teardown")
        .worker_data(log.to_string_lossy().into_owned())
}

fn collect_errors() -> (
    Arc<Mutex<Vec<Error>>>,
    impl Fn(Error) + Send + Sync + 'static,
) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let hook = {
        let errors = errors.clone();
        move |error| errors.lock().unwrap().push(error)
    };
    (errors, hook)
}

// ---- Scheduling -----------------------------------------------------------------------------

/// Scenario 65 (and 105): min 2 / max 3; a worker is added for the third blocked task, the
/// fourth waits in the queue until a worker is free.
fn a_worker_is_added_per_blocked_task_up_to_max_then_tasks_queue(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).max_threads(3).build().unwrap();
    assert_eq!(sizes(&pool), (2, 0));
    let mut holds: Vec<Hold> = Vec::new();
    for (tag, expected) in [(2, 0), (2, 0), (3, 0), (3, 1)].into_iter().enumerate() {
        holds.push(hold(&pool, tag as u32));
        assert_eq!(sizes(&pool), expected, "after run {}", tag + 1);
    }
    for (tag, (_, port)) in holds.iter().enumerate().take(3) {
        assert_eq!(next(port), Ok(tag as u32));
    }
    assert_eq!(sizes(&pool), (3, 1));
    assert_eq!(holds[3].1.try_recv(), Ok(None), "the queued task waits");

    holds[0].1.send(0).unwrap();
    assert_eq!(next(&holds[3].1), Ok(3), "a freed worker took it");
    assert_eq!(sizes(&pool), (3, 0));
    for (_, port) in &holds[1..] {
        port.send(0).unwrap();
    }
    for (tag, (task, _)) in holds.into_iter().enumerate() {
        assert_eq!(held(task).0, tag as u32);
    }
    pool.destroy().wait().unwrap();
}

/// Scenario 66: min 0, max 1, max_queue 2: 1/0, 1/1, 1/2, then `QueueFull`; destroy fails the
/// three accepted tasks, and the queued ones never start.
fn a_full_queue_rejects_with_queue_full_and_destroy_fails_the_rest(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(0)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(2))
        .build()
        .unwrap();
    let mut holds: Vec<Hold> = Vec::new();
    for (tag, expected) in [(1, 0), (1, 1), (1, 2)].into_iter().enumerate() {
        holds.push(hold(&pool, tag as u32));
        assert_eq!(sizes(&pool), expected, "after run {}", tag + 1);
    }
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::QueueFull));
    assert_eq!(sizes(&pool), (1, 2), "a rejected task leaves no trace");
    assert_eq!(next(&holds[0].1), Ok(0));

    pool.destroy().wait().unwrap();
    // Checked while the task handles live (dropping one drops its channel too).
    for (tag, (task, port)) in holds.into_iter().enumerate() {
        if tag > 0 {
            assert_eq!(next(&port), Err(Error::Disconnected), "{tag} never started");
        }
        assert_eq!(finish(task), Err(Error::Terminated));
    }
}

/// Scenarios 67 and 68: with max_queue 0 the one worker (started on demand, or fixed) takes
/// one task and refuses the next with `NoQueue`; once it is free it takes one again.
fn no_queue_rejects_while_the_only_worker_is_busy(runtime: Runtime) {
    for min in [0, 1] {
        let pool = pool(runtime)
            .min_threads(min)
            .max_threads(1)
            .max_queue(MaxQueue::Limit(0))
            .build()
            .unwrap();
        let (first, port) = hold(&pool, 0);
        assert_eq!(sizes(&pool), (1, 0), "min {min}: the worker takes the task");
        assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::NoQueue));
        assert_eq!(next(&port), Ok(0));
        assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::NoQueue));
        assert_eq!(sizes(&pool), (1, 0));
        if min == 0 {
            pool.destroy().wait().unwrap();
            assert_eq!(finish(first), Err(Error::Terminated));
        } else {
            port.send(5).unwrap();
            assert_eq!(held(first).3, 5);
            assert_eq!(finish(pool.run::<i32, _>((1, 2))), Ok(3), "free again");
            pool.destroy().wait().unwrap();
        }
    }
}

/// Scenario 69: min 0, max 1, max_queue 0, concurrency 2: both tasks are taken by the one
/// worker, a third is refused, and destroy fails both (the second never started).
fn two_tasks_share_a_worker_with_concurrency_2_until_destroy(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(0)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let (first, first_port) = hold(&pool, 0);
    assert_eq!(sizes(&pool), (1, 0));
    let (second, second_port) = hold(&pool, 1);
    assert_eq!(sizes(&pool), (1, 0));
    assert!(
        !second.is_finished(),
        "the worker has room for a second task"
    );
    assert_eq!(loads(&pool), [2]);
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::NoQueue));
    assert_eq!(next(&first_port), Ok(0));

    pool.destroy().wait().unwrap();
    assert_eq!(
        next(&second_port),
        Err(Error::Disconnected),
        "never started"
    );
    assert_eq!(finish(first), Err(Error::Terminated));
    assert_eq!(finish(second), Err(Error::Terminated));
}

/// Scenario 31, adapted: 2 workers of concurrency 2 take all 4 tasks (none queued), but each
/// runs one function at a time.
fn two_workers_with_concurrency_2_take_four_tasks_and_run_two(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(2)
        .max_threads(2)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let holds: Vec<Hold> = (0..4).map(|tag| hold(&pool, tag)).collect();
    assert_eq!(next(&holds[0].1), Ok(0));
    assert_eq!(next(&holds[1].1), Ok(1));
    assert_eq!(sizes(&pool), (2, 0));
    assert_eq!(loads(&pool), [2, 2]);
    assert_eq!(
        holds[2].1.try_recv(),
        Ok(None),
        "waits in its worker's queue"
    );
    assert_eq!(
        holds[3].1.try_recv(),
        Ok(None),
        "waits in its worker's queue"
    );

    holds[0].1.send(0).unwrap();
    holds[1].1.send(0).unwrap();
    assert_eq!(next(&holds[2].1), Ok(2));
    assert_eq!(next(&holds[3].1), Ok(3));
    holds[2].1.send(0).unwrap();
    holds[3].1.send(0).unwrap();
    let identities: Vec<String> = holds.into_iter().map(|(task, _)| held(task).2).collect();
    assert_eq!(
        identities[0], identities[2],
        "tasks 0 and 2 shared a worker"
    );
    assert_eq!(
        identities[1], identities[3],
        "tasks 1 and 3 shared a worker"
    );
    assert_ne!(identities[0], identities[1]);
    pool.destroy().wait().unwrap();
}

/// §2.19 item 6: Tinypool's newly ready worker takes a single queued task; here a new worker
/// takes as many as its concurrency allows, at once.
fn a_new_worker_takes_as_many_queued_tasks_as_its_concurrency_allows(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let old = [hold(&pool, 0), hold(&pool, 1)];
    assert_eq!(next(&old[0].1), Ok(0));
    let new = [hold(&pool, 2), hold(&pool, 3)];
    assert_eq!(sizes(&pool), (1, 2));

    // The busy worker is replaced once its two tasks are done; its replacement is new.
    finish(pool.recycle_workers()).unwrap();
    old[0].1.send(0).unwrap();
    assert_eq!(next(&old[1].1), Ok(1));
    old[1].1.send(0).unwrap();
    let [first, second] = old;
    let old_identity = held(first.0).2;
    assert_eq!(held(second.0).2, old_identity);

    assert_eq!(next(&new[0].1), Ok(2));
    assert_eq!(
        pool.queue_size(),
        0,
        "the new worker took both queued tasks at once"
    );
    assert_eq!(loads(&pool), [2]);
    assert_eq!(new[1].1.try_recv(), Ok(None), "one function at a time");
    new[0].1.send(0).unwrap();
    assert_eq!(next(&new[1].1), Ok(3));
    new[1].1.send(0).unwrap();
    let [first, second] = new;
    let new_identity = held(first.0).2;
    assert_eq!(held(second.0).2, new_identity);
    assert_ne!(new_identity, old_identity);
    pool.destroy().wait().unwrap();
}

/// One worker runs queued tasks in submission order: each "counter" task returns how many
/// ran on the worker before it.
fn queued_tasks_start_in_submission_order(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (first, port) = hold(&pool, 0);
    let counters: Vec<Task<u32>> = (0..8).map(|_| named(&pool, "counter")).collect();
    assert_eq!(next(&port), Ok(0));
    assert_eq!(pool.queue_size(), 8);
    port.send(0).unwrap();
    held(first);
    for (position, task) in counters.into_iter().enumerate() {
        assert_eq!(finish(task), Ok(position as u32));
    }
    pool.destroy().wait().unwrap();
}

/// The order holds when tasks with an abort signal (which the scheduler places itself) are
/// submitted among tasks without one (which join a saturated pool's queue by the intake):
/// each "counter" task returns how many ran on the one worker before it.
fn abortable_and_plain_tasks_start_in_submission_order(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (first, port) = hold(&pool, 0);
    let controller = AbortController::new();
    let counters: Vec<Task<u32>> = (0..12)
        .map(|i| {
            let mut options = RunOptions::new().name("counter");
            if i % 4 == 3 {
                options = options.signal(controller.signal());
            }
            pool.run_with((), options)
        })
        .collect();
    assert_eq!(next(&port), Ok(0));
    assert_eq!(pool.queue_size(), 12);
    port.send(0).unwrap();
    held(first);
    for (position, task) in counters.into_iter().enumerate() {
        assert_eq!(finish(task), Ok(position as u32));
    }
    assert_eq!(pool.queue_size(), 0);
    pool.destroy().wait().unwrap();
}

/// Scenario 33: min 1 / max 2, idle_timeout: the second worker leaves once idle and a new
/// one comes for the next burst (one stayed, one left, one came: 3 identities).
fn idle_workers_leave_and_come_back_on_demand(runtime: Runtime) {
    let prefix = prefix("rt-idle", runtime);
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(2)
        .idle_timeout(Duration::from_millis(20))
        .thread_name(&prefix)
        .build()
        .unwrap();
    assert_eq!(pool.threads(), 1);
    let mut identities = Vec::new();
    for burst in 0..2u32 {
        let holds = [hold(&pool, 2 * burst), hold(&pool, 2 * burst + 1)];
        assert_eq!(pool.threads(), 2, "burst {burst}");
        for (tag, (_, port)) in (2 * burst..).zip(&holds) {
            assert_eq!(next(port), Ok(tag), "both run at once");
        }
        for (_, port) in &holds {
            port.send(0).unwrap();
        }
        let burst_identities: Vec<String> = holds.into_iter().map(|(t, _)| held(t).2).collect();
        assert_ne!(burst_identities[0], burst_identities[1]);
        identities.extend(burst_identities);
        eventually("the idle worker above min_threads left", || {
            pool.threads() == 1
        });
        eventually("its thread exited", || live(&prefix) == 1);
    }
    let distinct: HashSet<&String> = identities.iter().collect();
    assert_eq!(distinct.len(), 3, "one stayed, one left, one came");
    pool.destroy().wait().unwrap();
}

/// `workers()` lists the live workers: ids within max, their load, and for child processes
/// each child's pid (the very process that runs its tasks); threads have none.
fn workers_lists_each_live_worker_with_its_id_pid_and_load(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).max_threads(3).build().unwrap();
    assert_eq!(sorted_ids(&pool), [1, 2]);
    assert_eq!(loads(&pool), [0, 0]);

    let holds: Vec<Hold> = (0..4).map(|tag| hold(&pool, tag)).collect();
    for (tag, (_, port)) in (0..3).zip(&holds) {
        assert_eq!(next(port), Ok(tag));
    }
    assert_eq!(sorted_ids(&pool), [1, 2, 3]);
    assert_eq!(loads(&pool), [1, 1, 1]);
    assert_eq!(pool.queue_size(), 1, "a queued task is on no worker");
    let listed: HashSet<u32> = pids(&pool, runtime).into_iter().collect();

    for (_, port) in &holds[..3] {
        port.send(0).unwrap();
    }
    assert_eq!(next(&holds[3].1), Ok(3));
    holds[3].1.send(0).unwrap();
    let ran: Vec<Held> = holds.into_iter().map(|(task, _)| held(task)).collect();
    if runtime == Runtime::ChildProcess {
        let ran_in: HashSet<u32> = ran[..3].iter().map(|h| pid_of(&h.2)).collect();
        assert_eq!(
            ran_in, listed,
            "the listed pids are the children that ran the tasks"
        );
    }
    eventually("the worker above min_threads left", || {
        pool.workers().len() == 2
    });
    assert_eq!(loads(&pool), [0, 0]);
    pool.destroy().wait().unwrap();
}

/// `completed` counts tasks a worker ran, to a value or an error, and not refused ones;
/// `duration` is the time since build.
fn completed_counts_tasks_that_ran_and_duration_grows(runtime: Runtime) {
    let before = Instant::now();
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .build()
        .unwrap();
    let built = pool.duration();
    assert!(built <= before.elapsed());
    assert_eq!(pool.completed(), 0);
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Ok(2));
    assert_eq!(pool.completed(), 1);
    let panic = pool.run_with::<i32, _>("counted".to_owned(), RunOptions::new().name("panic"));
    assert!(finish(panic).is_err());
    assert!(finish(pool.run_with::<i32, _>((1, 1), RunOptions::new().name("nope"))).is_err());
    assert!(finish(pool.run::<i64, _>((1, 1))).is_err());
    assert_eq!(pool.completed(), 4, "errors from the worker count");

    let (blocked, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::NoQueue));
    assert_eq!(pool.completed(), 4, "a refused task never ran");
    port.send(0).unwrap();
    held(blocked);
    assert_eq!(pool.completed(), 5);

    std::thread::sleep(Duration::from_millis(5));
    let later = pool.duration();
    assert!(
        later >= built + Duration::from_millis(5),
        "{built:?} then {later:?}"
    );
    assert!(later <= before.elapsed());
    pool.destroy().wait().unwrap();
}

/// Four caller threads submit at once, half waiting and half awaiting: every task resolves
/// with its own value.
fn tasks_from_several_caller_threads_all_resolve(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).max_threads(2).build().unwrap();
    std::thread::scope(|scope| {
        for caller in 0..4i32 {
            let pool = pool.clone();
            scope.spawn(move || {
                let tasks: Vec<Task<i32>> =
                    (0..2_500).map(|i| pool.run((i, caller * 10_000))).collect();
                for (i, task) in (0..2_500).zip(tasks) {
                    let result = if caller % 2 == 0 {
                        finish(task)
                    } else {
                        block_on(task)
                    };
                    assert_eq!(result, Ok(i + caller * 10_000));
                }
            });
        }
    });
    assert_eq!(pool.completed(), 10_000);
    assert_eq!(sizes(&pool), (2, 0));
    pool.destroy().wait().unwrap();
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
    let invalid = |builder: tinypool::Builder, options: &[&str]| match builder.build() {
        Err(Error::InvalidOptions(message)) => {
            for option in options {
                assert!(message.contains(option), "{message}");
            }
        }
        other => panic!("expected InvalidOptions naming {options:?}, got {other:?}"),
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

// ---- Isolation and recycling ----------------------------------------------------------------

/// Scenarios 21, 22 and 24: isolated workers that run at the same time never share an id,
/// ids stay within max_threads, and no worker runs a second task.
fn isolated_workers_have_unique_ids_within_max_threads(runtime: Runtime) {
    let max = 3;
    let pool = pool(runtime)
        .isolate_workers(true)
        .min_threads(0)
        .max_threads(max)
        .build()
        .unwrap();
    let mut seen = HashSet::new();
    for round in 0..10 {
        let holds: Vec<Hold> = (0..max as u32).map(|tag| hold(&pool, tag)).collect();
        for (tag, (_, port)) in (0..).zip(&holds) {
            assert_eq!(next(port), Ok(tag), "round {round}: all run at once");
        }
        for (_, port) in &holds {
            port.send(0).unwrap();
        }
        let ran: Vec<Held> = holds.into_iter().map(|(task, _)| held(task)).collect();
        let ids: HashSet<usize> = ran.iter().map(|h| h.1.expect("in a worker")).collect();
        assert_eq!(ids, (1..=max).collect(), "round {round}: {ran:?}");
        let fresh: HashSet<String> = ran.into_iter().map(|h| h.2).collect();
        assert_eq!(fresh.len(), max);
        assert!(
            fresh.is_disjoint(&seen),
            "round {round}: an isolated worker ran a second task"
        );
        seen.extend(fresh);
    }
    // Many more tasks than workers, all at once.
    for _ in 0..3 {
        let tasks: Vec<Task<Option<usize>>> = (0..8).map(|_| named(&pool, "id")).collect();
        for task in tasks {
            let id = finish(task).unwrap();
            assert!(matches!(id, Some(1..=3)), "{id:?}");
        }
    }
    pool.destroy().wait().unwrap();
}

/// Scenario 23: an isolated pool counts its replacements before a task resolves, so it is
/// at min_threads after each one.
fn an_isolated_pool_is_back_at_min_threads_when_each_task_resolves(runtime: Runtime) {
    let pool = pool(runtime)
        .isolate_workers(true)
        .min_threads(2)
        .max_threads(3)
        .build()
        .unwrap();
    assert_eq!(pool.threads(), 2);
    for run in 0..6 {
        assert_eq!(finish(named::<u32>(&pool, "counter")), Ok(0), "run {run}");
        assert_eq!(sizes(&pool), (2, 0), "after run {run}");
    }
    pool.destroy().wait().unwrap();
}

/// Scenario 25 (Tinypool #42): more tasks than max_threads on an isolated pool with
/// min_threads 0: every one resolves, and the workers then go.
fn an_isolated_pool_with_min_threads_0_never_halts(runtime: Runtime) {
    let pool = pool(runtime)
        .isolate_workers(true)
        .min_threads(0)
        .max_threads(3)
        .build()
        .unwrap();
    let tasks: Vec<Task<i32>> = (0..7).map(|i| pool.run((i, 100))).collect();
    for (i, task) in (0..7).zip(tasks) {
        assert_eq!(finish(task), Ok(i + 100));
    }
    eventually("every worker left", || pool.threads() == 0);
    assert_eq!(pool.queue_size(), 0);
    pool.destroy().wait().unwrap();
}

/// Scenario 35: `recycle_workers` replaces the idle worker at once and the busy one only
/// after its task, which is not cut short; new tasks go to new workers.
fn recycle_replaces_busy_workers_only_after_their_task(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).max_threads(2).build().unwrap();
    let both = [hold(&pool, 0), hold(&pool, 1)];
    for (tag, (_, port)) in (0..).zip(&both) {
        assert_eq!(next(port), Ok(tag));
        port.send(0).unwrap();
    }
    let old: HashSet<String> = both.into_iter().map(|(task, _)| held(task).2).collect();
    assert_eq!(old.len(), 2);

    let (busy, port) = hold(&pool, 2);
    assert_eq!(next(&port), Ok(2));
    finish(pool.recycle_workers()).expect("resolves once the idle worker stopped");
    assert!(
        !busy.is_finished(),
        "the busy worker's task was not cut short"
    );
    assert_eq!(pool.threads(), 2, "the idle worker was replaced");
    assert_eq!(loads(&pool), [0, 1]);
    let fresh: String = finish(named(&pool, "identity")).unwrap();
    assert!(!old.contains(&fresh), "a new task goes to the replacement");

    port.send(0).unwrap();
    let busy = held(busy).2;
    assert!(
        old.contains(&busy),
        "the task ran to its end on its old worker"
    );
    let both = [hold(&pool, 3), hold(&pool, 4)];
    for (tag, (_, port)) in (3..).zip(&both) {
        assert_eq!(next(port), Ok(tag));
        port.send(0).unwrap();
    }
    let new: HashSet<String> = both.into_iter().map(|(task, _)| held(task).2).collect();
    assert_eq!(new.len(), 2);
    assert!(new.is_disjoint(&old), "old {old:?}, new {new:?}");
    assert_eq!(pool.threads(), 2);
    pool.destroy().wait().unwrap();
}

/// §2.19 item 5: Tinypool fails the other tasks of a recycled worker; here both tasks of the
/// worker run to their end on it, and then it is replaced.
fn recycling_never_fails_sibling_tasks_with_concurrency_2(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let (first, first_port) = hold(&pool, 1);
    let (second, second_port) = hold(&pool, 2);
    assert_eq!(next(&first_port), Ok(1));
    assert_eq!(loads(&pool), [2], "both tasks are on the one worker");
    finish(pool.recycle_workers()).unwrap();

    first_port.send(0).unwrap();
    assert_eq!(next(&second_port), Ok(2));
    second_port.send(0).unwrap();
    let (one, two) = (held(first), held(second));
    assert_eq!((one.0, two.0), (1, 2));
    assert_eq!(one.2, two.2, "both ran on the recycled worker");
    let new: String = finish(named(&pool, "identity")).unwrap();
    assert_ne!(new, one.2, "then it was replaced");
    pool.destroy().wait().unwrap();
}

/// §2.19 item 5 with isolate_workers and concurrency 2: every task still resolves, in order,
/// each on a fresh worker.
fn isolation_never_fails_sibling_tasks_with_concurrency_2(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .isolate_workers(true)
        .build()
        .unwrap();
    let holds: Vec<Hold> = (0..4).map(|tag| hold(&pool, tag)).collect();
    for (tag, (_, port)) in (0..).zip(&holds) {
        assert_eq!(next(port), Ok(tag));
        port.send(0).unwrap();
    }
    let ran: Vec<Held> = holds.into_iter().map(|(task, _)| held(task)).collect();
    let tags: Vec<u32> = ran.iter().map(|h| h.0).collect();
    assert_eq!(tags, [0, 1, 2, 3]);
    let distinct: HashSet<&String> = ran.iter().map(|h| &h.2).collect();
    assert_eq!(distinct.len(), 4, "no two tasks shared a worker");
    for _ in 0..3 {
        assert_eq!(finish(named::<u32>(&pool, "counter")), Ok(0));
    }
    pool.destroy().wait().unwrap();
}

// ---- Abort ----------------------------------------------------------------------------------

/// Scenario 86: aborting a queued task removes it: it is not counted and never runs (had it
/// run on the one worker, the next "counter" would return 1).
fn an_aborted_queued_task_never_runs(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (first, port) = hold(&pool, 0);
    let controller = AbortController::new();
    let options = RunOptions::new()
        .name("counter")
        .signal(controller.signal());
    let victim = pool.run_with::<u32, _>((), options);
    assert_eq!(pool.queue_size(), 1);

    controller.abort();
    assert!(
        victim.is_finished(),
        "an abort resolves the task synchronously"
    );
    assert_eq!(pool.queue_size(), 0);
    assert_eq!(finish(victim), Err(aborted(None)));
    assert!(!first.is_finished());
    assert_eq!(next(&port), Ok(0));
    port.send(7).unwrap();
    assert_eq!(held(first).3, 7);
    assert_eq!(
        finish(named::<u32>(&pool, "counter")),
        Ok(0),
        "the aborted task never ran"
    );
    assert_eq!(pool.completed(), 2);
    pool.destroy().wait().unwrap();
}

/// Scenario 87: with concurrency 2 a plain task shares a busy worker, an abortable one never
/// does: it waits in the queue although the worker has room.
fn an_abortable_task_never_shares_a_busy_worker(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let multiply = || RunOptions::new().name("multiply");
    let (blocking, port) = hold(&pool, 0);
    let shared = pool.run_with::<i32, _>((2, 10), multiply());
    assert_eq!(pool.queue_size(), 0, "a plain task shares the worker");
    assert_eq!(loads(&pool), [2]);
    assert_eq!(next(&port), Ok(0));
    port.send(0).unwrap();
    held(blocking);
    assert_eq!(finish(shared), Ok(20));

    let (blocking, port) = hold(&pool, 1);
    let controller = AbortController::new();
    let abortable = pool.run_with::<i32, _>((3, 10), multiply().signal(controller.signal()));
    assert_eq!(pool.queue_size(), 1, "an abortable task never shares");
    assert_eq!(loads(&pool), [1]);
    assert_eq!(next(&port), Ok(1));
    port.send(0).unwrap();
    held(blocking);
    assert_eq!(finish(abortable), Ok(30));
    pool.destroy().wait().unwrap();
}

/// Scenario 88: a task behind a running abortable one waits (although the worker has room)
/// and runs once that one is aborted, on a worker started for it.
fn a_task_behind_a_running_abortable_one_waits_for_the_abort(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(0)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let controller = AbortController::new();
    let (abortable, port) = hold_with(&pool, 0, Some(controller.signal()));
    assert_eq!(next(&port), Ok(0));
    let answer = pool.run_with::<i32, _>((6, 7), RunOptions::new().name("multiply"));
    assert_eq!(pool.queue_size(), 1);
    assert_eq!(loads(&pool), [1]);

    controller.abort();
    assert_eq!(finish(abortable), Err(aborted(None)));
    assert_eq!(finish(answer), Ok(42));
    pool.destroy().wait().unwrap();
}

/// Scenario 89: an abortable task waits until its worker is empty, so it runs only after both
/// tasks the worker had already taken.
fn an_abortable_task_waits_for_an_empty_worker(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let (a, a_port) = hold(&pool, 0);
    let (b, b_port) = hold(&pool, 1);
    let controller = AbortController::new();
    let options = RunOptions::new()
        .name("counter")
        .signal(controller.signal());
    let c = pool.run_with::<u32, _>((), options);
    assert_eq!(pool.queue_size(), 1);
    assert_eq!(loads(&pool), [2]);

    assert_eq!(next(&a_port), Ok(0));
    a_port.send(0).unwrap();
    held(a);
    assert_eq!(next(&b_port), Ok(1));
    // `b` runs; the worker has room for one more task, but not for the abortable one.
    assert_eq!(pool.queue_size(), 1);
    assert_eq!(loads(&pool), [1]);
    assert!(!c.is_finished());
    b_port.send(0).unwrap();
    held(b);
    assert_eq!(finish(c), Ok(0));
    pool.destroy().wait().unwrap();
}

/// Scenario 90: destroy fails a queued abortable task with `Terminated`, and a later abort
/// does not change that; the queued tasks never start.
fn destroy_fails_a_queued_abortable_task_with_terminated(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (running, port) = hold(&pool, 0);
    let (queued, queued_port) = hold(&pool, 1);
    let controller = AbortController::new();
    let (abortable, abortable_port) = hold_with(&pool, 2, Some(controller.signal()));
    assert_eq!(next(&port), Ok(0));
    assert_eq!(pool.queue_size(), 2);

    let destroy = pool.destroy();
    controller.abort();
    assert_eq!(finish(running), Err(Error::Terminated));
    destroy.wait().unwrap();
    // Checked while the task handles live (dropping one drops its channel too).
    for port in [&queued_port, &abortable_port] {
        assert_eq!(next(port), Err(Error::Disconnected), "never started");
    }
    assert_eq!(finish(queued), Err(Error::Terminated));
    assert_eq!(finish(abortable), Err(Error::Terminated));
}

/// Scenario 91: a task whose signal already fired fails at once: nothing is queued, no
/// worker starts, and its channel is closed without being handed over.
fn a_pre_aborted_signal_fails_at_once_and_queues_nothing(runtime: Runtime) {
    let prefix = prefix("rt-pre", runtime);
    let pool = pool(runtime)
        .min_threads(0)
        .max_threads(1)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let controller = AbortController::new();
    controller.abort_with("before");
    let (port, theirs) = tinypool::channel::<u32>();
    let options = RunOptions::new()
        .name("hold")
        .signal(controller.signal())
        .channel(theirs);
    let task = pool.run_with::<Result<Held, String>, _>(0u32, options);
    assert!(task.is_finished(), "a pre-aborted task fails synchronously");
    assert_eq!(sizes(&pool), (0, 0), "no worker was started for it");
    assert_eq!(live(&prefix), 0);
    assert_eq!(finish(task), Err(aborted(Some("before"))));
    assert_eq!(port.recv(), Err(Error::Disconnected));
    assert_eq!(port.send(1), Err(Error::Disconnected));

    // The same on a busy pool with a queue: the task does not join it.
    let (running, port) = hold(&pool, 0);
    let queued = pool.run::<i32, _>((1, 1));
    assert_eq!(next(&port), Ok(0));
    assert_eq!(pool.queue_size(), 1);
    let pre = pool.run_with::<i32, _>((1, 1), RunOptions::new().signal(controller.signal()));
    assert!(pre.is_finished());
    assert_eq!(pool.queue_size(), 1);
    assert_eq!(finish(pre), Err(aborted(Some("before"))));
    port.send(0).unwrap();
    held(running);
    assert_eq!(finish(queued), Ok(2));
    assert_eq!(pool.completed(), 2);
    pool.destroy().wait().unwrap();
}

/// An abort after the task finished keeps its result and leaves its worker alone: the
/// worker's state carries on.
fn an_abort_after_the_task_finished_keeps_the_result_and_the_worker(runtime: Runtime) {
    let prefix = prefix("rt-late", runtime);
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let counter = |signal: &AbortController| {
        let options = RunOptions::new().name("counter").signal(signal.signal());
        pool.run_with::<u32, _>((), options)
    };
    // Aborted after its result was read.
    let controller = AbortController::new();
    assert_eq!(finish(counter(&controller)), Ok(0));
    controller.abort();

    // Aborted after it finished but before its result was read: one worker runs tasks in
    // order, so once the next task resolved, this one had resolved too.
    let late = AbortController::new();
    let task = counter(&late);
    assert_eq!(finish(named::<u32>(&pool, "counter")), Ok(2));
    assert!(task.is_finished());
    late.abort_with("too late");
    assert_eq!(finish(task), Ok(1));

    assert_eq!(pool.threads(), 1);
    assert_eq!(
        finish(named::<u32>(&pool, "counter")),
        Ok(3),
        "the same worker"
    );
    assert_eq!(live(&prefix), 1);
    pool.destroy().wait().unwrap();
}

/// One signal shared by running and queued tasks aborts them all (the queued ones never
/// start); a task with another signal is untouched and runs on a worker started for it.
fn one_signal_aborts_every_task_that_shares_it(runtime: Runtime) {
    let pool = pool(runtime).min_threads(0).max_threads(2).build().unwrap();
    let (shared, other) = (AbortController::new(), AbortController::new());
    let holds: Vec<Hold> = (0..5)
        .map(|tag| hold_with(&pool, tag, Some(shared.signal())))
        .collect();
    let survivor = pool.run_with::<i32, _>((1, 1), RunOptions::new().signal(other.signal()));
    assert_eq!(next(&holds[0].1), Ok(0));
    assert_eq!(next(&holds[1].1), Ok(1));
    assert_eq!(sizes(&pool), (2, 4));

    shared.abort_with("all of them");
    assert!(holds.iter().all(|(task, _)| task.is_finished()));
    for (task, port) in holds {
        assert_eq!(
            next(&port),
            Err(Error::Disconnected),
            "nothing more was sent"
        );
        assert_eq!(finish(task), Err(aborted(Some("all of them"))));
    }
    assert_eq!(finish(survivor), Ok(2));
    assert!(!other.signal().aborted());
    pool.destroy().wait().unwrap();
}

/// Aborting a running task retires its worker at once: with min_threads 0 none is left, with
/// min_threads 1 a replacement (with the freed id) counts at once. The reason travels in the
/// error and the task's channel closes.
fn a_running_abort_replaces_the_worker_at_once(runtime: Runtime) {
    for min in [0, 1] {
        let pool = pool(runtime)
            .min_threads(min)
            .max_threads(1)
            .build()
            .unwrap();
        let controller = AbortController::new();
        let (task, port) = hold_with(&pool, 0, Some(controller.signal()));
        assert_eq!(next(&port), Ok(0));
        let before: Vec<u32> = pids(&pool, runtime);

        controller.abort_with("enough");
        assert_eq!(pool.threads(), min, "the aborted worker no longer counts");
        let workers = pool.workers();
        assert!(
            workers.iter().all(|w| w.id == 1 && w.running == 0),
            "{workers:?}"
        );
        assert_eq!(next(&port), Err(Error::Disconnected));
        assert_eq!(finish(task), Err(aborted(Some("enough"))));
        let id: Option<usize> = finish(named(&pool, "id")).unwrap();
        assert_eq!(id, Some(1), "the freed id is reused");
        assert_eq!(
            finish(named::<u32>(&pool, "counter")),
            Ok(0),
            "a fresh worker"
        );
        // The aborted child was killed and reaped.
        for pid in before {
            eventually("the aborted child is reaped", || gone(pid));
        }
        pool.destroy().wait().unwrap();
    }
}

/// An abortable task given to a worker that may not have started it yet is aborted all the
/// same, and the pool keeps serving.
fn an_abort_of_a_task_handed_to_a_starting_worker_fails_it(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(0)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    for _ in 0..20 {
        let controller = AbortController::new();
        let options = RunOptions::new().name("spin").signal(controller.signal());
        let task = pool.run_with::<(), _>((), options);
        controller.abort();
        assert!(task.is_finished());
        assert_eq!(finish(task), Err(aborted(None)));
        let answer = pool.run_with::<i32, _>((6, 7), RunOptions::new().name("multiply"));
        assert_eq!(finish(answer), Ok(42));
    }
    pool.destroy().wait().unwrap();
}

// ---- Destroy and teardown -------------------------------------------------------------------

/// Destroy (awaited here) fails queued and running tasks on several workers; queued ones never
/// start, and no worker thread (nor child) is left once it resolved.
fn destroy_fails_queued_and_running_tasks_and_stops_every_worker(runtime: Runtime) {
    let prefix = prefix("rt-dall", runtime);
    let pool = pool(runtime)
        .min_threads(2)
        .max_threads(2)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let holds: Vec<Hold> = (0..6).map(|tag| hold(&pool, tag)).collect();
    assert_eq!(next(&holds[0].1), Ok(0));
    assert_eq!(next(&holds[1].1), Ok(1));
    assert_eq!(pool.queue_size(), 4);
    assert_eq!(live(&prefix), 2);
    let children = pids(&pool, runtime);

    assert_eq!(block_on(pool.destroy()), Ok(()));
    assert_eq!(live(&prefix), 0, "every worker thread is joined");
    assert!(
        children.iter().all(|&pid| gone(pid)),
        "every child is reaped"
    );
    assert_eq!(sizes(&pool), (0, 0));
    for (tag, (task, port)) in holds.into_iter().enumerate() {
        if tag >= 2 {
            assert_eq!(next(&port), Err(Error::Disconnected), "{tag} never started");
        }
        assert_eq!(block_on(task), Err(Error::Terminated));
    }
}

/// Destroying twice, or from two clones, is fine; afterwards every run fails with
/// `Terminated` at once and starts no worker.
fn destroy_twice_is_fine_and_later_runs_fail_with_terminated(runtime: Runtime) {
    let prefix = prefix("rt-twice", runtime);
    let pool = pool(runtime)
        .max_threads(1)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let (task, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    let clone = pool.clone();
    let (first, second) = (pool.destroy(), clone.destroy());
    assert_eq!(first.wait(), Ok(()));
    assert_eq!(second.wait(), Ok(()));
    assert_eq!(pool.destroy().wait(), Ok(()));
    assert_eq!(block_on(clone.destroy()), Ok(()));
    assert_eq!(finish(task), Err(Error::Terminated));

    let late = pool.run::<i32, _>((1, 2));
    assert!(late.is_finished());
    assert_eq!(finish(late), Err(Error::Terminated));
    let controller = AbortController::new();
    let abortable = pool.run_with::<i32, _>((1, 2), RunOptions::new().signal(controller.signal()));
    assert_eq!(finish(abortable), Err(Error::Terminated));
    assert_eq!(sizes(&pool), (0, 0));
    assert_eq!(live(&prefix), 0);
}

/// Dropping the last `Pool` clone destroys the pool: its workers are gone when the drop
/// returns, and pending tasks (which do not keep it alive) fail with `Terminated`.
fn dropping_the_last_pool_clone_destroys_it(runtime: Runtime) {
    let prefix = prefix("rt-drop", runtime);
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let (running, port) = hold(&pool, 0);
    let (queued, queued_port) = hold(&pool, 1);
    assert_eq!(next(&port), Ok(0));
    let children = pids(&pool, runtime);
    let clone = pool.clone();

    drop(pool);
    assert!(!running.is_finished(), "a clone still holds the pool");
    assert_eq!(clone.queue_size(), 1);
    assert_eq!(live(&prefix), 1);

    drop(clone);
    assert_eq!(live(&prefix), 0, "the drop joined the worker");
    assert!(
        children.iter().all(|&pid| gone(pid)),
        "and reaped its child"
    );
    assert_eq!(
        next(&queued_port),
        Err(Error::Disconnected),
        "never started"
    );
    assert_eq!(finish(running), Err(Error::Terminated));
    assert_eq!(finish(queued), Err(Error::Terminated));
}

/// A function deaf to `destroy` (it ignores aborts and its channel). Both runtimes fail its
/// task with `Terminated`, but only a child can be stopped from outside: a thread makes
/// destroy report `TerminateTimeout` naming its worker and is left to finish, detached, while
/// a child is killed and destroy succeeds.
fn a_worker_deaf_to_destroy_times_out_as_a_thread_and_is_killed_as_a_child(runtime: Runtime) {
    let prefix = prefix("rt-deaf", runtime);
    let pool = pool(runtime)
        .min_threads(2)
        .max_threads(2)
        .terminate_timeout(Duration::from_millis(500))
        .thread_name(&prefix)
        .build()
        .unwrap();
    let (stuck_port, theirs) = tinypool::channel::<u32>();
    let stuck = pool.run_with::<(), _>((), RunOptions::new().name("stuck").channel(theirs));
    let stuck_id = next(&stuck_port).unwrap() as usize;
    let (fine, port) = hold(&pool, 1);
    assert_eq!(next(&port), Ok(1));
    let children = pids(&pool, runtime);

    let result = pool.destroy().wait();
    assert_eq!(finish(stuck), Err(Error::Terminated));
    assert_eq!(finish(fine), Err(Error::Terminated));
    match runtime {
        Runtime::Threads => {
            assert_eq!(result, Err(Error::TerminateTimeout { worker: stuck_id }));
            assert_eq!(
                result.unwrap_err().to_string(),
                format!("failed to terminate worker {stuck_id} within terminate_timeout")
            );
            assert_eq!(live(&prefix), 1, "only the stuck worker's thread is left");
            let (open, changed) = &STUCK;
            *open.lock().unwrap() = true;
            changed.notify_all();
            eventually("the stuck function returned", || live(&prefix) == 0);
            assert_eq!(
                pool.destroy().wait(),
                Ok(()),
                "its thread is joined at last"
            );
        }
        _ => {
            assert_eq!(result, Ok(()));
            assert_eq!(live(&prefix), 0);
            assert!(
                children.iter().all(|&pid| gone(pid)),
                "the child was killed"
            );
        }
    }
}

/// Scenario 73: in an isolated pool every worker runs one task and its teardown when it is
/// removed after it, seeing that task's state; the one waiting for a fourth task runs its
/// teardown at destroy, having run nothing.
fn an_isolated_pool_runs_the_teardown_once_per_task(runtime: Runtime) {
    let log = log_path("teardown-isolated", runtime);
    let pool = logging_pool(runtime, &log)
        .min_threads(1)
        .max_threads(1)
        .isolate_workers(true)
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(finish(named::<u32>(&pool, "counter")), Ok(0));
    }
    pool.destroy().wait().unwrap();
    assert_eq!(
        log_lines(&log),
        [
            "teardown Some(1) after 0",
            "teardown Some(1) after 1",
            "teardown Some(1) after 1",
            "teardown Some(1) after 1",
        ]
    );
    let _ = std::fs::remove_file(&log);
}

/// Scenario 74: without isolation the teardown runs only at destroy, once, and sees the state
/// the five tasks left.
fn a_shared_worker_runs_its_teardown_only_at_destroy(runtime: Runtime) {
    let log = log_path("teardown-shared", runtime);
    let pool = logging_pool(runtime, &log)
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();
    for n in 0..5 {
        assert_eq!(finish(named::<u32>(&pool, "counter")), Ok(n));
    }
    assert!(
        log_lines(&log).is_empty(),
        "no teardown while the worker lives"
    );
    pool.destroy().wait().unwrap();
    assert_eq!(log_lines(&log), ["teardown Some(1) after 5"]);
    let _ = std::fs::remove_file(&log);
}

/// `recycle_workers` runs the teardown of the idle worker it replaces before it resolves; the
/// replacement runs its own at destroy.
fn recycle_runs_the_teardown_of_the_replaced_worker(runtime: Runtime) {
    let log = log_path("teardown-recycle", runtime);
    let pool = logging_pool(runtime, &log)
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();
    assert_eq!(finish(named::<u32>(&pool, "counter")), Ok(0));
    assert_eq!(finish(pool.recycle_workers()), Ok(()));
    assert_eq!(log_lines(&log), ["teardown Some(1) after 1"]);
    assert_eq!(
        finish(named::<u32>(&pool, "counter")),
        Ok(0),
        "a fresh worker"
    );
    pool.destroy().wait().unwrap();
    assert_eq!(
        log_lines(&log),
        ["teardown Some(1) after 1", "teardown Some(1) after 1"]
    );
    let _ = std::fs::remove_file(&log);
}

/// A worker that leaves after `idle_timeout` runs its teardown; destroy then has none left to
/// tear down.
fn idle_timeout_runs_the_teardown(runtime: Runtime) {
    let log = log_path("teardown-idle", runtime);
    let prefix = prefix("rt-tidle", runtime);
    let pool = logging_pool(runtime, &log)
        .min_threads(0)
        .max_threads(1)
        .idle_timeout(Duration::ZERO)
        .thread_name(&prefix)
        .build()
        .unwrap();
    assert_eq!(finish(named::<u32>(&pool, "counter")), Ok(0));
    eventually("the idle worker ran its teardown", || {
        !log_lines(&log).is_empty()
    });
    assert_eq!(pool.threads(), 0);
    eventually("its thread exited", || live(&prefix) == 0);
    pool.destroy().wait().unwrap();
    assert_eq!(log_lines(&log), ["teardown Some(1) after 1"]);
    let _ = std::fs::remove_file(&log);
}

/// An aborted worker is retired. A thread cannot be stopped: once the aborted function
/// returns (it polls `worker::aborted()`), the thread runs its teardown. A child's function
/// never learns of the abort (a child's `worker::aborted()` is always false): the child is
/// killed, so it cannot run one.
fn an_aborted_thread_runs_its_teardown_but_a_killed_child_cannot(runtime: Runtime) {
    let log = log_path("teardown-abort", runtime);
    let pool = logging_pool(runtime, &log)
        .min_threads(0)
        .max_threads(1)
        .build()
        .unwrap();
    let controller = AbortController::new();
    let (port, theirs) = tinypool::channel::<u32>();
    let options = RunOptions::new()
        .name("spin")
        .signal(controller.signal())
        .channel(theirs);
    let task = pool.run_with::<(), _>((), options);
    assert_eq!(next(&port), Ok(0), "the spinning task started");
    let children = pids(&pool, runtime);
    controller.abort();
    assert_eq!(finish(task), Err(aborted(None)));
    if runtime == Runtime::Threads {
        eventually("the retired thread ran its teardown", || {
            !log_lines(&log).is_empty()
        });
    }
    // Destroy waits for the retired worker too.
    pool.destroy().wait().unwrap();
    let expected: &[&str] = match runtime {
        Runtime::Threads => &["teardown Some(1) after 0"],
        _ => &[],
    };
    assert_eq!(log_lines(&log), expected);
    assert!(
        children.iter().all(|&pid| gone(pid)),
        "the child was killed"
    );
    let _ = std::fs::remove_file(&log);
}

/// A teardown that panics is reported to `on_error` once per worker, and destroy still
/// stops every worker and returns `Ok`.
fn a_panicking_teardown_is_reported_to_on_error(runtime: Runtime) {
    let prefix = prefix("rt-tpanic", runtime);
    let (errors, hook) = collect_errors();
    let pool = pool(runtime)
        .min_threads(2)
        .max_threads(2)
        .teardown("panic_teardown")
        .on_error(hook)
        .thread_name(&prefix)
        .build()
        .unwrap();
    assert_eq!(finish(pool.run::<i32, _>((3, 4))), Ok(7));
    assert_eq!(pool.destroy().wait(), Ok(()));
    assert_eq!(live(&prefix), 0);
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    for error in errors.iter() {
        panicked_here(error, "teardown failed");
    }
}

/// A teardown that is not exported. A threads pool knows its exports and refuses it at build;
/// a child-process pool cannot (its children hold the exports), so each child reports it to
/// `on_error` when it stops.
fn a_teardown_that_is_not_exported_is_refused_or_reported(runtime: Runtime) {
    let (errors, hook) = collect_errors();
    let built = pool(runtime)
        .min_threads(2)
        .max_threads(2)
        .teardown("missing_teardown")
        .on_error(hook)
        .build();
    let missing = Error::NoSuchFunction {
        name: "missing_teardown".to_owned(),
    };
    match (runtime, built) {
        (Runtime::Threads, Err(Error::InvalidOptions(message))) => {
            assert!(message.contains("missing_teardown"), "{message}");
        }
        (Runtime::Threads, other) => panic!("expected InvalidOptions, got {other:?}"),
        (_, built) => {
            let pool = built.unwrap();
            assert_eq!(finish(pool.run::<i32, _>((3, 4))), Ok(7));
            assert_eq!(pool.destroy().wait(), Ok(()));
            assert_eq!(*errors.lock().unwrap(), [missing.clone(), missing]);
        }
    }
}

// ---- Cancel ---------------------------------------------------------------------------------

/// Scenario 72: min 0, max 1: cancelling fails every queued task with `Cancelled` at once and
/// closes their channels; the running one finishes; none of the cancelled ones ever ran.
fn cancel_fails_queued_tasks_and_closes_their_channels(runtime: Runtime) {
    let pool = pool(runtime).min_threads(0).max_threads(1).build().unwrap();
    let (running, port) = hold(&pool, 0);
    let queued: Vec<Task<i32>> = (0..8).map(|i| pool.run((i, i))).collect();
    let (talk, talk_port) = hold(&pool, 9);
    assert_eq!(next(&port), Ok(0));
    assert_eq!(pool.queue_size(), 9);

    pool.cancel_pending_tasks();
    assert_eq!(pool.queue_size(), 0, "the queue empties at once");
    assert!(queued.iter().all(Task::is_finished), "synchronously");
    assert!(talk.is_finished());
    assert_eq!(talk_port.try_recv(), Err(Error::Disconnected));
    assert_eq!(talk_port.send(1), Err(Error::Disconnected));
    for task in queued {
        assert_eq!(finish(task), Err(Error::Cancelled));
    }
    let error = finish(talk).unwrap_err();
    assert_eq!(error, Error::Cancelled);
    assert_eq!(error.to_string(), "the task has been cancelled");

    assert!(!running.is_finished());
    port.send(3).unwrap();
    assert_eq!(held(running).3, 3);
    assert_eq!(pool.completed(), 1, "no cancelled task ran");
    assert_eq!(
        finish(pool.run::<i32, _>((2, 3))),
        Ok(5),
        "the pool serves on"
    );
    pool.destroy().wait().unwrap();
}

/// Tasks a worker took but did not start (concurrency 2) are cancelled too, and so are queued
/// abortable ones (a later abort changes nothing); none of them ever runs.
fn cancel_also_fails_tasks_a_worker_took_but_did_not_start(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let (running, port) = hold(&pool, 0);
    let in_worker_queue = named::<u32>(&pool, "counter");
    let queued = named::<u32>(&pool, "counter");
    let controller = AbortController::new();
    let options = RunOptions::new()
        .name("counter")
        .signal(controller.signal());
    let abortable = pool.run_with::<u32, _>((), options);
    assert_eq!(next(&port), Ok(0));
    assert_eq!(loads(&pool), [2]);
    assert_eq!(pool.queue_size(), 2);

    pool.cancel_pending_tasks();
    assert_eq!(pool.queue_size(), 0);
    assert_eq!(loads(&pool), [1]);
    controller.abort();
    assert_eq!(finish(in_worker_queue), Err(Error::Cancelled));
    assert_eq!(finish(queued), Err(Error::Cancelled));
    assert_eq!(finish(abortable), Err(Error::Cancelled));
    port.send(0).unwrap();
    held(running);
    assert_eq!(
        finish(named::<u32>(&pool, "counter")),
        Ok(0),
        "no cancelled task ran on the worker"
    );
    pool.destroy().wait().unwrap();
}

// ---- Channels -------------------------------------------------------------------------------

/// When the task ends its side closes: the caller still receives everything it sent, then
/// every way of receiving reports `Disconnected`.
fn the_caller_drains_what_was_sent_then_gets_disconnected(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (port, theirs) = tinypool::channel::<u32>();
    let task = pool
        .run_with::<Result<(), String>, _>(3u32, RunOptions::new().name("send_n").channel(theirs));
    assert_eq!(finish(task), Ok(Ok(())));

    assert_eq!(port.recv(), Ok(0));
    assert_eq!(port.try_recv(), Ok(Some(1)));
    assert_eq!(port.recv_timeout(BOUND), Ok(Some(2)));
    assert_eq!(port.recv(), Err(Error::Disconnected));
    assert_eq!(port.try_recv(), Err(Error::Disconnected));
    assert_eq!(port.recv_timeout(BOUND), Err(Error::Disconnected));
    assert_eq!(block_on(port.recv_async()), Err(Error::Disconnected));
    pool.destroy().wait().unwrap();
}

/// Sending to a task that has finished is an error, never a panic, from any clone.
fn send_to_a_finished_task_fails_with_disconnected(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (port, theirs) = tinypool::channel::<u32>();
    let task = pool
        .run_with::<Result<(), String>, _>(0u32, RunOptions::new().name("send_n").channel(theirs));
    assert_eq!(finish(task), Ok(Ok(())));
    assert_eq!(port.send(1), Err(Error::Disconnected));
    assert_eq!(port.clone().send(2), Err(Error::Disconnected));
    pool.destroy().wait().unwrap();
}

/// `recv_timeout` and `try_recv` give `Ok(None)` while the task has sent nothing, and the
/// message once it has.
fn recv_timeout_and_try_recv_give_none_while_nothing_was_sent(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (port, theirs) = tinypool::channel::<u32>();
    let task: Task<u32> = pool.run_with((), RunOptions::new().name("echo").channel(theirs));
    // "echo" sends nothing before it hears from us.
    assert_eq!(port.recv_timeout(Duration::from_millis(5)), Ok(None));
    assert_eq!(port.recv_timeout(Duration::ZERO), Ok(None));
    assert_eq!(port.try_recv(), Ok(None));
    port.send(41).unwrap();
    assert_eq!(port.recv_timeout(BOUND), Ok(Some(42)));
    assert_eq!(port.try_recv(), Ok(None));
    drop(port);
    assert_eq!(finish(task), Ok(1));
    pool.destroy().wait().unwrap();
}

/// `worker::port` with another message type than the channel's is a `TypeMismatch` naming
/// both types.
fn worker_port_of_the_wrong_type_is_a_type_mismatch(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (_port, theirs) = tinypool::channel::<String>();
    let options = RunOptions::new().name("port_type").channel(theirs);
    let task = pool.run_with::<Option<(String, String, String)>, _>((), options);
    let string = type_name::<String>();
    assert_eq!(
        finish(task),
        Ok(Some((
            string.to_owned(),
            "u32".to_owned(),
            format!(
                "the task's channel has the wrong type: it carries `{string}`, the function \
                 asked for a port of `u32`"
            )
        )))
    );
    pool.destroy().wait().unwrap();
}

/// A task given no channel gets `NoChannel`; a channel given to one task is not seen by the
/// next on the same worker; outside a worker there is none either.
fn worker_port_without_a_channel_is_no_channel(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    assert_eq!(
        finish(named::<String>(&pool, "has_port")).as_deref(),
        Ok("none")
    );
    let (_port, theirs) = tinypool::channel::<u32>();
    let with = pool.run_with::<String, _>((), RunOptions::new().name("has_port").channel(theirs));
    assert_eq!(finish(with).as_deref(), Ok("ok"));
    assert_eq!(
        finish(named::<String>(&pool, "has_port")).as_deref(),
        Ok("none")
    );
    assert_eq!(worker::port::<u32>().unwrap_err(), Error::NoChannel);
    pool.destroy().wait().unwrap();
}

/// A task blocked on `recv` wakes when the caller drops its side: it first drains what was
/// sent, then gets `Disconnected`, and its sends fail.
fn a_task_blocked_on_recv_wakes_with_disconnected_when_the_caller_drops_its_port(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    for sent in [vec![], vec![1, 2]] {
        let (port, theirs) = tinypool::channel::<u32>();
        let options = RunOptions::new().name("drain").channel(theirs);
        let task = pool.run_with::<Result<(Vec<u32>, bool, bool), String>, _>((), options);
        assert_eq!(next(&port), Ok(0), "the task runs");
        for &n in &sent {
            port.send(n).unwrap();
        }
        drop(port);
        assert_eq!(finish(task), Ok(Ok((sent, true, true))));
    }
    pool.destroy().wait().unwrap();
}

// ---- Exports --------------------------------------------------------------------------------

/// A panic with a payload that is not a string still fails only its task.
fn a_panic_with_a_non_string_payload_fails_the_task(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let before: String = finish(named(&pool, "identity")).unwrap();
    panicked_here(
        &finish(named::<u32>(&pool, "panic_any")).unwrap_err(),
        "<non-string panic payload>",
    );
    let after: String = finish(named(&pool, "identity")).unwrap();
    assert_eq!(before, after, "the same worker serves on");
    pool.destroy().wait().unwrap();
}

/// A function's own errors are values of its result type, not task errors.
fn domain_errors_are_result_values_not_task_errors(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let checked =
        |x: i32| pool.run_with::<Result<u32, String>, _>(x, RunOptions::new().name("checked"));
    assert_eq!(finish(checked(7)), Ok(Ok(7)));
    assert_eq!(finish(checked(-1)), Ok(Err("-1 is negative".to_owned())));
    pool.destroy().wait().unwrap();
}

/// `worker::data` of another type than the pool's is a `TypeMismatch` naming both; a zero is
/// kept (§2.19 item 8: Tinypool hides falsy values).
fn worker_data_of_another_type_is_a_type_mismatch_and_zero_is_kept(runtime: Runtime) {
    type Data = Result<Option<u32>, (String, String, String)>;
    let pool = pool(runtime).worker_data("ABC".to_owned()).build().unwrap();
    let string = type_name::<String>();
    assert_eq!(
        finish(named::<Data>(&pool, "data_u32")),
        Ok(Err((
            string.to_owned(),
            "u32".to_owned(),
            format!(
                "worker_data has the wrong type: the pool was given a `{string}`, the function \
                 asked for a `u32`"
            )
        )))
    );
    pool.destroy().wait().unwrap();

    let pool = pool_with_zero(runtime);
    assert_eq!(finish(named::<Data>(&pool, "data_u32")), Ok(Ok(Some(0))));
    pool.destroy().wait().unwrap();
}

fn pool_named(runtime: Runtime, name: &'static str) -> Pool {
    pool(runtime).name(name).build().unwrap()
}

fn pool_with_zero(runtime: Runtime) -> Pool {
    pool(runtime).worker_data(0u32).build().unwrap()
}

/// Asking for "default" by name reaches the default export even when the pool's name is
/// another; a pool name that is not exported fails each default run with that name.
fn the_default_export_can_be_named_and_a_missing_pool_name_fails(runtime: Runtime) {
    let pool = pool_with_name(runtime);
    let default = pool.run_with::<i32, _>((4, 6), RunOptions::new().name("default"));
    assert_eq!(finish(default), Ok(10));
    assert_eq!(finish(pool.run::<i32, _>((4, 6))), Ok(24));
    pool.destroy().wait().unwrap();

    let pool = pool_named(runtime, "missing");
    assert_eq!(
        finish(pool.run::<i32, _>((4, 6))),
        Err(Error::NoSuchFunction {
            name: "missing".to_owned()
        })
    );
    let product = pool.run_with::<i32, _>((4, 6), RunOptions::new().name("multiply"));
    assert_eq!(finish(product), Ok(24));
    pool.destroy().wait().unwrap();
}

/// Inside a worker: `is_worker`, not aborted, an id; outside: none of these.
fn the_worker_context_is_visible_only_inside_a_worker(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let context = finish(named::<(bool, bool, Option<usize>)>(&pool, "context"));
    assert_eq!(context, Ok((true, false, Some(1))));
    assert!(!worker::is_worker());
    assert!(!worker::aborted());
    assert_eq!(worker::id(), None);
    pool.destroy().wait().unwrap();
}

/// A function may build a pool of its own, of its own runtime (a child's pool re-executes
/// the binary as grandchildren), run tasks on it and destroy it, leaving no process behind.
fn a_function_can_run_a_pool_of_its_own(runtime: Runtime) {
    let prefix = prefix("rt-outer", runtime);
    let pool = pool(runtime)
        .max_threads(2)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let children = runtime == Runtime::ChildProcess;
    let tasks: Vec<Task<Result<(i32, u32), String>>> = (0..4)
        .map(|x| pool.run_with((x, children), RunOptions::new().name("nested")))
        .collect();
    for (x, task) in (0..4).zip(tasks) {
        let (value, inner_pid) = finish(task).unwrap().unwrap();
        assert_eq!(value, 2 * x + 1);
        if children {
            assert!(gone(inner_pid), "the inner pool reaped its child");
        } else {
            assert_eq!(inner_pid, std::process::id(), "threads of this process");
        }
    }
    pool.destroy().wait().unwrap();
    assert_eq!(live(&prefix), 0);
    assert_eq!(live("nested"), 0, "every inner pool joined its thread");
}

// ---- Tasks as futures and handles -----------------------------------------------------------

/// Turns a hang of an awaited future into a failure.
async fn within_bound<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("the future did not resolve in time")
}

/// Tasks are futures for tokio: spawned onto a multi-thread runtime (a `Task` is `Send`), and
/// awaited on a current-thread runtime without blocking its only thread (the task there is
/// released by another future on that thread).
fn tasks_can_be_awaited_on_tokio_runtimes(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    multi.block_on(async {
        assert_eq!(within_bound(pool.run::<i32, _>((4, 6))).await, Ok(10));
        let handles: Vec<_> = (0..50)
            .map(|i| tokio::spawn(pool.run::<i32, _>((i, i))))
            .collect();
        for (i, handle) in (0..50).zip(handles) {
            assert_eq!(within_bound(handle).await.unwrap(), Ok(2 * i));
        }
    });

    let current = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    current.block_on(async {
        let (task, port) = hold(&pool, 0);
        let opener = tokio::spawn(async move {
            tokio::task::yield_now().await;
            port.send(5).unwrap();
            port // Kept open until the task is done.
        });
        let result = within_bound(task).await;
        assert_eq!(result.unwrap().unwrap().3, 5);
        drop(opener.await.unwrap());
        assert_eq!(within_bound(pool.destroy()).await, Ok(()));
    });
}

/// A task awaited while its function is still blocked is woken when it finishes (released
/// only once the task is known to be pending).
fn a_pending_task_is_woken_when_it_finishes(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let (mut task, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    let mut pending = 0;
    let result = block_on(poll_fn(|cx| match Pin::new(&mut task).poll(cx) {
        Poll::Pending => {
            pending += 1;
            if pending == 1 {
                port.send(21).unwrap();
            }
            Poll::Pending
        }
        ready => ready,
    }));
    assert_eq!(result.unwrap().unwrap().3, 21);
    assert!(pending >= 1);
    pool.destroy().wait().unwrap();
}

/// `wait_timeout` gives the handle back while the task is not done; it keeps running and can
/// be waited on or awaited again.
fn wait_timeout_gives_the_handle_back(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let (task, port) = hold(&pool, 0);
    let task = task
        .wait_timeout(Duration::from_millis(5))
        .expect_err("blocked until released");
    let task = task
        .wait_timeout(Duration::ZERO)
        .expect_err("still blocked");
    assert_eq!(next(&port), Ok(0));
    assert!(!task.is_finished());
    port.send(3).unwrap();
    match task.wait_timeout(BOUND) {
        Ok(result) => assert_eq!(result.unwrap().unwrap().3, 3),
        Err(_) => panic!("the task did not resolve in time"),
    }

    // After a timeout the same handle can be awaited, or waited on without a limit.
    let (task, port) = hold(&pool, 1);
    let task = task.wait_timeout(Duration::ZERO).unwrap_err();
    port.send(4).unwrap();
    assert_eq!(block_on(task).unwrap().unwrap().3, 4);
    let (task, port) = hold(&pool, 2);
    let task = task.wait_timeout(Duration::from_millis(1)).unwrap_err();
    port.send(5).unwrap();
    assert_eq!(task.wait().unwrap().unwrap().3, 5);
    pool.destroy().wait().unwrap();
}

/// Dropping a `Task` detaches it: the function still runs, queued or on an idle pool (the
/// one worker's "counter" shows how many ran).
fn a_dropped_task_still_runs(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (blocking, port) = hold(&pool, 0);
    drop(named::<u32>(&pool, "counter"));
    drop(named::<u32>(&pool, "counter"));
    assert_eq!(pool.queue_size(), 2);
    assert_eq!(next(&port), Ok(0));
    port.send(0).unwrap();
    held(blocking);
    assert_eq!(finish(named::<u32>(&pool, "counter")), Ok(2));
    drop(named::<u32>(&pool, "counter"));
    assert_eq!(finish(named::<u32>(&pool, "counter")), Ok(4));
    pool.destroy().wait().unwrap();
}

/// Once a caller has its result the worker is free: with no queue, the next task is accepted,
/// every time, and the snapshot shows the worker idle.
fn a_resolved_task_no_longer_occupies_its_worker(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .build()
        .unwrap();
    for x in 0..500 {
        assert_eq!(finish(pool.run::<i32, _>((x, 1))), Ok(x + 1), "task {x}");
        assert_eq!(loads(&pool), [0], "after task {x}");
    }
    assert_eq!(pool.completed(), 500);
    pool.destroy().wait().unwrap();
}

/// `MaxQueue::Auto` is max_threads²: with 2 busy workers, 4 tasks wait and the fifth is
/// refused.
fn max_queue_auto_is_max_threads_squared(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(0)
        .max_threads(2)
        .max_queue(MaxQueue::Auto)
        .build()
        .unwrap();
    let running = [hold(&pool, 0), hold(&pool, 1)];
    for (tag, (_, port)) in (0..).zip(&running) {
        assert_eq!(next(port), Ok(tag));
    }
    let queued: Vec<Task<i32>> = (0..4).map(|i| pool.run((i, i))).collect();
    assert_eq!(pool.queue_size(), 4);
    assert!(queued.iter().all(|task| !task.is_finished()));
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::QueueFull));
    assert_eq!(pool.queue_size(), 4);

    for (_, port) in &running {
        port.send(0).unwrap();
    }
    for (task, _) in running {
        held(task);
    }
    for (i, task) in (0..4).zip(queued) {
        assert_eq!(finish(task), Ok(2 * i));
    }
    pool.destroy().wait().unwrap();
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
        match builder.build() {
            Err(Error::InvalidOptions(message)) => assert!(message.contains(option), "{message}"),
            other => panic!("expected InvalidOptions naming {option}, got {other:?}"),
        }
    }
}

/// Scenario 44: destroying an isolated pool right after it was built, with a task submitted
/// (its worker, a child maybe still starting, is stopped all the same).
fn destroy_right_after_build_fails_the_task(runtime: Runtime) {
    let prefix = prefix("rt-init", runtime);
    let pool = pool(runtime)
        .isolate_workers(true)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let (task, _port) = hold(&pool, 0);
    let destroy = pool.destroy();
    assert_eq!(finish(task), Err(Error::Terminated));
    assert_eq!(destroy.wait(), Ok(()));
    assert_eq!(live(&prefix), 0);
}

/// With nothing queued, cancelling changes nothing: an idle pool keeps its worker, a running
/// task finishes, and the pool serves on.
fn cancel_with_nothing_queued_changes_nothing(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    pool.cancel_pending_tasks();
    assert_eq!(pool.threads(), 1);
    let (running, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    pool.cancel_pending_tasks();
    assert!(!running.is_finished());
    assert_eq!(sizes(&pool), (1, 0));
    port.send(8).unwrap();
    assert_eq!(held(running).3, 8);
    pool.cancel_pending_tasks();
    assert_eq!(finish(pool.run::<i32, _>((4, 4))), Ok(8));
    pool.destroy().wait().unwrap();
}

/// `recv_async` needs no async runtime: it is pending until the task replies, then woken (the
/// task is sent its number only once the receive is known to be pending).
fn recv_async_is_woken_by_the_tasks_message(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (port, theirs) = tinypool::channel::<u32>();
    let task: Task<u32> = pool.run_with((), RunOptions::new().name("echo").channel(theirs));
    let mut pending = 0;
    let reply = block_on(async {
        let mut recv = pin!(port.recv_async());
        poll_fn(|cx| match recv.as_mut().poll(cx) {
            Poll::Pending => {
                pending += 1;
                if pending == 1 {
                    port.send(41).unwrap();
                }
                Poll::Pending
            }
            ready => ready,
        })
        .await
    });
    assert_eq!(reply, Ok(42));
    assert!(pending >= 1);
    drop(port);
    assert_eq!(finish(task), Ok(1));
    pool.destroy().wait().unwrap();
}

/// Scenario 14: a struct given as `worker_data` reaches every worker (each task of an
/// isolated pool has a fresh one); the caller's thread is no worker and sees none.
fn worker_data_of_a_struct_reaches_every_worker(runtime: Runtime) {
    let config = Config {
        name: "ABC".to_owned(),
        level: 3,
    };
    let pool = pool(runtime)
        .worker_data(config.clone())
        .isolate_workers(true)
        .build()
        .unwrap();
    for _ in 0..3 {
        let data = finish(named::<Result<Option<Config>, String>>(&pool, "config"));
        assert_eq!(data, Ok(Ok(Some(config.clone()))));
    }
    assert_eq!(worker::data::<Config>(), Ok(None));
    pool.destroy().wait().unwrap();
}

/// `is_finished` is false while the function runs and true once the result is in (errors
/// included), so that waiting no longer blocks.
fn is_finished_tells_whether_wait_would_block(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (first, port) = hold(&pool, 0);
    let second = pool.run_with::<i32, _>((2, 3), RunOptions::new().name("multiply"));
    assert!(!first.is_finished());
    assert!(!second.is_finished());
    assert_eq!(format!("{first:?}"), "Task { finished: false }");
    assert_eq!(next(&port), Ok(0));
    port.send(0).unwrap();
    // One worker runs the tasks in order: once the second is done, the first is too.
    assert_eq!(finish(second), Ok(6));
    assert!(first.is_finished());
    assert_eq!(format!("{first:?}"), "Task { finished: true }");
    held(first);

    let mismatch = pool.run::<String, _>((1, 1));
    let other = pool.run_with::<i32, _>((3, 3), RunOptions::new().name("multiply"));
    assert_eq!(finish(other), Ok(9));
    assert!(mismatch.is_finished());
    assert!(matches!(finish(mismatch), Err(Error::TypeMismatch { .. })));
    pool.destroy().wait().unwrap();
}
