//! A page of memory shared by a pool's driver and its child, so that each side can wait for
//! the other's frames by spinning in user space rather than in `poll` system calls.
//!
//! The socket carries every byte; the page only carries two counters, one per direction,
//! which a side bumps after each write. A reader that finds its socket empty notes the
//! counter, spins until it moves (then the socket is readable), and after its spin budget
//! blocks in `poll` on the socket as before. The counters are hints: a missed bump costs a
//! wait in `poll`, never a lost frame. Linux only (`memfd_create`); elsewhere, and if the
//! page cannot be made, both sides poll the socket.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::socket::poll_readable;
use crate::wait::spin_until;

/// Spins briefly, calling `meanwhile` each round, until a frame written `direction` is
/// probably waiting on `stream`: the caller then reads, or blocks in `poll` as it would have.
pub(crate) fn spin_for_frame(
    stream: &UnixStream,
    page: Option<&SharedPage>,
    direction: Direction,
    mut meanwhile: impl FnMut(),
) {
    // Noted before the socket is looked at: a write after that look moves the count.
    let seen = page.map(|page| page.count(direction));
    if poll_readable(stream, Duration::ZERO) {
        return;
    }
    spin_until(|| {
        meanwhile();
        match (page, seen) {
            (Some(page), Some(seen)) => page.moved(direction, seen),
            _ => poll_readable(stream, Duration::ZERO),
        }
    });
}

/// Which way the frames go whose writes a counter counts.
#[derive(Clone, Copy)]
pub(crate) enum Direction {
    ToChild = 0,
    ToPool = 1,
}

/// The mapped page: its first two `u32`s are the counters.
pub(crate) struct SharedPage {
    counters: *const [AtomicU32; 2],
}

// SAFETY: the page holds only atomics, and stays mapped as long as the `SharedPage` lives.
unsafe impl Send for SharedPage {}
// SAFETY: as above; all access goes through atomics.
unsafe impl Sync for SharedPage {}

const PAGE: usize = 4096;

impl SharedPage {
    /// Makes a page for a new child: the page, and the file descriptor to give the child.
    #[cfg(target_os = "linux")]
    pub(crate) fn create() -> Option<(SharedPage, std::os::fd::OwnedFd)> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: memfd_create with a NUL-terminated name; the fd is owned from here on.
        let fd = unsafe { libc::memfd_create(c"tinypool".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a file descriptor just created and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate on our fd: a page of zeros.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), PAGE as libc::off_t) } != 0 {
            return None;
        }
        let page = SharedPage::map(fd.as_raw_fd())?;
        Some((page, fd))
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn create() -> Option<(SharedPage, std::os::fd::OwnedFd)> {
        None
    }

    /// Maps the page behind `fd` (the child's side; the fd may be closed afterwards).
    pub(crate) fn map(fd: i32) -> Option<SharedPage> {
        // SAFETY: a fresh shared mapping of one page of `fd`; checked below.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        (address != libc::MAP_FAILED).then(|| SharedPage {
            counters: address.cast(),
        })
    }

    fn counter(&self, direction: Direction) -> &AtomicU32 {
        // SAFETY: the mapping is live while `self` is, page-aligned, and zero-initialized,
        // which is a valid `[AtomicU32; 2]`.
        unsafe { &(*self.counters)[direction as usize] }
    }

    /// Says that a frame (or part of one) was written `direction`.
    pub(crate) fn bump(&self, direction: Direction) {
        self.counter(direction).fetch_add(1, Ordering::Release);
    }

    /// The count of writes `direction` so far, to wait for the next with [`moved`](Self::moved).
    pub(crate) fn count(&self, direction: Direction) -> u32 {
        self.counter(direction).load(Ordering::Acquire)
    }

    /// Whether a write `direction` happened since the count was `seen`.
    pub(crate) fn moved(&self, direction: Direction, seen: u32) -> bool {
        self.count(direction) != seen
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: unmaps the page this value mapped; nothing refers to it any more.
        unsafe { libc::munmap(self.counters as *mut libc::c_void, PAGE) };
    }
}
