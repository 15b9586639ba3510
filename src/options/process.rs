//! The options only the child-process runtime honours (a threads pool given one fails to
//! build with [`Error::InvalidOptions`](crate::Error::InvalidOptions)).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::{Builder, ChildOutput};
use crate::codec::Serialization;

impl Builder {
    /// Child processes: the worker executable (default: this program, re-executed); a name
    /// without a `/` is looked up in `PATH`. Its `main` must call
    /// [`worker::serve_if_worker`](crate::worker::serve_if_worker) first (a child that exits
    /// without the handshake fails its tasks with
    /// [`Error::WorkerStartFailed`](crate::Error::WorkerStartFailed) saying so).
    /// [`build`](Self::build) refuses a path it cannot find with
    /// [`Error::InvalidOptions`](crate::Error::InvalidOptions), as the system would look it up:
    /// on Unix a name without a `/` is searched in `PATH`, and the file must be executable; on
    /// Windows a bare name (no directory) is searched where `CreateProcessW` searches (this
    /// executable's directory, the current one, the system directories, then `PATH`), with
    /// `.exe` added when it has no extension, and the file must exist.
    ///
    /// The worker, a small program of its own:
    ///
    /// ```no_run
    /// // thumbnailer/src/main.rs
    /// use std::process::ExitCode;
    ///
    /// fn main() -> ExitCode {
    ///     let exports = tinypool::Exports::new().export_default(|image: Vec<u8>| image.len() / 4);
    ///     tinypool::worker::serve_if_worker(exports); // Serves, then exits.
    ///     eprintln!("thumbnailer: only a tinypool pool runs this program");
    ///     ExitCode::from(2)
    /// }
    /// ```
    ///
    /// The application, which starts it rather than re-execute its whole self:
    ///
    /// ```no_run
    /// use tinypool::{Pool, Runtime};
    ///
    /// let worker = std::env::current_exe().expect("a path").with_file_name("thumbnailer");
    /// let pool = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .filename(worker)
    ///     .build()?;
    /// let size = pool.run::<usize, _>(vec![0u8; 1024]).wait()?;
    /// assert_eq!(size, 256);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    ///
    /// In a package's tests, a worker binary of the package is at hand through the variable
    /// Cargo sets for integration tests, `CARGO_BIN_EXE_<name>`:
    ///
    /// ```no_run
    /// use tinypool::{Pool, Runtime};
    ///
    /// # fn main() -> Result<(), tinypool::Error> {
    /// # macro_rules! env { ($name:literal) => { "target/debug/my-worker" } }
    /// // In tests/adding.rs, for a `[[bin]]` named `my-worker` whose `main` serves first:
    /// let pool = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .filename(env!("CARGO_BIN_EXE_my-worker"))
    ///     .build()?;
    /// assert_eq!(pool.run::<i32, _>((4, 6)).wait()?, 10);
    /// # Ok(())
    /// # }
    /// ```
    pub fn filename(mut self, path: impl Into<PathBuf>) -> Self {
        self.filename = Some(path.into());
        self
    }

    /// Child processes: the arguments each child is started with (default: none). One with a
    /// NUL byte is refused by `build()` ([`Error::InvalidOptions`](crate::Error::InvalidOptions)).
    ///
    /// ```
    /// use tinypool::{Pool, Runtime};
    ///
    /// // Each child starts as `<program> --log-level warn`; its exports can read that with
    /// // `std::env::args()`.
    /// let builder = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .argv(["--log-level", "warn"]);
    /// ```
    pub fn argv<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.argv = args.into_iter().map(Into::into).collect();
        self
    }

    /// Child processes: sets an environment variable for each child, as `Command::env` does.
    /// Children inherit this process's environment, then these are applied. `build()` refuses
    /// ([`Error::InvalidOptions`](crate::Error::InvalidOptions)) an empty key, a key with `=`,
    /// and a NUL byte in either.
    ///
    /// ```
    /// use tinypool::{Error, Exports, Pool, Runtime};
    ///
    /// let builder = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .env("RUST_LOG", "warn")
    ///     .env("OMP_NUM_THREADS", "1"); // One thread per child: the pool is the parallelism.
    ///
    /// // Worker threads share this process's environment: there is none of their own to set.
    /// let threads = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u32| n))
    ///     .env("RUST_LOG", "warn")
    ///     .build();
    /// assert!(matches!(threads, Err(Error::InvalidOptions { .. })));
    /// ```
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Child processes: where each child's standard output goes (default: this process's).
    ///
    /// ```
    /// use tinypool::{ChildOutput, Pool, Runtime};
    ///
    /// // This program's stdout carries its own protocol: workers print to stderr instead.
    /// let builder = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .stdout(ChildOutput::Stderr);
    /// ```
    pub fn stdout(mut self, output: ChildOutput) -> Self {
        self.stdout = output;
        self
    }

    /// Child processes: where each child's standard error goes (default: this process's).
    /// [`ChildOutput::Stderr`] is the same as [`ChildOutput::Inherit`] here.
    pub fn stderr(mut self, output: ChildOutput) -> Self {
        self.stderr = output;
        self
    }

    /// Child processes: how values cross to a child (default: [`Serialization::Postcard`]).
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use tinypool::{Pool, Runtime, Serialization};
    ///
    /// // Arguments of this type need a self-describing format: postcard cannot carry an
    /// // untagged enum, JSON (the `json` feature) can.
    /// #[derive(Serialize, Deserialize)]
    /// #[serde(untagged)]
    /// enum UserId {
    ///     Number(u64),
    ///     Name(String),
    /// }
    ///
    /// let builder = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .serialization(Serialization::Json);
    /// ```
    pub fn serialization(mut self, serialization: Serialization) -> Self {
        self.serialization = serialization;
        self
    }

    /// Child processes: how long a child may take to start and answer the handshake before
    /// its tasks fail with [`Error::WorkerStartFailed`](crate::Error::WorkerStartFailed) (default:
    /// 10 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Child processes: the largest message between the pool and a child, in bytes (default:
    /// 64 MiB). A bigger one fails its task with [`Error::Protocol`](crate::Error::Protocol); a
    /// `worker_data` too big
    /// for it makes [`build`](Builder::build) fail with
    /// [`Error::InvalidOptions`](crate::Error::InvalidOptions).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Child processes: a child whose resident memory exceeds `bytes` after a task is
    /// replaced (default: never).
    ///
    /// ```
    /// use tinypool::{Pool, Runtime};
    ///
    /// // The exports call a library that leaks: a child that grew past 256 MiB is replaced
    /// // once its task is done, instead of growing until the machine swaps.
    /// let builder = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .max_memory_limit_before_recycle(256 << 20);
    /// ```
    pub fn max_memory_limit_before_recycle(mut self, bytes: u64) -> Self {
        self.memory_recycle = Some(bytes);
        self
    }

    /// Child processes, Linux: start workers by forking them from a *fork server*, one child
    /// started with the pool's first worker, rather than by executing the worker program for
    /// each (default: `false`). A fork costs a fraction of a program's start (no `exec`, no
    /// dynamic loading, `exports()` not run again): what an
    /// [`isolate_workers`](Self::isolate_workers) pool pays for every task, and any pool each
    /// time it replaces a worker (a crash, a recycle, an idle timeout).
    ///
    /// Each worker is then a copy of a process that ran the worker program up to
    /// `serve_if_worker` (or [`test_workers!`](crate::test_workers)' constructor), `exports()`
    /// included, and nothing else; it runs `setup` and its tasks as a spawned worker would.
    /// What the program built before serving is copied into every worker, so build there
    /// only what may be copied: not a random generator (every worker would draw the same
    /// numbers), not a connection (every worker would share one socket), not a thread (a
    /// process of more than one thread cannot fork safely: its server refuses, and the pool
    /// spawns every worker instead, with a `tracing` warning `fork server unusable` that says
    /// why; so does a `main` that starts a runtime's threads before it serves, as
    /// `#[tokio::main]` does). Workers see the environment as it was when the
    /// server started. If the server cannot start, the pool spawns its workers; if it dies
    /// (killed from outside, say), the workers it forked die with it (their tasks fail with
    /// [`Error::WorkerExited`](crate::Error::WorkerExited)) and a new server starts with the
    /// next worker. The server goes when the pool is closed or destroyed.
    ///
    /// Elsewhere than on Linux workers are always spawned, and this changes nothing.
    ///
    /// ```
    /// use tinypool::{Pool, Runtime};
    ///
    /// // A fresh process for every task, forked rather than executed: a test runner's
    /// // isolation at a fraction of the cost.
    /// let builder = Pool::builder()
    ///     .runtime(Runtime::ChildProcess)
    ///     .isolate_workers(true)
    ///     .fork_server(true);
    /// ```
    pub fn fork_server(mut self, fork: bool) -> Self {
        self.fork_server = fork;
        self
    }
}
