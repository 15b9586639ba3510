//! The two ends of a worker's channel, a socket and (on Linux) two rings of shared memory
//! (`ring.rs`): [`Outbound`], the pool's writing end (frames sent ahead never block the
//! driver), and [`Inlet`], either side's reading end (a read never waits forever); and `poll`.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ring::{Chunk, RingReader, RingWriter, INLINE_MAX};
use super::spawn::ExitWatch;
use crate::sync::{AtomicBool, Ordering};
use crate::wait::spin_until;

/// How often a waiting read looks at its worker's abort flag and deadline.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The pool's end of a child's channel, for writing: the driver's frames, and the messages of
/// a task's channel, which its bridge writes from the sender's thread.
///
/// Frames sent ahead never block the driver: what the ring and the socket do not take at once
/// waits here and goes out while the driver waits for results. Otherwise a driver blocked on
/// a full channel, and a child blocked writing a result nobody reads, would wait for each
/// other.
pub(crate) struct Outbound {
    stream: UnixStream,
    ring: Option<RingWriter>,
    /// Frames not yet placed: the ring was full.
    pending: VecDeque<Vec<u8>>,
    /// Bytes the socket owes the child, in order: the frames of a `SOCKET` chunk, nudges, or,
    /// without a ring, every frame.
    owed: Vec<u8>,
    /// The task whose channel is bridged to the child now; 0 for none.
    pub(crate) bridged: u64,
    /// Writing failed: the child is gone or going.
    pub(crate) broken: bool,
    /// The child: a ring it will never read again is not waited on.
    watch: ExitWatch,
}

impl Outbound {
    pub(crate) fn new(stream: UnixStream, watch: ExitWatch) -> Self {
        Outbound {
            stream,
            ring: None,
            pending: VecDeque::new(),
            owed: Vec::new(),
            bridged: 0,
            broken: false,
            watch,
        }
    }

    /// From now on, frames travel in `ring` (after the handshake).
    pub(crate) fn attach(&mut self, ring: RingWriter) {
        self.ring = Some(ring);
    }

    /// Queues `frame` behind what is pending, and sends what the channel takes.
    pub(crate) fn push(&mut self, frame: &[u8]) {
        if !(self.pending.is_empty() && self.place(frame)) {
            self.pending.push_back(frame.to_vec());
        }
        self.flush();
    }

    /// Sends what the channel takes of what waits; returns whether some still waits.
    pub(crate) fn flush(&mut self) -> bool {
        while let Some(frame) = self.pending.pop_front() {
            if !self.place(&frame) {
                self.pending.push_front(frame);
                break;
            }
        }
        self.send_owed();
        let waiting = !self.pending.is_empty() || !self.owed.is_empty();
        waiting && !self.broken
    }

    /// Pushes `frame` and waits until all of it is out (`INIT`, `STOP`), or `deadline`
    /// passes, or the child is gone.
    pub(crate) fn send_all(&mut self, frame: &[u8], deadline: Instant) -> Result<(), crate::Error> {
        self.push(frame);
        let mut nap = Duration::from_micros(20);
        while self.flush() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(crate::Error::Protocol {
                    message: "writing the worker channel: the child does not read".to_owned(),
                });
            }
            // Neither a full ring nor a full socket says that the child is gone: a process it
            // forked may hold the socket.
            if hung_up(&self.stream) || self.watch.exited() {
                self.broken = true;
                break;
            }
            if self.owed.is_empty() {
                // The ring is full: the child empties it as it reads, without telling.
                std::thread::sleep(nap.min(left));
                nap = (nap * 2).min(Duration::from_millis(1));
            } else {
                poll(&self.stream, true, left.min(POLL_INTERVAL));
            }
        }
        if self.broken {
            return Err(crate::Error::Protocol {
                message: "writing the worker channel: the child is gone".to_owned(),
            });
        }
        Ok(())
    }

    /// Puts `frame` in the ring, or announces it there and owes it on the socket; `false` if
    /// the ring is full.
    fn place(&mut self, frame: &[u8]) -> bool {
        match &mut self.ring {
            Some(ring) if frame.len() <= INLINE_MAX => {
                if !ring.try_inline(frame) {
                    return false;
                }
                if ring.reader_sleeping() && ring.nudge() {
                    self.owe(&[0]);
                }
            }
            Some(ring) => {
                if !ring.try_socket(frame.len()) {
                    return false;
                }
                self.owe(frame);
            }
            None => self.owe(frame),
        }
        true
    }

    /// Sends `bytes` after what the socket already owes, keeping what it does not take now.
    fn owe(&mut self, bytes: &[u8]) {
        if self.owed.is_empty() {
            let sent = self.send_some(bytes);
            self.owed.extend_from_slice(&bytes[sent..]);
        } else {
            self.owed.extend_from_slice(bytes);
        }
    }

    fn send_owed(&mut self) {
        if !self.owed.is_empty() {
            let owed = std::mem::take(&mut self.owed);
            let sent = self.send_some(&owed);
            self.owed = owed;
            self.owed.drain(..sent);
        }
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
                continue;
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::WouldBlock => break,
                io::ErrorKind::Interrupted => {}
                _ => {
                    self.broken = true;
                    self.pending.clear();
                    self.owed.clear();
                }
            }
        }
        sent
    }

    /// Sends a frame of task `task`'s channel, unless the task has finished (the child would
    /// drop it).
    ///
    /// It never waits for the child (which may not be reading, or be stopped): the sender
    /// holds the channel's lock meanwhile, and `abort` and `destroy` need it. What the channel
    /// does not take now waits in order, as in an unbounded channel, and the driver sends it
    /// while it waits for the task's result.
    pub(crate) fn send_port(&mut self, task: u64, frame: &[u8]) -> Result<(), crate::Error> {
        if self.bridged != task {
            return Ok(());
        }
        self.push(frame);
        if self.broken {
            return Err(crate::Error::Protocol {
                message: "writing the worker channel: the child is gone".to_owned(),
            });
        }
        Ok(())
    }

    /// Whether what waits to be sent waits for the socket to take more (rather than for the
    /// child to make room in the ring, which it does without telling).
    pub(crate) fn owes_socket(&self) -> bool {
        !self.owed.is_empty()
    }
}

/// A side's reading end: the stream of frames from the other side, out of the ring and the
/// socket in the order the ring gives (see `ring.rs`), or from the socket alone before the
/// handshake ends or without a ring.
///
/// A read waits as the pool's waits do (spin, then sleep in `poll`), and, while it waits,
/// checks every `POLL_INTERVAL` whether the worker was retired (`aborted`: abort, destroy) or
/// `deadline` passed (handshake, stop), and then gives up: a child that stops in the middle
/// of a frame cannot hold its worker, or `destroy`, forever. The child's side has neither.
pub(crate) struct Inlet {
    pub(crate) stream: UnixStream,
    ring: Option<RingReader>,
    /// Bytes of the stream a chunk announced on the socket, not read yet.
    on_socket: usize,
    /// Bytes of nudges on the socket, to skip.
    to_skip: usize,
    pub(crate) aborted: Option<Arc<AtomicBool>>,
    pub(crate) deadline: Option<Instant>,
    /// The pool's side: the child at the other end. Its death ends a wait too, since a process
    /// it forked may keep the socket open.
    watch: Option<ExitWatch>,
}

impl Inlet {
    /// The child's end (no abort flag, no child to watch), or the pool's end of a child's
    /// channel (`aborted`, `watch`).
    pub(crate) fn new(
        stream: UnixStream,
        aborted: Option<Arc<AtomicBool>>,
        watch: Option<ExitWatch>,
    ) -> Self {
        Inlet {
            stream,
            ring: None,
            on_socket: 0,
            to_skip: 0,
            aborted,
            deadline: None,
            watch,
        }
    }

    /// Whether the child at the other end has exited (the pool's side).
    pub(crate) fn child_exited(&self) -> bool {
        self.watch.as_ref().is_some_and(ExitWatch::exited)
    }

    /// From now on, frames arrive by `ring` (after the handshake).
    pub(crate) fn attach(&mut self, ring: RingReader) {
        self.ring = Some(ring);
    }

    /// Whether a read finds bytes of a frame without sleeping (bytes a chunk announced on
    /// the socket count: a read waits for them with its deadline). Nudges do not count: it
    /// steps past them.
    pub(crate) fn ready(&mut self) -> bool {
        let Some(ring) = &mut self.ring else {
            return poll_readable(&self.stream, Duration::ZERO);
        };
        if self.on_socket > 0 {
            return true;
        }
        loop {
            match ring.chunk() {
                Ok(Some(Chunk::Nudge(len))) => {
                    ring.skip();
                    self.to_skip += len;
                }
                Ok(None) => return false,
                // A read then reports a corrupt ring.
                Ok(Some(_)) | Err(_) => return true,
            }
        }
    }

    /// Sleeps up to `timeout` until there is something to read (or the socket's end), or, if
    /// `write`, until the socket takes more; returns (readable, writable).
    /// The child's exit ends the sleep early (with nothing readable).
    pub(crate) fn sleep(&mut self, write: bool, timeout: Duration) -> (bool, bool) {
        let exit_fd = self.watch.as_ref().and_then(ExitWatch::fd);
        let Some(ring) = &self.ring else {
            return poll_watching(&self.stream, exit_fd, write, timeout);
        };
        ring.set_sleeping(true);
        if self.ready() {
            self.set_awake();
            return (true, false);
        }
        let (readable, writable) = poll_watching(&self.stream, exit_fd, write, timeout);
        self.set_awake();
        if self.ready() {
            return (true, writable);
        }
        if readable {
            // Nudges that woke it are skipped; bytes beyond them, which no chunk announced,
            // are the socket's end (or a broken peer), which a read reports.
            self.skip_nudges();
            let more = self.to_skip == 0 && poll_readable(&self.stream, Duration::ZERO);
            return (more || self.ready(), writable);
        }
        (false, writable)
    }

    fn set_awake(&self) {
        if let Some(ring) = &self.ring {
            ring.set_sleeping(false);
        }
    }

    /// Skips the nudge bytes already on the socket.
    fn skip_nudges(&mut self) {
        while self.to_skip > 0 {
            let mut nudges = [0u8; 16];
            let n = self.to_skip.min(nudges.len());
            match self.recv_now(&mut nudges[..n]) {
                Ok(Some(read)) if read > 0 => self.to_skip -= read,
                _ => return,
            }
        }
    }

    /// Reads what the socket holds now: `None` if nothing.
    fn recv_now(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
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
                return Ok(Some(read as usize));
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock => return Ok(None),
                io::ErrorKind::Interrupted => {}
                _ => return Err(error),
            }
        }
    }

    /// Drops what the ring holds, so that a child blocked on a full ring can exit.
    pub(crate) fn discard(&mut self) {
        if let Some(ring) = &mut self.ring {
            ring.discard();
        }
    }

    /// Whether waiting must stop: the worker was retired, the deadline passed, or the child
    /// exited.
    fn give_up(&self) -> io::Result<()> {
        if self.child_exited() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the child exited",
            ));
        }
        let late = self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline);
        let aborted = self
            .aborted
            .as_ref()
            .is_some_and(|aborted| aborted.load(Ordering::Acquire));
        if late || aborted {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the child stopped in the middle of a message",
            ));
        }
        Ok(())
    }

    /// How long one sleep may last: until the deadline, and short enough to notice an abort;
    /// unbounded in the child, which has neither (so an idle worker never wakes).
    fn wait_time(&self) -> Duration {
        let check = match self.aborted {
            Some(_) => POLL_INTERVAL,
            None => Duration::from_secs(3600),
        };
        self.deadline.map_or(check, |deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .min(check)
        })
    }

    /// Reads from the socket, waiting for it.
    fn read_socket(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(read) = self.recv_now(buf)? {
                return Ok(read);
            }
            if !poll_readable(&self.stream, self.wait_time()) {
                self.give_up()?;
            }
        }
    }

    /// Waits for the next chunk; `Ok(false)` at the socket's end.
    fn wait_chunk(&mut self) -> io::Result<bool> {
        if spin_until(|| self.ready()) {
            return Ok(true);
        }
        loop {
            let (readable, _) = self.sleep(false, self.wait_time());
            if self.ready() {
                return Ok(true);
            }
            if readable {
                let mut byte = [0u8; 1];
                match self.recv_now(&mut byte)? {
                    Some(0) => return Ok(false),
                    Some(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "bytes on the socket that no chunk announced",
                        ))
                    }
                    None => {}
                }
            }
            self.give_up()?;
        }
    }
}

impl Read for Inlet {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ring.is_none() {
            return self.read_socket(buf);
        }
        loop {
            if self.to_skip > 0 {
                let mut nudges = [0u8; 16];
                let n = self.to_skip.min(nudges.len());
                match self.read_socket(&mut nudges[..n])? {
                    0 => return Ok(0),
                    read => self.to_skip -= read,
                }
                continue;
            }
            if self.on_socket > 0 {
                let n = self.on_socket.min(buf.len());
                let read = self.read_socket(&mut buf[..n])?;
                self.on_socket -= read;
                return Ok(read);
            }
            let ring = self.ring.as_mut().expect("checked above");
            match ring.chunk()? {
                Some(Chunk::Inline { at, len }) => return Ok(ring.copy_out(at, len, buf)),
                Some(Chunk::Socket(len)) => {
                    ring.skip();
                    self.on_socket = len;
                }
                Some(Chunk::Nudge(len)) => {
                    ring.skip();
                    self.to_skip = len;
                }
                None => {
                    if !self.wait_chunk()? {
                        return Ok(0);
                    }
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

/// Whether the other side closed its end (it exited, or was killed): writes to a ring it no
/// longer reads would wait forever.
pub(crate) fn hung_up(stream: &UnixStream) -> bool {
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call; it never blocks.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready > 0 && fd.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

/// Waits up to `timeout` for `stream` to be readable (or closed).
pub(crate) fn poll_readable(stream: &UnixStream, timeout: Duration) -> bool {
    poll(stream, false, timeout).0
}

/// Waits up to `timeout` for `stream` to be readable (or closed), or, if `write`, writable;
/// returns (readable, writable).
pub(crate) fn poll(stream: &UnixStream, write: bool, timeout: Duration) -> (bool, bool) {
    poll_watching(stream, None, write, timeout)
}

/// [`poll`], also woken (with nothing to report) when `exit_fd` becomes readable.
fn poll_watching(
    stream: &UnixStream,
    exit_fd: Option<RawFd>,
    write: bool,
    timeout: Duration,
) -> (bool, bool) {
    let mut fds = [
        libc::pollfd {
            fd: stream.as_raw_fd(),
            events: if write {
                libc::POLLIN | libc::POLLOUT
            } else {
                libc::POLLIN
            },
            revents: 0,
        },
        libc::pollfd {
            // A negative fd is ignored by poll.
            fd: exit_fd.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let millis = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: two valid pollfds, for the duration of the call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, millis) };
    let revents = if ready > 0 { fds[0].revents } else { 0 };
    (revents & !libc::POLLOUT != 0, revents & libc::POLLOUT != 0)
}
