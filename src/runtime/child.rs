//! The child-process runtime, child side: what
//! [`worker::serve_if_worker`] runs in a worker process.
//!
//! The main thread reads the channel itself and runs the exported functions: one thread, no
//! hand-off per task. A task with a channel needs its messages delivered while its function
//! runs, so for such a task the main thread hands the reading to a reader thread, which feeds
//! the task's port and reads on until the next task, which it hands back. End of
//! stream ends the process: the pool is gone (a parent that dies mid-task is also caught by
//! `PR_SET_PDEATHSIG` on Linux).

use std::any::{type_name, Any};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::process;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::{channel, Port};
use crate::codec::Serialization;
use crate::exports::{panic_message, Exports};
use crate::panics;
use crate::protocol::{
    Done, Hello, Init, Limits, ToChild, ToPool, DEFAULT_MAX_MESSAGE_SIZE, LIMITS_ENV, PARENT_ENV,
    RINGS_FD, VERSION, WORKER_ENV,
};
use crate::sync::AtomicBool;
use crate::transport::{Direction, Reader, Region, Writer};
use crate::wait::{deadline_after, lock, Doorbell};
use crate::worker::{self, Context, Data, TaskPort};
use crate::{Error, TypeRole};

/// The child's writing end, shared by the main thread (results), the functions' threads
/// (channel messages) and the panic hook.
type Out = Arc<Mutex<Writer>>;
/// Decodes a channel message and hands it to the task's port.
type Deliver = Box<dyn Fn(&[u8]) + Send>;

/// Serves tasks until the pool says stop (exit 0) or goes away; exits 2 with a message on
/// stderr when this process was not started by a pool.
pub(crate) fn serve(exports: Exports, fd: OsString) -> ! {
    // Before any thread exists, as the caller's removal of the marker.
    let parent = std::env::var_os(PARENT_ENV);
    let limits = Limits::from_env(std::env::var_os(LIMITS_ENV).as_deref());
    std::env::remove_var(PARENT_ENV);
    std::env::remove_var(LIMITS_ENV);
    if let Some(parent) = parent {
        tie_to_parent(&parent);
    }
    match run(exports, &fd, &limits) {
        Ok(()) => process::exit(0),
        Err(message) => {
            eprintln!("tinypool worker: {message}");
            process::exit(2)
        }
    }
}

/// [`serve`] from [`test_workers!`](crate::test_workers)'s static constructor, before std's
/// runtime has started `main`. Of what that start-up does, serving needs one thing: `SIGPIPE`
/// ignored, so that a write to a closed pipe or socket is an error (`EPIPE`), as in any Rust
/// program and in a worker served from `main`, not a signal that ends the worker. (The rest,
/// a stack-overflow handler and the main thread's name, it does without; the pool reset
/// `SIGPIPE` to its default when it spawned the child, as `Command` does.)
pub(crate) fn serve_before_main(exports: fn() -> Exports, fd: OsString) -> ! {
    // SAFETY: sets a signal disposition, before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // A panic must not unwind out of the constructor (an `extern "C"` function, so that would
    // abort): it was printed by the panic hook, and the worker exits as a panicking `main`
    // would.
    match std::panic::catch_unwind(exports) {
        Ok(exports) => serve(exports, fd),
        Err(_) => process::exit(101),
    }
}

/// What the main thread is handed.
enum Command {
    Run(Task),
    Stop,
}

/// A task, as `RUN` brought it.
struct Task {
    task: u64,
    name: String,
    arg_type: String,
    result_type: String,
    arg: Vec<u8>,
    bridge: Option<Arc<Bridge>>,
}

fn run(exports: Exports, fd: &OsString, limits: &Limits) -> Result<(), String> {
    let fd: i32 = fd
        .to_str()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| format!("{WORKER_ENV}={fd:?} is not a file descriptor"))?;
    // A worker keeps stdin, stdout, stderr and its channel; whatever else the pool's process
    // left open without close-on-exec (a listening socket, say) is not the worker's to hold.
    close_inherited(&[fd, RINGS_FD]);
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
    let writer: Out = Arc::new(Mutex::new(Writer::waiting(
        stream.try_clone().map_err(|e| e.to_string())?,
    )));
    let hello = ToPool::Hello(Hello {
        version: VERSION,
        pid: process::id(),
    });
    lock(&writer)
        .send(&hello, DEFAULT_MAX_MESSAGE_SIZE)
        .map_err(|e| e.to_string())?;

    // Bounded: a process started with the marker by mistake, its fd 3 some other program's
    // socket, must not wait forever for an answer that never comes.
    let mut reader = Reader::from_pool(stream);
    reader.set_deadline(Some(deadline_after(limits.startup)));
    let frame = reader.read_frame_alone(limits.max).map_err(|e| {
        if reader.late() {
            format!(
                "the pool did not answer the handshake within {:?}: worker processes are \
                 started by a tinypool Pool, not by hand",
                limits.startup
            )
        } else {
            e.to_string()
        }
    })?;
    reader.set_deadline(None);
    let frame = frame.ok_or("the pool did not answer the handshake")?;
    let init = Init::expect(&frame).map_err(|e| e.to_string())?;
    limit_resources(&init)?;
    if init.rings {
        // The pool writes to the rings from now on: without them this worker cannot serve.
        let region = Region::map(RINGS_FD).ok_or("cannot map the rings shared with the pool")?;
        // SAFETY: fd 4 was handed to this process for the region, which stays mapped without it.
        unsafe { libc::close(RINGS_FD) };
        reader.attach(region.reader(Direction::ToChild));
        lock(&writer).attach(region.writer(Direction::ToPool));
    }
    worker::set_context(Some(Context {
        id: init.worker_id,
        data: init.worker_data.map(|(type_name, bytes)| Data::Encoded {
            type_name: type_name.to_owned(),
            bytes: bytes.to_vec(),
            codec: init.codec,
        }),
        aborted: Arc::new(AtomicBool::new(false)),
        task: TaskPort::None,
    }));
    let max = init.max_message_size;
    install_panic_hook(writer.clone(), max);

    let inbound = Arc::new(Inbound {
        reader: Mutex::new(reader),
        writer: writer.clone(),
        current: Mutex::default(),
        codec: init.codec,
        max,
    });
    let mailbox = Arc::new(Mailbox::default());
    // Started for the first task with a channel: most workers never need it.
    let mut reader_bell: Option<Arc<Doorbell>> = None;
    mailbox.bell.bind_current_thread();
    // Who reads the channel: this thread, or (after a task with a channel) the reader thread,
    // which hands the next command over through the mailbox.
    let mut main_reads = true;
    loop {
        let command = if main_reads {
            inbound.next_command()
        } else {
            main_reads = true;
            mailbox.take()
        };
        match command {
            Command::Run(Task {
                task,
                name,
                arg_type,
                result_type,
                arg,
                bridge,
            }) => {
                if let Some(bridge) = &bridge {
                    *lock(&inbound.current) = Some(bridge.clone());
                    worker::set_task_port(TaskPort::Remote(bridge.clone()));
                    main_reads = false;
                    let bell = match &reader_bell {
                        Some(bell) => bell,
                        None => reader_bell.insert(start_reader(&inbound, &mailbox)?),
                    };
                    bell.ring();
                }
                let result = match exports.get(&name) {
                    Some(export) => {
                        export.call_encoded(&name, init.codec, &arg, &arg_type, &result_type)
                    }
                    None => Err(Error::NoSuchFunction { name }),
                };
                if let Some(bridge) = bridge {
                    worker::set_task_port(TaskPort::None);
                    *lock(&inbound.current) = None;
                    bridge.close();
                }
                send_done(&writer, task, result, &init)?;
            }
            Command::Stop => break,
        }
    }
    if !init.teardown.is_empty() {
        let result = match exports.get(init.teardown) {
            Some(export) => export.call_teardown(init.teardown),
            None => Err(Error::NoSuchFunction {
                name: init.teardown.to_owned(),
            }),
        };
        if let Err(error) = result {
            send_done(&writer, 0, Err(error), &init)?;
        }
    }
    Ok(())
}

/// Starts the thread that reads the channel while a task with a channel runs: it waits for
/// its doorbell, reads up to the next command, which it posts to `mailbox`, and waits again.
fn start_reader(inbound: &Arc<Inbound>, mailbox: &Arc<Mailbox>) -> Result<Arc<Doorbell>, String> {
    let bell = Arc::new(Doorbell::new());
    let (inbound, mailbox, theirs) = (inbound.clone(), mailbox.clone(), bell.clone());
    std::thread::Builder::new()
        .name("tinypool-reader".to_owned())
        .spawn(move || {
            theirs.bind_current_thread();
            loop {
                theirs.wait(None);
                mailbox.post(inbound.next_command());
            }
        })
        .map_err(|e| format!("starting the channel reader: {e}"))?;
    Ok(bell)
}

/// Hands a command from the reader thread to the main thread: a slot and a doorbell, so the
/// main thread spins briefly before it parks, as a pool's workers do.
#[derive(Default)]
struct Mailbox {
    command: Mutex<Option<Command>>,
    bell: Doorbell,
}

impl Mailbox {
    fn post(&self, command: Command) {
        *lock(&self.command) = Some(command);
        self.bell.ring();
    }

    fn take(&self) -> Command {
        loop {
            if let Some(command) = lock(&self.command).take() {
                return command;
            }
            self.bell.wait(None);
        }
    }
}

/// The pool's side of the channel, read by one thread at a time.
struct Inbound {
    reader: Mutex<Reader>,
    writer: Out,
    /// The running task's channel, for its `PORT` frames.
    current: Mutex<Option<Arc<Bridge>>>,
    codec: Serialization,
    max: usize,
}

impl Inbound {
    /// Reads frames until the next task or the order to stop, delivering channel messages on
    /// the way. Ends the process when the pool is gone or talks nonsense.
    fn next_command(&self) -> Command {
        loop {
            // The next task usually follows within microseconds: the read spins before it
            // blocks.
            let frame = lock(&self.reader).read_frame(self.max);
            let frame = match frame {
                // The pool is gone: nobody is left to serve.
                Ok(None) => process::exit(0),
                Ok(Some(frame)) => frame,
                Err(error) => nonsense(error),
            };
            match ToChild::decode(&frame) {
                Ok(ToChild::Run(run)) => {
                    let bridge = (!run.port_type.is_empty()).then(|| {
                        let bridge = Bridge::new(
                            run.task,
                            run.port_type,
                            self.codec,
                            self.max,
                            &self.writer,
                        );
                        Arc::new(bridge)
                    });
                    return Command::Run(Task {
                        task: run.task,
                        name: run.name.to_owned(),
                        arg_type: run.arg_type.to_owned(),
                        result_type: run.result_type.to_owned(),
                        arg: run.arg.to_vec(),
                        bridge,
                    });
                }
                Ok(ToChild::Stop) => return Command::Stop,
                // Late messages of a finished task find no bridge and are dropped.
                Ok(ToChild::Port { task, message }) => {
                    if let Some(bridge) = self.bridge_of(task) {
                        bridge.receive(message);
                    }
                }
                Ok(ToChild::PortClosed { task }) => {
                    if let Some(bridge) = self.bridge_of(task) {
                        bridge.peer_closed();
                    }
                }
                Ok(ToChild::Init(_)) => nonsense(Error::Protocol {
                    message: format!("unexpected frame kind {} from the pool", frame.kind),
                }),
                Err(error) => nonsense(error),
            }
        }
    }

    /// The running task's bridge, if it is task `task`'s.
    fn bridge_of(&self, task: u64) -> Option<Arc<Bridge>> {
        let bridge = lock(&self.current).clone();
        bridge.filter(|bridge| bridge.task() == task)
    }
}

/// The pool talks nonsense: this worker cannot go on.
fn nonsense(error: Error) -> ! {
    eprintln!("tinypool worker: {error}");
    process::exit(2);
}

fn send_done(
    writer: &Out,
    task: u64,
    result: Result<Vec<u8>, Error>,
    init: &Init<'_>,
) -> Result<(), String> {
    let rss = if init.measure_memory {
        resident_memory()
    } else {
        0
    };
    let max = init.max_message_size;
    let (value, error) = match result {
        Ok(value) => (value, None),
        Err(error) => (Vec::new(), Some(error)),
    };
    let outcome = error.map_or(Ok(&value[..]), Err);
    let mut writer = lock(writer);
    match writer.send(&ToPool::Done(Done { task, rss, outcome }), max) {
        // A result too big for a frame becomes the task's error.
        Err(error) if !writer.is_broken() => {
            let outcome = Err(error);
            writer.send(&ToPool::Done(Done { task, rss, outcome }), max)
        }
        sent => sent,
    }
    .map_err(|e| e.to_string())
}

/// Tells the pool the panic message before the default hook prints it, in case the process
/// then dies (`panic = "abort"`), and notes where it happened for the catch that may follow
/// (see `panics.rs`): this is the hook a pool's first build installs, in a worker.
fn install_panic_hook(writer: Out, max: usize) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        panics::note(info);
        let message = panic_message(info.payload());
        if let Ok(mut writer) = writer.try_lock() {
            let _ = writer.send(&ToPool::Panicking { message: &message }, max);
        }
        previous(info);
    }));
}

/// Closes every descriptor above stderr but those in `keep`.
fn close_inherited(keep: &[i32]) {
    let mut open: Vec<i32> = Vec::new();
    #[cfg(target_os = "linux")]
    {
        // close_range(2) (Linux 5.9): one call per gap between the descriptors kept.
        let mut kept: Vec<u32> = keep
            .iter()
            .filter_map(|&fd| u32::try_from(fd).ok())
            .collect();
        kept.sort_unstable();
        let mut from = 3u32;
        let mut closed = true;
        for last in kept.iter().copied().chain([u32::MAX]) {
            if last > from {
                let end = if last == u32::MAX { u32::MAX } else { last - 1 };
                // SAFETY: close_range on descriptors this process owns and does not use:
                // nothing in this process has opened anything yet but what `keep` holds.
                closed &= unsafe { libc::syscall(libc::SYS_close_range, from, end, 0) } == 0;
            }
            from = from.max(last.saturating_add(1));
        }
        if closed {
            return;
        }
    }
    // Elsewhere (or an older kernel): the descriptors the system lists as open.
    for dir in ["/proc/self/fd", "/dev/fd"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            open.extend(
                entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok()),
            );
            break;
        }
    }
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: as above; the listing's own descriptor is already closed (EBADF).
            unsafe { libc::close(fd) };
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
fn tie_to_parent(parent: &OsStr) {
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
fn limit_resources(init: &Init<'_>) -> Result<(), String> {
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
fn resident_memory() -> u64 {
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

#[derive(Default)]
struct BridgeState {
    /// Messages that arrived before the task asked for its port.
    pending: VecDeque<Vec<u8>>,
    deliver: Option<Deliver>,
    /// The task's typed port (a `Port<T>`), once asked for.
    port: Option<Box<dyn Any + Send>>,
    close: Option<Box<dyn Fn() + Send>>,
    /// The task ended.
    closed: bool,
    /// The caller's side closed.
    peer_closed: bool,
}

/// The child's end of a task's channel. The message type is known only when the task asks
/// for its port, so messages wait here as bytes until then.
pub(crate) struct Bridge {
    task: u64,
    port_type: String,
    codec: Serialization,
    max: usize,
    writer: Out,
    state: Mutex<BridgeState>,
}

impl Bridge {
    /// The bridge of task `task`, whose channel carries `port_type`s.
    fn new(task: u64, port_type: &str, codec: Serialization, max: usize, writer: &Out) -> Self {
        Bridge {
            task,
            port_type: port_type.to_owned(),
            codec,
            max,
            writer: writer.clone(),
            state: Mutex::default(),
        }
    }

    /// The task it bridges.
    fn task(&self) -> u64 {
        self.task
    }

    /// The task's port, typed `T`.
    pub(crate) fn port<T>(&self) -> Result<Port<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        if self.port_type != type_name::<T>() {
            return Err(Error::type_mismatch(
                TypeRole::Channel,
                &self.port_type,
                type_name::<T>(),
            ));
        }
        let mut state = lock(&self.state);
        if let Some(port) = state
            .port
            .as_ref()
            .and_then(|port| port.downcast_ref::<Port<T>>())
        {
            return Ok(port.clone());
        }
        let (task_side, pool_side) = channel::<T>();
        let (task, codec, max, writer) = (self.task, self.codec, self.max, self.writer.clone());
        // The pool learns that the task's side closed from the task's result.
        pool_side.forward_to(
            Box::new(move |message: T| {
                let message = codec.encode(&message)?;
                let message = ToPool::Port {
                    task,
                    message: &message,
                };
                lock(&writer).send(&message, max)
            }),
            Box::new(|| {}),
        )?;
        let deliver_side = pool_side.clone();
        let deliver = move |bytes: &[u8]| {
            if let Ok(message) = codec.decode::<T>(bytes) {
                let _ = deliver_side.send(message);
            }
        };
        while let Some(bytes) = state.pending.pop_front() {
            deliver(&bytes);
        }
        if state.closed || state.peer_closed {
            pool_side.close();
        }
        state.deliver = Some(Box::new(deliver));
        state.close = Some(Box::new(move || pool_side.close()));
        state.port = Some(Box::new(task_side.clone()));
        Ok(task_side)
    }

    /// A message of the caller's side, as it crossed.
    fn receive(&self, bytes: &[u8]) {
        let mut state = lock(&self.state);
        match &state.deliver {
            _ if state.closed => {}
            Some(deliver) => deliver(bytes),
            None => state.pending.push_back(bytes.to_vec()),
        }
    }

    /// The caller's side closed: the task drains what came, then gets `Disconnected`.
    fn peer_closed(&self) {
        let mut state = lock(&self.state);
        state.peer_closed = true;
        if let Some(close) = &state.close {
            close();
        }
    }

    /// The task ended.
    fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        state.deliver = None;
        state.port = None;
        if let Some(close) = state.close.take() {
            close();
        }
    }
}
