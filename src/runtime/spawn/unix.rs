//! Starting a worker process, and waiting for it (Unix): spawned (`posix.rs`), or forked from
//! the pool's fork server (`forks.rs`, Linux), which reaps it and says how it ended.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
#[cfg(target_os = "linux")]
use std::sync::Arc;

#[cfg(target_os = "linux")]
use super::forks::ForkServer;
use super::{posix, Forks, Started};
use crate::options::ProcessOptions;
use crate::protocol::{Marker, BULK_FD, CHILD_FD, RINGS_FD, WORKER_ENV};
use crate::transport::{Bulk, ExitWatch, Region};

/// Starts a worker as `options` say, with this process's environment plus `env`: the child's
/// end of a socket pair on fd 3 (the marker names it), the rings shared with it (Linux) on
/// fd 4, with the slots for its big frames on fd 5. Forked from the pool's fork server when
/// `forks` has one (whose environment is `env` as it was when it started), spawned otherwise.
/// `Err` says what failed.
pub(crate) fn start(
    options: &ProcessOptions,
    mut env: Vec<(OsString, OsString)>,
    forks: &Forks,
) -> Result<Started, String> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| format!("creating a socket pair: {e}"))?;
    let (region, region_fd) = match Region::create() {
        Some((region, fd)) => (Some(region), Some(fd)),
        None => (None, None),
    };
    // Big frames cross in shared memory only where small ones do.
    let bulk = region
        .as_ref()
        .and_then(|_| Bulk::create(options.max_message_size.saturating_add(4)));
    let mut fds = vec![(theirs.as_raw_fd(), CHILD_FD)];
    fds.extend(region_fd.as_ref().map(|fd| (fd.as_raw_fd(), RINGS_FD)));
    fds.extend(bulk.as_ref().map(|bulk| (bulk.fd(), BULK_FD)));
    let marker = Marker {
        fd: CHILD_FD,
        clean: posix::closes_inherited(),
    };
    env.push((WORKER_ENV.into(), marker.to_env().into()));
    #[cfg(target_os = "linux")]
    let forked = (forks.fork(options, &env, &fds))
        .map(|(pid, watch, server)| ChildProcess::forked(pid, watch, server));
    #[cfg(not(target_os = "linux"))]
    let forked = {
        let _ = forks;
        None
    };
    let child = match forked {
        Some(child) => child,
        None => ChildProcess::spawn(options, &env, &fds)
            .map_err(|e| format!("spawning the child: {e}"))?,
    };
    Ok(Started {
        child,
        channel: ours,
        region,
        bulk,
    })
}

/// The signal that ended a child, if one did.
pub(crate) fn signal_of(status: &ExitStatus) -> Option<i32> {
    status.signal()
}

/// Which of `options`' resource limits a child (`_child`) that ended so hit, if one did:
/// SIGXCPU is `RLIMIT_CPU`'s; an allocation refused under `RLIMIT_AS` aborts without a panic
/// message.
pub(crate) fn limit_hit(
    _child: &ChildProcess,
    _code: Option<i32>,
    signal: Option<i32>,
    panicked: bool,
    options: &ProcessOptions,
) -> Option<&'static str> {
    if signal == Some(libc::SIGXCPU) && options.max_cpu_time.is_some() {
        return Some("cpu time");
    }
    if signal == Some(libc::SIGABRT) && !panicked && options.max_memory.is_some() {
        return Some("memory");
    }
    None
}

/// A child process this process started. Dropped, it is killed and reaped if it has not
/// been: a driver that unwinds still leaves no process and no zombie.
pub(crate) struct ChildProcess {
    pid: libc::pid_t,
    status: Option<ExitStatus>,
    watch: ExitWatch,
    /// The fork server it came from, which reaps it.
    #[cfg(target_os = "linux")]
    server: Option<Arc<ForkServer>>,
}

impl ChildProcess {
    /// Starts the worker executable as `options` say ([`posix::spawn`]).
    pub(crate) fn spawn(
        options: &ProcessOptions,
        env: &[(OsString, OsString)],
        fds: &[(RawFd, RawFd)],
    ) -> io::Result<ChildProcess> {
        let pid = posix::spawn(options, env, fds)?;
        Ok(ChildProcess {
            pid,
            status: None,
            watch: ExitWatch::new(pid),
            #[cfg(target_os = "linux")]
            server: None,
        })
    }

    /// A worker `server` forked, which `watch` (its pidfd) watches.
    #[cfg(target_os = "linux")]
    pub(super) fn forked(pid: libc::pid_t, watch: ExitWatch, server: Arc<ForkServer>) -> Self {
        ChildProcess {
            pid,
            status: None,
            watch,
            server: Some(server),
        }
    }

    pub(crate) fn id(&self) -> u32 {
        self.pid as u32
    }

    /// What tells its death without reaping it.
    pub(crate) fn watch(&self) -> ExitWatch {
        self.watch.clone()
    }

    /// How it ended, if it has; reaps it then.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.wait_with(libc::WNOHANG)
    }

    /// Waits until it ends and reaps it.
    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.wait_with(0)? {
                return Ok(status);
            }
        }
    }

    /// Asks it to stop: SIGTERM (a worker has no handler: it ends at once).
    pub(crate) fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// SIGKILL, unless it was reaped already (its pid may belong to another process by then).
    pub(crate) fn kill(&mut self) {
        self.signal(libc::SIGKILL);
    }

    /// Sends `signal`, unless it was reaped already.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        #[cfg(target_os = "linux")]
        if self.server.is_some() {
            // Not our child: its pid may be another process's once its server reaped it, but
            // its pidfd is never anyone else's.
            if let Some(pidfd) = self.watch.fd() {
                // SAFETY: pidfd_send_signal on a pidfd we own, with no siginfo.
                unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd, signal, 0usize, 0u32) };
            }
            return;
        }
        if self.status.is_none() {
            // SAFETY: kill(2) on our unreaped child: the pid is still ours.
            unsafe { libc::kill(self.pid, signal) };
        }
    }

    fn wait_with(&mut self, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        #[cfg(target_os = "linux")]
        if let Some(server) = &self.server {
            self.status = server.wait(self.pid, &self.watch, flags & libc::WNOHANG == 0);
            return Ok(self.status);
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child, into a local.
        let reaped = unsafe { libc::waitpid(self.pid, &mut status, flags) };
        match reaped {
            0 => Ok(None),
            pid if pid == self.pid => {
                let status = ExitStatus::from_raw(status);
                self.status = Some(status);
                Ok(Some(status))
            }
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.kill();
            let _ = self.wait();
        }
    }
}
