//! The teardown export (scenarios 73-75): once per worker, at destroy for a shared worker and
//! after each task in an isolated pool, seeing the state the worker's tasks left; when a
//! worker is recycled, idles out or is aborted; a teardown that panics or is not exported.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tinypool::{AbortController, Error, Pool, RunOptions, Runtime};

use crate::common::{
    self, collect_errors, eventually, finish, next,
    procfs::{self, live},
};
use crate::{aborted, bodies, call, panicked_here, pids, pool, prefix, Body};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            teardown_runs_once_per_worker,
            an_isolated_pool_runs_the_teardown_once_per_task,
            a_shared_worker_runs_its_teardown_only_at_destroy,
            recycle_runs_the_teardown_of_the_replaced_worker,
            idle_timeout_runs_the_teardown,
            an_aborted_thread_runs_its_teardown_but_a_killed_child_cannot,
            a_panicking_teardown_is_reported_to_on_error,
            a_teardown_that_is_not_exported_is_refused_or_reported,
        ],
        threads: [],
    }
}

fn teardown_runs_once_per_worker(runtime: Runtime) {
    // A log file per worker (see the export), in a directory of this test's own.
    let log = std::env::temp_dir().join(format!(
        "tinypool-teardown-{}-{runtime:?}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&log);
    std::fs::create_dir_all(&log).unwrap();
    let pool = pool(runtime)
        .min_threads(2)
        .teardown("teardown")
        .worker_data(log.to_string_lossy().into_owned())
        .build()
        .unwrap();
    for _ in 0..4 {
        assert_eq!(finish(pool.run::<i32, _>((1, 1))), Ok(2));
    }
    wait_started(&pool, runtime, 2);
    pool.destroy().wait().unwrap();
    let mut lines: Vec<String> = std::fs::read_dir(&log)
        .unwrap()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
            text.lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, ["teardown Some(1)", "teardown Some(2)"]);
    let _ = std::fs::remove_dir_all(&log);
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
        assert_eq!(finish(call::<u32>(&pool, "counter")), Ok(0));
    }
    wait_started(&pool, runtime, 1);
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
        assert_eq!(finish(call::<u32>(&pool, "counter")), Ok(n));
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
    assert_eq!(finish(call::<u32>(&pool, "counter")), Ok(0));
    common::recycle(&pool);
    assert_eq!(log_lines(&log), ["teardown Some(1) after 1"]);
    assert_eq!(
        finish(call::<u32>(&pool, "counter")),
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
    assert_eq!(finish(call::<u32>(&pool, "counter")), Ok(0));
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
        children.iter().all(|&pid| procfs::gone(pid)),
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
    wait_started(&pool, runtime, 2);
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
            wait_started(&pool, runtime, 2);
            assert_eq!(pool.destroy().wait(), Ok(()));
            assert_eq!(*errors.lock().unwrap(), [missing.clone(), missing]);
        }
    }
}

/// Waits until the pool has `n` workers, every child among them past its handshake: a
/// worker that `destroy` finds still starting never ran, and runs no teardown. (A child
/// starts within milliseconds on Linux, far more slowly under Wine.)
fn wait_started(pool: &Pool, runtime: Runtime, n: usize) {
    eventually("the workers started", || {
        let workers = pool.workers();
        let started = |pid: Option<u32>| runtime == Runtime::Threads || pid.is_some();
        workers.len() == n && workers.iter().all(|worker| started(worker.pid))
    });
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
