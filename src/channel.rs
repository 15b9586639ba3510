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
use crate::wait::lock;
use crate::Error;

/// Creates a channel: two connected [`Port`]s. What one sends, the other receives, in order.
///
/// Give one port to a task with [`RunOptions::channel`](crate::RunOptions::channel); the task
/// reaches it with [`worker::port`](crate::worker::port). Messages move without serialization in
/// the threads runtime. When the task ends its side closes: the caller still receives what was
/// sent, then [`Error::Disconnected`].
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
    pub fn try_recv(&self) -> Result<Option<T>, Error> {
        Self::take(&mut lock(&self.core.inboxes[self.side]))
    }

    /// A future that resolves to the next message (as [`recv`](Port::recv) would return it),
    /// without blocking a thread.
    pub fn recv_async(&self) -> Recv<'_, T> {
        Recv { port: self }
    }

    /// Closes this side for every handle: the other side drains what was sent, then gets
    /// [`Error::Disconnected`], and sending to this side fails.
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
