//! Behaviour both runtimes share, by feature. Every test body of the modules below runs once
//! with worker threads and once with child processes (`name::threads`,
//! `name::child_process`); what only in-process workers can show (functions that capture the
//! test's state, `worker::aborted()` inside a function, the worker threads themselves) runs
//! once, with threads (`name::threads`). Each module lists its bodies in `bodies()`: adding a
//! test touches its module only.
//!
//! The binary is also its own worker executable: `main` first lets a worker process serve, as
//! every program with a child-process pool must, with [`exports`], which both kinds of worker
//! serve.

#[path = "../common/mod.rs"]
mod common;

mod abort;
mod async_exports;
mod backpressure;
mod cancel;
mod channels;
mod close;
mod destroy;
mod exports;
mod futures;
mod isolation;
mod lifecycle;
mod options;
mod payloads;
mod priorities;
mod scheduling;
mod spares;
mod stats;
mod teardown;
mod timeouts;
mod typed;

use std::cell::Cell;
use std::collections::HashSet;
use std::io::Write;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use common::{finish, marker, next, run_cases, Counter};
use serde::{Deserialize, Serialize};
use tinypool::{
    worker, AbortSignal, Error, Exports, Pool, Port, RunOptions, Runtime, Task, TypeRole,
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
        .export("panic_long", |(part, times): (String, u32)| -> i32 {
            panic!("{}", part.repeat(times as usize))
        })
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
        // Announces itself on its channel, then waits until the channel closes.
        .export("probe", abort::probe)
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
            if let Ok(Some(dir)) = worker::data::<String>() {
                // A file per worker in the directory `worker_data` names: no two processes
                // append to one file (Wine's appends from several processes lose lines).
                let path = std::path::Path::new(&dir).join(format!("{:?}", worker::id()));
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .expect("teardown log");
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
        // Setup exports (tests/runtimes/lifecycle.rs): counts its runs on the worker's thread
        // (a child's main thread), where its tasks read it back with "setups".
        .export("setup_mark", |()| {
            SETUPS.with(|setups| setups.set(setups.get() + 1));
            SETUP_ID.with(|id| id.set(worker::id()));
        })
        .export("setups", |()| {
            (
                SETUPS.with(Cell::get),
                SETUP_ID.with(Cell::get),
                worker::id(),
            )
        })
        // Logs an attempt to the file named by worker_data, then panics.
        .export("failing_setup", |()| -> u32 {
            let path = worker::data::<String>()
                .expect("worker_data is a String")
                .expect("worker_data is the log's path");
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .expect("setup log");
            file.write_all(b"setup\n").expect("setup log");
            panic!("setup failed on purpose");
        })
        .export("refusing_setup", |()| -> Result<(), String> {
            Err("no database".to_owned())
        })
        // Ends the (child) process at once: with this exit code, or by `abort()` for a
        // negative one. Never run by a thread.
        .export("exit_with", |code: i32| -> u32 {
            if code < 0 {
                std::process::abort();
            }
            std::process::exit(code)
        })
        // Connects to the loopback listener at `address` (the test sees it start, with no
        // channel, so that it may share its worker), then waits for one byte, which it returns.
        .export("meet", |address: String| -> Result<u8, String> {
            use std::io::Read;
            let mut stream = std::net::TcpStream::connect(address).map_err(|e| e.to_string())?;
            let mut byte = [0];
            stream.read_exact(&mut byte).map_err(|e| e.to_string())?;
            Ok(byte[0])
        })
        // Sleeps that many milliseconds, and returns them.
        .export("sleep_ms", |ms: u64| {
            std::thread::sleep(Duration::from_millis(ms));
            ms
        })
        .merge(typed::exports())
        // The setup of tests/runtimes/spares.rs: creates `setup-<pid>-<thread>` in the directory
        // `worker_data` names, then does what the file `gate` there says: "fail" fails the
        // setup, "block" blocks it until its worker is retired (a thread sees
        // `worker::aborted()`; a child is killed) or a minute passed; otherwise it returns.
        .export("spare_setup", |()| -> Result<(), String> {
            let dir = worker::data::<String>()
                .map_err(|e| e.to_string())?
                .ok_or("no directory")?;
            let dir = std::path::Path::new(&dir);
            // The gate is read before the mark is written: a test that changes the gate once
            // it sees a worker's mark does not change what that worker does.
            let gate = std::fs::read_to_string(dir.join("gate"));
            std::fs::write(dir.join(spares::setup_name(&identity())), b"")
                .map_err(|e| e.to_string())?;
            match gate.as_deref() {
                Ok("fail") => Err("the gate refuses this worker".to_owned()),
                Ok("block") => {
                    let until = std::time::Instant::now() + Duration::from_secs(60);
                    while !worker::aborted() && std::time::Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(())
                }
                _ => Ok(()),
            }
        })
        .merge(payloads::exports())
}

thread_local! {
    /// How many times "setup_mark" ran on this thread, and in which worker.
    static SETUPS: Cell<u32> = const { Cell::new(0) };
    static SETUP_ID: Cell<Option<usize>> = const { Cell::new(None) };
}

/// A test body: run once per runtime, or, for what only in-process workers show, with threads
/// only.
#[derive(Clone, Copy)]
enum Body {
    Both(fn(Runtime)),
    Threads(fn()),
}

/// A module's `(name, body)` pairs, each named after its function: the `both` bodies run once
/// per runtime, the `threads` ones with threads only.
macro_rules! bodies {
    (both: [$($both:ident),* $(,)?], threads: [$($threads:ident),* $(,)?] $(,)?) => {
        vec![
            $((stringify!($both), $crate::Body::Both($both)),)*
            $((stringify!($threads), $crate::Body::Threads($threads)),)*
        ]
    };
}
use bodies;

fn main() {
    // A child serves local functions too, to show that it ignores them (tests/runtimes/typed.rs).
    let served = exports().merge(typed::local_exports());
    // A child with async exports serves its tasks concurrently: only the children of
    // async_exports.rs have them, so that the rest of the suite covers the in-order child.
    let served = match std::env::var_os(async_exports::ASYNC_ENV) {
        Some(_) => served.merge(async_exports::exports()),
        None => served,
    };
    worker::serve_if_worker(served);
    let modules = [
        exports::bodies,
        scheduling::bodies,
        isolation::bodies,
        abort::bodies,
        destroy::bodies,
        close::bodies,
        teardown::bodies,
        cancel::bodies,
        channels::bodies,
        futures::bodies,
        options::bodies,
        priorities::bodies,
        lifecycle::bodies,
        typed::bodies,
        timeouts::bodies,
        backpressure::bodies,
        stats::bodies,
        async_exports::bodies,
        spares::bodies,
        payloads::bodies,
    ];
    let mut names = HashSet::new();
    let mut cases: Vec<(String, Box<dyn Fn()>)> = Vec::new();
    for (name, body) in modules.into_iter().flat_map(|bodies| bodies()) {
        assert!(names.insert(name), "two test bodies are named {name}");
        match body {
            Body::Both(body) => {
                for (label, runtime) in [
                    ("threads", Runtime::Threads),
                    ("child_process", Runtime::ChildProcess),
                ] {
                    cases.push((format!("{name}::{label}"), Box::new(move || body(runtime))));
                }
            }
            Body::Threads(body) => cases.push((format!("{name}::threads"), Box::new(body))),
        }
    }
    run_cases(cases);
}

// ---- Helpers of the bodies ----------------------------------------------------------------------

/// What the "gate" export returns: its worker's id and the value it was released with.
type GateTask = Task<Result<(Option<usize>, u32), String>>;

/// What the "hold" export returns: its tag, its worker's id and identity, and the value it was
/// released with.
type Held = (u32, Option<usize>, String, u32);

/// A "hold" task and the caller's side of its channel.
type Hold = (Task<Result<Held, String>>, Port<u32>);

/// A pool of 1 to 2 workers serving [`exports`].
fn pool(runtime: Runtime) -> tinypool::Builder {
    common::builder(runtime, exports)
        .min_threads(1)
        .max_threads(2)
}

/// A pool of one worker thread serving `exports` (a test's own, for what it alone needs).
fn one_thread(exports: Exports) -> Pool {
    Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap()
}

/// Starts a "gate" task and waits until it runs; returns its handle and port.
fn start_gate(pool: &Pool) -> (GateTask, Port<u32>) {
    let (port, theirs) = tinypool::channel::<u32>();
    let task = pool.run_with((), RunOptions::new().name("gate").channel(theirs));
    assert_eq!(next(&port), Ok(0), "the gate task started");
    (task, port)
}

/// Runs the export called `name` with `()`.
fn call<R>(pool: &Pool, name: &'static str) -> Task<R>
where
    R: serde::de::DeserializeOwned + Send + 'static,
{
    pool.run_with((), RunOptions::new().name(name))
}

/// Checks that `error` is a panic with `message` located at a `panic!` of this file (the
/// hook's `file:line:column`: one of [`exports`]); returns the location.
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
        file.is_some_and(|file| file.ends_with("tests/runtimes/main.rs")),
        "{location}"
    );
    let line: usize = line.and_then(|line| line.parse().ok()).expect("a line");
    let source = include_str!("main.rs").lines().nth(line - 1);
    assert!(
        source.is_some_and(|source| source.contains("panic")),
        "{location} is a panic: {source:?}"
    );
    location.clone()
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

// ---- Helpers of the threads-only bodies ---------------------------------------------------------

/// Blocks until the running task is aborted (or the pool destroyed), as a well-behaved long
/// function does.
fn until_aborted() {
    while !worker::aborted() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Tasks that wait until `target` tasks in all have reached them (so they provably run at
/// the same time), then return their worker's id and thread marker.
fn meeting(met: &Counter) -> Exports {
    let met = met.clone();
    Exports::new().export_default(move |target: usize| {
        met.bump();
        met.wait_for(target);
        (worker::id().expect("inside a worker"), marker())
    })
}
