//! Helpers shared by the test binaries. Each uses a part of them; `procfs` is what `/proc`
//! says about this process (threads, children, descriptors); `fifo`, gates that hold tasks
//! running in child processes.
#![allow(dead_code)]

#[cfg(unix)]
pub mod fifo;
#[cfg(unix)]
pub mod procfs;
// The same functions on Windows (built for it, run under Wine in CI).
#[cfg(windows)]
#[path = "winproc.rs"]
pub mod procfs;
#[cfg(unix)]
pub mod wire;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use tinypool::{Builder, Error, Exports, Pool, Port, RunOptions, Runtime, Task};

/// A plain `block_on`, no async runtime: proves `Task` needs none.
pub fn block_on<F: Future>(future: F) -> F::Output {
    poll_until(future, None).expect("no deadline")
}

/// [`block_on`] until `deadline`: `None` if the future is still pending then.
pub fn block_on_until<F: Future>(future: F, deadline: Instant) -> Option<F::Output> {
    poll_until(future, Some(deadline))
}

/// Polls `future` on this thread, parked in between: whoever completes it wakes this thread
/// through the waker.
fn poll_until<F: Future>(future: F, deadline: Option<Instant>) -> Option<F::Output> {
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
            return Some(output);
        }
        match deadline {
            None => thread::park(),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                thread::park_timeout(left);
            }
        }
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
        let deadline = Instant::now() + BOUND;
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

/// A bound that only a bug reaches: it turns a hang into a failure. Never a timing assertion.
pub const BOUND: Duration = Duration::from_secs(30);

/// Waits for a task, turning a hang into a failure after [`BOUND`].
pub fn finish<R: Send + 'static>(task: Task<R>) -> Result<R, Error> {
    task.wait_timeout(BOUND)
        .unwrap_or_else(|_| panic!("the task did not resolve within {BOUND:?}"))
}

/// Recycles `pool`'s workers and waits for the idle ones to stop; a hang fails the test.
pub fn recycle(pool: &Pool) {
    block_on_until(pool.recycle_workers(), Instant::now() + BOUND)
        .unwrap_or_else(|| panic!("recycle_workers did not resolve within {BOUND:?}"))
}

/// The next message on `port`, or the error that ended it; a hang fails the test.
pub fn next<T: Send + 'static>(port: &Port<T>) -> Result<T, Error> {
    match port.recv_timeout(BOUND) {
        Ok(Some(message)) => Ok(message),
        Ok(None) => panic!("no message within {BOUND:?}"),
        Err(error) => Err(error),
    }
}

/// Options that run the export called `name`.
pub fn named(name: &'static str) -> RunOptions {
    RunOptions::new().name(name)
}

/// A builder for `runtime` whose workers serve `exports`: a threads pool is given them, a
/// child-process pool's children (this binary re-executed, whose `main` or
/// `tinypool::test_workers!` served them first) have them already.
pub fn builder(runtime: Runtime, exports: fn() -> Exports) -> Builder {
    let builder = Pool::builder().runtime(runtime);
    match runtime {
        Runtime::Threads => builder.exports(exports()),
        _ => builder,
    }
}

/// Runs `f` on a thread of its own; fails the test unless it returns within [`BOUND`].
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(f());
    });
    finished
        .recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("{what} did not return within {BOUND:?}"))
}

/// `pool.destroy()`, waited on (or, when `as_future`, awaited with no async runtime) on a
/// thread of its own: a `destroy` that never returns fails the test after [`BOUND`].
pub fn destroy_within(pool: &Pool, as_future: bool) -> Result<(), Error> {
    let destroying = pool.destroy();
    within("destroy()", move || {
        if as_future {
            block_on(destroying)
        } else {
            destroying.wait()
        }
    })
}

/// Destroys the pool, which must stop in time and without an error.
pub fn destroy(pool: Pool) {
    assert_eq!(destroy_within(&pool, false), Ok(()), "destroy");
}

/// An `on_error` hook that keeps what it hears, and what it heard.
pub fn collect_errors() -> (
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

/// Waits until `condition` holds, checking every few milliseconds; panics after [`BOUND`]. For
/// states that settle through an event the test cannot hook (a thread leaving, say).
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + BOUND;
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
/// an optional substring filter from the command line, and libtest's summary line at the end;
/// with `--list`, libtest's list of the selected tests instead. The others have libtest's
/// harness and `tinypool::test_workers!`.
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter: Vec<&String> = args.iter().filter(|arg| !arg.starts_with('-')).collect();
    let total = tests.len();
    let selected: Vec<(String, Box<dyn Fn()>)> = tests
        .into_iter()
        .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if args.iter().any(|arg| arg == "--list") {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        println!("\n{} tests, 0 benchmarks", selected.len());
        return;
    }
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

/// Returns `Pending` once (waking itself at once), then `Ready`: one await point.
pub fn yield_once() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}
