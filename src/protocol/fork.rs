//! The fork server's control channel (Linux): a `SOCK_SEQPACKET` socket pair between a pool
//! and the one child it started as a fork server (`runtime/spawn/forks.rs` is the pool's side,
//! `runtime/child/zygote.rs` the server's). A worker forked from that child is the copy of a
//! process that has run `exports()` and nothing else; it then serves on its own channel as any
//! worker does, from `HELLO` on.
//!
//! Each message is one packet of 12 bytes, `tag:u32le a:i32le b:i32le`, with descriptors
//! attached (`SCM_RIGHTS`) where the table says:
//!
//! | tag | direction | fields | descriptors |
//! |---|---|---|---|
//! | `READY` (1) | server → pool, first | a: [`VERSION`] | |
//! | `REFUSED` (2) | server → pool, first, then it exits | a: its thread count (forking a process of more than one thread is not safe), or 0 where the kernel has no pidfds | |
//! | `FORK` (3) | pool → server | a: descriptor count | the worker's fd 3 (its channel), then fd 4 and fd 5 if any |
//! | `FORKED` (4) | server → pool | a: the worker's pid | its pidfd |
//! | `FAILED` (5) | server → pool | a: `fork`'s errno | |
//! | `EXITED` (6) | server → pool | a: pid, b: its wait status | |
//!
//! The server answers each `FORK` with `FORKED` or `FAILED`, in order, with `EXITED`s in
//! between as its workers end (it reaps them: they are its children). It exits at the end of
//! its socket; its workers die with it (`PR_SET_PDEATHSIG`). Anything else (a packet of
//! another size, an unknown tag, descriptors where none belong, or too many) is a broken
//! server: the pool stops using it.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::VERSION;

/// The environment variable that makes a worker process a fork server (with the worker
/// marker, whose fd is then the control socket).
pub(crate) const FORK_ENV: &str = "TINYPOOL_FORK_SERVER";

/// The most descriptors a message carries (a worker's fds 3 to 5).
pub(crate) const MAX_FDS: usize = 3;

const READY: u32 = 1;
const REFUSED: u32 = 2;
const FORK: u32 = 3;
const FORKED: u32 = 4;
const FAILED: u32 = 5;
const EXITED: u32 = 6;
const SIZE: usize = 12;

/// One message of the control channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Ready { version: u32 },
    Refused { threads: i32 },
    Fork,
    Forked { pid: i32 },
    Failed { errno: i32 },
    Exited { pid: i32, status: i32 },
}

impl Control {
    /// The server's first message when it can serve.
    pub(crate) fn ready() -> Self {
        Control::Ready { version: VERSION }
    }

    fn encode(self, fds: usize) -> [u8; SIZE] {
        let (tag, a, b) = match self {
            Control::Ready { version } => (READY, version as i32, 0),
            Control::Refused { threads } => (REFUSED, threads, 0),
            Control::Fork => (FORK, fds as i32, 0),
            Control::Forked { pid } => (FORKED, pid, 0),
            Control::Failed { errno } => (FAILED, errno, 0),
            Control::Exited { pid, status } => (EXITED, pid, status),
        };
        let mut bytes = [0; SIZE];
        bytes[..4].copy_from_slice(&tag.to_le_bytes());
        bytes[4..8].copy_from_slice(&a.to_le_bytes());
        bytes[8..].copy_from_slice(&b.to_le_bytes());
        bytes
    }

    /// The message in `bytes`, if it is one and `fds` descriptors belong with it.
    fn decode(bytes: &[u8], fds: usize) -> Option<Self> {
        let word = |at: usize| i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        if bytes.len() != SIZE {
            return None;
        }
        let (a, b) = (word(4), word(8));
        let message = match word(0) as u32 {
            READY => Control::Ready { version: a as u32 },
            REFUSED => Control::Refused { threads: a },
            FORK if (1..=MAX_FDS as i32).contains(&a) && a as usize == fds => {
                return Some(Control::Fork)
            }
            FORKED if fds == 1 => return Some(Control::Forked { pid: a }),
            FAILED => Control::Failed { errno: a },
            EXITED => Control::Exited { pid: a, status: b },
            _ => return None,
        };
        (fds == 0).then_some(message)
    }
}

/// Sends `message` on `socket` with `fds` attached; never blocks (a full socket is an error:
/// the peer stopped reading).
pub(crate) fn send(socket: RawFd, message: Control, fds: &[RawFd]) -> io::Result<()> {
    let bytes = message.encode(fds.len());
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: SIZE,
    };
    let mut space = Space::default();
    // SAFETY: a zeroed msghdr is valid; every pointer in it (the iovec, the control buffer)
    // lives until sendmsg returns, and the control buffer holds a header and `fds` in full
    // (`fds.len() <= MAX_FDS`, checked).
    unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        if !fds.is_empty() {
            if fds.len() > MAX_FDS {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            }
            let length = std::mem::size_of_val(fds) as u32;
            header.msg_control = space.0.as_mut_ptr().cast();
            header.msg_controllen = libc::CMSG_SPACE(length) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&header);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(length) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        }
        let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
        if libc::sendmsg(socket, &header, flags) == SIZE as isize {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Receives one message from `socket` and the descriptors attached (close-on-exec); `Ok(None)`
/// at its end. `wait`: block until one comes, else `WouldBlock` when none is there. A packet
/// that is no message is `InvalidData` (its descriptors are closed).
pub(crate) fn receive(socket: RawFd, wait: bool) -> io::Result<Option<(Control, Vec<OwnedFd>)>> {
    let mut bytes = [0u8; SIZE + 1];
    let mut iov = libc::iovec {
        iov_base: bytes.as_mut_ptr().cast(),
        iov_len: bytes.len(),
    };
    let mut space = Space::default();
    let mut fds = Vec::new();
    // SAFETY: as in `send`; the kernel writes at most `msg_controllen` bytes of control data,
    // and each descriptor it lists is new in this process and owned from here on.
    let read = unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = space.0.as_mut_ptr().cast();
        header.msg_controllen = std::mem::size_of::<Space>() as _;
        let mut flags = libc::MSG_CMSG_CLOEXEC;
        if !wait {
            flags |= libc::MSG_DONTWAIT;
        }
        let read = libc::recvmsg(socket, &mut header, flags);
        if read < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let length = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for at in 0..length / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(at).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
        if header.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidData));
        }
        read as usize
    };
    if read == 0 && fds.is_empty() {
        return Ok(None);
    }
    match Control::decode(&bytes[..read], fds.len()) {
        Some(message) => Ok(Some((message, fds))),
        None => Err(io::Error::from(io::ErrorKind::InvalidData)),
    }
}

/// A control buffer for one header and [`MAX_FDS`] descriptors, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct Space([u8; 64]);

impl Default for Space {
    fn default() -> Self {
        Space([0; 64])
    }
}

/// A `SOCK_SEQPACKET` socket pair, both ends close-on-exec.
pub(crate) fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut ends = [0; 2];
    let kind = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    // SAFETY: socketpair writes two descriptors into `ends`, owned from here on.
    unsafe {
        if libc::socketpair(libc::AF_UNIX, kind, 0, ends.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])))
    }
}

/// Whether `fd` is a `SOCK_SEQPACKET` socket, as the control socket is.
pub(crate) fn is_control_socket(fd: RawFd) -> bool {
    let mut kind: libc::c_int = 0;
    let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes an int into a local of that size; a descriptor that is not a
    // socket makes it fail.
    let typed = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut libc::c_int).cast(),
            &mut length,
        )
    } == 0;
    typed && kind == libc::SOCK_SEQPACKET
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn raw(fds: &[OwnedFd]) -> Vec<RawFd> {
        fds.iter().map(AsRawFd::as_raw_fd).collect()
    }

    #[test]
    fn messages_cross_with_their_descriptors() {
        let (pool, server) = socket_pair().unwrap();
        let (a, b) = socket_pair().unwrap();
        send(pool.as_raw_fd(), Control::Fork, &raw(&[a, b])).unwrap();
        let (message, fds) = receive(server.as_raw_fd(), true).unwrap().unwrap();
        assert_eq!((message, fds.len()), (Control::Fork, 2));
        let exited = Control::Exited { pid: 7, status: 9 };
        send(server.as_raw_fd(), exited, &[]).unwrap();
        let (message, fds) = receive(pool.as_raw_fd(), false).unwrap().unwrap();
        assert_eq!((message, fds.len()), (exited, 0));
        let none = receive(pool.as_raw_fd(), false).unwrap_err();
        assert_eq!(none.kind(), io::ErrorKind::WouldBlock);
        drop(server);
        assert!(receive(pool.as_raw_fd(), true).unwrap().is_none());
    }

    #[test]
    fn anything_else_is_invalid_data_and_its_descriptors_are_closed() {
        let (pool, server) = socket_pair().unwrap();
        // A `FORKED` without its pidfd, a `READY` with one, a short packet, an unknown tag.
        let (a, _b) = socket_pair().unwrap();
        let forked = Control::Forked { pid: 1 }.encode(0);
        let ready = Control::ready().encode(0);
        // SAFETY: plain sends of local buffers.
        unsafe { libc::send(server.as_raw_fd(), forked.as_ptr().cast(), SIZE, 0) };
        send(server.as_raw_fd(), Control::ready(), &[a.as_raw_fd()]).unwrap();
        // SAFETY: as above.
        unsafe { libc::send(server.as_raw_fd(), ready.as_ptr().cast(), 5, 0) };
        let mut unknown = ready;
        unknown[0] = 99;
        // SAFETY: as above.
        unsafe { libc::send(server.as_raw_fd(), unknown.as_ptr().cast(), SIZE, 0) };
        for _ in 0..4 {
            let error = receive(pool.as_raw_fd(), false).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        }
    }
}
