//! Per-task timeouts (`RunOptions::timeout`, `Builder::task_timeout`) and `Task::abort`: a
//! timeout is an abort the pool fires itself, from one timer thread per pool
//! (`{thread_name}-timer`, started at the first task with a timeout, gone with the pool);
//! `Task::abort` aborts a task without a controller. Threads only: what in-process functions
//! show (`worker::aborted()` inside a timed-out function, the order in which the tasks of a
//! retired worker run again).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tinypool::{worker, Error, Exports, Pool, Port, RunOptions, Runtime, Task};

use crate::common::procfs::{self, live, live_threads};
use crate::common::{eventually, finish, marker, named, next, within, Counter, Gate, BOUND};
use crate::{aborted, bodies, call, held, hold, loads, pids, pool, prefix, Body, Hold};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            a_stuck_task_times_out_and_its_worker_is_replaced,
            a_queued_task_times_out_without_disturbing_the_running_ones,
            the_pool_timeout_applies_and_a_tasks_own_overrides_it,
            a_max_timeout_never_fires,
            an_earlier_deadline_wakes_a_timer_waiting_for_an_hour,
            a_zero_timeout_fails_at_once_and_never_runs,
            tasks_done_before_their_timeout_are_unaffected,
            a_task_with_a_timeout_never_shares_a_busy_worker,
            the_timer_thread_is_gone_after_destroy_close_and_drop,
            a_closing_pool_still_times_out_its_tasks,
            task_abort_removes_a_queued_task,
            task_abort_of_a_running_task_replaces_its_worker,
            task_abort_after_the_result_changes_nothing,
            task_abort_of_a_task_sent_ahead_fails_only_it,
        ],
        threads: [
            a_timed_out_function_sees_aborted_and_its_thread_leaves,
            task_abort_requeues_what_the_retired_worker_had_taken_in_order,
        ],
    }
}

const HOUR: Duration = Duration::from_secs(3600);

fn timed_out(after: Duration) -> Error {
    Error::TimedOut { after }
}

/// Whether the pool named `prefix` has its timer thread.
fn has_timer(prefix: &str) -> bool {
    let timer = format!("{prefix}-timer");
    live_threads(prefix)
        .iter()
        .any(|name| name.starts_with(&timer))
}

/// A "spin" task with a timeout that provably started (it said so on its channel), and the
/// timeout it was given. A task still waiting for its worker when its timeout passes (a very
/// slow machine) times out in the queue: that is checked, and it is tried again with a longer
/// one, so that the outcome never depends on the machine's speed.
fn spinning_with_timeout(pool: &Pool) -> (Task<()>, Port<u32>, Duration) {
    let mut after = Duration::from_millis(200);
    loop {
        let (port, theirs) = tinypool::channel::<u32>();
        // An export that announces itself on its channel, then spins until aborted.
        let options = named("spin").channel(theirs).timeout(after);
        let task = pool.run_with::<(), _>((), options);
        match next(&port) {
            Ok(0) => return (task, port, after),
            Err(Error::Disconnected) => {
                assert_eq!(
                    finish(task),
                    Err(timed_out(after)),
                    "timed out before it ran"
                );
                assert!(after < BOUND, "the spin task never started");
                after *= 2;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A "hold" task with its own timeout.
fn hold_with_timeout(pool: &Pool, tag: u32, timeout: Duration) -> Hold {
    let (port, theirs) = tinypool::channel::<u32>();
    let options = named("hold").channel(theirs).timeout(timeout);
    (pool.run_with(tag, options), port)
}

/// A loopback TCP listener the "meet" tasks connect to: the test sees each start, and releases
/// it with a byte, without a channel (a task with a channel runs alone on its worker).
struct Meeting {
    listener: TcpListener,
    address: String,
}

impl Meeting {
    fn new() -> Meeting {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the meeting listener");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener.local_addr().expect("its address").to_string();
        Meeting { listener, address }
    }

    /// Runs the "meet" export, which waits here for its byte.
    fn task(&self, pool: &Pool) -> Task<Result<u8, String>> {
        pool.run_with(self.address.clone(), named("meet"))
    }

    /// Waits until the next "meet" task has started; the byte written to the stream releases
    /// it.
    fn started(&self) -> TcpStream {
        let deadline = Instant::now() + BOUND;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).expect("a blocking stream");
                    return stream;
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no meet task started");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(error) => panic!("accept: {error}"),
            }
        }
    }
}

fn release(mut stream: TcpStream, byte: u8) {
    stream.write_all(&[byte]).expect("the meet task listens");
}

// ---- Both runtimes ------------------------------------------------------------------------------

/// A task stuck in its function fails with `TimedOut` at its deadline; its worker is retired
/// and replaced at once (the freed id, a fresh worker), the pool serves the next task, and the
/// stuck worker goes: a thread once its function sees `worker::aborted()` and returns, a child
/// killed and reaped.
fn a_stuck_task_times_out_and_its_worker_is_replaced(runtime: Runtime) {
    let p = prefix("to-stuck", runtime);
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .thread_name(&p)
        .build()
        .unwrap();
    assert_eq!(finish(call::<u32>(&pool, "counter")), Ok(0));
    let (task, port, after) = spinning_with_timeout(&pool);
    let stuck = pids(&pool, runtime);

    assert_eq!(finish(task), Err(timed_out(after)));
    assert_eq!(next(&port), Err(Error::Disconnected), "its channel closed");
    assert_eq!(pool.threads(), 1, "a replacement counts at once");
    assert_eq!(finish(call::<Option<usize>>(&pool, "id")), Ok(Some(1)));
    assert_eq!(
        finish(call::<u32>(&pool, "counter")),
        Ok(0),
        "a fresh worker"
    );
    for pid in stuck {
        eventually("the stuck child is reaped", || procfs::gone(pid));
    }
    eventually("the stuck worker's thread ends", || live(&p) == 1);
    pool.destroy().wait().unwrap();
    assert_eq!(live_threads(&p), Vec::<String>::new());
}

/// The timer first sleeps toward an hour-long deadline; a task with a much shorter one,
/// submitted after, still times out at its own (the timer wakes for an earlier deadline), and
/// the hour-long task runs on, untouched.
fn an_earlier_deadline_wakes_a_timer_waiting_for_an_hour(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).max_threads(2).build().unwrap();
    let (long, long_port) = hold_with_timeout(&pool, 1, HOUR);
    assert_eq!(next(&long_port), Ok(1), "the hour-long task runs");
    let (task, port, after) = spinning_with_timeout(&pool);
    assert_eq!(finish(task), Err(timed_out(after)));
    assert_eq!(next(&port), Err(Error::Disconnected));
    long_port.send(7).unwrap();
    assert_eq!(held(long).3, 7);
    pool.destroy().wait().unwrap();
}

/// A task that waits behind busy workers times out in the queue, and the running tasks and
/// their workers are untouched.
fn a_queued_task_times_out_without_disturbing_the_running_ones(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).max_threads(2).build().unwrap();
    let holds: Vec<Hold> = (0..2).map(|tag| hold(&pool, tag)).collect();
    for (tag, (_, port)) in holds.iter().enumerate() {
        assert_eq!(next(port), Ok(tag as u32));
    }
    let before = pool.workers();

    let after = Duration::from_millis(50);
    let queued = pool.run_with::<i32, _>((2, 3), RunOptions::new().timeout(after));
    assert_eq!(finish(queued), Err(timed_out(after)));
    assert_eq!(pool.queue_size(), 0);
    assert_eq!(pool.workers(), before, "no worker was touched");
    for (tag, (task, port)) in holds.into_iter().enumerate() {
        port.send(10).unwrap();
        let (got, _, _, value) = held(task);
        assert_eq!((got, value), (tag as u32, 10));
    }
    assert_eq!(finish(pool.run::<i32, _>((2, 3))), Ok(5));
    pool.destroy().wait().unwrap();
}

/// `task_timeout` applies to a task that sets no timeout, and a task's own overrides it: it
/// runs past the pool's while a task behind it times out after the pool's.
fn the_pool_timeout_applies_and_a_tasks_own_overrides_it(runtime: Runtime) {
    let short = Duration::from_millis(50);
    let pool = pool(runtime)
        .max_threads(1)
        .task_timeout(short)
        .build()
        .unwrap();
    let (long, port) = hold_with_timeout(&pool, 1, HOUR);
    assert_eq!(next(&port), Ok(1));
    let behind = pool.run::<i32, _>((1, 2));
    assert_eq!(finish(behind), Err(timed_out(short)));
    assert!(!long.is_finished(), "its own timeout applies");
    port.send(8).unwrap();
    assert_eq!(held(long).3, 8);
    pool.destroy().wait().unwrap();
}

/// `Duration::MAX` (as a task's timeout and as the pool's) means never: no overflow, no
/// instant expiry, while the timer fires the deadlines around it.
fn a_max_timeout_never_fires(runtime: Runtime) {
    let pool = pool(runtime)
        .max_threads(1)
        .task_timeout(Duration::MAX)
        .build()
        .unwrap();
    assert_eq!(finish(pool.run::<i32, _>((2, 2))), Ok(4));
    let (forever, port) = hold_with_timeout(&pool, 2, Duration::MAX);
    assert_eq!(next(&port), Ok(2));
    let after = Duration::from_millis(20);
    let behind = pool.run_with::<i32, _>((1, 1), RunOptions::new().timeout(after));
    assert_eq!(finish(behind), Err(timed_out(after)));
    assert!(!forever.is_finished());
    port.send(3).unwrap();
    assert_eq!(held(forever).3, 3);
    pool.destroy().wait().unwrap();
}

/// A zero timeout fails the task at once, and it never runs; as the pool's, it fails every
/// task that has no timeout of its own.
fn a_zero_timeout_fails_at_once_and_never_runs(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    assert_eq!(finish(call::<u32>(&pool, "counter")), Ok(0));
    let zero = pool.run_with::<u32, _>((), named("counter").timeout(Duration::ZERO));
    assert!(zero.is_finished());
    assert_eq!(finish(zero), Err(timed_out(Duration::ZERO)));
    assert_eq!(
        finish(call::<u32>(&pool, "counter")),
        Ok(1),
        "it never ran, and the worker stayed"
    );
    pool.destroy().wait().unwrap();

    let pool = crate::pool(runtime)
        .task_timeout(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(
        finish(pool.run::<i32, _>((1, 2))),
        Err(timed_out(Duration::ZERO))
    );
    let own = RunOptions::new().timeout(HOUR);
    assert_eq!(finish(pool.run_with::<i32, _>((1, 2), own)), Ok(3));
    pool.destroy().wait().unwrap();
}

/// Tasks that finish before their timeout keep their values and their worker (none is
/// retired); the timer thread starts with the first of them, not before.
fn tasks_done_before_their_timeout_are_unaffected(runtime: Runtime) {
    let p = prefix("toq", runtime);
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .thread_name(&p)
        .build()
        .unwrap();
    let first: String = finish(call(&pool, "identity")).unwrap();
    assert!(!has_timer(&p), "no timer before the first timeout");
    let tasks: Vec<Task<String>> = (0..200)
        .map(|_| pool.run_with((), named("identity").timeout(HOUR)))
        .collect();
    for task in tasks {
        assert_eq!(finish(task), Ok(first.clone()), "the same worker");
    }
    eventually("the timer thread runs", || has_timer(&p));
    assert_eq!(pool.threads(), 1);
    pool.destroy().wait().unwrap();
}

/// A task with a timeout runs alone, like one with a signal: it never joins a busy worker,
/// even one with room (`concurrent_tasks_per_worker`), so that a timeout stops nothing else.
fn a_task_with_a_timeout_never_shares_a_busy_worker(runtime: Runtime) {
    let pool = pool(runtime)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let meeting = Meeting::new();
    let busy = meeting.task(&pool);
    let stream = meeting.started();
    let timed = pool.run_with::<i32, _>((2, 5), RunOptions::new().timeout(HOUR));
    let plain = pool.run::<i32, _>((1, 1));
    assert_eq!(loads(&pool), [1], "the timed task waits in the queue");
    assert_eq!(pool.queue_size(), 2, "and the plain one behind it (FIFO)");
    release(stream, 4);
    assert_eq!(finish(busy), Ok(Ok(4)));
    assert_eq!(finish(timed), Ok(7));
    assert_eq!(finish(plain), Ok(2));
    pool.destroy().wait().unwrap();
}

/// The timer thread stops and is joined with the pool: gone once `destroy` or `close` is
/// waited on, and soon after the last handle is dropped.
fn the_timer_thread_is_gone_after_destroy_close_and_drop(runtime: Runtime) {
    for (base, end) in [("tgd", 0), ("tgc", 1), ("tgx", 2)] {
        let p = prefix(base, runtime);
        let pool = pool(runtime).thread_name(&p).build().unwrap();
        let timed = pool.run_with::<i32, _>((1, 2), RunOptions::new().timeout(HOUR));
        assert_eq!(finish(timed), Ok(3));
        eventually("the timer thread runs", || has_timer(&p));
        match end {
            0 => pool.destroy().wait().unwrap(),
            1 => pool.close().wait().unwrap(),
            _ => {
                drop(pool);
                eventually("the dropped pool's threads end", || {
                    live_threads(&p).is_empty()
                });
            }
        }
        assert_eq!(live_threads(&p), Vec::<String>::new(), "{base}");
    }
}

/// A closing pool still times out the tasks it runs, so that a stuck one cannot hold the close
/// forever; the close then completes, and leaves no thread.
fn a_closing_pool_still_times_out_its_tasks(runtime: Runtime) {
    let p = prefix("tocl", runtime);
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .thread_name(&p)
        .build()
        .unwrap();
    let (task, _port, after) = spinning_with_timeout(&pool);
    let close = pool.close();
    assert_eq!(finish(task), Err(timed_out(after)));
    assert_eq!(within("close", move || close.wait()), Ok(()));
    assert_eq!(live_threads(&p), Vec::<String>::new());
}

/// `Task::abort` of a queued task removes it, from the queue or from the intake of a
/// saturated pool: it fails with `Aborted`, never runs, and the running task and its worker
/// carry on.
fn task_abort_removes_a_queued_task(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (running, port) = hold(&pool, 5);
    assert_eq!(next(&port), Ok(5));
    let queued = call::<u32>(&pool, "counter");
    // The pool is saturated now: this one waits in the intake, on its way to the queue.
    let later = call::<u32>(&pool, "counter");
    assert_eq!(pool.queue_size(), 2);

    later.abort();
    assert!(later.is_finished());
    assert_eq!(finish(later), Err(aborted(None)));
    assert_eq!(pool.queue_size(), 1);
    queued.abort();
    assert!(queued.is_finished());
    assert_eq!(finish(queued), Err(aborted(None)));
    assert_eq!(pool.queue_size(), 0);
    port.send(1).unwrap();
    assert_eq!(held(running).3, 1);
    assert_eq!(
        finish(call::<u32>(&pool, "counter")),
        Ok(0),
        "the aborted task never ran on the worker, which stayed"
    );
    pool.destroy().wait().unwrap();
}

/// `Task::abort_with` of a running task (no signal, no timeout): it fails at once with the
/// reason, and its worker is retired and replaced, as for a signal (a child is killed).
fn task_abort_of_a_running_task_replaces_its_worker(runtime: Runtime) {
    let p = prefix("tab", runtime);
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .thread_name(&p)
        .build()
        .unwrap();
    assert_eq!(finish(call::<u32>(&pool, "counter")), Ok(0));
    let (port, theirs) = tinypool::channel::<u32>();
    let task = pool.run_with::<(), _>((), named("spin").channel(theirs));
    assert_eq!(next(&port), Ok(0));
    let before = pids(&pool, runtime);

    task.abort_with("enough");
    assert!(task.is_finished(), "an abort resolves the task at once");
    assert_eq!(pool.threads(), 1, "a replacement counts at once");
    assert_eq!(finish(task), Err(aborted(Some("enough"))));
    assert_eq!(next(&port), Err(Error::Disconnected));
    assert_eq!(
        finish(call::<u32>(&pool, "counter")),
        Ok(0),
        "a fresh worker"
    );
    for pid in before {
        eventually("the aborted child is reaped", || procfs::gone(pid));
    }
    eventually("the aborted worker's thread ends", || live(&p) == 1);
    pool.destroy().wait().unwrap();
}

/// `Task::abort` after the task resolved changes nothing: the result stays, and the worker
/// too.
fn task_abort_after_the_result_changes_nothing(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let first: String = finish(call(&pool, "identity")).unwrap();
    let task = pool.run::<i32, _>((20, 22));
    eventually("the task resolves", || task.is_finished());
    task.abort();
    task.abort_with("too late");
    assert_eq!(finish(task), Ok(42));
    let again: String = finish(call(&pool, "identity")).unwrap();
    assert_eq!(again, first, "the worker stayed");
    pool.destroy().wait().unwrap();
}

/// `Task::abort` of a task taken by a busy worker with `concurrent_tasks_per_worker` 2 (sent
/// ahead to a child, or in a thread's inbox) fails it at once, and nothing else: the task
/// running on that worker finishes with its value, on the same worker.
fn task_abort_of_a_task_sent_ahead_fails_only_it(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let before: String = finish(call(&pool, "identity")).unwrap();
    let meeting = Meeting::new();
    let first = meeting.task(&pool);
    let first_stream = meeting.started();
    // The worker holds the first task and takes these two together once it is done: the
    // second runs, the third is sent to the child behind it.
    let second = meeting.task(&pool);
    let third = pool.run_with::<i32, _>((6, 7), named("multiply"));
    release(first_stream, 1);
    assert_eq!(finish(first), Ok(Ok(1)));
    let second_stream = meeting.started();

    third.abort();
    assert!(third.is_finished());
    assert_eq!(finish(third), Err(aborted(None)));
    release(second_stream, 2);
    assert_eq!(finish(second), Ok(Ok(2)));
    let after: String = finish(call(&pool, "identity")).unwrap();
    assert_eq!(after, before, "the worker was not stopped");
    pool.destroy().wait().unwrap();
}

// ---- Threads only -------------------------------------------------------------------------------

/// A timed-out function sees `worker::aborted()` turn true and can return early; its thread
/// then leaves, while the pool served the next task on a replacement.
fn a_timed_out_function_sees_aborted_and_its_thread_leaves() {
    const P: &str = "to-seen";
    let saw_abort = Counter::new();
    let exports = {
        let saw_abort = saw_abort.clone();
        Exports::new()
            .export("spin", move |()| {
                worker::port::<u32>().unwrap().send(0).unwrap();
                while !worker::aborted() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                saw_abort.bump();
            })
            .export("probe", |()| (worker::id(), worker::aborted()))
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .thread_name(P)
        .build()
        .unwrap();
    let (task, _port, after) = spinning_with_timeout(&pool);
    assert_eq!(finish(task), Err(timed_out(after)));
    saw_abort.wait_for(1);
    let probe = pool.run_with::<(Option<usize>, bool), _>((), named("probe"));
    assert_eq!(finish(probe), Ok((Some(1), false)), "a fresh worker");
    eventually("the timed-out thread leaves", || live(P) == 1);
    pool.destroy().wait().unwrap();
    assert_eq!(live_threads(P), Vec::<String>::new());
}

/// `Task::abort` of a running task whose worker had taken another (room for two): the worker
/// is retired, and the task it had taken goes back to the head of the queue, ahead of the
/// later ones, to run on the replacement.
fn task_abort_requeues_what_the_retired_worker_had_taken_in_order() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (started, gate) = (Counter::new(), Gate::new());
    let exports = {
        let (log, started, gate) = (log.clone(), started.clone(), gate.clone());
        Exports::new().export_default(move |i: u32| {
            log.lock().unwrap().push(i);
            started.bump();
            if i == 0 {
                gate.wait();
            }
            (i, marker())
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    let stuck = pool.run::<(u32, u64), _>(0u32);
    started.wait_for(1);
    let taken = pool.run::<(u32, u64), _>(1u32);
    let queued = pool.run::<(u32, u64), _>(2u32);
    assert_eq!(loads(&pool), [2], "the worker took the second task");
    assert_eq!(pool.queue_size(), 1);

    stuck.abort();
    assert_eq!(finish(stuck), Err(aborted(None)));
    let (one, on) = finish(taken).unwrap();
    let (two, also_on) = finish(queued).unwrap();
    assert_eq!((one, two), (1, 2));
    assert_eq!(on, also_on, "both ran on the replacement");
    assert_eq!(*log.lock().unwrap(), [0, 1, 2], "in their order");
    gate.open();
    pool.destroy().wait().unwrap();
}
