//! A pool's fork server (Linux, [`Builder::fork_server`](crate::Builder::fork_server)): one
//! child, spawned with the pool's first worker, from which every worker is then forked
//! (`runtime/child/zygote.rs` is its side; `protocol/fork.rs` their control channel).
//!
//! The workers are the server's children, not the pool's: the server reaps each and says how
//! it ended (`EXITED`), and the pool signals them through their pidfds, which a reused pid
//! cannot mislead. A server that stops answering (killed from outside, or talking nonsense;
//! or silent past `startup_timeout` on a `FORK`, or on a worker it should have reaped: stopped,
//! or hung) is killed, which kills its workers with it (their parent-death signal, reported as
//! SIGKILL), and the next worker starts a new one. Its workers' orphans are reaped where they
//! land in this process (a child subreaper's). A server that never became ready (it
//! refused: `exports()` left a thread running) is not tried again: the pool spawns its
//! workers, as it does one whose `fork` failed.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::posix;
use crate::options::ProcessOptions;
use crate::protocol::fork::{self, Control, FORK_ENV};
use crate::protocol::{BULK_FD, CHILD_FD, RINGS_FD, VERSION};
use crate::sync::lock;
use crate::transport::ExitWatch;
use crate::wait::deadline_after;

/// Whether a pool forks its workers, and from which server.
pub(crate) struct Forks {
    state: Mutex<Forking>,
}

enum Forking {
    /// Started with the next worker.
    Unstarted,
    Ready(Arc<ForkServer>),
    /// Not asked for, or the server never became ready: every worker is spawned.
    Off,
}

impl Forks {
    /// `on`: fork workers from a server, once one is ready.
    pub(crate) fn new(on: bool) -> Self {
        let state = if on { Forking::Unstarted } else { Forking::Off };
        Forks {
            state: Mutex::new(state),
        }
    }

    /// Forks a worker whose fds 3 and on are `fds`' first halves, in order, from the pool's
    /// fork server, started first if need be with `env` (the worker's): its pid, what watches
    /// it, and the server that reaps it. A server found dead is replaced once. `None`: spawn
    /// it instead.
    pub(crate) fn fork(
        &self,
        options: &ProcessOptions,
        env: &[(OsString, OsString)],
        fds: &[(RawFd, RawFd)],
    ) -> Option<(libc::pid_t, ExitWatch, Arc<ForkServer>)> {
        let ours: Vec<RawFd> = fds.iter().map(|&(ours, _)| ours).collect();
        for _ in 0..2 {
            let server = self.server(options, env)?;
            let deadline = deadline_after(options.startup_timeout);
            if let Some((pid, watch)) = server.fork(&ours, deadline) {
                return Some((pid, watch, server));
            }
            if !lock(&server.state).broken {
                return None; // `fork` failed in it: this worker is spawned.
            }
            let mut state = lock(&self.state);
            if matches!(&*state, Forking::Ready(now) if Arc::ptr_eq(now, &server)) {
                *state = Forking::Unstarted;
            }
        }
        None
    }

    /// The server, started now if need be; `None` if forking is off (or its start failed now).
    fn server(
        &self,
        options: &ProcessOptions,
        env: &[(OsString, OsString)],
    ) -> Option<Arc<ForkServer>> {
        let mut state = lock(&self.state);
        match &*state {
            Forking::Off => None,
            Forking::Ready(server) => Some(server.clone()),
            Forking::Unstarted => {
                let server = ForkServer::start(options, env);
                *state = match &server {
                    Some(server) => Forking::Ready(server.clone()),
                    None => Forking::Off,
                };
                server
            }
        }
    }

    /// Forks no more: the server goes (killed and reaped) once no worker it forked is left.
    pub(crate) fn release(&self) {
        *lock(&self.state) = Forking::Off;
    }
}

/// A running fork server: its control socket, and what it said of workers nobody asked about
/// yet. Dropped (with the pool and its last forked worker), it is killed and reaped.
pub(crate) struct ForkServer {
    control: OwnedFd,
    pid: libc::pid_t,
    /// How long it may take to answer (`startup_timeout`): a `FORK`, or a worker's end.
    answer_within: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Wait statuses by pid, as `EXITED` said, until asked for.
    exited: HashMap<libc::pid_t, i32>,
    /// Workers seen exited that it has not said a word of yet, and since when.
    unsaid: HashMap<libc::pid_t, Instant>,
    /// It stopped answering: it was killed, and its workers with it.
    broken: bool,
}

impl ForkServer {
    /// Spawns a fork server as `options` say, with `env`, and waits up to `startup_timeout`
    /// for it to be ready; `None` if it did not get there (it is killed).
    fn start(options: &ProcessOptions, env: &[(OsString, OsString)]) -> Option<Arc<Self>> {
        let (ours, theirs) = fork::socket_pair().ok()?;
        let mut env = env.to_vec();
        env.push((FORK_ENV.into(), "1".into()));
        // Its fds 4 and 5 taken too (by copies of the control socket), so that what
        // `exports()` opens gets no number a worker's channel will take.
        let control = theirs.as_raw_fd();
        let fds = [(control, CHILD_FD), (control, RINGS_FD), (control, BULK_FD)];
        let pid = posix::spawn(options, &env, &fds).ok()?;
        drop(theirs);
        let server = ForkServer {
            control: ours,
            pid,
            answer_within: options.startup_timeout,
            state: Mutex::default(),
        };
        let mut state = lock(&server.state);
        let deadline = deadline_after(options.startup_timeout);
        let ready = server.next(&mut state, Some(deadline));
        if !matches!(ready, Some((Control::Ready { version }, _)) if version == VERSION) {
            server.stop(&mut state);
            return None;
        }
        drop(state);
        Some(Arc::new(server))
    }

    /// Forks a worker with `fds`, waiting for the answer until `deadline`: its pid and what
    /// watches it, or `None` (the server is then broken, unless `fork` failed in it).
    fn fork(&self, fds: &[RawFd], deadline: Instant) -> Option<(libc::pid_t, ExitWatch)> {
        let mut state = lock(&self.state);
        if state.broken {
            return None;
        }
        if fork::send(self.control.as_raw_fd(), Control::Fork, fds).is_err() {
            self.stop(&mut state);
            return None;
        }
        match self.next(&mut state, Some(deadline)) {
            Some((Control::Forked { pid }, mut pidfd)) if pid > 0 => {
                let pidfd = pidfd.pop()?; // `receive` checked that one came.
                Some((pid, ExitWatch::with_pidfd(pid, pidfd)))
            }
            // `fork` failed in it (out of processes or memory, say): it serves on.
            Some((Control::Failed { .. }, _)) => None,
            _ => {
                self.stop(&mut state);
                None
            }
        }
    }

    /// How worker `pid` ended, once it has (`watch` watches it); `block`: waits for that.
    ///
    /// The server reaps a worker and says so as soon as it exits. One that has not said so
    /// within `answer_within` of the worker's exit is stopped (a `SIGSTOP`, a debugger) or
    /// hung: its worker's status is read from `/proc` while the server still holds it (a
    /// zombie), and the server is killed, so that neither this worker's task nor the next
    /// start waits for it.
    pub(crate) fn wait(
        &self,
        pid: libc::pid_t,
        watch: &ExitWatch,
        block: bool,
    ) -> Option<ExitStatus> {
        loop {
            let mut state = lock(&self.state);
            // Only `EXITED` comes unasked.
            if self.next(&mut state, None).is_some() {
                self.stop(&mut state);
            }
            let exited = watch.exited();
            let status = if let Some(status) = state.exited.remove(&pid) {
                Some(status)
            } else if exited && state.broken {
                // Its server went without a word of it: it died of its parent-death signal.
                self.reap_orphan(watch);
                Some(libc::SIGKILL)
            } else if exited {
                let since = *state.unsaid.entry(pid).or_insert_with(Instant::now);
                (since.elapsed() >= self.answer_within).then(|| {
                    let status = zombie_status(pid, self.pid);
                    self.stop(&mut state);
                    self.reap_orphan(watch);
                    // Unknown once the server is gone: killed, as far as anyone can tell.
                    status.unwrap_or(libc::SIGKILL)
                })
            } else {
                None
            };
            if let Some(status) = status {
                state.unsaid.remove(&pid);
                return Some(ExitStatus::from_raw(status));
            }
            if !block {
                return None;
            }
            // Until the server says something (the worker's exit, already seen, is no news),
            // or, once the server is gone, until the worker dies too.
            let news = match state.broken {
                false => Some(self.control.as_raw_fd()),
                true => watch.fd(),
            };
            drop(state);
            poll(&news.into_iter().collect::<Vec<_>>(), POLL_LIMIT);
        }
    }

    /// The next message but `EXITED`s (which it notes), waiting until `deadline` (`None`:
    /// not at all); `None` if none came, or the server is gone (it is then stopped).
    fn next(
        &self,
        state: &mut State,
        deadline: Option<Instant>,
    ) -> Option<(Control, Vec<OwnedFd>)> {
        while !state.broken {
            match fork::receive(self.control.as_raw_fd(), false) {
                Ok(Some((Control::Exited { pid, status }, _))) => {
                    state.exited.insert(pid, status);
                }
                Ok(Some(message)) => return Some(message),
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    let left = deadline?.checked_duration_since(Instant::now())?;
                    poll(&[self.control.as_raw_fd()], left);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Ok(None) | Err(_) => self.stop(state),
            }
        }
        None
    }

    /// Reaps an exited worker of the killed server if it became this process's child: the
    /// orphans of a dead process go to the nearest child subreaper, which may be this process
    /// (a supervisor, or the init of a container), and nobody else would reap them.
    fn reap_orphan(&self, watch: &ExitWatch) {
        let Some(pidfd) = watch.fd() else { return };
        // SAFETY: waitid into locals: first for the server's death, leaving it to be reaped
        // by `drop` (its orphans have their new parent once it is dead), then for the worker
        // through its pidfd, which names no other process; `ECHILD` if it is not ours.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let dead = libc::WEXITED | libc::WNOWAIT;
            while libc::waitid(libc::P_PID, self.pid as libc::id_t, &mut info, dead) < 0
                && std::io::Error::last_os_error().kind() == ErrorKind::Interrupted
            {}
            let flags = libc::WEXITED | libc::WNOHANG;
            libc::waitid(libc::P_PIDFD, pidfd as libc::id_t, &mut info, flags);
        }
    }

    /// Kills the server (its workers die with it); it is reaped when dropped.
    fn stop(&self, state: &mut State) {
        state.broken = true;
        // SAFETY: kill on our own child, not reaped before `drop`.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        // SAFETY: kill and waitpid on our own child, reaped only here.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            while libc::waitpid(self.pid, std::ptr::null_mut(), 0) < 0
                && std::io::Error::last_os_error().kind() == ErrorKind::Interrupted
            {}
        }
    }
}

/// The longest a wait for a worker's end sleeps between two looks.
const POLL_LIMIT: Duration = Duration::from_millis(100);

/// The wait status of `pid`, if it is a zombie child of `server` (which has not reaped it):
/// what `/proc/<pid>/stat` says in its 52nd field, `exit_code` (Linux 3.5).
fn zombie_status(pid: libc::pid_t, server: libc::pid_t) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after `(comm)` (which may hold spaces): state, ppid, ..., exit_code.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ppid: libc::pid_t = fields.get(1)?.parse().ok()?;
    if fields.first() != Some(&"Z") || ppid != server {
        return None;
    }
    fields.get(52 - 3)?.parse().ok()
}

/// Waits up to `timeout` for one of `fds` to be readable (or closed).
fn poll(fds: &[RawFd], timeout: Duration) {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: `polled` is a valid array of its length for the duration of the call.
    unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as _, millis) };
}
