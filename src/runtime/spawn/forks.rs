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
//! refused: `exports()` left a thread running; or it did not answer) is not tried again: the
//! pool spawns its workers, as it does one whose `fork` failed, and says why (a `tracing`
//! warning, `fork server unusable`).
//!
//! Every thread reads the control socket under the server's lock: a `fork` for its answer,
//! a `wait` for its worker's `EXITED`, noting the `EXITED`s of other workers on the way. A
//! `wait` that finds nothing yet sleeps in `poll` beside the socket, on a bell of its own (an
//! eventfd) that whoever notes its worker's `EXITED`, or breaks the server, rings: the word
//! it waits for wakes it at once, whichever thread read it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::posix;
use crate::options::ProcessOptions;
use crate::protocol::fork::{self, Control, FORK_ENV};
use crate::protocol::{BULK_FD, CHILD_FD, RINGS_FD, VERSION};
use crate::sync::lock;
use crate::trace;
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
            Forking::Unstarted => match ForkServer::start(options, env) {
                Ok(server) => {
                    *state = Forking::Ready(server.clone());
                    Some(server)
                }
                Err(why) => {
                    trace::fork_server_unusable(&why);
                    *state = Forking::Off;
                    None
                }
            },
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
    /// The bells of the threads asleep in `wait`, each with the worker it waits for.
    sleepers: Vec<(libc::pid_t, Arc<Bell>)>,
    /// It stopped answering: it was killed, and its workers with it.
    broken: bool,
}

/// Why a fork server is not used: the pool spawns its workers instead.
#[derive(Debug)]
enum Unready {
    /// It could not be spawned.
    Spawn(io::Error),
    /// It said `REFUSED`: its process has `threads` threads (0: pidfds are missing).
    Refused { threads: i32 },
    /// It said `READY` for another version of the protocol (another build of this crate).
    Version(u32),
    /// It said nothing within `startup_timeout`.
    Silent,
    /// It ended, or said something else first.
    Broken,
}

impl fmt::Display for Unready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unready::Spawn(error) => write!(f, "spawning it failed: {error}"),
            Unready::Refused { threads: 0 } => {
                write!(
                    f,
                    "it refused: this kernel has no pidfds (Linux 5.3 or later)"
                )
            }
            Unready::Refused { threads } => write!(
                f,
                "it refused: its process had {threads} threads once exports() ran (a thread \
                 exports() or main started before serving), and a process of more than one \
                 thread cannot fork safely"
            ),
            Unready::Version(version) => {
                write!(f, "it speaks protocol version {version}, not {VERSION}")
            }
            Unready::Silent => write!(f, "it did not answer within startup_timeout"),
            Unready::Broken => write!(f, "it exited, or said something else than READY"),
        }
    }
}

impl ForkServer {
    /// Spawns a fork server as `options` say, with `env`, and waits up to `startup_timeout`
    /// for it to be ready; `Err` says why it did not get there (it is killed).
    fn start(options: &ProcessOptions, env: &[(OsString, OsString)]) -> Result<Arc<Self>, Unready> {
        let (ours, theirs) = fork::socket_pair().map_err(Unready::Spawn)?;
        let mut env = env.to_vec();
        env.push((FORK_ENV.into(), "1".into()));
        // Its fds 4 and 5 taken too (by copies of the control socket), so that what
        // `exports()` opens gets no number a worker's channel will take.
        let control = theirs.as_raw_fd();
        let fds = [(control, CHILD_FD), (control, RINGS_FD), (control, BULK_FD)];
        let pid = posix::spawn(options, &env, &fds).map_err(Unready::Spawn)?;
        drop(theirs);
        let server = ForkServer::new(ours, pid, options.startup_timeout);
        server.ready(deadline_after(options.startup_timeout))?;
        Ok(Arc::new(server))
    }

    /// The server `pid`, at the other end of `control`, given `answer_within` to answer.
    fn new(control: OwnedFd, pid: libc::pid_t, answer_within: Duration) -> Self {
        ForkServer {
            control,
            pid,
            answer_within,
            state: Mutex::default(),
        }
    }

    /// Waits until `deadline` for the server's first word, `READY`; `Err` (it is stopped)
    /// says what came instead.
    fn ready(&self, deadline: Instant) -> Result<(), Unready> {
        let mut state = lock(&self.state);
        let unready = match self.next(&mut state, Some(deadline)) {
            Some((Control::Ready { version }, _)) if version == VERSION => return Ok(()),
            Some((Control::Ready { version }, _)) => Unready::Version(version),
            Some((Control::Refused { threads }, _)) => Unready::Refused { threads },
            Some(_) => Unready::Broken,
            None if state.broken => Unready::Broken,
            None => Unready::Silent,
        };
        self.stop(&mut state);
        Err(unready)
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
    ///
    /// A blocked wait sleeps until the server says something, its bell rings (another thread
    /// read the word of its worker, or broke the server), or its worker exits; once that exit
    /// is seen, until the server's time to say it is up. Once the server is gone, until the
    /// worker dies too (of its parent-death signal). Without a bell or a pidfd (out of
    /// descriptors) it looks again every [`POLL_LIMIT`] too.
    pub(crate) fn wait(
        &self,
        pid: libc::pid_t,
        watch: &ExitWatch,
        block: bool,
    ) -> Option<ExitStatus> {
        let mut bell: Option<Arc<Bell>> = None;
        let mut state = lock(&self.state);
        loop {
            if let Some(bell) = &bell {
                // Under the lock, where it is rung: what rang it is in `state` now.
                bell.clear();
            }
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
                if let Some(bell) = &bell {
                    state.sleepers.retain(|(_, rung)| !Arc::ptr_eq(rung, bell));
                }
                return Some(ExitStatus::from_raw(status));
            }
            if !block {
                return None;
            }
            if bell.is_none() {
                bell = Bell::new().ok().map(Arc::new);
                state.sleepers.extend(bell.clone().map(|bell| (pid, bell)));
            }
            let mut news: Vec<RawFd> = bell.iter().map(|bell| bell.fd()).collect();
            let mut timeout = None;
            if state.broken {
                news.extend(watch.fd());
            } else {
                news.push(self.control.as_raw_fd());
                match state.unsaid.get(&pid) {
                    // Its exit, already seen, is no news.
                    Some(since) => {
                        timeout = Some(self.answer_within.saturating_sub(since.elapsed()))
                    }
                    None => news.extend(watch.fd()),
                }
            }
            if bell.is_none() || watch.fd().is_none() {
                timeout = Some(timeout.map_or(POLL_LIMIT, |left| left.min(POLL_LIMIT)));
            }
            drop(state);
            #[cfg(test)]
            tests::before_sleep();
            poll(&news, timeout);
            state = lock(&self.state);
        }
    }

    /// The next message but `EXITED`s (which it notes, ringing the bell of whoever waits for
    /// that worker), waiting until `deadline` (`None`: not at all); `None` if none came, or
    /// the server is gone (it is then stopped).
    fn next(
        &self,
        state: &mut State,
        deadline: Option<Instant>,
    ) -> Option<(Control, Vec<OwnedFd>)> {
        while !state.broken {
            match fork::receive(self.control.as_raw_fd(), false) {
                Ok(Some((Control::Exited { pid, status }, _))) => {
                    state.exited.insert(pid, status);
                    let waiting = state.sleepers.iter().filter(|(waits, _)| *waits == pid);
                    waiting.for_each(|(_, bell)| bell.ring());
                }
                Ok(Some(message)) => return Some(message),
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    let left = deadline?.checked_duration_since(Instant::now())?;
                    poll(&[self.control.as_raw_fd()], Some(left));
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

    /// Kills the server (its workers die with it); it is reaped when dropped. Every thread
    /// asleep in `wait` is woken, to wait for its worker's death instead.
    fn stop(&self, state: &mut State) {
        state.broken = true;
        state.sleepers.iter().for_each(|(_, bell)| bell.ring());
        // SAFETY: kill on our own child, not reaped before `drop`.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }
}

/// What wakes a thread asleep in [`ForkServer::wait`] when another reads the word it waits
/// for: an eventfd, readable from a ring until cleared.
struct Bell(OwnedFd);

impl Bell {
    fn new() -> io::Result<Bell> {
        // SAFETY: eventfd creates a descriptor, owned from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: just created, and nothing else owns it.
        Ok(Bell(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a local to an eventfd this bell owns; it cannot fail
        // but at a count near `u64::MAX`, when it is rung anyway.
        unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
    }

    fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a local from an eventfd this bell owns (non-blocking:
        // `EAGAIN` if it was not rung).
        unsafe { libc::read(self.fd(), (&mut count as *mut u64).cast(), 8) };
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

/// The longest a wait for a worker's end sleeps between two looks when it has no bell or no
/// pidfd to wake it (out of descriptors).
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

/// Waits up to `timeout` (`None`: for as long as it takes) for one of `fds` to be readable
/// (or closed).
fn poll(fds: &[RawFd], timeout: Option<Duration>) {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let millis = timeout.map_or(-1, |timeout| {
        timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int
    });
    // SAFETY: `polled` is a valid array of its length for the duration of the call.
    unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as _, millis) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::sync::mpsc;

    thread_local! {
        /// Run once, by this thread's next `wait`, just before it sleeps.
        static BEFORE_SLEEP: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    }

    /// `wait`'s hook between its last look and its sleep: the moment another thread may read
    /// the word it waits for.
    pub(super) fn before_sleep() {
        if let Some(hook) = BEFORE_SLEEP.with(|hook| hook.borrow_mut().take()) {
            hook();
        }
    }

    /// A process that waits to be killed (executed: it holds none of this process's
    /// descriptors, which close on exec).
    fn sleeper() -> libc::pid_t {
        let child = std::process::Command::new("sleep").arg("3600").spawn();
        child.expect("sleep(1) runs").id() as libc::pid_t
    }

    /// A server at the other end of a socket pair (the test speaks for it), whose process
    /// sleeps until `drop` kills and reaps it; given an hour to answer.
    fn fake_server() -> (ForkServer, OwnedFd) {
        let (ours, theirs) = fork::socket_pair().unwrap();
        let answer_within = Duration::from_secs(3600);
        (ForkServer::new(ours, sleeper(), answer_within), theirs)
    }

    /// A watch on a worker that never exits during the test: this process.
    fn live_watch() -> ExitWatch {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        ExitWatch::with_pidfd(me, crate::transport::pidfd_open(me).expect("a pidfd"))
    }

    /// The missed wake-up: a thread in `wait` looked for its worker's `EXITED`, found none,
    /// and is about to sleep on the socket; another thread reads that `EXITED` meanwhile (its
    /// own `wait`, or a `fork`), so the socket holds nothing new for the sleeper. Its worker
    /// never exits here and the server has all the time in the world, so no timer can wake
    /// it: only the reader's ring does.
    #[test]
    fn a_waiter_is_woken_by_whoever_reads_its_workers_exit() {
        const WORKER: libc::pid_t = 7;
        let (server, theirs) = fake_server();
        let server = Arc::new(server);
        let (asleep, about_to_sleep) = mpsc::channel();
        let (go, gone_on) = mpsc::channel::<()>();
        let (done, waited) = mpsc::channel();
        let waiter = std::thread::spawn({
            let server = server.clone();
            move || {
                let hook = move || {
                    asleep.send(()).unwrap();
                    let _ = gone_on.recv();
                };
                BEFORE_SLEEP.with(|slot| *slot.borrow_mut() = Some(Box::new(hook)));
                done.send(server.wait(WORKER, &live_watch(), true)).unwrap();
            }
        });
        about_to_sleep.recv().unwrap();
        let exited = Control::Exited {
            pid: WORKER,
            status: 3 << 8,
        };
        fork::send(theirs.as_raw_fd(), exited, &[]).unwrap();
        {
            let mut state = lock(&server.state);
            assert!(server.next(&mut state, None).is_none());
            assert_eq!(state.exited.get(&WORKER), Some(&(3 << 8)), "read here");
        }
        go.send(()).unwrap();
        // Far beyond any wake-up: a waiter still asleep then was never woken.
        let status = waited.recv_timeout(Duration::from_secs(60));
        let status = status.expect("the waiter woken by the ring").unwrap();
        assert_eq!(status.code(), Some(3));
        waiter.join().unwrap();
        assert!(lock(&server.state).sleepers.is_empty(), "its bell unhung");
    }

    /// A waiter whose worker exited without a word from its server sleeps for as long as the
    /// server may take to say it (an hour here); another thread stops the server meanwhile
    /// (its own worker's word was overdue, say): the waiter learns at once that its worker
    /// died with the server.
    #[test]
    fn a_waiter_is_woken_when_another_thread_stops_the_server() {
        let (server, _theirs) = fake_server();
        let server = Arc::new(server);
        let worker = sleeper();
        let watch = ExitWatch::with_pidfd(worker, crate::transport::pidfd_open(worker).unwrap());
        // SAFETY: kill on the test's own child; `wait` reaps it (its server's orphan here).
        unsafe { libc::kill(worker, libc::SIGKILL) };
        while !watch.exited() {
            poll(&watch.fd().into_iter().collect::<Vec<_>>(), None);
        }
        let (asleep, about_to_sleep) = mpsc::channel();
        let (done, waited) = mpsc::channel();
        let waiter = std::thread::spawn({
            let server = server.clone();
            move || {
                let hook = move || asleep.send(()).unwrap();
                BEFORE_SLEEP.with(|slot| *slot.borrow_mut() = Some(Box::new(hook)));
                done.send(server.wait(worker, &watch, true)).unwrap();
            }
        });
        about_to_sleep.recv().unwrap();
        server.stop(&mut lock(&server.state));
        let status = waited.recv_timeout(Duration::from_secs(60));
        let status = status.expect("the waiter woken by the stop").unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        waiter.join().unwrap();
    }

    #[test]
    fn a_refusal_is_read_and_said() {
        let (server, theirs) = fake_server();
        let refused = Control::Refused { threads: 3 };
        fork::send(theirs.as_raw_fd(), refused, &[]).unwrap();
        let deadline = deadline_after(Duration::from_secs(60));
        let unready = server.ready(deadline).unwrap_err();
        assert!(
            matches!(unready, Unready::Refused { threads: 3 }),
            "{unready:?}"
        );
        assert!(unready.to_string().contains("3 threads"), "{unready}");
        assert!(lock(&server.state).broken, "stopped");
    }
}
