//! The pool's end of a child's socket: [`Outbound`] for writing (frames sent ahead never block
//! the driver), [`ChildStream`] for reading (a read never waits forever), and `poll`.

use std::io::{self, Read};
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shared_page::{Direction, SharedPage};
use crate::protocol::write_frame;
use crate::sync::{AtomicBool, Ordering};
use crate::Error;

/// How often a waiting read looks at its worker's abort flag and deadline.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The pool's end of a child's socket, for writing: the driver's frames, and the messages of a
/// task's channel, which its bridge writes from the sender's thread.
///
/// Frames sent ahead never block the driver: what the socket does not take at once waits in
/// `pending` and goes out while the driver waits for results. Otherwise a driver blocked on a
/// full socket, and a child blocked writing a result nobody reads, would wait for each other.
pub(crate) struct Outbound {
    pub(crate) stream: UnixStream,
    /// Bytes written to the socket only in part; always whole frames when empty.
    pub(crate) pending: Vec<u8>,
    /// The task whose channel is bridged to the child now; 0 for none.
    pub(crate) bridged: u64,
    /// Writing failed: the child is gone or going.
    pub(crate) broken: bool,
    /// Where this side counts its writes, for the child to spin on.
    pub(crate) page: Option<Arc<SharedPage>>,
}

impl Outbound {
    /// Queues `frame` behind what is pending, and sends what the socket takes.
    pub(crate) fn push(&mut self, frame: &[u8]) {
        if self.pending.is_empty() {
            let sent = self.send_some(frame);
            self.pending.extend_from_slice(&frame[sent..]);
        } else {
            self.pending.extend_from_slice(frame);
            self.flush();
        }
    }

    /// Sends what the socket takes of `pending`; returns whether some is still pending.
    pub(crate) fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let mut pending = std::mem::take(&mut self.pending);
        let sent = self.send_some(&pending);
        if !self.broken {
            pending.drain(..sent);
            self.pending = pending;
        }
        !self.pending.is_empty()
    }

    /// Writes what the socket takes of `bytes` without blocking; returns how much.
    fn send_some(&mut self, bytes: &[u8]) -> usize {
        let mut sent = 0;
        while sent < bytes.len() && !self.broken {
            // SAFETY: send from a slice borrowed for the call; it never blocks, and a closed
            // peer is an error (EPIPE), not a SIGPIPE.
            let written = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    bytes[sent..].as_ptr().cast(),
                    bytes.len() - sent,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if written >= 0 {
                sent += written as usize;
                if let Some(page) = &self.page {
                    page.bump(Direction::ToChild);
                }
                continue;
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::WouldBlock => break,
                io::ErrorKind::Interrupted => {}
                _ => {
                    self.broken = true;
                    self.pending.clear();
                }
            }
        }
        sent
    }

    /// Sends a frame of task `task`'s channel, unless the task has finished (the child would
    /// drop it). Nothing is pending while a channel is bridged: its task runs alone.
    pub(crate) fn send_port(&mut self, task: u64, frame: &[u8]) -> Result<(), Error> {
        if self.bridged != task {
            return Ok(());
        }
        write_frame(&mut self.stream, frame)?;
        if let Some(page) = &self.page {
            page.bump(Direction::ToChild);
        }
        Ok(())
    }
}

/// The pool's end of a child's socket, as the frame reader reads it. A read waiting for the
/// rest of a frame checks every `POLL_INTERVAL` whether the worker was retired (abort,
/// destroy) or `deadline` passed (handshake, stop), and then gives up: a child that stops in
/// the middle of a frame cannot hold its worker, or `destroy`, forever.
pub(crate) struct ChildStream {
    pub(crate) stream: UnixStream,
    pub(crate) aborted: Arc<AtomicBool>,
    pub(crate) deadline: Option<Instant>,
}

impl Deref for ChildStream {
    type Target = UnixStream;

    fn deref(&self) -> &UnixStream {
        &self.stream
    }
}

impl Read for ChildStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: recv into `buf`, borrowed for the call; MSG_DONTWAIT never blocks.
            let read = unsafe {
                libc::recv(
                    self.stream.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if read >= 0 {
                return Ok(read as usize);
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::WouldBlock {
                return Err(error);
            }
            let wait = self.deadline.map_or(POLL_INTERVAL, |deadline| {
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(POLL_INTERVAL)
            });
            if !poll_readable(&self.stream, wait) {
                let late = self
                    .deadline
                    .is_some_and(|deadline| Instant::now() >= deadline);
                if late || self.aborted.load(Ordering::Acquire) {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the child stopped in the middle of a message",
                    ));
                }
            }
        }
    }
}

/// Whether the other end of `stream` is closed: a read would say end of stream at once.
pub(crate) fn peer_closed(stream: &UnixStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a byte we own; it never blocks.
    let peeked = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    peeked == 0
}

/// Waits up to `timeout` for `stream` to be readable (or closed).
pub(crate) fn poll_readable(stream: &UnixStream, timeout: Duration) -> bool {
    poll(stream, false, timeout).0
}

/// Waits up to `timeout` for `stream` to be readable (or closed), or, if `write`, writable;
/// returns (readable, writable).
pub(crate) fn poll(stream: &UnixStream, write: bool, timeout: Duration) -> (bool, bool) {
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: if write {
            libc::POLLIN | libc::POLLOUT
        } else {
            libc::POLLIN
        },
        revents: 0,
    };
    let millis = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, for the duration of the call.
    let ready = unsafe { libc::poll(&mut fd, 1, millis) };
    let readable = ready > 0 && fd.revents & !libc::POLLOUT != 0;
    (readable, ready > 0 && fd.revents & libc::POLLOUT != 0)
}
