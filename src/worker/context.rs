//! Who the current thread is when it is a worker: a thread-local set by the worker's loop
//! (or, in a child process, by the child's serving loop), read by the public functions of
//! [`worker`](crate::worker).

use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

use crate::codec::Serialization;
use crate::sync::AtomicBool;
use crate::task::Job;
use crate::Error;

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
    #[cfg(any(unix, windows))]
    /// (The child runtime's `Bridge`, type-erased: this context sits below the runtimes.)
    Remote(Arc<dyn Any + Send + Sync>),
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

pub(super) fn with<T>(f: impl FnOnce(&Context) -> T) -> Option<T> {
    CONTEXT.with(|cell| cell.borrow().as_ref().map(f))
}

/// The async task whose future the worker is polling: its abort is its own
/// ([`worker::aborted`](crate::worker::aborted)), not its worker's.
pub(crate) enum Polled {
    /// In a worker thread: the task itself, aborted once it resolved.
    Job(Arc<dyn Job>),
    /// In a child process: the task's flag, set when the pool's `ABORT` for it arrives.
    #[cfg(any(unix, windows))]
    Flag(Arc<AtomicBool>),
}

#[cfg(not(loom))]
thread_local! {
    static POLLED: RefCell<Option<Polled>> = const { RefCell::new(None) };
}
#[cfg(loom)]
loom::thread_local! {
    static POLLED: RefCell<Option<Polled>> = RefCell::new(None);
}

/// Says which async task this thread polls now (`None`: none).
pub(crate) fn set_polled(polled: Option<Polled>) {
    POLLED.with(|cell| *cell.borrow_mut() = polled);
}

/// Whether the async task being polled, if any, was aborted.
pub(super) fn polled_aborted() -> bool {
    POLLED.with(|cell| match &*cell.borrow() {
        None => false,
        Some(Polled::Job(job)) => job.ended(),
        #[cfg(any(unix, windows))]
        Some(Polled::Flag(flag)) => flag.load(crate::sync::Ordering::Acquire),
    })
}
