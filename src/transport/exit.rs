//! A child's exit, as the pool's end of its channel sees it: the end of the socket does not
//! say that the child is gone (a process it forked may hold a copy of its end), so the pool's
//! reader and writer also watch the child itself, without reaping it.

use std::os::fd::RawFd;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Tells whether a child has exited, without reaping it. End of stream on its socket does not
/// say so: a process it forked may hold a copy of its end for as long as it lives.
#[derive(Clone)]
pub(crate) struct ExitWatch {
    pid: libc::pid_t,
    /// Linux: a pidfd, readable once the child has exited, so that a `poll` wakes at its death.
    #[cfg(target_os = "linux")]
    pidfd: Option<std::sync::Arc<OwnedFd>>,
}

impl ExitWatch {
    pub(crate) fn new(pid: libc::pid_t) -> Self {
        ExitWatch {
            pid,
            #[cfg(target_os = "linux")]
            pidfd: pidfd_open(pid).map(std::sync::Arc::new),
        }
    }

    /// Watches `pid` through `pidfd`: a worker that another process started (a fork server's
    /// child, which this process cannot wait for).
    #[cfg(target_os = "linux")]
    pub(crate) fn with_pidfd(pid: libc::pid_t, pidfd: OwnedFd) -> Self {
        ExitWatch {
            pid,
            pidfd: Some(std::sync::Arc::new(pidfd)),
        }
    }

    /// A descriptor that becomes readable when the child exits, to `poll` beside its socket.
    pub(crate) fn fd(&self) -> Option<RawFd> {
        #[cfg(target_os = "linux")]
        return self.pidfd.as_ref().map(|fd| fd.as_raw_fd());
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// Whether the child has exited (reaped or not).
    pub(crate) fn exited(&self) -> bool {
        if let Some(fd) = self.fd() {
            let mut pollfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for the duration of the call; it never blocks.
            return unsafe { libc::poll(&mut pollfd, 1, 0) } > 0;
        }
        // SAFETY: waitid into a local; WNOWAIT leaves the child to be reaped by its `ChildProcess`.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
            let found = libc::waitid(libc::P_PID, self.pid as libc::id_t, &mut info, flags);
            // An error is a child already reaped (ECHILD): it has exited.
            found != 0 || exited_pid(&info) != 0
        }
    }
}

/// The pid a `waitid` found (0: none has exited).
#[cfg(any(target_os = "linux", target_os = "android"))]
unsafe fn exited_pid(info: &libc::siginfo_t) -> libc::pid_t {
    // SAFETY: (the caller's) `info` was filled by waitid, which sets the pid field.
    unsafe { info.si_pid() }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
unsafe fn exited_pid(info: &libc::siginfo_t) -> libc::pid_t {
    info.si_pid
}

/// A pidfd for `pid` (Linux 5.3 and later; `None` before): a child not yet reaped, this
/// process, or a fork server's parent (the pool), which it watches.
#[cfg(target_os = "linux")]
pub(crate) fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: the pidfd_open system call; the fd is owned from here on.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a descriptor just created and owned by nobody else (pidfds close on exec).
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
