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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::Port;
use crate::task::Job;
use crate::Error;

/// The pool's `worker_data`, shared by its workers.
#[derive(Clone)]
pub(crate) struct WorkerData {
    pub(crate) value: Arc<dyn Any + Send + Sync>,
    pub(crate) type_name: &'static str,
}

/// Who this thread is, when it is a worker.
pub(crate) struct Context {
    pub(crate) id: usize,
    pub(crate) data: Option<WorkerData>,
    pub(crate) aborted: Arc<AtomicBool>,
    /// The running task, when it carries a channel.
    pub(crate) job: Option<Arc<dyn Job>>,
}

thread_local! {
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Makes the current thread a worker (or, with `None`, a plain thread again).
pub(crate) fn set_context(context: Option<Context>) {
    CONTEXT.with(|cell| *cell.borrow_mut() = context);
}

/// Tells `port()` which task is running.
pub(crate) fn set_job(job: Option<Arc<dyn Job>>) {
    CONTEXT.with(|cell| {
        if let Some(context) = cell.borrow_mut().as_mut() {
            context.job = job;
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
pub fn is_worker() -> bool {
    with(|_| ()).is_some()
}

/// The pool's `worker_data`: `Ok(None)` outside a worker or when the pool was given none, and
/// [`Error::TypeMismatch`] when it has another type than `D`.
pub fn data<D>() -> Result<Option<D>, Error>
where
    D: DeserializeOwned + Clone + 'static,
{
    let Some(Some(data)) = with(|context| context.data.clone()) else {
        return Ok(None);
    };
    match data.value.downcast_ref::<D>() {
        Some(value) => Ok(Some(value.clone())),
        None => Err(Error::type_mismatch(data.type_name, type_name::<D>())),
    }
}

/// The worker side of the running task's channel (see
/// [`RunOptions::channel`](crate::RunOptions::channel)): [`Error::NoChannel`] when the task was
/// given none (or outside a worker), [`Error::TypeMismatch`] when its messages are not `T`s.
pub fn port<T>() -> Result<Port<T>, Error>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    with(|context| {
        let port = context.job.as_ref().and_then(|job| job.port());
        let port = port.ok_or(Error::NoChannel)?;
        port.as_any()
            .downcast_ref::<Port<T>>()
            .cloned()
            .ok_or_else(|| Error::type_mismatch(port.message_type(), type_name::<T>()))
    })
    .unwrap_or(Err(Error::NoChannel))
}

/// Whether the running task has been aborted or the pool destroyed: a long function can poll
/// this and return early, since a thread cannot be stopped from outside. Always false outside
/// a worker.
pub fn aborted() -> bool {
    with(|context| context.aborted.load(Ordering::Acquire)).unwrap_or(false)
}
