//! Workers forked from a fork server (`Builder::fork_server`, Linux): each is a copy of a
//! process that ran `exports()` and nothing else, its exit is told by the server that reaps
//! it, and whatever happens to the server, every task resolves and no process is left.
#![cfg(target_os = "linux")]

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tinypool::{Builder, Error, Exports, Pool, Runtime};

use common::procfs::gone;
use common::{destroy, eventually, finish, named, next};

tinypool::test_workers!(exports);

/// Tasks this process ran: a fresh worker has run none before its task.
static RAN: AtomicU32 = AtomicU32::new(0);

/// Where a task ran: its process, that process's parent, and how many tasks it ran.
type Place = (u32, u32, u32);

fn place() -> Place {
    let ran = RAN.fetch_add(1, Ordering::SeqCst) + 1;
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() } as u32;
    (std::process::id(), parent, ran)
}

/// A file the worker program opened before it served (`FORK_TEST_KEEP` names it).
static KEPT: OnceLock<Option<File>> = OnceLock::new();

fn exports() -> Exports {
    if let Some(path) = std::env::var_os("FORK_TEST_KEEP") {
        let _ = KEPT.set(File::open(path).ok());
    }
    if std::env::var_os("FORK_TEST_THREAD").is_some() {
        // A thread left running: a server cannot fork this process safely.
        std::thread::spawn(|| loop {
            std::thread::park();
        });
    }
    Exports::new()
        .export_default(|()| place())
        .export("exit", |code: i32| -> u32 { std::process::exit(code) })
        .export("abort", |()| -> u32 { std::process::abort() })
        .export("hold", |()| -> Result<u32, String> {
            // Says where it runs, then waits until its channel closes.
            let port = tinypool::worker::port::<Place>().map_err(|e| e.to_string())?;
            port.send(place()).map_err(|e| e.to_string())?;
            while port.recv().is_ok() {}
            Ok(0)
        })
        .export("env", |name: String| std::env::var(name).ok())
        .export("kept", |()| -> Result<String, String> {
            let file = KEPT
                .get()
                .and_then(Option::as_ref)
                .ok_or("no file opened")?;
            let mut text = vec![0; 64];
            let read = file.read_at(&mut text, 0).map_err(|e| e.to_string())?;
            text.truncate(read);
            String::from_utf8(text).map_err(|e| e.to_string())
        })
}

fn forking(isolate: bool) -> Builder {
    Pool::builder()
        .runtime(Runtime::ChildProcess)
        .min_threads(1)
        .max_threads(2)
        .isolate_workers(isolate)
        .fork_server(true)
        .terminate_timeout(Duration::from_secs(5))
}

fn run(pool: &Pool) -> Place {
    finish(pool.run::<Place, _>(())).expect("a task on a forked worker")
}

#[test]
fn each_isolated_task_runs_in_a_fresh_worker_forked_from_one_server() {
    let pool = forking(true).build().unwrap();
    let places: Vec<Place> = (0..12).map(|_| run(&pool)).collect();
    let server = places[0].1;
    assert_ne!(
        server,
        std::process::id(),
        "forked by a server, not spawned by the pool"
    );
    for &(pid, parent, ran) in &places {
        assert_eq!(parent, server, "one server forks them all: {places:?}");
        assert_eq!(
            ran, 1,
            "a fresh copy of the server, which ran no task: {places:?}"
        );
        assert_ne!(pid, server);
    }
    let mut pids: Vec<u32> = places.iter().map(|place| place.0).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), places.len(), "a worker per task: {places:?}");
    destroy(pool);
    eventually("the server and its workers gone after destroy", || {
        gone(server) && places.iter().all(|place| gone(place.0))
    });
}

#[test]
fn a_pool_that_does_not_isolate_forks_its_workers_too() {
    let pool = forking(false)
        .env("FORK_TEST_VALUE", "seen")
        .build()
        .unwrap();
    let (pid, parent, _) = run(&pool);
    assert_ne!(parent, std::process::id());
    assert_eq!(run(&pool).0, pid, "the same worker serves on");
    let value =
        finish(pool.run_with::<Option<String>, _>("FORK_TEST_VALUE".to_owned(), named("env")));
    assert_eq!(
        value,
        Ok(Some("seen".to_owned())),
        "the pool's env reaches forked workers"
    );
    destroy(pool);
    eventually("the server gone after destroy", || {
        gone(parent) && gone(pid)
    });
}

#[test]
fn how_a_forked_worker_died_is_its_tasks_error() {
    let pool = forking(true).build().unwrap();
    let exited = finish(pool.run_with::<u32, _>(7, named("exit")));
    assert!(
        matches!(
            exited,
            Err(Error::WorkerExited {
                code: Some(7),
                signal: None,
                ..
            })
        ),
        "{exited:?}"
    );
    let aborted = finish(pool.run_with::<u32, _>((), named("abort")));
    assert!(
        matches!(
            aborted,
            Err(Error::WorkerExited {
                signal: Some(libc::SIGABRT),
                ..
            })
        ),
        "{aborted:?}"
    );
    assert_eq!(run(&pool).2, 1, "the pool goes on with fresh workers");
    destroy(pool);
}

#[test]
fn a_killed_server_takes_its_workers_and_a_new_one_serves_the_next_tasks() {
    let pool = forking(false).build().unwrap();
    let (caller, worker) = tinypool::channel::<Place>();
    let held = pool.run_with::<Result<u32, String>, _>((), named("hold").channel(worker));
    let (pid, server, _) = next(&caller).expect("the held task says where it runs");
    // SAFETY: SIGKILL to the server, a process of this test's pool.
    unsafe { libc::kill(server as libc::pid_t, libc::SIGKILL) };
    let lost = finish(held);
    assert!(
        matches!(
            lost,
            Err(Error::WorkerExited {
                signal: Some(libc::SIGKILL),
                ..
            })
        ),
        "its worker dies with the server: {lost:?}"
    );
    eventually("the worker of the killed server gone", || gone(pid));
    let (_, next_server, _) = run(&pool);
    assert_ne!(next_server, server, "a new server");
    assert_ne!(next_server, std::process::id(), "forked, not spawned");
    drop(caller);
    destroy(pool);
    eventually("the new server gone after destroy", || gone(next_server));
}

#[test]
fn a_program_whose_exports_started_a_thread_gets_spawned_workers() {
    let pool = forking(true).env("FORK_TEST_THREAD", "1").build().unwrap();
    for _ in 0..3 {
        let (_, parent, ran) = run(&pool);
        assert_eq!(parent, std::process::id(), "spawned by the pool");
        assert_eq!(ran, 1);
    }
    destroy(pool);
}

#[test]
fn a_closed_pool_leaves_no_server() {
    let pool = forking(true).build().unwrap();
    let (_, server, _) = run(&pool);
    pool.close().wait().unwrap();
    eventually("the server gone once the pool is closed", || gone(server));
    // A clone of the handle still held changes nothing.
    drop(pool);
}

#[test]
fn what_the_program_opened_before_it_served_stays_open_in_its_workers() {
    let path = std::env::temp_dir().join(format!("tinypool-kept-{}", std::process::id()));
    std::fs::write(&path, "kept open").unwrap();
    for fork in [false, true] {
        let pool = forking(true)
            .fork_server(fork)
            .env("FORK_TEST_KEEP", &path)
            .build()
            .unwrap();
        for _ in 0..3 {
            let kept = finish(pool.run_with::<Result<String, String>, _>((), named("kept")));
            assert_eq!(kept, Ok(Ok("kept open".to_owned())), "fork_server({fork})");
        }
        destroy(pool);
    }
    std::fs::remove_file(&path).unwrap();
}
