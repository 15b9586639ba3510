//! The threads runtime: each worker is a thread of this process that calls the exported
//! functions itself. Arguments and results move; nothing is serialized.

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use super::Runtime;
use crate::scheduler::{Shared, WorkerStart};
use crate::worker::{self, Context};
use crate::Error;

pub(crate) struct Threads;

impl Runtime for Threads {
    fn spawn(&self, shared: Arc<Shared>, start: WorkerStart) -> io::Result<JoinHandle<()>> {
        let options = &shared.options;
        let mut builder =
            thread::Builder::new().name(format!("{}-{}", options.thread_name, start.id));
        if let Some(size) = options.stack_size {
            builder = builder.stack_size(size);
        }
        builder.spawn(move || run_worker(&shared, &start))
    }
}

fn run_worker(shared: &Arc<Shared>, start: &WorkerStart) {
    /// Marks the thread finished even if the loop panics, so that `destroy` never waits for
    /// a thread that is gone.
    struct Finished<'a>(&'a Arc<Shared>, u64);
    impl Drop for Finished<'_> {
        fn drop(&mut self) {
            worker::set_context(None);
            self.0.thread_finished(self.1);
        }
    }
    let _finished = Finished(shared, start.serial);

    let options = &shared.options;
    worker::set_context(Some(Context {
        id: start.id,
        data: options.worker_data.clone(),
        aborted: start.aborted.clone(),
        job: None,
    }));
    let exports = options.exports.clone();
    shared.worker_loop(start, &mut |job| {
        if job.port().is_some() {
            worker::set_job(Some(job.clone()));
            job.run(&exports);
            worker::set_job(None);
        } else {
            job.run(&exports);
        }
    });
    if let Some(name) = &options.teardown {
        let teardown = exports.get(name).map(|export| export.call_teardown());
        let result = teardown.unwrap_or_else(|| Err(Error::NoSuchFunction { name: name.clone() }));
        if let Err(error) = result {
            shared.report(error);
        }
    }
}
