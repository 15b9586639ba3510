//! How a child with async exports serves: its tasks run concurrently, up to what the pool
//! sends it (`concurrent_tasks_per_worker`).
//!
//! - **Reading.** A reader thread reads the channel from the start: it delivers channel
//!   messages to the task they name (every task in flight has its bridge), sets the flag of a
//!   task the pool aborts and wakes its future, and hands each `RUN` and the `STOP` to the
//!   main thread through a queue and its doorbell.
//! - **Running.** The main thread starts each task it is handed: an async export's future
//!   goes to the worker's executor (the same as a worker thread's: its own, or a current-thread
//!   tokio runtime with the `tokio` feature), which polls the futures as they are woken until
//!   the queue has more; a plain function's task runs at once, to its end, its futures
//!   waiting meanwhile, as on a worker thread.
//! - **Answering.** Each task answers `DONE` when it ends, in whatever order they end; a task
//!   whose `ABORT` came drops its future at its next poll and answers too (an error the pool
//!   drops), so that every `RUN` has exactly one `DONE`. Inside a future,
//!   [`worker::port`](crate::worker::port) and [`worker::aborted`](crate::worker::aborted) are
//!   its task's own.
//! - **Stopping.** `STOP` drops the futures left (tasks that resolved in the pool), then the
//!   child runs its teardown and exits.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use super::{send_result, Bridge, Command, Inbound, Out, Task};
use crate::codec::Serialization;
use crate::exports::{Exports, LocalFuture};
use crate::protocol::Init;
use crate::runtime::executor::Executor;
use crate::sync::{lock, AtomicBool, Ordering};
use crate::wait::Doorbell;
use crate::worker::context::{self, Polled, TaskPort};
use crate::Error;

/// A task's abort, as the reader thread delivers it.
#[derive(Default)]
pub(super) struct TaskAbort {
    /// Set by the pool's `ABORT`: what [`worker::aborted`](crate::worker::aborted) says.
    flag: Arc<AtomicBool>,
    /// Wakes its future, to be dropped.
    waker: Mutex<Option<Waker>>,
}

impl TaskAbort {
    /// The pool aborted the task.
    pub(super) fn abort(&self) {
        self.flag.store(true, Ordering::Release);
        if let Some(waker) = lock(&self.waker).take() {
            waker.wake();
        }
    }

    fn aborted(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

/// What the reader thread hands the main thread.
#[derive(Default)]
struct Handed {
    commands: Mutex<VecDeque<Command>>,
    bell: Doorbell,
}

/// Where a task sends its `DONE`.
#[derive(Clone)]
struct Reply {
    writer: Out,
    measure_memory: bool,
    max: usize,
}

impl Reply {
    /// Sends task `task`'s `DONE`; a child that cannot is of no use to its pool, and exits.
    fn send(&self, task: u64, result: Result<Vec<u8>, Error>) {
        if let Err(message) = send_result(&self.writer, task, result, self.measure_memory, self.max)
        {
            eprintln!("tinypool worker: {message}");
            std::process::exit(2);
        }
    }
}

/// Serves until `STOP` (see the module's doc).
pub(super) fn serve(
    exports: &Exports,
    inbound: &Arc<Inbound>,
    writer: &Out,
    init: &Init<'_>,
) -> Result<(), String> {
    let handed = Arc::new(Handed::default());
    handed.bell.bind_current_thread();
    let (theirs, reading) = (handed.clone(), inbound.clone());
    std::thread::Builder::new()
        .name("tinypool-reader".to_owned())
        .spawn(move || loop {
            let command = reading.next_command();
            let stop = matches!(command, Command::Stop);
            lock(&theirs.commands).push_back(command);
            theirs.bell.ring();
            if stop {
                return;
            }
        })
        .map_err(|e| format!("starting the channel reader: {e}"))?;
    let mut executor = Executor::new()?;
    let reply = Reply {
        writer: writer.clone(),
        measure_memory: init.measure_memory,
        max: init.max_message_size,
    };
    loop {
        let commands = std::mem::take(&mut *lock(&handed.commands));
        for command in commands {
            match command {
                Command::Run(task) => {
                    start(exports, init.codec, task, &mut executor, &reply, inbound)
                }
                // The futures left are dropped with the executor, before the teardown.
                Command::Stop => return Ok(()),
            }
        }
        executor.run_until(|| !lock(&handed.commands).is_empty(), &handed.bell);
    }
}

/// Starts `task`: an async export's future joins the executor; anything else runs now and
/// answers.
fn start(
    exports: &Exports,
    codec: Serialization,
    task: Task,
    executor: &mut Executor,
    reply: &Reply,
    inbound: &Arc<Inbound>,
) {
    let Task {
        task: id,
        run,
        bridge,
        abort,
    } = task;
    let abort = abort.unwrap_or_default();
    let scope = Scope {
        bridge,
        abort: abort.flag.clone(),
    };
    let started = match exports.get_serde(run.name()) {
        // Making the future runs the user's function: in the task's scope too.
        Some(export) if export.is_async() => scope.enter(|| {
            let (arg_type, result_type) = (run.arg_type(), run.result_type());
            export.call_encoded_async(run.name(), codec, run.arg(), arg_type, result_type)
        }),
        // A plain function runs to its end now, its worker's futures waiting, as on a worker
        // thread.
        export @ Some(_) => {
            let result = scope.enter(|| run.call(export, codec));
            end(id, &scope, inbound);
            return reply.send(id, result);
        }
        None => Err(Error::NoSuchFunction {
            name: run.name().to_owned(),
        }),
    };
    // The future holds its decoded argument: the frame goes (and its slot with it).
    drop(run);
    let future = match started {
        Ok(future) => future,
        Err(error) => {
            end(id, &scope, inbound);
            return reply.send(id, Err(error));
        }
    };
    let task = InChild {
        task: id,
        future: Some(future),
        scope,
        abort: abort.clone(),
        reply: reply.clone(),
        inbound: inbound.clone(),
    };
    executor.spawn(|waker| {
        // An abort before this finds its flag set at the first poll.
        *lock(&abort.waker) = Some(waker.clone());
        Some(Box::pin(task))
    });
}

/// What a task's code sees while it runs: its channel and its abort.
struct Scope {
    bridge: Option<Arc<Bridge>>,
    abort: Arc<AtomicBool>,
}

impl Scope {
    fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        if let Some(bridge) = &self.bridge {
            context::set_task_port(TaskPort::Remote(bridge.clone()));
        }
        context::set_polled(Some(Polled::Flag(self.abort.clone())));
        let value = f();
        context::set_polled(None);
        if self.bridge.is_some() {
            context::set_task_port(TaskPort::None);
        }
        value
    }
}

/// An async task in the child: polls the function's future in the task's scope, and answers
/// `DONE` once it ends or was aborted.
struct InChild {
    task: u64,
    future: Option<LocalFuture<Result<Vec<u8>, Error>>>,
    scope: Scope,
    abort: Arc<TaskAbort>,
    reply: Reply,
    inbound: Arc<Inbound>,
}

impl Future for InChild {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(future) = this.future.as_mut() else {
            return Poll::Ready(());
        };
        let result = if this.abort.aborted() {
            // Dropped here, on this thread; a drop that panics does not end the child.
            let future = this.future.take();
            let _ = catch_unwind(AssertUnwindSafe(move || drop(future)));
            Err(Error::Aborted { reason: None })
        } else {
            match this.scope.enter(|| future.as_mut().poll(cx)) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    this.future = None;
                    result
                }
            }
        };
        end(this.task, &this.scope, &this.inbound);
        this.reply.send(this.task, result);
        Poll::Ready(())
    }
}

/// Task `task` ended: its channel closes, and the reader no longer finds it.
fn end(task: u64, scope: &Scope, inbound: &Inbound) {
    inbound.forget(task);
    if let Some(bridge) = &scope.bridge {
        bridge.close();
    }
}
