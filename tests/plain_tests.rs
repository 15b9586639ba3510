//! Child processes in plain `#[test]` functions: this file has libtest's own harness (no
//! `harness = false`, no `main` of its own) and one line of setup, `tinypool::test_workers!`.
//! Every test runs under `cargo test` (all together, in parallel, or one by name with
//! `--exact`) and under `cargo nextest run`, which gives each test a process of its own.
//!
//! The workers are this test binary re-executed, and the harness must never start in one:
//! [`no_test_runs_in_a_child`] asks a child how many tests it has seen start, and what its
//! arguments are.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use tinypool::{channel, worker, Builder, Error, Exports, Pool, Runtime};

use common::{finish, named};

tinypool::test_workers!(exports);

/// Every panic this file raises on purpose starts with this (kept off stderr).
const PANIC_PREFIX: &str = "plain_tests: ";

/// Tests of this file that have started in this process (each counts itself in [`pool`]).
/// Only the parent runs tests: in a child it stays 0.
static TESTS_STARTED: AtomicUsize = AtomicUsize::new(0);

/// The workers' exports. In a child it runs before anything else, so it is also where the
/// workers' own set-up goes: here, the quiet panic hook.
fn exports() -> Exports {
    common::quiet_panics(PANIC_PREFIX);
    Exports::new()
        .export_default(|(a, b): (i32, i32)| a + b)
        .export("pid", |()| std::process::id())
        .export("id", |()| worker::id())
        .export("panic", |message: String| -> i32 {
            panic!("{PANIC_PREFIX}{message}")
        })
        .export("shout", |()| -> Result<u32, String> {
            let port = worker::port::<String>().map_err(|e| e.to_string())?;
            let mut shouted = 0;
            while let Ok(word) = port.recv() {
                port.send(word.to_uppercase()).map_err(|e| e.to_string())?;
                shouted += 1;
            }
            Ok(shouted)
        })
        .export("tests_started", |()| TESTS_STARTED.load(Ordering::SeqCst))
        .export("args", |()| {
            std::env::args().skip(1).collect::<Vec<String>>()
        })
}

/// A child-process pool of this binary re-executed; counts the test that builds it.
fn pool(workers: usize) -> Builder {
    TESTS_STARTED.fetch_add(1, Ordering::SeqCst);
    Pool::builder()
        .runtime(Runtime::ChildProcess)
        .min_threads(1)
        .max_threads(workers)
}

#[test]
fn results_come_back_from_a_child() {
    let pool = pool(2).build().unwrap();
    assert_eq!(finish(pool.run::<i32, _>((4, 6))), Ok(10));
    let pid: u32 = finish(pool.run_with((), named("pid"))).unwrap();
    assert_ne!(pid, std::process::id(), "the task ran in a child");
    pool.destroy().wait().unwrap();
}

#[test]
fn a_panic_fails_only_its_task() {
    let pool = pool(1).build().unwrap();
    let pid: u32 = finish(pool.run_with((), named("pid"))).unwrap();
    let panicked = pool.run_with::<i32, _>("on purpose".to_owned(), named("panic"));
    match finish(panicked) {
        Err(Error::Panicked { message, location }) => {
            assert_eq!(message, format!("{PANIC_PREFIX}on purpose"));
            let location = location.expect("the panic's location");
            assert!(location.contains("tests/plain_tests.rs"), "{location}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(
        finish(pool.run::<i32, _>((1, 2))),
        Ok(3),
        "the pool serves on"
    );
    assert_eq!(
        finish(pool.run_with::<u32, _>((), named("pid"))),
        Ok(pid),
        "in the same child"
    );
    pool.destroy().wait().unwrap();
}

#[test]
fn a_channel_reaches_the_child_and_back() {
    let pool = pool(1).build().unwrap();
    let (ours, theirs) = channel::<String>();
    let task = pool.run_with::<Result<u32, String>, _>((), named("shout").channel(theirs));
    for word in ["tiny", "pool"] {
        ours.send(word.to_owned()).unwrap();
        assert_eq!(ours.recv(), Ok(word.to_uppercase()));
    }
    ours.close();
    assert_eq!(finish(task), Ok(Ok(2)));
    pool.destroy().wait().unwrap();
}

#[test]
fn worker_ids_are_the_childrens() {
    let pool = pool(2).min_threads(2).build().unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| pool.run_with::<Option<usize>, _>((), named("id")))
        .collect();
    for task in tasks {
        let id = finish(task).unwrap();
        assert!(matches!(id, Some(1 | 2)), "worker id {id:?}");
    }
    assert_eq!(worker::id(), None, "the test itself is no worker");
    pool.destroy().wait().unwrap();
}

#[test]
fn no_test_runs_in_a_child() {
    // Arguments the harness would act on, had it started in the child: it would list the
    // tests and exit instead of serving.
    let args = ["--list", "--exact", "no_test_runs_in_a_child"];
    let pool = pool(1).argv(args).build().unwrap();
    assert!(TESTS_STARTED.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        finish(pool.run_with::<usize, _>((), named("tests_started"))),
        Ok(0),
        "a child ran tests of this file"
    );
    // std knows the arguments before `main` with glibc (and on Apple's systems); with other
    // C libraries only once its `main` starts, which a child never reaches.
    if cfg!(any(
        all(target_os = "linux", target_env = "gnu"),
        target_vendor = "apple"
    )) {
        assert_eq!(
            finish(pool.run_with::<Vec<String>, _>((), named("args"))),
            Ok(args.map(str::to_owned).to_vec()),
            "the child's arguments are the pool's, untouched"
        );
    }
    pool.destroy().wait().unwrap();
}
