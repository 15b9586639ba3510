//! [`Reader`], either side's reading end: the frames from the other side, out of the ring,
//! the shared slot for big frames and the socket in the order the ring gives, or from the
//! socket alone (before the handshake ends, or without a ring).

use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bulk::BulkReader;
use super::exit::ExitWatch;
use super::ring::{Chunk, RingReader};
#[cfg(unix)]
use super::stream::poll_woken;
use super::stream::{peer_closed, poll, poll_readable, recv_now, settle};
#[cfg(unix)]
use super::wake::Wake;
use super::Channel;
use super::POLL_INTERVAL;
use crate::protocol::{read_frame, Frame};
use crate::sync::{AtomicBool, Ordering};
use crate::wait::spin_until;
use crate::Error;

/// A side's reading end, buffered: a pool sends many tasks in one write when it has them.
///
/// A read waits as the pool's waits do (spin, then sleep in `poll`), and, while it waits,
/// checks every `POLL_INTERVAL` whether the worker was retired (`retired`: abort, destroy) or
/// the deadline passed (handshake, stop), and then gives up: a peer that stops in the middle
/// of a frame cannot hold its worker, or `destroy`, forever. The child's side has no abort
/// flag, and a deadline only for `INIT`.
pub(crate) struct Reader {
    buffered: BufReader<Stream>,
}

/// The bytes of the stream, unbuffered.
struct Stream {
    socket: Channel,
    ring: Option<RingReader>,
    /// The slot for big frames (with a ring only).
    bulk: Option<BulkReader>,
    /// Bytes of the stream a chunk announced on the socket, not read yet.
    on_socket: usize,
    /// Bytes of nudges on the socket, to skip.
    to_skip: usize,
    retired: Option<Arc<AtomicBool>>,
    deadline: Option<Instant>,
    /// The pool's side: the child at the other end. Its death ends a wait too, since a process
    /// it forked may keep the socket open.
    peer: Option<ExitWatch>,
    /// The pool's side of a child with async exports: a ring of the worker's doorbell ends a
    /// sleep too, while `listening` (see [`Reader::listen`]).
    #[cfg(unix)]
    wake: Option<Wake>,
    #[cfg(unix)]
    listening: bool,
}

impl Reader {
    /// The pool's end of a child's channel: a wait also ends when the worker is retired
    /// (`retired`) or the child exits.
    pub(crate) fn from_child(socket: Channel, retired: Arc<AtomicBool>, peer: ExitWatch) -> Self {
        Reader::new(socket, Some(retired), Some(peer))
    }

    /// The child's end: nothing ends a wait but the pool's data, its end, or the deadline.
    pub(crate) fn from_pool(socket: Channel) -> Self {
        Reader::new(socket, None, None)
    }

    fn new(socket: Channel, retired: Option<Arc<AtomicBool>>, peer: Option<ExitWatch>) -> Self {
        let stream = Stream {
            socket,
            ring: None,
            bulk: None,
            on_socket: 0,
            to_skip: 0,
            retired,
            deadline: None,
            peer,
            #[cfg(unix)]
            wake: None,
            #[cfg(unix)]
            listening: false,
        };
        Reader {
            buffered: BufReader::with_capacity(64 << 10, stream),
        }
    }

    /// From now on, frames arrive by `ring` (after the handshake).
    pub(crate) fn attach(&mut self, ring: RingReader) {
        debug_assert!(
            self.buffered.buffer().is_empty(),
            "nothing read past the handshake"
        );
        self.buffered.get_mut().ring = Some(ring);
    }

    /// From now on, a ring of the doorbell `wake` listens to ends a sleep (with nothing to
    /// read) while the reader [`listen`](Reader::listen)s.
    #[cfg(unix)]
    pub(crate) fn hear(&mut self, wake: Wake) {
        self.buffered.get_mut().wake = Some(wake);
    }

    /// Whether a ring ends a sleep: only while the driver waits for answers it would stop
    /// waiting for at a ring (elsewhere, a bell left rung would end every sleep at once).
    #[cfg(unix)]
    pub(crate) fn listen(&mut self, on: bool) {
        self.buffered.get_mut().listening = on;
    }

    /// Whether it listens and the doorbell rang: a sleep would end at once.
    pub(crate) fn woken(&self) -> bool {
        #[cfg(unix)]
        {
            let stream = self.buffered.get_ref();
            stream.listening && stream.wake.as_ref().is_some_and(Wake::rung)
        }
        #[cfg(not(unix))]
        false
    }

    /// From now on, big frames may arrive in `slot` (after [`attach`](Self::attach)).
    pub(crate) fn attach_bulk(&mut self, slot: BulkReader) {
        self.buffered.get_mut().bulk = Some(slot);
    }

    /// Reads one frame, waiting for it. `Ok(None)` at a clean end of the stream.
    pub(crate) fn read_frame(&mut self, max: usize) -> Result<Option<Frame>, Error> {
        // A frame starts where the buffer ends (a read returns bytes of one chunk, and a
        // chunk holds whole frames): one in the slot is taken from there, unbuffered.
        if self.buffered.buffer().is_empty() {
            if let Some(frame) = self.buffered.get_mut().bulk_frame(max)? {
                return Ok(Some(frame));
            }
        }
        read_frame(&mut self.buffered, max)
    }

    /// [`read_frame`](Self::read_frame), reading nothing past the frame: the child's `INIT`,
    /// behind which the socket's bytes belong to the ring's chunks, attached next.
    pub(crate) fn read_frame_alone(&mut self, max: usize) -> Result<Option<Frame>, Error> {
        debug_assert!(self.buffered.buffer().is_empty());
        read_frame(self.buffered.get_mut(), max)
    }

    /// A wait inside a read gives up at `deadline` (`None`: never).
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.buffered.get_mut().deadline = deadline;
    }

    /// Whether the deadline has passed.
    pub(crate) fn late(&self) -> bool {
        self.buffered.get_ref().late()
    }

    /// Whether a read finds bytes of a frame without sleeping (bytes a chunk announced on
    /// the socket count: a read waits for them with its deadline). Nudges do not count: it
    /// steps past them.
    pub(crate) fn ready(&mut self) -> bool {
        !self.buffered.buffer().is_empty() || self.buffered.get_mut().ready()
    }

    /// Sleeps up to `timeout` until there is something to read (or the socket's end), or, if
    /// `write`, until the socket takes more; returns (readable, writable).
    /// The child's exit ends the sleep early (with nothing readable).
    pub(crate) fn sleep(&mut self, write: bool, timeout: Duration) -> (bool, bool) {
        if !self.buffered.buffer().is_empty() {
            return (true, false);
        }
        self.buffered.get_mut().sleep(write, timeout)
    }

    /// Whether the child at the other end has exited (the pool's side).
    pub(crate) fn peer_exited(&self) -> bool {
        self.buffered.get_ref().peer_exited()
    }

    /// Whether the other side closed its end of the socket.
    pub(crate) fn peer_closed(&self) -> bool {
        peer_closed(&self.buffered.get_ref().socket)
    }

    /// Drops what the ring holds, so that a child blocked on a full ring can exit, and what
    /// the socket holds, waiting up to `timeout` for some; returns whether the socket is at
    /// its end (or broken).
    pub(crate) fn drain(&mut self, timeout: Duration) -> bool {
        let stream = self.buffered.get_mut();
        if let Some(ring) = &mut stream.ring {
            ring.discard();
        }
        poll_readable(&stream.socket, timeout)
            && matches!(
                recv_now(&stream.socket, &mut [0u8; 4096]),
                Ok(Some(0)) | Err(_)
            )
    }
}

impl Stream {
    fn peer_exited(&self) -> bool {
        let exited = self.peer.as_ref().is_some_and(ExitWatch::exited);
        if exited {
            // What it said last is read before its exit counts.
            settle(&self.socket);
        }
        exited
    }

    fn late(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    fn ready(&mut self) -> bool {
        let Some(ring) = &mut self.ring else {
            return poll_readable(&self.socket, Duration::ZERO);
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

    fn sleep(&mut self, write: bool, timeout: Duration) -> (bool, bool) {
        let Some(ring) = &self.ring else {
            return self.poll(write, timeout);
        };
        ring.set_sleeping(true);
        if self.ready() {
            self.set_awake();
            return (true, false);
        }
        let (readable, writable) = self.poll(write, timeout);
        self.set_awake();
        if self.ready() {
            return (true, writable);
        }
        if readable {
            // Nudges that woke it are skipped; bytes beyond them, which no chunk announced,
            // are the socket's end (or a broken peer), which a read reports.
            self.skip_nudges();
            let more = self.to_skip == 0 && poll_readable(&self.socket, Duration::ZERO);
            return (more || self.ready(), writable);
        }
        (false, writable)
    }

    /// Polls the socket and the child's exit, and, while it listens, the doorbell's wake-up,
    /// which ends the sleep with nothing to report.
    fn poll(&self, write: bool, timeout: Duration) -> (bool, bool) {
        #[cfg(unix)]
        if let Some(wake) = self.wake.as_ref().filter(|_| self.listening) {
            if wake.arm() {
                wake.disarm(false);
                return (false, false);
            }
            let (readable, writable, woken) = poll_woken(
                &self.socket,
                self.peer.as_ref(),
                Some(wake.fd()),
                write,
                timeout,
            );
            wake.disarm(woken);
            return (readable, writable);
        }
        poll(&self.socket, self.peer.as_ref(), write, timeout)
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
            match recv_now(&self.socket, &mut nudges[..n]) {
                Ok(Some(read)) if read > 0 => self.to_skip -= read,
                _ => return,
            }
        }
    }

    /// Whether waiting must stop: the worker was retired, the deadline passed, or the child
    /// exited and left nothing more to read (what it said last may have come in meanwhile).
    fn give_up(&self) -> io::Result<()> {
        if self.peer_exited() && !poll_readable(&self.socket, Duration::ZERO) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the child exited",
            ));
        }
        let retired = self
            .retired
            .as_ref()
            .is_some_and(|retired| retired.load(Ordering::Acquire));
        if self.late() || retired {
            // (The child's side only gives up on its deadline for `INIT`, and says so in its
            // own words.)
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
        let check = match self.retired {
            Some(_) => POLL_INTERVAL,
            None => Duration::from_secs(3600),
        };
        self.deadline.map_or(check, |deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .min(check)
        })
    }

    /// The next frame if it is in the slot for big frames, waiting for the next chunk;
    /// `Ok(None)` if it is elsewhere (or the stream ended: a read then says so).
    fn bulk_frame(&mut self, max: usize) -> Result<Option<Frame>, Error> {
        match &self.ring {
            // Most frames: a glance at the kind of the next chunk.
            Some(ring) if self.bulk.is_some() && !ring.not_bulk() => {}
            _ => return Ok(None),
        }
        let failed = |e: io::Error| Error::Protocol {
            message: format!("reading the worker channel: {e}"),
        };
        loop {
            if self.on_socket > 0 {
                return Ok(None);
            }
            if self.to_skip > 0 {
                let mut nudges = [0u8; 16];
                let n = self.to_skip.min(nudges.len());
                match self.read_socket(&mut nudges[..n]).map_err(failed)? {
                    0 => return Ok(None),
                    read => self.to_skip -= read,
                }
                continue;
            }
            let ring = self.ring.as_mut().expect("a slot comes with a ring");
            match ring.chunk().map_err(failed)? {
                Some(Chunk::Bulk(len)) => {
                    ring.skip();
                    let slot = self.bulk.as_mut().expect("checked above");
                    return slot.take(len, max).map(Some);
                }
                Some(Chunk::Nudge(len)) => {
                    ring.skip();
                    self.to_skip = len;
                }
                Some(Chunk::Inline { .. } | Chunk::Socket(_)) => return Ok(None),
                None => {
                    if !self.wait_chunk().map_err(failed)? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Reads from the socket, waiting for it.
    fn read_socket(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(read) = recv_now(&self.socket, buf)? {
                return Ok(read);
            }
            if !poll_readable(&self.socket, self.wait_time()) {
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
                match recv_now(&self.socket, &mut byte)? {
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

impl Read for Stream {
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
                // A frame in the slot is read whole, from its start: not from inside another
                // frame, and not without a slot.
                Some(Chunk::Bulk(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a frame in the shared slot inside another frame, or without a slot",
                    ))
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
