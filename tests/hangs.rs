//! Hangs: a function stuck in an infinite loop (with a teardown configured), a teardown that
//! panics or blocks, a child deaf to SIGTERM. `destroy()` returns however stuck the workers
//! are, and every task resolves. Child processes are killed, so nothing is left running;
//! a thread cannot be killed, so `destroy()` reports `Error::TerminateTimeout` naming the stuck
//! worker, and every other thread is gone. (The stuck threads are let go at the end of each
//! test, through [`RELEASE`], so the binary exits cleanly.)
//!
//! No timing is asserted: a bounded wait only turns a hang into a failure. How long each
//! `destroy()` took is printed, for RELIABILITY.md.
//!
//! A `harness = false` binary: the child-process pools re-execute it as their workers, so
//! `main` first lets a worker serve.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{collect_errors, eventually, finish, named, procfs};
use tinypool::{worker, Builder, Error, Exports, Pool, Runtime, Task};

/// Every panic this binary raises on purpose starts with this (kept off stderr).
const PANIC_PREFIX: &str = "hangs: ";

/// Lets the stuck functions and teardowns of the threads runtime return. (In a child it is
/// never set: children are killed.)
static RELEASE: AtomicBool = AtomicBool::new(false);
/// Stuck functions that started, so a test can wait until the worker is really stuck.
static STUCK: AtomicUsize = AtomicUsize::new(0);
/// Teardowns that ran to the end (threads runtime).
static TEARDOWNS: AtomicUsize = AtomicUsize::new(0);

/// An infinite loop, deaf to `worker::aborted()`: only [`RELEASE`] ends it, and in a child
/// two minutes, far beyond any test, so that a bug cannot leave it behind for long.
fn stuck() {
    STUCK.fetch_add(1, Ordering::SeqCst);
    let start = Instant::now();
    while !RELEASE.load(Ordering::Acquire) && start.elapsed() < Duration::from_secs(120) {
        std::hint::spin_loop();
        thread::yield_now();
    }
}

fn ignore_sigterm() {
    // SAFETY: sets a signal disposition.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
}

fn exports() -> Exports {
    Exports::new()
        .export_default(|x: i32| x)
        .export("pid", |()| std::process::id())
        .export("stuck", |()| stuck())
        .export("deaf", |()| {
            ignore_sigterm();
            stuck()
        })
        .export("cooperative", |()| {
            while !worker::aborted() {
                thread::sleep(Duration::from_millis(1));
            }
        })
        .export("teardown", |()| {
            TEARDOWNS.fetch_add(1, Ordering::SeqCst);
        })
        .export("teardown_panics", |()| -> () {
            panic!("{PANIC_PREFIX}teardown panic")
        })
        .export("teardown_blocks", |()| {
            stuck();
            TEARDOWNS.fetch_add(1, Ordering::SeqCst);
        })
        .export("teardown_deaf", |()| {
            ignore_sigterm();
            stuck()
        })
}

// ---- Helpers --------------------------------------------------------------------------------

fn pool(runtime: Runtime, prefix: &str) -> Builder {
    common::builder(runtime, exports)
        .min_threads(2)
        .max_threads(2)
        .thread_name(prefix)
        .terminate_timeout(Duration::from_millis(500))
}

/// `pool.destroy().wait()`, failing the test instead of hanging if it never returns; prints
/// how long it took.
fn destroy(pool: &Pool, what: &str) -> Result<(), Error> {
    destroy_as(pool, what, false)
}

/// [`destroy`], awaiting the `Destroy` future (with no async runtime) when `as_future`.
fn destroy_as(pool: &Pool, what: &str, as_future: bool) -> Result<(), Error> {
    let started = Instant::now();
    let result = common::destroy_within(pool, as_future);
    println!(
        "    {what}: destroy() returned {result:?} after {} ms",
        started.elapsed().as_millis()
    );
    result
}

/// Waits until `n` stuck functions (or teardowns) are running.
fn wait_stuck(n: usize) {
    eventually("the workers are stuck", || {
        STUCK.load(Ordering::SeqCst) >= n
    });
}

/// Resets the statics for a new test.
fn reset() {
    RELEASE.store(false, Ordering::SeqCst);
    STUCK.store(0, Ordering::SeqCst);
    TEARDOWNS.store(0, Ordering::SeqCst);
}

/// Lets the stuck threads go and waits until the pool's threads are all gone.
fn release(prefix: &str) {
    RELEASE.store(true, Ordering::SeqCst);
    eventually("the released threads exited", || {
        procfs::live_threads(prefix).is_empty()
    });
}

/// After a child-process pool's destroy: no child process, no zombie, no worker thread.
fn nothing_left(prefix: &str) {
    assert_eq!(procfs::children(), [], "no child process is left");
    assert_eq!(
        procfs::live_threads(prefix),
        Vec::<String>::new(),
        "no worker thread is left"
    );
}

// ---- 1. An infinite loop, with a teardown configured ----------------------------------------

fn threads_stuck_function_with_teardown() {
    const P: &str = "h-loop";
    reset();
    let pool = pool(Runtime::Threads, P)
        .teardown("teardown")
        .build()
        .unwrap();
    let stuck_task = pool.run_with::<(), _>((), named("stuck"));
    wait_stuck(1);
    let busy: Vec<usize> = pool
        .workers()
        .iter()
        .filter(|w| w.running > 0)
        .map(|w| w.id)
        .collect();
    let [stuck_id] = busy[..] else {
        panic!("one busy worker, got {busy:?}")
    };
    let cooperative = pool.run_with::<(), _>((), named("cooperative"));
    let queued: Vec<Task<i32>> = (0..5).map(|i| pool.run(i)).collect();
    assert_eq!(
        destroy(&pool, "threads, stuck function"),
        Err(Error::TerminateTimeout { worker: stuck_id }),
        "destroy names the stuck worker"
    );
    assert_eq!(finish(stuck_task), Err(Error::Terminated));
    assert_eq!(finish(cooperative), Err(Error::Terminated));
    for task in queued {
        match finish(task) {
            Ok(_) | Err(Error::Terminated) => {}
            other => panic!("a queued task gave {other:?}"),
        }
    }
    let left = procfs::live_threads(P);
    assert_eq!(
        left.len(),
        1,
        "only the stuck worker's thread is left: {left:?}"
    );
    assert_eq!(
        TEARDOWNS.load(Ordering::SeqCst),
        1,
        "the other worker ran its teardown"
    );
    release(P);
    assert_eq!(
        TEARDOWNS.load(Ordering::SeqCst),
        2,
        "the stuck worker ran its teardown once its function returned"
    );
    assert_eq!(destroy(&pool, "threads, stuck function, again"), Ok(()));
}

fn processes_stuck_function_with_teardown() {
    const P: &str = "h-ploop";
    reset();
    let pool = pool(Runtime::ChildProcess, P)
        .teardown("teardown")
        .build()
        .unwrap();
    let pid: u32 = finish(pool.run_with((), named("pid"))).unwrap();
    let stuck_task = pool.run_with::<(), _>((), named("stuck"));
    let queued: Vec<Task<i32>> = (0..5).map(|i| pool.run(i)).collect();
    eventually("both workers are busy", || {
        pool.workers().iter().all(|w| w.running > 0)
    });
    assert_eq!(destroy(&pool, "processes, stuck function"), Ok(()));
    assert_eq!(finish(stuck_task), Err(Error::Terminated));
    for task in queued {
        match finish(task) {
            Ok(_) | Err(Error::Terminated) => {}
            other => panic!("a queued task gave {other:?}"),
        }
    }
    assert!(procfs::gone(pid));
    nothing_left(P);
}

// ---- 2. A teardown that panics ---------------------------------------------------------------

fn teardown_panics(runtime: Runtime) {
    let prefix = match runtime {
        Runtime::Threads => "h-tpanic-t",
        _ => "h-tpanic-p",
    };
    reset();
    let (heard, hook) = collect_errors();
    let pool = pool(runtime, prefix)
        .teardown("teardown_panics")
        .on_error(hook)
        .build()
        .unwrap();
    let tasks: Vec<Task<i32>> = (0..10).map(|i| pool.run(i)).collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(finish(task), Ok(i as i32));
    }
    assert_eq!(
        destroy(&pool, &format!("{runtime:?}, teardown panics")),
        Ok(())
    );
    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len(), 2, "one report per worker: {heard:?}");
    for error in heard {
        match error {
            Error::Panicked {
                message,
                location: Some(location),
            } => {
                assert_eq!(message, format!("{PANIC_PREFIX}teardown panic"));
                assert!(location.starts_with("tests/hangs.rs:"), "{location}");
            }
            other => panic!("expected a located panic, got {other:?}"),
        }
    }
    nothing_left(prefix);
}

// ---- 3. A teardown that blocks -------------------------------------------------------------------

fn threads_teardown_blocks() {
    const P: &str = "h-tblock";
    reset();
    let (heard, hook) = collect_errors();
    let pool = pool(Runtime::Threads, P)
        .teardown("teardown_blocks")
        .on_error(hook)
        .build()
        .unwrap();
    let tasks: Vec<Task<i32>> = (0..10).map(|i| pool.run(i)).collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(finish(task), Ok(i as i32));
    }
    match destroy_as(&pool, "threads, teardown blocks, awaited", true) {
        Err(Error::TerminateTimeout { worker: 1 | 2 }) => {}
        other => panic!("expected TerminateTimeout, got {other:?}"),
    }
    assert_eq!(pool.run::<i32, _>(1).wait(), Err(Error::Terminated));
    wait_stuck(2);
    // Worker threads end in their id. (The thread that awaited the destroy, named
    // `{P}-destroy` cut to 15 bytes, may still be on its way out.)
    let workers: Vec<String> = procfs::live_threads(P)
        .into_iter()
        .filter(|name| {
            let id = name[P.len() + 1..].split(' ').next().unwrap_or("");
            id.chars().all(|c| c.is_ascii_digit())
        })
        .collect();
    assert_eq!(workers.len(), 2, "both stuck in teardown: {workers:?}");
    release(P);
    assert_eq!(TEARDOWNS.load(Ordering::SeqCst), 2);
    assert!(
        heard.lock().unwrap().is_empty(),
        "{:?}",
        heard.lock().unwrap()
    );
    assert_eq!(destroy(&pool, "threads, teardown blocks, again"), Ok(()));
}

fn processes_teardown_blocks(teardown: &'static str) {
    let prefix = format!("h-tb-{}", &teardown[9..]);
    reset();
    let (heard, hook) = collect_errors();
    let pool = pool(Runtime::ChildProcess, &prefix)
        .teardown(teardown)
        .on_error(hook)
        .build()
        .unwrap();
    let tasks: Vec<Task<u32>> = (0..4).map(|_| pool.run_with((), named("pid"))).collect();
    let pids: Vec<u32> = tasks.into_iter().map(|t| finish(t).unwrap()).collect();
    assert_eq!(
        destroy(&pool, &format!("processes, {teardown}")),
        Ok(()),
        "a child stuck in its teardown is killed at terminate_timeout"
    );
    for pid in pids {
        assert!(procfs::gone(pid), "worker {pid} was killed and reaped");
    }
    nothing_left(&prefix);
    assert!(
        heard.lock().unwrap().is_empty(),
        "{:?}",
        heard.lock().unwrap()
    );
}

// ---- 4. A child deaf to SIGTERM --------------------------------------------------------------

fn processes_deaf_to_sigterm() {
    const P: &str = "h-deaf";
    reset();
    let pool = pool(Runtime::ChildProcess, P)
        .teardown("teardown_deaf")
        .build()
        .unwrap();
    let deaf = pool.run_with::<(), _>((), named("deaf"));
    let other = pool.run_with::<(), _>((), named("stuck"));
    let queued: Vec<Task<i32>> = (0..5).map(|i| pool.run(i)).collect();
    eventually("both workers are busy", || {
        pool.workers().iter().all(|w| w.running > 0)
    });
    let pids: Vec<u32> = pool.workers().iter().filter_map(|w| w.pid).collect();
    assert_eq!(
        destroy(&pool, "processes, deaf to SIGTERM"),
        Ok(()),
        "a child deaf to SIGTERM is killed at terminate_timeout"
    );
    assert_eq!(finish(deaf), Err(Error::Terminated));
    assert_eq!(finish(other), Err(Error::Terminated));
    for task in queued {
        assert_eq!(finish(task), Err(Error::Terminated));
    }
    for pid in pids {
        assert!(procfs::gone(pid), "worker {pid} was killed and reaped");
    }
    nothing_left(P);
}

fn main() {
    common::quiet_panics(PANIC_PREFIX);
    worker::serve_if_worker(exports());
    common::run_cases(vec![
        (
            "threads_stuck_function_with_teardown".into(),
            Box::new(threads_stuck_function_with_teardown),
        ),
        (
            "processes_stuck_function_with_teardown".into(),
            Box::new(processes_stuck_function_with_teardown),
        ),
        (
            "threads_teardown_panics".into(),
            Box::new(|| teardown_panics(Runtime::Threads)),
        ),
        (
            "processes_teardown_panics".into(),
            Box::new(|| teardown_panics(Runtime::ChildProcess)),
        ),
        (
            "threads_teardown_blocks".into(),
            Box::new(threads_teardown_blocks),
        ),
        (
            "processes_teardown_blocks".into(),
            Box::new(|| processes_teardown_blocks("teardown_blocks")),
        ),
        (
            "processes_teardown_blocks_deaf_to_sigterm".into(),
            Box::new(|| processes_teardown_blocks("teardown_deaf")),
        ),
        (
            "processes_deaf_to_sigterm".into(),
            Box::new(processes_deaf_to_sigterm),
        ),
    ]);
}
