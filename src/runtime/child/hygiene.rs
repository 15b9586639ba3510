//! What a worker process does to itself before it serves, and to answer the pool: the
//! descriptors it closes or checks, its tie to the pool's life, its resource limits, its
//! resident memory (Unix; `hygiene_windows.rs` is the Windows twin).

use std::ffi::{OsStr, OsString};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use crate::protocol::{Init, Marker, BULK_FD, RINGS_FD, WORKER_ENV};
use crate::transport::{Bulk, Region};

/// What the marker says on Unix: the channel's fd, and whether the pool closed what else
/// this process inherited.
pub(super) type ChannelMarker = Marker;

/// The marker ([`WORKER_ENV`]'s value), read once: `Err` if it names no descriptor.
pub(super) fn read_marker(marker: OsString) -> Result<Marker, String> {
    Marker::parse(&marker)
        .ok_or_else(|| format!("{WORKER_ENV}={marker:?} is not a file descriptor"))
}

/// The channel to the pool, the socket the marker names (fd 3), once every descriptor it
/// inherited beside it is closed (unless the pool closed them as it started this process);
/// `Err` if this process was not started by a pool.
pub(super) fn open_channel(Marker { fd, clean }: Marker) -> Result<UnixStream, String> {
    // A worker keeps stdin, stdout, stderr and its channel; whatever else the pool's process
    // left open without close-on-exec (a listening socket, say) is not the worker's to hold.
    if !clean {
        close_inherited(&[fd, RINGS_FD, BULK_FD]);
    }
    if !is_unix_stream(fd) {
        return Err(format!(
            "this process was started as a tinypool worker ({WORKER_ENV}={fd}) but fd {fd} is \
             not its channel: worker processes are started by a tinypool Pool, not by hand"
        ));
    }
    // SAFETY: fd is a socket this process owns (checked above) and nothing else wraps it.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    // Grandchildren (a pool built inside a task) must not inherit it.
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(stream)
}

/// The rings the pool shares with this worker (fd 4), mapped; the descriptor is closed.
pub(super) fn map_rings() -> Result<Arc<Region>, String> {
    let region = Region::map(RINGS_FD).ok_or("cannot map the rings shared with the pool")?;
    // SAFETY: fd 4 was handed to this process for the region, which stays mapped without it.
    unsafe { libc::close(RINGS_FD) };
    Ok(region)
}

/// The slots for big frames the pool shares with this worker (fd 5), for frames of up to
/// `capacity` bytes; the descriptor is kept, to map more of them as frames need.
pub(super) fn open_bulk(capacity: usize) -> Result<Arc<Bulk>, String> {
    Bulk::open(BULK_FD, capacity)
}

/// Closes every descriptor above stderr that this process inherited, but those in `keep`:
/// those without close-on-exec, since every descriptor the program opened itself before it
/// served (a log file `exports()` keeps, say) has it, as std opens them all so.
pub(super) fn close_inherited(keep: &[i32]) {
    let mut open: Vec<i32> = Vec::new();
    for dir in ["/proc/self/fd", "/dev/fd"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            open.extend(
                entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok()),
            );
            break;
        }
    }
    for fd in open {
        if fd <= 2 || keep.contains(&fd) {
            continue;
        }
        // SAFETY: fcntl and close on descriptors this process holds and nothing in it uses
        // (the listing's own is gone: EBADF).
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::close(fd);
            }
        }
    }
}

/// Whether `fd` is a Unix-domain stream socket, as a pool's channel is.
fn is_unix_stream(fd: i32) -> bool {
    // SAFETY: getsockopt and getsockname write into locals of the sizes passed; an fd that is
    // not a socket (or not open) makes them fail.
    unsafe {
        let mut kind: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let typed = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut libc::c_int).cast(),
            &mut len,
        ) == 0;
        let mut address: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let named = libc::getsockname(
            fd,
            (&mut address as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) == 0;
        typed
            && kind == libc::SOCK_STREAM
            && named
            && libc::c_int::from(address.ss_family) == libc::AF_UNIX
    }
}

/// Dies with the pool's process: the kernel sends SIGKILL when it exits (Linux). The pool may
/// have died before this call: then nobody would send it, so the worker exits now.
pub(super) fn tie_to_parent(parent: &OsStr) {
    #[cfg(target_os = "linux")]
    {
        let parent: Option<libc::pid_t> = parent.to_str().and_then(|p| p.parse().ok());
        // SAFETY: prctl and getppid on this process.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if parent.is_some_and(|parent| libc::getppid() != parent) {
                std::process::exit(0);
            }
        }
    }
    let _ = parent;
}

/// Applies `resource_limits`, before any task runs.
pub(super) fn limit_resources(init: &Init<'_>) -> Result<(), String> {
    let limit = |resource, soft: u64, hard: u64| {
        let limit = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit on this process, from a local.
        if unsafe { libc::setrlimit(resource, &limit) } == 0 {
            Ok(())
        } else {
            Err(format!(
                "applying resource_limits: {}",
                std::io::Error::last_os_error()
            ))
        }
    };
    if init.max_memory > 0 {
        limit(libc::RLIMIT_AS, init.max_memory, init.max_memory)?;
    }
    if init.max_cpu_seconds > 0 {
        // The soft limit sends SIGXCPU, which names the limit; the hard one, a second later,
        // SIGKILL.
        let seconds = init.max_cpu_seconds;
        limit(libc::RLIMIT_CPU, seconds, seconds.saturating_add(1))?;
    }
    Ok(())
}

/// This process's resident memory, in bytes (0 where it cannot be read).
pub(super) fn resident_memory() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|field| field.parse().ok())
            .unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        pages * page.max(0) as u64
    }
    #[cfg(not(target_os = "linux"))]
    0
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::fd::AsRawFd;

    use super::close_inherited;

    const CHILD: &str = "TINYPOOL_TEST_CLOSE_INHERITED";

    fn is_open(fd: i32) -> bool {
        // SAFETY: fcntl on a descriptor number; a closed one makes it fail.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    /// What a worker does where the spawn could not close the pool's descriptors: it closes
    /// those it inherited (a pipe without close-on-exec, as a C library may leave) and keeps
    /// what the program opened itself (std opens with close-on-exec). Run in a process of its
    /// own (this test binary again), since it closes descriptors.
    #[test]
    fn closes_what_it_inherited_and_keeps_what_the_program_opened() {
        if std::env::var_os(CHILD).is_none() {
            let name = "runtime::child::hygiene::tests::\
                        closes_what_it_inherited_and_keeps_what_the_program_opened";
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--test-threads", "1"])
                .env(CHILD, "1")
                .status()
                .unwrap();
            assert!(
                status.success(),
                "the test in a process of its own: {status}"
            );
            return;
        }
        let opened = std::fs::File::open("/proc/self/stat").unwrap();
        let mut inherited = [0; 2];
        // SAFETY: pipe writes two new descriptors into the array (no close-on-exec).
        assert_eq!(unsafe { libc::pipe(inherited.as_mut_ptr()) }, 0);
        let kept = inherited[1];
        close_inherited(&[kept]);
        assert!(is_open(opened.as_raw_fd()), "what the program opened");
        assert!(!is_open(inherited[0]), "what it inherited");
        assert!(is_open(kept), "what it was told to keep");
    }
}
