//! [`Draft`]: a frame written outside its [`Writer`], so outside the lock a driver's writer is
//! shared under. A task's argument is encoded by user code (`Serialize`), which may send on a
//! task channel bridged to the same child, through that very writer: under its lock, that
//! would deadlock the driver's thread on itself.
//!
//! The frame's first `head` bytes are left for later ([`Drafted::write_head`] writes them once
//! the body's length is known, still outside the lock), and [`Writer::send_draft`] sends the
//! frame: a small one is copied straight into the ring when nothing waits before it. The body is encoded once, in place, into memory that grows as
//! it needs (a growing [`Place`]): the caller's buffer while the frame fits a ring; then the
//! writer's slot for big frames, lent to the draft (`Writer::lend_slot`) if it is free, mapped
//! further as the frame grows (what was written stays in the memory file), so that a big
//! argument is written once, where the child reads it; then, for a frame bigger than the slot,
//! or if the slot is taken, the buffer again, grown as a `Vec` grows. The frame never passes
//! `limit` bytes: beyond, the place is full.
//!
//! [`Writer`]: super::Writer
//! [`Writer::send_draft`]: super::Writer::send_draft

use std::ptr;

use super::bulk::BulkWriter;
use super::ring::INLINE_MAX;
use crate::codec::{Grow, Place};

/// A frame being written outside its writer (see the module's doc).
pub(crate) struct Draft<'a> {
    /// Where the frame is while it fits a ring, or does not fit the slot: the caller's, kept
    /// from one frame to the next.
    buffer: &'a mut Vec<u8>,
    /// The bytes left at the start for the frame's head.
    head: usize,
    /// The most bytes the frame may take, its header included.
    limit: usize,
    /// Lends the writer's slot for big frames, if it is free.
    lend: &'a mut dyn FnMut() -> Option<BulkWriter>,
    /// The slot, once lent: it goes back to the writer with the frame.
    slot: Option<BulkWriter>,
    /// Whether the slot was asked for (once: it locks the writer).
    asked: bool,
    /// Whether the frame is in the slot (otherwise in the buffer).
    in_slot: bool,
}

/// A draft whose body is written, for [`Writer::send_draft`] or
/// [`Writer::discard_draft`](super::Writer::discard_draft).
///
/// [`Writer::send_draft`]: super::Writer::send_draft
pub(crate) struct Drafted {
    /// The writer's slot, if it was lent: it goes back.
    pub(super) slot: Option<BulkWriter>,
    /// Whether the frame is in the slot (otherwise in the caller's buffer).
    pub(super) in_slot: bool,
    /// The bytes left for the head.
    pub(super) head: usize,
    /// The frame's bytes, its head included.
    pub(crate) size: usize,
    /// Whether its head was written ([`write_head`](Self::write_head)).
    pub(super) headed: bool,
}

impl<'a> Draft<'a> {
    /// A frame of at most `max` bytes (its kind and body, as `max_message_size` counts) whose
    /// first `head` bytes are written last, in `buffer` first; `lend` lends the writer's slot
    /// (locking the writer for that moment only).
    #[inline]
    pub(crate) fn new(
        buffer: &'a mut Vec<u8>,
        head: usize,
        max: usize,
        lend: &'a mut dyn FnMut() -> Option<BulkWriter>,
    ) -> Self {
        Draft {
            buffer,
            head,
            limit: max.saturating_add(4),
            lend,
            slot: None,
            asked: false,
            in_slot: false,
        }
    }

    /// The place for the body, after the head: the buffer's room within a ring's frame, which
    /// grows as the module's doc says. One place per draft.
    #[inline]
    pub(crate) fn place(&mut self) -> Place<'_> {
        let room = INLINE_MAX.min(self.limit);
        self.buffer.clear();
        self.buffer.reserve(room);
        let start = self.buffer.as_mut_ptr();
        // A head that leaves no room in the buffer: the first byte asks for more.
        let (start, capacity) = match room.checked_sub(self.head) {
            // SAFETY: `head <= room`, within the buffer's capacity.
            Some(capacity) => (unsafe { start.add(self.head) }, capacity),
            None => (start, 0),
        };
        // SAFETY: `start..start + capacity` lies in the buffer's spare capacity, which nothing
        // else touches while the place borrows this draft; `grow` gives memory as it promises.
        unsafe { Place::growing(start, capacity, self) }
    }

    /// The draft, its body `len` bytes long (its place's [`len`](Place::len)).
    #[inline]
    pub(crate) fn finish(self, len: usize) -> Drafted {
        Drafted {
            slot: self.slot,
            in_slot: self.in_slot,
            head: self.head,
            size: self.head.saturating_add(len),
            headed: false,
        }
    }

    /// The frame's `len` body bytes, in the buffer at `head`, become the buffer's content
    /// (after a zeroed head) and the buffer grows by `need` at least: the body's new start and
    /// room.
    fn grow_buffer(&mut self, len: usize, need: usize) -> (*mut u8, usize) {
        if len == 0 {
            self.buffer.clear();
            self.buffer.reserve(self.head + need);
        } else {
            // SAFETY: `head + len` bytes lie within the capacity (the body was written there,
            // after the head); the head is zeroed, so all of them are initialized.
            unsafe {
                ptr::write_bytes(self.buffer.as_mut_ptr(), 0, self.head);
                self.buffer.set_len(self.head + len);
            }
            self.buffer.reserve(need);
        }
        let capacity = self.buffer.capacity().min(self.limit);
        // SAFETY: `head <= capacity`: the buffer holds at least `head + len + need` bytes,
        // within the limit (checked by `grow`).
        let start = unsafe { self.buffer.as_mut_ptr().add(self.head) };
        (start, capacity - self.head)
    }
}

impl Drafted {
    /// Writes the frame's head, where its body is (in `buffer`, the draft's, or in the slot):
    /// `write` fills the place it is given, of the head's bytes. Still outside the writer's
    /// lock, once the frame is to be sent.
    pub(crate) fn write_head(&mut self, buffer: &mut Vec<u8>, write: impl FnOnce(&mut Place<'_>)) {
        let written = |place: Place<'_>| {
            assert!(
                place.len() == self.head && !place.is_full(),
                "the head fills its place"
            );
        };
        if self.in_slot {
            let slot = self.slot.as_mut().expect("the frame is in it");
            let mut place = slot
                .place(0, self.head, self.head)
                .expect("mapped for the draft");
            write(&mut place);
            written(place);
        } else {
            assert!(self.size <= buffer.capacity(), "drafted within the buffer");
            // SAFETY: `..head` lies within the capacity (`head <= size`), not otherwise used
            // while the place lives.
            let mut place = unsafe { Place::new(buffer.as_mut_ptr(), self.head) };
            write(&mut place);
            written(place);
        }
        self.headed = true;
    }
}

impl Grow for Draft<'_> {
    fn grow(&mut self, len: usize, need: usize) -> Option<(*mut u8, usize)> {
        let want = self.head.checked_add(len)?.checked_add(need)?;
        if want > self.limit {
            return None;
        }
        if !self.asked {
            self.asked = true;
            self.slot = (self.lend)();
        }
        if let Some(slot) = self.slot.as_mut() {
            if let Some((frame, mapped)) = slot.memory(want, self.limit) {
                // SAFETY: `head + len <= want <= mapped` bytes of the slot are mapped.
                let body = unsafe { frame.add(self.head) };
                if !self.in_slot {
                    // SAFETY: the buffer holds the body's `len` bytes at `head` (written
                    // within its capacity); the slot has room for them at `head`; this
                    // process's memory and the shared file's do not overlap.
                    unsafe {
                        ptr::copy_nonoverlapping(self.buffer.as_ptr().add(self.head), body, len)
                    };
                    self.in_slot = true;
                }
                return Some((body, mapped - self.head));
            }
        }
        if self.in_slot {
            // Too big for the slot (or it cannot be mapped further): back to the buffer.
            let slot = self.slot.as_mut().expect("the frame is in it");
            let (frame, _) = slot
                .memory(self.head + len, self.limit)
                .expect("mapped for what is written");
            self.buffer.clear();
            self.buffer.reserve(want);
            // SAFETY: the slot's mapping holds the body's `len` bytes at `head`; the buffer's
            // capacity holds `want >= head + len` bytes.
            unsafe {
                ptr::copy_nonoverlapping(
                    frame.add(self.head),
                    self.buffer.as_mut_ptr().add(self.head),
                    len,
                )
            };
            self.in_slot = false;
        }
        Some(self.grow_buffer(len, need))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;

    use std::os::unix::net::UnixStream;
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::protocol::{Run, ToChild};
    use crate::transport::{Bulk, Direction, ExitWatch, Reader, Region, Writer};

    const HEAD: usize = 40;

    /// Where a draft's body ended up.
    enum Body {
        Buffer(Vec<u8>),
        Slot(Vec<u8>),
        Full,
    }

    /// Drafts `body` (written 1,000 bytes at a time) in a frame of at most `max` bytes, with
    /// `bulk`'s slot to lend if `slot`; says where it went, and how often the slot was asked.
    fn draft(bulk: &Arc<Bulk>, slot: bool, max: usize, body: &[u8]) -> (Body, usize) {
        let asked = Cell::new(0);
        let mut lend = || {
            asked.set(asked.get() + 1);
            slot.then(|| bulk.writer(Direction::ToChild))
        };
        let mut buffer = Vec::new();
        let mut draft = Draft::new(&mut buffer, HEAD, max, &mut lend);
        let (fitted, len) = {
            let mut place = draft.place();
            let fitted = body.chunks(1_000).all(|chunk| place.put(chunk));
            (fitted, place.len())
        };
        let drafted = draft.finish(len);
        assert_eq!(drafted.slot.is_some(), slot && asked.get() > 0);
        let found = if !fitted {
            Body::Full
        } else if drafted.in_slot {
            let mut slot = drafted.slot.expect("lent");
            let (frame, mapped) = slot.memory(drafted.size, drafted.size).expect("mapped");
            assert!(mapped >= drafted.size);
            // SAFETY: the slot's mapping holds the frame's `size` bytes.
            let frame = unsafe { std::slice::from_raw_parts(frame, drafted.size) };
            Body::Slot(frame[HEAD..].to_vec())
        } else {
            assert!(buffer.capacity() >= drafted.size);
            // SAFETY: the draft wrote `size` bytes of the buffer's capacity (the head zeroed,
            // or not written: only what follows it is read).
            let frame = unsafe { std::slice::from_raw_parts(buffer.as_ptr(), drafted.size) };
            Body::Buffer(frame[HEAD..].to_vec())
        };
        (found, asked.get())
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 253) as u8).collect()
    }

    #[test]
    fn a_body_moves_on_as_it_grows_and_is_written_once() {
        let bulk = Bulk::create(1 << 20).expect("a memfd");
        let max = usize::MAX;
        // Within a ring's frame: the buffer, and the slot not even asked for.
        let small = pattern(INLINE_MAX - HEAD - 4);
        assert!(matches!(draft(&bulk, true, max, &small), (Body::Buffer(b), 0) if b == small));
        // Bigger: the slot, mapped further and further.
        let big = pattern(900_000);
        assert!(matches!(draft(&bulk, true, max, &big), (Body::Slot(b), 1) if b == big));
        // The slot taken: the buffer, grown.
        assert!(matches!(draft(&bulk, false, max, &big), (Body::Buffer(b), 1) if b == big));
        // Bigger than the slot: out of it, back to the buffer.
        let bigger = pattern(3 << 20);
        assert!(matches!(draft(&bulk, true, max, &bigger), (Body::Buffer(b), 1) if b == bigger));
    }

    /// Drafts a `RUN` frame of task `task` with `arg` for its argument, in `buffer`, and sends
    /// it through `writer`; says whether it went straight into the ring (`buffer` kept its
    /// memory) and what the child should read.
    fn send_run(writer: &mut Writer, buffer: &mut Vec<u8>, task: u64, arg: &[u8]) -> bool {
        let run = Run {
            task,
            name: "export",
            arg_type: "Arg",
            result_type: "Result",
            port_type: "",
            arg: &[],
        };
        let head = run.head_size();
        let mut lend = || None;
        let mut draft = Draft::new(buffer, head, usize::MAX, &mut lend);
        let len = {
            let mut place = draft.place();
            assert!(place.put(arg));
            place.len()
        };
        let mut drafted = draft.finish(len);
        drafted.write_head(buffer, |out| run.write_head(head, len, out));
        let memory = buffer.as_ptr();
        writer.send_draft(buffer, drafted).expect("sent");
        buffer.as_ptr() == memory
    }

    /// A small drafted frame is copied straight into the ring while nothing waits before it;
    /// one the ring has no room for waits in its buffer (the draft gets another), and those
    /// after it wait behind it, even once the ring has room: all are read as they were sent.
    #[test]
    fn drafts_go_straight_into_the_ring_or_wait_their_turn() {
        let (region, _fd) = Region::create().expect("a shared region");
        let (ours, theirs) = UnixStream::pair().expect("a socket pair");
        let mut reader = Reader::from_pool(ours);
        reader.attach(region.reader(Direction::ToChild));
        let us = libc::pid_t::try_from(std::process::id()).expect("a pid");
        let mut writer = Writer::ahead(theirs, ExitWatch::new(us));
        writer.attach(region.writer(Direction::ToChild));
        let mut buffer = Vec::new();
        let arg = |task: u64| pattern(100 + (task as usize * 37) % 500);
        let mut in_ring = Vec::new();
        let mut task = 0;
        // Unread, the ring fills: the frame that finds no room waits.
        while in_ring.last() != Some(&false) {
            in_ring.push(send_run(&mut writer, &mut buffer, task, &arg(task)));
            task += 1;
        }
        assert!(in_ring.len() > 2 && in_ring[..in_ring.len() - 1].iter().all(|&in_ring| in_ring));
        // The driver sees that a frame waits, without the writer's lock.
        let backlog = writer.backlog_flag();
        assert!(backlog.load(Ordering::Acquire));
        let mut read = 0;
        let read_one = |reader: &mut Reader, read: &mut u64| {
            let frame = reader
                .read_frame(usize::MAX)
                .expect("a frame")
                .expect("a frame");
            let ToChild::Run(run) = ToChild::decode(&frame).expect("a RUN") else {
                panic!("not a RUN");
            };
            assert_eq!((run.task, run.name), (*read, "export"));
            assert_eq!(run.arg, &arg(*read)[..]);
            *read += 1;
        };
        // Room again, but a frame waits: the next one goes behind it.
        read_one(&mut reader, &mut read);
        assert!(!send_run(&mut writer, &mut buffer, task, &arg(task)));
        task += 1;
        while read < task {
            writer.flush().expect("the channel works");
            read_one(&mut reader, &mut read);
        }
        // Nothing waits: straight into the ring again.
        assert!(writer.flush().expect("the channel works").is_empty());
        assert!(!backlog.load(Ordering::Acquire));
        assert!(send_run(&mut writer, &mut buffer, task, &arg(task)));
        read_one(&mut reader, &mut read);
    }

    #[test]
    fn a_body_stops_at_the_frame_cap() {
        let bulk = Bulk::create(1 << 20).expect("a memfd");
        // `max` counts all but the frame's 4-byte header.
        let max = 200_000;
        let at_cap = pattern(max + 4 - HEAD);
        assert!(matches!(draft(&bulk, true, max, &at_cap), (Body::Slot(b), 1) if b == at_cap));
        let over = pattern(max + 5 - HEAD);
        assert!(matches!(draft(&bulk, true, max, &over), (Body::Full, 1)));
        assert!(matches!(draft(&bulk, false, max, &over), (Body::Full, 1)));
        // A head bigger than the cap leaves no room at all.
        assert!(matches!(
            draft(&bulk, true, HEAD - 10, &[1]),
            (Body::Full, 0)
        ));
    }
}
