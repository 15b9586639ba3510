//! The systems under test, behind one small trait: tinypool (both runtimes), the Rust peers
//! (rayon, threadpool, tokio; procspawn for processes) and the two floors (a bare thread on std mpsc, a bare child
//! process on a `UnixStream`).

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};

use tinypool::{Pool, RunOptions, Runtime, Task};

use crate::worker::{add, async_exports, payload, sync_exports, ASYNC_ENV};

/// The first argument that makes this binary a floor-unix child instead of the driver.
pub const FLOOR_CHILD: &str = "__floor-unix-child";

/// Every system, in the order run.sh and the table use.
pub const SYSTEMS: &[&str] = &[
    "tinypool-threads",
    "tinypool-process",
    "tinypool-process-exe",
    "rayon",
    "threadpool",
    "tokio",
    "procspawn",
    "floor-mpsc",
    "floor-unix",
];

/// The results and errors of the systems.
pub type Res<T> = Result<T, String>;

/// One pool of one system, built and warmed by the caller.
pub trait System {
    /// One round trip of `add(a, b)`.
    fn add(&mut self, a: u64, b: u64) -> Res<u64>;
    /// Submits `add(i, 1)` for every `i` in `0..n` at once, then awaits them all: their sum.
    fn add_all(&mut self, n: u64) -> Res<u64>;
    /// One round trip of `payload(buf)`.
    fn payload(&mut self, buf: Vec<u8>) -> Res<usize>;
    /// Destroys the pool and waits for its workers.
    fn close(self: Box<Self>) -> Res<()>;
    /// Submits `sleep(ms)` `n` times at once, then awaits them all, each answer checked (W8:
    /// an async export; only tinypool's pools built by [`build_async`] have one).
    fn sleep_all(&mut self, n: u64, ms: u64) -> Res<()> {
        let _ = (n, ms);
        Err("this system has no async export".into())
    }
}

/// The systems that run the async workloads (`w8`, `w1-async`, `w2-async`): tinypool's.
pub fn is_async(system: &str) -> bool {
    system.starts_with("tinypool-")
}

/// Builds a pool of `workers` workers of a tinypool `system` whose exports are the async ones
/// ([`async_exports`]: `add` as the default export, and `sleep`); a child process learns it
/// from [`ASYNC_ENV`].
pub fn build_async(system: &str, workers: usize) -> Res<Box<dyn System>> {
    let builder = match system {
        "tinypool-threads" => {
            Tinypool::builder(Runtime::Threads, workers, false).exports(async_exports())
        }
        "tinypool-process" => {
            Tinypool::builder(Runtime::ChildProcess, workers, false).env(ASYNC_ENV, "1")
        }
        "tinypool-process-exe" => Tinypool::builder(Runtime::ChildProcess, workers, false)
            .filename(worker_exe()?)
            .env(ASYNC_ENV, "1"),
        _ => return Err(format!("{system} has no async exports")),
    };
    Ok(Box::new(Tinypool {
        pool: builder.build().map_err(error)?,
    }))
}

/// Whether `system` runs its workers in threads of this process, so that a buffer can move to
/// them (W5 transfer).
pub fn is_threads(system: &str) -> bool {
    !matches!(
        system,
        "tinypool-process" | "tinypool-process-exe" | "procspawn" | "floor-unix"
    )
}

/// Builds a pool of `workers` workers of `system`, each task on a fresh worker when `isolate`.
pub fn build(system: &str, workers: usize, isolate: bool) -> Res<Box<dyn System>> {
    if isolate && !system.starts_with("tinypool-") {
        // The peers have no such option: a fresh one-worker pool per task, at most `workers`
        // of them at a time, is what isolation means for them.
        build(system, 1, false)?.close()?;
        return Ok(Box::new(Isolated {
            system: system.to_owned(),
            lanes: workers,
        }));
    }
    Ok(match system {
        "tinypool-threads" => Box::new(Tinypool::new(Runtime::Threads, workers, isolate)?),
        "tinypool-process" => Box::new(Tinypool::new(Runtime::ChildProcess, workers, isolate)?),
        "tinypool-process-exe" => Box::new(Tinypool::with_worker_exe(workers, isolate)?),
        "rayon" => Box::new(Rayon::new(workers)?),
        "threadpool" => Box::new(ThreadPool::new(workers)),
        "tokio" => Box::new(Tokio::new(workers)?),
        "procspawn" => Box::new(Procspawn::new(workers)?),
        "floor-mpsc" => Box::new(FloorMpsc::new(workers)?),
        "floor-unix" => Box::new(FloorUnix::new(workers)?),
        _ => return Err(format!("unknown system {system:?}")),
    })
}

/// An error's message.
fn error(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `concurrent_tasks_per_worker` for tinypool's pools: `BENCH_CONCURRENCY`, default 1 (as in
/// Tinypool and Piscina). run.sh also runs W2 with 32, where a child takes 32 tasks at once.
fn concurrency() -> usize {
    std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1)
}

/// tinypool, either runtime.
struct Tinypool {
    /// The pool.
    pool: Pool,
}

impl Tinypool {
    /// A pool of `workers` workers, each task on a fresh one when `isolate`.
    fn new(runtime: Runtime, workers: usize, isolate: bool) -> Res<Self> {
        let mut builder = Self::builder(runtime, workers, isolate);
        if runtime == Runtime::Threads {
            // A child-process pool's workers own their exports (`serve_if_worker` in main).
            builder = builder.exports(sync_exports());
        }
        Ok(Tinypool {
            pool: builder.build().map_err(error)?,
        })
    }

    /// The same with child processes of `tinypool-bench-worker`, found next to this program.
    fn with_worker_exe(workers: usize, isolate: bool) -> Res<Self> {
        let builder =
            Self::builder(Runtime::ChildProcess, workers, isolate).filename(worker_exe()?);
        Ok(Tinypool {
            pool: builder.build().map_err(error)?,
        })
    }

    fn builder(runtime: Runtime, workers: usize, isolate: bool) -> tinypool::Builder {
        let mut builder = Pool::builder();
        // Isolated children are forked from a fork server (Linux; elsewhere it changes
        // nothing), unless BENCH_SPAWN asks for a spawn per task.
        if runtime == Runtime::ChildProcess && isolate {
            builder = builder.fork_server(std::env::var_os("BENCH_SPAWN").is_none());
        }
        builder
            .runtime(runtime)
            .min_threads(workers)
            .max_threads(workers)
            .isolate_workers(isolate)
            .concurrent_tasks_per_worker(concurrency())
            .record_timing(std::env::var_os("BENCH_RECORD_TIMING").is_some())
    }
}

/// `tinypool-bench-worker`, found next to this program.
fn worker_exe() -> Res<std::path::PathBuf> {
    let exe = std::env::current_exe().map_err(error)?;
    let worker = exe.with_file_name("tinypool-bench-worker");
    if !worker.exists() {
        return Err(format!(
            "{} is missing: cargo build --release -p tinypool-bench builds it",
            worker.display()
        ));
    }
    Ok(worker)
}

impl System for Tinypool {
    fn add(&mut self, a: u64, b: u64) -> Res<u64> {
        self.pool.run::<u64, _>((a, b)).wait().map_err(error)
    }

    fn add_all(&mut self, n: u64) -> Res<u64> {
        let tasks: Vec<Task<u64>> = (0..n).map(|i| self.pool.run((i, 1u64))).collect();
        let mut sum = 0u64;
        for task in tasks {
            sum = sum.wrapping_add(task.wait().map_err(error)?);
        }
        Ok(sum)
    }

    fn payload(&mut self, buf: Vec<u8>) -> Res<usize> {
        let options = RunOptions::new().name("payload");
        self.pool
            .run_with::<usize, _>(buf, options)
            .wait()
            .map_err(error)
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.pool.destroy().wait().map_err(error)
    }

    fn sleep_all(&mut self, n: u64, ms: u64) -> Res<()> {
        let tasks: Vec<Task<u64>> = (0..n)
            .map(|_| self.pool.run_with(ms, RunOptions::new().name("sleep")))
            .collect();
        for task in tasks {
            let answer = task.wait().map_err(error)?;
            if answer != ms {
                return Err(format!("sleep({ms}) returned {answer}"));
            }
        }
        Ok(())
    }
}

/// Sums `n` answers from `rx`.
fn sum_of(rx: &Receiver<u64>, n: u64) -> Res<u64> {
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(rx.recv().map_err(|_| "a worker went away".to_owned())?);
    }
    Ok(sum)
}

/// rayon: `ThreadPool::spawn`, each job answering on an mpsc channel.
struct Rayon {
    /// The pool.
    pool: rayon::ThreadPool,
    /// Cloned into every job, to answer on.
    tx: Sender<u64>,
    /// Where the answers arrive.
    rx: Receiver<u64>,
}

impl Rayon {
    /// A pool of `workers` threads.
    fn new(workers: usize) -> Res<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .build()
            .map_err(error)?;
        let (tx, rx) = mpsc::channel();
        Ok(Rayon { pool, tx, rx })
    }
}

impl System for Rayon {
    fn add(&mut self, a: u64, b: u64) -> Res<u64> {
        let tx = self.tx.clone();
        self.pool.spawn(move || {
            let _ = tx.send(add(a, b));
        });
        sum_of(&self.rx, 1)
    }

    fn add_all(&mut self, n: u64) -> Res<u64> {
        for i in 0..n {
            let tx = self.tx.clone();
            self.pool.spawn(move || {
                let _ = tx.send(add(i, 1));
            });
        }
        sum_of(&self.rx, n)
    }

    fn payload(&mut self, buf: Vec<u8>) -> Res<usize> {
        let tx = self.tx.clone();
        self.pool.spawn(move || {
            let _ = tx.send(payload(buf) as u64);
        });
        Ok(sum_of(&self.rx, 1)? as usize)
    }

    fn close(self: Box<Self>) -> Res<()> {
        // Dropping a rayon pool tells its threads to stop; it does not wait for them.
        drop(self);
        Ok(())
    }
}

/// procspawn: a `Pool` of this binary re-executed (`procspawn::init` in main), each task a
/// function pointer and its arguments over ipc-channel, awaited by `JoinHandle::join`.
struct Procspawn {
    /// The pool.
    pool: procspawn::Pool,
}

impl Procspawn {
    /// A pool of `workers` processes.
    fn new(workers: usize) -> Res<Self> {
        Ok(Procspawn {
            pool: procspawn::Pool::new(workers).map_err(error)?,
        })
    }
}

impl System for Procspawn {
    fn add(&mut self, a: u64, b: u64) -> Res<u64> {
        let handle = self.pool.spawn((a, b), |(a, b): (u64, u64)| add(a, b));
        handle.join().map_err(error)
    }

    fn add_all(&mut self, n: u64) -> Res<u64> {
        // Each pending task holds two ipc-channels (four file descriptors): 200,000 at once
        // exceed any fd limit, so at most `WINDOW` are in flight, the oldest joined first.
        const WINDOW: usize = 1_000;
        let mut pending = std::collections::VecDeque::with_capacity(WINDOW);
        let mut sum = 0;
        for i in 0..n {
            if pending.len() == WINDOW {
                let handle: procspawn::JoinHandle<u64> = pending.pop_front().expect("full");
                sum += handle.join().map_err(error)?;
            }
            pending.push_back(self.pool.spawn((i, 1), |(a, b): (u64, u64)| add(a, b)));
        }
        for handle in pending {
            sum += handle.join().map_err(error)?;
        }
        Ok(sum)
    }

    fn payload(&mut self, buf: Vec<u8>) -> Res<usize> {
        let handle = self.pool.spawn(buf, payload);
        handle.join().map_err(error)
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.pool.shutdown();
        Ok(())
    }
}

/// threadpool: `ThreadPool::execute`, each job answering on an mpsc channel.
struct ThreadPool {
    /// The pool.
    pool: threadpool::ThreadPool,
    /// Cloned into every job, to answer on.
    tx: Sender<u64>,
    /// Where the answers arrive.
    rx: Receiver<u64>,
}

impl ThreadPool {
    /// A pool of `workers` threads.
    fn new(workers: usize) -> Self {
        let (tx, rx) = mpsc::channel();
        ThreadPool {
            pool: threadpool::ThreadPool::new(workers),
            tx,
            rx,
        }
    }
}

impl System for ThreadPool {
    fn add(&mut self, a: u64, b: u64) -> Res<u64> {
        let tx = self.tx.clone();
        self.pool.execute(move || {
            let _ = tx.send(add(a, b));
        });
        sum_of(&self.rx, 1)
    }

    fn add_all(&mut self, n: u64) -> Res<u64> {
        for i in 0..n {
            let tx = self.tx.clone();
            self.pool.execute(move || {
                let _ = tx.send(add(i, 1));
            });
        }
        sum_of(&self.rx, n)
    }

    fn payload(&mut self, buf: Vec<u8>) -> Res<usize> {
        let tx = self.tx.clone();
        self.pool.execute(move || {
            let _ = tx.send(payload(buf) as u64);
        });
        Ok(sum_of(&self.rx, 1)? as usize)
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.pool.join();
        if self.pool.panic_count() > 0 {
            return Err("a threadpool job panicked".into());
        }
        // Dropping the pool closes its queue; its threads then stop.
        Ok(())
    }
}

/// tokio: `spawn_blocking` on a runtime whose blocking pool has `workers` threads, awaited
/// with `block_on` from the driver's thread.
struct Tokio {
    /// The runtime.
    runtime: tokio::runtime::Runtime,
}

impl Tokio {
    /// A runtime with one async worker and `workers` blocking threads.
    fn new(workers: usize) -> Res<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(workers)
            .build()
            .map_err(error)?;
        Ok(Tokio { runtime })
    }
}

impl System for Tokio {
    fn add(&mut self, a: u64, b: u64) -> Res<u64> {
        let handle = self.runtime.spawn_blocking(move || add(a, b));
        self.runtime.block_on(handle).map_err(error)
    }

    fn add_all(&mut self, n: u64) -> Res<u64> {
        let handles: Vec<_> = (0..n)
            .map(|i| self.runtime.spawn_blocking(move || add(i, 1)))
            .collect();
        self.runtime.block_on(async move {
            let mut sum = 0u64;
            for handle in handles {
                sum = sum.wrapping_add(handle.await.map_err(error)?);
            }
            Ok(sum)
        })
    }

    fn payload(&mut self, buf: Vec<u8>) -> Res<usize> {
        let handle = self.runtime.spawn_blocking(move || payload(buf));
        self.runtime.block_on(handle).map_err(error)
    }

    fn close(self: Box<Self>) -> Res<()> {
        // Dropping a runtime waits for its idle blocking threads to stop.
        drop(self);
        Ok(())
    }
}

/// A request to a floor-mpsc thread.
enum Request {
    /// `add(a, b)`.
    Add(u64, u64),
    /// `payload(buf)`.
    Payload(Vec<u8>),
}

/// The floor of the threads runtimes: dedicated threads, each reading requests from its own
/// std mpsc channel and answering on a shared one. No queue, no bookkeeping, no futures.
struct FloorMpsc {
    /// Each thread's request channel, and the thread.
    workers: Vec<(Sender<Request>, JoinHandle<()>)>,
    /// Where every thread answers.
    rx: Receiver<u64>,
    /// The thread the next request goes to.
    next: usize,
}

impl FloorMpsc {
    /// Starts `workers` threads.
    fn new(workers: usize) -> Res<Self> {
        let (answers, rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(workers);
        for id in 0..workers {
            let (tx, requests) = mpsc::channel::<Request>();
            let answers = answers.clone();
            let thread = thread::Builder::new()
                .name(format!("floor-mpsc-{id}"))
                .spawn(move || {
                    for request in requests {
                        let answer = match request {
                            Request::Add(a, b) => add(a, b),
                            Request::Payload(buf) => payload(buf) as u64,
                        };
                        if answers.send(answer).is_err() {
                            break;
                        }
                    }
                })
                .map_err(error)?;
            threads.push((tx, thread));
        }
        Ok(FloorMpsc {
            workers: threads,
            rx,
            next: 0,
        })
    }

    /// Sends `request` to the next thread, round robin.
    fn send(&mut self, request: Request) -> Res<()> {
        let worker = &self.workers[self.next];
        self.next = (self.next + 1) % self.workers.len();
        worker
            .0
            .send(request)
            .map_err(|_| "a floor-mpsc thread went away".to_owned())
    }
}

impl System for FloorMpsc {
    fn add(&mut self, a: u64, b: u64) -> Res<u64> {
        self.send(Request::Add(a, b))?;
        sum_of(&self.rx, 1)
    }

    fn add_all(&mut self, n: u64) -> Res<u64> {
        for i in 0..n {
            self.send(Request::Add(i, 1))?;
        }
        sum_of(&self.rx, n)
    }

    fn payload(&mut self, buf: Vec<u8>) -> Res<usize> {
        self.send(Request::Payload(buf))?;
        Ok(sum_of(&self.rx, 1)? as usize)
    }

    fn close(self: Box<Self>) -> Res<()> {
        for (tx, thread) in self.workers {
            drop(tx);
            thread
                .join()
                .map_err(|_| "a floor-mpsc thread panicked".to_owned())?;
        }
        Ok(())
    }
}

/// In a floor-unix request, `a == PAYLOAD` announces `b` bytes of payload after the header.
const PAYLOAD: u64 = u64::MAX;

/// One floor-unix child: this binary re-executed, its stdin one end of a `UnixStream` pair.
struct UnixChild {
    /// The child.
    process: Child,
    /// Our end of the pair, for answers.
    reader: BufReader<UnixStream>,
    /// Our end of the pair again, for requests.
    writer: BufWriter<UnixStream>,
}

impl UnixChild {
    /// Starts a child, its stdin the other end of a new `UnixStream` pair.
    fn spawn() -> Res<Self> {
        let exe = std::env::current_exe().map_err(error)?;
        let (ours, theirs) = UnixStream::pair().map_err(error)?;
        let process = Command::new(exe)
            .arg(FLOOR_CHILD)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .spawn()
            .map_err(|e| format!("cannot start a floor-unix child: {e}"))?;
        let reader = BufReader::with_capacity(64 << 10, ours.try_clone().map_err(error)?);
        let writer = BufWriter::with_capacity(64 << 10, ours);
        Ok(UnixChild {
            process,
            reader,
            writer,
        })
    }

    /// Buffers the request `(a, b)`.
    fn send(&mut self, a: u64, b: u64) -> Res<()> {
        self.writer.write_all(&message(a, b)).map_err(error)
    }

    /// Sends the buffered requests.
    fn flush(&mut self) -> Res<()> {
        self.writer.flush().map_err(error)
    }

    /// Closes our end (the child sees the end of its stdin) and waits for a clean exit.
    fn close(mut self) -> Res<()> {
        drop(self.reader);
        drop(self.writer);
        let status = self.process.wait().map_err(error)?;
        if !status.success() {
            return Err(format!("a floor-unix child failed: {status}"));
        }
        Ok(())
    }
}

/// A 16-byte message: two little-endian `u64`s.
fn message(a: u64, b: u64) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..].copy_from_slice(&b.to_le_bytes());
    bytes
}

/// Reads one 16-byte message; `None` at a clean end of stream.
fn read_message(reader: &mut impl Read) -> Res<Option<(u64, u64)>> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < 16 {
        match reader.read(&mut bytes[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err("a message was cut short".into()),
            Ok(read) => filled += read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(error(e)),
        }
    }
    let a = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let b = u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"));
    Ok(Some((a, b)))
}

/// Reads the 16-byte answer `(value, 0)`.
fn read_answer(reader: &mut impl Read) -> Res<u64> {
    match read_message(reader)? {
        Some((value, _)) => Ok(value),
        None => Err("a floor-unix child went away".into()),
    }
}

/// The floor of the child-process runtimes: re-executed children answering 16-byte messages
/// over a `UnixStream` pair, buffered on both sides (a child flushes when it has read every
/// request that has arrived), one child per worker.
struct FloorUnix {
    /// One child per worker.
    children: Vec<UnixChild>,
}

impl FloorUnix {
    /// Starts `workers` children.
    fn new(workers: usize) -> Res<Self> {
        let children = (0..workers)
            .map(|_| UnixChild::spawn())
            .collect::<Res<Vec<_>>>()?;
        Ok(FloorUnix { children })
    }
}

impl System for FloorUnix {
    fn add(&mut self, a: u64, b: u64) -> Res<u64> {
        let child = &mut self.children[0];
        child.send(a, b)?;
        child.flush()?;
        read_answer(&mut child.reader)
    }

    fn add_all(&mut self, n: u64) -> Res<u64> {
        let count = self.children.len() as u64;
        thread::scope(|scope| {
            let mut readers = Vec::new();
            let mut writers = Vec::new();
            for (k, child) in self.children.iter_mut().enumerate() {
                // Child k answers the requests i with i % count == k.
                let share = n / count + u64::from((k as u64) < n % count);
                let reader = &mut child.reader;
                readers.push(scope.spawn(move || {
                    let mut sum = 0u64;
                    for _ in 0..share {
                        sum = sum.wrapping_add(read_answer(reader)?);
                    }
                    Res::Ok(sum)
                }));
                writers.push(&mut child.writer);
            }
            let mut sent = Ok(());
            for i in 0..n {
                let writer = &mut writers[(i % count) as usize];
                if let Err(e) = writer.write_all(&message(i, 1)) {
                    sent = Err(error(e));
                    break;
                }
            }
            for writer in writers {
                if let Err(e) = writer.flush() {
                    sent = Err(error(e));
                }
            }
            sent?;
            let mut sum = 0u64;
            for reader in readers {
                let part = reader
                    .join()
                    .map_err(|_| "a reader thread panicked".to_owned())??;
                sum = sum.wrapping_add(part);
            }
            Ok(sum)
        })
    }

    fn payload(&mut self, buf: Vec<u8>) -> Res<usize> {
        let child = &mut self.children[0];
        child.send(PAYLOAD, buf.len() as u64)?;
        child.writer.write_all(&buf).map_err(error)?;
        child.flush()?;
        Ok(read_answer(&mut child.reader)? as usize)
    }

    fn close(self: Box<Self>) -> Res<()> {
        let mut result = Ok(());
        for child in self.children {
            if let Err(e) = child.close() {
                result = Err(e);
            }
        }
        result
    }
}

/// The body of a floor-unix child: answers requests on stdin (one end of a `UnixStream`
/// pair) until the driver closes it, then exits.
pub fn floor_child() -> ! {
    let code = match serve_floor() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("floor-unix child: {e}");
            1
        }
    };
    std::process::exit(code)
}

/// Answers requests until the end of stdin.
fn serve_floor() -> Res<()> {
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(error)?;
    let stream = UnixStream::from(fd);
    let mut reader = BufReader::with_capacity(64 << 10, stream.try_clone().map_err(error)?);
    let mut writer = BufWriter::with_capacity(64 << 10, stream);
    while let Some((a, b)) = read_message(&mut reader)? {
        let answer = if a == PAYLOAD {
            // The payload is copied out of the socket into a buffer of its own, as a
            // deserializer would.
            let mut buf = Vec::with_capacity(b as usize);
            (&mut reader).take(b).read_to_end(&mut buf).map_err(error)?;
            if buf.len() as u64 != b {
                return Err("a payload was cut short".into());
            }
            payload(buf) as u64
        } else {
            add(a, b)
        };
        writer.write_all(&message(answer, 0)).map_err(error)?;
        if reader.buffer().is_empty() {
            writer.flush().map_err(error)?;
        }
    }
    writer.flush().map_err(error)
}

/// Isolation for the systems that have no such option: every task gets a freshly built
/// one-worker pool, closed after it; `lanes` tasks run at a time.
struct Isolated {
    /// The system whose one-worker pools are built.
    system: String,
    /// How many tasks run at a time.
    lanes: usize,
}

impl Isolated {
    /// A fresh one-worker pool.
    fn fresh(&self) -> Res<Box<dyn System>> {
        build(&self.system, 1, false)
    }
}

impl System for Isolated {
    fn add(&mut self, a: u64, b: u64) -> Res<u64> {
        let mut pool = self.fresh()?;
        let answer = pool.add(a, b)?;
        pool.close()?;
        Ok(answer)
    }

    fn add_all(&mut self, n: u64) -> Res<u64> {
        let lanes = self.lanes.max(1) as u64;
        let this = &*self;
        thread::scope(|scope| {
            let lanes: Vec<_> = (0..lanes)
                .map(|lane| {
                    scope.spawn(move || {
                        let mut sum = 0u64;
                        let mut i = lane;
                        while i < n {
                            let mut pool = this.fresh()?;
                            sum = sum.wrapping_add(pool.add(i, 1)?);
                            pool.close()?;
                            i += lanes;
                        }
                        Res::Ok(sum)
                    })
                })
                .collect();
            let mut sum = 0u64;
            for lane in lanes {
                let part = lane
                    .join()
                    .map_err(|_| "a lane thread panicked".to_owned())??;
                sum = sum.wrapping_add(part);
            }
            Ok(sum)
        })
    }

    fn payload(&mut self, buf: Vec<u8>) -> Res<usize> {
        let mut pool = self.fresh()?;
        let answer = pool.payload(buf)?;
        pool.close()?;
        Ok(answer)
    }

    fn close(self: Box<Self>) -> Res<()> {
        Ok(())
    }
}
