//! The threads runtime: each worker is a thread of this process that calls the exported
//! functions itself. Arguments and results move; nothing is serialized.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use super::executor::Executor;
use super::{Flow, Launcher, RunningWorker, WorkerOptions, WorkerStart};
use crate::exports::Exports;
use crate::exports::LocalFuture;
use crate::stats::Tally;
use crate::task::Job;
use crate::trace::{self, AsyncSpan};
use crate::wait::Doorbell;
use crate::worker::context::{self, Context, Data, Polled, TaskPort, WorkerData};
use crate::Error;

pub(crate) struct Threads {
    pub(crate) exports: Arc<Exports>,
    pub(crate) worker_data: Option<WorkerData>,
}

impl Launcher for Threads {
    fn start(
        &self,
        pool: &Arc<WorkerOptions>,
        me: &WorkerStart,
    ) -> Result<Box<dyn RunningWorker>, Error> {
        context::set_context(Some(Context {
            id: me.id,
            data: self.worker_data.clone().map(Data::Local),
            aborted: me.retired.clone(),
            task: TaskPort::None,
        }));
        // On the worker's thread, in its context: what it sets up there (a thread-local, a
        // connection) is its tasks'.
        if let Some(name) = &pool.setup {
            if let Err(message) = self.exports.run_setup(name) {
                context::set_context(None);
                return Err(Error::WorkerStartFailed { message });
            }
        }
        // Only exports with async functions hold more than one task at a time: a pool of
        // plain functions runs exactly as it would without them.
        let runs_async = self.exports.has_async();
        let depth = if runs_async {
            pool.concurrent_tasks_per_worker
        } else {
            1
        };
        Ok(Box::new(ThreadWorker {
            id: me.id,
            pool: pool.clone(),
            exports: self.exports.clone(),
            depth,
            runs_async,
            bell: me.bell.clone(),
            tally: me.tally.clone(),
            executor: None,
            ran_ahead: false,
        }))
    }
}

struct ThreadWorker {
    /// The worker's id (for its tasks' trace spans).
    id: usize,
    pool: Arc<WorkerOptions>,
    exports: Arc<Exports>,
    /// How many tasks it may hold: `concurrent_tasks_per_worker` if any export is async, else 1.
    depth: usize,
    /// Whether any export is async.
    runs_async: bool,
    /// The worker's doorbell: rung when the scheduler gives it more work, which stops a wait
    /// for an async task so that it starts the new ones ([`Flow::Pending`]).
    bell: Arc<Doorbell>,
    /// Where it counts the tasks it fails itself.
    tally: Arc<Tally>,
    /// Its async tasks; made for the first one.
    executor: Option<Executor>,
    /// Set when tasks behind the oldest ended: plain functions' tasks run to their end in
    /// `start`, or async tasks whose futures ended in the turn that ended the oldest's.
    ran_ahead: bool,
}

impl ThreadWorker {
    /// Runs a plain function's task to its end, its channel in the context.
    fn run_sync(&self, job: &Arc<dyn Job>) {
        if job.port().is_some() {
            context::set_task_port(TaskPort::Local(job.clone()));
            job.run(&self.exports);
            context::set_task_port(TaskPort::None);
        } else {
            job.run(&self.exports);
        }
    }
}

impl RunningWorker for ThreadWorker {
    fn depth(&self) -> usize {
        self.depth
    }

    fn sends_ahead(&self) -> bool {
        false
    }

    fn starts_ahead(&self) -> bool {
        self.runs_async
    }

    fn traces_tasks(&self) -> bool {
        // With async exports it holds several tasks at once: each gets a span of its own.
        self.runs_async
    }

    fn start(&mut self, jobs: &[Arc<dyn Job>]) {
        if !self.runs_async {
            return; // No async export: each task starts in `finish`.
        }
        for job in jobs {
            if !self
                .exports
                .get(job.name())
                .is_some_and(|export| export.is_async())
            {
                // A plain function runs now, in order with the others: behind an async task
                // still in flight, `finish` would only get to it once that one ended. Its
                // abort is its own, as an async task's.
                let span = trace::task(&**job, self.id);
                context::set_polled(Some(Polled::Job(job.clone())));
                self.run_sync(job);
                context::set_polled(None);
                span.done();
                self.ran_ahead = true;
                continue;
            }
            let executor = match &mut self.executor {
                Some(executor) => executor,
                None => match Executor::new() {
                    Ok(executor) => self.executor.insert(executor),
                    Err(message) => {
                        job.fail(Error::Protocol { message }, &self.tally);
                        continue;
                    }
                },
            };
            let (exports, id) = (&self.exports, self.id);
            executor.spawn(|waker| {
                let span = trace::task_async(&**job, id);
                // Making the future may run the export's code: in the task's span too.
                let future = {
                    let _entered = span.enter();
                    job.clone().start_async(exports, waker)?
                };
                Some(Box::pin(InTask {
                    job: job.clone(),
                    future,
                    span,
                }))
            });
        }
    }

    fn finish(&mut self, job: &Arc<dyn Job>) -> Flow {
        // (A pool without async exports asks nothing more: each question takes the task's lock.)
        if self.runs_async && job.settled() && !job.runs_async() {
            // Run in `start`, or resolved from outside. The futures woken meanwhile (its own,
            // or those of other tasks resolved from outside, which drop themselves when
            // polled) are polled now: this may be the worker's last look before it idles.
            if let Some(executor) = self.executor.as_mut() {
                executor.poll_woken(&self.bell);
            }
            return Flow::Continue;
        }
        if self.runs_async && job.runs_async() {
            if std::mem::take(&mut self.ran_ahead) && !job.settled() {
                // Tasks behind this one ended: published before it is waited for.
                return Flow::Pending;
            }
            let executor = self
                .executor
                .as_mut()
                .expect("an async task has its executor");
            // Its future stages the result (then `runs_async` still holds, `ended` not yet)
            // or ends once the task resolved from outside (which woke it).
            let finished = executor.run_until(|| job.settled(), &self.bell);
            self.ran_ahead |= executor.take_others_ended();
            return if finished {
                Flow::Continue
            } else {
                Flow::Pending
            };
        }
        self.run_sync(job);
        Flow::Continue
    }

    fn stop(self: Box<Self>) {
        if let Some(name) = &self.pool.teardown {
            let result = match self.exports.get(name) {
                Some(export) => export.call_teardown(name),
                None => Err(Error::NoSuchFunction { name: name.clone() }),
            };
            if let Err(error) = result {
                self.pool.reporter.report(error);
            }
        }
        context::set_context(None);
    }
}

/// An async task's future, polled in the task's context: `worker::port` and
/// `worker::aborted` are the task's own while it is polled, and its trace span is entered.
struct InTask {
    job: Arc<dyn Job>,
    future: LocalFuture<()>,
    /// Closed with the task, once its future ended (or was dropped).
    span: AsyncSpan,
}

impl Future for InTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        let port = this.job.port().is_some();
        if port {
            context::set_task_port(TaskPort::Local(this.job.clone()));
        }
        context::set_polled(Some(Polled::Job(this.job.clone())));
        let polled = {
            let _entered = this.span.enter();
            this.future.as_mut().poll(cx)
        };
        context::set_polled(None);
        if polled.is_ready() {
            this.span.done();
        }
        if port {
            context::set_task_port(TaskPort::None);
        }
        polled
    }
}
