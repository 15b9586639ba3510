//! A task whose export is async, as its worker runs it: a future that polls the function's
//! future and stages its result in the cell, or ends early, dropping the function's future,
//! once the task resolved from outside (aborted, timed out, terminated, cancelled).

use std::any::type_name;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::TaskCell;
use crate::exports::{Exports, LocalFuture};
use crate::Error;

impl<A, R, W> TaskCell<A, R, W>
where
    A: Send + 'static,
    R: Send + 'static,
    W: 'static,
{
    /// [`Spawn::start_async`].
    fn spawn(self: Arc<Self>, exports: &Exports, waker: &Waker) -> Option<LocalFuture<()>> {
        let name = self.export_name();
        let export = exports.get(name)?;
        if !export.is_async() {
            return None;
        }
        // Resolved on its way, or aborted: `run` says so.
        if !matches!(self.may_start(), Some(Ok(()))) {
            return None;
        }
        let mut arg = Some(self.take_arg()?.ok()?);
        let mut out: Option<LocalFuture<Result<R, Error>>> = None;
        let called =
            export.call_async(name, &mut arg, type_name::<A>(), &mut out, type_name::<R>());
        let future = match (called, out) {
            (Ok(()), Some(future)) => future,
            (Err(error), _) => {
                self.slot.stage(Err(error));
                return Some(Box::pin(std::future::ready(())));
            }
            (Ok(()), None) => unreachable!("a successful start fills the future"),
        };
        self.slot.mark_async(Some(waker));
        Some(Box::pin(Spawned {
            cell: self,
            future: Some(future),
        }))
    }
}

/// A task as a worker thread sees it when its export may be async.
pub(crate) trait Spawn {
    /// Starts the task if its export is async: its future, which the worker polls with
    /// `waker` and which stages the result; the task is then marked as async
    /// ([`runs_async`](Spawn::runs_async)): resolved from outside, it wakes `waker`, and its
    /// future, polled, drops itself. `None` if the export is not async, or the task cannot
    /// start (then [`Job::run`](super::Job::run) says why).
    fn start_async(self: Arc<Self>, exports: &Exports, waker: &Waker) -> Option<LocalFuture<()>>;
    /// Whether it was started as an async task and has not resolved: an abort only drops
    /// its future, and its worker goes on.
    fn runs_async(&self) -> bool;
    /// Marks it as an async task that a child process runs: resolved from outside, it leaves
    /// its worker be (the scheduler rings the worker's doorbell, and the driver tells the
    /// child to drop the task's future).
    fn runs_in_child(&self);
    /// Whether it resolved (an async task's [`worker::aborted`](crate::worker::aborted)).
    fn ended(&self) -> bool;
    /// Whether its result is staged or it resolved: an async task's future is done.
    fn settled(&self) -> bool;
}

impl<A, R, W> Spawn for TaskCell<A, R, W>
where
    A: Send + 'static,
    R: Send + 'static,
    W: 'static,
{
    fn start_async(self: Arc<Self>, exports: &Exports, waker: &Waker) -> Option<LocalFuture<()>> {
        self.spawn(exports, waker)
    }

    fn runs_async(&self) -> bool {
        self.slot.runs_async()
    }

    fn runs_in_child(&self) {
        self.slot.mark_async(None);
    }

    fn ended(&self) -> bool {
        self.slot.is_ready()
    }

    fn settled(&self) -> bool {
        self.slot.is_settled()
    }
}

/// An async task on its worker.
struct Spawned<A, R, W> {
    cell: Arc<TaskCell<A, R, W>>,
    /// The function's future; `None` once it ended or was dropped.
    future: Option<LocalFuture<Result<R, Error>>>,
}

impl<A, R, W> Future for Spawned<A, R, W> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(future) = this.future.as_mut() else {
            return Poll::Ready(());
        };
        if this.cell.slot.is_resolved() {
            // Resolved from outside: the function's future is dropped here, on its worker,
            // and a drop that panics does not take the worker with it.
            let future = this.future.take();
            let _ = catch_unwind(AssertUnwindSafe(move || drop(future)));
            return Poll::Ready(());
        }
        match future.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                this.future = None;
                this.cell.slot.stage(result);
                Poll::Ready(())
            }
        }
    }
}
