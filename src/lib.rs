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

#![warn(missing_docs)]

mod abort;
mod channel;
mod codec;
mod error;
mod exports;
mod intake;
mod options;
mod panics;
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
pub use error::{Error, TypeRole};
pub use exports::Exports;
pub use options::{Builder, MaxQueue, ResourceLimits, RunOptions, Runtime};
pub use pool::{Destroy, Pool};
pub use scheduler::WorkerInfo;
pub use task::Task;
