//! The socket's system calls. None of them blocks, but `poll`, for as long as it is told.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::exit::ExitWatch;

/// A worker's channel: one Unix stream socket, both ways.
pub(crate) type Channel = UnixStream;

/// Whether the other end of `stream` is closed: a read would say end of stream at once.
pub(crate) fn peer_closed(stream: &UnixStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a byte we own; it never blocks.
    let peeked = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    peeked == 0
}

/// Called once the child has exited, before its end is trusted: on a socket, what it wrote
/// is readable at once (it is in the kernel), so there is nothing to wait for.
pub(super) fn settle(_stream: &UnixStream) {}

/// Whether the other side closed its end (it exited, or was killed): writes to a ring it no
/// longer reads would wait forever.
pub(crate) fn hung_up(stream: &UnixStream) -> bool {
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call; it never blocks.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready > 0 && fd.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

/// Waits up to `timeout` for `stream` to be readable (or closed).
pub(crate) fn poll_readable(stream: &UnixStream, timeout: Duration) -> bool {
    poll(stream, None, false, timeout).0
}

/// Waits up to `timeout` for `stream` to be readable (or closed), or, if `write`, writable;
/// returns (readable, writable). Also woken (with nothing to report) when `peer`, the child,
/// exits (where it has a pidfd).
pub(super) fn poll(
    stream: &UnixStream,
    peer: Option<&ExitWatch>,
    write: bool,
    timeout: Duration,
) -> (bool, bool) {
    let (readable, writable, _) = poll_woken(stream, peer, None, write, timeout);
    (readable, writable)
}

/// [`poll`], also woken when `wake` (a [`Wake`](super::wake::Wake)'s end) is readable;
/// returns (readable, writable, woken).
pub(super) fn poll_woken(
    stream: &UnixStream,
    peer: Option<&ExitWatch>,
    wake: Option<std::os::fd::RawFd>,
    write: bool,
    timeout: Duration,
) -> (bool, bool, bool) {
    let mut fds = [
        libc::pollfd {
            fd: stream.as_raw_fd(),
            events: if write {
                libc::POLLIN | libc::POLLOUT
            } else {
                libc::POLLIN
            },
            revents: 0,
        },
        libc::pollfd {
            // A negative fd is ignored by poll.
            fd: peer.and_then(ExitWatch::fd).unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let millis = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: three valid pollfds, for the duration of the call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), 3, millis) };
    let (revents, woken) = if ready > 0 {
        (fds[0].revents, fds[2].revents != 0)
    } else {
        (0, false)
    };
    (
        revents & !libc::POLLOUT != 0,
        revents & libc::POLLOUT != 0,
        woken,
    )
}

/// Reads what the socket holds now: `None` if nothing, `Some(0)` at its end (a reset too).
pub(super) fn recv_now(stream: &UnixStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: recv into `buf`, borrowed for the call; MSG_DONTWAIT never blocks.
        let read = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if read >= 0 {
            return Ok(Some(read as usize));
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::WouldBlock => return Ok(None),
            io::ErrorKind::Interrupted => {}
            // The other side died with bytes of ours unread: its end, as a close is.
            io::ErrorKind::ConnectionReset => return Ok(Some(0)),
            _ => return Err(error),
        }
    }
}

/// Writes what the socket takes of `bytes` now; returns how much, or the error that broke it.
pub(super) fn send_now(stream: &UnixStream, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        // SAFETY: send from a slice borrowed for the call; it never blocks, and a closed
        // peer is an error (EPIPE), not a SIGPIPE.
        let written = unsafe {
            libc::send(
                stream.as_raw_fd(),
                bytes[sent..].as_ptr().cast(),
                bytes.len() - sent,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if written >= 0 {
            sent += written as usize;
            continue;
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::WouldBlock => break,
            io::ErrorKind::Interrupted => {}
            _ => return Err(error),
        }
    }
    Ok(sent)
}
