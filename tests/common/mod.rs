//! Helpers shared by the behaviour tests. Each test file uses a part of them.
#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// A plain `block_on`, no async runtime: proves `Task` needs none.
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unparker(Thread);
    impl Wake for Unparker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

/// A gate that tasks wait at until the test opens it. Clones share the gate.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn new() -> Self {
        Gate::default()
    }

    /// Blocks until the gate is open.
    pub fn wait(&self) {
        let (open, changed) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = changed.wait(open).unwrap();
        }
    }

    pub fn open(&self) {
        let (open, changed) = &*self.0;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }
}

/// Counts events (e.g. "a task started") and lets the test wait until `n` happened.
#[derive(Clone, Default)]
pub struct Counter(Arc<(Mutex<usize>, Condvar)>);

impl Counter {
    pub fn new() -> Self {
        Counter::default()
    }

    pub fn bump(&self) {
        let (count, changed) = &*self.0;
        *count.lock().unwrap() += 1;
        changed.notify_all();
    }

    pub fn get(&self) -> usize {
        *self.0 .0.lock().unwrap()
    }

    /// Waits until the count reaches `n` (panics after a generous bound, so a bug fails the
    /// test instead of hanging it).
    pub fn wait_for(&self, n: usize) {
        let (count, changed) = &*self.0;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut count = count.lock().unwrap();
        while *count < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {n} events, saw {}",
                *count
            );
            count = changed.wait_timeout(count, left).unwrap().0;
        }
    }
}

/// Threads of this process whose name starts with `prefix` (names are cut to 15 bytes) and
/// that have not begun to exit.
pub fn threads_named(prefix: &str) -> usize {
    threads_where(|name| name.starts_with(prefix))
}

/// Live worker threads of the pool whose `thread_name` is `prefix`: those named
/// `<prefix>-<id>` (not, say, a `<prefix>-destroy` thread of the test's own).
pub fn live(prefix: &str) -> usize {
    let prefix = format!("{prefix}-");
    threads_where(|name| {
        name.strip_prefix(&prefix)
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Threads of this process whose name passes `named` and that have not begun to exit.
///
/// A joined thread can still be listed in `/proc` for a moment: `join` returns once the kernel
/// has released the thread's memory, slightly before it removes the task. Such a thread is
/// already in `do_exit` (`PF_EXITING` is set), so it is not counted; a thread that was not
/// joined is.
fn threads_where(named: impl Fn(&str) -> bool) -> usize {
    const PF_EXITING: u64 = 0x4;
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            // After the `(comm)` field: state ppid pgrp session tty_nr tpgid flags ...
            let flags: u64 = stat[stat.rfind(')')? + 1..]
                .split_whitespace()
                .nth(6)?
                .parse()
                .ok()?;
            Some(named(comm.trim_end()) && flags & PF_EXITING == 0)
        })
        .filter(|&counted| counted)
        .count()
}

/// Waits for a task, turning a hang into a failure after 30 s.
pub fn finish<R: Send + 'static>(task: tinypool::Task<R>) -> Result<R, tinypool::Error> {
    task.wait_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("the task did not resolve within 30 s"))
}

/// Waits until `condition` holds, checking every few milliseconds; panics after 30 s. For
/// states that settle through an event the test cannot hook (a thread leaving, say).
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// One test of a `harness = false` test binary.
pub type TestFn = fn();

/// The test runner of the child-process test binaries that keep a `main` of their own
/// (`harness = false`: Cargo.toml says why each does), which first lets a worker process serve
/// (`tinypool::worker::serve_if_worker`), then runs the tests: one after another, each named,
/// an optional substring filter from the command line, and libtest's summary line at the end.
/// The others have libtest's harness and `tinypool::test_workers!`.
pub fn run_tests(tests: &[(&str, TestFn)]) {
    run_cases(
        tests
            .iter()
            .map(|&(name, test)| (name.to_owned(), Box::new(test) as Box<dyn Fn()>))
            .collect(),
    );
}

/// [`run_tests`] for tests made at run time (one body, several runtimes).
pub fn run_cases(tests: Vec<(String, Box<dyn Fn()>)>) {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let total = tests.len();
    let selected: Vec<(String, Box<dyn Fn()>)> = tests
        .into_iter()
        .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(test));
        println!(
            "test {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        if outcome.is_err() {
            failed.push(name.clone());
        }
    }
    let passed = selected.len() - failed.len();
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        total - selected.len(),
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}

/// A number unique to the calling thread: tells whether two tasks ran on the same worker.
pub fn marker() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static MARKER: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    MARKER.with(|marker| *marker)
}

/// Keeps the panics a test raises on purpose (their message starts with `prefix`) off stderr;
/// every other panic is printed as usual. Call before `serve_if_worker`, so that a child
/// worker's own hook passes on to it.
pub fn quiet_panics(prefix: &'static str) {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if !message.starts_with(prefix) {
            default_hook(info);
        }
    }));
}
