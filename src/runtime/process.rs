//! The child-process runtime, pool side: each worker thread starts a child and drives it over a
//! private channel (`transport`), in the frames of [`protocol`](crate::protocol).
//!
//! A child's death (exit, signal, crash) fails only the task it was running, with
//! [`Error::WorkerExited`]; the worker then leaves and the scheduler starts a replacement. An
//! abort or `destroy` while a task runs kills the child: SIGTERM, then SIGKILL after
//! `terminate_timeout`. Children die with their parent: `PR_SET_PDEATHSIG` on Linux, and
//! everywhere they exit when their socket reaches end of stream.

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::spawn::{self, limit_hit, signal_of, ChildProcess, Started};
use super::{Flow, Launcher, RunningWorker, WorkerOptions, WorkerStart};
use crate::options::ProcessOptions;
use crate::protocol::{Done, Frame, Limits, ToChild, ToPool, LIMITS_ENV, PARENT_ENV};
use crate::stats::Tally;
// The flag the scheduler sets: loom's under `--cfg loom` (this runtime is not modelled).
use crate::sync::lock;
use crate::sync::{AtomicBool, Ordering};
use crate::task::Job;
use crate::transport::{Ahead, Backlog, Bulk, Naps, Reader, Region, Writer, POLL_INTERVAL};
use crate::wait::{deadline_after, spin_until, Doorbell};
use crate::Error;

mod ahead;
mod concurrent;
mod handshake;
mod outbox;
mod run;
mod setup;

use concurrent::Flights;
use outbox::Outbox;

/// How often an idle driver checks that its child is alive.
const CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// The most frames read of a child found dead: its last words.
const LAST_WORDS: usize = 16;
/// How many frames of a task a driver reads between two looks at its child's exit.
const LOOK_EVERY: u32 = 64;
/// How long frames may keep coming from a child found exited (at least; `terminate_timeout`
/// if longer) before they are taken for a forked process's: what a dead child left in the
/// rings and the socket is read in microseconds.
const LAST_WORDS_WITHIN: Duration = Duration::from_secs(1);

pub(crate) struct Processes {
    options: Arc<ProcessOptions>,
    /// The pool's fork server, when it forks its workers.
    forks: spawn::Forks,
}

impl Processes {
    pub(crate) fn new(options: Arc<ProcessOptions>) -> Self {
        let forks = spawn::Forks::new(options.fork_server);
        Processes { options, forks }
    }
}

impl Launcher for Processes {
    fn start(
        &self,
        pool: &Arc<WorkerOptions>,
        me: &WorkerStart,
    ) -> Result<Box<dyn RunningWorker>, Error> {
        let options = &self.options;
        let failed = |what: String| Error::WorkerStartFailed {
            message: format!("{what} (worker executable `{}`)", options.program.display()),
        };
        let mut env = options.env.clone();
        env.push((PARENT_ENV.into(), std::process::id().to_string().into()));
        let limits = Limits::to_env(options.max_message_size, options.startup_timeout);
        env.push((LIMITS_ENV.into(), limits.into()));
        let Started {
            child,
            channel: ours,
            region,
            bulk,
        } = spawn::start(options, env, &self.forks).map_err(failed)?;
        let watch = child.watch();
        let reader = Reader::from_child(
            ours.try_clone().map_err(|e| failed(e.to_string()))?,
            me.retired.clone(),
            watch.clone(),
        );
        let writer = Writer::ahead(ours, watch);
        let mut worker = ChildWorker {
            pool: pool.clone(),
            options: options.clone(),
            retired: me.retired.clone(),
            tally: me.tally.clone(),
            child,
            reader,
            backlog: writer.backlog_flag(),
            writer: Arc::new(Mutex::new(Outbox::new(writer))),
            region,
            bulk,
            depth: pool.concurrent_tasks_per_worker,
            in_flight: VecDeque::new(),
            ahead: None,
            took_back: false,
            next_task: 1,
            last_panic: None,
            bell: me.bell.clone(),
            flights: None,
            kill_at: None,
            reads: 0,
            dead_since: None,
        };
        if let Err(refusal) = worker.handshake(me.id) {
            // A child that died in its setup is reaped, to say how it ended.
            let grace = match refusal {
                Refusal::SetupDied(_) => pool.terminate_timeout,
                _ => Duration::ZERO,
            };
            let status = worker.kill_and_reap(grace);
            let ended = describe(status);
            return Err(failed(match refusal {
                // The usual cause: a program given as `filename` that does not serve first
                // (or is no tinypool worker at all). A worker that did serve and failed says
                // why on stderr, with code 2.
                Refusal::Silent => format!(
                    "the child ended without a handshake (it {ended}): the worker program's \
                     `main` must call `tinypool::worker::serve_if_worker` first{}",
                    if status.and_then(|status| status.code()) == Some(0) {
                        ""
                    } else {
                        " (if it does, its stderr may say why it ended)"
                    }
                ),
                Refusal::Failed(error) => format!("{error}; the child {ended}"),
                Refusal::Setup(message) => message,
                Refusal::SetupDied(name) => worker.setup_died(&name, &ended),
            }));
        }
        Ok(Box::new(worker))
    }

    fn stop_grace(&self) -> Duration {
        // A child killed at the deadline is reaped right after; the bound only matters on a
        // machine so loaded that the kill itself takes long (seen past 1.5 s under Wine).
        Duration::from_secs(3)
    }

    fn spares_pay(&self, _: &WorkerOptions) -> bool {
        true // A spawn, a program's start and a handshake: a millisecond, mostly CPU.
    }

    fn release(&self) {
        self.forks.release();
    }
}

/// Describes how a child ended, for start-up errors.
fn describe(status: Option<ExitStatus>) -> String {
    match status {
        Some(status) => match (status.code(), signal_of(&status)) {
            (Some(code), _) => format!("exited with code {code}"),
            (_, Some(signal)) => format!("was killed by signal {signal}"),
            _ => "ended".to_owned(),
        },
        None => "did not exit".to_owned(),
    }
}

/// Why a child was not taken on as a worker.
enum Refusal {
    /// It exited, or closed its channel, before saying a word of the handshake.
    Silent,
    /// Anything else, as the error says.
    Failed(Error),
    /// Its setup export failed, as the message says.
    Setup(String),
    /// It died in its setup export, named here.
    SetupDied(String),
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        Refusal::Failed(error)
    }
}

/// What waiting for a frame came to, short of an error.
enum Next {
    Frame(Frame),
    /// The deadline passed first.
    Late,
    /// The child exited, or closed its channel, after what it said was read: which of the two.
    Ended(&'static str),
}

/// One child, driven by its worker thread.
struct ChildWorker {
    pool: Arc<WorkerOptions>,
    options: Arc<ProcessOptions>,
    retired: Arc<AtomicBool>,
    /// Where the tasks it fails itself are counted (see [`WorkerStart::tally`]).
    tally: Arc<Tally>,
    child: ChildProcess,
    reader: Reader,
    writer: Arc<Mutex<Outbox>>,
    /// Whether frames wait in the writer, or writing failed ([`Writer::backlog_flag`]).
    /// (`std`'s atomic even under loom, which does not model this runtime: it is the writer's.)
    backlog: Arc<std::sync::atomic::AtomicBool>,
    /// The rings shared with the child (Linux), in use once the handshake is done, and the
    /// slots for big frames.
    region: Option<Arc<Region>>,
    bulk: Option<Arc<Bulk>>,
    /// How many tasks the child may hold: `concurrent_tasks_per_worker`.
    depth: usize,
    /// The tasks started and not finished, oldest first: the id of each one's `RUN` frame, or
    /// `None` if nothing was sent (it resolved on its way, or could not be encoded).
    in_flight: VecDeque<Option<u64>>,
    /// The task sent past the depth, until it is the oldest (see `process/ahead.rs`).
    ahead: Option<Ahead>,
    /// Whether it took a task back while the oldest runs: it sends none ahead until that ends.
    took_back: bool,
    next_task: u64,
    /// What the child's panic hook said during the task (see [`note_panic`]): its last words
    /// if it then dies.
    last_panic: Option<String>,
    /// The worker's doorbell: rung when the scheduler gives it more work, or when one of its
    /// async tasks resolved from outside.
    bell: Arc<Doorbell>,
    /// The tasks in flight of a child with async exports, which it runs concurrently; `None`
    /// for a child without (see `process/concurrent.rs`).
    flights: Option<Flights>,
    /// When a retired worker's child is killed: set at the first look after its retirement
    /// (which sends SIGTERM), kept across reads, so that a child that keeps sending frames
    /// still dies at `terminate_timeout`.
    kill_at: Option<Instant>,
    /// Frames read by [`next_frame_by`](Self::next_frame_by), and when the child was found
    /// exited with frames still coming (see [`talks_past_death`](Self::talks_past_death)).
    reads: u32,
    dead_since: Option<Instant>,
}

/// Why waiting for a frame stopped without one.
enum Broken {
    /// The child is gone (or its stream broke); it has been reaped.
    Died(Error),
    /// The worker was retired (abort, destroy) and the child killed.
    Killed,
}

impl ChildWorker {
    fn max(&self) -> usize {
        self.options.max_message_size
    }

    /// Sends `message` whole, or gives up at `deadline`.
    fn send(&self, message: &ToChild<'_>, deadline: Instant) -> Result<(), Error> {
        let writer = &mut lock(&self.writer).writer;
        writer.send(message, self.max())?;
        writer.finish(deadline)
    }

    /// Reads one frame, waiting at most until `deadline`: `Ok(None)` on timeout, an error
    /// if the stream ended or broke.
    fn read_before(&mut self, deadline: Instant) -> Result<Option<Frame>, Error> {
        match self.next_before(deadline)? {
            Next::Frame(frame) => Ok(Some(frame)),
            Next::Late => Ok(None),
            Next::Ended(what) => Err(Error::Protocol {
                message: what.to_owned(),
            }),
        }
    }

    /// [`read_before`](Self::read_before), telling an end of the child apart from errors.
    fn next_before(&mut self, deadline: Instant) -> Result<Next, Error> {
        // A frame that stops half-way gives up at the deadline too.
        self.reader.set_deadline(Some(deadline));
        loop {
            if !self.reader.ready() {
                let left = deadline.saturating_duration_since(Instant::now());
                let readable = self.reader.sleep(false, left.min(POLL_INTERVAL)).0;
                // Its end, with nothing left to read: said now, not after the read's spin
                // (a stopping child's exit, which the spin would only slow down).
                if readable && !self.reader.ready() && self.reader.peer_closed() {
                    return Ok(Next::Ended("the child closed its channel"));
                }
                if !readable {
                    // What it said before it died is read first.
                    if self.reader.peer_exited() && !self.reader.ready() {
                        return Ok(Next::Ended("the child exited"));
                    }
                    if left.is_zero() {
                        return Ok(Next::Late);
                    }
                    continue;
                }
            }
            return Ok(match self.reader.read_frame(self.max())? {
                Some(frame) => Next::Frame(frame),
                None => Next::Ended("the child closed its channel"),
            });
        }
    }

    /// Waits for the next frame of a running task, killing the child if the worker gets
    /// retired meanwhile.
    fn next_frame(&mut self) -> Result<Frame, Broken> {
        match self.next_frame_by(None) {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => unreachable!("no frame is late without a deadline"),
            Err(broken) => Err(broken),
        }
    }

    /// [`next_frame`](Self::next_frame), giving up at `until` (`Ok(None)`; `None`: never), or
    /// when the doorbell rings while the reader listens for it ([`Reader::listen`]).
    fn next_frame_by(&mut self, until: Option<Instant>) -> Result<Option<Frame>, Broken> {
        self.reader.set_deadline(None);
        self.spin_for_frame();
        loop {
            let Some(backlog) = self.flush_pending() else {
                // The child stopped reading for good: it is dead or dying.
                return Err(self.died());
            };
            if self.retired.load(Ordering::Acquire) {
                let deadline = *self.kill_at.get_or_insert_with(|| {
                    self.child.terminate();
                    deadline_after(self.pool.terminate_timeout)
                });
                if Instant::now() >= deadline {
                    self.kill_and_reap(Duration::ZERO);
                    return Err(Broken::Killed);
                }
            }
            let nap = match until {
                Some(until) => backlog
                    .nap()
                    .min(until.saturating_duration_since(Instant::now())),
                None => backlog.nap(),
            };
            // A child that exited is read to the end of what it said, then found dead: its
            // socket may never end (a process it forked holds a copy).
            if self.reader.ready()
                || self.reader.sleep(backlog.socket, nap).0
                || self.reader.peer_exited()
            {
                match self.reader.read_frame(self.max()) {
                    Ok(Some(_)) if self.talks_past_death() => return Err(self.died()),
                    Ok(Some(frame)) => return Ok(Some(frame)),
                    Ok(None) => return Err(self.died()),
                    Err(error) => {
                        // The stream was cut (reset, or ended inside a frame): the child is
                        // dying, maybe not yet reapable. Report how it died, as at a clean end.
                        // (Exited, maybe not yet reaped: a forked worker's status comes later,
                        // from its fork server.)
                        let exited = self.reader.peer_exited()
                            || self.child.try_wait().ok().flatten().is_some();
                        if exited || self.reader.peer_closed() {
                            return Err(self.died());
                        }
                        // A malformed frame from a live child: it cannot be trusted any more.
                        self.kill_and_reap(Duration::ZERO);
                        return Err(Broken::Died(error));
                    }
                }
            }
            if self.reader.woken() || until.is_some_and(|until| Instant::now() >= until) {
                return Ok(None);
            }
        }
    }

    /// Whether a frame comes within a spin: most results come back within microseconds, and
    /// a sleep in `poll` costs a wake-up of tens of microseconds.
    fn spin_for_frame(&mut self) -> bool {
        let (reader, writer) = (&mut self.reader, &self.writer);
        reader.ready()
            || spin_until(|| {
                lock(writer).writer.flush();
                reader.ready()
            })
    }

    /// Whether the child, found exited, went on sending frames for `terminate_timeout` (at
    /// least [`LAST_WORDS_WITHIN`], so that what it said before it died, its result among it,
    /// is read first): a process it forked holds its channel and writes without end, and its
    /// task must fail as at any death. Looked at every [`LOOK_EVERY`] frames read (it costs a
    /// system call).
    fn talks_past_death(&mut self) -> bool {
        self.reads = self.reads.wrapping_add(1);
        if !self.reads.is_multiple_of(LOOK_EVERY) || !self.reader.peer_exited() {
            return false;
        }
        let since = *self.dead_since.get_or_insert_with(Instant::now);
        since.elapsed() >= self.pool.terminate_timeout.max(LAST_WORDS_WITHIN)
    }

    /// Sends more of the frames sent ahead, if some wait; returns what those still wait for,
    /// or `None` once writing failed (the child is dead or dying).
    fn flush_pending(&self) -> Option<Backlog> {
        if !self.backlog.load(Ordering::Acquire) {
            // Nothing waits (most of the time): no lock to take.
            return Some(Backlog::EMPTY);
        }
        lock(&self.writer).writer.flush()
    }

    /// The child closed its end: reap it and say how it died.
    fn died(&mut self) -> Broken {
        if self.retired.load(Ordering::Acquire) {
            self.kill_and_reap(self.pool.terminate_timeout);
            return Broken::Killed;
        }
        let status = self.kill_and_reap(self.pool.terminate_timeout);
        Broken::Died(self.death_error(status))
    }

    fn death_error(&mut self, status: Option<ExitStatus>) -> Error {
        let (code, signal) = status.map_or((None, None), |s| (s.code(), signal_of(&s)));
        let message = self.last_panic.take();
        if let Some(limit) = limit_hit(&self.child, code, signal, message.is_some(), &self.options)
        {
            return Error::ResourceLimit {
                limit: limit.to_owned(),
            };
        }
        Error::WorkerExited {
            code,
            signal,
            message,
        }
    }

    /// Waits up to `grace` for the child to exit, then kills it; returns how it ended.
    fn kill_and_reap(&mut self, grace: Duration) -> Option<ExitStatus> {
        let deadline = deadline_after(grace);
        let mut naps = Naps::new(Duration::from_millis(5));
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    // The child's exit closes the socket, which wakes this poll; what it still
                    // says is dropped (a silent child must not block this read). A closed
                    // socket stays readable: then wait in growing naps until the exit can be
                    // reaped, rather than spin on it.
                    if self.reader.drain(Duration::from_millis(5)) {
                        naps.sleep(Duration::MAX);
                    }
                }
                Ok(None) => {
                    self.child.kill();
                    return self.child.wait().ok();
                }
                Err(_) => return None,
            }
        }
    }

    /// Waits for the result of the oldest task started, `job`.
    fn finish_one(&mut self, job: &Arc<dyn Job>) -> Result<Flow, Broken> {
        debug_assert!(
            !self.in_flight.is_empty(),
            "the scheduler starts a job first"
        );
        if self.takes_back() {
            return Ok(Flow::TookBack);
        }
        // Left at the front until it ends: a task taken back meanwhile is the last.
        let Some(task) = self.in_flight.front().copied().flatten() else {
            self.in_flight.pop_front();
            self.oldest_ended();
            return Ok(Flow::Continue); // Nothing was sent: it already resolved.
        };
        let codec = self.options.serialization;
        loop {
            let frame = self.next_frame()?;
            let parsed: Result<Option<Flow>, Error> = match ToPool::decode(&frame) {
                Ok(ToPool::Done(Done {
                    task: done,
                    rss,
                    outcome,
                })) if done == task => {
                    job.stage_encoded(codec, outcome);
                    let over = self.options.memory_recycle.is_some_and(|limit| rss > limit);
                    Ok(Some(if over { Flow::Leave } else { Flow::Continue }))
                }
                Ok(ToPool::Done(_)) => Err(Error::Protocol {
                    message: "a result for another task".to_owned(),
                }),
                Ok(ToPool::Port { task: of, message }) => {
                    if of == task {
                        if let Some(port) = job.port() {
                            // The caller may have dropped its side: not the task's problem.
                            let _ = port.send_encoded(codec, message);
                        }
                    }
                    Ok(None)
                }
                Ok(ToPool::Panicking { message }) => {
                    note_panic(&mut self.last_panic, message);
                    Ok(None)
                }
                Ok(ToPool::Hello(_)) => Err(Error::Protocol {
                    message: format!("unexpected frame kind {} from the child", frame.kind),
                }),
                Err(error) => Err(error),
            };
            self.reader.recycle(frame);
            match parsed {
                Ok(Some(flow)) => {
                    self.in_flight.pop_front();
                    self.oldest_ended();
                    if job.port().is_some() {
                        // Late messages of the caller are dropped here, not sent to the child.
                        lock(&self.writer).bridged.clear();
                    }
                    return Ok(flow);
                }
                // Not its answer: the task ahead may still have to be taken back.
                Ok(None) if self.takes_back() => return Ok(Flow::TookBack),
                Ok(None) => {}
                Err(error) => {
                    self.kill_and_reap(Duration::ZERO);
                    return Err(Broken::Died(error));
                }
            }
        }
    }
}

impl RunningWorker for ChildWorker {
    fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }

    fn depth(&self) -> usize {
        self.depth
    }

    fn may_send_ahead(&self) -> bool {
        self.can_send_ahead()
    }

    fn sends_ahead(&self) -> bool {
        // A child with async exports takes each task as soon as it has room, and its tasks
        // end in any order: each has a span of its own.
        self.flights.is_none()
    }

    fn traces_tasks(&self) -> bool {
        self.flights.is_some()
    }

    fn async_exports(&self) -> Vec<String> {
        self.flights
            .as_ref()
            .map_or_else(Vec::new, Flights::async_exports)
    }

    fn start(&mut self, jobs: &[Arc<dyn Job>]) {
        if self.flights.is_some() {
            return self.start_concurrent(jobs);
        }
        for job in jobs {
            // Past its depth: sent ahead (see `process/ahead.rs`).
            let ahead = self.in_flight.len() >= self.depth;
            let task = self.send_run(job, ahead);
            self.in_flight.push_back(task);
        }
    }

    fn finish(&mut self, job: &Arc<dyn Job>) -> Flow {
        // Called again for the same task after it took one back: what that task said stays.
        if !self.took_back {
            self.last_panic = None;
        }
        if self.flights.is_some() {
            return self.finish_concurrent(job);
        }
        match self.finish_one(job) {
            Ok(flow) => flow,
            Err(Broken::Died(error)) => {
                job.fail(error, &self.tally);
                Flow::Dead
            }
            Err(Broken::Killed) => Flow::Dead,
        }
    }

    fn check_interval(&self) -> Option<Duration> {
        Some(CHECK_INTERVAL)
    }

    fn check(&mut self) -> Flow {
        match self.child.try_wait() {
            Ok(None) => Flow::Continue,
            Ok(Some(status)) => {
                // A panic of the last task was caught and reported with it: not these last
                // words. Drain what the child said before dying (its panic message, say): a
                // few frames at most (`note_panic` keeps four), since a process it forked may
                // hold its channel and write on without end.
                self.last_panic = None;
                for _ in 0..LAST_WORDS {
                    let Ok(Some(frame)) = self.read_before(Instant::now()) else {
                        break;
                    };
                    let Ok(ToPool::Panicking { message }) = ToPool::decode(&frame) else {
                        break;
                    };
                    note_panic(&mut self.last_panic, message);
                }
                let error = self.death_error(Some(status));
                self.pool.reporter.report(error);
                Flow::Dead
            }
            Err(_) => Flow::Continue,
        }
    }

    fn exit_status(&mut self) -> (Option<i32>, Option<i32>) {
        match self.child.try_wait() {
            Ok(Some(status)) => (status.code(), signal_of(&status)),
            _ => (None, None),
        }
    }

    fn stop(mut self: Box<Self>) {
        // One deadline for the teardown and the exit: a child still there then is killed.
        let deadline = deadline_after(self.pool.terminate_timeout);
        let alive = matches!(self.child.try_wait(), Ok(None));
        if alive && self.send(&ToChild::Stop, deadline).is_ok() {
            // The child runs its teardown, reports a failure as a result for task 0, and exits.
            // Its frames are read until that result, and not past the deadline even while
            // more keep coming: a child that never stops talking must not hold `destroy`, nor
            // have one failure reported again and again.
            while Instant::now() < deadline {
                let Ok(Some(frame)) = self.read_before(deadline) else {
                    break;
                };
                if let Ok(ToPool::Done(Done {
                    task: 0, outcome, ..
                })) = ToPool::decode(&frame)
                {
                    if let Err(error) = outcome {
                        self.pool.reporter.report(error);
                    }
                    break;
                }
            }
        }
        self.kill_and_reap(deadline.saturating_duration_since(Instant::now()));
    }
}

/// Adds a message of the child's panic hook to what it said. A panic while panicking (a `Drop`
/// that panics during unwinding) aborts the child after several messages: the first is the
/// cause, the later ones (the second panic, then "panic in a destructor during cleanup") say
/// why it aborted. So the first is kept, followed by a few more.
fn note_panic(said: &mut Option<String>, message: &str) {
    const THEN: &str = "; then: ";
    match said {
        None => *said = Some(message.to_owned()),
        Some(said) if said.matches(THEN).count() < 3 => {
            said.push_str(THEN);
            said.push_str(message);
        }
        Some(_) => {}
    }
}
