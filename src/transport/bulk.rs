//! Shared memory for big frames: one *slot* per direction, each holding one frame at a time,
//! so that a frame too big for a ring crosses with one copy each way instead of through the
//! socket (a copy into a frame, one into the kernel, one out of it, and the system calls).
//!
//! The memory is a second `memfd` (the child's fd 5, `INIT`'s `bulk` its frame capacity),
//! made by the pool at its full size and sealed at it, as the rings are, so that a child
//! cannot shrink it under the pool. Each slot is a multiple of the page size: its first line
//! holds the number of frames its reader released (a `u32`, written by the reader only), and a
//! frame starts at byte 64. Each side maps a slot only as far as the frames it met need
//! (growing it by powers of two), so a worker that never sends a big frame maps none of it,
//! and an address-space limit (`resource_limits`) is charged only for what is used.
//!
//! A frame in a slot is announced by a `BULK` chunk of the ring of the same direction, which
//! orders it among the others and carries its length. The writer writes a slot only while it
//! is free (every frame it announced there was released); otherwise, and for a frame bigger
//! than a slot, the frame goes the old way (the socket), so nothing ever waits for a slot and
//! no reader can hold a writer up by keeping one. The pool encodes a task's argument
//! straight into its slot, lent to the frame's `Draft` (`draft.rs`); the child's reader lends the frame in
//! place ([`Payload::Lent`]) until the task has its argument decoded, and releases it then.
//!
//! A slot's pages exist once written, and stay in the memory file (and in both sides'
//! resident memory, through their mappings) until given back: so a reader that consumed a
//! frame reaching past [`KEEP`] bytes of its slot gives back the pages beyond (a hole punched
//! in the file, which unmaps them from both sides), before it releases the slot. A worker that
//! once moved a 100 MiB frame thus holds at most [`KEEP`] of it afterwards, in the pool and in
//! the child, whose resident memory `max_memory_limit_before_recycle` reads; frames within
//! [`KEEP`] (a slot's usual traffic) make no system call for it.
//!
//! The child is not trusted: the pool copies a frame out of the child's slot before anything
//! reads it (the child could change it meanwhile), releases the slot at once, and checks the
//! announced length against the slot and against its frame's own header, and that header
//! against `max_message_size`, before it maps or copies anything.

use std::fs::File;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::ring::Direction;
use crate::codec::Place;
use crate::protocol::{Frame, Lent, Payload};
use crate::Error;

/// Where a slot's frame starts: the line before holds the count of frames released.
const FRAME: usize = 64;
/// The least a slot is mapped: room for most arguments encoded in place.
const FIRST_MAP: usize = 64 << 10;
/// The bytes of a slot that stay resident once its frame is consumed: a frame up to this size
/// (its slot's first line included) costs no system call and keeps its pages for the next; of
/// a bigger one, the pages beyond are given back (a multiple of any page size).
pub(crate) const KEEP: usize = 2 << 20;
/// The largest frame a slot carries; bigger ones (up to `max_message_size`) take the socket.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const LARGEST: usize = if usize::BITS >= 64 { 1 << 30 } else { 64 << 20 };

/// The memory file behind both slots: the pool's `memfd`, the child's fd 5.
#[cfg_attr(windows, allow(dead_code))] // Nothing makes one on Windows (yet).
pub(crate) struct Bulk {
    file: File,
    /// Bytes of each slot, its first line included: a multiple of the page size.
    slot: usize,
}

impl Bulk {
    /// The memory for a new child whose frames are at most `largest` bytes (header included),
    /// if a slot would carry any frame a ring does not: `None` otherwise, or if it cannot be
    /// made (then big frames take the socket).
    #[cfg(target_os = "linux")]
    pub(crate) fn create(largest: usize) -> Option<Arc<Bulk>> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let capacity = largest.min(LARGEST);
        if capacity <= super::ring::INLINE_MAX {
            return None;
        }
        let slot = slot_size(capacity)?;
        let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        // SAFETY: memfd_create with a NUL-terminated name; the fd is owned from here on.
        let fd = unsafe { libc::memfd_create(c"tinypool-bulk".as_ptr(), flags) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a file descriptor just created and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Sparse: the pages exist once written. Zeros are every count at 0.
        let size = libc::off_t::try_from(slot.checked_mul(2)?).ok()?;
        // SAFETY: ftruncate on our fd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return None;
        }
        // As the rings: a child that shrank it would make the pool's next access a SIGBUS.
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on our fd.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return None;
        }
        Some(Arc::new(Bulk {
            file: File::from(fd),
            slot,
        }))
    }

    #[cfg(all(unix, not(target_os = "linux")))]
    pub(crate) fn create(_largest: usize) -> Option<Arc<Bulk>> {
        None
    }

    /// The child's side: the memory behind `fd`, of slots carrying frames of `capacity`
    /// bytes (`INIT`'s `bulk`). The descriptor is kept (closed on exec) to map more later.
    #[cfg(unix)]
    pub(crate) fn open(fd: i32, capacity: usize) -> Result<Arc<Bulk>, String> {
        use std::os::fd::FromRawFd;
        let cannot = |why: &str| format!("the memory shared with the pool for big frames: {why}");
        let slot = slot_size(capacity).ok_or_else(|| cannot("a size out of range"))?;
        // SAFETY: fd 5 was handed to this process for this memory; nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        // SAFETY: fcntl on an fd we own: grandchildren must not inherit it.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        let size = file.metadata().map_err(|e| cannot(&e.to_string()))?.len();
        // What lies beyond the file's end would be a SIGBUS when touched.
        if (size as u128) < slot as u128 * 2 {
            return Err(cannot("smaller than the pool said"));
        }
        Ok(Arc::new(Bulk { file, slot }))
    }

    /// The largest frame a slot carries, header included: `INIT`'s `bulk`.
    pub(crate) fn capacity(&self) -> usize {
        self.slot - FRAME
    }

    /// The descriptor to give the child (Unix).
    #[cfg(unix)]
    pub(crate) fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.file.as_raw_fd()
    }

    /// The writing end of the slot of `direction` (one per slot).
    pub(crate) fn writer(self: &Arc<Self>, direction: Direction) -> BulkWriter {
        BulkWriter {
            bulk: self.clone(),
            direction,
            map: None,
            announced: 0,
            holding: false,
        }
    }

    /// The reading end of the slot of `direction` (one per slot).
    pub(crate) fn reader(self: &Arc<Self>, direction: Direction) -> BulkReader {
        BulkReader {
            bulk: self.clone(),
            direction,
            map: None,
            taken: 0,
        }
    }

    /// Maps the first `len` bytes of the slot of `direction`, or more: a power of two, at
    /// least [`FIRST_MAP`], at most the slot. `None` if it is more than the slot, or if the
    /// system refuses (an address-space limit).
    fn map(&self, direction: Direction, len: usize) -> Option<Mapping> {
        if len > self.slot {
            return None;
        }
        let len = len
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX)
            .clamp(FIRST_MAP, self.slot);
        Mapping::new(&self.file, direction as usize * self.slot, len)
    }

    /// Gives back the pages of the slot of `direction` beyond its first [`KEEP`] bytes, up to
    /// the end of a frame of `len` bytes just consumed, which no one reads or writes until the
    /// slot is released: a hole punched in the memory file, which also unmaps them from the
    /// other side. Nothing for a frame within [`KEEP`]; a failure only leaves them resident.
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    fn trim(&self, direction: Direction, len: usize) {
        // Only Linux makes slots (`create`).
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // To a page's end (64 KiB is a whole number of pages, and so is the slot): the
            // rest of the frame's last page is unused too, and a page only partly punched
            // stays.
            let end = FRAME
                .saturating_add(len)
                .checked_next_multiple_of(FIRST_MAP)
                .unwrap_or(usize::MAX)
                .min(self.slot);
            if end <= KEEP {
                return;
            }
            let (Ok(offset), Ok(size)) = (
                libc::off_t::try_from(direction as usize * self.slot + KEEP),
                libc::off_t::try_from(end - KEEP),
            ) else {
                return;
            };
            let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            // SAFETY: fallocate on our fd, within the slot (`KEEP < end <= slot`); the seals
            // allow a hole that keeps the size. Whoever maps those pages reads zeros after.
            unsafe { libc::fallocate(self.file.as_raw_fd(), mode, offset, size) };
        }
    }
}

/// The size of a slot whose frames are at most `capacity` bytes: a whole number of pages.
#[cfg(unix)]
fn slot_size(capacity: usize) -> Option<usize> {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|page| page.is_power_of_two())?;
    let slot = capacity
        .checked_add(FRAME)?
        .checked_next_multiple_of(page)?;
    // The larger mapping of the two: FIRST_MAP.
    Some(slot.max(FIRST_MAP))
}

/// Part of a slot, mapped.
struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is only accessed through atomics and raw-pointer copies, or lent to
// a child's payload while no correct pool writes it; it stays mapped as long as the value.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    #[cfg(unix)]
    fn new(file: &File, offset: usize, len: usize) -> Option<Mapping> {
        use std::os::fd::AsRawFd;
        let offset = libc::off_t::try_from(offset).ok()?;
        // SAFETY: a fresh shared mapping of `len` bytes of the file at a page-aligned offset,
        // all within the file, whose size is sealed; checked below.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            )
        };
        (base != libc::MAP_FAILED).then(|| Mapping {
            base: base.cast(),
            len,
        })
    }

    #[cfg(not(unix))]
    fn new(_file: &File, _offset: usize, _len: usize) -> Option<Mapping> {
        None
    }

    /// The count of frames released, in the slot's first line.
    fn released(&self) -> &AtomicU32 {
        // SAFETY: the first 4 bytes of the mapping, page-aligned, only ever accessed as this
        // atomic.
        unsafe { &*self.base.cast::<AtomicU32>() }
    }

    /// Bytes a frame may take in this mapping.
    fn room(&self) -> usize {
        self.len - FRAME
    }

    /// The frame's memory from byte `at` of it.
    fn frame(&self, at: usize) -> *mut u8 {
        debug_assert!(at <= self.room());
        // SAFETY: within the mapping, as the callers check against `room`.
        unsafe { self.base.add(FRAME + at) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps what `new` mapped; nothing refers to it any more (a lent payload
        // holds its mapping).
        #[cfg(unix)]
        unsafe {
            libc::munmap(self.base.cast(), self.len)
        };
    }
}

/// The writing end of a slot.
pub(crate) struct BulkWriter {
    bulk: Arc<Bulk>,
    direction: Direction,
    map: Option<Mapping>,
    /// Frames announced in the ring (the reader counts those it released).
    announced: u32,
    /// A frame is in the slot, not announced yet.
    holding: bool,
}

impl BulkWriter {
    /// The largest frame the slot carries.
    pub(crate) fn capacity(&self) -> usize {
        self.bulk.capacity()
    }

    /// Whether the slot is free: no frame in it that the reader has not released.
    pub(crate) fn is_free(&self) -> bool {
        if self.holding {
            return false;
        }
        match &self.map {
            Some(map) => map.released().load(Ordering::Acquire) == self.announced,
            // Never mapped: never used.
            None => true,
        }
    }

    /// A place in the (free) slot for bytes `from..` of a frame: at least `want` bytes of the
    /// frame mapped, at most `limit`. `None` if they cannot be mapped.
    pub(crate) fn place(&mut self, from: usize, want: usize, limit: usize) -> Option<Place<'_>> {
        if from > limit.min(self.capacity()) {
            return None;
        }
        let (start, end) = self.memory(want, limit)?;
        // SAFETY: `from..end` lies within the mapping, which lives as long as the place is
        // used (the writer holds both, and maps anew only for the next place); the slot is
        // free, so the reader does not read it.
        Some(unsafe { Place::new(start.add(from), end - from) })
    }

    /// The (free) slot's frame memory, with at least `want` bytes of it mapped: its start and
    /// how many bytes are mapped, at most `limit`. `None` if they cannot be mapped. Valid until
    /// the next call (which may map the slot anew, elsewhere: what was written stays in it).
    pub(crate) fn memory(&mut self, want: usize, limit: usize) -> Option<(*mut u8, usize)> {
        debug_assert!(self.is_free());
        let limit = limit.min(self.capacity());
        if want > limit {
            return None;
        }
        if self.map.as_ref().is_none_or(|map| map.room() < want) {
            let map = self.bulk.map(self.direction, FRAME + want)?;
            // The count carries over: the same memory, mapped anew.
            self.map = Some(map);
        }
        let map = self.map.as_ref().expect("mapped above");
        Some((map.frame(0), map.room().min(limit)))
    }

    /// Copies `frame` into the (free) slot and holds it there; `false` if it cannot be
    /// mapped.
    pub(crate) fn put(&mut self, frame: &[u8]) -> bool {
        match self.place(0, frame.len(), frame.len()) {
            Some(mut place) => {
                place.put(frame);
                self.hold();
                true
            }
            None => false,
        }
    }

    /// The frame written in the slot (through [`place`](Self::place)) is to be announced.
    pub(crate) fn hold(&mut self) {
        self.holding = true;
    }

    /// The frame held was announced: the slot is the reader's until it releases it.
    pub(crate) fn announced(&mut self) {
        debug_assert!(self.holding);
        self.holding = false;
        self.announced = self.announced.wrapping_add(1);
    }
}

/// The reading end of a slot.
pub(crate) struct BulkReader {
    bulk: Arc<Bulk>,
    direction: Direction,
    map: Option<Arc<Mapping>>,
    /// Frames taken.
    taken: u32,
}

impl BulkReader {
    /// The frame of `len` bytes (header included) that the ring announced in the slot, its
    /// every length checked, `max` bounding its body as any frame's: lent where it lies on
    /// the child's side, copied out (and the slot released) on the pool's.
    pub(crate) fn take(&mut self, len: usize, max: usize) -> Result<Frame, Error> {
        let corrupt = |what: &str| Error::Protocol {
            message: format!("the shared slot for big frames is corrupt: {what}"),
        };
        if len < 5 || len > self.bulk.capacity() {
            return Err(corrupt(&format!(
                "a frame of {len} bytes announced, in a slot of {}",
                self.bulk.capacity()
            )));
        }
        if self.map.as_ref().is_none_or(|map| map.room() < len) {
            let map =
                self.bulk
                    .map(self.direction, FRAME + len)
                    .ok_or_else(|| Error::Protocol {
                        message: format!(
                            "mapping the shared memory of a frame of {len} bytes: {}",
                            std::io::Error::last_os_error()
                        ),
                    })?;
            self.map = Some(Arc::new(map));
        }
        let map = self.map.as_ref().expect("mapped above");
        let mut head = [0u8; 5];
        // SAFETY: 5 <= len <= room: within the mapping; copied, never borrowed.
        unsafe { ptr::copy_nonoverlapping(map.frame(0), head.as_mut_ptr(), 5) };
        let header = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        if header != len - 4 {
            return Err(corrupt(&format!(
                "a frame of {header} bytes where {len} were announced"
            )));
        }
        if header > max {
            return Err(Error::Protocol {
                message: format!(
                    "a frame of {header} bytes exceeds max_message_size ({max} bytes)"
                ),
            });
        }
        self.taken = self.taken.wrapping_add(1);
        let body = len - 5;
        let body = match self.direction {
            // The child's side: the pool does not write the slot again before the release.
            Direction::ToChild => Payload::Lent(Box::new(Loan {
                bulk: self.bulk.clone(),
                map: map.clone(),
                len: body,
                taken: self.taken,
            })),
            // The pool's side: copied before anything reads it, and released at once.
            Direction::ToPool => {
                let mut bytes = Vec::with_capacity(body);
                // SAFETY: `5 + body == len <= room`: within the mapping, into the spare
                // capacity of `bytes`; copied, never borrowed.
                unsafe {
                    ptr::copy_nonoverlapping(map.frame(5), bytes.as_mut_ptr(), body);
                    bytes.set_len(body);
                }
                self.bulk.trim(self.direction, len);
                map.released().store(self.taken, Ordering::Release);
                Payload::Owned(bytes)
            }
        };
        Ok(Frame {
            kind: head[4],
            body,
        })
    }
}

/// A frame's body lent where the pool wrote it (the child's side); dropped, it is released.
struct Loan {
    bulk: Arc<Bulk>,
    map: Arc<Mapping>,
    len: usize,
    /// The count of frames released once this one is.
    taken: u32,
}

impl Lent for Loan {
    fn bytes(&self) -> &[u8] {
        // SAFETY: the body lies within the mapping (`take` checked `5 + len` against it),
        // which the `Arc` keeps mapped; the pool writes the slot again only once this loan
        // has released it.
        unsafe { std::slice::from_raw_parts(self.map.frame(5), self.len) }
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        // The frame: its kind and length, then the body.
        self.bulk.trim(Direction::ToChild, 5 + self.len);
        self.map.released().store(self.taken, Ordering::Release);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A frame of `body` bytes of `kind`, as the stream carries it.
    fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut frame = ((body.len() + 1) as u32).to_le_bytes().to_vec();
        frame.push(kind);
        frame.extend_from_slice(body);
        frame
    }

    #[test]
    fn frames_cross_lent_to_the_child_and_copied_to_the_pool() {
        let bulk = Bulk::create(8 << 20).expect("a memfd");
        for direction in [Direction::ToChild, Direction::ToPool] {
            let mut writer = bulk.writer(direction);
            let mut reader = bulk.reader(direction);
            // Growing past the first mapping on both sides, then back.
            for size in [3_000, 200_000, 5 << 20, 10] {
                let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                let sent = frame(6, &body);
                assert!(writer.is_free());
                assert!(writer.put(&sent));
                assert!(!writer.is_free(), "held");
                writer.announced();
                let got = reader.take(sent.len(), usize::MAX).expect("a frame");
                assert_eq!(got.kind, 6);
                assert!(*got.body == body[..]);
                let lent = matches!(got.body, Payload::Lent(_));
                assert_eq!(lent, matches!(direction, Direction::ToChild));
                // A loan holds the slot until dropped; a copy does not.
                assert_eq!(writer.is_free(), !lent);
                drop(got);
                assert!(writer.is_free());
            }
        }
    }

    #[test]
    fn a_frame_bigger_than_the_slot_does_not_go_in() {
        let bulk = Bulk::create(100 << 10).expect("a memfd");
        let mut writer = bulk.writer(Direction::ToPool);
        assert!(bulk.capacity() >= 100 << 10);
        assert!(!writer.put(&vec![0; bulk.capacity() + 1]));
        assert!(writer.is_free());
        assert!(writer.put(&vec![0; bulk.capacity()]));
    }

    #[test]
    fn lying_lengths_are_errors_not_reads_out_of_bounds() {
        let bulk = Bulk::create(1 << 20).expect("a memfd");
        let mut writer = bulk.writer(Direction::ToPool);
        let mut reader = bulk.reader(Direction::ToPool);
        let message = |result: Result<Frame, Error>| match result {
            Err(Error::Protocol { message }) => message,
            other => panic!("not an error: {other:?}"),
        };
        // Announced longer than the slot, or shorter than a frame.
        let said = message(reader.take(bulk.capacity() + 1, usize::MAX));
        assert!(said.contains("announced, in a slot of"), "{said}");
        assert!(message(reader.take(4, usize::MAX)).contains("corrupt"));
        assert!(message(reader.take(usize::MAX, usize::MAX)).contains("corrupt"));
        // A header that is not the announced length.
        let mut lying = frame(6, &[1; 100]);
        lying[..4].copy_from_slice(&(1u32 << 30).to_le_bytes());
        assert!(writer.put(&lying));
        writer.announced();
        let said = message(reader.take(lying.len(), usize::MAX));
        assert!(said.contains("where 105 were announced"), "{said}");
        // A frame over the cap.
        let mut writer = bulk.writer(Direction::ToChild);
        let mut reader = bulk.reader(Direction::ToChild);
        assert!(writer.put(&frame(6, &[1; 100])));
        writer.announced();
        let said = message(reader.take(105, 50));
        assert!(
            said.contains("exceeds max_message_size (50 bytes)"),
            "{said}"
        );
    }

    /// Bytes of the memory file held (its pages that exist).
    fn held(bulk: &Bulk) -> u64 {
        use std::os::unix::fs::MetadataExt;
        bulk.file.metadata().expect("fstat").blocks() * 512
    }

    #[test]
    fn a_big_frame_read_gives_back_the_pages_beyond_what_a_slot_keeps() {
        let bulk = Bulk::create(32 << 20).expect("a memfd");
        for direction in [Direction::ToChild, Direction::ToPool] {
            let mut writer = bulk.writer(direction);
            let mut reader = bulk.reader(direction);
            for size in [KEEP / 2, 20 << 20, 300_000] {
                let sent = frame(6, &vec![9; size]);
                assert!(writer.put(&sent));
                assert!(held(&bulk) >= size as u64, "written: held until read");
                writer.announced();
                let got = reader.take(sent.len(), usize::MAX).expect("a frame");
                assert!(got.body.iter().all(|&byte| byte == 9));
                drop(got);
                assert!(writer.is_free());
                // At most what each slot keeps.
                assert!(
                    held(&bulk) <= 2 * KEEP as u64,
                    "{} bytes held after a frame of {size}",
                    held(&bulk)
                );
            }
        }
        // The next frame finds the slot whole.
        let mut writer = bulk.writer(Direction::ToPool);
        let mut reader = bulk.reader(Direction::ToPool);
        let body: Vec<u8> = (0..(8 << 20)).map(|i| (i % 251) as u8).collect();
        assert!(writer.put(&frame(6, &body)));
        writer.announced();
        let got = reader.take(body.len() + 5, usize::MAX).expect("a frame");
        assert!(*got.body == body[..]);
    }

    #[test]
    fn a_child_cannot_shrink_the_memory() {
        let bulk = Bulk::create(1 << 20).expect("a memfd");
        // SAFETY: ftruncate on the fd of `bulk`, which its seals refuse.
        assert_ne!(unsafe { libc::ftruncate(bulk.fd(), 0) }, 0);
    }
}
