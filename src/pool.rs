//! The pool handle users hold.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::options::{Builder, Options, RunOptions};
#[cfg(unix)]
use crate::runtime::process::Processes;
use crate::runtime::thread::Threads;
use crate::runtime::Runtime;
use crate::scheduler::{Shared, WorkerInfo};
use crate::task::{Job, Slot, Task, TaskCell};
use crate::Error;

/// A pool of workers that run exported functions by name.
///
/// Cheap to clone; every clone drives the same workers. Dropping the last clone destroys the
/// pool (waiting at most `terminate_timeout`); a pending [`Task`] does not keep it alive.
///
/// ```
/// use tinypool::{Exports, Pool, RunOptions};
///
/// let pool = Pool::builder()
///     .exports(
///         Exports::new()
///             .default(|(a, b): (i32, i32)| a + b)
///             .export("multiply", |(a, b): (i32, i32)| a * b),
///     )
///     .build()?;
/// assert_eq!(pool.run::<i32, _>((4, 6)).wait()?, 10);
/// let product = pool.run_with::<i32, _>((4, 6), RunOptions::new().name("multiply"));
/// assert_eq!(product.wait()?, 24);
/// pool.destroy().wait()?;
/// # Ok::<(), tinypool::Error>(())
/// ```
#[derive(Clone)]
pub struct Pool {
    handle: Arc<Handle>,
}

/// Destroys the pool when the last [`Pool`] clone goes.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shut_down();
        let deadline = self.shared.stop_deadline();
        // Nobody is left to hear about a stuck worker; it stays detached.
        let _ = self.shared.join_threads(deadline);
    }
}

impl Pool {
    /// A [`Builder`] with every option at its default.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn start(options: Options) -> Result<Pool, Error> {
        // Before any worker can panic: the hook notes where, for `Error::Panicked`.
        crate::panics::install();
        let runtime: Box<dyn Runtime> = match &options.process {
            #[cfg(unix)]
            Some(process) => Box::new(Processes {
                options: process.clone(),
            }),
            #[cfg(not(unix))]
            Some(_) => unreachable!("the builder refuses child processes off Unix"),
            None => Box::new(Threads),
        };
        let shared = Shared::new(options, runtime);
        Ok(Pool {
            handle: Arc::new(Handle { shared }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Runs the pool's default export (see [`Builder::name`]) with `arg`.
    ///
    /// Never panics and never blocks: every error, a full queue or a destroyed pool included,
    /// arrives through the returned [`Task`]. The argument and result types must be exactly
    /// the export's, else [`Error::TypeMismatch`].
    pub fn run<R, A>(&self, arg: A) -> Task<R>
    where
        A: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        self.run_with(arg, RunOptions::new())
    }

    /// Runs a task with options: another export, an abort signal, a channel.
    pub fn run_with<R, A>(&self, arg: A, options: RunOptions) -> Task<R>
    where
        A: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        let RunOptions { name, signal, port } = options;
        if let Some(signal) = &signal {
            if signal.aborted() {
                return Task::ready(Err(Error::Aborted {
                    reason: signal.reason(),
                }));
            }
        }
        let shared = self.shared();
        let name = name.or_else(|| shared.options.name.clone());
        let cell = Arc::new(TaskCell::new(arg, name, port, signal.is_some()));
        let job: Arc<dyn Job> = cell.clone();
        shared.submit(job.clone());
        if let Some(signal) = signal {
            // Registered after `submit`, so that the listener finds the task wherever it
            // went; a signal that fired in between is handled the same way right here.
            match signal.add_listener(shared.abort_listener(&job)) {
                Some(listener) => cell.set_abort_hook(signal, listener),
                None => (shared.abort_listener(&job))(signal.reason()),
            }
        }
        Task::new(cell)
    }

    /// Destroys the pool: queued and running tasks fail with [`Error::Terminated`], running
    /// functions see [`worker::aborted`](crate::worker::aborted), every worker runs its
    /// teardown and stops. Later tasks fail with [`Error::Terminated`].
    ///
    /// The returned [`Destroy`] can be awaited or waited on; it resolves once every worker
    /// thread has been joined, or with [`Error::TerminateTimeout`] naming a worker still
    /// running a function `terminate_timeout` later (a thread cannot be killed; it is left
    /// to finish, detached).
    pub fn destroy(&self) -> Destroy {
        let shared = self.shared().clone();
        shared.shut_down();
        Destroy {
            deadline: shared.stop_deadline(),
            shared,
            reaper: None,
        }
    }

    /// Fails every task that no worker has started with [`Error::Cancelled`]; running tasks
    /// finish. Tasks already sent to a child process count as started (see
    /// [`Builder::concurrent_tasks_per_worker`](crate::Builder::concurrent_tasks_per_worker)).
    pub fn cancel_pending_tasks(&self) {
        self.shared().cancel_pending();
    }

    /// Replaces every worker: idle ones now, busy ones once the tasks they took are done
    /// (they take no new ones meanwhile). The task resolves when the idle ones have stopped.
    pub fn recycle_workers(&self) -> Task<()> {
        self.shared().recycle()
    }

    /// How many workers are alive, starting ones included (retired ones, still finishing an
    /// aborted function, are not).
    pub fn threads(&self) -> usize {
        self.shared().threads()
    }

    /// A snapshot of the live workers.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.shared().workers()
    }

    /// How many tasks wait for a worker (tasks a worker has taken are not counted).
    pub fn queue_size(&self) -> usize {
        self.shared().queue_size()
    }

    /// How many tasks a worker has run to the end, with a value or an error.
    pub fn completed(&self) -> u64 {
        self.shared().completed()
    }

    /// How long ago the pool was built.
    pub fn duration(&self) -> Duration {
        self.shared().duration()
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared();
        f.debug_struct("Pool")
            .field("threads", &shared.threads())
            .field("queue_size", &shared.queue_size())
            .field("completed", &shared.completed())
            .field("destroyed", &shared.is_destroyed())
            .finish()
    }
}

/// The end of [`Pool::destroy`]: wait on it, or await it.
#[must_use = "the pool is already destroyed; wait on this to know that its workers stopped"]
pub struct Destroy {
    shared: Arc<Shared>,
    deadline: Instant,
    /// Waits for the workers on a thread of its own when awaited, so no executor blocks.
    reaper: Option<Task<()>>,
}

impl Destroy {
    /// Blocks until every worker thread is joined, or `terminate_timeout` passes. In async
    /// code, `.await` it instead: it then waits on a thread of its own, and the executor's
    /// thread stays free.
    pub fn wait(self) -> Result<(), Error> {
        self.shared.join_threads(self.deadline)
    }
}

impl Future for Destroy {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.reaper.is_none() {
            let slot = Arc::new(Slot::new());
            let (shared, deadline, done) = (self.shared.clone(), self.deadline, slot.clone());
            let name = format!("{}-destroy", self.shared.options.thread_name);
            let spawned = std::thread::Builder::new().name(name).spawn(move || {
                done.complete(shared.join_threads(deadline));
            });
            if spawned.is_err() {
                // No thread to wait on: wait here, which is bounded by the deadline.
                return Poll::Ready(self.shared.join_threads(self.deadline));
            }
            self.reaper = Some(Task::new(slot));
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
