//! Driving a child with async exports (its `HELLO` names them): its tasks run concurrently in
//! the child, and end in any order.
//!
//! - **Starting.** Each task is sent as soon as the worker has room (the driver does not send
//!   ahead: [`RunningWorker::sends_ahead`](super::RunningWorker::sends_ahead) is false), tasks
//!   with channels too, each `PORT` frame naming its task. A task of an async export is
//!   marked as one ([`Spawn::runs_in_child`](crate::task::Spawn::runs_in_child)): an abort
//!   or a timeout resolves it at once and rings the worker's doorbell instead of retiring the
//!   worker, and the driver then sends `ABORT`, so that the child drops its future (`destroy`
//!   retires the worker: the child stops, its futures with it). A plain function's task is aborted as always: it fails, and its child is killed
//!   if nothing else runs there.
//! - **Finishing.** The driver waits for the oldest task's `DONE`, and stages every other
//!   `DONE` that comes first in its own task, then returns [`Flow::Pending`], so that the
//!   scheduler publishes those at once. It also returns `Pending` when its doorbell rings
//!   (more work for it, or a task resolved from outside): it waits in its channel's `poll`,
//!   where the ring reaches it as a wake-up of its own ([`Wake`](crate::transport::Wake), on
//!   Unix); on Windows, whose pipes' reader waits elsewhere, it looks at the doorbell every
//!   millisecond while it waits.
//! - **Answers.** Every `RUN` has exactly one `DONE`, an aborted task's too (its result is
//!   dropped): a `DONE` for a task the driver did not send, or already had, is a protocol
//!   error, and the child is killed, as for any nonsense.
//! - **Death.** A child that dies fails every task it was running, with the same error: they
//!   had all started, so none goes back to the queue.

use std::sync::Arc;
use std::time::Duration;
#[cfg(windows)]
use std::time::Instant;

use super::{note_panic, Broken, ChildWorker, Flow};
use crate::protocol::{Done, Frame, ToChild, ToPool};
use crate::sync::lock;
use crate::task::Job;
use crate::trace::{self, AsyncSpan};
use crate::Error;

/// How often a driver waiting for its child's answers looks at its doorbell, where a ring
/// cannot wake it.
#[cfg(windows)]
const LOOK: Duration = Duration::from_millis(1);

/// The tasks a child with async exports runs.
pub(super) struct Flights {
    /// The child's async exports.
    async_exports: Vec<String>,
    /// The tasks sent and not answered, in the order sent.
    flying: Vec<Flight>,
    /// A `DONE` said the child passed its memory limit: the worker leaves once its tasks end.
    over: bool,
    /// The worker's id (for its tasks' trace spans).
    worker: usize,
}

struct Flight {
    task: u64,
    job: Arc<dyn Job>,
    /// Whether `ABORT` was sent for it.
    aborted: bool,
    /// Whether it runs an async export (else it is never sent `ABORT`).
    is_async: bool,
    /// Its trace span, from its `RUN` to its `DONE` (or the child's death); never entered.
    span: AsyncSpan,
}

impl Flights {
    pub(super) fn new(mut async_exports: Vec<String>, worker: usize) -> Self {
        async_exports.sort_unstable();
        Flights {
            async_exports,
            flying: Vec::new(),
            over: false,
            worker,
        }
    }

    /// The child's async exports, sorted.
    pub(super) fn async_exports(&self) -> Vec<String> {
        self.async_exports.clone()
    }

    fn position(&self, job: &Arc<dyn Job>) -> Option<usize> {
        let job = Arc::as_ptr(job).cast::<()>();
        (self.flying.iter()).position(|flight| Arc::as_ptr(&flight.job).cast::<()>() == job)
    }
}

/// What a frame came to.
enum Taken {
    /// The `DONE` of the task waited for.
    Finished,
    /// Another task's `DONE`, staged in it.
    Early,
    /// Anything else.
    Nothing,
}

impl ChildWorker {
    fn flights(&mut self) -> &mut Flights {
        self.flights.as_mut().expect("a child with async exports")
    }

    /// Sends `jobs`, each as soon as it comes (see the module's doc).
    pub(super) fn start_concurrent(&mut self, jobs: &[Arc<dyn Job>]) {
        for job in jobs {
            let Some(task) = self.send_run(job, false) else {
                continue; // Nothing was sent: it already resolved.
            };
            let flights = self.flights();
            let is_async = (flights.async_exports)
                .binary_search_by(|name| (**name).cmp(job.name()))
                .is_ok();
            if is_async {
                job.runs_in_child();
            }
            let span = trace::task_async(&**job, flights.worker);
            flights.flying.push(Flight {
                task,
                job: job.clone(),
                aborted: false,
                is_async,
                span,
            });
        }
    }

    /// Waits for `job`'s end, publishing those that end before it (see the module's doc).
    pub(super) fn finish_concurrent(&mut self, job: &Arc<dyn Job>) -> Flow {
        match self.await_concurrent(job) {
            Ok(flow) => flow,
            Err(broken) => {
                let flying = std::mem::take(&mut self.flights().flying);
                if let Broken::Died(error) = broken {
                    job.fail(error.clone(), &self.tally);
                    for flight in flying {
                        flight.job.fail(error.clone(), &self.tally);
                    }
                }
                Flow::Dead
            }
        }
    }

    fn await_concurrent(&mut self, job: &Arc<dyn Job>) -> Result<Flow, Broken> {
        let mut early = false;
        loop {
            self.send_aborts();
            let flights = self.flights();
            // Not there: never sent, or its `DONE` came already. Resolved from outside: its
            // `DONE` is dropped when it comes.
            if flights
                .position(job)
                .is_none_or(|at| flights.flying[at].job.ended())
            {
                return Ok(if flights.over {
                    Flow::Leave
                } else {
                    Flow::Continue
                });
            }
            if !self.reader.ready() && (early || self.bell.take_ring()) {
                return Ok(Flow::Pending);
            }
            // Until a frame comes, or the doorbell rings.
            #[cfg(unix)]
            let frame = {
                self.reader.listen(true);
                let frame = self.next_frame_by(None);
                self.reader.listen(false);
                frame
            };
            #[cfg(windows)]
            let frame = self.next_frame_by(Some(Instant::now() + LOOK));
            let Some(frame) = frame? else {
                continue;
            };
            let taken = self.take_frame(&frame, job);
            self.reader.recycle(frame);
            match taken {
                Ok(Taken::Finished) => continue, // Found gone at the top.
                Ok(Taken::Early) => early = true,
                Ok(Taken::Nothing) => {}
                Err(error) => {
                    self.kill_and_reap(Duration::ZERO);
                    return Err(Broken::Died(error));
                }
            }
        }
    }

    /// Sends `ABORT` for the async tasks that resolved from outside since the last look.
    fn send_aborts(&mut self) {
        let max = self.max();
        let Some(flights) = self.flights.as_mut() else {
            return;
        };
        for flight in &mut flights.flying {
            if flight.is_async && !flight.aborted && flight.job.ended() {
                flight.aborted = true;
                let task = flight.task;
                // A child that cannot be written to is found dead by the next read.
                let _ = lock(&self.writer)
                    .writer
                    .send(&ToChild::Abort { task }, max);
            }
        }
    }

    /// Takes one frame of the child: a task's result staged, a channel message delivered.
    fn take_frame(&mut self, frame: &Frame, waited: &Arc<dyn Job>) -> Result<Taken, Error> {
        let codec = self.options.serialization;
        let memory_limit = self.options.memory_recycle;
        match ToPool::decode(frame)? {
            ToPool::Done(Done { task, rss, outcome }) => {
                let flights = self.flights();
                let Some(at) = flights.flying.iter().position(|flight| flight.task == task) else {
                    return Err(Error::Protocol {
                        message: format!("a result for task {task}, which is not running"),
                    });
                };
                let flight = flights.flying.remove(at);
                flight.span.done();
                flights.over |= memory_limit.is_some_and(|limit| rss > limit);
                if flight.job.port().is_some() {
                    // Late messages of the caller are dropped here, not sent to the child.
                    lock(&self.writer)
                        .bridged
                        .retain(|bridged| *bridged != task);
                }
                if !flight.job.ended() {
                    flight.job.stage_encoded(codec, outcome);
                }
                let same = Arc::as_ptr(&flight.job).cast::<()>() == Arc::as_ptr(waited).cast();
                Ok(if same { Taken::Finished } else { Taken::Early })
            }
            ToPool::Port { task, message } => {
                let flights = self.flights();
                if let Some(flight) = flights.flying.iter().find(|flight| flight.task == task) {
                    if let Some(port) = flight.job.port() {
                        // The caller may have dropped its side: not the task's problem.
                        let _ = port.send_encoded(codec, message);
                    }
                }
                Ok(Taken::Nothing)
            }
            ToPool::Panicking { message } => {
                note_panic(&mut self.last_panic, message);
                Ok(Taken::Nothing)
            }
            ToPool::Hello(_) => Err(Error::Protocol {
                message: format!("unexpected frame kind {} from the child", frame.kind),
            }),
        }
    }
}
