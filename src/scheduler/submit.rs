//! Submitting: how a task comes in ([`Scheduler::submit`]) and where it goes
//! ([`Scheduler::place`]): to an idle worker, a new one, the least loaded one with room, the
//! queue, or the intake of a saturated pool; or it is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::state::JobRef;
use super::Scheduler;
use crate::abort::AbortSignal;
use crate::exports::wire::{Carry, Serde};
use crate::options::RunOptions;
use crate::task::{Job, Task, TaskCell};
use crate::wait::deadline_after;
use crate::Error;

impl Scheduler {
    /// Runs the export `options` name (`None`: the default) with `arg`: the one way a task
    /// comes in. With a signal or a timeout (its own, else the pool's), firing the signal or
    /// reaching the deadline aborts the task wherever it is, and the task runs alone unless
    /// its export is async.
    pub(crate) fn submit<A, R>(self: &Arc<Self>, arg: A, options: RunOptions) -> Task<R>
    where
        A: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        self.submit_on::<Serde, A, R>(arg, options)
    }

    /// [`submit`](Self::submit) with the task's wire chosen (see [`crate::exports::wire`]):
    /// a [`Local`](crate::exports::wire::Local) task's values only move. The wire changes
    /// nothing here; the pool sends a local task only to a threads runtime.
    pub(crate) fn submit_on<W, A, R>(self: &Arc<Self>, arg: A, options: RunOptions) -> Task<R>
    where
        W: Carry<A, R>,
        A: Send + 'static,
        R: Send + 'static,
    {
        self.submit_reserved::<W, A, R>(arg, options, false)
    }

    /// [`submit_on`](Self::submit_on), into a place a permit holds if `reserved` (see
    /// [`permits`](super::permits)): the task takes that place, and is never refused for room.
    pub(crate) fn submit_reserved<W, A, R>(
        self: &Arc<Self>,
        arg: A,
        options: RunOptions,
        reserved: bool,
    ) -> Task<R>
    where
        W: Carry<A, R>,
        A: Send + 'static,
        R: Send + 'static,
    {
        let RunOptions {
            name,
            signal,
            port,
            priority,
            timeout,
        } = options;
        let timeout = timeout.or(self.options.task_timeout);
        // When it was submitted: only measured if something reads it (a clock read per task).
        let submitted =
            (self.options.record_timing || cfg!(feature = "tracing")).then(Instant::now);
        if signal.is_none() && timeout.is_none() {
            let cell = Arc::new(TaskCell::<A, R, W>::new(
                arg, name, port, false, priority, submitted,
            ));
            self.place(cell.clone(), reserved);
            return Task::of_pool(cell, &self.origin);
        }
        let cell = TaskCell::<A, R, W>::new(arg, name, port, true, priority, submitted);
        self.submit_abortable(cell, signal, timeout, reserved)
    }

    /// [`submit_reserved`](Self::submit_reserved) of a task with a signal or a timeout: out of
    /// line, so that the path of every other task stays short.
    #[inline(never)]
    fn submit_abortable<A, R, W>(
        self: &Arc<Self>,
        cell: TaskCell<A, R, W>,
        signal: Option<AbortSignal>,
        timeout: Option<Duration>,
        reserved: bool,
    ) -> Task<R>
    where
        W: Carry<A, R>,
        A: Send + 'static,
        R: Send + 'static,
    {
        let refused = match (&signal, timeout) {
            (Some(signal), _) if signal.aborted() => Some(Error::Aborted {
                reason: signal.reason(),
            }),
            // Its deadline is its submission: it times out before it could start.
            (_, Some(Duration::ZERO)) => Some(Error::TimedOut {
                after: Duration::ZERO,
            }),
            _ => None,
        };
        if let Some(error) = refused {
            if reserved {
                self.release_place();
            }
            return self.refuse(error);
        }
        // Counted from the submission; a timeout too long to count is a century away.
        let deadline = timeout.map(|timeout| (deadline_after(timeout), timeout));
        // Only an abortable task's export is looked up: an async one shares its worker, since
        // its abort drops its future and leaves the worker be.
        let async_export = !self.options.async_exports.is_empty()
            && self.options.async_exports.contains(Job::name(&cell));
        let cell = Arc::new(if async_export { cell.shared() } else { cell });
        let job: JobRef = cell.clone();
        self.place(job.clone(), reserved);
        // Registered after `place`, so that the listener finds the task wherever it went; a
        // signal that fired in between is handled the same way right here.
        if let Some(signal) = signal {
            match signal.add_listener(self.abort_listener(&job)) {
                Some(listener) => cell.set_abort_hook(signal, listener),
                None => (self.abort_listener(&job))(signal.reason()),
            }
        }
        // Likewise: a deadline that passed meanwhile fires as soon as the timer sees it (and a
        // task that resolved meanwhile leaves the timer as soon as its hook is set).
        if let Some((deadline, after)) = deadline {
            match self.timer.watch(&job, deadline, after, self.thread_name()) {
                Ok(Some(hook)) => cell.set_deadline(hook),
                Ok(None) => {}
                Err(error) => self.abort(&job, error),
            }
        }
        Task::of_pool(cell, &self.origin)
    }

    /// A task that fails with `error` before it is even queued (counted for `Pool::stats`).
    pub(crate) fn refuse<R: Send + 'static>(&self, error: Error) -> Task<R> {
        self.tally.count(Err(error.kind()));
        Task::ready(Err(error))
    }

    /// Hands `job` to a worker or queues it; fails it if the pool cannot take it. A
    /// `reserved` job takes the place its permit held, so it is never refused for room.
    pub(super) fn place(self: &Arc<Self>, job: JobRef, reserved: bool) {
        // A task with an abort signal needs the scheduler's choice of worker (it may run
        // alone), and one of another priority its place in the queue. (The intake only opens for an
        // unbounded queue, whose permits hold no place.)
        let job = if job.abortable() || job.priority() != 0 || reserved {
            job
        } else {
            match self.intake.offer(job) {
                Ok(()) => return,
                Err(job) => job,
            }
        };
        let options = &self.options;
        let mut state = self.lock();
        if reserved {
            state.permits.use_one();
        }
        if state.destroyed || state.closing {
            let error = if state.destroyed {
                Error::Terminated
            } else {
                Error::Closed
            };
            drop(state);
            job.fail(error, &self.tally);
            return;
        }
        // Behind what the intake holds, which was submitted earlier.
        self.take_intake(&mut state, false);
        let mut start = None;
        if state.queue.is_empty() {
            if let Some(worker) = state
                .workers
                .iter_mut()
                .find(|w| w.load() == 0 && !w.recycle)
            {
                worker.exclusive = worker.exclusive_for(&*job);
                worker.inbox.push_back(job);
                worker.bell.ring();
                // A permit's task that did not queue frees its place.
                let granted = self.grant(&mut state);
                drop(state);
                return granted.deliver();
            }
            if state.workers.len() < options.max_threads {
                let start = Self::reserve(&mut state, Some(job));
                let granted = self.grant(&mut state);
                drop(state);
                self.start(start);
                return granted.deliver();
            }
            // An exclusive task finds no room, but on a worker whose async exports include its
            // export (a child's): there it shares.
            let concurrency = self.concurrency;
            let roomiest = state
                .workers
                .iter_mut()
                .filter(|w| !w.exclusive && !w.recycle && w.load() < concurrency)
                .filter(|w| !w.exclusive_for(&*job))
                .min_by_key(|w| w.load());
            if let Some(worker) = roomiest {
                worker.inbox.push_back(job);
                worker.bell.ring();
                let granted = self.grant(&mut state);
                drop(state);
                return granted.deliver();
            }
        } else if state.workers.len() < options.max_threads {
            // Tasks wait although a worker could be added (the oldest is exclusive and every
            // worker busy): add one for the oldest, and queue this one behind the rest.
            let oldest = state.queue.pop_front();
            start = Some(Self::reserve(&mut state, oldest));
        }
        // The places permits hold count as queued; a permit's task takes its own.
        let rejected = match options.max_queue {
            Some(0) => Some(Error::NoQueue),
            Some(limit)
                if !reserved && state.queue.len() + state.permits.outstanding() >= limit =>
            {
                Some(Error::QueueFull)
            }
            _ => None,
        };
        let rejected = match rejected {
            None => {
                state.queue.push_back(job);
                self.open_intake_if_saturated(&mut state);
                None
            }
            Some(error) => Some((job, error)),
        };
        let granted = self.grant(&mut state);
        drop(state);
        if let Some(start) = start {
            self.start(start);
        }
        if let Some((job, error)) = rejected {
            job.fail(error, &self.tally);
        }
        granted.deliver();
    }
}
