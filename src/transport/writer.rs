//! [`Writer`], either side's writing end: frames into the ring, or announced there and
//! written in the shared slot for big frames (`bulk.rs`) or sent on the socket (see
//! `ring.rs`), or, without a ring, on the socket alone. A frame may also be written outside
//! it (`draft.rs`), in memory it lends, and then sent.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bulk::{BulkWriter, KEEP};
use super::draft::Drafted;
use super::exit::ExitWatch;
use super::ring::{RingWriter, INLINE_MAX};
use super::stream::{hung_up, poll, send_now};
use super::wait::{spin_then_nap, Naps, RING_NAP};
use super::Channel;
use super::POLL_INTERVAL;
use crate::codec::Place;
use crate::protocol::Message;
use crate::Error;

/// A side's writing end. Both sides place a frame alike; they differ in what they do when
/// the channel does not take it at once (see [`Mode`]).
pub(crate) struct Writer {
    socket: Channel,
    ring: Option<RingWriter>,
    /// The slot for big frames, used while it is free (with a ring only).
    bulk: Option<BulkWriter>,
    mode: Mode,
    /// Frames not yet placed: the ring was full ([`Mode::Ahead`]).
    pending: VecDeque<Pending>,
    /// Bytes the socket owes the other side, in order: the frames of a `SOCKET` chunk,
    /// nudges, or, without a ring, every frame ([`Mode::Ahead`]).
    owed: Vec<u8>,
    /// Why writing failed: the other side is gone or going.
    broken: Option<io::Error>,
    /// The pool's side: the child. A ring it will never read again is not waited on.
    peer: Option<ExitWatch>,
    /// Where a message is encoded: one buffer, reused.
    scratch: Vec<u8>,
    /// Whether frames wait or writing failed, as of the last frame sent or flush: the driver
    /// reads it without the lock the writer is shared under, to flush only then
    /// ([`backlog_flag`](Self::backlog_flag)).
    backlog: Arc<AtomicBool>,
}

/// A frame not placed yet.
enum Pending {
    /// Its bytes.
    Frame(Vec<u8>),
    /// A frame of this many bytes in the slot, to announce.
    Bulk(usize),
}

/// What a writer does when the channel does not take a frame at once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The pool's driver, and the bridges of task channels, which write from the sender's
    /// thread: never wait. What the ring and the socket do not take at once waits here and
    /// goes out while the driver waits for results. Otherwise a driver blocked on a full
    /// channel, and a child blocked writing a result nobody reads, would wait for each other;
    /// and a sender holds its channel's lock, which `abort` and `destroy` need.
    Ahead,
    /// The child: wait for room, since its results can only go out in order. If the pool is
    /// gone, the kernel ends the child (`PR_SET_PDEATHSIG`); a pool that closed its end
    /// without dying never makes room in the ring, and the child exits.
    Wait,
}

/// What frames sent ahead still wait for, after a flush.
pub(crate) struct Backlog {
    /// Some wait for the ring, which the child empties without telling.
    ring: bool,
    /// Some wait for the socket to take more: a `poll` for writing wakes then.
    pub(crate) socket: bool,
}

impl Backlog {
    /// Nothing waits.
    pub(crate) const EMPTY: Backlog = Backlog {
        ring: false,
        socket: false,
    };

    pub(crate) fn is_empty(&self) -> bool {
        !self.ring && !self.socket
    }

    /// How long the driver may sleep before it tries again.
    pub(crate) fn nap(&self) -> Duration {
        if self.ring && !self.socket {
            RING_NAP
        } else {
            POLL_INTERVAL
        }
    }
}

impl Writer {
    /// The pool's end of `peer`'s channel: frames sent ahead never block it.
    pub(crate) fn ahead(socket: Channel, peer: ExitWatch) -> Self {
        Writer::new(socket, Mode::Ahead, Some(peer))
    }

    /// The child's end: a frame is sent whole before `send` returns.
    pub(crate) fn waiting(socket: Channel) -> Self {
        Writer::new(socket, Mode::Wait, None)
    }

    fn new(socket: Channel, mode: Mode, peer: Option<ExitWatch>) -> Self {
        Writer {
            socket,
            ring: None,
            bulk: None,
            mode,
            pending: VecDeque::new(),
            owed: Vec::new(),
            broken: None,
            peer,
            scratch: Vec::new(),
            backlog: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A flag that is set whenever frames wait or writing failed, as of the last frame sent
    /// or [`flush`](Self::flush), and clear otherwise: while it is clear, a flush has nothing
    /// to do (frames sent since, by other threads, set it as they go).
    pub(crate) fn backlog_flag(&self) -> Arc<AtomicBool> {
        self.backlog.clone()
    }

    /// Updates the [`backlog_flag`](Self::backlog_flag).
    fn note_backlog(&self) {
        let backlog = !self.pending.is_empty() || !self.owed.is_empty() || self.broken.is_some();
        self.backlog.store(backlog, Ordering::Release);
    }

    /// From now on, frames travel in `ring` (after the handshake).
    pub(crate) fn attach(&mut self, ring: RingWriter) {
        self.ring = Some(ring);
    }

    /// From now on, big frames travel in `slot` while it is free (after [`attach`]).
    ///
    /// [`attach`]: Self::attach
    pub(crate) fn attach_bulk(&mut self, slot: BulkWriter) {
        debug_assert!(self.ring.is_some(), "the ring announces the slot's frames");
        self.bulk = Some(slot);
    }

    /// Whether writing failed: the other side is gone or going.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Sends `message` as one frame of at most `max` bytes, after those sent before.
    ///
    /// An error if it is refused (too big: nothing is sent). The driver's writer sends what
    /// the channel takes now, keeps the rest for [`flush`](Self::flush), and reports a
    /// broken channel there (and in [`is_broken`](Self::is_broken)). The child's waits until
    /// the frame is all out, and fails if the socket does.
    pub(crate) fn send(&mut self, message: &impl Message, max: usize) -> Result<(), Error> {
        let size = message.measure(max)?;
        if self.try_ring_now(size, |place| message.write(size, place)) {
            return self.sent();
        }
        if size > INLINE_MAX {
            // Straight into the slot, when it is free.
            if let Some(mut place) = self.free_slot(0, size, size) {
                message.write(size, &mut place);
                return self.send_in_slot(size);
            }
        }
        let mut frame = std::mem::take(&mut self.scratch);
        frame.clear();
        frame.reserve(size);
        message.write(size, &mut frame);
        self.send_frame(Pending::Frame(frame))
    }

    /// Most frames: a frame of `size` bytes that `write` writes straight into the ring, if it
    /// is small, nothing waits before it, and the ring has room now; `false` if not (nothing
    /// was written).
    #[inline]
    fn try_ring_now(&mut self, size: usize, write: impl FnOnce(&mut Place<'_>)) -> bool {
        if size > INLINE_MAX || !self.pending.is_empty() || self.broken.is_some() {
            return false;
        }
        let Some(ring) = &mut self.ring else {
            return false;
        };
        if !ring.try_inline_with(size, write) {
            return false;
        }
        if ring.reader_sleeping() && ring.nudge() {
            self.owe(&[0]);
        }
        true
    }

    /// Lends the slot for big frames to a [`Draft`](super::draft::Draft), if there is one, free, and the channel
    /// works; meanwhile big frames sent take the socket. It comes back with the draft
    /// ([`send_draft`](Self::send_draft), [`discard_draft`](Self::discard_draft)).
    pub(crate) fn lend_slot(&mut self) -> Option<BulkWriter> {
        if self.broken.is_some() || !self.bulk.as_ref()?.is_free() {
            return None;
        }
        self.bulk.take()
    }

    /// Sends the frame of `drafted`, written in `buffer` or in the slot lent to it, its head
    /// included ([`Drafted::write_head`]), after those sent before. As [`send`](Self::send)
    /// does: a small frame is copied straight into the ring when nothing waits before it and
    /// the ring has room now, and otherwise waits in `buffer`, which then gets another, to
    /// draft the next frame in.
    #[inline]
    pub(crate) fn send_draft(
        &mut self,
        buffer: &mut Vec<u8>,
        drafted: Drafted,
    ) -> Result<(), Error> {
        let Drafted {
            slot,
            in_slot,
            size,
            headed,
            ..
        } = drafted;
        assert!(headed, "a frame goes out with its head");
        if slot.is_some() {
            self.bulk = slot;
        }
        if in_slot {
            return self.send_in_slot(size);
        }
        assert!(size <= buffer.capacity(), "drafted within the buffer");
        // SAFETY: `..head` was written by `Drafted::write_head`, `head..size` by the draft,
        // within the capacity.
        unsafe { buffer.set_len(size) };
        if self.try_ring_now(size, |place| {
            place.put(buffer);
        }) {
            return self.sent();
        }
        let frame = std::mem::replace(buffer, std::mem::take(&mut self.scratch));
        self.send_frame(Pending::Frame(frame))
    }

    /// Takes back the slot lent to `drafted`, whose frame is not sent; `buffer` is not kept
    /// if it grew big (as [`recycle`](Self::recycle)).
    pub(crate) fn discard_draft(&mut self, buffer: &mut Vec<u8>, drafted: Drafted) {
        if drafted.slot.is_some() {
            self.bulk = drafted.slot;
        }
        if buffer.capacity() > KEEP {
            *buffer = Vec::new();
        }
    }

    /// A place for bytes `from..` of a frame in the slot, with at least `want` bytes of it
    /// mapped and at most `limit`, if there is a slot, free, and the channel works.
    fn free_slot(&mut self, from: usize, want: usize, limit: usize) -> Option<Place<'_>> {
        let slot = self.bulk.as_mut().filter(|slot| slot.is_free())?;
        if self.broken.is_some() {
            return None;
        }
        slot.place(from, want, limit)
    }

    /// Sends the frame of `size` bytes just written in the slot.
    fn send_in_slot(&mut self, size: usize) -> Result<(), Error> {
        self.bulk.as_mut().expect("a frame in the slot").hold();
        self.send_frame(Pending::Bulk(size))
    }

    /// Sends `frame` after those sent before: see [`send`](Self::send).
    fn send_frame(&mut self, frame: Pending) -> Result<(), Error> {
        let frame = match frame {
            Pending::Frame(bytes) if bytes.len() > INLINE_MAX => self.move_to_slot(bytes),
            frame => frame,
        };
        match self.mode {
            Mode::Ahead => {
                if self.broken.is_none() && !(self.pending.is_empty() && self.place(&frame)) {
                    self.pending.push_back(frame);
                } else {
                    self.recycle(frame);
                }
                self.sent()
            }
            Mode::Wait => {
                let placed = spin_then_nap(
                    self,
                    RING_NAP,
                    |writer| writer.place(&frame),
                    |writer| hung_up(&writer.socket),
                );
                if !placed {
                    // The pool closed its end: nobody is left to serve.
                    std::process::exit(0);
                }
                self.recycle(frame);
                self.sent()
            }
        }
    }

    /// After a frame was placed (or, the driver's, kept to send later): the driver sends what
    /// the socket owes now; the child reports a broken channel.
    fn sent(&mut self) -> Result<(), Error> {
        match self.mode {
            Mode::Ahead => {
                if !self.pending.is_empty() || !self.owed.is_empty() {
                    self.flush();
                } else {
                    self.note_backlog();
                }
                Ok(())
            }
            Mode::Wait => match &self.broken {
                None => Ok(()),
                Some(error) => Err(Error::Protocol {
                    message: format!("writing the worker channel: {error}"),
                }),
            },
        }
    }

    /// Keeps a frame's buffer for the next one, unless it is big: a worker that once sent
    /// a big frame the slot did not take does not hold its memory for good.
    fn recycle(&mut self, frame: Pending) {
        match frame {
            Pending::Frame(bytes) if bytes.capacity() <= KEEP => self.scratch = bytes,
            _ => {}
        }
    }

    /// A big frame moves to the slot, if it is free and takes it (once: it is then held there
    /// until announced).
    fn move_to_slot(&mut self, bytes: Vec<u8>) -> Pending {
        let slot = self.bulk.as_mut().filter(|slot| slot.is_free());
        if self.broken.is_some() || !slot.is_some_and(|slot| slot.put(&bytes)) {
            return Pending::Frame(bytes);
        }
        let size = bytes.len();
        self.recycle(Pending::Frame(bytes));
        Pending::Bulk(size)
    }

    /// Sends what the channel takes of what waits; returns what still waits, or `None` once
    /// writing failed (the child is dead or dying).
    pub(crate) fn flush(&mut self) -> Option<Backlog> {
        while let Some(frame) = self.pending.pop_front() {
            let frame = match frame {
                Pending::Frame(bytes) if bytes.len() > INLINE_MAX => self.move_to_slot(bytes),
                frame => frame,
            };
            if !self.place(&frame) {
                self.pending.push_front(frame);
                break;
            }
        }
        if !self.owed.is_empty() {
            let owed = std::mem::take(&mut self.owed);
            let sent = self.send_now(&owed);
            self.owed = owed;
            self.owed.drain(..sent);
        }
        self.note_backlog();
        if self.broken.is_some() {
            return None;
        }
        let socket = !self.owed.is_empty();
        Some(Backlog {
            ring: !self.pending.is_empty() && !socket,
            socket,
        })
    }

    /// Waits until what waits is all out (`INIT`, `STOP`), or `deadline` passes, or the child
    /// is gone.
    pub(crate) fn finish(&mut self, deadline: Instant) -> Result<(), Error> {
        let mut naps = Naps::new(RING_NAP);
        while let Some(backlog) = self.flush() {
            if backlog.is_empty() {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Protocol {
                    message: "writing the worker channel: the child does not read".to_owned(),
                });
            }
            // Neither a full ring nor a full socket says that the child is gone: a process it
            // forked may hold the socket.
            if hung_up(&self.socket) || self.peer.as_ref().is_some_and(ExitWatch::exited) {
                self.broken = Some(io::ErrorKind::BrokenPipe.into());
                self.note_backlog();
                break;
            }
            if backlog.socket {
                poll(&self.socket, None, true, left.min(POLL_INTERVAL));
            } else {
                // The ring is full: the child empties it as it reads, without telling.
                naps.sleep(left);
            }
        }
        Err(Error::Protocol {
            message: "writing the worker channel: the child is gone".to_owned(),
        })
    }

    /// Puts `frame` in the ring, or announces it there (and sends it on the socket, unless it
    /// is in the slot); `false` if the ring has no room now.
    fn place(&mut self, frame: &Pending) -> bool {
        let frame = match frame {
            Pending::Frame(bytes) => bytes,
            Pending::Bulk(size) => {
                let ring = self.ring.as_mut().expect("a slot comes with a ring");
                if !ring.try_bulk(*size) {
                    return false;
                }
                self.bulk.as_mut().expect("a frame in the slot").announced();
                if ring.reader_sleeping() && ring.nudge() {
                    self.owe(&[0]);
                }
                return true;
            }
        };
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

    /// Sends `bytes` on the socket after what it already owes: the driver keeps what it does
    /// not take now; the child waits until it takes all.
    fn owe(&mut self, bytes: &[u8]) {
        if !self.owed.is_empty() {
            self.owed.extend_from_slice(bytes);
            return;
        }
        let mut sent = self.send_now(bytes);
        match self.mode {
            Mode::Ahead => self.owed.extend_from_slice(&bytes[sent..]),
            Mode::Wait => {
                while sent < bytes.len() && self.broken.is_none() {
                    poll(&self.socket, None, true, POLL_INTERVAL);
                    sent += self.send_now(&bytes[sent..]);
                }
            }
        }
    }

    /// Writes what the socket takes of `bytes` without blocking; returns how much. A failure
    /// breaks the channel: nothing more is sent.
    fn send_now(&mut self, bytes: &[u8]) -> usize {
        if self.broken.is_some() {
            return 0;
        }
        match send_now(&self.socket, bytes) {
            Ok(sent) => sent,
            Err(error) => {
                self.broken = Some(error);
                self.pending.clear();
                self.owed.clear();
                0
            }
        }
    }
}
