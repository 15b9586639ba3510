//! # tinypool
//!
//! A tiny, fast worker pool for Rust: a [`Pool`] of workers that run *exported functions* by
//! name, modelled on [Tinypool](https://github.com/tinylibs/tinypool), the Node.js pool that
//! Vitest runs on.
//!
//! - Results are [`Task`]s: a `Future` for any executor, and blockable with
//!   [`Task::wait`].
//! - Options mirror Tinypool's: min/max threads, idle timeout, max queue, concurrent tasks per
//!   worker, isolated workers, recycling, teardown, terminate timeout, worker data.
//! - Cancellation with an [`AbortController`], message [`channel`](fn@channel)s between the caller and a
//!   running task, and one error type, [`Error`], through which every failure arrives.
//!
//! ## Quick start
//!
//! ```
//! use tinypool::{Exports, Pool};
//!
//! let pool = Pool::builder()
//!     .exports(Exports::new().default(|(a, b): (i32, i32)| a + b))
//!     .build()?;
//!
//! let result: i32 = pool.run((4, 6)).wait()?;
//! assert_eq!(result, 10);
//!
//! // Tasks are futures too, for any executor:
//! # let block_on = |task: tinypool::Task<i32>| task.wait();
//! let task = pool.run::<i32, _>((1, 2));
//! assert_eq!(block_on(task)?, 3);
//!
//! pool.destroy().wait()?;
//! # Ok::<(), tinypool::Error>(())
//! ```
//!
//! Inside a worker, [`worker`] tells the function its worker's id, the pool's data, its
//! task's channel and whether it was aborted.
//!
//! ## Child processes
//!
//! A [`Runtime::ChildProcess`] pool runs each worker in a child process: by default this very
//! program, re-executed, which serves tasks instead of running as usual because its `main`
//! calls [`worker::serve_if_worker`] first; or a separate worker executable, given with
//! [`Builder::filename`], whose `main` does.
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
//!       Exports::new().default(|(a, b): (i32, i32)| a + b)
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

#![warn(missing_docs)]
// The Testing section shows test files as users write them, `#[test]` and all; each example's
// hidden `main` runs the same body, since rustdoc does not run the tests of an example.
#![allow(clippy::test_attr_in_doctest)]

mod abort;
mod channel;
mod codec;
mod error;
mod exports;
mod intake;
mod options;
mod pool;
mod protocol;
mod runtime;
mod scheduler;
mod sync;
mod task;
mod wait;
pub mod worker;

pub use abort::{AbortController, AbortSignal};
pub use channel::{channel, Port, Recv};
pub use codec::Serialization;
pub use error::Error;
pub use exports::Exports;
pub use options::{Builder, MaxQueue, ResourceLimits, RunOptions, Runtime};
pub use pool::{Destroy, Pool};
pub use scheduler::WorkerInfo;
pub use task::Task;
