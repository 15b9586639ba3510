//! Faults of child-process workers: a crash, an `exit`, a kill from outside, an abort, a
//! double panic, a resource limit, a start failure or an oversized message fails only its
//! own task, and no worker process outlives its pool, or its killed parent.
//!
//! A `harness = false` binary: the pools here re-execute it as their workers, so `main` first
//! lets a worker serve; some tests also re-execute it as a "parent" program (see [`ROLE`]).

mod common;

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tinypool::{
    worker, AbortController, Builder, ChildOutput, Error, Exports, Pool, Port, ResourceLimits,
    RunOptions, Runtime, Task,
};

use common::procfs::{child_pids, gone};
use common::{destroy, eventually, finish, named, within, BOUND};

/// Set on this binary re-executed as a parent program: which one it plays (see [`play`]).
const ROLE: &str = "PROCESS_FAULTS_ROLE";
/// Set on this binary re-executed as a worker whose `main` forgets to serve: it exits 0 before
/// it calls `serve_if_worker`.
const UNSERVED: &str = "PROCESS_FAULTS_UNSERVED";
/// An argument that selects no test, in case a re-executed binary ever reached the runner.
const NO_TESTS: &str = "__process_faults_no_test__";
const DOUBLE_PANIC: &str = "the first panic of the double panic";

/// What the `fault` export does, after it sent its pid on the task's channel (if it has one).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Fault {
    Segfault,
    Exit(i32),
    /// Returns the next message from the channel.
    WaitForMessage,
    /// An infinite loop (bounded far beyond any test, so that a bug cannot leave it behind).
    Spin,
    /// The same, deaf to SIGTERM.
    SpinIgnoringSigterm,
    /// A panic whose unwinding drops a value whose `Drop` panics: the process aborts.
    DoublePanic,
    /// Allocates (and does not touch) this many bytes.
    Allocate(u64),
    /// Forks a helper (no exec) that holds the worker's channel for two minutes, sends the
    /// helper's pid, then aborts.
    ForkThenAbort,
}

fn exports() -> Exports {
    Exports::new()
        .export_default(|x: i32| x)
        .export("pid", |()| std::process::id())
        .export("print", |()| {
            println!("Worker message");
            eprintln!("Worker error");
        })
        .export("fault", fault)
        .export("leak", leak)
        .export("len", |bytes: Vec<u8>| bytes.len())
        .export("bytes", |n: usize| vec![7u8; n])
        // The worker's pid and the shared memory it holds resident (`RssShmem`, in bytes).
        .export("shared_resident", |()| {
            (std::process::id(), shared_resident("self"))
        })
        .export("data_len", |()| {
            worker::data::<Vec<u8>>()
                .map(|data| data.map_or(0, |data| data.len()))
                .map_err(|e| e.to_string())
        })
        .export("fork_helper", |()| fork_helper())
        // Announces its pid on its channel, then never reads it (and ignores aborts: it can
        // only be killed).
        .export("deaf", |()| {
            let port = worker::port::<Vec<u8>>().expect("a channel");
            let pid = std::process::id().to_le_bytes().to_vec();
            port.send(pid).expect("the test listens");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(120) {
                thread::sleep(Duration::from_millis(10));
            }
        })
        // The descriptors open in the worker.
        .export("open_fds", |()| {
            (0..1024)
                // SAFETY: F_GETFD only reads a descriptor's flags; -1 for one not open.
                .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
                .collect::<Vec<i32>>()
        })
}

/// Forks (no exec) a helper that keeps every descriptor of the worker for two minutes, doing
/// nothing; returns its pid.
fn fork_helper() -> u32 {
    // SAFETY: the forked child only calls async-signal-safe functions (sleep, _exit).
    unsafe {
        match libc::fork() {
            0 => {
                libc::sleep(120);
                libc::_exit(0)
            }
            pid => {
                assert!(pid > 0, "fork failed");
                pid as u32
            }
        }
    }
}

fn fault(fault: Fault) -> u32 {
    let port = worker::port::<u32>().ok();
    if let Some(port) = &port {
        port.send(std::process::id()).expect("the test listens");
    }
    match fault {
        Fault::Segfault => {
            // SAFETY: plain signal calls. std's own SIGSEGV handler (stack-overflow detection)
            // returns from a fault that is not on a guard page, so a raised signal would be
            // swallowed: restore the default action first.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            }
            u32::MAX
        }
        Fault::Exit(code) => std::process::exit(code),
        Fault::WaitForMessage => port.expect("a channel").recv().unwrap_or(u32::MAX),
        Fault::Spin => spin(),
        Fault::SpinIgnoringSigterm => {
            // SAFETY: sets a signal disposition.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            spin()
        }
        Fault::DoublePanic => {
            let _bomb = PanicsOnDrop;
            panic!("{DOUBLE_PANIC}");
        }
        Fault::Allocate(bytes) => {
            let memory = vec![0u8; bytes as usize];
            black_box(&memory);
            u32::MAX
        }
        Fault::ForkThenAbort => {
            let helper = fork_helper();
            port.expect("a channel")
                .send(helper)
                .expect("the test listens");
            std::process::abort()
        }
    }
}

/// Burns CPU "forever": two minutes, far beyond what any test waits.
fn spin() -> u32 {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        std::hint::spin_loop();
    }
    u32::MAX
}

struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("a second panic, while unwinding the first");
    }
}

/// Leaks `mib` MiB of touched memory; returns the worker's pid and resident memory.
fn leak(mib: usize) -> (u32, u64) {
    let memory = vec![1u8; mib << 20];
    black_box(Box::leak(memory.into_boxed_slice()));
    (std::process::id(), resident_memory())
}

fn resident_memory() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// The shared memory process `pid` ("self": this one) holds resident: `RssShmem`, in bytes.
fn shared_resident(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    let line = status
        .lines()
        .find(|line| line.starts_with("RssShmem:"))
        .expect("RssShmem");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

// ---- Helpers --------------------------------------------------------------------------------

fn child_pool(min: usize, max: usize) -> Builder {
    Pool::builder()
        .runtime(Runtime::ChildProcess)
        .min_threads(min)
        .max_threads(max)
}

/// The pid of the worker that runs this task.
fn pid_of(pool: &Pool) -> u32 {
    finish(pool.run_with::<u32, _>((), named("pid"))).expect("the pid task succeeds")
}

/// Starts `fault` with a channel (and `options`): the task, the test's side of the channel,
/// and the pid of the worker running it, which the task sends first.
fn start_fault(pool: &Pool, fault: Fault, options: RunOptions) -> (Task<u32>, Port<u32>, u32) {
    let (ours, theirs) = tinypool::channel::<u32>();
    let task = pool.run_with::<u32, _>(fault, options.name("fault").channel(theirs));
    let pid = ours
        .recv_timeout(BOUND)
        .expect("the task sends its pid before anything else")
        .expect("the task started within the bound");
    (task, ours, pid)
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2); the pid is a child that nobody has reaped yet.
    let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(sent, 0, "kill({pid}, {signal}) failed");
}

/// This test binary, re-executed as a parent program playing `role`.
fn parent_program(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("this executable"));
    command.env(ROLE, role).arg(NO_TESTS).stdin(Stdio::null());
    command
}

/// `Command::output`, bounded: a process still running after [`BOUND`] is killed and fails
/// the test.
fn output_within(mut command: Command, what: &str) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("spawning the process");
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match finished.recv_timeout(BOUND) {
        Ok(output) => output,
        Err(_) => {
            // Not reaped yet (the waiter still waits), so the pid is still this child's.
            signal(pid, libc::SIGKILL);
            let _ = finished.recv();
            let _ = waiter.join();
            panic!("{what} did not finish within {BOUND:?}");
        }
    };
    waiter.join().expect("the waiter thread");
    output.expect("waiting for the process")
}

// ---- The programs this binary plays when re-executed ------------------------------------------

fn play(role: &str) -> ! {
    match role {
        // Runs a task that prints on stdout and stderr, then stops cleanly.
        "print" | "print-stdout-to-stderr" | "print-to-null" => {
            let (stdout, stderr) = match role {
                "print" => (ChildOutput::Inherit, ChildOutput::Inherit),
                "print-stdout-to-stderr" => (ChildOutput::Stderr, ChildOutput::Inherit),
                _ => (ChildOutput::Null, ChildOutput::Null),
            };
            let pool = child_pool(1, 1)
                .stdout(stdout)
                .stderr(stderr)
                .build()
                .expect("a pool");
            finish(pool.run_with::<(), _>((), named("print"))).expect("the print task");
            destroy(pool);
            std::process::exit(0);
        }
        // Starts two workers, prints their pids (and their fork server's, when forked), and
        // waits to be killed.
        "hold-workers" | "hold-forked-workers" => {
            let forked = role == "hold-forked-workers";
            let pool = (child_pool(2, 2).fork_server(forked))
                .build()
                .expect("a pool");
            // Two tasks submitted together go to the two idle workers, one each.
            let tasks = [
                pool.run_with::<u32, _>((), named("pid")),
                pool.run_with::<u32, _>((), named("pid")),
            ];
            let mut ran: Vec<u32> = tasks.map(|task| finish(task).expect("a pid")).into();
            let mut pids: Vec<u32> = pool
                .workers()
                .iter()
                .map(|info| info.pid.expect("a started worker has a pid"))
                .collect();
            ran.sort_unstable();
            pids.sort_unstable();
            assert_eq!(ran, pids, "the tasks ran on the pool's two workers");
            if forked {
                let server = common::procfs::parent_of(pids[0]);
                assert_ne!(server, std::process::id(), "forked by a server");
                pids.push(server);
                // A fork of this process that outlives it, holding its end of the server's
                // socket until the server is gone: the server must see the pool's death
                // without the end of that socket.
                let stat = std::ffi::CString::new(format!("/proc/{server}/stat")).unwrap();
                // SAFETY: the child makes only async-signal-safe calls (open, read, close,
                // usleep, _exit) and allocates nothing.
                match unsafe { libc::fork() } {
                    0 => loop {
                        let mut text = [0u8; 512];
                        // SAFETY: as above, into a buffer on the stack.
                        let read = unsafe {
                            let fd = libc::open(stat.as_ptr(), libc::O_RDONLY);
                            let read = libc::read(fd, text.as_mut_ptr().cast(), text.len());
                            libc::close(fd);
                            read
                        };
                        let text = &text[..read.max(0) as usize];
                        let state = (text.iter().rposition(|&byte| byte == b')'))
                            .and_then(|at| text.get(at + 2));
                        if !matches!(state, Some(b'S' | b'R' | b'D' | b'T' | b't')) {
                            // SAFETY: as above.
                            unsafe { libc::_exit(0) };
                        }
                        // SAFETY: as above.
                        unsafe { libc::usleep(1000) };
                    },
                    holder => pids.push(holder as u32),
                }
            }
            let line: Vec<String> = pids.iter().map(u32::to_string).collect();
            println!("{}", line.join(" "));
            loop {
                thread::park();
            }
        }
        // Handles Ctrl-C itself: prints "ready" once a task runs, waits for SIGINT, then lets
        // the task finish and prints its result.
        "ctrl-c" => {
            static INTERRUPTED: AtomicBool = AtomicBool::new(false);
            extern "C" fn on_sigint(_: libc::c_int) {
                INTERRUPTED.store(true, Ordering::SeqCst);
            }
            // SAFETY: installs a handler that only stores to an atomic.
            unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
            let pool = child_pool(1, 1).build().expect("a pool");
            let (task, port, _) = start_fault(&pool, Fault::WaitForMessage, RunOptions::new());
            println!("ready");
            std::io::stdout().flush().expect("stdout");
            eventually("SIGINT arrived", || INTERRUPTED.load(Ordering::SeqCst));
            port.send(5).expect("the task still runs");
            println!("{:?}", finish(task));
            destroy(pool);
            std::process::exit(0);
        }
        // Its program file is replaced (an upgrade renames a new file over it) before its
        // first worker starts; prints that worker's answer.
        "upgraded" => {
            let pool = child_pool(0, 1).build().expect("a pool");
            let program = std::env::current_exe().expect("this executable");
            let upgrade = program.with_extension("new");
            std::fs::write(&upgrade, "#!/bin/sh\nexit 0\n").expect("writing the upgrade");
            let executable = std::fs::Permissions::from_mode(0o755);
            std::fs::set_permissions(&upgrade, executable).expect("chmod");
            std::fs::rename(&upgrade, &program).expect("replacing the program");
            println!("{:?}", finish(pool.run::<i32, _>(5)));
            destroy(pool);
            std::process::exit(0);
        }
        other => {
            eprintln!("unknown {ROLE}: {other}");
            std::process::exit(100);
        }
    }
}

// ---- 1. Output ----------------------------------------------------------------------------------

fn a_childs_stdout_and_stderr_reach_the_parents() {
    let output = output_within(parent_program("print"), "the parent program");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the parent program failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        stdout.lines().any(|line| line == "Worker message"),
        "stdout: {stdout:?}"
    );
    assert!(
        stderr.lines().any(|line| line == "Worker error"),
        "stderr: {stderr:?}"
    );
    assert!(!stdout.contains("Worker error"), "stdout: {stdout:?}");
    assert!(!stderr.contains("Worker message"), "stderr: {stderr:?}");
}

/// `stdout` and `stderr` send a child's output elsewhere: its stdout to the parent's stderr
/// (for a parent that speaks a protocol on its stdout), or both to nowhere.
fn a_childs_output_goes_where_stdout_and_stderr_say() {
    let output = output_within(
        parent_program("print-stdout-to-stderr"),
        "the parent program",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stdout.contains("Worker"), "stdout: {stdout:?}");
    for line in ["Worker message", "Worker error"] {
        assert!(stderr.lines().any(|l| l == line), "stderr: {stderr:?}");
    }

    let output = output_within(parent_program("print-to-null"), "the parent program");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        !stdout.contains("Worker") && !stderr.contains("Worker"),
        "{stdout:?} {stderr:?}"
    );
}

// ---- 2. A dying worker fails only its task ------------------------------------------------------

/// Runs `fault` on one of two workers while the other holds a task, which must not notice;
/// returns the fault's error after checking that the next task runs on a new worker and that
/// the dead child was reaped.
fn fails_only_its_task(fault: Fault, kill_it: Option<libc::c_int>) -> Error {
    let pool = child_pool(2, 2).build().expect("a pool");
    let (bystander, bystander_port, bystander_pid) =
        start_fault(&pool, Fault::WaitForMessage, RunOptions::new());
    let (task, _port, pid) = start_fault(&pool, fault, RunOptions::new());
    assert_ne!(pid, bystander_pid, "the two tasks run on different workers");
    if let Some(sig) = kill_it {
        let listed = pool.workers().iter().any(|info| info.pid == Some(pid));
        assert!(listed, "pool.workers() lists the busy worker's pid {pid}");
        signal(pid, sig);
    }
    let error = finish(task).expect_err("the task fails");
    assert!(gone(pid), "the dead child {pid} was reaped");

    // The other worker and its task did not notice.
    bystander_port.send(7).expect("the bystander still runs");
    assert_eq!(finish(bystander), Ok(7));
    // The dead worker was replaced: the next two tasks run on two live workers, neither the
    // dead one.
    let (first, first_port, first_pid) =
        start_fault(&pool, Fault::WaitForMessage, RunOptions::new());
    let second_pid = pid_of(&pool);
    assert_ne!(first_pid, pid, "a new worker");
    assert_ne!(second_pid, pid, "a new worker");
    first_port.send(1).unwrap();
    assert_eq!(finish(first), Ok(1));
    assert_eq!(pool.threads(), 2);
    destroy(pool);
    error
}

fn a_segfault_fails_only_its_task() {
    let error = fails_only_its_task(Fault::Segfault, None);
    assert_eq!(
        error,
        Error::WorkerExited {
            code: None,
            signal: Some(libc::SIGSEGV),
            message: None
        }
    );
}

fn an_exit_fails_only_its_task() {
    let error = fails_only_its_task(Fault::Exit(3), None);
    assert_eq!(
        error,
        Error::WorkerExited {
            code: Some(3),
            signal: None,
            message: None
        }
    );
}

fn a_worker_killed_from_outside_fails_only_its_task() {
    let error = fails_only_its_task(Fault::WaitForMessage, Some(libc::SIGKILL));
    assert_eq!(
        error,
        Error::WorkerExited {
            code: None,
            signal: Some(libc::SIGKILL),
            message: None
        }
    );
}

/// A caller flooding the channel of a task whose child stopped reading (SIGSTOP) fills what
/// lies between them; the child is then killed: every send returns (the last ones with an
/// error, the task being gone), the task fails with `WorkerExited`, and the pool serves on.
fn sends_to_the_channel_of_a_killed_worker_return() {
    let pool = child_pool(1, 1).build().expect("a pool");
    let (task, port, pid) = start_fault(&pool, Fault::Spin, RunOptions::new());
    signal(pid, libc::SIGSTOP);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood = {
        let sent = sent.clone();
        thread::spawn(move || {
            for n in 0..5_000 {
                let _ = port.send(n);
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    eventually("the caller has sent some", || {
        sent.load(std::sync::atomic::Ordering::Relaxed) >= 100
    });
    signal(pid, libc::SIGKILL);
    let (done, joined) = mpsc::channel();
    thread::spawn(move || done.send(flood.join().is_ok()));
    assert_eq!(
        joined.recv_timeout(BOUND),
        Ok(true),
        "every send returned within the bound"
    );
    assert_eq!(
        finish(task),
        Err(Error::WorkerExited {
            code: None,
            signal: Some(libc::SIGKILL),
            message: None
        })
    );
    assert_eq!(finish(pool.run::<i32, _>(5)), Ok(5));
    destroy(pool);
}

fn an_aborted_infinite_loop_fails_only_its_task() {
    let pool = child_pool(1, 1).build().expect("a pool");
    let controller = AbortController::new();
    let (task, _port, pid) = start_fault(
        &pool,
        Fault::Spin,
        RunOptions::new().signal(controller.signal()),
    );
    controller.abort();
    assert_eq!(finish(task), Err(Error::Aborted { reason: None }));
    // The spinning child is killed and reaped; it has no event of its own to wait on.
    eventually("the aborted child is gone", || gone(pid));
    let next = pid_of(&pool);
    assert_ne!(next, pid, "the next task runs on a new worker");
    destroy(pool);
}

// ---- 3. Double panic ----------------------------------------------------------------------------

fn a_double_panic_aborts_the_child_with_the_panic_message() {
    let pool = child_pool(1, 1).build().expect("a pool");
    let (task, _port, pid) = start_fault(&pool, Fault::DoublePanic, RunOptions::new());
    match finish(task) {
        Err(Error::WorkerExited {
            code: None,
            signal: Some(libc::SIGABRT),
            message: Some(message),
        }) => assert!(
            message.starts_with(DOUBLE_PANIC),
            "the error carries the panic message first, got {message:?}"
        ),
        other => panic!("expected WorkerExited on SIGABRT with a message, got {other:?}"),
    }
    assert!(gone(pid));
    assert_ne!(pid_of(&pool), pid, "the next task runs on a new worker");
    destroy(pool);
}

// ---- 4. Death while idle ------------------------------------------------------------------------

fn a_worker_that_dies_while_idle_is_reported_and_replaced() {
    let (report, reports) = mpsc::channel();
    let pool = child_pool(1, 1)
        .on_error(move |error| {
            let _ = report.send(error);
        })
        .build()
        .expect("a pool");
    let pid = pid_of(&pool);
    assert_eq!(pool.workers()[0].pid, Some(pid));
    signal(pid, libc::SIGKILL);
    let error = reports
        .recv_timeout(BOUND)
        .expect("on_error hears of the idle worker's death");
    assert_eq!(
        error,
        Error::WorkerExited {
            code: None,
            signal: Some(libc::SIGKILL),
            message: None
        }
    );
    // The replacement has no event of its own: it starts on its own thread.
    eventually("a new worker replaces the dead one", || {
        let workers = pool.workers();
        workers.len() == 1 && workers[0].pid.is_some_and(|new| new != pid)
    });
    assert_eq!(pool.threads(), 1);
    assert!(gone(pid), "the dead child was reaped");
    let new = pool.workers()[0].pid;
    assert_eq!(Some(pid_of(&pool)), new, "the replacement serves");
    destroy(pool);
    assert!(reports.try_recv().is_err(), "nothing else was reported");
}

// ---- 5. Recycling on memory -----------------------------------------------------------------

fn a_worker_over_the_recycle_limit_is_replaced_after_its_task() {
    const LEAK_MIB: usize = 8;
    const LIMIT: u64 = 48 << 20;
    let pool = child_pool(1, 1)
        .max_memory_limit_before_recycle(LIMIT)
        .build()
        .expect("a pool");
    let leak_once = || -> (u32, u64) {
        finish(pool.run_with::<(u32, u64), _>(LEAK_MIB, named("leak"))).expect("a leak")
    };
    let (first_pid, first_rss) = leak_once();
    assert!(
        first_rss + (1 << 20) < LIMIT,
        "the test needs a worker well under the limit after one leak: {first_rss} bytes"
    );
    let (second_pid, mut rss) = leak_once();
    assert_eq!(second_pid, first_pid, "not recycled after the first task");
    let mut pid = second_pid;
    let mut tasks = 2;
    loop {
        let (next_pid, next_rss) = leak_once();
        tasks += 1;
        if next_pid != pid {
            assert!(
                rss + (1 << 20) > LIMIT,
                "recycled after a task that left {rss} bytes resident, under the limit"
            );
            break;
        }
        rss = next_rss;
        pid = next_pid;
        assert!(
            tasks < 2 + 2 * (LIMIT as usize >> 20) / LEAK_MIB,
            "never recycled, at {rss} bytes resident"
        );
    }
    destroy(pool);
}

/// A frame bigger than a ring crosses in shared memory both sides map; once it was read, the
/// worker does not keep it resident (beyond a few MiB kept for the next big frame): a 64 MiB
/// argument or result does not leave 64 MiB in the child, nor in the pool, for the child's life.
fn a_big_frame_leaves_no_shared_memory_resident() {
    const BIG: usize = 64 << 20;
    const KEPT: u64 = 16 << 20;
    let pool = child_pool(1, 1)
        .max_message_size(2 * BIG)
        .build()
        .expect("a pool");
    let held = || -> (u32, u64) {
        finish(pool.run_with::<(u32, u64), _>((), named("shared_resident"))).expect("a size")
    };
    let (pid, before) = held();
    let len = finish(pool.run_with::<usize, _>(vec![3u8; BIG], named("len")));
    assert_eq!(len, Ok(BIG));
    let (after_argument, child) = held();
    assert_eq!(after_argument, pid, "the same worker");
    assert!(
        child < before + KEPT,
        "a 64 MiB argument left {child} bytes of shared memory resident in the child"
    );
    let made = finish(pool.run_with::<Vec<u8>, _>(BIG, named("bytes"))).expect("bytes");
    assert_eq!(made.len(), BIG);
    drop(made);
    let (after_result, child) = held();
    assert_eq!(after_result, pid, "the same worker");
    assert!(
        child < before + KEPT,
        "a 64 MiB result left {child} bytes of shared memory resident in the child"
    );
    let pool_held = shared_resident("self");
    assert!(
        pool_held < 2 * KEPT,
        "the pool holds {pool_held} bytes of shared memory"
    );
    destroy(pool);
}

/// `max_memory_limit_before_recycle` counts the child's memory, not the pool's shared memory
/// for big frames: a worker under the limit that received an argument bigger than the limit
/// (and dropped it) serves on, task after task.
fn a_big_argument_does_not_push_a_worker_over_the_recycle_limit() {
    const LIMIT: u64 = 48 << 20;
    const BIG: usize = 64 << 20;
    let pool = child_pool(1, 1)
        .max_memory_limit_before_recycle(LIMIT)
        .max_message_size(2 * BIG)
        .build()
        .expect("a pool");
    let pid = pid_of(&pool);
    for round in 0..3 {
        let len = finish(pool.run_with::<usize, _>(vec![round as u8; BIG], named("len")));
        assert_eq!(len, Ok(BIG));
        for _ in 0..3 {
            assert_eq!(pid_of(&pool), pid, "recycled after a big argument");
        }
    }
    destroy(pool);
}

// ---- 6. Resource limits -------------------------------------------------------------------------

fn the_memory_limit_fails_the_task_with_resource_limit() {
    const CAP: u64 = 512 << 20;
    let pool = child_pool(1, 1)
        .resource_limits(ResourceLimits::new().max_memory(CAP))
        .build()
        .expect("a pool");
    let (task, _port, pid) = start_fault(&pool, Fault::Allocate(4 * CAP), RunOptions::new());
    assert_eq!(
        finish(task),
        Err(Error::ResourceLimit {
            limit: "memory".to_owned()
        })
    );
    assert!(gone(pid));
    // Under the cap, the next worker serves.
    assert_ne!(pid_of(&pool), pid);
    let (task, _port, _) = start_fault(&pool, Fault::Allocate(1 << 20), RunOptions::new());
    assert_eq!(finish(task), Ok(u32::MAX));
    destroy(pool);
}

fn the_cpu_time_limit_fails_the_task_with_resource_limit() {
    let pool = child_pool(1, 1)
        .resource_limits(ResourceLimits::new().max_cpu_time(Duration::from_secs(1)))
        .build()
        .expect("a pool");
    let (task, _port, pid) = start_fault(&pool, Fault::Spin, RunOptions::new());
    assert_eq!(
        finish(task),
        Err(Error::ResourceLimit {
            limit: "cpu time".to_owned()
        })
    );
    assert!(gone(pid));
    assert_ne!(pid_of(&pool), pid, "the next task runs on a new worker");
    destroy(pool);
}

// ---- 7. A killed parent ---------------------------------------------------------------------

fn set_child_subreaper(on: bool) {
    // SAFETY: prctl on this process.
    let set = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, libc::c_ulong::from(on)) };
    assert_eq!(set, 0, "PR_SET_CHILD_SUBREAPER");
}

fn a_killed_parent_leaves_no_worker_process() {
    killed_parent_leaves_no_process("hold-workers", 2);
}

/// The same with workers forked from a fork server: the server and its workers go, though a
/// fork of the parent (the fourth process, which dies with it) holds its end of the server's
/// socket.
#[cfg(target_os = "linux")]
fn a_killed_parent_leaves_no_fork_server_and_no_forked_worker() {
    killed_parent_leaves_no_process("hold-forked-workers", 4);
}

/// Kills the parent program playing `role` once it printed the pids of its `processes`, and
/// sees each of them exit on its own.
fn killed_parent_leaves_no_process(role: &str, processes: usize) {
    // Orphans of the parent become this process's children, so it can watch them exit.
    set_child_subreaper(true);
    let mut parent = parent_program(role)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning the parent program");
    let stdout = parent.stdout.take().expect("its stdout");
    let (said, line) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = said.send(line);
    });
    let line = line.recv_timeout(BOUND);
    // Killed with SIGKILL: no destructor, no teardown runs in the parent.
    parent.kill().expect("killing the parent");
    let status = parent.wait().expect("reaping the parent");
    let _ = reader.join();
    let line = line.expect("the parent prints its workers' pids");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let pids: Vec<libc::pid_t> = line
        .split_whitespace()
        .map(|pid| pid.parse().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), processes, "its processes: {line:?}");

    // The workers must exit on their own; reap them as they do.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut alive = pids.clone();
    let mut problems = Vec::new();
    while !alive.is_empty() && Instant::now() < deadline {
        alive.retain(|&pid| {
            let mut status = 0;
            // SAFETY: waitpid on a pid that is this process's child once orphaned.
            match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
                0 => true,
                // Not (yet) ours: a fork server's worker, which it reaps, or which becomes
                // ours once the server is gone.
                -1 if std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) => {
                    !gone(pid as u32)
                }
                -1 => {
                    problems.push(format!(
                        "waitpid({pid}): {}",
                        std::io::Error::last_os_error()
                    ));
                    false
                }
                _ => false,
            }
        });
        if !alive.is_empty() {
            thread::sleep(Duration::from_millis(5));
        }
    }
    for &pid in &alive {
        // SAFETY: kill and reap our own orphaned children, so that nothing is left behind.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    set_child_subreaper(false);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        alive.is_empty(),
        "workers {alive:?} outlived their killed parent"
    );
}

// ---- 8. destroy reaps -------------------------------------------------------------------------

fn destroy_leaves_no_child_process_and_no_zombie() {
    let before = child_pids();
    let pool = child_pool(2, 2).build().expect("a pool");
    let tasks = [
        pool.run_with::<u32, _>((), named("pid")),
        pool.run_with::<u32, _>((), named("pid")),
    ];
    let pids = tasks.map(|task| finish(task).expect("a pid"));
    assert_ne!(pids[0], pids[1], "two workers");
    for pid in pids {
        assert!(
            child_pids().contains(&pid),
            "{pid} is a child of this process"
        );
    }
    destroy(pool);
    for pid in pids {
        assert!(gone(pid), "worker {pid} is gone, not even a zombie");
    }
    assert_eq!(child_pids(), before, "no child process is left");
}

// ---- 9. Start failures --------------------------------------------------------------------

/// A pool whose workers cannot start: each task fails with `WorkerStartFailed`, and the pool
/// does not keep spawning.
fn start_fails(builder: Builder, expected: &[&str]) {
    let before = child_pids();
    let pool = builder
        .min_threads(1)
        .max_threads(1)
        .build()
        .expect("a pool");
    for _ in 0..2 {
        match finish(pool.run::<i32, _>(5i32)) {
            Err(Error::WorkerStartFailed { message }) => {
                for part in expected {
                    assert!(message.contains(part), "{message:?} names {part:?}");
                }
            }
            other => panic!("expected WorkerStartFailed, got {other:?}"),
        }
        assert_eq!(pool.threads(), 0, "no worker is left trying");
        assert_eq!(child_pids(), before, "no child process is left");
    }
    destroy(pool);
}

/// A worker program that exits without the handshake (`/bin/true`, or this one when its
/// `main` returns before it calls `serve_if_worker`): the error says what `main` must do.
fn a_worker_that_exits_before_the_handshake_fails_to_start() {
    const HINT: &str = "the worker program's `main` must call \
                        `tinypool::worker::serve_if_worker` first";
    start_fails(
        Pool::builder()
            .runtime(Runtime::ChildProcess)
            .filename("/bin/true"),
        &[
            "/bin/true",
            "without a handshake",
            "exited with code 0",
            HINT,
        ],
    );
    start_fails(
        Pool::builder()
            .runtime(Runtime::ChildProcess)
            .env(UNSERVED, "1"),
        &["exited with code 0", HINT],
    );
}

fn a_worker_that_never_answers_fails_at_the_startup_timeout() {
    start_fails(
        Pool::builder()
            .runtime(Runtime::ChildProcess)
            .filename("/bin/sleep")
            .argv(["30"])
            .startup_timeout(Duration::from_millis(200)),
        &["/bin/sleep", "startup_timeout"],
    );
}

/// A worker executable the system cannot run (it is not a program): each task fails with
/// `WorkerStartFailed` naming the spawn.
fn a_worker_that_cannot_be_spawned_fails_to_start() {
    let path = std::env::temp_dir().join(format!("tinypool-not-a-program-{}", std::process::id()));
    std::fs::write(&path, [0u8; 64]).expect("writing the file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let name = path.display().to_string();
    start_fails(
        Pool::builder()
            .runtime(Runtime::ChildProcess)
            .filename(&path),
        &[&name, "spawning"],
    );
    let _ = std::fs::remove_file(&path);
}

/// `filename` must name an executable file: a missing path, a directory, a file without
/// execute permission and a bare name found nowhere in `PATH` are refused at `build`, naming
/// the path, before any child is started.
fn a_filename_that_is_not_an_executable_file_is_refused_at_build() {
    let before = child_pids();
    let dir = std::env::temp_dir().join(format!("tinypool-filename-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let plain = dir.join("plain");
    std::fs::write(&plain, "#!/bin/sh\nexit 0\n").expect("writing the file");
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let cases = [
        (dir.join("missing"), "does not exist"),
        (dir.clone(), "is not a file"),
        (plain, "is not executable"),
        (
            "tinypool-no-such-program".into(),
            "is not an executable file in any directory of PATH",
        ),
    ];
    for (path, says) in cases {
        let built = Pool::builder()
            .runtime(Runtime::ChildProcess)
            .filename(&path)
            .build();
        match built {
            Err(Error::InvalidOptions(message)) => {
                let named = format!("filename: `{}` {says}", path.display());
                assert!(message.contains(&named), "{message:?} says {named:?}");
            }
            other => panic!("{path:?}: expected InvalidOptions, got {other:?}"),
        }
    }
    // A bare name is looked up in PATH, as the spawn does.
    let pool = Pool::builder()
        .runtime(Runtime::ChildProcess)
        .filename("true")
        .min_threads(0)
        .build()
        .expect("`true` is in PATH");
    destroy(pool);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(child_pids(), before, "no child process was started");
}

// ---- 10. A worker started by hand -------------------------------------------------------------

/// Runs in the child between fork and exec.
type PrepareFd3 = fn() -> std::io::Result<()>;

/// This binary with the worker marker but no pool on the other end; `fd3` prepares fd 3.
fn started_by_hand(marker: &str, fd3: Option<PrepareFd3>) -> Output {
    let mut command = Command::new(std::env::current_exe().expect("this executable"));
    command.env("TINYPOOL_WORKER_FD", marker).arg(NO_TESTS);
    if let Some(fd3) = fd3 {
        // SAFETY: each preparation only calls open, dup2 or close: async-signal-safe.
        unsafe { command.pre_exec(fd3) };
    }
    output_within(command, "a worker started by hand")
}

fn a_worker_started_by_hand_exits_with_code_2() {
    fn dev_null_on_fd_3() -> std::io::Result<()> {
        // SAFETY: between fork and exec: open and dup2 only.
        unsafe {
            let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if fd < 0 || (fd != 3 && libc::dup2(fd, 3) != 3) {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
    fn nothing_on_fd_3() -> std::io::Result<()> {
        // SAFETY: between fork and exec: close only (EBADF is fine).
        unsafe { libc::close(3) };
        Ok(())
    }
    let cases: [(&str, Option<PrepareFd3>, &str); 3] = [
        ("3", Some(dev_null_on_fd_3), "fd 3 is not its channel"),
        ("3", Some(nothing_on_fd_3), "fd 3 is not its channel"),
        ("not-a-number", None, "is not a file descriptor"),
    ];
    for (marker, fd3, says) in cases {
        let output = started_by_hand(marker, fd3);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
        assert!(
            stderr.contains("tinypool worker") && stderr.contains(says),
            "a clear message on stderr, got {stderr:?}"
        );
        assert!(output.stdout.is_empty(), "it ran nothing else");
    }
}

/// A process started with the marker by mistake, its fd 3 a socket of some other program,
/// must not talk to that socket's peer or wait for it forever.
fn a_stray_worker_marker_exits_with_code_2() {
    fn datagram_socket_on_fd_3() -> std::io::Result<()> {
        // SAFETY: between fork and exec: socket and dup2 only.
        unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0);
            if fd < 0 || (fd != 3 && libc::dup2(fd, 3) != 3) {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
    let output = started_by_hand("3", Some(datagram_socket_on_fd_3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("fd 3 is not its channel"), "{stderr:?}");

    // A Unix stream socket whose peer reads the handshake and never answers.
    let (peer, theirs) = UnixStream::pair().expect("a socket pair");
    let theirs_fd = theirs.as_raw_fd();
    let mut command = Command::new(std::env::current_exe().expect("this executable"));
    command
        .env("TINYPOOL_WORKER_FD", "3")
        // How long a worker waits for the pool's answer (the pool passes its startup_timeout;
        // a stray marker has none and waits 10 s): short, so the test is quick.
        .env("TINYPOOL_WORKER_LIMITS", "1048576,300")
        .arg(NO_TESTS);
    // SAFETY: between fork and exec: dup2 only (the pair closes on exec; fd 3 does not).
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(theirs_fd, 3) != 3 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let output = output_within(command, "a worker whose peer never answers");
    drop((peer, theirs));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("did not answer the handshake within 300ms"),
        "{stderr:?}"
    );
    assert!(output.stdout.is_empty(), "it ran nothing else");
}

// ---- 11. Message size ---------------------------------------------------------------------

fn an_oversized_message_fails_only_its_task() {
    let pool = child_pool(1, 1)
        .max_message_size(1024)
        .build()
        .expect("a pool");
    let pid = pid_of(&pool);
    // An argument too big to send.
    match finish(pool.run_with::<usize, _>(vec![0u8; 4096], named("len"))) {
        Err(Error::Protocol { message }) => {
            assert!(message.contains("max_message_size"), "{message:?}")
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert_eq!(
        finish(pool.run_with::<usize, _>(vec![0u8; 512], named("len"))),
        Ok(512)
    );
    // A result too big to send back.
    match finish(pool.run_with::<Vec<u8>, _>(4096usize, named("bytes"))) {
        Err(Error::Protocol { message }) => {
            assert!(message.contains("max_message_size"), "{message:?}")
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert_eq!(
        finish(pool.run_with::<Vec<u8>, _>(16usize, named("bytes"))),
        Ok(vec![7u8; 16])
    );
    assert_eq!(pid_of(&pool), pid, "the same worker kept serving");
    destroy(pool);
}

/// Bytes of postcard's length prefix of a byte buffer of `len` bytes (a varint).
fn varint_len(len: usize) -> usize {
    (usize::BITS - len.max(1).leading_zeros()).div_ceil(7) as usize
}

/// Big frames (in the shared slot for big frames) are held to `max_message_size` as any: an
/// argument and a result whose frames are exactly the cap cross, one byte more fails only its
/// task, with the cap named, and the worker serves on.
fn frames_at_max_message_size_cross_and_one_byte_more_fails() {
    // Not a whole number of pages: a slot holds a little more than the cap, which still binds.
    const MAX: usize = (1 << 20) + 123;
    let pool = child_pool(1, 1)
        .max_message_size(MAX)
        .build()
        .expect("a pool");
    let pid = pid_of(&pool);
    let str_len = |text: &str| 4 + text.len();
    // `RUN`: kind, task, name, the types, no channel, then the argument.
    let run_head = 1
        + 8
        + str_len("len")
        + str_len(std::any::type_name::<Vec<u8>>())
        + str_len(std::any::type_name::<usize>())
        + str_len("")
        + 4;
    // `DONE`: kind, task, resident memory, outcome, then the value.
    let done_head = 1 + 8 + 8 + 1 + 4;
    // The longest buffer whose frame is exactly the cap.
    let at_cap = |head: usize| {
        let len = (0..MAX)
            .rev()
            .find(|&len| head + varint_len(len) + len <= MAX)
            .expect("a length");
        assert_eq!(head + varint_len(len) + len, MAX, "exactly the cap");
        len
    };
    let over = |result: Result<(), Error>, what: &str| match result {
        Err(Error::Protocol { message }) => assert!(
            message.contains(&format!("max_message_size ({MAX} bytes)")),
            "{what}: {message}"
        ),
        other => panic!("{what}: expected a protocol error, got {other:?}"),
    };
    let arg = at_cap(run_head);
    for _ in 0..2 {
        assert_eq!(
            finish(pool.run_with::<usize, _>(vec![5u8; arg], named("len"))),
            Ok(arg)
        );
        over(
            finish(pool.run_with::<usize, _>(vec![5u8; arg + 1], named("len"))).map(|_| ()),
            "an argument",
        );
        let result = at_cap(done_head);
        let back = finish(pool.run_with::<Vec<u8>, _>(result, named("bytes"))).expect("a result");
        assert!(back.len() == result && back.iter().all(|&byte| byte == 7));
        over(
            finish(pool.run_with::<Vec<u8>, _>(result + 1, named("bytes"))).map(|_| ()),
            "a result",
        );
    }
    assert_eq!(pid_of(&pool), pid, "the same worker kept serving");
    destroy(pool);
}

/// The mappings of this process whose path names the pool's shared memory.
fn shared_memory_mappings() -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter(|line| line.contains("memfd:tinypool"))
        .map(str::to_owned)
        .collect()
}

/// After `destroy`, a pool whose workers sent big frames both ways holds no descriptor and no
/// mapping of the memory it shared with them.
fn destroy_leaves_no_descriptor_and_no_shared_memory() {
    let fds = common::procfs::open_fds();
    assert_eq!(
        shared_memory_mappings(),
        Vec::<String>::new(),
        "none before"
    );
    let pool = child_pool(2, 2).build().expect("a pool");
    let tasks: Vec<Task<usize>> = (0..4)
        .map(|i| pool.run_with(vec![1u8; (2 << 20) + i], named("len")))
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(finish(task), Ok((2 << 20) + i));
    }
    let made = finish(pool.run_with::<Vec<u8>, _>(3usize << 20, named("bytes")));
    assert_eq!(made.map(|bytes| bytes.len()), Ok(3 << 20));
    let mapped = shared_memory_mappings();
    assert!(
        mapped
            .iter()
            .any(|line| line.contains("memfd:tinypool-bulk")),
        "the slots for big frames were mapped: {mapped:?}"
    );
    destroy(pool);
    assert_eq!(
        shared_memory_mappings(),
        Vec::<String>::new(),
        "left mapped"
    );
    let after = common::procfs::open_fds();
    assert!(after == fds, "{}", common::procfs::fd_diff(&fds, &after));
}

/// The caller's side of a task's channel, still held after its worker is gone, holds none of
/// that worker's descriptors or shared memory: a pool whose callers keep their ports leaks
/// nothing once its workers go.
fn a_held_channel_keeps_nothing_of_its_gone_worker() {
    let fds = common::procfs::open_fds();
    let pool = child_pool(1, 1).build().expect("a pool");
    let (task, port, _) = start_fault(&pool, Fault::WaitForMessage, RunOptions::new());
    port.send(7).expect("the task still runs");
    assert_eq!(finish(task), Ok(7));
    destroy(pool);
    assert_eq!(
        shared_memory_mappings(),
        Vec::<String>::new(),
        "left mapped while the port is held"
    );
    let after = common::procfs::open_fds();
    assert!(after == fds, "{}", common::procfs::fd_diff(&fds, &after));
    // Its task ended: the other side is gone, as after any task's end.
    assert_eq!(port.send(8), Err(Error::Disconnected));
    drop(port);
}

// ---- 12. destroy during an infinite loop -------------------------------------------------------

fn destroy_kills_a_child_stuck_in_an_infinite_loop() {
    let pool = child_pool(1, 1)
        .terminate_timeout(Duration::from_secs(5))
        .build()
        .expect("a pool");
    let (task, _port, pid) = start_fault(&pool, Fault::Spin, RunOptions::new());
    let destroyed = pool.destroy();
    assert_eq!(finish(task), Err(Error::Terminated));
    destroyed
        .wait()
        .expect("SIGTERM stops the child before the timeout");
    assert!(gone(pid), "the child was killed and reaped");
}

fn destroy_kills_a_child_deaf_to_sigterm() {
    let pool = child_pool(1, 1)
        .terminate_timeout(Duration::from_millis(200))
        .build()
        .expect("a pool");
    let (task, _port, pid) = start_fault(&pool, Fault::SpinIgnoringSigterm, RunOptions::new());
    let destroyed = pool.destroy();
    assert_eq!(finish(task), Err(Error::Terminated));
    // SIGKILL follows terminate_timeout; on a loaded machine the reaping may come after
    // destroy's own deadline, which it then reports.
    match destroyed.wait() {
        Ok(()) | Err(Error::TerminateTimeout { .. }) => {}
        Err(other) => panic!("unexpected {other:?}"),
    }
    eventually("the deaf child is killed and reaped", || gone(pid));
}

// ---- 13. What a child holds, and what holds it --------------------------------------------

/// A process a worker forked: killed when the test is done with it, even if it fails.
struct Helper(u32);

impl Drop for Helper {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the helper (an orphan by now, reaped by init); at worst a no-op.
        unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGKILL) };
    }
}

/// A worker that forks a helper (which inherits its channel) and then dies is found dead at
/// once, not when the helper lets go of the channel: its task fails with how it died, it is
/// reaped, and the pool serves on.
fn a_worker_whose_forked_helper_outlives_it_is_found_dead() {
    let pool = child_pool(1, 1).build().expect("a pool");
    let (task, port, pid) = start_fault(&pool, Fault::ForkThenAbort, RunOptions::new());
    let helper = Helper(
        port.recv_timeout(BOUND)
            .expect("the helper's pid")
            .expect("within the bound"),
    );
    assert_eq!(
        finish(task),
        Err(Error::WorkerExited {
            code: None,
            signal: Some(libc::SIGABRT),
            message: None
        })
    );
    assert!(gone(pid), "the dead worker {pid} was reaped");
    assert_eq!(finish(pool.run::<i32, _>(5)), Ok(5), "the pool serves on");
    destroy(pool);
    drop(helper);
}

/// `destroy` waits for its workers, not for what they forked: a helper that holds a worker's
/// channel does not hold `destroy` (here until a `terminate_timeout` of two minutes).
fn destroy_does_not_wait_for_a_helper_a_worker_forked() {
    let pool = child_pool(1, 1)
        .terminate_timeout(Duration::from_secs(120))
        .build()
        .expect("a pool");
    let helper = Helper(finish(pool.run_with::<u32, _>((), named("fork_helper"))).unwrap());
    let pid = pool.workers()[0].pid.expect("a started worker");
    destroy(pool);
    assert!(gone(pid), "the worker {pid} was reaped");
    drop(helper);
}

/// A caller sending 8 MiB on the channel of a task whose child does not read (stopped, here)
/// is never blocked by it, and neither are `abort` and `destroy`.
fn a_channel_to_a_child_that_does_not_read_blocks_nobody() {
    let pool = child_pool(1, 1)
        .terminate_timeout(Duration::from_millis(500))
        .build()
        .expect("a pool");
    let (ours, theirs) = tinypool::channel::<Vec<u8>>();
    let controller = AbortController::new();
    let options = named("deaf").channel(theirs).signal(controller.signal());
    let task = pool.run_with::<(), _>((), options);
    let said = ours
        .recv_timeout(BOUND)
        .expect("the task sends its pid")
        .expect("within the bound");
    let pid = u32::from_le_bytes(said.try_into().expect("4 bytes"));
    signal(pid, libc::SIGSTOP);
    let ours = within("8 MiB of sends", move || {
        for _ in 0..8 {
            ours.send(vec![1u8; 1 << 20]).expect("the task still runs");
        }
        ours
    });
    within("abort", move || controller.abort());
    assert_eq!(finish(task), Err(Error::Aborted { reason: None }));
    destroy(pool);
    assert!(gone(pid), "the stopped worker {pid} was killed and reaped");
    drop(ours);
}

/// `worker_data` may be as large as `max_message_size` allows, past the default 64 MiB; larger
/// than that, `build()` refuses it.
fn worker_data_up_to_max_message_size_reaches_the_child() {
    let size = 70 << 20;
    let pool = child_pool(1, 1)
        .max_message_size(128 << 20)
        .worker_data(vec![7u8; size])
        .build()
        .expect("a pool");
    let len = finish(pool.run_with::<Result<usize, String>, _>((), named("data_len")));
    assert_eq!(len, Ok(Ok(size)));
    destroy(pool);

    let refused = child_pool(1, 1)
        .max_message_size(1 << 20)
        .worker_data(vec![7u8; 2 << 20])
        .build()
        .map(drop);
    let Err(Error::InvalidOptions(message)) = refused else {
        panic!("build() refuses worker_data over max_message_size: {refused:?}");
    };
    assert!(
        message.contains("worker_data") && message.contains("max_message_size"),
        "{message}"
    );
}

/// A worker holds stdin, stdout, stderr and its channel, nothing else of its pool's process:
/// not even a descriptor left open without close-on-exec.
fn a_worker_inherits_no_descriptor_but_its_channel() {
    let mut pipe = [0; 2];
    // SAFETY: pipe(2) into a local array; then copies of its ends at 100 and 101, without
    // close-on-exec, as a careless program leaves them (out of the way of fds 3 and 4, which
    // a worker's channel takes).
    unsafe {
        assert_eq!(libc::pipe(pipe.as_mut_ptr()), 0);
        assert_eq!(libc::fcntl(pipe[0], libc::F_DUPFD, 100), 100);
        assert_eq!(libc::fcntl(pipe[1], libc::F_DUPFD, 101), 101);
        libc::close(pipe[0]);
        libc::close(pipe[1]);
    }
    let pool = child_pool(1, 1).build().expect("a pool");
    let open = finish(pool.run_with::<Vec<i32>, _>((), named("open_fds"))).expect("a list");
    destroy(pool);
    // SAFETY: closes the two descriptors opened above.
    unsafe {
        libc::close(100);
        libc::close(101);
    }
    assert!(
        !open.contains(&100) && !open.contains(&101),
        "the worker inherited the pipe: {open:?}"
    );
    // What it holds: the standard three, its channel, the memory it shares with the pool for
    // big frames (fd 5), and its own copy of the channel (made while fd 4, the rings, was still
    // open).
    assert!(open.iter().all(|&fd| fd <= 6), "{open:?}");
}

/// The terminal's Ctrl-C (SIGINT to the foreground process group) is for the application: one
/// that handles it finishes its tasks, its workers untouched.
fn ctrl_c_reaches_the_application_not_its_workers() {
    let mut command = parent_program("ctrl-c");
    // In a group of its own, as a shell starts a job, so that the test signals only it.
    // SAFETY: between fork and exec: setpgid only.
    unsafe {
        command.pre_exec(|| {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut parent = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning the parent program");
    let stdout = parent.stdout.take().expect("its stdout");
    let (said, lines) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = said.send(line.unwrap_or_default());
        }
    });
    let ready = lines.recv_timeout(BOUND);
    if ready.as_deref() == Ok("ready") {
        // As the terminal does: the whole process group.
        // SAFETY: kill(2) on the parent program's own process group.
        unsafe { libc::kill(-(parent.id() as libc::pid_t), libc::SIGINT) };
    }
    let result = lines.recv_timeout(BOUND);
    let status = within("the parent program", move || parent.wait());
    let _ = reader.join();
    assert_eq!(ready.as_deref(), Ok("ready"));
    assert_eq!(result.as_deref(), Ok("Ok(5)"), "the task survived Ctrl-C");
    assert!(status.expect("its status").success());
}

/// A program replaced on disk while it runs (an upgrade) starts workers of the code it runs,
/// not of the new file.
fn workers_run_the_running_program_after_an_upgrade() {
    let dir = std::env::temp_dir().join(format!("tinypool-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let program = dir.join("app");
    std::fs::copy(std::env::current_exe().expect("this executable"), &program)
        .expect("copying this program");
    let mut command = Command::new(&program);
    command.env(ROLE, "upgraded").arg(NO_TESTS);
    let output = output_within(command, "the upgraded program");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "Ok(5)", "{stderr}");
}

fn main() {
    if std::env::var_os(UNSERVED).is_some() {
        std::process::exit(0);
    }
    worker::serve_if_worker(exports());
    // Crashing workers must not leave core files behind (children inherit this).
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit on this process.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    if let Some(role) = std::env::var_os(ROLE) {
        play(&role.to_string_lossy());
    }
    common::run_tests(&[
        (
            "a_childs_stdout_and_stderr_reach_the_parents",
            a_childs_stdout_and_stderr_reach_the_parents,
        ),
        (
            "a_childs_output_goes_where_stdout_and_stderr_say",
            a_childs_output_goes_where_stdout_and_stderr_say,
        ),
        (
            "a_segfault_fails_only_its_task",
            a_segfault_fails_only_its_task,
        ),
        ("an_exit_fails_only_its_task", an_exit_fails_only_its_task),
        (
            "a_worker_killed_from_outside_fails_only_its_task",
            a_worker_killed_from_outside_fails_only_its_task,
        ),
        (
            "sends_to_the_channel_of_a_killed_worker_return",
            sends_to_the_channel_of_a_killed_worker_return,
        ),
        (
            "an_aborted_infinite_loop_fails_only_its_task",
            an_aborted_infinite_loop_fails_only_its_task,
        ),
        (
            "a_double_panic_aborts_the_child_with_the_panic_message",
            a_double_panic_aborts_the_child_with_the_panic_message,
        ),
        (
            "a_worker_that_dies_while_idle_is_reported_and_replaced",
            a_worker_that_dies_while_idle_is_reported_and_replaced,
        ),
        (
            "a_worker_over_the_recycle_limit_is_replaced_after_its_task",
            a_worker_over_the_recycle_limit_is_replaced_after_its_task,
        ),
        (
            "a_big_frame_leaves_no_shared_memory_resident",
            a_big_frame_leaves_no_shared_memory_resident,
        ),
        (
            "a_big_argument_does_not_push_a_worker_over_the_recycle_limit",
            a_big_argument_does_not_push_a_worker_over_the_recycle_limit,
        ),
        (
            "the_memory_limit_fails_the_task_with_resource_limit",
            the_memory_limit_fails_the_task_with_resource_limit,
        ),
        (
            "the_cpu_time_limit_fails_the_task_with_resource_limit",
            the_cpu_time_limit_fails_the_task_with_resource_limit,
        ),
        (
            "a_killed_parent_leaves_no_worker_process",
            a_killed_parent_leaves_no_worker_process,
        ),
        #[cfg(target_os = "linux")]
        (
            "a_killed_parent_leaves_no_fork_server_and_no_forked_worker",
            a_killed_parent_leaves_no_fork_server_and_no_forked_worker,
        ),
        (
            "destroy_leaves_no_child_process_and_no_zombie",
            destroy_leaves_no_child_process_and_no_zombie,
        ),
        (
            "a_worker_that_exits_before_the_handshake_fails_to_start",
            a_worker_that_exits_before_the_handshake_fails_to_start,
        ),
        (
            "a_worker_that_never_answers_fails_at_the_startup_timeout",
            a_worker_that_never_answers_fails_at_the_startup_timeout,
        ),
        (
            "a_worker_that_cannot_be_spawned_fails_to_start",
            a_worker_that_cannot_be_spawned_fails_to_start,
        ),
        (
            "a_filename_that_is_not_an_executable_file_is_refused_at_build",
            a_filename_that_is_not_an_executable_file_is_refused_at_build,
        ),
        (
            "a_worker_started_by_hand_exits_with_code_2",
            a_worker_started_by_hand_exits_with_code_2,
        ),
        (
            "an_oversized_message_fails_only_its_task",
            an_oversized_message_fails_only_its_task,
        ),
        (
            "destroy_kills_a_child_stuck_in_an_infinite_loop",
            destroy_kills_a_child_stuck_in_an_infinite_loop,
        ),
        (
            "destroy_kills_a_child_deaf_to_sigterm",
            destroy_kills_a_child_deaf_to_sigterm,
        ),
        (
            "a_stray_worker_marker_exits_with_code_2",
            a_stray_worker_marker_exits_with_code_2,
        ),
        (
            "a_worker_whose_forked_helper_outlives_it_is_found_dead",
            a_worker_whose_forked_helper_outlives_it_is_found_dead,
        ),
        (
            "destroy_does_not_wait_for_a_helper_a_worker_forked",
            destroy_does_not_wait_for_a_helper_a_worker_forked,
        ),
        (
            "a_channel_to_a_child_that_does_not_read_blocks_nobody",
            a_channel_to_a_child_that_does_not_read_blocks_nobody,
        ),
        (
            "worker_data_up_to_max_message_size_reaches_the_child",
            worker_data_up_to_max_message_size_reaches_the_child,
        ),
        (
            "a_worker_inherits_no_descriptor_but_its_channel",
            a_worker_inherits_no_descriptor_but_its_channel,
        ),
        (
            "ctrl_c_reaches_the_application_not_its_workers",
            ctrl_c_reaches_the_application_not_its_workers,
        ),
        (
            "workers_run_the_running_program_after_an_upgrade",
            workers_run_the_running_program_after_an_upgrade,
        ),
        (
            "frames_at_max_message_size_cross_and_one_byte_more_fails",
            frames_at_max_message_size_cross_and_one_byte_more_fails,
        ),
        (
            "destroy_leaves_no_descriptor_and_no_shared_memory",
            destroy_leaves_no_descriptor_and_no_shared_memory,
        ),
        (
            "a_held_channel_keeps_nothing_of_its_gone_worker",
            a_held_channel_keeps_nothing_of_its_gone_worker,
        ),
    ]);
}
