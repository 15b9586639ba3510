//! [`Reader`], either side's reading end: the frames from the other side, out of the ring,
//! the shared slot for big frames and the socket in the order the ring gives, or from the
//! socket alone (before the handshake ends, or without a ring).
//!
//! A frame whole in one chunk of the ring (every frame a writer here puts there) or in the slot
//! is taken from there directly: copied out of the ring into a body the reader recycles
//! (handed back with [`Reader::recycle`]), so that such a frame costs no allocation and no
//! pass through the stream's buffer. Anything else (a frame on the socket, or cut across
//! chunks, as the ring's format allows) is read from the byte stream, buffered.

use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bulk::BulkReader;
use super::exit::ExitWatch;
use super::ring::{Chunk, RingReader, INLINE_MAX};
#[cfg(unix)]
use super::stream::poll_woken;
use super::stream::{peer_closed, poll, poll_readable, recv_now, settle};
#[cfg(unix)]
use super::wake::Wake;
use super::Channel;
use super::POLL_INTERVAL;
use crate::protocol::{read_frame, Frame, Payload};
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
    /// The body of the next frame taken from a chunk of the ring: a frame's, given back.
    spare: Vec<u8>,
}

/// The biggest body [`Reader::recycle`] keeps: one grown (at most doubled) for any frame of a
/// ring.
const KEEP: usize = 2 * INLINE_MAX;

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
            spare: Vec::new(),
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
        // chunk holds whole frames): one whole in a chunk or in the slot is taken from there,
        // unbuffered.
        if self.buffered.buffer().is_empty() {
            let stream = self.buffered.get_mut();
            if let Some(frame) = stream.whole_frame(max, &mut self.spare)? {
                return Ok(Some(frame));
            }
        }
        read_frame(&mut self.buffered, max)
    }

    /// Gives back a frame read, once done with it: its body, unless big or lent, takes the
    /// next frame from the ring.
    pub(crate) fn recycle(&mut self, frame: Frame) {
        self.recycle_body(frame.body);
    }

    /// [`recycle`](Self::recycle), for a frame's body alone.
    pub(crate) fn recycle_body(&mut self, body: Payload) {
        if let Payload::Owned(body) = body {
            if body.capacity() <= KEEP && body.capacity() > self.spare.capacity() {
                self.spare = body;
            }
        }
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

    /// The next frame if it is whole in the next chunk of the ring (its body copied into
    /// `spare`, taken), or in the slot for big frames, waiting for the next chunk; `Ok(None)`
    /// if it is elsewhere (or the stream ended: a read then says so).
    fn whole_frame(&mut self, max: usize, spare: &mut Vec<u8>) -> Result<Option<Frame>, Error> {
        if self.ring.is_none() {
            return Ok(None);
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
            let ring = self.ring.as_mut().expect("checked above");
            match ring.chunk().map_err(failed)? {
                Some(Chunk::Inline { at, len }) => {
                    let kind = ring.take_frame(at, len, max, spare);
                    return Ok(kind.map(|kind| Frame {
                        kind,
                        body: Payload::Owned(std::mem::take(spare)),
                    }));
                }
                // Without a slot, the stream's read refuses it.
                Some(Chunk::Bulk(len)) => {
                    let Some(slot) = self.bulk.as_mut() else {
                        return Ok(None);
                    };
                    ring.skip();
                    return slot.take(len, max).map(Some);
                }
                Some(Chunk::Nudge(len)) => {
                    ring.skip();
                    self.to_skip = len;
                }
                Some(Chunk::Socket(_)) => return Ok(None),
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
        // Deaf to the doorbell inside a read: a ring ends the driver's sleep between frames,
        // where it is then taken; here, left rung, it would end every sleep at once, before
        // the socket's end of a dead child could be seen, and the read would spin forever.
        #[cfg(unix)]
        let listening = std::mem::replace(&mut self.listening, false);
        let waited = self.wait_chunk_deaf();
        #[cfg(unix)]
        {
            self.listening = listening;
        }
        waited
    }

    fn wait_chunk_deaf(&mut self) -> io::Result<bool> {
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::unix::net::UnixStream;

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::super::ring::RingWriter;
    use super::super::{Direction, Region};
    use super::*;

    const MAX: usize = 1 << 16;

    /// A child's reader of the ring of a new region, the pool's end of that ring, and the
    /// pool's end of the socket (dropped: the end of the stream once the ring is read).
    fn channel() -> (Reader, RingWriter, UnixStream, Arc<Region>) {
        let (region, _fd) = Region::create().expect("a shared region");
        let (ours, theirs) = UnixStream::pair().expect("a socket pair");
        let mut reader = Reader::from_pool(ours);
        reader.attach(region.reader(Direction::ToChild));
        (reader, region.writer(Direction::ToChild), theirs, region)
    }

    /// A frame's bytes: header, kind, body.
    fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = (body.len() as u32 + 1).to_le_bytes().to_vec();
        bytes.push(kind);
        bytes.extend_from_slice(body);
        bytes
    }

    fn protocol_error(read: Result<Option<Frame>, Error>) -> String {
        match read {
            Err(Error::Protocol { message }) => message,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    /// Frames of every size a ring carries go round it many times, each whole in a chunk,
    /// and come out as they went in; a body given back takes the next frame, so that no frame
    /// allocates once the reader holds one big enough.
    #[test]
    fn whole_frames_are_taken_from_the_ring_in_recycled_bodies() {
        let (mut reader, mut writer, _theirs, _region) = channel();
        let mut body_at = None;
        for round in 0..3_000usize {
            // The biggest first: no later one needs more room.
            let len = (INLINE_MAX - 5 + round * 53) % (INLINE_MAX - 4);
            let body: Vec<u8> = (0..len).map(|i| (i ^ round) as u8).collect();
            assert!(
                writer.try_inline(&frame(round as u8, &body)),
                "read as it goes"
            );
            let read = reader.read_frame(MAX).unwrap().expect("a frame");
            assert_eq!((read.kind, &read.body[..]), (round as u8, &body[..]));
            if len > 0 {
                let at = read.body.as_ptr();
                assert!(
                    body_at.is_none_or(|before| before == at),
                    "a body allocated"
                );
                body_at = Some(at);
            }
            reader.recycle(read);
        }
    }

    /// Frames a writer sends, written in place in the ring when they fit it (or on the
    /// socket, announced there, when they do not), read back as they were sent, in order.
    #[test]
    fn frames_written_in_place_read_back_in_order() {
        use crate::protocol::ToChild;
        use crate::transport::Writer;
        let (mut reader, _, theirs, region) = channel();
        let mut writer = Writer::waiting(theirs);
        writer.attach(region.writer(Direction::ToChild));
        for task in 0..2_000u64 {
            let message: Vec<u8> = (0..(task * 7) % 3_000).map(|i| i as u8).collect();
            let sent = ToChild::Port {
                task,
                message: &message,
            };
            writer.send(&sent, MAX).unwrap();
            let frame = reader.read_frame(MAX).unwrap().expect("a frame");
            assert_eq!(ToChild::decode(&frame).unwrap(), sent);
            reader.recycle(frame);
        }
    }

    /// A frame cut in two chunks, the first at the ring's end and the second at its start,
    /// reads whole, from the stream; so do frames sharing a chunk; and the reader goes back
    /// to taking whole frames from the ring after them.
    #[test]
    fn a_frame_cut_around_the_rings_end_reads_whole() {
        let (mut reader, mut writer, _theirs, _region) = channel();
        // Filler frames, read as written, until a chunk of 64 bytes no longer fits before the
        // end of the ring: the next one's first part lands there, its second at the start.
        let mut written = 0usize;
        while (8 << 10) - written % (8 << 10) > 64 {
            let filler = frame(1, &[9; 23]);
            assert!(writer.try_inline(&filler));
            written += 4 + filler.len().div_ceil(4) * 4;
            assert_eq!(reader.read_frame(MAX).unwrap().unwrap().kind, 1);
        }
        let cut = frame(7, &(0..200u8).collect::<Vec<_>>());
        let room = (8 << 10) - written % (8 << 10) - 4;
        assert!(writer.try_inline(&cut[..room]), "the first part at the end");
        assert!(writer.try_inline(&cut[room..]), "the rest at the start");
        let mut two = frame(2, b"two");
        two.extend(frame(3, b"three"));
        assert!(writer.try_inline(&two));
        assert!(writer.try_inline(&frame(4, b"four")));
        let read = reader.read_frame(MAX).unwrap().unwrap();
        assert_eq!((read.kind, &read.body[..]), (7, &cut[5..]));
        for (kind, body) in [(2, &b"two"[..]), (3, b"three"), (4, b"four")] {
            let read = reader.read_frame(MAX).unwrap().unwrap();
            assert_eq!((read.kind, &read.body[..]), (kind, body));
        }
    }

    /// Hostile lengths in a chunk: an empty frame, a frame above the cap, and one longer than
    /// what follows it are each a protocol error, never a read past the chunk or a buffer
    /// sized from the length.
    #[test]
    fn hostile_lengths_in_a_chunk_are_protocol_errors() {
        let (mut reader, mut writer, _theirs, _region) = channel();
        assert!(writer.try_inline(&[0, 0, 0, 0, 3, 1, 2, 3]));
        assert!(protocol_error(reader.read_frame(MAX)).contains("empty frame"));

        let (mut reader, mut writer, _theirs, _region) = channel();
        let mut huge = u32::MAX.to_le_bytes().to_vec();
        huge.extend([3, 1, 2, 3]);
        assert!(writer.try_inline(&huge));
        assert!(protocol_error(reader.read_frame(MAX)).contains("exceeds"));

        // Within the cap, but longer than the chunk, and then the pool is gone.
        let (mut reader, mut writer, theirs, _region) = channel();
        let mut long = 1000u32.to_le_bytes().to_vec();
        long.extend([3; 60]);
        assert!(writer.try_inline(&long));
        drop(theirs);
        assert!(protocol_error(reader.read_frame(MAX)).contains("ended inside a frame"));
    }

    /// The pool's read, entered to take what a dead child said last, ends at the socket's end
    /// even while it listens to a doorbell that rang and was not taken yet (new work came as
    /// the child died): it used to spin forever, every sleep ended by the ring before it could
    /// see the socket's end, and the task it waited for never resolved.
    #[test]
    fn a_read_ends_at_a_dead_childs_end_even_with_its_doorbell_rung() {
        let (region, _fd) = Region::create().expect("a shared region");
        let (ours, theirs) = UnixStream::pair().expect("a socket pair");
        let mut child = std::process::Command::new("true").spawn().expect("a child");
        let peer = ExitWatch::new(child.id() as libc::pid_t);
        child.wait().expect("the child exits");
        let mut reader = Reader::from_child(ours, Arc::new(AtomicBool::new(false)), peer);
        reader.attach(region.reader(Direction::ToPool));
        let bell = Arc::new(crate::wait::Doorbell::new());
        reader.hear(Wake::new(&bell).expect("a wake-up"));
        reader.listen(true);
        drop(theirs);
        bell.ring();
        assert!(reader.peer_exited());
        let (done, read) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(reader.read_frame(MAX).map(|frame| frame.is_none())));
        let read = read.recv_timeout(Duration::from_secs(30));
        assert!(matches!(read, Ok(Ok(true))), "the read ended with {read:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Any bytes, cut in any chunks (whole frames among them), read as the byte stream
        /// reads them: the same frames, then the same end or a protocol error.
        #[test]
        fn any_chunks_read_as_the_stream(
            chunks in vec(
                prop_oneof![
                    vec(any::<u8>(), 1..300),
                    (any::<u8>(), vec(any::<u8>(), 0..300)).prop_map(|(kind, body)| frame(kind, &body)),
                ],
                0..20,
            ),
            max in 1usize..600,
        ) {
            let (mut reader, mut writer, theirs, _region) = channel();
            for chunk in &chunks {
                prop_assert!(writer.try_inline(chunk), "the ring takes 6 KiB");
            }
            drop(theirs);
            let stream: Vec<u8> = chunks.concat();
            let mut expected = &stream[..];
            loop {
                let want = crate::protocol::read_frame(&mut expected, max);
                let got = reader.read_frame(max);
                match (want, got) {
                    (Ok(Some(want)), Ok(Some(got))) => {
                        prop_assert_eq!(&want, &got);
                        reader.recycle(got);
                    }
                    (Ok(None), Ok(None)) => break,
                    (Err(Error::Protocol { .. }), Err(Error::Protocol { .. })) => break,
                    (want, got) => prop_assert!(false, "{:?} read as {:?}", want, got),
                }
            }
        }
    }
}
