//! The task handle: a result slot that is both a `Future` and blockable.
//!
//! One allocation per task, [`TaskCell`], holds the argument on its way in and the result on
//! its way out. The scheduler sees it as a [`Job`]; the caller sees it as a [`Task`]. Its
//! [`Slot`] moves through `Pending → Running → Staged → Ready → Taken`: a worker takes the
//! argument, *stages* a result and *publishes* it once its own bookkeeping is done (so an
//! isolated pool already counts the replacement worker when the caller wakes up), while an
//! abort or `destroy` can complete the task with an error at any point before publication.
//! Whatever comes first wins; everything after it is dropped. That is how every task resolves
//! exactly once, and whoever resolves it counts its outcome in a [`Tally`] before its caller
//! can see it (for `Pool::stats`).
//!
//! A cell is generic over its *wire* (see [`crate::exports::wire`]): a zero-sized type that
//! says how its values would cross to a child process (serde, or not at all for a local
//! export's), chosen at compile time so that it costs no byte and no branch.

use std::any::type_name;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::abort::AbortSignal;
use crate::channel::ErasedPort;
use crate::codec::{Encoded, Place, Serialization};
use crate::exports::wire::{Carry, Serde};
use crate::exports::{Exports, DEFAULT_NAME};
use crate::stats::Tally;
use crate::Error;

mod abort;
#[cfg(all(test, loom))]
mod loom;
mod slot;
mod spawned;

pub(crate) use slot::{Completion, Leftover, Outcome, Slot};
pub(crate) use spawned::Spawn;

/// The handle to a task's result.
///
/// A `Task` is a [`Future`] (it needs no particular async runtime: it is woken by the worker
/// that finishes the task) and can also be waited on by a blocking caller with
/// [`wait`](Task::wait) or [`wait_timeout`](Task::wait_timeout). Dropping it detaches the task:
/// it still runs, and its result is dropped.
///
/// ```
/// # let pool = tinypool::Pool::builder()
/// #     .exports(tinypool::Exports::new().export_default(|(a, b): (i32, i32)| a + b))
/// #     .build()?;
/// let task = pool.run::<i32, _>((4, 6));
/// assert_eq!(task.wait()?, 10);
/// # Ok::<(), tinypool::Error>(())
/// ```
///
/// In async code, `.await` it: [`wait`](Task::wait) blocks the thread it is called on, and in
/// an async runtime that thread runs other tasks. On a single-threaded runtime a `wait()` on a
/// task that needs something from the async side (a message on its channel, say) never
/// returns: the side that would send it cannot run.
///
/// ```
/// # fn main() -> Result<(), tinypool::Error> {
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let pool = tinypool::Pool::builder()
///     .exports(tinypool::Exports::new().export_default(|n: u64| n * 2))
///     .build()?;
/// let doubled = pool.run::<u64, _>(21u64).await?;
/// assert_eq!(doubled, 42);
/// pool.destroy().await
/// # })
/// # }
/// ```
#[must_use = "a task runs even if its handle is dropped; wait on it or await it for the result"]
pub struct Task<R> {
    completion: Arc<dyn Completion<R>>,
    /// The way back to the task's pool, for [`Task::abort`]; `None` for what is no pool's
    /// task (`Pool::idle`, `Pool::recycle_workers`, a task that failed at submission).
    origin: Option<Arc<dyn Origin>>,
}

impl<R: Send + 'static> Task<R> {
    pub(crate) fn new(completion: Arc<dyn Completion<R>>) -> Self {
        Task {
            completion,
            origin: None,
        }
    }

    /// A task of the pool that `origin` leads back to.
    pub(crate) fn of_pool(completion: Arc<dyn Completion<R>>, origin: &Arc<dyn Origin>) -> Self {
        Task {
            completion,
            origin: Some(origin.clone()),
        }
    }

    /// A task that has already resolved with `result`.
    pub(crate) fn ready(result: Result<R, Error>) -> Self {
        Task::new(Arc::new(Slot::ready(result)))
    }

    /// Blocks the current thread until the task resolves. In async code, `.await` the task
    /// instead: this would block the executor's thread (see [`Task`]).
    pub fn wait(self) -> Result<R, Error> {
        self.completion
            .slot()
            .wait(None)
            .expect("a wait without deadline returns a result")
    }

    /// Blocks for at most `timeout`. On timeout the handle comes back (`Err`) and the task
    /// keeps running.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # let pool = tinypool::Pool::builder()
    /// #     .exports(tinypool::Exports::new().export_default(|ms: u64| {
    /// #         std::thread::sleep(Duration::from_millis(ms));
    /// #         ms
    /// #     }))
    /// #     .build()?;
    /// let mut task = pool.run::<u64, _>(50u64);
    /// let slept = loop {
    ///     match task.wait_timeout(Duration::from_millis(10)) {
    ///         Ok(result) => break result?,
    ///         Err(still_running) => task = still_running, // do something else meanwhile
    ///     }
    /// };
    /// assert_eq!(slept, 50);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn wait_timeout(self, timeout: Duration) -> Result<Result<R, Error>, Task<R>> {
        let deadline = Instant::now().checked_add(timeout);
        match self.completion.slot().wait(deadline) {
            Some(result) => Ok(result),
            None => Err(self),
        }
    }

    /// Whether the result is ready, so that [`wait`](Task::wait) would not block.
    ///
    /// For a loop with other work to do than wait:
    ///
    /// ```
    /// # let pool = tinypool::Pool::builder()
    /// #     .exports(tinypool::Exports::new().export_default(|n: u64| (1..=n).product::<u64>()))
    /// #     .build()?;
    /// let task = pool.run::<u64, _>(20u64);
    /// let mut frames = 0;
    /// while !task.is_finished() {
    ///     frames += 1; // Draw the next frame of a spinner, say.
    ///     std::thread::yield_now();
    /// }
    /// println!("{frames} frames");
    /// assert_eq!(task.wait()?, 2_432_902_008_176_640_000); // Ready: no blocking.
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn is_finished(&self) -> bool {
        self.completion.slot().is_ready()
    }
}

impl<R: Send + 'static> Future for Task<R> {
    type Output = Result<R, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.completion.slot().poll(cx)
    }
}

impl<R> fmt::Debug for Task<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("finished", &self.completion.slot().is_ready())
            .finish()
    }
}

/// A task as the scheduler and the workers see it: something to run once, then publish, or to
/// fail.
#[cfg_attr(not(unix), allow(dead_code))] // Used by the child-process runtime (Unix).
pub(crate) trait Job: Send + Sync + Spawn {
    /// Runs the exported function in this thread and stages its result.
    fn run(&self, exports: &Exports);
    /// Publishes the staged result, counted in `tally`; false if the task had already
    /// resolved.
    fn publish(&self, tally: &Tally) -> bool;
    /// Resolves the task with `error` unless it already resolved, counted in `tally`; returns
    /// whether it did.
    fn fail(&self, error: Error, tally: &Tally) -> bool;
    /// [`fail`](Job::fail), for a caller holding a lock of the pool: what the task held (a
    /// child's task keeps its argument for a resend) comes back, to be dropped once that lock
    /// is released; `None` if the task had already resolved.
    fn fail_leaving(&self, error: Error, tally: &Tally) -> Option<Leftover>;
    /// The export to run.
    fn name(&self) -> &str;
    /// The worker side of the task's channel, if it was given one.
    fn port(&self) -> Option<&dyn ErasedPort>;
    /// Whether the task carries an abort signal or a timeout.
    fn abortable(&self) -> bool;
    /// Whether it runs alone on its worker: an abortable task whose export is not async
    /// (aborting it retires the worker, which must then hold nothing else).
    fn exclusive(&self) -> bool;
    /// Its priority ([`RunOptions::priority`](crate::RunOptions::priority)): higher runs first.
    fn priority(&self) -> i32;
    /// When it was submitted, if something reads it (`record_timing`, the `tracing` feature).
    fn submitted(&self) -> Option<Instant>;
    /// Notes when its worker started it (kept only if its submission was timed).
    fn mark_started(&self, at: Instant);
    /// When its worker started it, if noted.
    fn started(&self) -> Option<Instant>;

    // The child-process runtime's side: the argument leaves encoded, the result comes back
    // encoded, each with its type's name so that a mismatch is an error, not a misreading.

    /// The argument, encoded into `out` (it stays in the task until its result is staged),
    /// unless `out` is full (see [`Place`]); `None` if the task resolved on its way to the
    /// worker (then it must not be sent).
    fn encode_arg_into(
        &self,
        codec: Serialization,
        out: &mut Place<'_>,
    ) -> Option<Result<Encoded, Error>>;
    /// The argument's type name.
    fn arg_type(&self) -> &'static str;
    /// The expected result's type name.
    fn result_type(&self) -> &'static str;
    /// Decodes a child's result and stages it.
    fn stage_encoded(&self, codec: Serialization, result: Result<&[u8], Error>);
}

/// The pool side of a task's handle: one per pool, shared by the handles of its tasks (one
/// reference count per task, on an allocation of its own, which the workers never touch).
pub(crate) trait Origin: Send + Sync {
    /// Aborts `job` with `error`, wherever it is in the pool; nothing if it already resolved
    /// or the pool is gone.
    fn abort(&self, job: &Arc<dyn Job>, error: Error);
}

/// A task's place in its pool's timer: its deadline, and a sequence number that orders tasks
/// with the same deadline.
pub(crate) type DeadlineKey = (Instant, u64);

/// The pool's timer, as a task sees it.
pub(crate) trait Deadlines: Send + Sync {
    /// Drops the deadline at `key`, if it is still there.
    fn forget(&self, key: DeadlineKey);
}

/// Where a task with a timeout waits in its pool's timer.
pub(crate) struct DeadlineHook {
    pub(crate) timer: Arc<dyn Deadlines>,
    pub(crate) key: DeadlineKey,
    /// The timeout it was given, which [`Error::TimedOut`] reports.
    pub(crate) after: Duration,
}

/// Where an abortable task's listener sits on its signal, so it can be removed once the task
/// resolved (the signal may outlive the task by far).
struct AbortHook {
    signal: AbortSignal,
    listener: u64,
}

/// The one allocation behind a task: its argument, its result, and what the scheduler needs.
/// `W`, its wire, says how the values cross to a child process ([`Serde`]), if they can.
pub(crate) struct TaskCell<A, R, W = Serde> {
    /// The argument on its way in, the result on its way out.
    slot: Slot<R, A>,
    /// The export's name, unless it is the default one or not `'static` (then in `extras`).
    name: Option<&'static str>,
    /// Boxed, as few tasks have them. A saturated pool allocates and faults in millions of
    /// cells a second: a cell of `(u64, u64) -> u64` is 88 bytes (with its `Arc`'s counts,
    /// 104: a 112-byte chunk of glibc's `malloc`, in its fast bins).
    extras: Option<Box<Extras>>,
    /// No byte; a `fn` pointer so that the cell is `Send` and `Sync` whatever `W`.
    wire: PhantomData<fn() -> W>,
}

/// What only a task with a channel, an abort signal, a timeout or a priority needs, or one
/// whose submission is timed.
struct Extras {
    /// The export's name, when it was given as a `String`.
    name: Option<String>,
    port: Option<Box<dyn ErasedPort>>,
    abortable: bool,
    /// Abortable, and its export is not async: see [`Job::exclusive`].
    exclusive: bool,
    abort_hook: OnceLock<AbortHook>,
    priority: i32,
    /// Where the task waits in the pool's timer, if it has a timeout.
    deadline: OnceLock<DeadlineHook>,
    /// When it was submitted, if something reads it (`record_timing`, the `tracing` feature).
    submitted: Option<Instant>,
    /// When its worker started it, if its submission was timed.
    started: OnceLock<Instant>,
}

impl<A, R, W> TaskCell<A, R, W>
where
    A: Send + 'static,
    R: Send + 'static,
{
    // Inlined, so that the cell is built where its `Arc` puts it rather than copied there:
    // it is the one allocation of every task.
    #[inline]
    pub(crate) fn new(
        arg: A,
        name: Option<Cow<'static, str>>,
        port: Option<Box<dyn ErasedPort>>,
        abortable: bool,
        priority: i32,
        submitted: Option<Instant>,
    ) -> Self {
        let (name, owned_name) = match name {
            Some(Cow::Borrowed(name)) => (Some(name), None),
            Some(Cow::Owned(name)) => (None, Some(name)),
            None => (None, None),
        };
        let boxed = owned_name.is_some()
            || port.is_some()
            || abortable
            || priority != 0
            || submitted.is_some();
        let extras = boxed.then(|| {
            Box::new(Extras {
                name: owned_name,
                port,
                abortable,
                exclusive: abortable,
                abort_hook: OnceLock::new(),
                priority,
                deadline: OnceLock::new(),
                submitted,
                started: OnceLock::new(),
            })
        });
        TaskCell {
            slot: Slot::with_arg(arg),
            name,
            extras,
            wire: PhantomData,
        }
    }

    /// The task, abortable but sharing its worker: its export is async, whose abort only
    /// drops its future (see [`Job::exclusive`]).
    pub(crate) fn shared(mut self) -> Self {
        if let Some(extras) = &mut self.extras {
            extras.exclusive = false;
        }
        self
    }

    fn abort_hook(&self) -> Option<&AbortHook> {
        self.extras.as_ref()?.abort_hook.get()
    }

    /// Remembers the listener registered on `signal` for this task.
    pub(crate) fn set_abort_hook(&self, signal: AbortSignal, listener: u64) {
        if let Some(extras) = &self.extras {
            let _ = extras.abort_hook.set(AbortHook { signal, listener });
        }
        // The task may have resolved before the hook was stored.
        if self.slot.is_ready() {
            self.remove_abort_hook();
        }
    }

    fn remove_abort_hook(&self) {
        if let Some(hook) = self.abort_hook() {
            hook.signal.remove_listener(hook.listener);
        }
    }

    fn deadline(&self) -> Option<&DeadlineHook> {
        self.extras.as_ref()?.deadline.get()
    }

    /// Remembers where the task waits in the pool's timer, which forgets it once it resolved.
    pub(crate) fn set_deadline(&self, hook: DeadlineHook) {
        if let Some(extras) = &self.extras {
            let _ = extras.deadline.set(hook);
        }
        // The task may have resolved before the hook was stored.
        if self.slot.is_ready() {
            self.forget_deadline();
        }
    }

    fn forget_deadline(&self) {
        if let Some(hook) = self.deadline() {
            hook.timer.forget(hook.key);
        }
    }

    /// Whether the task may start: `None` if it resolved on its way to the worker (cancelled,
    /// aborted, terminated), an error if its signal fired but the listener (run one at a time
    /// when a signal is shared) has not reached it yet: an aborted task must never start.
    fn may_start(&self) -> Option<Result<(), Error>> {
        if self.slot.is_ready() {
            return None;
        }
        if let Some(hook) = self.abort_hook() {
            if hook.signal.aborted() {
                let reason = hook.signal.reason();
                return Some(Err(Error::Aborted { reason }));
            }
        }
        // Nor must a task whose deadline passed while the timer had not reached it yet.
        if let Some(hook) = self.deadline() {
            if Instant::now() >= hook.key.0 {
                return Some(Err(Error::TimedOut { after: hook.after }));
            }
        }
        Some(Ok(()))
    }

    /// Takes the argument to start the task (see [`may_start`](Self::may_start)).
    fn take_arg(&self) -> Option<Result<A, Error>> {
        match self.may_start()? {
            Ok(()) => self.slot.take_arg().map(Ok),
            Err(error) => Some(Err(error)),
        }
    }

    /// The name of the export to run.
    fn export_name(&self) -> &str {
        self.name
            .or_else(|| self.extras.as_ref()?.name.as_deref())
            .unwrap_or(DEFAULT_NAME)
    }

    /// The worker side of its channel, if it was given one ([`Job::port`]).
    fn channel(&self) -> Option<&dyn ErasedPort> {
        self.extras.as_ref()?.port.as_deref()
    }

    /// After a failure that resolved the task (`did`): its channel closes, so that the caller
    /// drains and then gets `Disconnected` instead of waiting forever, and a function still
    /// blocked on the port wakes up (cancelled, aborted, terminated, refused).
    fn failed(&self, did: bool) -> bool {
        if did {
            if let Some(port) = self.channel() {
                port.close();
            }
        }
        self.resolved(did)
    }

    fn resolved(&self, did: bool) -> bool {
        if did && self.extras.is_some() {
            self.remove_abort_hook();
            self.forget_deadline();
        }
        did
    }
}

impl<A, R, W> Completion<R> for TaskCell<A, R, W>
where
    A: Send + 'static,
    R: Send + 'static,
    W: Carry<A, R>,
{
    fn slot(&self) -> &dyn Outcome<R> {
        &self.slot
    }

    fn job(self: Arc<Self>) -> Option<Arc<dyn Job>> {
        Some(self)
    }
}

impl<A, R, W> Job for TaskCell<A, R, W>
where
    A: Send + 'static,
    R: Send + 'static,
    W: Carry<A, R>,
{
    fn run(&self, exports: &Exports) {
        let result = match (self.take_arg(), exports.get(self.name())) {
            (None, _) => return, // Resolved on its way to the worker.
            (Some(Err(error)), _) => Err(error),
            (_, None) => Err(Error::NoSuchFunction {
                name: self.name().to_owned(),
            }),
            (Some(Ok(arg)), Some(export)) => {
                let mut arg = Some(arg);
                let mut out: Option<R> = None;
                export
                    .call(
                        self.name(),
                        &mut arg,
                        type_name::<A>(),
                        &mut out,
                        type_name::<R>(),
                    )
                    .map(|()| out.expect("a successful call fills the result"))
            }
        };
        self.slot.stage(result);
    }

    fn publish(&self, tally: &Tally) -> bool {
        let did = self.slot.publish(tally);
        self.resolved(did)
    }

    fn fail(&self, error: Error, tally: &Tally) -> bool {
        // What the task held is dropped here, once the slot's lock is released: no box for it.
        let did = self.slot.complete_counted(Err(error), Some(tally));
        self.failed(did)
    }

    fn fail_leaving(&self, error: Error, tally: &Tally) -> Option<Leftover> {
        let leftover = self.slot.complete_leaving(Err(error), Some(tally));
        self.failed(leftover.is_some());
        leftover
    }

    fn name(&self) -> &str {
        self.export_name()
    }

    fn port(&self) -> Option<&dyn ErasedPort> {
        self.channel()
    }

    fn abortable(&self) -> bool {
        self.extras.as_ref().is_some_and(|extras| extras.abortable)
    }

    fn exclusive(&self) -> bool {
        self.extras.as_ref().is_some_and(|extras| extras.exclusive)
    }

    fn priority(&self) -> i32 {
        self.extras.as_ref().map_or(0, |extras| extras.priority)
    }

    fn submitted(&self) -> Option<Instant> {
        self.extras.as_ref()?.submitted
    }

    fn mark_started(&self, at: Instant) {
        if let Some(extras) = self.extras.as_ref().filter(|e| e.submitted.is_some()) {
            let _ = extras.started.set(at);
        }
    }

    fn started(&self) -> Option<Instant> {
        self.extras.as_ref()?.started.get().copied()
    }

    fn encode_arg_into(
        &self,
        codec: Serialization,
        out: &mut Place<'_>,
    ) -> Option<Result<Encoded, Error>> {
        // The argument stays until the result is in: a child that dies with this task sent
        // ahead and not started gives it back to the queue, to be sent again.
        match self.may_start()? {
            Ok(()) => self
                .slot
                .lend_arg(|arg| W::encode_arg_into(codec, arg, out)),
            Err(error) => Some(Err(error)),
        }
    }

    fn arg_type(&self) -> &'static str {
        type_name::<A>()
    }

    fn result_type(&self) -> &'static str {
        type_name::<R>()
    }

    fn stage_encoded(&self, codec: Serialization, result: Result<&[u8], Error>) {
        self.slot
            .stage(result.and_then(|bytes| W::decode_result(codec, bytes)));
    }
}

#[cfg(all(test, not(loom), target_pointer_width = "64"))]
mod tests {
    use super::TaskCell;

    /// Every byte of a cell is written, and its page faulted in, for every task: a field added
    /// to every cell shows here. (`Arc` adds 16 bytes of counts; glibc's `malloc` rounds 104
    /// bytes up to a 112-byte chunk, and keeps chunks of up to 128 bytes in its fast bins.)
    #[test]
    fn a_cell_of_two_words_in_and_one_out_takes_88_bytes() {
        assert_eq!(std::mem::size_of::<TaskCell<(u64, u64), u64>>(), 88);
    }
}
