//! Helpers shared by the behaviour tests. Each test file uses a part of them.
#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
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
            assert!(!left.is_zero(), "timed out waiting for {n} events, saw {}", *count);
            count = changed.wait_timeout(count, left).unwrap().0;
        }
    }
}

/// Threads of this process whose name starts with `prefix` (names are cut to 15 bytes).
pub fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end().starts_with(prefix))
        .count()
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
