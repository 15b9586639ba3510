//! Torture: many caller threads hammer one pool while faults are injected at random moments,
//! with both runtimes and several configurations (isolation on and off, queue limits,
//! concurrency, a pool-wide `task_timeout`, plain exports only or async ones beside them,
//! child processes at one task each sent their next task ahead).
//! In the configurations with async exports (tests/torture/asyncs.rs) half the load is async
//! tasks, several in flight on each worker (`concurrent_tasks_per_worker`): ones that yield,
//! ones woken by another thread (or tokio's timer, with the `tokio` feature), ones that never
//! end until aborted or timed out, ones that panic after an await.
//!
//! Injected: panics, aborts (before, at and after submission, some signals shared by several
//! tasks), `Task::abort`/`abort_with` (by the caller and from other threads, before, while
//! and after the task runs), timeouts (zero, tiny, firing while queued or running,
//! `Duration::MAX`), `cancel_pending_tasks`, `recycle_workers`, `idle()`, a `destroy` or a
//! `close` under load, and, with child processes, SIGKILL of random live workers from
//! outside. Tasks get random priorities, and part of the load goes through `reserve()` and
//! `Permit::run_with` (some `Reserve`s and `Permit`s dropped unused).
//!
//! Checked at the end of each round: every task resolved exactly once (async ones included),
//! every value is right, every error is one the injected faults explain (a permit's task is
//! never refused for room, a task accepted before a `close` is never `Closed`, a child killed
//! while a task panicked says that panic), every `idle()` resolved, the pool still serves
//! (or, closed, refuses), `pool.stats()` counts exactly what the callers received, kind by
//! kind, every worker that started got its one `on_worker_exit`, and after `destroy` or
//! `close` no worker thread (the timer's included), no child process (zombies included) and
//! no file descriptor is left. With threads, every future of an async export is dropped:
//! once the load stopped and the pool idles (a task resolved from outside, by an abort or a
//! timeout, has its future dropped by its worker at once), and after the pool's `destroy` or
//! `close`.
//!
//! `TINYPOOL_TORTURE_SECS` (default 8) is the time spent hammering, split between the two
//! runtimes; `TINYPOOL_TORTURE_SEED` replays a run's random choices (thread interleavings
//! still differ). A `harness = false` binary: the child-process pools re-execute it as their
//! workers, so `main` first lets a worker serve.

mod common;
// Not a test target of its own: a module of this one.
#[path = "torture/asyncs.rs"]
mod asyncs;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::procfs;
use std::sync::Weak;

use serde::Serialize;
use tinypool::{
    worker, AbortController, Error, ErrorKind, Exit, Exports, Idle, MaxQueue, Permit, Pool,
    RunOptions, Runtime, Task,
};

/// Turns a hang into a failure. Never a timing assertion: nothing here should come close.
const BOUND: Duration = Duration::from_secs(60);
/// Every panic the tasks raise starts with this (the panic hook keeps them off stderr).
const PANIC_PREFIX: &str = "torture panic ";
/// Longest a round of one configuration lasts in a long run, so pools keep being rebuilt.
const MAX_ROUND: Duration = Duration::from_secs(5);
/// Tasks a caller keeps in flight at most.
const MAX_IN_FLIGHT: usize = 8;
/// Longest timeout of a task that never ends by itself (`async_pending`): every one has a
/// bounded way to end, so that no caller waits on it for long (its own `reserve` on a pool
/// whose places such tasks hold, a close).
const PENDING_TIMEOUT: Duration = Duration::from_millis(20);

// ---- The exports (identical in the test process and in its child workers) ------------------

fn mix(x: u64) -> u64 {
    (x ^ 0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9)
        .rotate_left(17)
}

fn exports() -> Exports {
    Exports::new()
        .export_default(mix)
        // Sleeps a little: tasks pile up in queues, so cancels and aborts find some there.
        .export("slow", |(x, micros): (u64, u32)| {
            thread::sleep(Duration::from_micros(micros.into()));
            mix(x)
        })
        .export("panic", |id: u64| -> u64 { panic!("{PANIC_PREFIX}{id}") })
        // Runs a while unless aborted (threads) or killed (child processes).
        .export("hold", |(x, millis): (u64, u32)| {
            let until = Instant::now() + Duration::from_millis(millis.into());
            while Instant::now() < until && !worker::aborted() {
                thread::sleep(Duration::from_micros(200));
            }
            mix(x)
        })
}

/// Set in the environment of the children of a configuration with async exports: they serve
/// [`async_exports`]. The others serve plain ones only, so that the in-order child (and the
/// thread worker that holds one task) keep their share of the storm.
const ASYNC_ENV: &str = "TINYPOOL_TORTURE_ASYNC";

/// [`exports`] and the async ones beside them.
fn async_exports() -> Exports {
    asyncs::with_async(exports())
}

// ---- A small deterministic PRNG -------------------------------------------------------------

/// xorshift64*: enough randomness for choosing faults, and replayable from its seed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        Rng(mix(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `percent` %.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

// ---- Configurations -------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Config {
    runtime: Runtime,
    min_threads: usize,
    max_threads: usize,
    isolate: bool,
    max_queue: MaxQueue,
    concurrency: usize,
    idle_timeout_ms: u64,
    /// Callers call `cancel_pending_tasks` now and then.
    cancels: bool,
    /// Callers call `recycle_workers` now and then.
    recycles: bool,
    /// SIGKILL random live workers (child processes only).
    kills: bool,
    /// The pool is destroyed while the callers still submit; the round then checks that every
    /// task resolved and nothing was left behind, not that the pool still serves.
    destroy_under_load: bool,
    /// The pool is closed at a random moment while the callers still submit: every task it
    /// had accepted must still resolve with its value (or a fault's error), later ones with
    /// `Closed`.
    close_under_load: bool,
    /// `Builder::task_timeout`, for the tasks that set none.
    task_timeout_ms: Option<u64>,
    /// Workers forked from a fork server (child processes on Linux).
    forks: bool,
    /// Async exports beside the plain ones, and half the load is async tasks. A thread worker
    /// then holds up to `concurrency` tasks (else one); a child runs its tasks concurrently
    /// (else in order).
    asyncs: bool,
}

impl Config {
    fn task_timeout(&self) -> Option<Duration> {
        self.task_timeout_ms.map(Duration::from_millis)
    }
}

fn configs(runtime: Runtime) -> Vec<Config> {
    let processes = runtime == Runtime::ChildProcess;
    let base = Config {
        runtime,
        min_threads: 1,
        max_threads: 4,
        isolate: false,
        max_queue: MaxQueue::Unbounded,
        concurrency: 1,
        idle_timeout_ms: 0,
        cancels: true,
        recycles: true,
        kills: processes,
        destroy_under_load: false,
        close_under_load: false,
        task_timeout_ms: None,
        forks: false,
        asyncs: false,
    };
    let forks = processes && cfg!(target_os = "linux");
    vec![
        base,
        Config {
            min_threads: 0,
            max_threads: 3,
            isolate: true,
            max_queue: MaxQueue::Limit(8),
            // Every task has a deadline (most of them far enough), so all run alone.
            task_timeout_ms: Some(3),
            forks,
            ..base
        },
        Config {
            min_threads: 2,
            max_threads: 2,
            max_queue: MaxQueue::Auto,
            concurrency: 3,
            idle_timeout_ms: 5,
            forks,
            ..base
        },
        Config {
            max_threads: 3,
            max_queue: MaxQueue::Limit(0),
            concurrency: 2,
            idle_timeout_ms: 2,
            ..base
        },
        Config {
            max_threads: 3,
            max_queue: MaxQueue::Limit(16),
            destroy_under_load: true,
            ..base
        },
        // Unbounded queues, where a saturated pool takes tasks by its intake: workers idling
        // out and a destroy racing it.
        Config {
            min_threads: 0,
            max_threads: 2,
            concurrency: 2,
            idle_timeout_ms: 1,
            ..base
        },
        // Destroyed with async tasks in flight, up to 4 on each worker (its futures dropped
        // as it leaves).
        Config {
            max_threads: 2,
            concurrency: 4,
            destroy_under_load: true,
            asyncs: true,
            ..base
        },
        // A close under load: no cancels, so that every task accepted before the close must
        // resolve with its value unless a timeout, an abort, a panic or a kill explains it.
        Config {
            max_threads: 3,
            max_queue: MaxQueue::Limit(6),
            concurrency: 2,
            task_timeout_ms: Some(20),
            close_under_load: true,
            cancels: false,
            ..base
        },
        // Closed with async tasks in flight, up to 3 on each worker: the close waits for
        // them (each one that never ends has a bounded timeout).
        Config {
            min_threads: 0,
            max_threads: 2,
            concurrency: 3,
            idle_timeout_ms: 1,
            close_under_load: true,
            cancels: false,
            asyncs: true,
            ..base
        },
        // Async tasks, several on each worker, beside plain ones: an `Auto` queue.
        Config {
            min_threads: 2,
            max_threads: 2,
            max_queue: MaxQueue::Auto,
            concurrency: 3,
            idle_timeout_ms: 5,
            forks,
            asyncs: true,
            ..base
        },
        // An unbounded queue, where the intake opens only while every worker is full, workers
        // idling out and coming back.
        Config {
            min_threads: 0,
            max_threads: 2,
            concurrency: 4,
            idle_timeout_ms: 1,
            asyncs: true,
            ..base
        },
        // No queue: a task is refused unless a worker has room for it.
        Config {
            max_threads: 3,
            max_queue: MaxQueue::Limit(0),
            concurrency: 2,
            idle_timeout_ms: 2,
            asyncs: true,
            ..base
        },
        // Two workers at one task each for six callers: tasks queue, so a child is sent its
        // next task while it runs one, which its driver takes back from behind a slow one
        // (`hold`, `slow`) for a free worker, or a new one: above `min_threads` a worker idles
        // out at once, while the task ahead was not queued. Forked from a fork server.
        Config {
            min_threads: 1,
            max_threads: 2,
            forks,
            ..base
        },
        // Isolated workers (one task each, async or not, then a fresh worker), every task
        // with a deadline.
        Config {
            min_threads: 0,
            max_threads: 3,
            isolate: true,
            max_queue: MaxQueue::Limit(8),
            concurrency: 3,
            task_timeout_ms: Some(3),
            forks,
            asyncs: true,
            ..base
        },
    ]
}

// ---- What a task may end with -----------------------------------------------------------------

/// What a submitted task was, to judge its outcome.
struct Expect {
    /// The value a successful run returns; `None` for a task that panics or never ends.
    value: Option<u64>,
    panic_message: Option<String>,
    /// The abort reason, for a task given a signal, and whether that signal has fired.
    abort: Option<(String, Arc<AtomicBool>)>,
    /// What a `Task::abort` of this task fails it with, and whether one may have hit it.
    handle: Arc<HandleAbort>,
    /// Its own timeout (the pool's `task_timeout` applies without one).
    timeout: Option<Duration>,
    /// Submitted through a `Permit`: never refused for room.
    permit: bool,
    /// The pool was closing when its submission returned (so `Closed` is possible).
    after_close: bool,
    /// It runs an async export (counted apart).
    is_async: bool,
    /// It never ends by itself (`async_pending`), and its caller aborts it as it comes to
    /// wait for it (else its timeout ends it).
    abort_at_wait: bool,
}

/// A task's `Task::abort`: the reason it is given (`abort` or `abort_with`), and whether an
/// abort was called while the task had not resolved yet.
struct HandleAbort {
    reason: Option<String>,
    attempted: AtomicBool,
}

/// Counts of outcomes and injected faults, summed over rounds.
#[derive(Default, Debug, Clone)]
struct Tally {
    rounds: u64,
    submitted: u64,
    resolved: u64,
    outcomes: BTreeMap<&'static str, u64>,
    panics_injected: u64,
    aborts_fired: u64,
    aborts_before_submit: u64,
    cancels: u64,
    recycles: u64,
    kills: u64,
    idle_deaths_reported: u64,
    destroys_under_load: u64,
    served_after: u64,
    /// Tasks given a timeout of their own.
    timeouts: u64,
    /// Tasks given a priority other than the default.
    prioritized: u64,
    /// `Task::abort` calls on unresolved tasks: by the caller, by another thread.
    handle_aborts: u64,
    foreign_aborts: u64,
    /// `Task::abort` calls on tasks already resolved (which must change nothing).
    late_aborts: u64,
    /// Tasks run through a permit; permits and reserves dropped unused; reserves refused.
    permits_run: u64,
    permits_dropped: u64,
    reserves_dropped: u64,
    reserves_refused: u64,
    idles: u64,
    closes_under_load: u64,
    worker_starts: u64,
    /// Tasks of async exports, and how they ended.
    async_submitted: u64,
    async_outcomes: BTreeMap<&'static str, u64>,
    /// Futures of async exports made in this process (threads), every one found dropped.
    futures_made: u64,
    /// What the callers received, for the round's `pool.stats()` check: values, and errors by
    /// kind (every task waited on, the ones after the storm included).
    received_ok: u64,
    received: BTreeMap<ErrorKind, u64>,
    violations: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.rounds += other.rounds;
        self.submitted += other.submitted;
        self.resolved += other.resolved;
        for (key, n) in other.outcomes {
            *self.outcomes.entry(key).or_default() += n;
        }
        self.panics_injected += other.panics_injected;
        self.aborts_fired += other.aborts_fired;
        self.aborts_before_submit += other.aborts_before_submit;
        self.cancels += other.cancels;
        self.recycles += other.recycles;
        self.kills += other.kills;
        self.idle_deaths_reported += other.idle_deaths_reported;
        self.destroys_under_load += other.destroys_under_load;
        self.served_after += other.served_after;
        self.timeouts += other.timeouts;
        self.prioritized += other.prioritized;
        self.handle_aborts += other.handle_aborts;
        self.foreign_aborts += other.foreign_aborts;
        self.late_aborts += other.late_aborts;
        self.permits_run += other.permits_run;
        self.permits_dropped += other.permits_dropped;
        self.reserves_dropped += other.reserves_dropped;
        self.reserves_refused += other.reserves_refused;
        self.idles += other.idles;
        self.closes_under_load += other.closes_under_load;
        self.worker_starts += other.worker_starts;
        self.async_submitted += other.async_submitted;
        for (key, n) in other.async_outcomes {
            *self.async_outcomes.entry(key).or_default() += n;
        }
        self.futures_made += other.futures_made;
        self.received_ok += other.received_ok;
        for (kind, n) in other.received {
            *self.received.entry(kind).or_default() += n;
        }
        self.violations.extend(other.violations);
    }

    /// Notes what a caller received from the pool, for the `pool.stats()` check.
    fn receive<R>(&mut self, outcome: &Result<R, Error>) {
        match outcome {
            Ok(_) => self.received_ok += 1,
            Err(error) => *self.received.entry(error.kind()).or_default() += 1,
        }
    }

    fn received_total(&self) -> u64 {
        self.received_ok + self.received.values().sum::<u64>()
    }

    /// Faults that took effect: panics raised (not the panicking tasks refused before they
    /// ran), signals fired, `Task::abort`s, timeouts that fired, cancels, recycles, kills,
    /// destroys and closes.
    fn faults(&self) -> u64 {
        self.outcomes.get("panicked").copied().unwrap_or(0)
            + self.aborts_fired
            + self.aborts_before_submit
            + self.handle_aborts
            + self.foreign_aborts
            + self.outcomes.get("timed out").copied().unwrap_or(0)
            + self.cancels
            + self.recycles
            + self.kills
            + self.destroys_under_load
            + self.closes_under_load
    }
}

/// A task on the board: its handle, held weakly, and how to abort it.
type Posted = (Weak<Task<u64>>, Arc<HandleAbort>);

/// What happens around the callers, shared with them.
struct Round {
    config: Config,
    pool: Pool,
    stop: AtomicBool,
    /// Set once the pool was destroyed under load.
    destroyed: AtomicBool,
    /// Set once a `cancel_pending_tasks` was issued.
    cancelled: AtomicBool,
    /// Set just before the pool is closed under load.
    closing: AtomicBool,
    killed: Mutex<HashSet<u32>>,
    next_id: AtomicU64,
    /// Tasks that any caller may `Task::abort` (held weakly: their owner waits on them).
    board: Mutex<Vec<Posted>>,
    /// `idle()`s that had not resolved when their caller moved on: each must resolve once the
    /// load stops.
    idles: Mutex<Vec<Idle>>,
    /// The ids of the tasks that panic, noted before they are submitted.
    panicking: Mutex<HashSet<u64>>,
}

impl Round {
    /// Whether `message` is the panic of one task of this round.
    fn a_panic_of_this_round(&self, message: &str) -> bool {
        message
            .strip_prefix(PANIC_PREFIX)
            .and_then(|id| id.parse::<u64>().ok())
            .is_some_and(|id| self.panicking.lock().unwrap().contains(&id))
    }
}

/// Judges one outcome; returns its name for the tally, or a violation.
fn judge(
    round: &Round,
    expect: &Expect,
    outcome: &Result<u64, Error>,
) -> Result<&'static str, String> {
    let config = &round.config;
    let killed_signal = Some(libc::SIGKILL);
    let verdict = match outcome {
        Ok(value) => match expect.value {
            Some(right) if *value == right => Ok("ok"),
            Some(right) => Err(format!("wrong value {value}, expected {right}")),
            None => Err(format!("a task that panics or never ends returned {value}")),
        },
        Err(Error::Panicked { message, .. }) => match &expect.panic_message {
            Some(right) if message == right => Ok("panicked"),
            _ => Err(format!("unexpected panic {message:?}")),
        },
        Err(Error::Aborted { reason }) => {
            let by_signal = matches!(&expect.abort, Some((right, fired))
                if reason.as_deref() == Some(right.as_str()) && fired.load(Ordering::Acquire));
            let by_handle =
                expect.handle.attempted.load(Ordering::Acquire) && *reason == expect.handle.reason;
            if by_signal || by_handle {
                Ok("aborted")
            } else {
                Err(format!("unexpected abort {reason:?}"))
            }
        }
        Err(Error::TimedOut { after }) => match expect.timeout.or(config.task_timeout()) {
            Some(timeout) if timeout == *after => Ok("timed out"),
            timeout => Err(format!(
                "timed out after {after:?}, its timeout {timeout:?}"
            )),
        },
        Err(Error::Closed) if expect.after_close => Ok("closed"),
        Err(Error::Cancelled) if config.cancels && round.cancelled.load(Ordering::Acquire) => {
            Ok("cancelled")
        }
        // A permit's task takes the place its permit held: never refused for room.
        Err(Error::QueueFull) if !expect.permit && matches!(config.max_queue, MaxQueue::Auto) => {
            Ok("queue full")
        }
        Err(Error::QueueFull)
            if !expect.permit && matches!(config.max_queue, MaxQueue::Limit(n) if n > 0) =>
        {
            Ok("queue full")
        }
        Err(Error::NoQueue) if !expect.permit && matches!(config.max_queue, MaxQueue::Limit(0)) => {
            Ok("no queue")
        }
        Err(Error::Terminated) if round.destroyed.load(Ordering::Acquire) => Ok("terminated"),
        Err(Error::WorkerExited {
            code: None,
            signal,
            message,
        }) if config.kills && *signal == killed_signal => {
            // Killed while panicking, the child's last words are the panic's: this task's, or,
            // in a child that runs its tasks concurrently (async exports), that of a task
            // panicking beside it as the child died (its death fails every task it ran).
            let beside = config.asyncs
                && message
                    .as_deref()
                    .is_some_and(|message| round.a_panic_of_this_round(message));
            if message.is_none() || *message == expect.panic_message || beside {
                Ok("worker killed")
            } else {
                Err(format!("a killed worker said {message:?}"))
            }
        }
        Err(other) => Err(format!("unexpected error {other:?}")),
    };
    verdict.map_err(|why| format!("{config:?}: {why}"))
}

// ---- One caller thread ------------------------------------------------------------------------

struct InFlight {
    /// Shared (weakly) with the board, so that other callers can abort it.
    task: Arc<Task<u64>>,
    expect: Expect,
}

/// Where a task goes in: the pool, or a permit's place.
enum Via<'a> {
    Pool(&'a Pool),
    Permit(Permit),
}

impl Via<'_> {
    fn run<A>(self, arg: A, options: RunOptions) -> Task<u64>
    where
        A: Serialize + Send + 'static,
    {
        match self {
            Via::Pool(pool) => pool.run_with(arg, options),
            Via::Permit(permit) => permit.run_with(arg, options),
        }
    }
}

/// A random timeout: zero (refused at once), tiny (it fires before or soon after the task
/// starts), short (it fires while the task waits or runs, or not), long (it seldom fires), or
/// too long to count.
fn random_timeout(rng: &mut Rng) -> Duration {
    match rng.below(100) {
        0..=4 => Duration::ZERO,
        5..=34 => Duration::from_micros(1 + rng.below(200)),
        35..=74 => Duration::from_micros(200 + rng.below(5_000)),
        75..=89 => Duration::from_millis(50 + rng.below(1_000)),
        _ => Duration::MAX,
    }
}

/// `Task::abort` (or `abort_with`, as the task's `handle` says): noted as a fault that may
/// hit the task if it has not resolved yet; on a resolved task it must change nothing, and the
/// judge then refuses an `Aborted` result.
fn abort_task(task: &Task<u64>, handle: &HandleAbort, foreign: bool, tally: &mut Tally) {
    if task.is_finished() {
        tally.late_aborts += 1;
    } else {
        handle.attempted.store(true, Ordering::Release);
        if foreign {
            tally.foreign_aborts += 1;
        } else {
            tally.handle_aborts += 1;
        }
    }
    match &handle.reason {
        None => task.abort(),
        Some(reason) => task.abort_with(reason.clone()),
    }
}

/// A place from `pool.reserve()` (waited on, bounded), or `None` (with the refusal judged,
/// or the reserve or its permit dropped unused on purpose).
fn reserve<'a>(round: &'a Round, rng: &mut Rng, tally: &mut Tally) -> Option<Via<'a>> {
    let config = &round.config;
    let mut reserve = round.pool.reserve();
    if rng.chance(10) {
        // Given up: at once, or after one look (which may take its permit and drop it).
        if rng.chance(50) {
            let _ = common::block_on_until(&mut reserve, Instant::now());
        }
        drop(reserve);
        tally.reserves_dropped += 1;
        return None;
    }
    match common::block_on_until(reserve, Instant::now() + BOUND) {
        None => {
            tally
                .violations
                .push(format!("{config:?}: a reserve never resolved"));
            None
        }
        Some(Err(error)) => {
            let explained = match error {
                Error::NoQueue => matches!(config.max_queue, MaxQueue::Limit(0)),
                Error::Closed => round.closing.load(Ordering::Acquire),
                Error::Terminated => round.destroyed.load(Ordering::Acquire),
                _ => false,
            };
            if !explained {
                tally
                    .violations
                    .push(format!("{config:?}: reserve failed with {error:?}"));
            }
            tally.reserves_refused += 1;
            None
        }
        Some(Ok(permit)) if rng.chance(10) => {
            drop(permit);
            tally.permits_dropped += 1;
            None
        }
        Some(Ok(permit)) => {
            tally.permits_run += 1;
            Some(Via::Permit(permit))
        }
    }
}

/// Submits, aborts and waits until told to stop, then waits for everything it submitted.
fn caller(round: &Round, seed: u64) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let mut in_flight: Vec<InFlight> = Vec::new();
    // Live controllers and the flag each one sets when fired.
    let mut controllers: Vec<(AbortController, String, Arc<AtomicBool>)> = Vec::new();
    let pool = &round.pool;
    let config = &round.config;
    while !round.stop.load(Ordering::Acquire) {
        match rng.below(1000) {
            // Submit a task.
            0..=499 if in_flight.len() < MAX_IN_FLIGHT => {
                // Through a permit, sometimes (dropped unused now and then).
                let via = if rng.chance(20) {
                    match reserve(round, &mut rng, &mut tally) {
                        Some(via) => via,
                        None => continue,
                    }
                } else {
                    Via::Pool(pool)
                };
                let id = round.next_id.fetch_add(1, Ordering::Relaxed);
                let x = rng.next();
                let kind = rng.below(100);
                // Half the load of a pool with async exports runs them.
                let asynchronous = config.asyncs && rng.chance(50);
                let pends = asynchronous && (65..80).contains(&kind);
                let mut options = RunOptions::new();
                let mut expect = Expect {
                    value: Some(mix(x)),
                    panic_message: None,
                    abort: None,
                    handle: Arc::new(HandleAbort {
                        reason: rng.chance(50).then(|| format!("handle {id}")),
                        attempted: AtomicBool::new(false),
                    }),
                    timeout: None,
                    permit: matches!(via, Via::Permit(_)),
                    after_close: false,
                    is_async: asynchronous,
                    abort_at_wait: pends && rng.chance(50),
                };
                // A signal: a fresh controller, or one shared with earlier tasks.
                if rng.chance(20) {
                    let shared = !controllers.is_empty() && rng.chance(30);
                    if !shared {
                        let reason = format!("abort {id}");
                        controllers.push((
                            AbortController::new(),
                            reason,
                            Arc::new(AtomicBool::new(false)),
                        ));
                    }
                    let index = if shared {
                        rng.below(controllers.len() as u64) as usize
                    } else {
                        controllers.len() - 1
                    };
                    let (controller, reason, fired) = &controllers[index];
                    // Some fire before the task is even submitted.
                    if !shared && rng.chance(5) {
                        fired.store(true, Ordering::Release);
                        controller.abort_with(reason.clone());
                        tally.aborts_before_submit += 1;
                    }
                    options = options.signal(controller.signal());
                    expect.abort = Some((reason.clone(), fired.clone()));
                }
                if rng.chance(25) {
                    options = options.priority(rng.below(7) as i32 - 3);
                    tally.prioritized += 1;
                }
                // A task that never ends has a bounded timeout, its own or the pool's.
                if rng.chance(25) || (pends && config.task_timeout().is_none()) {
                    let mut timeout = random_timeout(&mut rng);
                    if pends && timeout > PENDING_TIMEOUT {
                        timeout = Duration::from_micros(
                            rng.below(PENDING_TIMEOUT.as_micros() as u64 + 1),
                        );
                    }
                    options = options.timeout(timeout);
                    expect.timeout = Some(timeout);
                    tally.timeouts += 1;
                }
                let task = if asynchronous {
                    tally.async_submitted += 1;
                    match kind {
                        0..=39 => {
                            let yields = rng.below(4) as u32;
                            via.run((x, yields), options.name("async_mix"))
                        }
                        40..=64 => {
                            let micros = rng.below(1_500) as u32;
                            let tokio = rng.chance(50);
                            via.run((x, micros, tokio), options.name("async_sleep"))
                        }
                        65..=79 => {
                            expect.value = None;
                            via.run(x, options.name("async_pending"))
                        }
                        _ => {
                            expect.value = None;
                            expect.panic_message = Some(format!("{PANIC_PREFIX}{id}"));
                            round.panicking.lock().unwrap().insert(id);
                            tally.panics_injected += 1;
                            // After a yield, or after a wake-up from another thread.
                            let micros = if rng.chance(50) {
                                0
                            } else {
                                1 + rng.below(1_000) as u32
                            };
                            via.run((id, micros), options.name("async_panic"))
                        }
                    }
                } else {
                    match kind {
                        0..=49 => via.run(x, options),
                        50..=79 => {
                            let micros = rng.below(1_500) as u32;
                            via.run((x, micros), options.name("slow"))
                        }
                        80..=87 => {
                            let millis = 1 + rng.below(5) as u32;
                            via.run((x, millis), options.name("hold"))
                        }
                        _ => {
                            expect.value = None;
                            expect.panic_message = Some(format!("{PANIC_PREFIX}{id}"));
                            round.panicking.lock().unwrap().insert(id);
                            tally.panics_injected += 1;
                            via.run(id, options.name("panic"))
                        }
                    }
                };
                // Read after the submission returned: if not closing yet, the pool had taken
                // the task (or refused it for another reason) before the close began.
                expect.after_close = round.closing.load(Ordering::Acquire);
                tally.submitted += 1;
                let task = Arc::new(task);
                if rng.chance(30) {
                    round
                        .board
                        .lock()
                        .unwrap()
                        .push((Arc::downgrade(&task), expect.handle.clone()));
                }
                // Aborted right away, before it runs (or as it starts).
                if rng.chance(3) {
                    abort_task(&task, &expect.handle, false, &mut tally);
                }
                let refused = task.is_finished();
                in_flight.push(InFlight { task, expect });
                // Refused at once (a full queue, say): back off as a real caller would, by
                // waiting for the oldest task first, or letting another thread run.
                if refused {
                    let refused = in_flight.pop().expect("just pushed");
                    settle(round, refused, false, &mut tally);
                    if in_flight.is_empty() {
                        thread::yield_now();
                    } else {
                        let oldest = in_flight.remove(0);
                        settle(round, oldest, false, &mut tally);
                    }
                }
            }
            // Fire a signal (it may be shared, or its tasks long finished).
            500..=539 if !controllers.is_empty() => {
                let index = rng.below(controllers.len() as u64) as usize;
                let (controller, reason, fired) = controllers.swap_remove(index);
                fired.store(true, Ordering::Release);
                controller.abort_with(reason);
                tally.aborts_fired += 1;
            }
            540..=542 if config.cancels => {
                round.cancelled.store(true, Ordering::Release);
                pool.cancel_pending_tasks();
                tally.cancels += 1;
            }
            543..=545 if config.recycles => {
                let recycled = pool.recycle_workers();
                tally.recycles += 1;
                // Also after a destroy under load: there is nothing left to recycle.
                if common::block_on_until(recycled, Instant::now() + BOUND).is_none() {
                    tally
                        .violations
                        .push(format!("{config:?}: recycle_workers never resolved"));
                }
            }
            // `Task::abort` one of its own tasks, at whatever point it is.
            546..=575 if !in_flight.is_empty() => {
                let index = rng.below(in_flight.len() as u64) as usize;
                let InFlight { task, expect } = &in_flight[index];
                abort_task(task, &expect.handle, false, &mut tally);
            }
            // `Task::abort` another caller's task (or its own), if it is still waited for.
            576..=590 => {
                let picked = {
                    let mut board = round.board.lock().unwrap();
                    // Only the tasks still waited for.
                    board.retain(|(task, _)| task.strong_count() > 0);
                    if board.is_empty() {
                        None
                    } else {
                        let index = rng.below(board.len() as u64) as usize;
                        let (task, handle) = &board[index];
                        task.upgrade().map(|task| (task, handle.clone()))
                    }
                };
                if let Some((task, handle)) = picked {
                    abort_task(&task, &handle, true, &mut tally);
                }
            }
            // `idle()`: a short look, and if it is not idle yet, it must be by the round's end.
            591..=593 => {
                let mut idle = pool.idle();
                tally.idles += 1;
                let soon = Instant::now() + Duration::from_millis(2);
                if common::block_on_until(&mut idle, soon).is_none() {
                    round.idles.lock().unwrap().push(idle);
                }
            }
            // Wait for a task: the oldest or a random one, blocking or as a future.
            _ if !in_flight.is_empty() => {
                let index = if rng.chance(50) {
                    0
                } else {
                    rng.below(in_flight.len() as u64) as usize
                };
                let task = in_flight.remove(index);
                let as_future = rng.chance(20);
                settle(round, task, as_future, &mut tally);
            }
            _ => thread::yield_now(),
        }
        // Forget the oldest controllers (unfired), so the list stays short.
        if controllers.len() > 16 {
            controllers.remove(0);
        }
    }
    for task in in_flight {
        settle(round, task, false, &mut tally);
    }
    tally
}

/// Waits for one task (bounded) and judges its outcome.
fn settle(round: &Round, in_flight: InFlight, as_future: bool, tally: &mut Tally) {
    let InFlight { task, expect } = in_flight;
    // Another caller may hold it for a moment, to abort it.
    let mut task = task;
    let until = Instant::now() + BOUND;
    let task = loop {
        match Arc::try_unwrap(task) {
            Ok(task) => break task,
            Err(shared) if Instant::now() < until => {
                task = shared;
                thread::yield_now();
            }
            Err(_) => {
                tally
                    .violations
                    .push(format!("{:?}: a task's handle stayed shared", round.config));
                return;
            }
        }
    };
    if expect.abort_at_wait && !task.is_finished() {
        abort_task(&task, &expect.handle, false, tally);
    }
    let outcome = if as_future {
        common::block_on_until(task, Instant::now() + BOUND)
    } else {
        task.wait_timeout(BOUND).ok()
    };
    let Some(outcome) = outcome else {
        tally
            .violations
            .push(format!("{:?}: a task never resolved (lost)", round.config));
        return;
    };
    tally.resolved += 1;
    tally.receive(&outcome);
    match judge(round, &expect, &outcome) {
        Ok(name) => {
            *tally.outcomes.entry(name).or_default() += 1;
            if expect.is_async {
                *tally.async_outcomes.entry(name).or_default() += 1;
            }
        }
        Err(violation) => tally.violations.push(violation),
    }
}

/// SIGKILLs random live workers until told to stop.
fn killer(round: &Round, seed: u64) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    while !round.stop.load(Ordering::Acquire) {
        // Pacing only: how often a worker dies.
        thread::sleep(Duration::from_micros(500 + rng.below(8_000)));
        let pids: Vec<u32> = round.pool.workers().iter().filter_map(|w| w.pid).collect();
        if pids.is_empty() {
            continue;
        }
        let pid = pids[rng.below(pids.len() as u64) as usize];
        if procfs::kill_child(pid) {
            round.killed.lock().unwrap().insert(pid);
            tally.kills += 1;
        }
    }
    tally
}

// ---- A round ------------------------------------------------------------------------------------

fn round(config: Config, index: u64, seed: u64, length: Duration) -> Tally {
    let prefix = format!("tt{index}");
    assert!(
        procfs::children().is_empty(),
        "a child process was left before round {index}: {:?}",
        procfs::children()
    );
    let fds_before = procfs::open_fds();
    let futures_before = asyncs::made();
    let reports: Arc<Mutex<Vec<Error>>> = Arc::default();
    // Workers that started, and the reasons the ones that left gave.
    let starts: Arc<AtomicU64> = Arc::default();
    let exits: Arc<Mutex<Vec<Exit>>> = Arc::default();
    let pool = {
        let reports = reports.clone();
        let (started, exited) = (starts.clone(), exits.clone());
        let builder = Pool::builder()
            .runtime(config.runtime)
            .min_threads(config.min_threads)
            .max_threads(config.max_threads)
            .isolate_workers(config.isolate)
            .max_queue(config.max_queue)
            .concurrent_tasks_per_worker(config.concurrency)
            .idle_timeout(Duration::from_millis(config.idle_timeout_ms))
            .thread_name(prefix.clone())
            .on_error(move |error| reports.lock().unwrap().push(error))
            .on_worker_start(move |_| {
                started.fetch_add(1, Ordering::Relaxed);
            })
            .on_worker_exit(move |_, exit| exited.lock().unwrap().push(exit.clone()));
        let builder = match config.task_timeout() {
            Some(timeout) => builder.task_timeout(timeout),
            None => builder,
        };
        let builder = match config.runtime {
            Runtime::Threads if config.asyncs => builder.exports(async_exports()),
            Runtime::Threads => builder.exports(exports()),
            _ if config.asyncs => builder.fork_server(config.forks).env(ASYNC_ENV, "1"),
            _ => builder.fork_server(config.forks),
        };
        builder.build().expect("a pool")
    };
    let round = Round {
        config,
        pool,
        stop: AtomicBool::new(false),
        destroyed: AtomicBool::new(false),
        cancelled: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        killed: Mutex::default(),
        next_id: AtomicU64::new(0),
        board: Mutex::default(),
        idles: Mutex::default(),
        panicking: Mutex::default(),
    };
    let callers = 6;
    let mut tally = thread::scope(|scope| {
        let round = &round;
        let mut handles: Vec<_> = (0..callers)
            .map(|i| {
                thread::Builder::new()
                    .name(format!("caller-{i}"))
                    .spawn_scoped(scope, move || caller(round, seed ^ ((i + 1) * 0x1000_0001)))
                    .expect("a caller thread")
            })
            .collect();
        if config.kills {
            handles.push(
                thread::Builder::new()
                    .name("killer".into())
                    .spawn_scoped(scope, move || killer(round, seed ^ 0xDEAD))
                    .expect("the killer thread"),
            );
        }
        // Pacing: the round's length. The callers run meanwhile.
        let mut tally = Tally::default();
        if config.destroy_under_load {
            thread::sleep(length * 9 / 10);
            round.destroyed.store(true, Ordering::Release);
            if let Err(error) = round.pool.destroy().wait() {
                tally
                    .violations
                    .push(format!("{config:?}: destroy under load failed: {error:?}"));
            }
            // A moment of submitting to, aborting on and recycling a destroyed pool.
            thread::sleep(Duration::from_millis(20));
        } else if config.close_under_load {
            // At a random moment (between 40 % and 90 % of the round); then a moment of
            // submitting to, reserving on and aborting on the closed pool.
            let at = length * (4 + Rng::new(seed ^ 0xC105E).below(6) as u32) / 10;
            thread::sleep(at);
            round.closing.store(true, Ordering::Release);
            let close = round.pool.close();
            match common::block_on_until(close, Instant::now() + BOUND) {
                Some(Ok(())) => {}
                Some(Err(error)) => tally
                    .violations
                    .push(format!("{config:?}: close under load failed: {error:?}")),
                None => tally
                    .violations
                    .push(format!("{config:?}: close under load never resolved")),
            }
            if round.pool.threads() != 0 {
                tally.violations.push(format!(
                    "{config:?}: workers left after close resolved: {:?}",
                    round.pool.workers()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        } else {
            thread::sleep(length);
        }
        round.stop.store(true, Ordering::Release);
        for handle in handles {
            match handle.join() {
                Ok(part) => tally.add(part),
                Err(_) => tally.violations.push("a caller thread panicked".into()),
            }
        }
        tally
    });
    tally.rounds = 1;
    let pool = &round.pool;

    // Every `idle()` resolves once the load has stopped and every task resolved.
    let idles: Vec<Idle> = round.idles.lock().unwrap().drain(..).collect();
    let mut idles_pending = 0;
    for idle in idles {
        if common::block_on_until(idle, Instant::now() + BOUND).is_none() {
            idles_pending += 1;
        }
    }
    if common::block_on_until(pool.idle(), Instant::now() + BOUND).is_none() {
        idles_pending += 1;
    }
    if idles_pending > 0 {
        tally.violations.push(format!(
            "{config:?}: {idles_pending} idle() never resolved after the load stopped"
        ));
    }

    if config.destroy_under_load {
        tally.destroys_under_load = 1;
        let after = pool.run::<u64, _>(1u64).wait_timeout(BOUND);
        if let Ok(outcome) = &after {
            tally.receive(outcome);
        }
        if !matches!(after, Ok(Err(Error::Terminated))) {
            tally.violations.push("a destroyed pool took a task".into());
        }
    } else if config.close_under_load {
        tally.closes_under_load = 1;
        let after = pool.run::<u64, _>(1u64).wait_timeout(BOUND);
        if let Ok(outcome) = &after {
            tally.receive(outcome);
        }
        if !matches!(after, Ok(Err(Error::Closed))) {
            tally
                .violations
                .push(format!("{config:?}: a closed pool gave {after:?}"));
        }
        let reserved = common::block_on_until(pool.reserve(), Instant::now() + BOUND);
        if !matches!(reserved, Some(Err(Error::Closed))) {
            tally
                .violations
                .push(format!("{config:?}: a closed pool granted a place"));
        }
        if pool.threads() != 0 || pool.queue_size() != 0 {
            tally.violations.push(format!(
                "{config:?}: a closed pool still has {} workers, {} queued",
                pool.threads(),
                pool.queue_size()
            ));
        }
        // Cuts nothing short: there is nothing left.
        if let Err(error) = pool.destroy().wait() {
            tally
                .violations
                .push(format!("{config:?}: destroy after close failed: {error:?}"));
        }
    } else {
        // Deaths of idle workers are noticed on the workers' own schedule.
        let killed = round.killed.lock().unwrap().clone();
        common::eventually("every killed worker was replaced", || {
            pool.workers()
                .iter()
                .all(|w| w.pid.is_none_or(|pid| !killed.contains(&pid)))
        });
        if pool.queue_size() != 0 || pool.workers().iter().any(|w| w.running != 0) {
            tally.violations.push(format!(
                "{config:?}: work left after every task resolved: queue {}, workers {:?}",
                pool.queue_size(),
                pool.workers()
            ));
        }
        // Every task resolved and the pool idles: each future was dropped, those of the tasks
        // resolved from outside (aborted, timed out) too, whose workers were rung for it.
        if let Err(live) = no_future_left(config) {
            tally.violations.push(format!(
                "{config:?}: {live} futures of async exports still alive while the pool idles, \
                 every task resolved"
            ));
        }
        let ok = tally.outcomes.get("ok").copied().unwrap_or(0);
        let panicked = tally.outcomes.get("panicked").copied().unwrap_or(0);
        if pool.completed() < ok + panicked {
            tally.violations.push(format!(
                "completed() = {} < {} tasks that a worker ran to the end",
                pool.completed(),
                ok + panicked
            ));
        }
        // The pool still serves: one task at a time (no queue needed), then a burst where a
        // queue may hold it. (A pool-wide timeout is lifted: on a loaded machine a burst may
        // wait longer than it.)
        let options = || match config.task_timeout() {
            Some(_) => RunOptions::new().timeout(Duration::MAX),
            None => RunOptions::new(),
        };
        for x in 0..20u64 {
            let outcome = pool.run_with::<u64, _>(x, options()).wait_timeout(BOUND);
            if let Ok(outcome) = &outcome {
                tally.receive(outcome);
            }
            match outcome {
                Ok(Ok(value)) if value == mix(x) => tally.served_after += 1,
                other => tally.violations.push(format!(
                    "{config:?}: after the storm, task {x} gave {other:?}"
                )),
            }
        }
        if matches!(config.max_queue, MaxQueue::Unbounded) {
            let burst: Vec<Task<u64>> = (0..200u64).map(|x| pool.run_with(x, options())).collect();
            for (x, task) in burst.into_iter().enumerate() {
                let outcome = task.wait_timeout(BOUND);
                if let Ok(outcome) = &outcome {
                    tally.receive(outcome);
                }
                match outcome {
                    Ok(Ok(value)) if value == mix(x as u64) => tally.served_after += 1,
                    other => tally.violations.push(format!(
                        "{config:?}: after the storm, burst task {x} gave {other:?}"
                    )),
                }
            }
        }
        if let Err(error) = pool.destroy().wait() {
            tally
                .violations
                .push(format!("{config:?}: destroy failed: {error:?}"));
        }
    }

    // The pool counted exactly what its callers received, kind by kind.
    let stats = pool.stats();
    let counted: BTreeMap<ErrorKind, u64> = stats.failures().collect();
    if stats.resolved() != tally.received_total()
        || stats.succeeded() != tally.received_ok
        || counted != tally.received
    {
        tally.violations.push(format!(
            "{config:?}: stats() counted {} resolved ({} succeeded, failed {counted:?}); the \
             callers received {} ({} values, errors {:?})",
            stats.resolved(),
            stats.succeeded(),
            tally.received_total(),
            tally.received_ok,
            tally.received
        ));
    }

    let killed = round.killed.lock().unwrap().clone();
    drop(round);

    // The pool was destroyed (or closed): every future it made is dropped.
    if let Err(live) = no_future_left(config) {
        tally.violations.push(format!(
            "{config:?}: {live} futures of async exports left after the pool's end"
        ));
    }
    tally.futures_made = asyncs::made() - futures_before;

    // Nothing is left behind.
    let threads = procfs::live_threads(&prefix);
    if !threads.is_empty() {
        tally
            .violations
            .push(format!("{config:?}: worker threads left: {threads:?}"));
    }
    // Every worker that started left once, with a reason its round explains (its thread is
    // gone, so its hook has returned).
    let exits = exits.lock().unwrap().clone();
    tally.worker_starts = starts.load(Ordering::Relaxed);
    if exits.len() as u64 != tally.worker_starts {
        tally.violations.push(format!(
            "{config:?}: {} workers started, {} exits heard: {exits:?}",
            tally.worker_starts,
            exits.len()
        ));
    }
    for exit in &exits {
        let explained = match exit {
            Exit::Crashed { .. } => config.kills,
            Exit::Closed => config.close_under_load,
            Exit::Isolated => config.isolate,
            Exit::MemoryRecycled => false,
            _ => true,
        };
        if !explained {
            tally
                .violations
                .push(format!("{config:?}: a worker left for {exit:?}"));
        }
    }
    let children = procfs::children();
    if !children.is_empty() {
        tally
            .violations
            .push(format!("{config:?}: child processes left: {children:?}"));
    }
    let fds_after = procfs::open_fds();
    if fds_after != fds_before {
        tally.violations.push(format!(
            "{config:?}: file descriptors leaked: {}",
            procfs::fd_diff(&fds_before, &fds_after)
        ));
    }
    for error in reports.lock().unwrap().drain(..) {
        match error {
            Error::WorkerExited {
                code: None,
                signal: Some(libc::SIGKILL),
                message: None,
            } if config.kills => tally.idle_deaths_reported += 1,
            other => tally
                .violations
                .push(format!("{config:?}: on_error heard {other:?}")),
        }
    }
    if tally.idle_deaths_reported > killed.len() as u64 {
        tally.violations.push(format!(
            "{} idle deaths reported, {} workers killed",
            tally.idle_deaths_reported,
            killed.len()
        ));
    }
    if tally.submitted != tally.resolved {
        tally.violations.push(format!(
            "{config:?}: {} tasks submitted, {} resolved",
            tally.submitted, tally.resolved
        ));
    }
    tally
}

/// With threads, waits (bounded) until no future of the async exports is alive in this process:
/// `Err` with how many still are. (A child's futures live in the child.)
fn no_future_left(config: Config) -> Result<(), u64> {
    match config.runtime {
        Runtime::Threads => asyncs::wait_none_live(BOUND),
        _ => Ok(()),
    }
}

fn torture(runtime: Runtime, budget: Duration, seed: u64) {
    let configs = configs(runtime);
    let length = (budget / configs.len() as u32).clamp(Duration::from_millis(200), MAX_ROUND);
    let started = Instant::now();
    let mut total = Tally::default();
    let mut index = 0u64;
    // Every configuration at least once, then round after round until the budget is spent.
    while index < configs.len() as u64 || started.elapsed() + length <= budget {
        let config = configs[(index % configs.len() as u64) as usize];
        let part = round(config, index, seed ^ index.wrapping_mul(0x9E37), length);
        total.add(part);
        index += 1;
    }
    let faults = total.faults();
    let lost = total.submitted - total.resolved;
    println!(
        "torture {runtime:?}: seed {seed}, {} rounds, {} tasks submitted, {} resolved, {lost} \
         lost; outcomes {:?}; faults injected {faults} (panics raised {} of {} panicking tasks, \
         signals fired {} + {} before submission, Task::abort {} + {} from other threads \
         (+ {} on resolved tasks), timeouts given {}, cancels {}, recycles {}, SIGKILLs {}, \
         destroys under load {}, closes under load {}); priorities given {}; permits run {}, \
         dropped {}, reserves dropped {}, refused {}; idle() calls {}; workers started {}; \
         idle deaths reported {}; async tasks {} (outcomes {:?}), futures made in this \
         process {} (every one dropped); {} tasks served after the storms; stats() checked in \
         every round; {} violations",
        total.rounds,
        total.submitted,
        total.resolved,
        total.outcomes,
        total.outcomes.get("panicked").copied().unwrap_or(0),
        total.panics_injected,
        total.aborts_fired,
        total.aborts_before_submit,
        total.handle_aborts,
        total.foreign_aborts,
        total.late_aborts,
        total.timeouts,
        total.cancels,
        total.recycles,
        total.kills,
        total.destroys_under_load,
        total.closes_under_load,
        total.prioritized,
        total.permits_run,
        total.permits_dropped,
        total.reserves_dropped,
        total.reserves_refused,
        total.idles,
        total.worker_starts,
        total.idle_deaths_reported,
        total.async_submitted,
        total.async_outcomes,
        total.futures_made,
        total.served_after,
        total.violations.len(),
    );
    if !total.violations.is_empty() {
        let shown: Vec<&String> = total.violations.iter().take(20).collect();
        panic!(
            "torture {runtime:?} (TINYPOOL_TORTURE_SEED={seed}): {} violations, first ones:\n{}",
            total.violations.len(),
            shown
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(total.submitted > 0, "the storm submitted nothing");
}

fn budget() -> Duration {
    let secs: f64 = std::env::var("TINYPOOL_TORTURE_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .unwrap_or(8.0);
    Duration::from_secs_f64(secs.max(0.0))
}

fn seed() -> u64 {
    match std::env::var("TINYPOOL_TORTURE_SEED") {
        Ok(seed) => seed.parse().expect("TINYPOOL_TORTURE_SEED is a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64),
    }
}

fn main() {
    common::quiet_panics(PANIC_PREFIX);
    worker::serve_if_worker(match std::env::var_os(ASYNC_ENV) {
        Some(_) => async_exports(),
        None => exports(),
    });
    let seed = seed();
    let budget = budget();
    println!("torture: TINYPOOL_TORTURE_SEED={seed} TINYPOOL_TORTURE_SECS={budget:?}");
    common::run_cases(vec![
        (
            "torture_threads".to_owned(),
            Box::new(move || torture(Runtime::Threads, budget / 2, seed)),
        ),
        (
            "torture_child_processes".to_owned(),
            Box::new(move || torture(Runtime::ChildProcess, budget / 2, seed ^ 0xC41D)),
        ),
    ]);
}
