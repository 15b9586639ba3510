//! Warm spares of an isolated pool (src/scheduler/spare.rs): a worker's successor starts, its
//! setup run, while the worker runs its task, and then serves the next task; it is announced
//! to the hooks only once it serves; `destroy` and `close` stop a spare still starting and
//! leave no child, zombie, thread or descriptor behind; a spare that fails to start is
//! reported to `on_error` and not retried.
//!
//! The pools run the "spare_setup" export, which leaves a file per worker in a directory of
//! the test's own (so the test sees each worker, spares included, once its setup ran) and
//! passes, fails or blocks as the test's `gate` file says.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tinypool::{Error, Exit, Pool, RunOptions, Runtime, Task, WorkerInfo};

use crate::common::{collect_errors, eventually, finish, next, procfs};
use crate::{bodies, call, held, hold, pid_of, pool, prefix, Body, Held};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            every_task_of_an_isolated_pool_still_gets_a_fresh_worker,
            a_spare_runs_its_setup_while_the_task_runs_then_serves_the_next,
            hooks_announce_a_spare_only_once_it_serves_and_stay_paired,
            destroy_while_a_spare_starts_leaves_nothing_behind,
            close_while_a_spare_starts_leaves_nothing_behind,
            a_spare_that_fails_to_start_is_reported_and_not_retried,
            a_pool_fed_one_task_at_a_time_above_min_threads_starts_no_spare,
        ],
        threads: [],
    }
}

/// The file "spare_setup" creates for the worker of `identity` (see [`identity`]).
pub fn setup_name(identity: &str) -> String {
    let (pid, thread) = identity.split_once('/').expect("pid/thread");
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    format!("setup-{pid}-{thread}")
}

/// A fresh directory for one test's setup files.
fn setup_dir(test: &str, runtime: Runtime) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tinypool-spares-{test}-{}-{runtime:?}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The workers whose setup ran (or runs) so far, by their setup file's name.
fn setups(dir: &Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("setup-"))
        .collect()
}

/// The pids of the child processes whose setup ran (none for threads).
fn setup_pids(dir: &Path, runtime: Runtime) -> Vec<u32> {
    if runtime == Runtime::Threads {
        return Vec::new();
    }
    setups(dir)
        .iter()
        .map(|name| name.split('-').nth(1).unwrap().parse().unwrap())
        .collect()
}

/// Tells the setups that start from now on what to do ("fail", "block"), in one step.
fn set_gate(dir: &Path, what: &str) {
    let draft = dir.join("gate.draft");
    std::fs::write(&draft, what).unwrap();
    std::fs::rename(draft, dir.join("gate")).unwrap();
}

/// An isolated pool of exactly one worker, running "spare_setup" with `dir`.
fn isolated(runtime: Runtime, dir: &Path) -> tinypool::Builder {
    pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .isolate_workers(true)
        .setup("spare_setup")
        .worker_data(dir.to_string_lossy().into_owned())
}

/// Waits until the first worker of `pool` has started, its setup run: one setup file.
fn first_started(pool: &Pool, dir: &Path) {
    eventually("the first worker started", || {
        setups(dir).len() == 1 && pool.workers().len() == 1
    });
}

/// Many tasks at once on two isolated workers with spares (a setup makes threads start them
/// too): no worker runs two tasks.
fn every_task_of_an_isolated_pool_still_gets_a_fresh_worker(runtime: Runtime) {
    let dir = setup_dir("fresh", runtime);
    let pool = isolated(runtime, &dir)
        .min_threads(2)
        .max_threads(2)
        .build()
        .unwrap();
    let mut seen = HashSet::new();
    for round in 0..3 {
        let tasks: Vec<Task<String>> = (0..10).map(|_| call(&pool, "identity")).collect();
        for task in tasks {
            let identity = finish(task).unwrap();
            assert!(
                seen.insert(identity.clone()),
                "round {round}: {identity} ran a second task"
            );
        }
    }
    if runtime != Runtime::Threads {
        let pids: HashSet<u32> = seen.iter().map(|identity| pid_of(identity)).collect();
        assert_eq!(pids.len(), seen.len(), "a child per task");
    }
    pool.destroy().wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// While an isolated worker holds its task, its successor starts and runs its setup without
/// counting as a worker; the next task then runs on it.
fn a_spare_runs_its_setup_while_the_task_runs_then_serves_the_next(runtime: Runtime) {
    let dir = setup_dir("serve", runtime);
    let pool = isolated(runtime, &dir).build().unwrap();
    first_started(&pool, &dir);
    let first = setups(&dir);
    let (task, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    eventually("the spare ran its setup", || setups(&dir).len() == 2);
    assert_eq!(pool.threads(), 1, "a spare is no worker of the pool");
    assert_eq!(pool.workers().len(), 1);
    let spare: HashSet<String> = setups(&dir).difference(&first).cloned().collect();
    port.send(0).unwrap();
    let ran = held(task).2;
    assert!(
        first.contains(&setup_name(&ran)),
        "{ran} is the first worker"
    );
    let next_task: String = finish(call(&pool, "identity")).unwrap();
    assert!(
        spare.contains(&setup_name(&next_task)),
        "the next task ran on the spare: {next_task}, spare {spare:?}"
    );
    pool.destroy().wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A spare gets no hook call while it waits; promoted, it gets `on_worker_start`, and its
/// exit later; one destroyed while waiting gets neither. Every start has its exit, same pid.
fn hooks_announce_a_spare_only_once_it_serves_and_stay_paired(runtime: Runtime) {
    let dir = setup_dir("hooks", runtime);
    let starts: Arc<Mutex<Vec<WorkerInfo>>> = Arc::default();
    let exits: Arc<Mutex<Vec<(WorkerInfo, Exit)>>> = Arc::default();
    let (started, exited) = (starts.clone(), exits.clone());
    let pool = isolated(runtime, &dir)
        .on_worker_start(move |info| started.lock().unwrap().push(info.clone()))
        .on_worker_exit(move |info, exit| exited.lock().unwrap().push((info.clone(), exit.clone())))
        .build()
        .unwrap();
    let announced = || starts.lock().unwrap().len();
    first_started(&pool, &dir);
    eventually("the first worker is announced", || announced() == 1);

    let (task, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    eventually("the spare ran its setup", || setups(&dir).len() == 2);
    assert_eq!(announced(), 1, "a spare is announced only once it serves");
    port.send(0).unwrap();
    held(task);
    eventually("the spare is announced", || announced() == 2);

    // The second worker's spare starts, and is destroyed before it ever serves.
    let (task, port) = hold(&pool, 1);
    assert_eq!(next(&port), Ok(1));
    eventually("the next spare ran its setup", || setups(&dir).len() == 3);
    pool.destroy().wait().unwrap();
    assert_eq!(finish(task), Err(Error::Terminated));

    let starts = starts.lock().unwrap().clone();
    let exits = exits.lock().unwrap().clone();
    assert_eq!(starts.len(), 2, "the last spare was never announced");
    let key = |info: &WorkerInfo| (info.id, info.pid);
    let mut started: Vec<_> = starts.iter().map(key).collect();
    let mut exited: Vec<_> = exits.iter().map(|(info, _)| key(info)).collect();
    started.sort_unstable();
    exited.sort_unstable();
    assert_eq!(started, exited, "one exit per start, for the same worker");
    let mut reasons: Vec<String> = exits.iter().map(|(_, exit)| format!("{exit:?}")).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["Destroyed", "Isolated"]);
    if runtime != Runtime::Threads {
        let pids = setup_pids(&dir, runtime);
        let announced: HashSet<u32> = starts.iter().filter_map(|info| info.pid).collect();
        assert_eq!(pids.len(), 3);
        assert_eq!(
            pids.iter().filter(|pid| !announced.contains(pid)).count(),
            1,
            "the spare destroyed while waiting was not announced"
        );
        assert!(pids.iter().all(|&pid| procfs::gone(pid)), "all reaped");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Blocks the next setups, holds a task and waits until its spare is in its setup; returns
/// the held task and its port.
fn spare_in_its_setup(
    pool: &Pool,
    dir: &Path,
) -> (Task<Result<Held, String>>, tinypool::Port<u32>) {
    first_started(pool, dir);
    set_gate(dir, "block");
    let (task, port) = hold(pool, 0);
    assert_eq!(next(&port), Ok(0));
    eventually("the spare is in its setup", || setups(dir).len() == 2);
    (task, port)
}

/// What a pool left behind: its threads, its children (zombies included) and descriptors.
fn assert_nothing_left(prefix: &str, dir: &Path, runtime: Runtime, fds: &[(i32, String)]) {
    assert_eq!(
        procfs::live(prefix),
        0,
        "every thread is joined, the spare's too"
    );
    let pids = setup_pids(dir, runtime);
    assert!(
        pids.iter().all(|&pid| procfs::gone(pid)),
        "every child is reaped, the spare's too: {pids:?}"
    );
    // Opened since, and still open: an earlier test's pool, closing in the background, may
    // have closed some of those listed before, but nothing may be new.
    let left: Vec<(i32, String)> = (open_fds().into_iter())
        .filter(|fd| !fds.contains(fd))
        .collect();
    assert_eq!(left, [], "no descriptor is left open");
}

/// This process's open descriptors, with what each one is.
#[cfg(unix)]
fn open_fds() -> Vec<(i32, String)> {
    procfs::open_fds().into_iter().collect()
}

/// None listed on Windows (tests/common/winproc.rs has no such list).
#[cfg(not(unix))]
fn open_fds() -> Vec<(i32, String)> {
    Vec::new()
}

fn destroy_while_a_spare_starts_leaves_nothing_behind(runtime: Runtime) {
    let dir = setup_dir("destroy", runtime);
    let prefix = prefix("sp-destroy", runtime);
    let fds = open_fds();
    let pool = isolated(runtime, &dir)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let (task, port) = spare_in_its_setup(&pool, &dir);
    assert_eq!(pool.destroy().wait(), Ok(()));
    assert_eq!(finish(task), Err(Error::Terminated));
    // The caller's side of a task's channel holds the way to its child until dropped.
    drop((pool, port));
    assert_nothing_left(&prefix, &dir, runtime, &fds);
    let _ = std::fs::remove_dir_all(&dir);
}

fn close_while_a_spare_starts_leaves_nothing_behind(runtime: Runtime) {
    let dir = setup_dir("close", runtime);
    let prefix = prefix("sp-close", runtime);
    let fds = open_fds();
    let pool = isolated(runtime, &dir)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let (task, port) = spare_in_its_setup(&pool, &dir);
    let closed = pool.close();
    port.send(7).unwrap();
    assert_eq!(held(task).3, 7, "close lets the running task finish");
    assert_eq!(closed.wait(), Ok(()));
    drop((pool, port));
    assert_nothing_left(&prefix, &dir, runtime, &fds);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A spare whose setup fails holds no task: its error goes to `on_error`, the task it was to
/// follow is untouched, and nothing starts it again.
fn a_spare_that_fails_to_start_is_reported_and_not_retried(runtime: Runtime) {
    let dir = setup_dir("fail", runtime);
    let (errors, on_error) = collect_errors();
    let pool = isolated(runtime, &dir).on_error(on_error).build().unwrap();
    first_started(&pool, &dir);
    set_gate(&dir, "fail");
    let (task, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    let reported = || errors.lock().unwrap().len();
    eventually("the spare's failure is reported", || reported() == 1);
    let error = errors.lock().unwrap()[0].clone();
    assert!(
        matches!(&error, Error::WorkerStartFailed { message } if message.contains("the gate refuses")),
        "{error:?}"
    );
    assert_eq!(pool.threads(), 1);
    assert_eq!(setups(&dir).len(), 2);
    port.send(3).unwrap();
    assert_eq!(
        held(task).3,
        3,
        "the task the spare was to follow is untouched"
    );
    // Its replacement (for min_threads) starts anew, fails in turn with no task to fail, and
    // is not retried either.
    eventually("the replacement's failure is reported", || reported() == 2);
    eventually("no worker is left", || pool.threads() == 0);
    pool.destroy().wait().unwrap();
    assert_eq!(reported(), 2);
    assert_eq!(
        setups(&dir).len(),
        3,
        "one attempt per worker, none repeated"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A spare is started only if its worker's successor is wanted: with `min_threads(0)` and one
/// task at a time, the worker that leaves is not replaced, so a spare would be discarded unused
/// and every task would pay for two workers. Each task runs long enough (20 ms) for such a
/// spare to run its setup; exactly one setup per task ran.
fn a_pool_fed_one_task_at_a_time_above_min_threads_starts_no_spare(runtime: Runtime) {
    let dir = setup_dir("unwanted", runtime);
    let pool = isolated(runtime, &dir).min_threads(0).build().unwrap();
    for _ in 0..5 {
        let slept: u64 = finish(pool.run_with(20u64, RunOptions::new().name("sleep_ms"))).unwrap();
        assert_eq!(slept, 20);
    }
    pool.destroy().wait().unwrap();
    assert_eq!(setups(&dir).len(), 5, "one worker per task, no spare");
    let _ = std::fs::remove_dir_all(&dir);
}
