//! The `posix_spawn` call (Unix): a worker executable started with its descriptors in place.
//!
//! `std::process::Command` forks when it has to run code between fork and exec (to move the
//! socket to fd 3, say), and forking a multi-threaded parent copies its page tables and then
//! pays a copy-on-write fault, with a TLB shoot-down to every core, for each page the parent
//! writes next: a cost that grows with the parent's memory. `posix_spawn` starts the child
//! without copying the parent (glibc uses `CLONE_VM | CLONE_VFORK`), and its file actions
//! place the descriptors, and (glibc 2.34 and later) close every other one the pool's process
//! left without close-on-exec. What the child used to do before exec (its parent-death
//! signal, its resource limits) it now does itself, first thing in `serve_if_worker`.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use crate::options::{ChildOutput, ProcessOptions};
use crate::runtime::fds::staged;

/// Starts the worker executable as `options` say (as the program at its path, with its
/// arguments, stdout and stderr) with this process's environment plus `env`, in a process
/// group of its own (the terminal's Ctrl-C is for the application to handle, not for its
/// workers); stdin reads `/dev/null`; `fds` are `(ours, theirs)`: each of our descriptors
/// appears in the child as `theirs` (the child closes any other it inherits).
pub(crate) fn spawn(
    options: &ProcessOptions,
    env: &[(OsString, OsString)],
    fds: &[(RawFd, RawFd)],
) -> io::Result<libc::pid_t> {
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
    // The file actions place copies (which close on exec; the targets do not).
    let staged = staged(fds)?;
    let output = Output {
        stdout: options.stdout,
        stderr: options.stderr,
    };
    spawn_with(&executable, &argv, &envp, &staged, output)
}

/// The `posix_spawnp` call itself, with its attributes and file actions.
fn spawn_with(
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
        if let Some(closefrom) = closefrom() {
            let above = fds.iter().map(|&(_, theirs)| theirs).max().unwrap_or(2) + 1;
            check(closefrom(actions.0, above))?;
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

/// `posix_spawn_file_actions_addclosefrom_np`.
type CloseFrom =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, libc::c_int) -> libc::c_int;

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), looked up once at run
/// time so that older systems still run this program: with it, a child starts with no
/// descriptor but those placed (whatever the pool's process left without close-on-exec), and
/// needs to close none itself.
fn closefrom() -> Option<CloseFrom> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static FOUND: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let address = *FOUND.get_or_init(|| {
            let name = c"posix_spawn_file_actions_addclosefrom_np";
            // SAFETY: dlsym with a NUL-terminated name, in every object loaded.
            unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize }
        });
        // SAFETY: the symbol, when glibc has it, is that function, of that signature.
        (address != 0).then(|| unsafe { std::mem::transmute::<usize, CloseFrom>(address) })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Whether a child spawned here inherits no descriptor but those placed.
pub(crate) fn closes_inherited() -> bool {
    closefrom().is_some()
}
