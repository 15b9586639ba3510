//! Starting a worker process with `posix_spawn`, and waiting for it (Unix).
//!
//! `std::process::Command` forks when it has to run code between fork and exec (to move the
//! socket to fd 3, say), and forking a multi-threaded parent copies its page tables and then
//! pays a copy-on-write fault, with a TLB shoot-down to every core, for each page the parent
//! writes next: a cost that grows with the parent's memory. `posix_spawn` starts the child
//! without copying the parent (glibc uses `CLONE_VM | CLONE_VFORK`), and its file actions
//! place the descriptors. What the child used to do before exec (its parent-death signal, its
//! resource limits) it now does itself, first thing in `serve_if_worker`.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use super::Started;
use crate::options::{ChildOutput, ProcessOptions};
use crate::protocol::{BULK_FD, CHILD_FD, RINGS_FD, WORKER_ENV};
use crate::transport::{Bulk, ExitWatch, Region};

/// Starts a worker as `options` say, with this process's environment plus `env`: the child's
/// end of a socket pair on fd 3 (the marker names it), the rings shared with it (Linux) on
/// fd 4, with the slots for its big frames on fd 5. `Err` says what failed.
pub(crate) fn start(
    options: &ProcessOptions,
    mut env: Vec<(OsString, OsString)>,
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
    env.push((WORKER_ENV.into(), CHILD_FD.to_string().into()));
    let child =
        ChildProcess::spawn(options, &env, &fds).map_err(|e| format!("spawning the child: {e}"))?;
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
}

impl ChildProcess {
    /// Starts the worker executable as `options` say (as the program at its path, with its
    /// arguments, stdout and stderr) with this process's environment plus `env`, in a process
    /// group of its own (the terminal's Ctrl-C is for the application to handle, not for its
    /// workers); stdin reads `/dev/null`; `fds` are `(ours, theirs)`: each of our descriptors
    /// appears in the child as `theirs` (the child closes any other it inherits).
    pub(crate) fn spawn(
        options: &ProcessOptions,
        env: &[(OsString, OsString)],
        fds: &[(RawFd, RawFd)],
    ) -> io::Result<ChildProcess> {
        let c_string = |text: &OsStr| {
            CString::new(text.as_bytes()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("a NUL byte in {text:?}"),
                )
            })
        };
        let executable = c_string(options.executable.as_os_str())?;
        let mut argv = vec![c_string(options.program.as_os_str())?];
        for arg in &options.args {
            argv.push(c_string(arg)?);
        }
        let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(key, _)| !env.iter().any(|(set, _)| set == key))
            .collect();
        for (key, value) in env {
            vars.retain(|(old, _)| old != key);
            vars.push((key.clone(), value.clone()));
        }
        let mut envp = Vec::with_capacity(vars.len());
        for (key, value) in &vars {
            let mut pair = key.clone();
            pair.push("=");
            pair.push(value);
            envp.push(c_string(&pair)?);
        }
        // Each descriptor first gets a number above every target, so that no dup2 overwrites
        // the source of another; these copies close on exec, the targets do not.
        let above = fds.iter().map(|&(_, theirs)| theirs).max().unwrap_or(2) + 1;
        let mut staged: Vec<(OwnedFd, RawFd)> = Vec::with_capacity(fds.len());
        for &(ours, theirs) in fds {
            // SAFETY: fcntl on a descriptor the caller owns; the copy is owned from here on.
            let copy = unsafe { libc::fcntl(ours, libc::F_DUPFD_CLOEXEC, above) };
            if copy < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `copy` was just created and nothing else owns it.
            staged.push((unsafe { OwnedFd::from_raw_fd(copy) }, theirs));
        }
        let output = Output {
            stdout: options.stdout,
            stderr: options.stderr,
        };
        let pid = spawn(&executable, &argv, &envp, &staged, output)?;
        Ok(ChildProcess {
            pid,
            status: None,
            watch: ExitWatch::new(pid),
        })
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
        if self.status.is_none() {
            // SAFETY: kill(2) on our unreaped child: the pid is still ours.
            unsafe { libc::kill(self.pid, signal) };
        }
    }

    fn wait_with(&mut self, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
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

/// The `posix_spawnp` call itself, with its attributes and file actions.
fn spawn(
    program: &CString,
    argv: &[CString],
    envp: &[CString],
    fds: &[(OwnedFd, RawFd)],
    output: Output,
) -> io::Result<libc::pid_t> {
    let check = |code: libc::c_int| {
        if code == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(code))
        }
    };
    let mut argv: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    let mut envp: Vec<*mut libc::c_char> = envp.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp.push(std::ptr::null_mut());
    // SAFETY: the attribute and file-action objects are initialized before use and destroyed
    // on every path (the guards below); every pointer handed to posix_spawnp lives until it
    // returns, and the argument and environment arrays end with a null pointer.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&mut actions))?;
        let actions = Guard(&mut actions, libc::posix_spawn_file_actions_destroy);
        let mut attributes: libc::posix_spawnattr_t = std::mem::zeroed();
        check(libc::posix_spawnattr_init(&mut attributes))?;
        let attributes = Guard(&mut attributes, libc::posix_spawnattr_destroy);
        check(libc::posix_spawn_file_actions_addopen(
            actions.0,
            0,
            c"/dev/null".as_ptr(),
            libc::O_RDONLY,
            0,
        ))?;
        for (fd, to) in [(1, output.stdout), (2, output.stderr)] {
            match to {
                ChildOutput::Inherit => {}
                ChildOutput::Null => check(libc::posix_spawn_file_actions_addopen(
                    actions.0,
                    fd,
                    c"/dev/null".as_ptr(),
                    libc::O_WRONLY,
                    0,
                ))?,
                ChildOutput::Stderr if fd == 2 => {}
                ChildOutput::Stderr => {
                    check(libc::posix_spawn_file_actions_adddup2(actions.0, 2, fd))?
                }
            }
        }
        for (ours, theirs) in fds {
            check(libc::posix_spawn_file_actions_adddup2(
                actions.0,
                ours.as_raw_fd(),
                *theirs,
            ))?;
        }
        // As `Command` does: an empty signal mask, and SIGPIPE back to its default (a Rust
        // program ignores it, and ignored signals stay ignored across exec).
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        check(libc::posix_spawnattr_setsigmask(attributes.0, &none))?;
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        check(libc::posix_spawnattr_setsigdefault(attributes.0, &pipe))?;
        check(libc::posix_spawnattr_setpgroup(attributes.0, 0))?;
        let flags = libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF
            | libc::POSIX_SPAWN_SETPGROUP;
        check(libc::posix_spawnattr_setflags(attributes.0, flags as _))?;
        let mut pid = 0;
        check(libc::posix_spawnp(
            &mut pid,
            program.as_ptr(),
            actions.0,
            attributes.0,
            argv.as_ptr(),
            envp.as_ptr(),
        ))?;
        Ok(pid)
    }
}

/// Where the child's stdout and stderr go.
#[derive(Clone, Copy)]
struct Output {
    stdout: ChildOutput,
    stderr: ChildOutput,
}

/// Runs its function on the pointer when dropped: the `_destroy` of a posix_spawn object.
struct Guard<T>(*mut T, unsafe extern "C" fn(*mut T) -> libc::c_int);

impl<T> Drop for Guard<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer was initialized by the matching `_init` and is destroyed once.
        unsafe { (self.1)(self.0) };
    }
}
