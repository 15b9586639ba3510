//! Message channels between a caller and a running task.

use std::any::{type_name, Any};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::Serialization;
use crate::sync::lock;
use crate::Error;

/// Creates a channel: two connected [`Port`]s. What one sends, the other receives, in order.
///
/// Give one port to a task with [`RunOptions::channel`](crate::RunOptions::channel); the task
/// reaches it with [`worker::port`](crate::worker::port). Messages move without serialization in
/// the threads runtime. When the task ends its side closes: the caller still receives what was
/// sent, then [`Error::Disconnected`].
///
/// A task that needs its caller's answer midway:
///
/// ```
/// use tinypool::{worker, Error, Exports, Pool, RunOptions};
///
/// let pool = Pool::builder()
///     .exports(Exports::new().export_default(|path: String| {
///         let dialog = worker::port::<String>().expect("run with a channel");
///         dialog.send(format!("overwrite {path}?")).expect("the caller listens");
///         dialog.recv().is_ok_and(|answer| answer == "yes")
///     }))
///     .build()?;
///
/// let (dialog, port) = tinypool::channel::<String>();
/// let task = pool.run_with::<bool, _>("out.txt".to_owned(), RunOptions::new().channel(port));
/// assert_eq!(dialog.recv()?, "overwrite out.txt?");
/// dialog.send("yes".to_owned())?;
/// assert!(task.wait()?);
/// assert_eq!(dialog.recv(), Err(Error::Disconnected)); // The task ended.
/// # Ok::<(), tinypool::Error>(())
/// ```
///
/// Ports need no pool (in a unit test of an exported function's partner, say):
///
/// ```
/// let (a, b) = tinypool::channel::<String>();
/// a.send("hello".to_owned())?;
/// assert_eq!(b.recv()?, "hello");
/// drop(a);
/// assert_eq!(b.recv(), Err(tinypool::Error::Disconnected));
/// # Ok::<(), tinypool::Error>(())
/// ```
pub fn channel<T>() -> (Port<T>, Port<T>)
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    let core = Arc::new(Core {
        inboxes: [Mutex::default(), Mutex::default()],
        arrived: [Condvar::new(), Condvar::new()],
        handles: [AtomicUsize::new(1), AtomicUsize::new(1)],
    });
    (
        Port {
            core: core.clone(),
            side: 0,
        },
        Port { core, side: 1 },
    )
}

/// Called, instead of queuing, for each message sent to a side that lives in another process.
type Forward<T> = Box<dyn Fn(T) -> Result<(), Error> + Send>;

/// Messages on their way to one side.
struct Inbox<T> {
    messages: VecDeque<T>,
    /// Set when this side is bridged to a child process.
    forward: Option<Forward<T>>,
    /// Tells the bridged side that the other side closed.
    on_peer_close: Option<Box<dyn FnOnce() + Send>>,
    /// This side is closed: sending to it fails.
    closed: bool,
    /// The other side is closed: once drained, receiving fails.
    peer_closed: bool,
    wakers: Vec<Waker>,
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Inbox {
            messages: VecDeque::new(),
            forward: None,
            on_peer_close: None,
            closed: false,
            peer_closed: false,
            wakers: Vec::new(),
        }
    }
}

struct Core<T> {
    inboxes: [Mutex<Inbox<T>>; 2],
    arrived: [Condvar; 2],
    /// Live `Port` handles per side; the side closes when its last handle goes.
    handles: [AtomicUsize; 2],
}

impl<T> Core<T> {
    fn notify(&self, side: usize, mut inbox: MutexGuard<'_, Inbox<T>>) {
        let wakers = std::mem::take(&mut inbox.wakers);
        drop(inbox);
        self.arrived[side].notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }

    fn close(&self, side: usize) {
        let mut own = lock(&self.inboxes[side]);
        own.closed = true;
        own.forward = None;
        self.notify(side, own);
        let mut peer = lock(&self.inboxes[1 - side]);
        peer.peer_closed = true;
        if let Some(on_peer_close) = peer.on_peer_close.take() {
            on_peer_close();
        }
        self.notify(1 - side, peer);
    }
}

/// One end of a [`channel`]. Clones share the same end.
pub struct Port<T> {
    core: Arc<Core<T>>,
    side: usize,
}

impl<T: Send + 'static> Port<T> {
    /// Sends `message` to the other side; [`Error::Disconnected`] if either side is closed.
    ///
    /// It never blocks: messages queue until received. A task reporting its results as it
    /// goes:
    ///
    /// ```
    /// use tinypool::{worker, Error, Exports, Pool, RunOptions};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|count: u32| {
    ///         let lines = worker::port::<String>().expect("run with a channel");
    ///         for i in 1..=count {
    ///             lines.send(format!("line {i}")).expect("the caller listens");
    ///         }
    ///         count
    ///     }))
    ///     .build()?;
    /// let (lines, port) = tinypool::channel::<String>();
    /// let task = pool.run_with::<u32, _>(2u32, RunOptions::new().channel(port));
    /// assert_eq!(task.wait()?, 2);
    /// assert_eq!(lines.recv()?, "line 1"); // Sent before the task ended: still there.
    /// assert_eq!(lines.recv()?, "line 2");
    /// // The task's side closed when it ended: nobody would read this.
    /// assert_eq!(lines.send("more".to_owned()), Err(Error::Disconnected));
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn send(&self, message: T) -> Result<(), Error> {
        let peer = 1 - self.side;
        let mut inbox = lock(&self.core.inboxes[peer]);
        if inbox.closed || inbox.peer_closed {
            return Err(Error::Disconnected);
        }
        if let Some(forward) = &inbox.forward {
            return forward(message);
        }
        inbox.messages.push_back(message);
        self.core.notify(peer, inbox);
        Ok(())
    }

    /// From now on, messages sent to this side go to `forward` (what already waits here goes
    /// first, in order). Used where this side's reader is in another process.
    /// `on_peer_close` runs once the other side closes (at once if it already has).
    #[cfg_attr(not(unix), allow(dead_code))] // Used by the child-process runtime (Unix).
    pub(crate) fn forward_to(
        &self,
        forward: Forward<T>,
        on_peer_close: Box<dyn FnOnce() + Send>,
    ) -> Result<(), Error> {
        let mut inbox = lock(&self.core.inboxes[self.side]);
        while let Some(message) = inbox.messages.pop_front() {
            forward(message)?;
        }
        inbox.forward = Some(forward);
        if inbox.peer_closed {
            on_peer_close();
        } else {
            inbox.on_peer_close = Some(on_peer_close);
        }
        Ok(())
    }

    /// Blocks until a message arrives; [`Error::Disconnected`] once the other side is closed
    /// and every message it sent has been received.
    ///
    /// So a loop over `recv` reads everything, then ends. A task that adds up what its caller
    /// sends until the caller hangs up:
    ///
    /// ```
    /// use tinypool::{worker, Exports, Pool, RunOptions};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|()| {
    ///         let numbers = worker::port::<u64>().expect("run with a channel");
    ///         let mut sum = 0;
    ///         while let Ok(n) = numbers.recv() {
    ///             sum += n;
    ///         }
    ///         sum
    ///     }))
    ///     .build()?;
    /// let (numbers, port) = tinypool::channel::<u64>();
    /// let task = pool.run_with::<u64, _>((), RunOptions::new().channel(port));
    /// for n in 1..=4 {
    ///     numbers.send(n)?;
    /// }
    /// drop(numbers); // The task receives all four, then `Disconnected`.
    /// assert_eq!(task.wait()?, 10);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn recv(&self) -> Result<T, Error> {
        let mut inbox = lock(&self.core.inboxes[self.side]);
        loop {
            if let Some(message) = Self::take(&mut inbox)? {
                return Ok(message);
            }
            inbox = self.core.arrived[self.side]
                .wait(inbox)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Like [`recv`](Port::recv), but gives up after `timeout` with `Ok(None)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tinypool::{worker, Exports, Pool, RunOptions};
    ///
    /// # // Answers one message, in capitals.
    /// # let pool = Pool::builder()
    /// #     .exports(Exports::new().export_default(|()| {
    /// #         let port = worker::port::<String>().unwrap();
    /// #         if let Ok(message) = port.recv() {
    /// #             let _ = port.send(message.to_uppercase());
    /// #         }
    /// #     }))
    /// #     .build()?;
    /// let (caller, port) = tinypool::channel::<String>();
    /// let task = pool.run_with::<(), _>((), RunOptions::new().channel(port));
    /// // The task answers only when asked: nothing comes, and the caller gives up.
    /// assert_eq!(caller.recv_timeout(Duration::from_millis(10))?, None);
    ///
    /// caller.send("ping".to_owned())?;
    /// let answer = caller.recv_timeout(Duration::from_secs(10))?;
    /// assert_eq!(answer.as_deref(), Some("PING"));
    /// task.wait()?;
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<T>, Error> {
        let deadline = Instant::now().checked_add(timeout);
        let mut inbox = lock(&self.core.inboxes[self.side]);
        loop {
            if let Some(message) = Self::take(&mut inbox)? {
                return Ok(Some(message));
            }
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return Ok(None);
            }
            inbox = self.core.arrived[self.side]
                .wait_timeout(inbox, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Receives a message if one is waiting: `Ok(None)` if none is.
    ///
    /// Like [`recv`](Port::recv), it fails with [`Error::Disconnected`] only once the other
    /// side is closed and drained.
    ///
    /// ```
    /// use tinypool::{worker, Error, Exports, Pool, RunOptions};
    ///
    /// # // Answers one message, in capitals.
    /// # let pool = Pool::builder()
    /// #     .exports(Exports::new().export_default(|()| {
    /// #         let port = worker::port::<String>().unwrap();
    /// #         if let Ok(message) = port.recv() {
    /// #             let _ = port.send(message.to_uppercase());
    /// #         }
    /// #     }))
    /// #     .build()?;
    /// let (caller, port) = tinypool::channel::<String>();
    /// let task = pool.run_with::<(), _>((), RunOptions::new().channel(port));
    /// assert_eq!(caller.try_recv()?, None); // The task answers only when asked.
    ///
    /// caller.send("ping".to_owned())?;
    /// task.wait()?;
    /// assert_eq!(caller.try_recv()?.as_deref(), Some("PING"));
    /// assert_eq!(caller.try_recv(), Err(Error::Disconnected)); // Drained, and the task ended.
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn try_recv(&self) -> Result<Option<T>, Error> {
        Self::take(&mut lock(&self.core.inboxes[self.side]))
    }

    /// A future that resolves to the next message (as [`recv`](Port::recv) would return it),
    /// without blocking a thread.
    ///
    /// In async code, this is how the caller follows a task: the executor's thread stays free.
    ///
    /// ```
    /// use tinypool::{worker, Exports, Pool, RunOptions};
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # rt.block_on(async {
    /// // Reports its progress as it goes.
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default(|files: u32| {
    ///         let progress = worker::port::<u32>().expect("run with a channel");
    ///         for done in 1..=files {
    ///             progress.send(done).expect("the caller listens");
    ///         }
    ///         files
    ///     }))
    ///     .build()?;
    /// let (progress, port) = tinypool::channel::<u32>();
    /// let task = pool.run_with::<u32, _>(3u32, RunOptions::new().channel(port));
    /// let mut seen = Vec::new();
    /// while let Ok(done) = progress.recv_async().await {
    ///     seen.push(done); // Update a progress bar, say.
    /// }
    /// assert_eq!(seen, [1, 2, 3]);
    /// assert_eq!(task.await?, 3);
    /// pool.destroy().await
    /// # })?;
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn recv_async(&self) -> Recv<'_, T> {
        Recv { port: self }
    }

    /// Closes this side for every handle: the other side drains what was sent, then gets
    /// [`Error::Disconnected`], and sending to this side fails.
    ///
    /// Dropping a handle closes the side only when it was the last; `close` ends the
    /// conversation even while clones live elsewhere:
    ///
    /// ```
    /// use tinypool::{worker, Error, Exports, Pool, RunOptions};
    ///
    /// # // Adds up what its caller sends, until the caller hangs up.
    /// # let pool = Pool::builder()
    /// #     .exports(Exports::new().export_default(|()| {
    /// #         let numbers = worker::port::<u64>().unwrap();
    /// #         std::iter::from_fn(|| numbers.recv().ok()).sum::<u64>()
    /// #     }))
    /// #     .build()?;
    /// let (numbers, port) = tinypool::channel::<u64>();
    /// let task = pool.run_with::<u64, _>((), RunOptions::new().channel(port));
    /// let feeder = numbers.clone(); // Held by another thread, say.
    /// for n in 1..=4 {
    ///     feeder.send(n)?;
    /// }
    /// numbers.close(); // No more input: the task drains 1..=4, then stops.
    /// assert_eq!(task.wait()?, 10);
    /// assert_eq!(feeder.send(5), Err(Error::Disconnected));
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn close(&self) {
        self.core.close(self.side);
    }

    fn take(inbox: &mut Inbox<T>) -> Result<Option<T>, Error> {
        match inbox.messages.pop_front() {
            Some(message) => Ok(Some(message)),
            None if inbox.closed || inbox.peer_closed => Err(Error::Disconnected),
            None => Ok(None),
        }
    }
}

impl<T> Clone for Port<T> {
    fn clone(&self) -> Self {
        self.core.handles[self.side].fetch_add(1, Ordering::Relaxed);
        Port {
            core: self.core.clone(),
            side: self.side,
        }
    }
}

impl<T> Drop for Port<T> {
    fn drop(&mut self) {
        if self.core.handles[self.side].fetch_sub(1, Ordering::AcqRel) == 1 {
            self.core.close(self.side);
        }
    }
}

impl<T> fmt::Debug for Port<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Port")
            .field("type", &type_name::<T>())
            .field("side", &self.side)
            .finish()
    }
}

/// The future returned by [`Port::recv_async`].
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a, T> {
    port: &'a Port<T>,
}

impl<T: Send + 'static> Future for Recv<'_, T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let port = self.port;
        let mut inbox = lock(&port.core.inboxes[port.side]);
        match Port::take(&mut inbox) {
            Ok(Some(message)) => Poll::Ready(Ok(message)),
            Err(error) => Poll::Ready(Err(error)),
            Ok(None) => {
                if !inbox.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    inbox.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl<T> fmt::Debug for Recv<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv").field("port", self.port).finish()
    }
}

/// A port with its message type erased, as a task carries it to its worker.
#[cfg_attr(not(unix), allow(dead_code))] // Used by the child-process runtime (Unix).
pub(crate) trait ErasedPort: Send + Sync {
    /// The `Port<T>` itself.
    fn as_any(&self) -> &dyn Any;
    /// `T`'s name, for the error when a worker asks for another type.
    fn message_type(&self) -> &'static str;
    /// Closes this side (the task ended).
    fn close(&self);
    /// Bridges this side to a child process: messages for it are encoded and handed to
    /// `send`; `closed` runs when the other side closes.
    fn forward_encoded(
        &self,
        codec: Serialization,
        send: Box<dyn Fn(Vec<u8>) -> Result<(), Error> + Send>,
        closed: Box<dyn FnOnce() + Send>,
    ) -> Result<(), Error>;
    /// Sends, from this side, a message that arrived encoded from a child process.
    fn send_encoded(&self, codec: Serialization, message: &[u8]) -> Result<(), Error>;
}

impl<T> ErasedPort for Port<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn message_type(&self) -> &'static str {
        type_name::<T>()
    }

    fn close(&self) {
        Port::close(self);
    }

    fn forward_encoded(
        &self,
        codec: Serialization,
        send: Box<dyn Fn(Vec<u8>) -> Result<(), Error> + Send>,
        closed: Box<dyn FnOnce() + Send>,
    ) -> Result<(), Error> {
        self.forward_to(
            Box::new(move |message: T| send(codec.encode(&message)?)),
            closed,
        )
    }

    fn send_encoded(&self, codec: Serialization, message: &[u8]) -> Result<(), Error> {
        self.send(codec.decode(message)?)
    }
}
