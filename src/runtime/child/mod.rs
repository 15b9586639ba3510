//! The child-process runtime, child side: what
//! [`worker::serve_if_worker`](crate::worker::serve_if_worker) runs in a worker process.
//!
//! The main thread reads the channel itself and runs the exported functions: one thread, no
//! hand-off per task. A task with a channel needs its messages delivered while its function
//! runs, so for such a task the main thread hands the reading to a reader thread, which feeds
//! the task's port ([`Bridge`]) and reads on until the next task, which it hands back. End of
//! stream ends the process: the pool is gone (a parent that dies mid-task is also caught by
//! `PR_SET_PDEATHSIG` on Linux).

use std::collections::HashMap;
use std::ffi::OsString;
use std::ops::Range;
use std::process;
use std::sync::{Arc, Mutex};

use crate::codec::{self, Serialization};
use crate::exports::{Exports, SerdeFunction};
use crate::panics;
use crate::panics::panic_message;
use crate::protocol::{
    Done, Hello, Init, Limits, Payload, Run, ToChild, ToPool, DEFAULT_MAX_MESSAGE_SIZE, LIMITS_ENV,
    PARENT_ENV, VERSION,
};
use crate::sync::lock;
use crate::sync::AtomicBool;
use crate::transport::{Direction, Reader, Region, Writer};
use crate::wait::{deadline_after, Doorbell};
use crate::worker::context::{self, Context, Data, TaskPort};
use crate::Error;

mod bridge;
mod concurrent;
#[cfg(unix)]
mod hygiene;
#[cfg(windows)]
mod hygiene_windows;
#[cfg(target_os = "linux")]
mod zygote;

pub(crate) use bridge::Bridge;
use concurrent::TaskAbort;
use hygiene::{limit_resources, map_rings, open_channel, resident_memory, tie_to_parent};
#[cfg(windows)]
use hygiene_windows as hygiene;

/// The child's writing end, shared by the main thread (results), the functions' threads
/// (channel messages) and the panic hook.
type Out = Arc<Mutex<Writer>>;

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
    let marker = match hygiene::read_marker(fd) {
        Ok(marker) => marker,
        Err(message) => {
            eprintln!("tinypool worker: {message}");
            process::exit(2)
        }
    };
    // A fork server returns from here only in a worker it forked, its channel on fd 3 and
    // nothing else of the server's open.
    #[cfg(target_os = "linux")]
    let marker = if std::env::var_os(crate::protocol::fork::FORK_ENV).is_some() {
        std::env::remove_var(crate::protocol::fork::FORK_ENV);
        zygote::serve(marker);
        crate::protocol::Marker {
            fd: crate::protocol::CHILD_FD,
            clean: true,
        }
    } else {
        marker
    };
    match run(exports, marker, &limits) {
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
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN)
    };
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

/// A task's result, encoded, or its error.
type Outcome = Result<Vec<u8>, Error>;

/// A task, as `RUN` brought it.
struct Task {
    task: u64,
    run: RunFrame,
    bridge: Option<Arc<Bridge>>,
    /// Where the pool's `ABORT` for it lands (a child with async exports).
    abort: Option<Arc<TaskAbort>>,
}

/// A task's `RUN` frame: its body, which it keeps, and where in it the export's name, the
/// type names and the encoded argument lie, so that none is copied before it is used. A big
/// frame's body is lent where the pool wrote it (`transport/bulk.rs`): the pool writes no
/// other big frame there before the frame is dropped, so it is dropped as soon as the task is
/// done with its argument.
struct RunFrame {
    body: Payload,
    name: Range<usize>,
    arg_type: Range<usize>,
    result_type: Range<usize>,
    arg: Range<usize>,
}

impl RunFrame {
    /// Where `run`'s name, type names and argument lie in `body`, the frame it was decoded
    /// from (and borrows them from).
    fn locate(body: &[u8], run: &Run<'_>) -> [Range<usize>; 4] {
        let at = |part: &[u8]| {
            let start = part.as_ptr().addr() - body.as_ptr().addr();
            start..start + part.len()
        };
        let (name, arg_type) = (run.name.as_bytes(), run.arg_type.as_bytes());
        [name, arg_type, run.result_type.as_bytes(), run.arg].map(at)
    }

    fn new(body: Payload, [name, arg_type, result_type, arg]: [Range<usize>; 4]) -> Self {
        RunFrame {
            body,
            name,
            arg_type,
            result_type,
            arg,
        }
    }

    fn text(&self, range: &Range<usize>) -> &str {
        // SAFETY: `ToChild::decode` checked that these bytes are UTF-8 (they were a `&str`),
        // and the body does not change while it is held.
        unsafe { std::str::from_utf8_unchecked(&self.body[range.clone()]) }
    }

    fn name(&self) -> &str {
        self.text(&self.name)
    }

    fn arg_type(&self) -> &str {
        self.text(&self.arg_type)
    }

    fn result_type(&self) -> &str {
        self.text(&self.result_type)
    }

    fn arg(&self) -> &[u8] {
        &self.body[self.arg.clone()]
    }

    /// Runs the task's export, a plain function, in this thread (`None`: there is no such
    /// export): its encoded result.
    fn call(&self, export: Option<&dyn SerdeFunction>, codec: Serialization) -> Outcome {
        let Some(export) = export else {
            let name = self.name().to_owned();
            return Err(Error::NoSuchFunction { name });
        };
        let (arg_type, result_type) = (self.arg_type(), self.result_type());
        export.call_encoded(self.name(), codec, self.arg(), arg_type, result_type)
    }
}

fn run(exports: Exports, marker: hygiene::ChannelMarker, limits: &Limits) -> Result<(), String> {
    let stream = open_channel(marker)?;
    let writer: Out = Arc::new(Mutex::new(Writer::waiting(
        stream.try_clone().map_err(|e| e.to_string())?,
    )));
    let async_exports = exports.async_names();
    let hello = ToPool::Hello(Hello {
        version: VERSION,
        pid: process::id(),
        async_exports,
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
    let mut rings = None;
    if init.rings {
        // The pool writes to the rings from now on: without them this worker cannot serve.
        let region = map_rings()?;
        reader.attach(region.reader(Direction::ToChild));
        lock(&writer).attach(region.writer(Direction::ToPool));
        // And its big frames to the slots, when there are (Unix: the pool makes none on
        // Windows).
        #[cfg(unix)]
        if init.bulk > 0 {
            let bulk = hygiene::open_bulk(init.bulk)?;
            reader.attach_bulk(bulk.reader(Direction::ToChild));
            lock(&writer).attach_bulk(bulk.writer(Direction::ToPool));
        }
        rings = Some(region);
    }
    context::set_context(Some(Context {
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

    let concurrently = exports.has_async();
    let inbound = Arc::new(Inbound {
        reader: Mutex::new(reader),
        writer: writer.clone(),
        current: Mutex::default(),
        aborts: concurrently.then(Mutex::default),
        rings,
        codec: init.codec,
        max,
    });
    if !init.setup.is_empty() {
        // In this worker's context, before its first task; the pool waits for the answer.
        let outcome = exports.run_setup(init.setup);
        let failed = outcome.is_err();
        let outcome = outcome.map(|()| Vec::new());
        send_done(
            &writer,
            0,
            outcome.map_err(|message| Error::Protocol { message }),
            &init,
        )?;
        if failed {
            // This worker does not start (nor tear down): it waits for the pool to end it.
            while !matches!(inbound.next_command(), Command::Stop) {}
            return Ok(());
        }
    }
    if concurrently {
        concurrent::serve(&exports, &inbound, &writer, &init)?;
    } else {
        serve_in_order(&exports, &inbound, &writer, &init)?;
    }
    if !init.teardown.is_empty() {
        let result = match exports.get_serde(init.teardown) {
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

/// Serves the tasks of a child without async exports, one after another, in order, until
/// `STOP`: this thread reads the channel, but while a task with a channel runs.
fn serve_in_order(
    exports: &Exports,
    inbound: &Arc<Inbound>,
    writer: &Out,
    init: &Init<'_>,
) -> Result<(), String> {
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
                run,
                bridge,
                abort: _,
            }) => {
                if !inbound.claim(task) {
                    // Sent ahead, and taken back: the pool gave it to another worker.
                    inbound.recycle(run.body);
                    continue;
                }
                if let Some(bridge) = &bridge {
                    *lock(&inbound.current) = vec![bridge.clone()];
                    context::set_task_port(TaskPort::Remote(bridge.clone()));
                    main_reads = false;
                    let bell = match &reader_bell {
                        Some(bell) => bell,
                        None => reader_bell.insert(start_reader(inbound, &mailbox)?),
                    };
                    bell.ring();
                }
                let result = run.call(exports.get_serde(run.name()), init.codec);
                // Before the answer: the pool's next big frame may then take the slot.
                inbound.recycle(run.body);
                if let Some(bridge) = bridge {
                    context::set_task_port(TaskPort::None);
                    lock(&inbound.current).clear();
                    bridge.close();
                }
                send_done(writer, task, result, init)?;
            }
            Command::Stop => return Ok(()),
        }
    }
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
    /// The channels of the tasks running, for their `PORT` frames: the one running task's,
    /// or, in a child with async exports, every task's in flight.
    current: Mutex<Vec<Arc<Bridge>>>,
    /// In a child with async exports: each task's abort, by task, until it ends.
    aborts: Option<Mutex<HashMap<u64, Arc<TaskAbort>>>>,
    /// The rings' region, where a task sent ahead is claimed before it runs.
    rings: Option<Arc<Region>>,
    codec: Serialization,
    max: usize,
}

impl Inbound {
    /// Reads frames until the next task or the order to stop, delivering channel messages on
    /// the way. Ends the process when the pool is gone or talks nonsense.
    fn next_command(&self) -> Command {
        // Held throughout: only the thread reading the channel takes it.
        let mut reader = lock(&self.reader);
        loop {
            // The next task usually follows within microseconds: the read spins before it
            // blocks.
            let frame = match reader.read_frame(self.max) {
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
                    // With async exports the next frames may be this task's messages or
                    // abort, read before it starts: they must find it.
                    let abort = self.aborts.as_ref().map(|aborts| {
                        if let Some(bridge) = &bridge {
                            lock(&self.current).push(bridge.clone());
                        }
                        let abort = Arc::new(TaskAbort::default());
                        lock(aborts).insert(run.task, abort.clone());
                        abort
                    });
                    let (task, parts) = (run.task, RunFrame::locate(&frame.body, &run));
                    return Command::Run(Task {
                        task,
                        run: RunFrame::new(frame.body, parts),
                        bridge,
                        abort,
                    });
                }
                Ok(ToChild::Stop) => return Command::Stop,
                // A task that already ended is not found: its `DONE` is on its way.
                Ok(ToChild::Abort { task }) => {
                    let abort =
                        (self.aborts.as_ref()).and_then(|aborts| lock(aborts).remove(&task));
                    if let Some(abort) = abort {
                        abort.abort();
                    }
                }
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
            reader.recycle(frame);
        }
    }

    /// Gives back a task's frame, once done with it, to take a next one from the ring
    /// without an allocation; unless the reader is busy (reading for a task with a channel,
    /// or in a child with async exports): then it is dropped, and the reader allocates.
    fn recycle(&self, body: Payload) {
        match self.reader.try_lock() {
            Ok(mut reader) => reader.recycle_body(body),
            Err(_) => drop(body),
        }
    }

    /// Whether to run `task`: an ordinary task, or one sent ahead that this child claims now
    /// (see `transport/claims.rs`); not one the pool took back.
    fn claim(&self, task: u64) -> bool {
        self.rings.as_ref().is_none_or(|rings| rings.claim(task))
    }

    /// Task `task`'s bridge, if it is running.
    fn bridge_of(&self, task: u64) -> Option<Arc<Bridge>> {
        let current = lock(&self.current);
        current.iter().find(|bridge| bridge.task() == task).cloned()
    }

    /// Task `task` ended (a child with async exports): its channel and its abort are dropped.
    fn forget(&self, task: u64) {
        lock(&self.current).retain(|bridge| bridge.task() != task);
        if let Some(aborts) = &self.aborts {
            lock(aborts).remove(&task);
        }
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
    send_result(
        writer,
        task,
        result,
        init.measure_memory,
        init.max_message_size,
    )
}

/// [`send_done`], with what it needs of `INIT`.
fn send_result(
    writer: &Out,
    task: u64,
    result: Result<Vec<u8>, Error>,
    measure_memory: bool,
    max: usize,
) -> Result<(), String> {
    let rss = if measure_memory { resident_memory() } else { 0 };
    let mut writer = lock(writer);
    let (value, mut error, mut sent) = match result {
        Ok(value) => {
            let outcome = Ok(&value[..]);
            let sent = writer.send(&ToPool::Done(Done { task, rss, outcome }), max);
            // Too big for a frame: the task's error says so.
            let too_big = match &sent {
                Err(error) if !writer.is_broken() => Some(error.clone()),
                _ => None,
            };
            (value, too_big, sent)
        }
        Err(error) => (Vec::new(), Some(error), Ok(())),
    };
    // An error goes whole if it fits; if not (a long panic message, say), it keeps its kind,
    // its texts cut by half until it fits.
    let mut limit = max;
    while let Some(unsent) = error.take() {
        let outcome = Err(unsent.clone());
        sent = writer.send(&ToPool::Done(Done { task, rss, outcome }), max);
        if sent.is_err() && !writer.is_broken() && limit > 0 {
            limit /= 2;
            error = Some(unsent.cut_to(limit));
        }
    }
    drop(writer);
    // The next result is encoded in its memory.
    codec::recycle(value);
    sent.map_err(|e| e.to_string())
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
