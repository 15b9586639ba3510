//! The threads runtime: each worker is a thread of this process that calls the exported
//! functions itself. Arguments and results move; nothing is serialized.

use std::sync::Arc;

use super::{Flow, Launcher, RunningWorker, WorkerOptions, WorkerStart};
use crate::exports::Exports;
use crate::task::Job;
use crate::worker::context::{self, Context, Data, TaskPort, WorkerData};
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
        Ok(Box::new(ThreadWorker {
            pool: pool.clone(),
            exports: self.exports.clone(),
        }))
    }
}

struct ThreadWorker {
    pool: Arc<WorkerOptions>,
    exports: Arc<Exports>,
}

impl RunningWorker for ThreadWorker {
    fn finish(&mut self, job: &Arc<dyn Job>) -> Flow {
        if job.port().is_some() {
            context::set_task_port(TaskPort::Local(job.clone()));
            job.run(&self.exports);
            context::set_task_port(TaskPort::None);
        } else {
            job.run(&self.exports);
        }
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
