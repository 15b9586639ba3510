//! A worker process as a fork server (Linux): started like any worker, with `exports()` run,
//! it serves no task but forks workers on the pool's request, each the copy of a process that
//! has run nothing else (the control channel is `protocol/fork.rs`). A fork of this small,
//! single-threaded process costs a fraction of what `posix_spawn`, `exec` and the dynamic
//! loader cost a fresh worker.
//!
//! The server reaps its workers and tells the pool how each ended; it exits when the pool's
//! end of the control socket closes or the pool's process dies (whether it waits for the
//! pool's word or for room to send its own), and its workers die with it
//! (`PR_SET_PDEATHSIG`). A worker's descriptors go to their numbers as a spawned worker's do
//! (`runtime/fds.rs`). Forking is only safe with one thread: a server that finds more (a
//! thread `exports()` started) refuses, and the pool spawns its workers instead.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process;

use super::hygiene::close_inherited;
use crate::protocol::fork::{self, Control};
use crate::protocol::{Marker, BULK_FD, CHILD_FD, RINGS_FD};
use crate::runtime::fds::staged;
use crate::transport::pidfd_open;

/// Serves as the pool's fork server on `control` until the pool is gone (then exits); returns
/// only in a forked worker, with its channel on fd 3 (and its shared memory on fds 4 and 5)
/// and none of the server's own descriptors open, to serve as a worker started so would.
pub(super) fn serve(Marker { fd: control, clean }: Marker) {
    // Its fds 4 and 5 are the pool's placeholders, which keep what `exports()` opened off the
    // numbers of a worker's channel.
    if !clean {
        close_inherited(&[control, RINGS_FD, BULK_FD]);
    }
    if !fork::is_control_socket(control) {
        eprintln!("tinypool worker: fd {control} is not a fork server's control socket");
        process::exit(2);
    }
    let threads = thread_count();
    // A pidfd is how the pool watches a worker it did not start: none (Linux before 5.3), no
    // forks.
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let refused = match pidfd_open(me) {
        None => Some(0),
        Some(_) if threads != 1 => Some(threads),
        Some(_) => None,
    };
    if let Some(threads) = refused {
        let _ = fork::send(control, Control::Refused { threads }, &[]);
        process::exit(0);
    }
    // SAFETY: prctl and signal on this process, which has no other thread. The parent-death
    // signal follows the thread that spawned this process, which may be a pool's worker that
    // ends long before the pool: the server sees the pool's death as the end of its socket
    // instead, where it always waits. And a parent that ignored SIGCHLD must not make the
    // kernel reap the workers before this server can say how they ended.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, 0);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
    // What `exports()` printed must not be printed again by every worker.
    let _ = std::io::stdout().flush();
    if fork::send(control, Control::ready(), &[]).is_err() {
        process::exit(0);
    }
    // The pool's process, watched beside the socket: a fork of the pool's (one that did not
    // exec) would keep the pool's end of the socket open after the pool died.
    // SAFETY: getppid has no preconditions.
    let pool = unsafe { libc::getppid() };
    let Some(pool_exit) = pidfd_open(pool) else {
        process::exit(0);
    };
    // SAFETY: as above. Still its parent: the pidfd is the pool's, not a later process's.
    if unsafe { libc::getppid() } != pool {
        process::exit(0);
    }
    let link = Link {
        control,
        pool: pool_exit.as_raw_fd(),
    };
    let mut workers: Vec<(libc::pid_t, OwnedFd)> = Vec::new();
    loop {
        let mut polled: Vec<libc::pollfd> = [control, link.pool]
            .into_iter()
            .chain(workers.iter().map(|(_, pidfd)| pidfd.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `polled` is a valid array of its length for the duration of the call.
        if unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as _, -1) } < 0 {
            continue; // EINTR
        }
        if polled[1].revents != 0 {
            process::exit(0); // The pool is gone; its workers die with this process.
        }
        if polled[0].revents != 0 {
            match fork::receive(control, false) {
                Ok(Some((Control::Fork, fds))) => match fork_worker(&link, me, fds, &mut workers) {
                    Forked::Worker(pid, pidfd) => workers.push((pid, pidfd)),
                    Forked::Failed => {} // The pool spawns that worker instead.
                    Forked::InWorker => return,
                },
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                // The pool is gone, or talks nonsense: nobody is left to serve.
                _ => process::exit(0),
            }
        }
        let ended: Vec<usize> = (2..polled.len())
            .filter(|&at| polled[at].revents != 0)
            .collect();
        for at in ended.into_iter().rev() {
            let (pid, _pidfd) = workers.swap_remove(at - 2);
            let mut status = 0;
            // SAFETY: waitpid on our own child (its pidfd says it exited), into a local.
            if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
                status = libc::SIGKILL; // Not reapable: report it killed.
            }
            if link.send(Control::Exited { pid, status }, &[]).is_err() {
                process::exit(0);
            }
        }
    }
}

/// What [`fork_worker`] did, as the process that returns from it sees it.
enum Forked {
    /// In the server: the worker's pid and pidfd (`FORKED` sent).
    Worker(libc::pid_t, OwnedFd),
    /// In the server: no worker (`FAILED` sent).
    Failed,
    /// In the worker, its descriptors in place.
    InWorker,
}

/// Forks a worker with `fds` for its fds 3 and on; exits if the pool is gone. In the worker,
/// `workers` (the server's other workers and their pidfds) are none of its own: closed first.
fn fork_worker(
    link: &Link,
    server: libc::pid_t,
    fds: Vec<OwnedFd>,
    workers: &mut Vec<(libc::pid_t, OwnedFd)>,
) -> Forked {
    // SAFETY: this process has one thread (checked at the start; it starts none), so the
    // child's copy of every lock and allocator is consistent.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // Before the channel is placed, since one may sit on a number it takes.
        workers.clear();
        become_worker(server, fds);
        return Forked::InWorker;
    }
    // Read before anything else makes a system call (closing `fds` does).
    let mut errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    drop(fds);
    if pid > 0 {
        if let Some(pidfd) = pidfd_open(pid) {
            if link
                .send(Control::Forked { pid }, &[pidfd.as_raw_fd()])
                .is_err()
            {
                process::exit(0);
            }
            return Forked::Worker(pid, pidfd);
        }
        errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        // SAFETY: kill and waitpid on the child just forked, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    if link.send(Control::Failed { errno }, &[]).is_err() {
        process::exit(0);
    }
    Forked::Failed
}

/// In a forked worker: ties its life to the server's, and moves `fds` to fds 3, 4, 5 (the
/// control socket on fd 3 is replaced, the server's other descriptors closed).
fn become_worker(server: libc::pid_t, fds: Vec<OwnedFd>) {
    // SAFETY: prctl and getppid on this process. The death signal is not inherited by a fork.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != server {
            process::exit(0);
        }
    }
    let targets: Vec<(RawFd, RawFd)> = fds.iter().map(AsRawFd::as_raw_fd).zip(CHILD_FD..).collect();
    // Copied first, the originals closed (one may sit on a target), then each copy placed.
    let placed = staged(&targets).and_then(|staged| {
        drop(fds);
        for (copy, target) in staged {
            // SAFETY: dup2 from a copy this process owns onto a target, which it replaces
            // (the control socket, on fd 3); the copy is closed after.
            if unsafe { libc::dup2(copy.as_raw_fd(), target) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    });
    if let Err(error) = placed {
        eprintln!("tinypool worker: placing its channel: {error}");
        process::exit(2);
    }
    // The placeholders no descriptor of the worker's replaced (it has no shared memory).
    for fd in CHILD_FD + targets.len() as RawFd..=BULK_FD {
        // SAFETY: close on the server's placeholder, which nothing in this process uses.
        unsafe { libc::close(fd) };
    }
}

/// How many threads this process has (0 if that cannot be read).
fn thread_count() -> i32 {
    std::fs::read_dir("/proc/self/task").map_or(0, |tasks| tasks.count() as i32)
}

/// The server's ends of its ties to the pool: the control socket, and the pool's pidfd.
struct Link {
    control: RawFd,
    /// Readable once the pool's process is gone.
    pool: RawFd,
}

impl Link {
    /// Sends `message` to the pool, waiting for room: a pool whose drivers have not read the
    /// `EXITED`s of many workers yet reads them as soon as one of them waits for its own, or
    /// asks for a fork. `Err` once the pool is gone: its end closed, or its process exited
    /// (while a fork of it that did not exec holds its end of the socket, which stays full).
    fn send(&self, message: Control, fds: &[RawFd]) -> std::io::Result<()> {
        loop {
            match fork::send(self.control, message, fds) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    let mut polled = [(self.control, libc::POLLOUT), (self.pool, libc::POLLIN)]
                        .map(|(fd, events)| libc::pollfd {
                            fd,
                            events,
                            revents: 0,
                        });
                    // SAFETY: a valid array of two pollfds, for the duration of the call.
                    let woken = unsafe { libc::poll(polled.as_mut_ptr(), 2, -1) };
                    if woken > 0 && polled[1].revents != 0 {
                        return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
                    }
                }
                sent => return sent,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// The pool's end is held open (by a fork of the pool's that did not exec, say) and reads
    /// nothing, so the server's socket is full; then the pool's process dies. A send that
    /// waits for room sees that death, rather than wait for ever.
    #[test]
    fn a_send_waiting_for_room_ends_when_the_pool_dies() {
        let (held, control) = fork::socket_pair().unwrap();
        let exited = Control::Exited { pid: 1, status: 0 };
        while fork::send(control.as_raw_fd(), exited, &[]).is_ok() {}
        let mut pool = std::process::Command::new("sleep")
            .arg("3600")
            .spawn()
            .expect("sleep(1) runs");
        let pool_exit = pidfd_open(pool.id() as libc::pid_t).expect("a pidfd");
        let (done, sent) = mpsc::channel();
        let sender = std::thread::spawn(move || {
            let link = Link {
                control: control.as_raw_fd(),
                pool: pool_exit.as_raw_fd(),
            };
            done.send(link.send(exited, &[])).unwrap();
        });
        pool.kill().unwrap();
        pool.wait().unwrap();
        let sent = sent.recv_timeout(Duration::from_secs(60));
        let error = sent.expect("the send ends").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe);
        sender.join().unwrap();
        drop(held);
    }
}
