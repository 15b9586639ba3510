//! A worker's life: the setup export it runs before its first task (and what a failing one
//! does: its tasks fail, `on_error` hears of it, and nothing loops), the `on_worker_start` and
//! `on_worker_exit` hooks (once per worker, with its id and pid), and why each worker left
//! ([`Exit`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinypool::{AbortController, Builder, Error, Exit, RunOptions, Runtime, WorkerInfo};

use crate::common::{self, collect_errors, eventually, finish, named, next, procfs};
use crate::{aborted, bodies, call, held, hold, pool, Body};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            setup_runs_once_per_worker_before_its_first_task,
            a_failing_setup_fails_the_tasks_reports_to_on_error_and_never_loops,
            a_setup_that_returns_an_error_fails_the_start,
            a_setup_not_exported_or_mistyped_is_refused_or_fails_the_start,
            worker_hooks_see_each_worker_once_with_its_id_and_pid,
            an_idle_worker_exits_with_idle,
            recycled_workers_exit_with_recycled,
            isolated_workers_exit_with_isolated,
            an_aborted_worker_exits_with_aborted,
            closed_workers_exit_with_closed,
            a_dead_child_exits_crashed_with_its_status_and_a_thread_survives_a_panic,
            a_panicking_hook_does_not_break_the_pool,
            an_on_error_hook_that_panics_breaks_nothing,
        ],
        threads: [],
    }
}

/// What the two hooks saw.
#[derive(Clone, Default)]
struct Seen {
    starts: Arc<Mutex<Vec<WorkerInfo>>>,
    exits: Arc<Mutex<Vec<(WorkerInfo, Exit)>>>,
}

impl Seen {
    /// `builder` with both hooks recording here.
    fn hooked(&self, builder: Builder) -> Builder {
        let (starts, exits) = (self.starts.clone(), self.exits.clone());
        builder
            .on_worker_start(move |info| starts.lock().unwrap().push(info.clone()))
            .on_worker_exit(move |info, exit| {
                exits.lock().unwrap().push((info.clone(), exit.clone()))
            })
    }

    fn starts(&self) -> Vec<WorkerInfo> {
        self.starts.lock().unwrap().clone()
    }

    /// The reasons, in the order the workers left.
    fn exits(&self) -> Vec<Exit> {
        self.exits
            .lock()
            .unwrap()
            .iter()
            .map(|(_, exit)| exit.clone())
            .collect()
    }

    fn wait_exits(&self, n: usize) {
        eventually(&format!("{n} workers exited"), || self.exits().len() >= n);
    }
}

/// The workers' ids and pids, sorted.
fn identities<'a>(infos: impl IntoIterator<Item = &'a WorkerInfo>) -> Vec<(usize, Option<u32>)> {
    let mut ids: Vec<(usize, Option<u32>)> = infos.into_iter().map(|w| (w.id, w.pid)).collect();
    ids.sort_unstable();
    ids
}

/// Each worker runs "setup_mark" once, on the thread (or in the child) that runs its tasks,
/// before its first one: every task, the first of a fresh worker included, reads back one run
/// of it, in its own worker. Each worker gets one start and one exit hook.
fn setup_runs_once_per_worker_before_its_first_task(runtime: Runtime) {
    let seen = Seen::default();
    let pool = seen
        .hooked(pool(runtime).min_threads(0).max_threads(2))
        .setup("setup_mark")
        .idle_timeout(Duration::MAX)
        .build()
        .unwrap();
    let setups = || {
        let (setups, setup_id, id) =
            finish(call::<(u32, Option<usize>, Option<usize>)>(&pool, "setups")).unwrap();
        assert_eq!(
            setups, 1,
            "the setup ran once in this worker, before the task"
        );
        assert!(id.is_some());
        assert_eq!(setup_id, id, "the setup ran in the task's own worker");
    };
    // The first task of the pool starts its first worker.
    setups();
    // Both workers busy at once: a second one starts.
    let (first, first_port) = hold(&pool, 1);
    let (second, second_port) = hold(&pool, 2);
    assert_eq!(next(&first_port), Ok(1));
    assert_eq!(next(&second_port), Ok(2));
    first_port.send(0).unwrap();
    second_port.send(0).unwrap();
    let (one, two) = (held(first), held(second));
    assert_ne!(one.1, two.1, "two workers");
    for _ in 0..6 {
        setups();
    }
    pool.destroy().wait().unwrap();
    let starts = seen.starts();
    assert_eq!(identities(&starts).len(), 2, "{starts:?}");
    assert_eq!(seen.exits(), [Exit::Destroyed, Exit::Destroyed]);
}

/// A setup that panics fails the start of its worker: the worker `min_threads` asks for is
/// reported to `on_error` (no task carries it); each task that needs a worker makes one more
/// attempt and fails with `WorkerStartFailed`, naming the setup and the panic; and nothing
/// starts workers on its own meanwhile: the attempts (counted by the setup itself) stay put.
/// A worker that did not start gets no hook.
fn a_failing_setup_fails_the_tasks_reports_to_on_error_and_never_loops(runtime: Runtime) {
    let log = log_path("setup-failing", runtime);
    let seen = Seen::default();
    let (errors, hook) = collect_errors();
    let pool = seen
        .hooked(pool(runtime).min_threads(1).max_threads(2))
        .setup("failing_setup")
        .worker_data(log.to_string_lossy().into_owned())
        .on_error(hook)
        .build()
        .unwrap();
    let is_setup_panic = |error: &Error| match error {
        Error::WorkerStartFailed { message } => {
            message.starts_with("setup \"failing_setup\" failed: it panicked at ")
                && message.contains("tests/runtimes/main.rs")
                && message.contains(": setup failed on purpose")
        }
        _ => false,
    };
    eventually("the first start failed", || {
        !errors.lock().unwrap().is_empty()
    });
    eventually("no worker is left", || pool.threads() == 0);
    {
        let errors = errors.lock().unwrap();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(is_setup_panic(&errors[0]), "{:?}", errors[0]);
    }
    assert_eq!(attempts(&log), 1);

    let tasks: Vec<_> = (0..3).map(|i| pool.run::<i32, _>((i, i))).collect();
    for task in tasks {
        let error = finish(task).unwrap_err();
        assert!(is_setup_panic(&error), "{error:?}");
    }
    eventually("no worker is left", || pool.threads() == 0);
    let after_three = attempts(&log);
    // One worker per task at most (a task may wait for another's attempt, and fail with it).
    assert!((2..=4).contains(&after_three), "{after_three} attempts");

    // A queue behind a failing setup does not spin: one more task, one more attempt.
    let error = finish(pool.run::<i32, _>((1, 1))).unwrap_err();
    assert!(is_setup_panic(&error), "{error:?}");
    eventually("no worker is left", || pool.threads() == 0);
    assert_eq!(pool.queue_size(), 0);
    assert_eq!(attempts(&log), after_three + 1);
    assert_eq!(
        errors.lock().unwrap().len(),
        1,
        "the tasks carried the rest"
    );
    assert_eq!(pool.destroy().wait(), Ok(()));
    assert_eq!(attempts(&log), after_three + 1);
    assert!(seen.starts().is_empty() && seen.exits().is_empty());
    let _ = std::fs::remove_file(&log);
}

/// A setup that returns `Err` fails the start too, with what the error says.
fn a_setup_that_returns_an_error_fails_the_start(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(0)
        .max_threads(1)
        .setup("refusing_setup")
        .build()
        .unwrap();
    match finish(pool.run::<i32, _>((1, 2))) {
        Err(Error::WorkerStartFailed { message }) => assert!(
            message
                .starts_with("setup \"refusing_setup\" failed: it returned an error: no database"),
            "{message}"
        ),
        other => panic!("expected WorkerStartFailed, got {other:?}"),
    }
    // The pool stays usable as such: the next task tries again (and fails again).
    assert!(matches!(
        finish(pool.run::<i32, _>((1, 2))),
        Err(Error::WorkerStartFailed { .. })
    ));
    assert_eq!(pool.destroy().wait(), Ok(()));
}

/// A setup that is not exported, or does not take `()`. A threads pool knows its exports and
/// refuses it at build, as it does a teardown; a child-process pool cannot, and its workers
/// fail to start, saying why.
fn a_setup_not_exported_or_mistyped_is_refused_or_fails_the_start(runtime: Runtime) {
    for (setup, option_error, start_error) in [
        (
            "missing_setup",
            "setup: no function is exported as \"missing_setup\"",
            "setup \"missing_setup\" failed: no function is exported as that name",
        ),
        (
            "multiply",
            "setup: \"multiply\" must take `()`, not `(i32, i32)`",
            "setup \"multiply\" failed: it must take `()`, not `(i32, i32)`",
        ),
    ] {
        let built = pool(runtime)
            .min_threads(0)
            .max_threads(1)
            .setup(setup)
            .build();
        match (runtime, built) {
            (Runtime::Threads, Err(Error::InvalidOptions(message))) => {
                assert_eq!(message, option_error);
            }
            (Runtime::Threads, other) => panic!("expected InvalidOptions, got {:?}", other.err()),
            (_, built) => {
                let pool = built.unwrap();
                match finish(pool.run::<i32, _>((3, 4))) {
                    Err(Error::WorkerStartFailed { message }) => {
                        assert!(message.starts_with(start_error), "{message}");
                    }
                    other => panic!("expected WorkerStartFailed, got {other:?}"),
                }
                assert_eq!(pool.destroy().wait(), Ok(()));
            }
        }
    }
}

/// `on_worker_start` once per worker, with the id and pid `workers()` lists; `on_worker_exit`
/// once per worker, with the same, after destroy.
fn worker_hooks_see_each_worker_once_with_its_id_and_pid(runtime: Runtime) {
    let seen = Seen::default();
    let pool = seen
        .hooked(pool(runtime).min_threads(2).max_threads(2))
        .build()
        .unwrap();
    eventually("both workers started", || seen.starts().len() == 2);
    assert_eq!(finish(pool.run::<i32, _>((2, 3))), Ok(5));
    let listed = identities(&pool.workers());
    assert_eq!(identities(&seen.starts()), listed);
    assert_eq!(listed.iter().map(|w| w.0).collect::<Vec<_>>(), [1, 2]);
    assert!(listed
        .iter()
        .all(|w| w.1.is_some() == (runtime == Runtime::ChildProcess)));
    pool.destroy().wait().unwrap();
    let exits = seen.exits.lock().unwrap().clone();
    assert_eq!(identities(exits.iter().map(|(info, _)| info)), listed);
    assert!(exits
        .iter()
        .all(|(info, exit)| *exit == Exit::Destroyed && info.running == 0));
    assert_eq!(seen.starts().len(), 2, "no other worker started");
}

/// A worker above `min_threads` that idles out says so.
fn an_idle_worker_exits_with_idle(runtime: Runtime) {
    let seen = Seen::default();
    let pool = seen
        .hooked(pool(runtime).min_threads(0).max_threads(1))
        .idle_timeout(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(finish(pool.run::<i32, _>((2, 3))), Ok(5));
    seen.wait_exits(1);
    pool.destroy().wait().unwrap();
    assert_eq!(seen.exits(), [Exit::IdleTimeout]);
    assert_eq!(seen.starts().len(), 1);
}

/// `recycle_workers` replaces an idle worker at once (its exit hook has run when the recycle
/// resolves) and a busy one once its task is done.
fn recycled_workers_exit_with_recycled(runtime: Runtime) {
    let seen = Seen::default();
    let pool = seen
        .hooked(pool(runtime).min_threads(1).max_threads(1))
        .build()
        .unwrap();
    assert_eq!(finish(pool.run::<i32, _>((2, 3))), Ok(5));
    common::recycle(&pool);
    assert_eq!(seen.exits(), [Exit::Recycled]);
    let (busy, port) = hold(&pool, 7);
    assert_eq!(next(&port), Ok(7));
    common::recycle(&pool);
    assert_eq!(
        seen.exits(),
        [Exit::Recycled],
        "the busy one is still there"
    );
    port.send(0).unwrap();
    held(busy);
    seen.wait_exits(2);
    // The replacement has started (a child still starting when destroyed never ran).
    eventually("the replacement started", || seen.starts().len() == 3);
    pool.destroy().wait().unwrap();
    assert_eq!(
        seen.exits(),
        [Exit::Recycled, Exit::Recycled, Exit::Destroyed]
    );
    assert_eq!(seen.starts().len(), 3);
}

/// Each worker of an isolated pool leaves after its task.
fn isolated_workers_exit_with_isolated(runtime: Runtime) {
    let seen = Seen::default();
    let pool = seen
        .hooked(pool(runtime).min_threads(1).max_threads(1))
        .isolate_workers(true)
        .build()
        .unwrap();
    for n in 1..=2 {
        assert_eq!(finish(pool.run::<i32, _>((n, n))), Ok(2 * n));
    }
    seen.wait_exits(2);
    // The third has started (a child still starting when destroyed never ran).
    eventually("the third worker started", || seen.starts().len() == 3);
    pool.destroy().wait().unwrap();
    assert_eq!(
        seen.exits(),
        [Exit::Isolated, Exit::Isolated, Exit::Destroyed]
    );
}

/// A worker whose running task was aborted leaves for it: a thread once the function returns,
/// a child killed.
fn an_aborted_worker_exits_with_aborted(runtime: Runtime) {
    let seen = Seen::default();
    let pool = seen
        .hooked(pool(runtime).min_threads(0).max_threads(1))
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
    controller.abort();
    assert_eq!(finish(task), Err(aborted(None)));
    seen.wait_exits(1);
    pool.destroy().wait().unwrap();
    assert_eq!(seen.exits(), [Exit::Aborted]);
}

/// The workers of a closed pool stop once they find nothing to do; their hooks have run when
/// the close resolves.
fn closed_workers_exit_with_closed(runtime: Runtime) {
    let seen = Seen::default();
    let pool = seen
        .hooked(pool(runtime).min_threads(2).max_threads(2))
        .build()
        .unwrap();
    assert_eq!(finish(pool.run::<i32, _>((2, 3))), Ok(5));
    assert_eq!(pool.close().wait(), Ok(()));
    assert_eq!(seen.exits(), [Exit::Closed, Exit::Closed]);
    assert_eq!(seen.starts().len(), 2);
}

/// A child that exits with a code, aborts, or is killed while idle leaves `Crashed`, with its
/// exit status; one over `max_memory_limit_before_recycle` leaves for that. A worker thread
/// survives a panicking task (it is no crash) and leaves only at destroy.
fn a_dead_child_exits_crashed_with_its_status_and_a_thread_survives_a_panic(runtime: Runtime) {
    let seen = Seen::default();
    let pool = seen
        .hooked(pool(runtime).min_threads(1).max_threads(1))
        .build()
        .unwrap();
    if runtime == Runtime::Threads {
        let panicked = finish(pool.run_with::<i32, _>("boom".to_owned(), named("panic")));
        assert!(matches!(panicked, Err(Error::Panicked { .. })));
        assert_eq!(finish(pool.run::<i32, _>((2, 3))), Ok(5));
        pool.destroy().wait().unwrap();
        assert_eq!(seen.exits(), [Exit::Destroyed]);
        return;
    }
    let exited = finish(pool.run_with::<u32, _>(3, named("exit_with")));
    assert!(
        matches!(exited, Err(Error::WorkerExited { code: Some(3), .. })),
        "{exited:?}"
    );
    seen.wait_exits(1);
    let aborted = finish(pool.run_with::<u32, _>(-1, named("exit_with")));
    assert!(
        matches!(aborted, Err(Error::WorkerExited { .. })),
        "{aborted:?}"
    );
    seen.wait_exits(2);
    // Killed from outside while idle: its driver finds it dead at its next check.
    eventually("a replacement child", || {
        pool.workers().iter().any(|w| w.pid.is_some())
    });
    let pid = pool.workers()[0].pid.unwrap();
    assert!(procfs::kill_child(pid));
    seen.wait_exits(3);
    // Windows has no signals: an abort is an exit with the fail-fast status, a process
    // killed from outside exits with the code it was given (1).
    #[cfg(unix)]
    let (aborted, killed) = (
        Exit::Crashed {
            code: None,
            signal: Some(libc::SIGABRT),
        },
        Exit::Crashed {
            code: None,
            signal: Some(libc::SIGKILL),
        },
    );
    #[cfg(windows)]
    let (aborted, killed) = (
        Exit::Crashed {
            code: Some(0xC000_0409_u32 as i32),
            signal: None,
        },
        Exit::Crashed {
            code: Some(1),
            signal: None,
        },
    );
    assert_eq!(
        seen.exits(),
        [
            Exit::Crashed {
                code: Some(3),
                signal: None
            },
            aborted,
            killed,
        ]
    );
    assert_eq!(seen.exits.lock().unwrap()[2].0.pid, Some(pid));
    assert_eq!(finish(pool.run::<i32, _>((2, 3))), Ok(5), "replaced");
    pool.destroy().wait().unwrap();

    let seen = Seen::default();
    let limited = seen
        .hooked(crate::pool(runtime).min_threads(0).max_threads(1))
        .max_memory_limit_before_recycle(1)
        .build()
        .unwrap();
    assert_eq!(finish(limited.run::<i32, _>((2, 3))), Ok(5));
    seen.wait_exits(1);
    limited.destroy().wait().unwrap();
    assert_eq!(seen.exits(), [Exit::MemoryRecycled]);
}

/// Hooks that panic are caught and reported to `on_error`; the pool goes on, through a
/// recycle, and destroys cleanly.
fn a_panicking_hook_does_not_break_the_pool(runtime: Runtime) {
    let (errors, hook) = collect_errors();
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .on_worker_start(|_| panic!("hook failed on purpose"))
        .on_worker_exit(|_, _| panic!("hook failed on purpose"))
        .on_error(hook)
        .build()
        .unwrap();
    for n in 0..3 {
        assert_eq!(finish(pool.run::<i32, _>((n, 1))), Ok(n + 1));
    }
    common::recycle(&pool);
    assert_eq!(finish(pool.run::<i32, _>((4, 1))), Ok(5));
    assert_eq!(pool.destroy().wait(), Ok(()));
    let errors = errors.lock().unwrap();
    let said = |hook: &str| {
        errors
            .iter()
            .filter(|error| {
                matches!(error, Error::Panicked { message, location: Some(_) }
                    if *message == format!("{hook}: hook failed on purpose"))
            })
            .count()
    };
    assert_eq!(
        (
            said("on_worker_start"),
            said("on_worker_exit"),
            errors.len()
        ),
        (2, 2, 4),
        "{errors:?}"
    );
}

/// An `on_error` hook that panics (here, at every error: a start hook's panic, a teardown's) is
/// caught too: the worker goes on serving, each worker still gets its one exit call, and
/// `destroy` is clean.
fn an_on_error_hook_that_panics_breaks_nothing(runtime: Runtime) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let seen = Seen::default();
    let (starts, ears) = (seen.starts.clone(), heard.clone());
    let pool = seen
        .hooked(pool(runtime))
        .min_threads(1)
        .max_threads(1)
        .teardown("panic_teardown")
        .on_worker_start(move |info| {
            starts.lock().unwrap().push(info.clone());
            panic!("hook failed on purpose")
        })
        .on_error(move |error| {
            ears.lock().unwrap().push(error.to_string());
            panic!("on_error failed on purpose")
        })
        .build()
        .unwrap();
    for n in 0..3 {
        assert_eq!(finish(pool.run::<i32, _>((n, 1))), Ok(n + 1));
    }
    common::recycle(&pool);
    assert_eq!(finish(pool.run::<i32, _>((4, 1))), Ok(5));
    assert_eq!(pool.destroy().wait(), Ok(()));
    assert_eq!(seen.starts().len(), 2, "two workers in turn");
    assert_eq!(seen.exits(), [Exit::Recycled, Exit::Destroyed]);
    let heard = heard.lock().unwrap();
    let about = |what: &str| heard.iter().filter(|said| said.contains(what)).count();
    assert_eq!(
        (
            about("on_worker_start"),
            about("teardown failed"),
            heard.len()
        ),
        (2, 2, 4),
        "{heard:?}"
    );
}

/// A fresh log file, named for the test and the runtime.
fn log_path(test: &str, runtime: Runtime) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "tinypool-{test}-{}-{runtime:?}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// How many times the setup logged an attempt.
fn attempts(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}
