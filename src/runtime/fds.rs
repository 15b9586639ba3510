//! Descriptors put on the numbers a worker expects (Unix): fd 3 its channel, fd 4 and 5 its
//! shared memory. Both ways a worker starts do it, `posix_spawn`'s file actions for a spawned
//! one (`spawn/posix.rs`) and a fork server's child for a forked one (`child/zygote.rs`), from
//! copies this module makes first, above every target: placing one descriptor (a `dup2` onto
//! its number) then never overwrites the source of another, in whatever order they go.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Copies of `fds`' first halves, each with its target (the second half), every copy
/// numbered above every target, and close-on-exec.
pub(super) fn staged(fds: &[(RawFd, RawFd)]) -> io::Result<Vec<(OwnedFd, RawFd)>> {
    let above = fds.iter().map(|&(_, target)| target).max().unwrap_or(2) + 1;
    fds.iter()
        .map(|&(source, target)| {
            // SAFETY: fcntl on a descriptor the caller holds; the copy is owned from here on.
            let copy = unsafe { libc::fcntl(source, libc::F_DUPFD_CLOEXEC, above) };
            if copy < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `copy` was just created and nothing else owns it.
            Ok((unsafe { OwnedFd::from_raw_fd(copy) }, target))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn every_copy_is_above_every_target_and_the_same_file() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fds = [(a.as_raw_fd(), 3), (b.as_raw_fd(), 40), (a.as_raw_fd(), 4)];
        let staged = staged(&fds).unwrap();
        let targets: Vec<RawFd> = staged.iter().map(|&(_, target)| target).collect();
        assert_eq!(targets, [3, 40, 4]);
        for ((copy, _), &(source, _)) in staged.iter().zip(&fds) {
            assert!(copy.as_raw_fd() > 40);
            // SAFETY: fcntl reads the flags of a descriptor this test owns.
            let flags = unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_GETFD) };
            assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
            assert_eq!(inode(copy.as_raw_fd()), inode(source));
        }
    }

    fn inode(fd: RawFd) -> u64 {
        // SAFETY: fstat into a local, on a descriptor this test owns.
        unsafe {
            let mut stat: libc::stat = std::mem::zeroed();
            assert_eq!(libc::fstat(fd, &mut stat), 0);
            stat.st_ino as u64
        }
    }
}
