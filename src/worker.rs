//! What code running inside a worker can ask about its worker and its task.
//!
//! ```
//! use tinypool::{worker, Exports, Pool};
//!
//! let pool = Pool::builder()
//!     .exports(Exports::new().default(|()| worker::id()))
//!     .max_threads(1)
//!     .build()?;
//! assert_eq!(pool.run::<Option<usize>, _>(()).wait()?, Some(1));
//! assert_eq!(worker::id(), None); // not in a worker
//! # Ok::<(), tinypool::Error>(())
//! ```

use std::any::{type_name, Any};
use std::cell::RefCell;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::Port;
use crate::codec::Serialization;
use crate::exports::Exports;
use crate::sync::{AtomicBool, Ordering};
use crate::task::Job;
use crate::{Error, TypeRole};

/// The pool's `worker_data`, shared by its workers.
#[derive(Clone)]
pub(crate) struct WorkerData {
    pub(crate) value: Arc<dyn Any + Send + Sync>,
    pub(crate) type_name: &'static str,
    /// Encodes the value for a child process.
    pub(crate) encode: Arc<dyn Fn(Serialization) -> Result<Vec<u8>, Error> + Send + Sync>,
}

/// The pool's `worker_data` as a worker holds it.
pub(crate) enum Data {
    /// In a worker thread: the value itself.
    Local(WorkerData),
    /// In a child process: as it crossed the socket.
    #[cfg_attr(not(unix), allow(dead_code))]
    Encoded {
        type_name: String,
        bytes: Vec<u8>,
        codec: Serialization,
    },
}

/// Where the running task's channel is.
pub(crate) enum TaskPort {
    None,
    /// In a worker thread: the task itself holds the port.
    Local(Arc<dyn Job>),
    /// In a child process: the bridge to the pool's side.
    #[cfg(unix)]
    Remote(Arc<crate::runtime::child::Bridge>),
}

/// Who this thread is, when it is a worker.
pub(crate) struct Context {
    pub(crate) id: usize,
    pub(crate) data: Option<Data>,
    pub(crate) aborted: Arc<AtomicBool>,
    pub(crate) task: TaskPort,
}

#[cfg(not(loom))]
thread_local! {
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}
// loom runs its threads as coroutines of one OS thread: a std thread-local would be shared.
#[cfg(loom)]
loom::thread_local! {
    static CONTEXT: RefCell<Option<Context>> = RefCell::new(None);
}

/// Makes the current thread a worker (or, with `None`, a plain thread again).
pub(crate) fn set_context(context: Option<Context>) {
    CONTEXT.with(|cell| *cell.borrow_mut() = context);
}

/// Tells `port()` where the running task's channel is.
pub(crate) fn set_task_port(task: TaskPort) {
    CONTEXT.with(|cell| {
        if let Some(context) = cell.borrow_mut().as_mut() {
            context.task = task;
        }
    });
}

fn with<T>(f: impl FnOnce(&Context) -> T) -> Option<T> {
    CONTEXT.with(|cell| cell.borrow().as_ref().map(f))
}

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
///     .exports(Exports::new().default(|()| threads_to_use()))
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
///     .exports(Exports::new().default(|rows: u64| -> Result<u64, String> {
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
///     .exports(Exports::new().default(|()| match worker::port::<String>() {
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
        #[cfg(unix)]
        TaskPort::Remote(bridge) => bridge.port::<T>(),
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
///     Exports::new().default(|(a, b): (i32, i32)| a + b)
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
pub fn serve_if_worker(exports: Exports) {
    #[cfg(unix)]
    if let Some(fd) = std::env::var_os(crate::protocol::WORKER_ENV) {
        // Before any thread exists; children of this worker's own pools must not see it.
        std::env::remove_var(crate::protocol::WORKER_ENV);
        crate::runtime::child::serve(exports, fd);
    }
    #[cfg(not(unix))]
    let _ = exports;
}

/// Whether the running task has been aborted or the pool destroyed: a long function can poll
/// this and return early, since a thread cannot be stopped from outside. Always false outside
/// a worker.
///
/// ```
/// use tinypool::{worker, Error, Exports, Pool, RunOptions};
///
/// // A long computation that stops as soon as nobody wants its result.
/// let pool = Pool::builder()
///     .exports(Exports::new().default(|()| {
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
}
