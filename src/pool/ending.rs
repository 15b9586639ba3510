//! What the pool's waiting operations return: [`Destroy`], [`Close`], [`Idle`] and
//! [`Recycle`], each a `Future` that can also be waited on by a blocking caller.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::scheduler::Scheduler;
use crate::task::{Slot, Task};
use crate::Error;

/// The end of [`Pool::destroy`](crate::Pool::destroy): wait on it, or await it.
#[must_use = "the pool is already destroyed; wait on this to know that its workers stopped"]
pub struct Destroy {
    scheduler: Arc<Scheduler>,
    deadline: Instant,
    /// Waits for the workers on a thread of its own when awaited, so no executor blocks.
    reaper: Option<Task<()>>,
}

impl Destroy {
    /// Waits for the workers of `scheduler`, which was just destroyed.
    pub(super) fn new(scheduler: Arc<Scheduler>) -> Self {
        Destroy {
            deadline: scheduler.stop_deadline(),
            scheduler,
            reaper: None,
        }
    }

    /// Blocks until every worker thread is joined, or `terminate_timeout` passes. In async
    /// code, `.await` it instead: it then waits on a thread of its own, and the executor's
    /// thread stays free.
    ///
    /// A function that never checks [`worker::aborted`](crate::worker::aborted) (blocked in
    /// a call that knows nothing of tinypool, say) cannot be stopped: `wait` gives up on it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tinypool::{Error, Exports, Pool};
    ///
    /// let (release, blocked) = tinypool::channel::<()>();
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(move |()| {
    ///         blocked.send(()).unwrap(); // It started...
    ///         let _ = blocked.recv(); // ...and blocks until `release` says.
    ///     }))
    ///     .max_threads(1)
    ///     .terminate_timeout(Duration::from_millis(100))
    ///     .build()?;
    /// let task = pool.run::<(), _>(());
    /// release.recv()?;
    /// let stopped = pool.destroy().wait(); // Returns after 100 ms.
    /// assert!(matches!(stopped, Err(Error::TerminateTimeout { worker: 1, .. })));
    /// assert_eq!(task.wait(), Err(Error::Terminated));
    /// release.send(())?; // The detached thread finishes on its own.
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn wait(self) -> Result<(), Error> {
        let own = self.scheduler.own_worker();
        self.scheduler.join_threads(self.deadline, own)
    }
}

impl Future for Destroy {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.reaper.is_none() {
            // Asked here, on the thread that awaits: the reaper runs no worker.
            let own = self.scheduler.own_worker();
            let (scheduler, deadline) = (self.scheduler.clone(), self.deadline);
            match reaper(&self.scheduler, "destroy", move || {
                scheduler.join_threads(deadline, own)
            }) {
                Some(reaper) => self.reaper = Some(reaper),
                // No thread to wait on: wait here, which is bounded by the deadline.
                None => return Poll::Ready(self.scheduler.join_threads(self.deadline, own)),
            }
        }
        let reaper = self.reaper.as_mut().expect("set above");
        Pin::new(reaper).poll(cx)
    }
}

impl fmt::Debug for Destroy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destroy")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// Waits for the workers on a thread of its own, so that no executor blocks: what a [`Destroy`]
/// or a [`Close`] does when first polled. `None` if no thread could be spawned.
fn reaper(
    scheduler: &Arc<Scheduler>,
    what: &str,
    wait: impl FnOnce() -> Result<(), Error> + Send + 'static,
) -> Option<Task<()>> {
    let slot = Arc::new(Slot::new());
    let done = slot.clone();
    let name = format!("{}-{what}", scheduler.thread_name());
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        done.complete(wait());
    });
    spawned.ok().map(|_| Task::new(slot))
}

/// The end of [`Pool::close`](crate::Pool::close): wait on it, or await it.
#[must_use = "the pool is already closing; wait on this to know that its tasks ran and its \
              workers stopped"]
pub struct Close {
    scheduler: Arc<Scheduler>,
    /// Waits for the workers on a thread of its own when awaited, so no executor blocks.
    reaper: Option<Task<()>>,
}

impl Close {
    /// Waits for the tasks and workers of `scheduler`, which was just closed.
    pub(super) fn new(scheduler: Arc<Scheduler>) -> Self {
        Close {
            scheduler,
            reaper: None,
        }
    }

    /// Blocks until the pool's tasks have run and every worker thread is joined. In async
    /// code, `.await` it instead: it then waits on a thread of its own, and the executor's
    /// thread stays free.
    ///
    /// ```
    /// use tinypool::{Error, Exports, Pool};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u32| n * 2))
    ///     .build()?;
    /// let task = pool.run::<u32, _>(21u32);
    /// let (first, second) = (pool.close(), pool.close()); // Twice is fine.
    /// first.wait()?;
    /// second.wait()?;
    /// assert_eq!(task.wait()?, 42);
    /// assert_eq!(pool.close().wait(), Ok(())); // At once, now.
    /// # Ok::<(), Error>(())
    /// ```
    pub fn wait(self) -> Result<(), Error> {
        self.scheduler.wait_closed(self.scheduler.own_worker())
    }
}

impl Future for Close {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.reaper.is_none() {
            // No thread for a close that is over already (after `destroy`, say).
            if let Some(result) = self.scheduler.closed_already() {
                return Poll::Ready(result);
            }
            // Asked here, on the thread that awaits: the reaper runs no worker.
            let own = self.scheduler.own_worker();
            let scheduler = self.scheduler.clone();
            match reaper(&self.scheduler, "close", move || scheduler.wait_closed(own)) {
                Some(reaper) => self.reaper = Some(reaper),
                // No thread to wait on: wait here.
                None => return Poll::Ready(self.scheduler.wait_closed(own)),
            }
        }
        let reaper = self.reaper.as_mut().expect("set above");
        Pin::new(reaper).poll(cx)
    }
}

impl fmt::Debug for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Close").finish_non_exhaustive()
    }
}

/// The end of [`Pool::idle`](crate::Pool::idle): wait on it, or await it.
#[must_use = "wait on this, or await it, to know that the pool is idle"]
pub struct Idle {
    task: Task<()>,
}

impl Idle {
    pub(super) fn new(task: Task<()>) -> Self {
        Idle { task }
    }

    /// Blocks until nothing is queued or running in the pool.
    ///
    /// ```
    /// use tinypool::{Exports, Pool};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u32| n))
    ///     .build()?;
    /// pool.idle().wait(); // At once: nothing was submitted.
    /// let task = pool.run::<u32, _>(7);
    /// pool.idle().wait();
    /// assert!(task.is_finished());
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn wait(self) {
        // Only ever completed with `Ok`.
        let _ = self.task.wait();
    }
}

impl Future for Idle {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.task).poll(cx).map(|_| ())
    }
}

impl fmt::Debug for Idle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idle").finish_non_exhaustive()
    }
}

/// The end of [`Pool::recycle_workers`](crate::Pool::recycle_workers): wait on it, or await
/// it.
///
/// It resolves once every worker that was idle at the call has stopped (its teardown run, its
/// child reaped, `on_worker_exit` called). The workers busy at the call are only marked: they
/// take no new task, and each leaves once the tasks it had taken are done, without this
/// waiting for them. Replacements start at once, as `min_threads` and the queue need them.
#[must_use = "the workers are already being recycled; wait on this to know that the idle ones \
              stopped"]
pub struct Recycle {
    task: Task<()>,
}

impl Recycle {
    pub(super) fn new(task: Task<()>) -> Self {
        Recycle { task }
    }

    /// Blocks until the workers idle at the call have stopped (see [`Recycle`]).
    ///
    /// ```
    /// use tinypool::{worker, Exports, Pool};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|()| worker::id()))
    ///     .min_threads(1)
    ///     .max_threads(1)
    ///     .build()?;
    /// assert_eq!(pool.run::<Option<usize>, _>(()).wait()?, Some(1));
    /// pool.recycle_workers().wait(); // The idle worker stopped; its replacement serves.
    /// assert_eq!(pool.threads(), 1);
    /// assert_eq!(pool.run::<Option<usize>, _>(()).wait()?, Some(1)); // Its id, free again.
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn wait(self) {
        // Only ever completed with `Ok`.
        let _ = self.task.wait();
    }
}

impl Future for Recycle {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.task).poll(cx).map(|_| ())
    }
}

impl fmt::Debug for Recycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recycle").finish_non_exhaustive()
    }
}
