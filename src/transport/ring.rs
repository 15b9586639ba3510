//! Rings of shared memory that carry the frames between a pool's driver and its child.
//!
//! Over the socket alone, a task and its result cost four system calls (a `send` and a `recv`
//! each way), most of a round trip. So the two sides share a memory region holding one ring
//! per direction, and a frame travels as a *chunk* of a ring: the writer copies it in and
//! publishes its new tail; the reader, spinning on that tail, copies it out and publishes its
//! new head. The socket stays, for what does not fit in a ring, to wake a reader asleep in
//! `poll`, and for death: its end of stream is how either side learns that the other is gone.
//!
//! The region is a `memfd` on Linux (the child's fd 4, sealed at its size), and on Windows a
//! section backed by the paging file, unnamed (no other process can open it), whose handle
//! the child inherits, allowed to map it and nothing more (it cannot extend it). There the
//! "socket" is the pair of pipes of `pipe.rs`: a nudge is one byte on a pipe, which wakes the
//! reader's `poll`, a wait on what the pipe's pump thread read, as a byte on a socket would.
//!
//! A ring is a stream of 4-byte aligned chunks, each a `u32` header (three bits of kind,
//! twenty-nine of length) and maybe bytes:
//! - `INLINE`: the next `len` bytes of the stream, here in the ring;
//! - `SOCKET`: the next `n` bytes of the stream are on the socket (a frame too big to copy
//!   through the ring); `n` is the chunk's 8 bytes (a frame may exceed thirty bits);
//! - `NUDGE`: `len` bytes on the socket carry nothing: they woke the reader;
//! - `WRAP`: the rest of the ring is unused, the next chunk is at its start;
//! - `BULK`: the next `n` bytes of the stream, one whole frame, are in the shared slot for big
//!   frames (`bulk.rs`); `n` is the chunk's 8 bytes.
//!
//! The ring orders the stream: the socket carries only bytes a chunk announced, so a socket
//! readable with nothing announced is at its end. A reader with nothing to read spins on the
//! tail, then sets `sleeping` and blocks in `poll` on the socket; a writer that finds
//! `sleeping` set after publishing a chunk sends a nudge. Both use sequentially consistent
//! order, so either the reader sees the chunk or the writer sees it asleep.
//!
//! A peer may be broken or hostile: every header and position read from the region is checked
//! before use, and bytes are only copied out of it, never borrowed. A chunk that holds one
//! whole frame (as every writer here makes them) is copied out whole, straight into the
//! frame's body, its header read from the copy ([`RingReader::take_frame`]); anything else is
//! read as the byte stream it is.

use std::io;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::codec::Place;

/// Bytes of one ring.
const RING: usize = 8 << 10;
/// The largest frame that travels in a ring; bigger ones go over the socket, where a copy
/// through the ring would not save a system call per frame.
pub(crate) const INLINE_MAX: usize = RING / 4;
/// The control lines of both rings, then the two rings.
const DATA: usize = 4096;
const REGION: usize = DATA + 2 * RING;
/// Where the claim words of tasks sent ahead lie (`claims.rs`): a line of the first page,
/// after the two rings' controls.
const CLAIMS: usize = 1024;
/// The words of that line.
pub(super) const CLAIM_LINE: usize = 16;

const INLINE: u32 = 0;
const SOCKET: u32 = 1;
const NUDGE: u32 = 2;
const WRAP: u32 = 3;
const BULK: u32 = 4;
const LEN_BITS: u32 = 29;
const LEN_MASK: u32 = (1 << LEN_BITS) - 1;
/// What a chunk of `len` bytes takes in a ring, header included.
const fn chunk_size(len: usize) -> usize {
    4 + len.div_ceil(4) * 4
}

/// Which way a ring carries frames.
#[derive(Clone, Copy)]
pub(crate) enum Direction {
    ToChild = 0,
    ToPool = 1,
}

/// An atomic on a cache line of its own: the two sides write different ones.
#[repr(C, align(64))]
struct Line(AtomicU32);

/// A ring's positions (running byte counts, wrapping at 2^32, a multiple of the ring's size).
#[repr(C)]
struct Control {
    /// Bytes written, by the writer.
    tail: Line,
    /// Bytes read, by the reader.
    head: Line,
    /// Non-zero while the reader is (about to be) blocked in `poll`.
    sleeping: Line,
}

/// The mapped region, shared by a driver and its child.
pub(crate) struct Region {
    base: *mut u8,
}

// SAFETY: the region is only accessed through atomics and raw-pointer copies (see the module's
// doc), and stays mapped as long as the `Region` lives.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// Makes a region for a new child: the region, and the file descriptor to give the child.
    #[cfg(target_os = "linux")]
    pub(crate) fn create() -> Option<(Arc<Region>, std::os::fd::OwnedFd)> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        // SAFETY: memfd_create with a NUL-terminated name; the fd is owned from here on.
        let fd = unsafe { libc::memfd_create(c"tinypool".as_ptr(), flags) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a file descriptor just created and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate on our fd: zeros, which is every position at 0.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), REGION as libc::off_t) } != 0 {
            return None;
        }
        // Its size is fixed for good: a child that shrank it would make the pool's next access
        // to the mapping a SIGBUS, which kills the pool's whole process.
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on our fd.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return None;
        }
        let region = Region::map(fd.as_raw_fd())?;
        Some((region, fd))
    }

    #[cfg(all(unix, not(target_os = "linux")))]
    pub(crate) fn create() -> Option<(Arc<Region>, std::os::fd::OwnedFd)> {
        None
    }

    /// Maps the region behind `fd` (the child's side; the fd may be closed afterwards).
    #[cfg(unix)]
    pub(crate) fn map(fd: i32) -> Option<Arc<Region>> {
        // SAFETY: a fresh shared mapping of `REGION` bytes of `fd`; checked below.
        let address = unsafe {
            libc::mmap(
                ptr::null_mut(),
                REGION,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        (address != libc::MAP_FAILED).then(|| {
            Arc::new(Region {
                base: address.cast(),
            })
        })
    }

    /// Makes a region for a new child: the region, and the handle of its section, not
    /// inheritable (the child is given a copy limited to mapping it).
    #[cfg(windows)]
    pub(crate) fn create() -> Option<(Arc<Region>, std::os::windows::io::OwnedHandle)> {
        use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
        use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
        use windows_sys::Win32::System::Memory::{CreateFileMappingW, PAGE_READWRITE};
        // SAFETY: a new section of `REGION` bytes backed by the paging file (no file handle),
        // zero-filled, without a name or inheritable attributes; owned from here on.
        let section = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                ptr::null(),
                PAGE_READWRITE,
                0,
                REGION as u32,
                ptr::null(),
            )
        };
        if section.is_null() {
            return None;
        }
        // SAFETY: the handle was just created, and nothing else owns it.
        let section = unsafe { OwnedHandle::from_raw_handle(section as _) };
        let region = Region::map(section.as_raw_handle() as usize)?;
        Some((region, section))
    }

    /// Maps the region of the section `handle` (the child's side; the handle may be closed
    /// afterwards, the view stays). `None` if it is no section of at least the region's size.
    #[cfg(windows)]
    pub(crate) fn map(handle: usize) -> Option<Arc<Region>> {
        use windows_sys::Win32::System::Memory::{MapViewOfFile, FILE_MAP_READ, FILE_MAP_WRITE};
        // SAFETY: maps `REGION` bytes of the section; the call fails (null) on a handle that
        // is no section, or a section smaller than that, so the view is all backed.
        let view =
            unsafe { MapViewOfFile(handle as _, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, REGION) };
        (!view.Value.is_null()).then(|| {
            Arc::new(Region {
                base: view.Value.cast(),
            })
        })
    }

    fn control(&self, direction: Direction) -> &Control {
        // SAFETY: the two `Control`s (3 lines each) lie within the first page, which is
        // mapped while `self` lives, 64-byte aligned, and zero-initialized or written only
        // through these atomics.
        unsafe { &*self.base.cast::<Control>().add(direction as usize) }
    }

    /// The line of the claim words of the tasks sent ahead (`claims.rs`, which uses the first
    /// few).
    pub(super) fn claim_line(&self) -> &[AtomicU32; CLAIM_LINE] {
        const {
            assert!(CLAIMS >= 2 * size_of::<Control>() && CLAIMS + 4 * CLAIM_LINE <= DATA);
        };
        // SAFETY: `CLAIM_LINE` words at `CLAIMS`, 4-byte aligned within the first page, which
        // is mapped while `self` lives, and zero-initialized or written only through atomics.
        unsafe { &*self.base.add(CLAIMS).cast::<[AtomicU32; CLAIM_LINE]>() }
    }

    fn data(&self, direction: Direction) -> *mut u8 {
        // SAFETY: within the mapping: DATA + 2 * RING bytes.
        unsafe { self.base.add(DATA + direction as usize * RING) }
    }

    /// The header at `at` (4-byte aligned, within the ring) of the ring of `direction`.
    fn header(&self, direction: Direction, at: usize) -> &AtomicU32 {
        debug_assert!(at.is_multiple_of(4) && at < RING);
        // SAFETY: aligned and within the ring, as the callers check; shared memory is only
        // ever accessed as atomics at header positions.
        unsafe { &*self.data(direction).add(at).cast::<AtomicU32>() }
    }

    /// The writing end of the ring of `direction` (one per ring).
    pub(crate) fn writer(self: &Arc<Self>, direction: Direction) -> RingWriter {
        RingWriter {
            tail: self.control(direction).tail.0.load(Ordering::Acquire),
            region: self.clone(),
            direction,
        }
    }

    /// The reading end of the ring of `direction` (one per ring).
    pub(crate) fn reader(self: &Arc<Self>, direction: Direction) -> RingReader {
        RingReader {
            head: self.control(direction).head.0.load(Ordering::Acquire),
            region: self.clone(),
            direction,
            taken: 0,
            size: 0,
        }
    }
}

#[cfg(unix)]
impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps the region this value mapped; nothing refers to it any more.
        unsafe { libc::munmap(self.base.cast(), REGION) };
    }
}

#[cfg(windows)]
impl Drop for Region {
    fn drop(&mut self) {
        use windows_sys::Win32::System::Memory::{UnmapViewOfFile, MEMORY_MAPPED_VIEW_ADDRESS};
        let view = MEMORY_MAPPED_VIEW_ADDRESS {
            Value: self.base.cast(),
        };
        // SAFETY: unmaps the view this value mapped; nothing refers to it any more.
        unsafe { UnmapViewOfFile(view) };
    }
}

pub(crate) struct RingWriter {
    region: Arc<Region>,
    direction: Direction,
    /// The tail as this side last published it (only this side writes it).
    tail: u32,
}

impl RingWriter {
    fn control(&self) -> &Control {
        self.region.control(self.direction)
    }

    /// Appends a chunk if the ring has room for it now. Every chunk but a nudge leaves room
    /// for one, so that a reader found asleep can always be woken.
    fn try_chunk(&mut self, kind: u32, bytes: &[u8], len: usize) -> bool {
        self.try_chunk_with(kind, bytes.len(), len, |body| {
            // SAFETY: `body` takes `bytes.len()` bytes (see `try_chunk_with`), this process's
            // own memory, which the ring does not overlap.
            unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), body, bytes.len()) }
        })
    }

    /// [`try_chunk`](Self::try_chunk), its `bytes` bytes written by `fill` at the pointer it
    /// is given: the chunk's place in the ring, `bytes` bytes this side alone writes.
    #[inline]
    fn try_chunk_with(
        &mut self,
        kind: u32,
        bytes: usize,
        len: usize,
        fill: impl FnOnce(*mut u8),
    ) -> bool {
        debug_assert!(len <= LEN_MASK as usize);
        let size = chunk_size(bytes);
        let head = self.control().head.0.load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head) as usize;
        let at = self.tail as usize % RING;
        let skip = if RING - at < size { RING - at } else { 0 };
        let reserve = if kind == NUDGE { 0 } else { chunk_size(0) };
        if used + skip + size + reserve > RING {
            return false;
        }
        if skip > 0 {
            self.region
                .header(self.direction, at)
                .store(WRAP << LEN_BITS, Ordering::Relaxed);
        }
        let at = (at + skip) % RING;
        // SAFETY: `at + size <= RING` (a chunk never straddles the end), and the reader is
        // done with these bytes (they lie beyond the tail and within `RING` of its head).
        fill(unsafe { self.region.data(self.direction).add(at + 4) });
        self.region
            .header(self.direction, at)
            .store(kind << LEN_BITS | len as u32, Ordering::Relaxed);
        self.tail = self.tail.wrapping_add((skip + size) as u32);
        self.control().tail.0.store(self.tail, Ordering::SeqCst);
        true
    }

    /// Appends `frame` (at most [`INLINE_MAX`] bytes) if the ring has room now.
    pub(crate) fn try_inline(&mut self, frame: &[u8]) -> bool {
        debug_assert!(!frame.is_empty() && frame.len() <= INLINE_MAX);
        self.try_chunk(INLINE, frame, frame.len())
    }

    /// Appends a frame of `len` bytes (at most [`INLINE_MAX`]) that `write` writes in place,
    /// if the ring has room now: no copy of it is made on the way.
    #[inline]
    pub(crate) fn try_inline_with(
        &mut self,
        len: usize,
        write: impl FnOnce(&mut Place<'_>),
    ) -> bool {
        debug_assert!(len > 0 && len <= INLINE_MAX);
        self.try_chunk_with(INLINE, len, len, |body| {
            // SAFETY: `body` is `len` bytes of the ring this side alone writes now (see
            // `try_chunk_with`), not otherwise used while the place lives.
            let mut place = unsafe { Place::new(body, len) };
            write(&mut place);
            // A chunk published short would hand the reader bytes nobody wrote.
            assert!(place.len() == len, "the frame fills its chunk");
        })
    }

    /// Announces `len` bytes that the writer then sends on the socket, if the ring has room.
    pub(crate) fn try_socket(&mut self, len: usize) -> bool {
        let len = (len as u64).to_le_bytes();
        self.try_chunk(SOCKET, &len, len.len())
    }

    /// Announces a frame of `len` bytes in the shared slot for big frames, if the ring has
    /// room.
    pub(crate) fn try_bulk(&mut self, len: usize) -> bool {
        let len = (len as u64).to_le_bytes();
        self.try_chunk(BULK, &len, len.len())
    }

    /// After a chunk: whether the reader sleeps in `poll` and must be sent a nudge.
    pub(crate) fn reader_sleeping(&self) -> bool {
        self.control().sleeping.0.load(Ordering::SeqCst) != 0
    }

    /// Announces a one-byte nudge, which the writer then sends on the socket.
    pub(crate) fn nudge(&mut self) -> bool {
        self.try_chunk(NUDGE, &[], 1)
    }
}

/// A chunk at the head of a ring.
pub(crate) enum Chunk {
    /// Bytes in the ring: `len` at `at`, of which the reader took some already.
    Inline { at: usize, len: usize },
    /// Bytes of the stream on the socket.
    Socket(usize),
    /// Bytes to skip on the socket.
    Nudge(usize),
    /// A frame of this many bytes in the shared slot for big frames.
    Bulk(usize),
}

pub(crate) struct RingReader {
    region: Arc<Region>,
    direction: Direction,
    /// The head as this side last published it (only this side writes it).
    head: u32,
    /// Bytes of the inline chunk at the head already read.
    taken: usize,
    /// The size of the `Socket`, `Nudge` or `Bulk` chunk at the head, for
    /// [`skip`](Self::skip).
    size: usize,
}

impl RingReader {
    fn control(&self) -> &Control {
        self.region.control(self.direction)
    }

    /// Says whether this side is about to block in `poll` (see the module's doc).
    pub(crate) fn set_sleeping(&self, sleeping: bool) {
        self.control()
            .sleeping
            .0
            .store(u32::from(sleeping), Ordering::SeqCst);
    }

    /// The chunk at the head, past any wrap; `None` if the ring is empty, an error if what
    /// the writer published makes no sense.
    pub(crate) fn chunk(&mut self) -> io::Result<Option<Chunk>> {
        let corrupt = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the shared ring is corrupt: {what}"),
            )
        };
        loop {
            // Sequentially consistent, for the look after `set_sleeping` (free on x86).
            let tail = self.control().tail.0.load(Ordering::SeqCst);
            let available = tail.wrapping_sub(self.head) as usize;
            if available == 0 {
                return Ok(None);
            }
            if available > RING || !available.is_multiple_of(4) {
                return Err(corrupt("a tail out of range"));
            }
            let at = self.head as usize % RING;
            let header = self
                .region
                .header(self.direction, at)
                .load(Ordering::Relaxed);
            let len = (header & LEN_MASK) as usize;
            match header >> LEN_BITS {
                WRAP => {
                    if RING - at > available {
                        return Err(corrupt("a wrap past the tail"));
                    }
                    self.advance(RING - at);
                }
                INLINE => {
                    let size = chunk_size(len);
                    if len == 0 || len > INLINE_MAX || size > RING - at || size > available {
                        return Err(corrupt("a chunk out of bounds"));
                    }
                    return Ok(Some(Chunk::Inline { at, len }));
                }
                kind @ (SOCKET | BULK) => {
                    self.size = chunk_size(8);
                    if len != 8 || self.size > RING - at || self.size > available {
                        return Err(corrupt("a socket chunk out of bounds"));
                    }
                    let mut bytes = [0u8; 8];
                    // SAFETY: `at + 12 <= RING`, checked above; copied, never borrowed.
                    unsafe {
                        let from = self.region.data(self.direction).add(at + 4);
                        ptr::copy_nonoverlapping(from, bytes.as_mut_ptr(), 8);
                    }
                    return match usize::try_from(u64::from_le_bytes(bytes)) {
                        Ok(len) if len > 0 && kind == SOCKET => Ok(Some(Chunk::Socket(len))),
                        Ok(len) if len > 0 => Ok(Some(Chunk::Bulk(len))),
                        _ => Err(corrupt("a socket chunk of no length")),
                    };
                }
                NUDGE if len > 0 => {
                    self.size = chunk_size(0);
                    return Ok(Some(Chunk::Nudge(len)));
                }
                NUDGE => return Err(corrupt("an empty nudge")),
                _ => return Err(corrupt("a chunk of no known kind")),
            }
        }
    }

    /// Copies what fits in `buf` of the inline chunk at `at` (`len` bytes, from
    /// [`chunk`](Self::chunk)); moves past the chunk once it is all read.
    pub(crate) fn copy_out(&mut self, at: usize, len: usize, buf: &mut [u8]) -> usize {
        let n = (len - self.taken).min(buf.len());
        // SAFETY: `at + 4 + len <= RING`, checked by `chunk`; the bytes are below the tail
        // the writer published, so it no longer writes them. Copied, never borrowed.
        unsafe {
            let from = self.region.data(self.direction).add(at + 4 + self.taken);
            ptr::copy_nonoverlapping(from, buf.as_mut_ptr(), n);
        }
        self.taken += n;
        if self.taken == len {
            self.taken = 0;
            self.advance(chunk_size(len));
        }
        n
    }

    /// Takes the inline chunk at `at` (`len` bytes, from [`chunk`](Self::chunk)) as one
    /// frame, if it is one whole frame of at most `max` bytes (kind and body) not begun yet:
    /// its kind, its body copied into `body` (which it replaces), and the ring moved past it.
    /// `None`, and nothing moved, otherwise: a frame cut across chunks, several in one (a
    /// writer may cut the stream as it likes), or one the byte stream then refuses.
    ///
    /// Each byte is read once, and only the copy is looked at: the writer (a child, for the
    /// pool) may change the chunk meanwhile, which can only make the copy wrong, never the
    /// read out of bounds.
    pub(crate) fn take_frame(
        &mut self,
        at: usize,
        len: usize,
        max: usize,
        body: &mut Vec<u8>,
    ) -> Option<u8> {
        if self.taken != 0 || len < 5 {
            return None;
        }
        let mut head = [0u8; 5];
        // SAFETY: `at + 4 + len <= RING` and `5 <= len`, checked by `chunk`; the bytes are
        // below the tail the writer published. Copied, never borrowed.
        unsafe {
            let from = self.region.data(self.direction).add(at + 4);
            ptr::copy_nonoverlapping(from, head.as_mut_ptr(), 5);
        }
        let header = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if header != len - 4 || header > max {
            return None;
        }
        let rest = len - 5;
        body.clear();
        body.reserve(rest);
        // SAFETY: from the ring as above (`at + 9 + rest = at + 4 + len <= RING`), into the
        // `rest` bytes of capacity just reserved, which `set_len` then counts as written.
        unsafe {
            let from = self.region.data(self.direction).add(at + 9);
            ptr::copy_nonoverlapping(from, body.as_mut_ptr(), rest);
            body.set_len(rest);
        }
        self.advance(chunk_size(len));
        Some(head[4])
    }

    /// Moves past the `Socket`, `Nudge` or `Bulk` chunk [`chunk`](Self::chunk) returned.
    pub(crate) fn skip(&mut self) {
        self.advance(self.size);
    }

    /// Drops everything the ring holds (a dying writer blocked on a full ring can then exit).
    pub(crate) fn discard(&mut self) {
        self.taken = 0;
        let tail = self.control().tail.0.load(Ordering::Acquire);
        self.head = tail;
        self.control().head.0.store(tail, Ordering::Release);
    }

    fn advance(&mut self, bytes: usize) {
        self.head = self.head.wrapping_add(bytes as u32);
        self.control().head.0.store(self.head, Ordering::Release);
    }
}

#[cfg(all(test, any(target_os = "linux", windows)))]
mod tests {
    use super::*;

    fn drain(reader: &mut RingReader) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = reader.chunk().unwrap() {
            match chunk {
                Chunk::Inline { at, len } => {
                    let mut buf = vec![0; len];
                    // In two reads, as a small buffer would.
                    let first = reader.copy_out(at, len, &mut buf[..len / 2]);
                    let second = reader.copy_out(at, len, &mut buf[first..]);
                    assert_eq!(first + second, len);
                    out.extend_from_slice(&buf);
                }
                // A big one stands for itself by its length.
                Chunk::Socket(len) if len > 3 => {
                    out.extend_from_slice(&len.to_le_bytes());
                    reader.skip();
                }
                Chunk::Socket(len) | Chunk::Nudge(len) => {
                    out.extend(std::iter::repeat_n(b'#', len));
                    reader.skip();
                }
                Chunk::Bulk(len) => {
                    out.extend(std::iter::repeat_n(b'@', len));
                    reader.skip();
                }
            }
        }
        out
    }

    /// Frames of every size up to the inline limit go round the ring many times, wrapping at
    /// every offset, and come out whole and in order; a full ring refuses until read.
    #[test]
    fn frames_come_out_as_they_went_in_across_wraps() {
        let (region, _fd) = Region::create().expect("a shared region");
        let mut writer = region.writer(Direction::ToChild);
        let mut reader = region.reader(Direction::ToChild);
        let mut sent = Vec::new();
        let mut received = Vec::new();
        for round in 0..5_000usize {
            let len = 1 + (round * 37) % INLINE_MAX;
            let frame: Vec<u8> = (0..len).map(|i| (i + round) as u8).collect();
            if !writer.try_inline(&frame) {
                received.extend(drain(&mut reader));
                assert!(reader.chunk().unwrap().is_none());
                assert!(
                    writer.try_inline(&frame),
                    "an empty ring takes any inline frame"
                );
            }
            sent.extend_from_slice(&frame);
            if round % 7 == 0 {
                if !writer.try_socket(3) {
                    received.extend(drain(&mut reader));
                    assert!(writer.try_socket(3));
                }
                sent.extend_from_slice(b"###");
            }
            if round % 11 == 0 {
                if !writer.try_bulk(2) {
                    received.extend(drain(&mut reader));
                    assert!(writer.try_bulk(2));
                }
                sent.extend_from_slice(b"@@");
            }
            if round == 4_000 {
                // A frame longer than thirty bits can count, announced whole.
                let len = (5usize << 30) + 1;
                if !writer.try_socket(len) {
                    received.extend(drain(&mut reader));
                    assert!(writer.try_socket(len));
                }
                sent.extend_from_slice(&len.to_le_bytes());
            }
        }
        received.extend(drain(&mut reader));
        assert_eq!(received.len(), sent.len());
        assert!(received == sent, "the stream came out altered");
    }

    /// A chunk always leaves room for a nudge.
    #[test]
    fn a_full_ring_still_takes_a_nudge() {
        let (region, _fd) = Region::create().expect("a shared region");
        let mut writer = region.writer(Direction::ToPool);
        while writer.try_inline(&[7; 100]) {}
        assert!(
            writer.nudge(),
            "a ring that refused a frame still takes a nudge"
        );
        while writer.try_socket(1 << 40) {}
        assert!(writer.nudge(), "and again");
        while writer.nudge() {}
        assert!(!writer.try_inline(&[7]) && !writer.try_socket(1));
    }

    /// A child maps only what a pool shares: a section of the region's whole size. A smaller
    /// one, or a handle of another kind, maps nothing (no access beyond a short view).
    #[cfg(windows)]
    #[test]
    fn only_a_whole_section_maps() {
        use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
        use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
        use windows_sys::Win32::System::Memory::{CreateFileMappingW, PAGE_READWRITE};
        use windows_sys::Win32::System::Threading::GetCurrentProcess;
        // SAFETY: a new unnamed section of one page, owned from here on.
        let small = unsafe {
            let handle = CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                ptr::null(),
                PAGE_READWRITE,
                0,
                4096,
                ptr::null(),
            );
            assert!(!handle.is_null(), "a section of one page");
            OwnedHandle::from_raw_handle(handle as _)
        };
        assert!(Region::map(small.as_raw_handle() as usize).is_none());
        // SAFETY: the pseudo-handle of this process, which needs no closing.
        assert!(Region::map(unsafe { GetCurrentProcess() } as usize).is_none());
        let (_region, section) = Region::create().expect("a shared region");
        assert!(Region::map(section.as_raw_handle() as usize).is_some());
    }

    /// Garbage published by a broken peer is an error, never a read out of bounds.
    #[test]
    fn a_corrupt_ring_is_an_error() {
        let (region, _fd) = Region::create().expect("a shared region");
        let control = region.control(Direction::ToPool);
        let mut reader = region.reader(Direction::ToPool);
        // A chunk longer than the ring.
        region
            .header(Direction::ToPool, 0)
            .store(RING as u32, Ordering::Relaxed);
        control.tail.0.store(8, Ordering::Release);
        assert!(reader.chunk().is_err());
        // A tail beyond the ring's size.
        control.tail.0.store(RING as u32 + 4, Ordering::Release);
        assert!(reader.chunk().is_err());
        // A misaligned tail.
        control.tail.0.store(6, Ordering::Release);
        assert!(reader.chunk().is_err());
        // A kind that does not exist.
        region
            .header(Direction::ToPool, 0)
            .store(7 << LEN_BITS | 8, Ordering::Relaxed);
        control.tail.0.store(12, Ordering::Release);
        assert!(reader.chunk().is_err());
    }
}
