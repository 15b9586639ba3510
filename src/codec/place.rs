//! [`Place`]: memory that a value is encoded into where its reader will find it (the shared
//! memory of a child-process worker, `transport/bulk.rs`), instead of into a `Vec` first that
//! is then copied there: a big argument is written once on its way to a child.
//!
//! A place has a capacity. A place made [`growing`](Place::growing) asks its [`Grow`] for more
//! memory when a value does not fit (the bytes written move there, and writing goes on: a value
//! is encoded once, whatever its size); a fixed one, or one whose `Grow` has no more, is then
//! *full*, whatever was written ([`Encoded::Full`]). Its lifetime is the memory's: a place over
//! a writer's buffer borrows the writer.

use std::io;
use std::marker::PhantomData;
use std::ptr;

use postcard::ser_flavors::Flavor;

/// Fixed memory, written from its start through raw pointers (never through a reference: the
/// memory may be shared with another process).
///
/// `pub` only because the sealed `Carry` trait names it: nothing outside the crate can reach
/// it.
pub struct Place<'a> {
    start: *mut u8,
    capacity: usize,
    len: usize,
    full: bool,
    /// Where more memory comes from, if anywhere.
    grow: Option<&'a mut dyn Grow>,
    memory: PhantomData<&'a mut [u8]>,
}

/// More memory for a [`Place`] that is full: bigger, holding what was written.
pub(crate) trait Grow {
    /// Memory for at least `len + need` bytes, its first `len` those the place wrote so far
    /// (moved there if it is new memory): its start and its capacity; `None` if there is no
    /// more (the place is then full).
    ///
    /// The memory must be valid for writes, and not otherwise used, until the next call or
    /// the end of the place's lifetime.
    fn grow(&mut self, len: usize, need: usize) -> Option<(*mut u8, usize)>;
}

/// Where a value went (`pub` as [`Place`] is).
pub enum Encoded {
    /// Into the place, whose [`len`](Place::len) counts its bytes.
    InPlace,
    /// Nowhere: it did not fit, and the place could not grow (what it holds is not to be read).
    Full,
}

impl<'a> Place<'a> {
    /// A place of `capacity` bytes at `start`.
    ///
    /// # Safety
    ///
    /// `start..start + capacity` must be valid for writes for as long as the place lives
    /// (its lifetime), and nothing of this process may read or write it meanwhile.
    #[inline]
    pub(crate) unsafe fn new(start: *mut u8, capacity: usize) -> Self {
        Place {
            start,
            capacity,
            len: 0,
            full: false,
            grow: None,
            memory: PhantomData,
        }
    }

    /// A place of `capacity` bytes at `start`, which asks `grow` for more when it is full.
    ///
    /// # Safety
    ///
    /// As [`new`](Self::new), for the memory at `start`; then as [`Grow::grow`] promises.
    pub(crate) unsafe fn growing(start: *mut u8, capacity: usize, grow: &'a mut dyn Grow) -> Self {
        Place {
            grow: Some(grow),
            // SAFETY: the caller's promise.
            ..unsafe { Place::new(start, capacity) }
        }
    }

    /// Bytes written.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether something did not fit (what was written since is not to be read).
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.full
    }

    /// Appends `bytes` if they fit; otherwise writes nothing and the place is full.
    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) -> bool {
        if self.full || (bytes.len() > self.capacity - self.len && !self.make_room(bytes.len())) {
            self.full = true;
            return false;
        }
        // SAFETY: `len + bytes.len() <= capacity`, within the memory `new` was promised;
        // `bytes` is this process's own memory, which the place does not overlap.
        unsafe { copy_to(bytes, self.start.add(self.len)) };
        self.len += bytes.len();
        true
    }

    /// Appends `len` bytes that `write` writes at the pointer it is given, if they fit (as
    /// [`put`](Self::put) does): several fields at once, checked once.
    ///
    /// # Safety
    ///
    /// `write` must write all `len` bytes at the pointer it is given, and nothing else; it may
    /// not read them (the memory may be shared with another process).
    #[inline]
    pub(crate) unsafe fn put_with(&mut self, len: usize, write: impl FnOnce(*mut u8)) -> bool {
        if self.full || (len > self.capacity - self.len && !self.make_room(len)) {
            self.full = true;
            return false;
        }
        // SAFETY: `self.len + len <= capacity`, within the memory `new` was promised.
        write(unsafe { self.start.add(self.len) });
        self.len += len;
        true
    }

    /// Grows the place to take `need` more bytes, if it can.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, need: usize) -> bool {
        let Some(grow) = self.grow.as_deref_mut() else {
            return false;
        };
        match grow.grow(self.len, need) {
            Some((start, capacity)) => {
                assert!(
                    capacity >= self.len && capacity - self.len >= need,
                    "grown enough"
                );
                (self.start, self.capacity) = (start, capacity);
                true
            }
            None => false,
        }
    }
}

/// Copies `bytes` to `to`, only writing there. Most fields of a frame, and what an encoder
/// puts at a time, are a few bytes long: up to 16, two overlapping moves of a word or half
/// a word each, inline, instead of a call to `memcpy`.
///
/// # Safety
///
/// `bytes.len()` bytes at `to` must be valid for writes and not overlap `bytes`.
#[inline(always)]
pub(crate) unsafe fn copy_to(bytes: &[u8], to: *mut u8) {
    let len = bytes.len();
    let from = bytes.as_ptr();
    // SAFETY: every read lies within `bytes` and every write within `len` bytes at `to`
    // (both moves of a pair fit `len` bytes: `len` is at least the width of one); unaligned
    // reads and writes are allowed anywhere.
    unsafe {
        if len > 16 {
            ptr::copy_nonoverlapping(from, to, len);
        } else if len >= 8 {
            let (first, last) = (from.cast::<u64>().read_unaligned(), from.add(len - 8));
            let last = last.cast::<u64>().read_unaligned();
            to.cast::<u64>().write_unaligned(first);
            to.add(len - 8).cast::<u64>().write_unaligned(last);
        } else if len >= 4 {
            let (first, last) = (from.cast::<u32>().read_unaligned(), from.add(len - 4));
            let last = last.cast::<u32>().read_unaligned();
            to.cast::<u32>().write_unaligned(first);
            to.add(len - 4).cast::<u32>().write_unaligned(last);
        } else if len > 0 {
            // 1 to 3 bytes: the first, the middle and the last cover them.
            to.write(from.read());
            to.add(len / 2).write(from.add(len / 2).read());
            to.add(len - 1).write(from.add(len - 1).read());
        }
    }
}

/// postcard writes into a place through this flavor.
impl Flavor for &mut Place<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if self.put(data) {
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// serde_json writes into a place as into any writer.
impl io::Write for Place<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.put(bytes) {
            Ok(bytes.len())
        } else {
            Err(io::ErrorKind::WriteZero.into())
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_copies_write_exactly_their_bytes() {
        for len in 0..=40 {
            let bytes: Vec<u8> = (1..=len as u8).collect();
            let mut memory = [0u8; 48];
            // SAFETY: `len + 4 <= 48` bytes of a local array, which `bytes` does not overlap.
            unsafe { copy_to(&bytes, memory.as_mut_ptr().add(4)) };
            assert_eq!(memory[..4], [0; 4]);
            assert_eq!(memory[4..4 + len], bytes[..]);
            assert!(
                memory[4 + len..].iter().all(|&byte| byte == 0),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn a_place_takes_what_fits_and_then_nothing() {
        let mut memory = [0u8; 8];
        // SAFETY: a local array, not otherwise used while the place lives.
        let mut place = unsafe { Place::new(memory.as_mut_ptr(), memory.len()) };
        assert!(place.put(&[1, 2, 3]));
        assert!(place.put(&[4, 5, 6, 7, 8]));
        assert!(!place.is_full());
        // Nothing more fits, not even a byte, and it stays full.
        assert!(!place.put(&[10]));
        assert!(place.is_full());
        assert!(!place.put(&[]));
        assert_eq!(place.len(), 8);
        assert_eq!(memory, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    /// Memory that doubles, up to a bound, moving what was written.
    struct Doubling {
        memory: Vec<u8>,
        most: usize,
        grown: usize,
    }

    impl Grow for Doubling {
        fn grow(&mut self, len: usize, need: usize) -> Option<(*mut u8, usize)> {
            let want = (len + need).max(2 * self.memory.len());
            if len + need > self.most {
                return None;
            }
            let mut bigger = vec![0; want.min(self.most)];
            bigger[..len].copy_from_slice(&self.memory[..len]);
            self.memory = bigger;
            self.grown += 1;
            Some((self.memory.as_mut_ptr(), self.memory.len()))
        }
    }

    #[test]
    fn a_growing_place_moves_what_it_wrote_and_stops_at_its_bound() {
        let mut memory = vec![0u8; 4];
        let start = memory.as_mut_ptr();
        let mut grow = Doubling {
            memory,
            most: 40,
            grown: 0,
        };
        let bytes: Vec<u8> = (1..=30).collect();
        {
            // SAFETY: the doubling memory's, replaced only through `grow`.
            let mut place = unsafe { Place::growing(start, 4, &mut grow) };
            for chunk in bytes.chunks(7) {
                assert!(place.put(chunk));
            }
            assert_eq!(place.len(), 30);
            assert!(!place.is_full());
            // Past its bound, it is full, and stays so.
            assert!(!place.put(&[0; 11]));
            assert!(place.is_full());
            assert!(!place.put(&[0]));
        }
        assert_eq!(grow.memory[..30], bytes[..]);
        assert_eq!(grow.grown, 3, "4 -> 8 -> 16 -> 32 bytes");
    }
}
