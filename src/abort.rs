//! Cancellation of a task by an abort signal.

use std::fmt;
use std::sync::Arc;

use crate::sync::{lock, AtomicBool, Mutex, Ordering};

type Listener = Box<dyn FnOnce(Option<String>) + Send>;

#[derive(Default)]
struct Listeners {
    reason: Option<String>,
    next_id: u64,
    listeners: Vec<(u64, Listener)>,
}

#[derive(Default)]
struct Shared {
    aborted: AtomicBool,
    state: Mutex<Listeners>,
}

/// Fires an [`AbortSignal`]: the Rust counterpart of the web's `AbortController`.
///
/// Give [`signal`](AbortController::signal) to a task with
/// [`RunOptions::signal`](crate::RunOptions::signal). Aborting a queued task removes it from
/// the queue; aborting a running task fails it at once with [`Error::Aborted`](crate::Error)
/// and retires its worker (threads cannot be killed: the function keeps running until it
/// returns, and can stop early by polling [`worker::aborted`](crate::worker::aborted); a
/// child process is killed). An async export's running task is the exception: its future is
/// dropped at its next poll, and its worker goes on with its other tasks.
///
/// ```
/// let controller = tinypool::AbortController::new();
/// let signal = controller.signal();
/// assert!(!signal.aborted());
/// controller.abort_with("user pressed cancel");
/// assert!(signal.aborted());
/// assert_eq!(signal.reason().as_deref(), Some("user pressed cancel"));
/// ```
#[derive(Default)]
pub struct AbortController {
    signal: AbortSignal,
}

impl AbortController {
    /// A controller whose signal has not fired.
    pub fn new() -> Self {
        AbortController::default()
    }

    /// The signal this controller fires. Clones of it all fire together.
    pub fn signal(&self) -> AbortSignal {
        self.signal.clone()
    }

    /// Fires the signal without a reason. Firing twice does nothing more.
    ///
    /// A task still waiting for a worker leaves the queue and never runs; other tasks go on:
    ///
    /// ```
    /// use tinypool::{worker, AbortController, Error, Exports, Pool, RunOptions};
    ///
    /// # // One worker; a task given a channel says it started, then waits for a go.
    /// # let pool = Pool::builder()
    /// #     .exports(Exports::new().export_default(|n: u32| {
    /// #         if let Ok(port) = worker::port::<()>() {
    /// #             port.send(()).unwrap();
    /// #             port.recv().unwrap();
    /// #         }
    /// #         n
    /// #     }))
    /// #     .max_threads(1)
    /// #     .build()?;
    /// let (busy, port) = tinypool::channel::<()>();
    /// let first = pool.run_with::<u32, _>(1u32, RunOptions::new().channel(port));
    /// busy.recv()?; // The only worker is busy: the next task waits in the queue.
    ///
    /// let controller = AbortController::new();
    /// let second = pool.run_with::<u32, _>(2u32, RunOptions::new().signal(controller.signal()));
    /// assert_eq!(pool.queue_size(), 1);
    /// controller.abort();
    /// assert_eq!(pool.queue_size(), 0);
    /// assert!(matches!(second.wait(), Err(Error::Aborted { reason: None, .. })));
    ///
    /// busy.send(())?;
    /// assert_eq!(first.wait()?, 1);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn abort(&self) {
        self.signal.fire(None);
    }

    /// Fires the signal with `reason`, which the aborted tasks' [`Error::Aborted`](crate::Error)
    /// carries.
    ///
    /// A running task fails at once, even while its function is still blocked:
    ///
    /// ```
    /// use tinypool::{worker, AbortController, Error, Exports, Pool, RunOptions};
    ///
    /// // Asks its caller before overwriting a file.
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|path: String| {
    ///         let dialog = worker::port::<String>().expect("run with a channel");
    ///         dialog.send(format!("overwrite {path}?")).expect("the caller listens");
    ///         dialog.recv().is_ok_and(|answer| answer == "yes")
    ///     }))
    ///     .build()?;
    /// let controller = AbortController::new();
    /// let (dialog, port) = tinypool::channel::<String>();
    /// let options = RunOptions::new().signal(controller.signal()).channel(port);
    /// let task = pool.run_with::<bool, _>("out.txt".to_owned(), options);
    /// assert_eq!(dialog.recv()?, "overwrite out.txt?");
    ///
    /// controller.abort_with("the user closed the dialog");
    /// match task.wait() {
    ///     Err(Error::Aborted { reason, .. }) => {
    ///         assert_eq!(reason.as_deref(), Some("the user closed the dialog"))
    ///     }
    ///     other => panic!("not aborted: {other:?}"),
    /// }
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn abort_with(&self, reason: impl Into<String>) {
        self.signal.fire(Some(reason.into()));
    }
}

impl fmt::Debug for AbortController {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortController")
            .field("signal", &self.signal)
            .finish()
    }
}

/// The receiving end of an [`AbortController`]; cheap to clone.
///
/// Besides handing it to tasks, code can ask it whether to start more work, and why not:
///
/// ```
/// use tinypool::{AbortController, Error, Exports, Pool, RunOptions};
///
/// # let pool = Pool::builder()
/// #     .exports(Exports::new().export_default(|n: u32| n))
/// #     .build()?;
/// let controller = AbortController::new();
/// let signal = controller.signal();
/// assert!(!signal.aborted());
/// assert_eq!(signal.reason(), None);
///
/// controller.abort_with("shutting down");
/// assert!(signal.aborted());
/// assert_eq!(signal.reason().as_deref(), Some("shutting down"));
///
/// // A task given a signal that already fired fails at once, without running.
/// let task = pool.run_with::<u32, _>(1u32, RunOptions::new().signal(signal.clone()));
/// match task.wait() {
///     Err(Error::Aborted { reason, .. }) => assert_eq!(reason, signal.reason()),
///     other => panic!("not aborted: {other:?}"),
/// }
/// # Ok::<(), tinypool::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct AbortSignal {
    shared: Arc<Shared>,
}

impl AbortSignal {
    /// Whether the signal has fired. See the example on [`AbortSignal`].
    pub fn aborted(&self) -> bool {
        self.shared.aborted.load(Ordering::Acquire)
    }

    /// The reason it fired with, if it fired with one (`None` before it fires, and after
    /// [`abort`](AbortController::abort)). See the example on [`AbortSignal`].
    pub fn reason(&self) -> Option<String> {
        lock(&self.shared.state).reason.clone()
    }

    fn fire(&self, reason: Option<String>) {
        let listeners = {
            let mut state = lock(&self.shared.state);
            if self.shared.aborted.swap(true, Ordering::AcqRel) {
                return;
            }
            state.reason = reason.clone();
            std::mem::take(&mut state.listeners)
        };
        // Outside the lock: a listener takes the pool's lock and may drop tasks.
        for (_, listener) in listeners {
            listener(reason.clone());
        }
    }

    /// Calls `listener` once when the signal fires. Returns its id, or `None` (and drops the
    /// listener) if the signal has already fired.
    pub(crate) fn add_listener(
        &self,
        listener: impl FnOnce(Option<String>) + Send + 'static,
    ) -> Option<u64> {
        let mut state = lock(&self.shared.state);
        if self.aborted() {
            return None;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.listeners.push((id, Box::new(listener)));
        Some(id)
    }

    pub(crate) fn remove_listener(&self, id: u64) {
        lock(&self.shared.state)
            .listeners
            .retain(|(listener, _)| *listener != id);
    }

    #[cfg(test)]
    pub(crate) fn listener_count(&self) -> usize {
        lock(&self.shared.state).listeners.len()
    }
}

impl fmt::Debug for AbortSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortSignal")
            .field("aborted", &self.aborted())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_listeners_are_gone_and_fired_ones_run_once() {
        let controller = AbortController::new();
        let signal = controller.signal();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let log = fired.clone();
        let kept = signal.add_listener(move |reason| lock(&log).push(reason));
        let removed = signal.add_listener(|_| panic!("a removed listener must not run"));
        assert_eq!(signal.listener_count(), 2);
        signal.remove_listener(removed.expect("not fired yet"));
        assert_eq!(signal.listener_count(), 1);
        controller.abort_with("stop");
        controller.abort();
        assert!(kept.is_some());
        assert_eq!(*lock(&fired), vec![Some("stop".to_owned())]);
        assert_eq!(signal.listener_count(), 0);
        assert!(
            signal.add_listener(|_| {}).is_none(),
            "a fired signal takes no listener"
        );
    }
}
