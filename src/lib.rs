//! # tinypool
//!
//! A tiny, fast worker pool for Rust programs: a [`Pool`] of workers that run *exported
//! functions* by name, on threads or on child processes, and hand each result back as a
//! [`Task`] you can `.await` in any executor or block on. It follows
//! [Tinypool](https://github.com/tinylibs/tinypool), the Node.js pool that Vitest runs on: the
//! same options, the same model.
//!
//! The package is `tinypool-rs`; the library is `tinypool`:
//!
//! ```toml
//! [dependencies]
//! tinypool-rs = "0.1"
//! ```
//!
//! ## Quick start
//!
//! ```
//! use tinypool::{Exports, Pool, RunOptions};
//!
//! let pool = Pool::builder()
//!     .exports(
//!         Exports::new()
//!             .export_default(|(a, b): (i32, i32)| a + b)
//!             .export("multiply", |(a, b): (i32, i32)| a * b),
//!     )
//!     .build()?;
//!
//! let sum: i32 = pool.run((4, 6)).wait()?;
//! let product = pool.run_with::<i32, _>((4, 6), RunOptions::new().name("multiply"));
//! assert_eq!((sum, product.wait()?), (10, 24));
//!
//! pool.destroy().wait()?;
//! # Ok::<(), tinypool::Error>(())
//! ```
//!
//! Every task resolves exactly once: with its value, or with an [`Error`] saying what went
//! wrong (a panic, an abort, a full queue, a worker that died, a destroyed pool…). Argument
//! and result types must be exactly the export's (`i32` is not `u32`), else the task fails
//! with [`Error::TypeMismatch`]: give literals their type (`pool.run::<u32, _>(21u32)`).
//!
//! To stop a pool, [`Pool::close`] it (its tasks finish first; dropping its last clone does
//! that in the background, without waiting) or [`Pool::destroy`] it (at once).
//!
//! ## Typed exports
//!
//! A typed handle, [`Export`], names an export with its argument and result types, so that
//! the compiler checks them where the function is registered ([`Exports::register`]: the
//! closure's types come from the handle) and where it is called ([`Pool::call`],
//! [`Pool::call_with`], which return a `Task` of the handle's result type). A handle and a
//! run by name reach the same function.
//!
//! ```
//! use tinypool::{Export, Exports, Pool};
//!
//! const ADD: Export<(i32, i32), i32> = Export::new("add");
//!
//! let pool = Pool::builder()
//!     .exports(Exports::new().register(ADD, |(a, b)| a + b))
//!     .build()?;
//! let sum = pool.call(ADD, (4, 6)).wait()?; // `(4i64, 6i64)` would not compile.
//! assert_eq!(sum, 10);
//! # Ok::<(), tinypool::Error>(())
//! ```
//!
//! On threads, values only move, so they need not be serde types: a *local* export
//! ([`Exports::export_local`], or a handle made with [`Export::local`]) takes and returns any
//! `Send + 'static` value, an `Arc`, a channel's `Sender`, a `File`. Only the threads runtime
//! runs it: [`Builder::build`] refuses a child-process pool given local exports, and a call
//! of a local handle on a child-process pool fails with [`Error::InvalidOptions`].
//!
//! ## Two runtimes, one API
//!
//! - [`Runtime::Threads`] (the default): workers are threads of this process. Arguments and
//!   results move; nothing is serialized.
//! - [`Runtime::ChildProcess`] (Unix and Windows): each worker is a child process, and values
//!   cross with serde over a socket (Unix; on Linux, through shared memory beside it) or two
//!   anonymous pipes (Windows). A crash, `abort()`, segfault or
//!   `exit` in a child fails only its own task with [`Error::WorkerExited`], and the pool
//!   replaces the child. This is the runtime for code that may crash, leak or hang: C
//!   libraries, untrusted input, tests.
//!
//! A child is this program re-executed, so `main` must let it serve first, with
//! [`worker::serve_if_worker`]; in the pool's own process that call returns at once:
//!
//! ```no_run
//! use tinypool::{Exports, Pool, Runtime};
//!
//! fn exports() -> Exports {
//!     Exports::new().export_default(|(a, b): (i32, i32)| a + b)
//! }
//!
//! fn main() -> Result<(), tinypool::Error> {
//!     tinypool::worker::serve_if_worker(exports()); // In a worker: serves, then exits.
//!
//!     let pool = Pool::builder().runtime(Runtime::ChildProcess).build()?;
//!     assert_eq!(pool.run::<i32, _>((4, 6)).wait()?, 10);
//!     pool.destroy().wait()
//! }
//! ```
//!
//! Or the workers are a separate program, given with [`Builder::filename`], whose `main`
//! makes the same call. A child gets its own process group (Ctrl-C is the application's to
//! handle), this process's environment plus [`Builder::env`], [`Builder::argv`] as arguments,
//! stdout and stderr as [`Builder::stdout`] and [`Builder::stderr`] say, and no other
//! descriptor of this process; it dies with the pool's process.
//!
//! ## Testing
//!
//! A test binary's `main` is the test harness's, so a test reaches child processes in one of
//! two ways, each one line of setup per test file. Both keep all of `cargo test` (name
//! filters, `--exact`, tests in parallel, output capture, `--list`) and work under
//! `cargo nextest`, which runs each test in a process of its own.
//!
//! - **The test binary itself as the worker**: [`test_workers!`] once at the top level of the
//!   test file. Its workers serve the exports before the harness starts, so no test ever runs
//!   in a child.
//!
//!   ```
//!   // tests/adding.rs
//!   use tinypool::{Exports, Pool, Runtime};
//!
//!   fn exports() -> Exports {
//!       Exports::new().export_default(|(a, b): (i32, i32)| a + b)
//!   }
//!
//!   tinypool::test_workers!(exports);
//!
//!   #[test]
//!   fn adds_in_a_child_process() -> Result<(), tinypool::Error> {
//!       let pool = Pool::builder().runtime(Runtime::ChildProcess).build()?;
//!       assert_eq!(pool.run::<i32, _>((4, 6)).wait()?, 10);
//!       pool.destroy().wait()
//!   }
//!   # fn main() -> Result<(), tinypool::Error> {
//!   #     let pool = Pool::builder().runtime(Runtime::ChildProcess).build()?;
//!   #     assert_eq!(pool.run::<i32, _>((4, 6)).wait()?, 10);
//!   #     pool.destroy().wait()
//!   # }
//!   ```
//!
//! - **A worker binary of the package**: Cargo gives its integration tests the path of each
//!   `[[bin]]` in `CARGO_BIN_EXE_<name>`, for [`Builder::filename`]; that binary's `main`
//!   calls [`worker::serve_if_worker`] first, and the test binary is never re-executed.
//!
//!   ```no_run
//!   // tests/adding.rs, in a package with a `[[bin]]` named `adder-worker`
//!   use tinypool::{Pool, Runtime};
//!   # macro_rules! env { ($name:literal) => { "target/debug/adder-worker" } }
//!
//!   #[test]
//!   fn adds_in_a_worker_binary() -> Result<(), tinypool::Error> {
//!       let pool = Pool::builder()
//!           .runtime(Runtime::ChildProcess)
//!           .filename(env!("CARGO_BIN_EXE_adder-worker"))
//!           .build()?;
//!       assert_eq!(pool.run::<i32, _>((4, 6)).wait()?, 10);
//!       pool.destroy().wait()
//!   }
//!   # fn main() -> Result<(), tinypool::Error> {
//!   #     let pool = Pool::builder()
//!   #         .runtime(Runtime::ChildProcess)
//!   #         .filename(env!("CARGO_BIN_EXE_adder-worker"))
//!   #         .build()?;
//!   #     assert_eq!(pool.run::<i32, _>((4, 6)).wait()?, 10);
//!   #     pool.destroy().wait()
//!   # }
//!   ```
//!
//! Calling `serve_if_worker` inside a `#[test]` instead is refused: a worker re-executed from
//! that binary would start the harness, which runs the whole test suite (side effects
//! included) in every worker before the one test that calls it, if ever, serves.
//! [`Builder::build`] therefore fails at once with [`Error::InvalidOptions`], naming both
//! ways, when a pool would re-execute a program that called `serve_if_worker` only on threads
//! other than the main one (a test's), or never, and has no `test_workers!`. (A test file with
//! `harness = false` and a `main` of its own that calls `serve_if_worker` first also works,
//! but without the harness.)
//!
//! ## Async
//!
//! A [`Task`] is a `Future` that the worker itself wakes: it works on tokio, smol, async-std or
//! a hand-written executor. In async code, `.await` tasks, [`Destroy`], [`Close`] and
//! [`Idle`]: their `wait()` blocks the calling thread, which in an async runtime is the
//! executor's (on a single-threaded runtime, waiting on a task that needs a message from the
//! async side never returns).
//!
//! ```
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let pool = tinypool::Pool::builder()
//!     .exports(tinypool::Exports::new().export_default(|n: u64| n * 2))
//!     .build()?;
//! let doubled = pool.run::<u64, _>(21u64).await?;
//! assert_eq!(doubled, 42);
//! pool.destroy().await
//! # })?;
//! # Ok::<(), tinypool::Error>(())
//! ```
//!
//! With child processes, keep `main` a plain function that serves first and then builds the
//! async runtime (`examples/tokio.rs`): under `#[tokio::main]` every child would start a
//! runtime before serving.
//!
//! **Async exports** ([`Exports::export_async`], [`Exports::register_async`]): a function whose
//! call returns a future (not necessarily `Send`). A worker thread keeps up to
//! [`concurrent_tasks_per_worker`](Builder::concurrent_tasks_per_worker) of their tasks in
//! flight, interleaved at their await points, as Tinypool's `concurrentTasksPerWorker` does in
//! Node, and publishes each result as soon as its future ends. Without features each worker
//! polls them with a small executor of its own; with the `tokio` feature, on a current-thread
//! tokio runtime of its own with I/O and time enabled. Aborting one drops its future at its next
//! poll and leaves its worker and its other tasks alone, even with a signal or a timeout (such
//! tasks interleave like the others, in a child process too). A pool without async exports runs
//! one task at a time per worker thread. A child process whose exports include async ones runs
//! them the same way, and answers its tasks as they end.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tinypool::{Exports, Pool, RunOptions, Task};
//!
//! // A wait that another thread ends: it needs no reactor.
//! async fn later(ms: u64) -> u64 {
//!     let (done, port) = tinypool::channel::<()>();
//!     std::thread::spawn(move || {
//!         std::thread::sleep(Duration::from_millis(ms));
//!         let _ = done.send(());
//!     });
//!     let _ = port.recv_async().await;
//!     ms
//! }
//!
//! let pool = Pool::builder()
//!     .exports(Exports::new().export_default_async(later))
//!     .max_threads(1)
//!     .concurrent_tasks_per_worker(20)
//!     .build()?;
//! let started = Instant::now();
//! let tasks: Vec<Task<u64>> = (0..20).map(|_| pool.run(100u64)).collect();
//! for task in tasks {
//!     assert_eq!(task.wait()?, 100);
//! }
//! // One worker, 20 waits of 100 ms at once: about 100 ms, not 2 s.
//! println!("{:?}", started.elapsed());
//! # Ok::<(), tinypool::Error>(())
//! ```
//!
//! ## Inside a worker
//!
//! [`worker`] tells the running function its worker's id, the pool's
//! [`worker_data`](Builder::worker_data), its task's [`channel`](fn@channel) and whether the
//! task was aborted ([`AbortController`]).
//!
//! ## Errors
//!
//! ```
//! use tinypool::{Error, Exports, Pool};
//!
//! let pool = Pool::builder()
//!     .exports(Exports::new().export_default(|n: i32| if n < 0 { panic!("negative") } else { n }))
//!     .build()?;
//! match pool.run::<i32, _>(-1).wait() {
//!     Ok(n) => println!("{n}"),
//!     Err(Error::Panicked { message, .. }) => assert!(message.contains("negative")),
//!     Err(other) => return Err(other),
//! }
//! # Ok::<(), tinypool::Error>(())
//! ```
//!
//! [`Error::kind`] gives an error's [`ErrorKind`], its variant without fields: what to
//! count, match in bulk, or keep.
//!
//! ## In production
//!
//! - **Close, don't lose work**: [`Pool::close`] refuses new tasks ([`Error::Closed`]), runs
//!   those it holds, then stops the workers; [`Pool::idle`] resolves once nothing is queued
//!   or running.
//! - **Timeouts**: [`RunOptions::timeout`] or [`Builder::task_timeout`]: a task still queued or
//!   running at its deadline fails with [`Error::TimedOut`], and its worker is replaced (a
//!   thread retired, a child killed; an async export's future is dropped instead, its worker
//!   kept). [`Task::abort`] aborts one task without a controller.
//! - **Priorities**: [`RunOptions::priority`]: higher runs first, FIFO within a priority.
//! - **Lifecycle**: [`Builder::setup`] (an export each worker runs first),
//!   [`Builder::on_worker_start`], [`Builder::on_worker_exit`] (with the [`Exit`] that says
//!   why), and the `tracing` feature.
//!
//! ### Backpressure
//!
//! With a bounded queue ([`Builder::max_queue`]), a task that finds the queue full fails at
//! once with [`Error::QueueFull`]. A producer that would rather wait for room asks for a
//! place first: [`Pool::reserve`] resolves (`.wait()` or `.await`) to a [`Permit`] once the
//! queue has one, first come, first served, and the permit's task takes it.
//!
//! ```
//! use tinypool::{Exports, MaxQueue, Pool, Task};
//!
//! let pool = Pool::builder()
//!     .exports(Exports::new().export_default(|n: u64| n + 1))
//!     .max_queue(MaxQueue::Limit(2))
//!     .build()?;
//! let tasks: Vec<Task<u64>> = (0..100u64)
//!     .map(|n| pool.reserve().wait().map(|permit| permit.run(n)))
//!     .collect::<Result<_, _>>()?;
//! let sum: u64 = tasks.into_iter().map(Task::wait).sum::<Result<_, _>>()?;
//! assert_eq!(sum, (1..=100).sum::<u64>());
//! # Ok::<(), tinypool::Error>(())
//! ```
//!
//! ### Statistics
//!
//! [`Pool::stats`] gives a [`Stats`] snapshot: tasks succeeded and failed (by [`ErrorKind`]),
//! and each worker's tasks; with [`Builder::record_timing`], also each worker's busy time, the
//! pool's utilization and run- and wait-time [`Summary`]s (count, min, mean, p50, p90, p99,
//! max), as Piscina's histograms.
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `json` | [`Serialization::Json`], for serde types postcard cannot carry (untagged enums, `#[serde(flatten)]`) |
//! | `tokio` | async exports ([`Exports::export_async`]) run on a current-thread [tokio](https://docs.rs/tokio) runtime per worker, with I/O and time enabled, so `tokio::time` and `tokio::net` work inside them (without it, a small executor of the crate's own polls them) |
//! | `tracing` | [`tracing`](https://docs.rs/tracing) spans and events: a `DEBUG` span `task` per task (fields `export`, `worker`, `wait_us`, `run_us`), `DEBUG` events when a worker starts or exits (with its [`Exit`]), a `WARN` event when one dies, and one when a [fork server](Builder::fork_server) cannot serve (field `reason`); all with the target `tinypool` |
//!
//! ## Platforms
//!
//! | | Linux | macOS | Windows |
//! |---|---|---|---|
//! | threads | ✓, tested in CI | ✓, built and linted in CI | ✓, tested in CI under Wine (the behaviour suite) |
//! | child processes | ✓, tested in CI (frames in shared memory) | ✓ (frames over the socket), built and linted in CI | ✓ (frames over two anonymous pipes), tested in CI under Wine |
//!
//! On Windows each child runs in a Job Object of its own that ends it with the pool's process
//! and carries [`ResourceLimits`]; `abort` and `destroy` end a child with `TerminateProcess`,
//! and [`Error::WorkerExited`] has the exit code (an `NTSTATUS` for a crash) and no signal.

#![warn(missing_docs)]
// The Testing section shows test files as users write them, `#[test]` and all; each example's
// hidden `main` runs the same body, since rustdoc does not run the tests of an example.
#![allow(clippy::test_attr_in_doctest)]

mod abort;
mod channel;
mod codec;
mod error;
mod exports;
mod hooks;
mod options;
mod panics;
mod pool;
#[cfg_attr(not(any(unix, windows)), allow(dead_code))] // Used by the child-process runtime.
mod protocol;
mod reserve;
mod runtime;
mod scheduler;
mod stats;
mod sync;
mod task;
mod trace;
#[cfg(any(unix, windows))]
mod transport;
mod wait;
pub mod worker;

pub use abort::{AbortController, AbortSignal};
pub use channel::{channel, Port, Recv};
pub use codec::Serialization;
pub use error::{Error, ErrorKind, TypeRole};
pub use exports::typed::Export;
pub use exports::wire::{Local, Serde, Wire};
pub use exports::Exports;
pub use hooks::{Exit, WorkerInfo};
pub use options::{Builder, ChildOutput, MaxQueue, ResourceLimits, RunOptions, Runtime};
pub use pool::{Close, Destroy, Idle, Pool, Recycle};
pub use reserve::{Permit, Reserve};
pub use stats::{Stats, Summary, WorkerStats};
pub use task::Task;
