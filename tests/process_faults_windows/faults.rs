//! The tests of `process_faults_windows.rs` (see its doc), on Windows only.

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tinypool::{
    worker, AbortController, Builder, ChildOutput, Error, Exports, Pool, Port, ResourceLimits,
    RunOptions, Runtime, Task,
};
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, WAIT_OBJECT_0};
use windows_sys::Win32::System::Threading::{
    OpenProcess, OpenThread, ResumeThread, SuspendThread, TerminateProcess, WaitForSingleObject,
    PROCESS_SYNCHRONIZE, PROCESS_TERMINATE, THREAD_SUSPEND_RESUME,
};

use crate::common::procfs::{children_of, gone, thread_ids_named, under_wine};
use crate::common::{destroy, eventually, finish, named, BOUND};

/// Set on this binary re-executed as a parent program: which one it plays (see [`play`]).
const ROLE: &str = "PROCESS_FAULTS_ROLE";
/// An argument that selects no test, in case a re-executed binary ever reached the runner.
const NO_TESTS: &str = "__process_faults_no_test__";
const DOUBLE_PANIC: &str = "the first panic of the double panic";

/// How an access violation ends a process (`EXCEPTION_ACCESS_VIOLATION`).
const ACCESS_VIOLATION: i32 = 0xC000_0005_u32 as i32;
/// How Rust's `abort` ends a process (`__fastfail`, `STATUS_STACK_BUFFER_OVERRUN`).
const FAST_FAIL: i32 = 0xC000_0409_u32 as i32;

/// What the `fault` export does, after it sent its pid on the task's channel (if it has one).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Fault {
    /// Writes through a pointer into the null page.
    Crash,
    Exit(i32),
    Abort,
    /// A panic whose unwinding drops a value whose `Drop` panics: the process aborts.
    DoublePanic,
    /// Returns the next message from the channel.
    WaitForMessage,
    /// An infinite loop (bounded far beyond any test, so that a bug cannot leave it behind).
    Spin,
    /// Prints "spinning" on stdout, then spins.
    AnnounceThenSpin,
    /// Allocates (and does not touch) this many bytes.
    Allocate(u64),
    /// Waits for a message, then panics twice (the process aborts), the first panic's message
    /// [`DOUBLE_PANIC`] padded to this many bytes: too long for the ring, it goes on the pipe.
    LastWords(usize),
}

fn exports() -> Exports {
    Exports::new()
        .export_default(|x: i32| x)
        .export("pid", |()| std::process::id())
        .export("fault", fault)
}

fn fault(fault: Fault) -> u32 {
    let port = worker::port::<u32>().ok();
    if let Some(port) = &port {
        port.send(std::process::id()).expect("the test listens");
    }
    match fault {
        Fault::Crash => {
            // Not the null pointer itself, which std's debug checks of `write_volatile` would
            // catch (and abort): an address in the same page, which nothing maps either.
            let address = std::ptr::without_provenance_mut::<u32>(16);
            // SAFETY: none; the point is the access violation.
            unsafe { address.write_volatile(1) };
            u32::MAX
        }
        Fault::Exit(code) => std::process::exit(code),
        Fault::Abort => std::process::abort(),
        Fault::DoublePanic => {
            let _bomb = PanicsOnDrop;
            panic!("{DOUBLE_PANIC}");
        }
        Fault::WaitForMessage => port.expect("a channel").recv().unwrap_or(u32::MAX),
        Fault::LastWords(len) => {
            let _ = port.expect("a channel").recv();
            let _bomb = PanicsOnDrop;
            panic!(
                "{DOUBLE_PANIC}{}",
                ".".repeat(len.saturating_sub(DOUBLE_PANIC.len()))
            );
        }
        Fault::AnnounceThenSpin => {
            println!("spinning");
            spin()
        }
        Fault::Spin => spin(),
        Fault::Allocate(bytes) => {
            let memory = vec![0u8; bytes as usize];
            black_box(&memory);
            u32::MAX
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

/// A process handle, closed when dropped.
struct Process(HANDLE);

impl Process {
    /// Opens process `pid` for `access`; panics if it cannot (it has gone, say).
    fn open(pid: u32, access: u32) -> Process {
        // SAFETY: opens a process by id; the handle is owned by the value.
        let handle = unsafe { OpenProcess(access, 0, pid) };
        assert!(!handle.is_null(), "opening process {pid}");
        Process(handle)
    }

    /// Whether it ends within `time`.
    fn ends_within(&self, time: Duration) -> bool {
        let millis = u32::try_from(time.as_millis()).unwrap_or(u32::MAX - 1);
        // SAFETY: a wait on a handle the value owns.
        unsafe { WaitForSingleObject(self.0, millis) == WAIT_OBJECT_0 }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: a handle the value owns.
        unsafe { CloseHandle(self.0) };
    }
}

/// Terminates `pid` from outside, as a task manager does, with exit code `code`.
fn terminate(pid: u32, code: u32) {
    let process = Process::open(pid, PROCESS_TERMINATE);
    // SAFETY: on the handle just opened.
    let ended = unsafe { TerminateProcess(process.0, code) };
    assert_ne!(ended, 0, "TerminateProcess({pid})");
}

// ---- The program this binary plays when re-executed -------------------------------------------

fn play(role: &str) -> ! {
    match role {
        // Starts two workers and prints their pids; then has them run tasks that announce
        // themselves on stdout and spin, never reading their channel (so that only their Job
        // Objects can end them, not the end of their pipes), and waits to be terminated.
        "hold-workers" => {
            let pool = child_pool(2, 2).build().expect("a pool");
            // Two tasks submitted together go to the two idle workers, one each.
            let tasks = [
                pool.run_with::<u32, _>((), named("pid")),
                pool.run_with::<u32, _>((), named("pid")),
            ];
            let pids = tasks.map(|task| finish(task).expect("a pid"));
            assert_ne!(pids[0], pids[1], "the tasks ran on the pool's two workers");
            println!("{} {}", pids[0], pids[1]);
            let _spinning =
                [(); 2].map(|()| pool.run_with::<u32, _>(Fault::AnnounceThenSpin, named("fault")));
            loop {
                thread::park();
            }
        }
        other => {
            eprintln!("unknown {ROLE}: {other}");
            std::process::exit(100);
        }
    }
}

// ---- A dying worker fails only its task --------------------------------------------------------

/// Runs `fault` on one of two workers while the other holds a task, which must not notice
/// (`kill_it` terminates the fault's worker from outside with that exit code); returns the
/// fault's error after checking that the dead worker is gone and replaced.
fn fails_only_its_task(fault: Fault, kill_it: Option<u32>) -> Error {
    let pool = child_pool(2, 2).build().expect("a pool");
    let (bystander, bystander_port, bystander_pid) =
        start_fault(&pool, Fault::WaitForMessage, RunOptions::new());
    let (task, _port, pid) = start_fault(&pool, fault, RunOptions::new());
    assert_ne!(pid, bystander_pid, "the two tasks run on different workers");
    if let Some(code) = kill_it {
        let listed = pool.workers().iter().any(|info| info.pid == Some(pid));
        assert!(listed, "pool.workers() lists the busy worker's pid {pid}");
        terminate(pid, code);
    }
    let error = finish(task).expect_err("the task fails");
    assert!(gone(pid), "the dead child {pid} is gone");

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

fn exited(code: i32) -> Error {
    Error::WorkerExited {
        code: Some(code),
        signal: None,
        message: None,
    }
}

/// An access violation is a crash: the exception's code is the exit code, and says so.
fn an_access_violation_fails_only_its_task() {
    let error = fails_only_its_task(Fault::Crash, None);
    assert_eq!(error, exited(ACCESS_VIOLATION));
    assert_eq!(
        error.to_string(),
        "the worker process exited with code 0xC0000005 (an access violation)"
    );
}

fn an_exit_fails_only_its_task() {
    assert_eq!(fails_only_its_task(Fault::Exit(3), None), exited(3));
}

fn an_abort_fails_only_its_task() {
    assert_eq!(fails_only_its_task(Fault::Abort, None), exited(FAST_FAIL));
}

fn a_worker_terminated_from_outside_fails_only_its_task() {
    assert_eq!(
        fails_only_its_task(Fault::WaitForMessage, Some(9)),
        exited(9)
    );
}

fn a_double_panic_aborts_the_child_with_the_panic_message() {
    let pool = child_pool(1, 1).build().expect("a pool");
    let (task, _port, pid) = start_fault(&pool, Fault::DoublePanic, RunOptions::new());
    match finish(task) {
        Err(Error::WorkerExited {
            code: Some(FAST_FAIL),
            signal: None,
            message: Some(message),
        }) => assert!(
            message.starts_with(DOUBLE_PANIC),
            "the error carries the panic message first, got {message:?}"
        ),
        other => panic!("expected WorkerExited by abort with a message, got {other:?}"),
    }
    assert!(gone(pid));
    assert_ne!(pid_of(&pool), pid, "the next task runs on a new worker");
    destroy(pool);
}

/// The threads of this process named `name`, suspended until the value is dropped.
struct Suspended(Vec<HANDLE>);

impl Suspended {
    fn threads_named(name: &str) -> Suspended {
        let ids = thread_ids_named(name);
        assert!(!ids.is_empty(), "no thread named {name}");
        Suspended(
            ids.into_iter()
                .map(|id| {
                    // SAFETY: opens a thread of this process; the handle is owned by the value.
                    let thread = unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, id) };
                    assert!(!thread.is_null(), "opening thread {id}");
                    // SAFETY: on the handle just opened.
                    assert_ne!(
                        unsafe { SuspendThread(thread) },
                        u32::MAX,
                        "suspending {id}"
                    );
                    thread
                })
                .collect(),
        )
    }
}

impl Drop for Suspended {
    fn drop(&mut self) {
        for &thread in &self.0 {
            // SAFETY: on handles the value owns, of threads it suspended.
            unsafe {
                ResumeThread(thread);
                CloseHandle(thread);
            }
        }
    }
}

/// A worker's last words (here the panic message of a child that then aborts, too long for
/// the ring: on the pipe) are read however late the pool's side reads its pipe: the pump thread
/// that reads it held still while the child dies, and longer. The task's error carries them.
fn a_dying_worker_s_last_words_are_read_however_late_its_pipe_is_read() {
    const LEN: usize = 16 << 10;
    // (Its stderr would show the long message twice.)
    let pool = child_pool(1, 1)
        .stderr(ChildOutput::Null)
        .build()
        .expect("a pool");
    let (task, port, pid) = start_fault(&pool, Fault::LastWords(LEN), RunOptions::new());
    let process = Process::open(pid, PROCESS_SYNCHRONIZE);
    let task = {
        // The pool's one reading pump (the child waits for the message: the pump waits in a
        // read of the empty pipe). The message goes out through another thread.
        let _held = Suspended::threads_named("tinypool-pipe-in");
        port.send(1).expect("the task listens");
        assert!(process.ends_within(BOUND), "the child aborts");
        // While its last words wait in the pipe, the task must not be failed without them
        // (the pump stays held for longer than any wait of the pool's).
        match task.wait_timeout(Duration::from_millis(500)) {
            Ok(outcome) => panic!("the task resolved before its last words were read: {outcome:?}"),
            Err(task) => task,
        }
    };
    match finish(task) {
        Err(Error::WorkerExited {
            code: Some(FAST_FAIL),
            signal: None,
            message: Some(message),
        }) => assert!(
            message.starts_with(DOUBLE_PANIC) && message.len() >= LEN,
            "the error carries the whole panic message, got {} bytes",
            message.len()
        ),
        other => panic!("expected WorkerExited by abort with its message, got {other:?}"),
    }
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
    let process = Process::open(pid, PROCESS_SYNCHRONIZE);
    controller.abort();
    assert_eq!(finish(task), Err(Error::Aborted { reason: None }));
    assert!(
        process.ends_within(BOUND),
        "the aborted child is terminated"
    );
    assert_ne!(pid_of(&pool), pid, "the next task runs on a new worker");
    destroy(pool);
}

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
    terminate(pid, 9);
    let error = reports
        .recv_timeout(BOUND)
        .expect("on_error hears of the idle worker's death");
    assert_eq!(error, exited(9));
    // The replacement has no event of its own: it starts on its own thread.
    eventually("a new worker replaces the dead one", || {
        let workers = pool.workers();
        workers.len() == 1 && workers[0].pid.is_some_and(|new| new != pid)
    });
    let new = pool.workers()[0].pid;
    assert_eq!(Some(pid_of(&pool)), new, "the replacement serves");
    destroy(pool);
    assert!(reports.try_recv().is_err(), "nothing else was reported");
}

// ---- Resource limits ----------------------------------------------------------------------------

fn the_memory_limit_fails_the_task_with_resource_limit() {
    if under_wine() {
        // Wine keeps a Job Object's limit flags but enforces neither limit: the allocation
        // succeeds, the loop runs on. On Windows this test runs; under Wine, nothing can.
        println!("    (skipped under Wine, which does not enforce a job's memory limit)");
        return;
    }
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
    if under_wine() {
        // Wine keeps a Job Object's limit flags but enforces neither limit: the allocation
        // succeeds, the loop runs on. On Windows this test runs; under Wine, nothing can.
        println!("    (skipped under Wine, which does not enforce a job's CPU time limit)");
        return;
    }
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

// ---- A terminated parent ------------------------------------------------------------------------

/// A parent program terminated from outside (no destructor, no teardown runs in it) leaves
/// no worker behind: closing its handles closes its workers' Job Objects, which kill them.
fn a_terminated_parent_leaves_no_worker_process() {
    let mut parent = Command::new(std::env::current_exe().expect("this executable"))
        .env(ROLE, "hold-workers")
        .arg(NO_TESTS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning the parent program");
    let stdout = parent.stdout.take().expect("its stdout");
    // Its first line, then two lines of its workers, once they spin.
    let (said, lines) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines().take(3) {
            let _ = said.send(line.unwrap_or_default());
        }
    });
    let line = lines.recv_timeout(BOUND);
    // Opened while the parent holds them, so that the pids are theirs.
    let workers: Vec<(u32, Process)> = line
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(|pid| pid.parse().expect("a pid"))
        .map(|pid| (pid, Process::open(pid, PROCESS_SYNCHRONIZE)))
        .collect();
    let spinning: Vec<String> = (0..2)
        .filter_map(|_| lines.recv_timeout(BOUND).ok())
        .collect();
    parent.kill().expect("terminating the parent");
    let status = parent.wait().expect("waiting for the parent");
    let line = line.expect("the parent prints its workers' pids");
    assert_eq!(
        status.code(),
        Some(1),
        "TerminateProcess's code, as Child::kill gives it"
    );
    assert_eq!(workers.len(), 2, "two workers: {line:?}");
    assert_eq!(spinning, ["spinning", "spinning"], "both workers were busy");

    let survivors: Vec<u32> = workers
        .iter()
        .filter(|(_, process)| !process.ends_within(Duration::from_secs(10)))
        .map(|&(pid, _)| pid)
        .collect();
    // The parent's pid is not reused while `parent` holds its handle. Its other children end
    // as its job closes, which the system does on its own time (under Wine, by wineserver):
    // they are given the same bound as the workers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut orphans = children_of(parent.id());
    while !orphans.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
        orphans = children_of(parent.id());
    }
    for &pid in survivors.iter().chain(&orphans) {
        terminate(pid, 1);
    }
    // Survivors would hold the parent's stdout open: only now is its end sure to come.
    let _ = reader.join();
    assert!(
        survivors.is_empty(),
        "workers {survivors:?} outlived their terminated parent"
    );
    assert!(
        orphans.is_empty(),
        "the parent's children {orphans:?} still run"
    );
}

pub fn main() {
    worker::serve_if_worker(exports());
    if let Some(role) = std::env::var_os(ROLE) {
        play(&role.to_string_lossy());
    }
    crate::common::run_tests(&[
        (
            "an_access_violation_fails_only_its_task",
            an_access_violation_fails_only_its_task,
        ),
        ("an_exit_fails_only_its_task", an_exit_fails_only_its_task),
        ("an_abort_fails_only_its_task", an_abort_fails_only_its_task),
        (
            "a_worker_terminated_from_outside_fails_only_its_task",
            a_worker_terminated_from_outside_fails_only_its_task,
        ),
        (
            "a_double_panic_aborts_the_child_with_the_panic_message",
            a_double_panic_aborts_the_child_with_the_panic_message,
        ),
        (
            "a_dying_worker_s_last_words_are_read_however_late_its_pipe_is_read",
            a_dying_worker_s_last_words_are_read_however_late_its_pipe_is_read,
        ),
        (
            "an_aborted_infinite_loop_fails_only_its_task",
            an_aborted_infinite_loop_fails_only_its_task,
        ),
        (
            "a_worker_that_dies_while_idle_is_reported_and_replaced",
            a_worker_that_dies_while_idle_is_reported_and_replaced,
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
            "a_terminated_parent_leaves_no_worker_process",
            a_terminated_parent_leaves_no_worker_process,
        ),
    ]);
}
