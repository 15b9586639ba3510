//! What code running inside a worker can ask about its worker and its task; and how a program
//! becomes a child-process worker: [`serve_if_worker`] first in `main`, or
//! [`test_workers!`](crate::test_workers) in a test binary, whose `main` is the harness's.
//!
//! ```
//! use tinypool::{worker, Exports, Pool};
//!
//! let pool = Pool::builder()
//!     .exports(Exports::new().export_default(|()| worker::id()))
//!     .max_threads(1)
//!     .build()?;
//! assert_eq!(pool.run::<Option<usize>, _>(()).wait()?, Some(1));
//! assert_eq!(worker::id(), None); // not in a worker
//! # Ok::<(), tinypool::Error>(())
//! ```

use std::any::type_name;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::Port;
use crate::exports::Exports;
use crate::sync::Ordering;
use crate::{Error, TypeRole};

pub(crate) mod context;
mod reexec;

use context::{with, Data, TaskPort};
pub(crate) use reexec::check_reexecutable;
use reexec::{record_serve_call, record_test_workers};

/// The worker's id: `Some(1..=max_threads)`, unique among the pool's live workers (the lowest
/// free id is reused); `None` outside a worker.
pub fn id() -> Option<usize> {
    with(|context| context.id)
}

/// Whether this code runs inside a pool's worker.
///
/// ```
/// use tinypool::{worker, Exports, Pool};
///
/// // Library code that spreads its work over the cores, except in a worker, where the pool
/// // already keeps them busy.
/// fn threads_to_use() -> usize {
///     if worker::is_worker() {
///         1
///     } else {
///         std::thread::available_parallelism().map_or(1, |n| n.get())
///     }
/// }
///
/// let pool = Pool::builder()
///     .exports(Exports::new().export_default(|()| threads_to_use()))
///     .build()?;
/// assert_eq!(pool.run::<usize, _>(()).wait()?, 1);
/// assert!(!worker::is_worker());
/// # Ok::<(), tinypool::Error>(())
/// ```
pub fn is_worker() -> bool {
    with(|_| ()).is_some()
}

/// The pool's `worker_data`: `Ok(None)` outside a worker or when the pool was given none, and
/// [`Error::TypeMismatch`] when it has another type than `D`.
///
/// ```
/// use tinypool::{worker, Exports, Pool};
///
/// let pool = Pool::builder()
///     .worker_data(1_000u64) // The most rows one task may return.
///     .exports(Exports::new().export_default(|rows: u64| -> Result<u64, String> {
///         let limit = worker::data::<u64>().map_err(|e| e.to_string())?;
///         Ok(rows.min(limit.unwrap_or(u64::MAX)))
///     }))
///     .build()?;
/// assert_eq!(pool.run::<Result<u64, String>, _>(5_000u64).wait()?, Ok(1_000));
/// assert_eq!(worker::data::<u64>()?, None); // Not in a worker.
/// # Ok::<(), tinypool::Error>(())
/// ```
pub fn data<D>() -> Result<Option<D>, Error>
where
    D: DeserializeOwned + Clone + 'static,
{
    with(|context| match &context.data {
        None => Ok(None),
        Some(Data::Local(data)) => match data.value.downcast_ref::<D>() {
            Some(value) => Ok(Some(value.clone())),
            None => Err(Error::type_mismatch(
                TypeRole::WorkerData,
                data.type_name,
                type_name::<D>(),
            )),
        },
        Some(Data::Encoded {
            type_name: name,
            bytes,
            codec,
        }) => {
            if name != type_name::<D>() {
                return Err(Error::type_mismatch(
                    TypeRole::WorkerData,
                    name,
                    type_name::<D>(),
                ));
            }
            codec.decode(bytes).map(Some)
        }
    })
    .unwrap_or(Ok(None))
}

/// The worker side of the running task's channel (see
/// [`RunOptions::channel`](crate::RunOptions::channel)): [`Error::NoChannel`] when the task was
/// given none (or outside a worker), [`Error::TypeMismatch`] when its messages are not `T`s.
///
/// ```
/// use tinypool::{worker, Error, Exports, Pool, RunOptions};
///
/// // Answers each line its caller sends, until the caller hangs up.
/// let pool = Pool::builder()
///     .exports(Exports::new().export_default(|()| match worker::port::<String>() {
///         Ok(port) => {
///             while let Ok(line) = port.recv() {
///                 let _ = port.send(line.to_uppercase());
///             }
///             true
///         }
///         Err(Error::NoChannel) => false, // Run without `RunOptions::channel`.
///         Err(other) => panic!("{other}"),
///     }))
///     .build()?;
/// let (caller, port) = tinypool::channel::<String>();
/// let task = pool.run_with::<bool, _>((), RunOptions::new().channel(port));
/// caller.send("hello".to_owned())?;
/// assert_eq!(caller.recv()?, "HELLO");
/// caller.close();
/// assert!(task.wait()?);
/// assert!(!pool.run::<bool, _>(()).wait()?);
/// # Ok::<(), tinypool::Error>(())
/// ```
pub fn port<T>() -> Result<Port<T>, Error>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    with(|context| match &context.task {
        TaskPort::None => Err(Error::NoChannel),
        TaskPort::Local(job) => {
            let port = job.port().ok_or(Error::NoChannel)?;
            port.as_any()
                .downcast_ref::<Port<T>>()
                .cloned()
                .ok_or_else(|| {
                    Error::type_mismatch(TypeRole::Channel, port.message_type(), type_name::<T>())
                })
        }
        #[cfg(any(unix, windows))]
        TaskPort::Remote(bridge) => bridge
            .downcast_ref::<crate::runtime::child::Bridge>()
            .ok_or(Error::NoChannel)?
            .port::<T>(),
    })
    .unwrap_or(Err(Error::NoChannel))
}

/// Serves tasks if this process was started as a child-process worker, and returns at once
/// otherwise. Call it first thing in `main` of every program that builds a
/// [`Runtime::ChildProcess`](crate::Runtime::ChildProcess) pool (the pool re-executes the
/// program) or that is a pool's `filename` worker executable:
///
/// ```no_run
/// use tinypool::{Exports, Pool, Runtime};
///
/// fn exports() -> Exports {
///     Exports::new().export_default(|(a, b): (i32, i32)| a + b)
/// }
///
/// fn main() -> Result<(), tinypool::Error> {
///     tinypool::worker::serve_if_worker(exports()); // In a worker: serves, then exits.
///     let pool = Pool::builder().runtime(Runtime::ChildProcess).build()?;
///     println!("{}", pool.run::<i32, _>((4, 6)).wait()?);
///     pool.destroy().wait()
/// }
/// ```
///
/// In a worker process it never returns: it exits with code 0 when the pool stops it or goes
/// away, and with code 2 and a message on stderr when the process was started with the
/// worker marker but not by a pool.
///
/// Only a call on the main thread counts: a pool that re-executes this program
/// ([`Builder::build`](crate::Builder::build) without `filename`) is refused when
/// `serve_if_worker` was only ever called on other threads, since a worker would first run
/// everything `main` does before that thread makes the call. Inside a `#[test]` that is the
/// whole test suite, in every worker: test binaries use [`test_workers!`](crate::test_workers)
/// instead (see the crate's Testing section).
pub fn serve_if_worker(exports: Exports) {
    // Recorded before serving: a task in this worker may build a pool of its own, which
    // re-executes this program in turn.
    record_serve_call();
    #[cfg(any(unix, windows))]
    if let Some(fd) = std::env::var_os(crate::protocol::WORKER_ENV) {
        // Before any thread exists; children of this worker's own pools must not see it.
        std::env::remove_var(crate::protocol::WORKER_ENV);
        crate::runtime::child::serve(exports, fd);
    }
    #[cfg(not(any(unix, windows)))]
    let _ = exports;
}

/// Makes every worker process of this test binary serve `exports` (a `fn() -> Exports`)
/// before the test harness starts, so that child-process pools work in plain `#[test]`
/// functions. Write it once, at the top level of the test file:
///
/// ```
/// use tinypool::{Exports, Pool, Runtime};
///
/// fn exports() -> Exports {
///     Exports::new().export_default(|(a, b): (i32, i32)| a + b)
/// }
///
/// tinypool::test_workers!(exports);
///
/// // Any test of the file (here, this example's `main`) can now use child processes:
/// # fn main() -> Result<(), tinypool::Error> {
/// let pool = Pool::builder().runtime(Runtime::ChildProcess).build()?;
/// assert_eq!(pool.run::<i32, _>((4, 6)).wait()?, 10);
/// pool.destroy().wait()
/// # }
/// ```
///
/// A child-process pool without `filename` re-executes the running program, and a test
/// binary's `main` is the harness's (libtest's), which would run the test suite again in every
/// worker. This macro adds a *static constructor* to the binary: a function the loader runs
/// before any `main` (an entry of `.init_array` on ELF systems such as Linux, of
/// `__DATA,__mod_init_func` on Apple's, of `.CRT$XCU` on Windows). In a worker process (the
/// pool's marker is in its environment) it calls `exports()` and serves the pool right there,
/// then exits: the harness never starts in a child, so no test runs twice, the child prints
/// nothing of its own and its arguments are the pool's [`argv`](crate::Builder::argv). In any
/// other process it only records that this binary's workers are taken care of, which lets
/// [`Builder::build`](crate::Builder::build) accept such a pool. So the harness keeps all it
/// does: name filters, `--exact`, tests in parallel, output capture, `--list`, and
/// `cargo nextest`, which runs each test in a process of its own.
///
/// What the workers run before `main` may not rely on:
///
/// - Anything `main` or a test sets up: `exports()` is the workers' only set-up (a logger, a
///   panic hook, an environment variable to read), and it runs once in each worker.
/// - [`std::env::args`] on systems other than Linux with glibc and Apple's, where std only
///   learns the arguments when its `main` starts (there it is empty).
/// - std's stack-overflow report: a function that overflows its stack dies of `SIGSEGV`
///   without the "has overflowed its stack" message (the task fails with
///   [`Error::WorkerExited`] all the same). Nor is the thread named `main` (a panic message
///   says `<unnamed>`).
///
/// (std's runtime also ignores `SIGPIPE` before `main`; the worker does that itself, so that
/// writing to a closed pipe is an error, as in any Rust program, not death.)
///
/// A child's own output goes to the test process's stdout and stderr as it is: libtest
/// captures only what the test's thread prints (nextest captures whole processes, children
/// included).
///
/// Write it in the test binary itself (the test file or one of its modules), not in a library
/// it links: the linker may leave out a library's object that nothing refers to, constructor
/// and all. Once per binary: a second one makes `build()` fail, since a worker would serve
/// whichever constructor ran first. A program with a `main` of its own can call
/// [`serve_if_worker`] there instead (a `harness = false` test, say); with a separate worker
/// executable (`filename(env!("CARGO_BIN_EXE_<name>"))`), neither is needed.
#[macro_export]
macro_rules! test_workers {
    ($exports:expr $(,)?) => {
        const _: () = {
            extern "C" fn tinypool_test_workers() {
                $crate::worker::__test_workers($exports);
            }
            // The loader calls every function pointer in these sections before `main`.
            // SAFETY: what is placed there is a function pointer of the type the loader
            // calls (no arguments read, nothing returned), to a function that does not
            // unwind (a panic of `exports()` ends the worker) and needs nothing that `main`
            // sets up (see the macro's docs).
            #[used]
            #[cfg_attr(
                all(unix, not(any(target_vendor = "apple", target_os = "aix"))),
                unsafe(link_section = ".init_array")
            )]
            #[cfg_attr(
                target_vendor = "apple",
                unsafe(link_section = "__DATA,__mod_init_func")
            )]
            #[cfg_attr(windows, unsafe(link_section = ".CRT$XCU"))]
            static TINYPOOL_TEST_WORKERS: extern "C" fn() = tinypool_test_workers;
        };
    };
}

/// What [`test_workers!`](crate::test_workers) runs before `main`. Not an API of its own:
/// only the macro calls it.
#[doc(hidden)]
pub fn __test_workers(exports: fn() -> Exports) {
    // Recorded before serving, as in `serve_if_worker`.
    record_test_workers();
    #[cfg(any(unix, windows))]
    if let Some(fd) = std::env::var_os(crate::protocol::WORKER_ENV) {
        // Before main: no other thread exists.
        std::env::remove_var(crate::protocol::WORKER_ENV);
        crate::runtime::child::serve_before_main(exports, fd);
    }
    #[cfg(not(any(unix, windows)))]
    let _ = exports;
}

/// Whether the running task has been aborted or the pool destroyed: a long function can poll
/// this and return early, since a thread cannot be stopped from outside. Always false outside
/// a worker. Inside an async export's future it is the task's own: true once that task was
/// aborted (its future is then dropped at its next poll), while its worker's other tasks go
/// on.
///
/// ```
/// use tinypool::{worker, Error, Exports, Pool, RunOptions};
///
/// // A long computation that stops as soon as nobody wants its result.
/// let pool = Pool::builder()
///     .exports(Exports::new().export_default(|()| {
///         let started = worker::port::<()>().expect("run with a channel");
///         started.send(()).expect("the caller listens");
///         let mut steps = 0u64;
///         while !worker::aborted() {
///             steps += 1; // One step of the work.
///         }
///         steps
///     }))
///     .build()?;
/// let (started, port) = tinypool::channel::<()>();
/// let task = pool.run_with::<u64, _>((), RunOptions::new().channel(port));
/// started.recv()?;
/// // The function returns, so its worker stops well within `terminate_timeout`: no
/// // `Error::TerminateTimeout`.
/// pool.destroy().wait()?;
/// assert_eq!(task.wait(), Err(Error::Terminated));
/// assert!(!worker::aborted()); // Not in a worker.
/// # Ok::<(), tinypool::Error>(())
/// ```
pub fn aborted() -> bool {
    with(|context| context.aborted.load(Ordering::Acquire)).unwrap_or(false)
        || context::polled_aborted()
}
