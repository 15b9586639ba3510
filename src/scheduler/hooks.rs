//! The user's worker hooks, [`Builder::on_worker_start`](crate::Builder::on_worker_start) and
//! [`Builder::on_worker_exit`](crate::Builder::on_worker_exit), as the scheduler calls them:
//! on the worker's own thread, outside the state lock, start once the worker has started (its
//! setup done, its pid known), exit once it has stopped (its teardown run, its child reaped).
//! A worker whose start failed gets neither, so every start is followed by exactly one exit.
//!
//! A hook that panics is caught: the worker and the pool go on as if it had returned, and the
//! panic is reported to `on_error` as [`Error::Panicked`](crate::Error::Panicked), its message prefixed with the
//! hook's name.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::hooks::Exit;
use crate::hooks::{WorkerHooks, WorkerInfo};
use crate::panics;
use crate::runtime::Reporter;

impl WorkerHooks {
    /// Whether the scheduler needs the reason a worker left (a hook, or the trace, reads it).
    pub(super) fn wants_exit(&self) -> bool {
        self.exit.is_some() || cfg!(feature = "tracing")
    }

    /// Calls the start hook, if any.
    pub(super) fn started(&self, info: &WorkerInfo, reporter: &Reporter) {
        if let Some(hook) = &self.start {
            guarded("on_worker_start", reporter, || hook(info));
        }
    }

    /// Calls the exit hook, if any.
    pub(super) fn exited(&self, info: &WorkerInfo, exit: &Exit, reporter: &Reporter) {
        if let Some(hook) = &self.exit {
            guarded("on_worker_exit", reporter, || hook(info, exit));
        }
    }
}

/// Runs a user's hook, reporting a panic of it to `on_error` instead of unwinding the worker.
fn guarded(name: &str, reporter: &Reporter, hook: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(hook)) {
        let error = panics::caught(&*payload, |message| format!("{name}: {message}"));
        // A panic of the payload's own drop would unwind the worker after all.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
        reporter.report(error);
    }
}
