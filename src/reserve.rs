//! Backpressure: [`Pool::reserve`](crate::Pool::reserve) waits for room in a bounded queue
//! instead of failing with [`Error::QueueFull`], and resolves to a [`Permit`], a place held
//! in the queue until the permit's task takes it (or the permit is dropped).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::exports::typed::Export;
use crate::exports::wire::{Serde, Wire};
use crate::options::RunOptions;
use crate::scheduler::{Request, Scheduler, Ticket};
use crate::task::{Completion, Task};
use crate::Error;

/// The answer to [`Pool::reserve`](crate::Pool::reserve): a [`Permit`] once the pool's queue
/// has a place for one more task. Wait on it, or await it.
///
/// Requests are granted in the order they were made. Dropping a `Reserve` gives up its turn,
/// or, if a place was already granted to it, hands that place to the next request.
///
/// ```
/// use tinypool::{Exports, MaxQueue, Pool};
///
/// let pool = Pool::builder()
///     .exports(Exports::new().export_default(|n: u32| n + 1))
///     .max_queue(MaxQueue::Limit(1))
///     .build()?;
/// let first = pool.reserve().wait()?; // The queue's only place.
/// let second = pool.reserve(); // None left: this one waits...
/// let waiter = std::thread::spawn(move || second.wait());
/// drop(first); // ...until the first permit is given back, unused.
/// let permit = waiter.join().unwrap()?;
/// assert_eq!(permit.run::<u32, _>(41u32).wait()?, 42);
/// # Ok::<(), tinypool::Error>(())
/// ```
#[must_use = "a reserve does nothing unless waited on or awaited"]
pub struct Reserve {
    state: State,
}

enum State {
    /// Answered at once: granted (or nothing to count), or refused.
    Answered(Result<Permit, Error>),
    /// In line for a place.
    Waiting {
        scheduler: Arc<Scheduler>,
        /// The pool's default export, for the permit.
        name: Option<Cow<'static, str>>,
        /// Whether the pool runs threads, for the permit.
        runs_local: bool,
        ticket: Arc<Ticket>,
        /// The ticket, as a future.
        answer: Task<()>,
    },
    /// The permit (or the error) was handed out.
    Done,
}

impl Reserve {
    /// Asks `scheduler` for a place; `name` is the pool's default export, `runs_local`
    /// whether its workers are threads (which alone run local exports).
    pub(crate) fn new(
        scheduler: Arc<Scheduler>,
        name: Option<Cow<'static, str>>,
        runs_local: bool,
    ) -> Reserve {
        let state = match scheduler.request_place() {
            Request::Granted { counted } => State::Answered(Ok(Permit {
                scheduler,
                name,
                runs_local,
                holds_place: counted,
            })),
            Request::Refused(error) => State::Answered(Err(error)),
            Request::Waiting(ticket) => State::Waiting {
                scheduler,
                name,
                runs_local,
                answer: Task::new(ticket.clone()),
                ticket,
            },
        };
        Reserve { state }
    }

    /// Blocks until a place is granted, or the pool refuses: [`Error::Closed`] or
    /// [`Error::Terminated`] once it is closed or destroyed (a waiting `Reserve` fails then
    /// too), [`Error::NoQueue`] at once when it has no queue (`max_queue` 0). In async code,
    /// `.await` it instead.
    ///
    /// ```
    /// use tinypool::{Error, Exports, MaxQueue, Pool};
    ///
    /// let exports = || Exports::new().export_default(|n: u32| n);
    /// let unbounded = Pool::builder().exports(exports()).build()?;
    /// let permit = unbounded.reserve().wait()?; // At once: nothing to count.
    /// assert_eq!(permit.run::<u32, _>(1u32).wait()?, 1);
    ///
    /// let no_queue = Pool::builder()
    ///     .exports(exports())
    ///     .max_queue(MaxQueue::Limit(0))
    ///     .build()?;
    /// assert_eq!(no_queue.reserve().wait().unwrap_err(), Error::NoQueue);
    ///
    /// let closed = Pool::builder().exports(exports()).build()?;
    /// closed.close().wait()?;
    /// assert_eq!(closed.reserve().wait().unwrap_err(), Error::Closed);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn wait(mut self) -> Result<Permit, Error> {
        if let State::Waiting { ticket, .. } = &self.state {
            let outcome = ticket
                .slot()
                .wait(None)
                .expect("a wait without deadline returns a result");
            return self.finish(outcome);
        }
        match std::mem::replace(&mut self.state, State::Done) {
            State::Answered(result) => result,
            _ => panic!("tinypool::Reserve waited on after it returned its permit"),
        }
    }

    /// The permit a waiting request was granted, or its refusal.
    fn finish(&mut self, outcome: Result<(), Error>) -> Result<Permit, Error> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Waiting {
                scheduler,
                name,
                runs_local,
                ..
            } => outcome.map(|()| Permit {
                scheduler,
                name,
                runs_local,
                holds_place: true,
            }),
            _ => unreachable!("only a waiting request finishes"),
        }
    }
}

impl Future for Reserve {
    type Output = Result<Permit, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let State::Waiting { answer, .. } = &mut this.state {
            return match Pin::new(answer).poll(cx) {
                Poll::Ready(outcome) => Poll::Ready(this.finish(outcome)),
                Poll::Pending => Poll::Pending,
            };
        }
        match std::mem::replace(&mut this.state, State::Done) {
            State::Answered(result) => Poll::Ready(result),
            _ => panic!("tinypool::Reserve polled after it returned its permit"),
        }
    }
}

impl Drop for Reserve {
    fn drop(&mut self) {
        if let State::Waiting {
            scheduler, ticket, ..
        } = &self.state
        {
            scheduler.withdraw(ticket);
        }
    }
}

impl fmt::Debug for Reserve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let answered = match &self.state {
            State::Answered(_) | State::Done => true,
            State::Waiting { answer, .. } => answer.is_finished(),
        };
        f.debug_struct("Reserve")
            .field("answered", &answered)
            .finish()
    }
}

/// A place reserved in the pool's queue, from [`Pool::reserve`](crate::Pool::reserve): its
/// task, submitted with [`run`](Permit::run), [`run_with`](Permit::run_with),
/// [`call`](Permit::call) or [`call_with`](Permit::call_with), takes that place, so it never fails with [`Error::QueueFull`] (it still fails with [`Error::Closed`]
/// or [`Error::Terminated`] if the pool was closed or destroyed meanwhile).
///
/// While permits hold places, a plain [`Pool::run`](crate::Pool::run) that would have to
/// queue counts them as queued tasks. Dropping an unused permit gives its place to the next
/// waiting [`Reserve`]. With an unbounded queue, a permit holds nothing: there is nothing to
/// count. A thread that holds permits and waits for another may wait for ever if the places
/// it holds are the ones missing: use them, or drop them, first.
#[must_use = "a permit holds a place in the queue until it runs a task or is dropped"]
pub struct Permit {
    scheduler: Arc<Scheduler>,
    /// The pool's default export.
    name: Option<Cow<'static, str>>,
    /// Whether the pool's workers are threads, which alone run local exports.
    runs_local: bool,
    /// Holds one of `max_queue`'s places (not with an unbounded queue), until used or dropped.
    holds_place: bool,
}

impl Permit {
    /// Runs the pool's default export with `arg`, in the place this permit holds: like
    /// [`Pool::run`](crate::Pool::run), but never refused for room.
    ///
    /// ```
    /// use tinypool::{Exports, MaxQueue, Pool, Task};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|n: u64| n * n))
    ///     .max_threads(1)
    ///     .max_queue(MaxQueue::Limit(2))
    ///     .build()?;
    /// // However fast the loop goes, each task waits for its place: none is refused.
    /// let tasks: Vec<Task<u64>> = (0..50u64)
    ///     .map(|n| pool.reserve().wait().map(|permit| permit.run(n)))
    ///     .collect::<Result<_, _>>()?;
    /// let squares = tasks.into_iter().map(Task::wait).collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(squares[7], 49);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn run<R, A>(self, arg: A) -> Task<R>
    where
        A: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        self.run_with(arg, RunOptions::new())
    }

    /// Runs a task with options (another export, an abort signal, a channel) in the place
    /// this permit holds: like [`Pool::run_with`](crate::Pool::run_with), but never refused
    /// for room.
    ///
    /// ```
    /// use tinypool::{Exports, MaxQueue, Pool, RunOptions};
    ///
    /// let pool = Pool::builder()
    ///     .exports(
    ///         Exports::new()
    ///             .export_default(|n: u32| n)
    ///             .export("double", |n: u32| n * 2),
    ///     )
    ///     .max_queue(MaxQueue::Limit(8))
    ///     .build()?;
    /// let permit = pool.reserve().wait()?;
    /// let doubled = permit.run_with::<u32, _>(21u32, RunOptions::new().name("double"));
    /// assert_eq!(doubled.wait()?, 42);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn run_with<R, A>(mut self, arg: A, options: RunOptions) -> Task<R>
    where
        A: Serialize + Send + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        let mut options = options;
        if options.name.is_none() {
            options.name = self.name.clone();
        }
        // The task takes the place: the permit's drop gives nothing back.
        let reserved = std::mem::replace(&mut self.holds_place, false);
        self.scheduler
            .submit_reserved::<Serde, A, R>(arg, options, reserved)
    }

    /// Runs the export `export` names with `arg`, in the place this permit holds: like
    /// [`Pool::call`](crate::Pool::call) (the types checked by the compiler), but never
    /// refused for room. A [`Local`](crate::Local) handle runs only on a threads pool; on a
    /// child-process pool its task fails at once with [`Error::InvalidOptions`], and the
    /// place is given back.
    ///
    /// ```
    /// use tinypool::{Export, Exports, MaxQueue, Pool, Task};
    ///
    /// const SQUARE: Export<u64, u64> = Export::new("square");
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().register(SQUARE, |n| n * n))
    ///     .max_threads(1)
    ///     .max_queue(MaxQueue::Limit(2))
    ///     .build()?;
    /// let tasks: Vec<Task<u64>> = (0..20u64)
    ///     .map(|n| pool.reserve().wait().map(|permit| permit.call(SQUARE, n)))
    ///     .collect::<Result<_, _>>()?;
    /// let squares = tasks.into_iter().map(Task::wait).collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(squares[9], 81);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn call<A, R, W>(self, export: Export<A, R, W>, arg: A) -> Task<R>
    where
        W: Wire<A, R>,
        A: Send + 'static,
        R: Send + 'static,
    {
        self.call_with(export, arg, RunOptions::new())
    }

    /// [`call`](Permit::call) with options: an abort signal, a channel, a priority, a
    /// timeout. The handle names the export: a name in `options` is ignored.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tinypool::{Export, Exports, MaxQueue, Pool, RunOptions};
    ///
    /// const DOUBLE: Export<u32, u32> = Export::new("double");
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().register(DOUBLE, |n| n * 2))
    ///     .max_queue(MaxQueue::Limit(4))
    ///     .build()?;
    /// let permit = pool.reserve().wait()?;
    /// let options = RunOptions::new().timeout(Duration::from_secs(60)).name("ignored");
    /// assert_eq!(permit.call_with(DOUBLE, 21, options).wait()?, 42);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn call_with<A, R, W>(
        mut self,
        export: Export<A, R, W>,
        arg: A,
        options: RunOptions,
    ) -> Task<R>
    where
        W: Wire<A, R>,
        A: Send + 'static,
        R: Send + 'static,
    {
        if W::LOCAL && !self.runs_local {
            // Dropped unused: its place goes to the next waiter.
            return self.scheduler.refuse(export.refused_by_processes());
        }
        let mut options = options;
        options.name = Some(Cow::Borrowed(export.name()));
        let reserved = std::mem::replace(&mut self.holds_place, false);
        self.scheduler
            .submit_reserved::<W, A, R>(arg, options, reserved)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.holds_place {
            self.scheduler.release_place();
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("holds_place", &self.holds_place)
            .finish()
    }
}
