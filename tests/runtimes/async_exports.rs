//! Async exports (`Exports::export_async`): a worker keeps up to `concurrent_tasks_per_worker`
//! of their futures in flight, interleaved at their await points; aborting one drops its
//! future and leaves its worker and its siblings alone; `worker::port` and `worker::aborted`
//! are the task's own inside its future; a panic is `Panicked`; a setup cannot be async; with
//! the `tokio` feature, tokio's time and I/O work inside them.

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tinypool::{worker, AbortController, Error, Exports, Pool, Port, RunOptions, Runtime, Task};

use crate::common::{self, eventually, finish, next, yield_once};
use crate::{bodies, identity, Body};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            async_tasks_interleave_on_one_worker,
            aborting_an_async_task_leaves_its_worker_and_siblings_running,
            a_timeout_drops_an_async_task_and_keeps_its_worker,
            worker_aborted_is_the_async_task_own,
            a_panic_in_an_async_export_is_panicked,
            an_async_export_checks_its_types,
            sync_exports_still_run_beside_async_ones,
            tokio_time_and_io_work_inside_async_exports,
            a_child_that_dies_fails_every_async_task_it_ran,
            stats_time_every_async_task_whatever_order_it_ends_in,
            an_async_task_with_a_timeout_shares_its_worker_and_leaves_it_running,
            async_tasks_with_a_signal_or_timeout_still_interleave,
            a_serialize_that_sends_on_a_channel_of_the_same_worker_does_not_block_it,
            a_task_reaches_a_worker_left_with_room_after_its_queue_drained,
            the_answer_to_an_abort_read_as_its_worker_leaves_is_no_error_of_the_pool,
        ],
        threads: [
            an_async_setup_is_refused,
            an_aborted_async_task_alone_on_its_worker_has_its_future_dropped_at_once,
            tasks_ending_in_the_same_turn_as_the_awaited_one_are_published,
        ],
    }
}

/// The async functions both kinds of worker export (a child serves them beside `exports()`).
pub fn exports() -> Exports {
    Exports::new()
        // Announces its tag on its channel, then waits (without blocking its worker) for the
        // value to return.
        .export_async("async_hold", |tag: u32| async move {
            let port = worker::port::<u32>().map_err(|e| e.to_string())?;
            port.send(tag).map_err(|e| e.to_string())?;
            let value = port.recv_async().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((tag, identity(), value))
        })
        // Sleeps that many milliseconds without blocking its worker; returns its worker.
        .export_async("async_sleep", |ms: u64| async move {
            sleep(Duration::from_millis(ms)).await;
            identity()
        })
        // Never finishes.
        .export_async("async_forever", |()| std::future::pending::<u32>())
        // Spins in one poll until its task is aborted; then says whether it saw it.
        .export_async("async_spin", |()| async move {
            if let Ok(port) = worker::port::<u32>() {
                let _ = port.send(0);
            }
            while !worker::aborted() {
                std::hint::spin_loop();
            }
            true
        })
        .export_async("async_aborted", |()| async move {
            yield_once().await;
            (worker::aborted(), identity())
        })
        .export_async("async_panic", panicking)
        .export_async("async_double", |n: u32| async move { n * 2 })
        .export_async("async_setup", |()| async {})
        // Ends its (child) process after an await point, with this exit code. Never run by a
        // thread.
        .export_async("async_exit", |code: i32| async move {
            yield_once().await;
            exit_now(code)
        })
        // Says it started, then waits forever holding a guard that counts its drop in
        // `GUARDS_DROPPED` (in the process that runs it).
        .export_async("async_guarded", |()| async move {
            let guard = Guard;
            if let Ok(port) = worker::port::<u32>() {
                let _ = port.send(0);
            }
            std::future::pending::<()>().await;
            drop(guard);
            0u32
        })
        .export("sync_identity", |()| identity())
        .export_async("tokio_echo", tokio_echo)
        .export("talker", |talker: Talker| talker.0)
}

/// How many `async_guarded` futures were dropped in this process.
static GUARDS_DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Counts its drop in [`GUARDS_DROPPED`].
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        GUARDS_DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// The caller's side of a channel that a [`Talker`] sends on when serialized.
static TALK: Mutex<Option<Port<u32>>> = Mutex::new(None);

/// A value whose `Serialize` sends 7 on the channel in [`TALK`], if any: user code that talks
/// to another task while the pool encodes it.
#[derive(Deserialize)]
pub struct Talker(u32);

impl Serialize for Talker {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(port) = TALK.lock().unwrap().as_ref() {
            port.send(7).expect("the task listens");
        }
        serializer.serialize_u32(self.0)
    }
}

/// Ends the process (typed, for an export's result).
fn exit_now(code: i32) -> u32 {
    std::process::exit(code)
}

/// Panics, at once or after an await point.
async fn panicking(late: bool) -> u32 {
    if late {
        yield_once().await;
    }
    panic!("async export panicked")
}

/// A sleep that needs no reactor: a thread wakes the future.
fn sleep(duration: Duration) -> impl Future<Output = ()> {
    let state: Arc<Mutex<(bool, Option<Waker>)>> = Arc::default();
    let theirs = state.clone();
    std::thread::spawn(move || {
        std::thread::sleep(duration);
        let mut state = theirs.lock().unwrap();
        state.0 = true;
        if let Some(waker) = state.1.take() {
            waker.wake();
        }
    });
    poll_fn(move |cx| {
        let mut state = state.lock().unwrap();
        if state.0 {
            Poll::Ready(())
        } else {
            state.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    })
}

/// With the `tokio` feature: sleeps with tokio's timer, then sends `text` through a TCP
/// connection of 127.0.0.1 to itself and returns what came back. Without it: says so.
async fn tokio_echo(text: String) -> Result<String, String> {
    #[cfg(feature = "tokio")]
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tokio::time::sleep(Duration::from_millis(5)).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let (mut client, accepted) = tokio::join!(
            async { tokio::net::TcpStream::connect(address).await.unwrap() },
            async { listener.accept().await.unwrap().0 }
        );
        let (mut server, text) = (accepted, text);
        client
            .write_all(text.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        client.shutdown().await.map_err(|e| e.to_string())?;
        let mut received = String::new();
        server
            .read_to_string(&mut received)
            .await
            .map_err(|e| e.to_string())?;
        Ok(received)
    }
    #[cfg(not(feature = "tokio"))]
    {
        let _ = text;
        Err("built without the tokio feature".to_owned())
    }
}

/// Set in a child's environment: it serves [`exports`] too (see main.rs).
pub const ASYNC_ENV: &str = "TINYPOOL_TEST_ASYNC_EXPORTS";

/// A pool of one worker that holds up to `concurrency` tasks.
fn pool(runtime: Runtime, concurrency: usize) -> tinypool::Builder {
    let builder = common::builder(runtime, exports)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(concurrency);
    match runtime {
        Runtime::Threads => builder,
        _ => builder.env(ASYNC_ENV, "1"),
    }
}

type AsyncHeld = Result<(u32, String, u32), String>;

fn async_hold(pool: &Pool, tag: u32) -> (Task<AsyncHeld>, Port<u32>) {
    let (port, theirs) = tinypool::channel::<u32>();
    let task = pool.run_with(tag, RunOptions::new().name("async_hold").channel(theirs));
    (task, port)
}

/// Each task waits for a value its caller sends only once every task has started: on one
/// worker, that needs them all in flight together.
fn async_tasks_interleave_on_one_worker(runtime: Runtime) {
    let pool = pool(runtime, 8).build().unwrap();
    let tasks: Vec<_> = (0..8).map(|tag| async_hold(&pool, tag)).collect();
    for (tag, (_, port)) in tasks.iter().enumerate() {
        assert_eq!(next(port), Ok(tag as u32), "task {tag} started");
    }
    let mut workers = Vec::new();
    for (tag, (task, port)) in tasks.into_iter().enumerate().rev() {
        port.send(100 + tag as u32).unwrap();
        let (got, worker, value) = finish(task).unwrap().unwrap();
        assert_eq!((got, value), (tag as u32, 100 + tag as u32));
        workers.push(worker);
    }
    workers.dedup();
    assert_eq!(workers.len(), 1, "one worker ran them all");
    common::destroy(pool);
}

/// A worker that was full (tasks queued behind it) and then drained its queue waits on its
/// async tasks with room to spare: a task submitted then reaches it at once, though nothing
/// it holds finishes (here, a future that never does).
fn a_task_reaches_a_worker_left_with_room_after_its_queue_drained(runtime: Runtime) {
    let pool = pool(runtime, 2).build().unwrap();
    let forever: Task<u32> = pool.run_with((), RunOptions::new().name("async_forever"));
    let (held, port) = async_hold(&pool, 0);
    assert_eq!(next(&port), Ok(0), "the worker holds both: it is full");
    let double = |n: u32| pool.run_with::<u32, _>(n, RunOptions::new().name("async_double"));
    let queued = double(1);
    assert_eq!(pool.queue_size(), 1, "queued behind the full worker");
    port.send(5).unwrap();
    assert_eq!(finish(held).unwrap().unwrap().2, 5);
    assert_eq!(finish(queued), Ok(2));
    // Only `forever` is left on the worker, which waits on it.
    assert_eq!(finish(double(3)), Ok(6));
    let sync: Result<String, Error> =
        finish(pool.run_with((), RunOptions::new().name("sync_identity")));
    assert!(sync.is_ok(), "{sync:?}");
    common::destroy(pool);
    assert_eq!(finish(forever), Err(Error::Terminated));
}

/// With `record_timing`, every async task is timed, those that end before older ones too: the
/// run and wait summaries count all of them, and a task's run time covers its wait for its
/// value.
fn stats_time_every_async_task_whatever_order_it_ends_in(runtime: Runtime) {
    let pool = pool(runtime, 8).record_timing(true).build().unwrap();
    let tasks: Vec<_> = (0..8).map(|tag| async_hold(&pool, tag)).collect();
    for (tag, (_, port)) in tasks.iter().enumerate() {
        assert_eq!(next(port), Ok(tag as u32), "task {tag} started");
    }
    std::thread::sleep(Duration::from_millis(20)); // Every task has run at least this long.
    for (tag, (task, port)) in tasks.into_iter().enumerate().rev() {
        port.send(tag as u32).unwrap();
        finish(task).unwrap().unwrap();
    }
    let stats = pool.stats();
    assert_eq!(stats.succeeded(), 8);
    assert_eq!(stats.run_time.count, 8, "{stats:?}");
    assert_eq!(stats.wait_time.count, 8, "{stats:?}");
    assert!(stats.run_time.min >= Duration::from_millis(20), "{stats:?}");
    common::destroy(pool);
}

fn aborting_an_async_task_leaves_its_worker_and_siblings_running(runtime: Runtime) {
    let pool = pool(runtime, 4).build().unwrap();
    let before: String =
        finish(pool.run_with((), RunOptions::new().name("sync_identity"))).unwrap();
    let tasks: Vec<_> = (0..3).map(|tag| async_hold(&pool, tag)).collect();
    for (tag, (_, port)) in tasks.iter().enumerate() {
        assert_eq!(next(port), Ok(tag as u32));
    }
    let mut tasks = tasks.into_iter();
    let (first, first_port) = tasks.next().unwrap();
    let (second, second_port) = tasks.next().unwrap();
    let (third, third_port) = tasks.next().unwrap();
    second.abort();
    assert_eq!(finish(second), Err(Error::Aborted { reason: None }));
    // Its future was dropped: its side of the channel is gone.
    assert_eq!(next(&second_port), Err(Error::Disconnected));
    third_port.send(3).unwrap();
    first_port.send(1).unwrap();
    assert_eq!(finish(third).unwrap().unwrap(), (2, before.clone(), 3));
    assert_eq!(finish(first).unwrap().unwrap(), (0, before.clone(), 1));
    let after: String = finish(pool.run_with((), RunOptions::new().name("sync_identity"))).unwrap();
    assert_eq!(after, before, "the same worker serves on");
    assert_eq!(pool.workers().len(), 1);
    common::destroy(pool);
}

fn a_timeout_drops_an_async_task_and_keeps_its_worker(runtime: Runtime) {
    let pool = pool(runtime, 4).build().unwrap();
    let before: String =
        finish(pool.run_with((), RunOptions::new().name("sync_identity"))).unwrap();
    let (sibling, port) = async_hold(&pool, 7);
    assert_eq!(next(&port), Ok(7));
    let options = RunOptions::new()
        .name("async_forever")
        .timeout(Duration::from_millis(20));
    let forever: Task<u32> = pool.run_with((), options);
    assert_eq!(
        finish(forever),
        Err(Error::TimedOut {
            after: Duration::from_millis(20)
        })
    );
    port.send(8).unwrap();
    assert_eq!(finish(sibling).unwrap().unwrap(), (7, before.clone(), 8));
    let after: String = finish(pool.run_with((), RunOptions::new().name("sync_identity"))).unwrap();
    assert_eq!(after, before, "the same worker serves on");
    common::destroy(pool);
}

/// An async task that sees its own abort returns; the next task on the same worker is not
/// aborted: the flag is the task's, not its worker's.
fn worker_aborted_is_the_async_task_own(runtime: Runtime) {
    let pool = pool(runtime, 4).build().unwrap();
    let (started, theirs) = tinypool::channel::<u32>();
    let spinning: Task<bool> =
        pool.run_with((), RunOptions::new().name("async_spin").channel(theirs));
    assert_eq!(next(&started), Ok(0));
    spinning.abort();
    assert_eq!(finish(spinning), Err(Error::Aborted { reason: None }));
    let (aborted, _) =
        finish(pool.run_with::<(bool, String), _>((), RunOptions::new().name("async_aborted")))
            .unwrap();
    assert!(!aborted, "the next task is not aborted");
    eventually("the worker is idle again", || {
        pool.workers().iter().all(|worker| worker.running == 0)
    });
    assert_eq!(pool.workers().len(), 1, "its worker was not retired");
    common::destroy(pool);
}

fn a_panic_in_an_async_export_is_panicked(runtime: Runtime) {
    let pool = pool(runtime, 4).build().unwrap();
    for late in [false, true] {
        let task: Task<u32> = pool.run_with(late, RunOptions::new().name("async_panic"));
        match finish(task) {
            Err(Error::Panicked { message, .. }) => {
                assert_eq!(message, "async export panicked", "late: {late}");
            }
            other => panic!("expected a panic, got {other:?}"),
        }
    }
    let doubled: u32 =
        finish(pool.run_with(21u32, RunOptions::new().name("async_double"))).unwrap();
    assert_eq!(doubled, 42, "the worker serves on");
    common::destroy(pool);
}

fn an_async_export_checks_its_types(runtime: Runtime) {
    let pool = pool(runtime, 4).build().unwrap();
    let wrong: Task<u32> = pool.run_with(21u64, RunOptions::new().name("async_double"));
    assert!(matches!(finish(wrong), Err(Error::TypeMismatch { .. })));
    let wrong: Task<String> = pool.run_with(21u32, RunOptions::new().name("async_double"));
    assert!(matches!(finish(wrong), Err(Error::TypeMismatch { .. })));
    common::destroy(pool);
}

/// An async setup or teardown is refused at `build`, naming the option and the export.
fn an_async_setup_is_refused() {
    for option in ["setup", "teardown"] {
        let builder = pool(Runtime::Threads, 4).min_threads(0);
        let builder = match option {
            "setup" => builder.setup("async_setup"),
            _ => builder.teardown("async_setup"),
        };
        match builder.build() {
            Err(Error::InvalidOptions(message)) => {
                assert!(message.starts_with(option), "{message}");
                assert!(
                    message.contains("\"async_setup\" is an async export"),
                    "{message}"
                );
            }
            other => panic!("expected InvalidOptions for an async {option}, got {other:?}"),
        }
    }
}

/// The task aborted is the one its worker waits for, and no task follows: its future is
/// dropped all the same, not kept until the worker's next task. (Threads only: the future's
/// drop is counted in this process. The pool closes the task's channel either way, so that
/// says nothing of the future.)
fn an_aborted_async_task_alone_on_its_worker_has_its_future_dropped_at_once() {
    let pool = pool(Runtime::Threads, 4).build().unwrap();
    let (started, theirs) = tinypool::channel::<u32>();
    let task: Task<u32> =
        pool.run_with((), RunOptions::new().name("async_guarded").channel(theirs));
    assert_eq!(next(&started), Ok(0));
    assert_eq!(GUARDS_DROPPED.load(Ordering::SeqCst), 0, "it waits");
    task.abort();
    assert_eq!(finish(task), Err(Error::Aborted { reason: None }));
    eventually("its future is dropped", || {
        GUARDS_DROPPED.load(Ordering::SeqCst) == 1
    });
    assert_eq!(pool.workers().len(), 1, "its worker was not retired");
    common::destroy(pool);
}

/// A gate async tasks wait at: opened once, it wakes every task waiting.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    waiting: Mutex<Vec<Waker>>,
}

impl Gate {
    fn pass(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            let mut waiting = self.waiting.lock().unwrap();
            if self.open.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            waiting.push(cx.waker().clone());
            Poll::Pending
        })
    }

    fn open(&self) {
        let mut waiting = self.waiting.lock().unwrap();
        self.open.store(true, Ordering::SeqCst);
        waiting.drain(..).for_each(Waker::wake);
    }
}

/// Tasks A, D, B, C on one worker, in that order; the worker waits for A. C's poll blocks
/// until A's and B's gate has opened, so that both are woken before the worker's next turn,
/// which ends both: B, staged in the turn that ended A, is published then, not once D (which
/// waits for the test) ends.
fn tasks_ending_in_the_same_turn_as_the_awaited_one_are_published() {
    let gate = Arc::new(Gate::default());
    let later = Arc::new(Gate::default());
    let (polled, polled_seen) = std::sync::mpsc::channel::<()>();
    let (go, gone) = std::sync::mpsc::channel::<()>();
    let (polled, gone) = (Mutex::new(polled), Arc::new(Mutex::new(gone)));
    let exports = Exports::new()
        .export_async("gated", {
            let gate = gate.clone();
            move |tag: u32| {
                let gate = gate.clone();
                async move {
                    gate.pass().await;
                    tag
                }
            }
        })
        .export_async("later", {
            let later = later.clone();
            move |tag: u32| {
                let later = later.clone();
                async move {
                    later.pass().await;
                    tag
                }
            }
        })
        // Blocks inside its first poll until the test lets it go.
        .export_async("blocker", move |tag: u32| {
            let (polled, gone) = (polled.lock().unwrap().clone(), gone.clone());
            poll_fn(move |_| {
                polled.send(()).unwrap();
                gone.lock().unwrap().recv().unwrap();
                Poll::Ready(tag)
            })
        });
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(8)
        .build()
        .unwrap();
    let run =
        |name: &'static str, tag: u32| pool.run_with::<u32, _>(tag, RunOptions::new().name(name));
    let a = run("gated", 1);
    let d = run("later", 2);
    let b = run("gated", 3);
    // All three wait at their gates (the rings that brought them are taken) before C comes.
    let waiting = |gate: &Gate| gate.waiting.lock().unwrap().len();
    eventually("A, D and B wait", || {
        waiting(&gate) == 2 && waiting(&later) == 1
    });
    let c = run("blocker", 4);
    polled_seen.recv().unwrap(); // C is being polled: the worker is inside its turn.
    gate.open(); // Wakes A and B, for the next turn.
    go.send(()).unwrap();
    assert_eq!(finish(c), Ok(4));
    assert_eq!(finish(a), Ok(1));
    assert_eq!(finish(b), Ok(3), "published while D still waits");
    assert!(!d.is_finished());
    later.open();
    assert_eq!(finish(d), Ok(2));
    common::destroy(pool);
}

/// An async task aborted while its worker waits for it alone: the worker (a child's driver)
/// tells its child and goes idle, and the child's answer to that abort is still unread when
/// the worker leaves (the pool closed). That answer is the task's, which resolved at its
/// abort, not a teardown's failure: `on_error` hears nothing. (It heard `Aborted`, as a
/// protocol error, and the panics of tasks aborted as they panicked.)
fn the_answer_to_an_abort_read_as_its_worker_leaves_is_no_error_of_the_pool(runtime: Runtime) {
    let (errors, hook) = common::collect_errors();
    let pool = pool(runtime, 4).on_error(hook).build().unwrap();
    let (task, port) = async_hold(&pool, 1);
    assert_eq!(next(&port), Ok(1), "it started");
    task.abort();
    assert_eq!(finish(task), Err(Error::Aborted { reason: None }));
    // Closing lets the worker look at its abort (and tell its child) before it leaves.
    assert_eq!(
        common::within("the close", {
            let pool = pool.clone();
            move || pool.close().wait()
        }),
        Ok(())
    );
    assert_eq!(*errors.lock().unwrap(), []);
    common::destroy(pool);
}

/// A sync export's task runs on a worker with async tasks in flight, and they finish after.
fn sync_exports_still_run_beside_async_ones(runtime: Runtime) {
    let pool = pool(runtime, 4).build().unwrap();
    let (held, port) = async_hold(&pool, 1);
    assert_eq!(next(&port), Ok(1));
    let sync: String = finish(pool.run_with((), RunOptions::new().name("sync_identity"))).unwrap();
    port.send(2).unwrap();
    assert_eq!(finish(held).unwrap().unwrap(), (1, sync, 2));
    common::destroy(pool);
}

fn tokio_time_and_io_work_inside_async_exports(runtime: Runtime) {
    let pool = pool(runtime, 4).build().unwrap();
    let tasks: Vec<Task<Result<String, String>>> = (0..4)
        .map(|n| pool.run_with(format!("hello {n}"), RunOptions::new().name("tokio_echo")))
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        let echoed = finish(task).unwrap();
        if cfg!(feature = "tokio") {
            assert_eq!(echoed, Ok(format!("hello {n}")));
        } else {
            assert_eq!(echoed, Err("built without the tokio feature".to_owned()));
        }
    }
    common::destroy(pool);
}

/// A child that dies with async tasks in flight fails them all (they had started: none is
/// run again), and a new child serves on. A worker thread cannot die alone: nothing to check.
fn a_child_that_dies_fails_every_async_task_it_ran(runtime: Runtime) {
    if runtime == Runtime::Threads {
        return;
    }
    let pool = pool(runtime, 4).build().unwrap();
    let before: String =
        finish(pool.run_with((), RunOptions::new().name("sync_identity"))).unwrap();
    let held: Vec<_> = (0..2).map(|tag| async_hold(&pool, tag)).collect();
    for (tag, (_, port)) in held.iter().enumerate() {
        assert_eq!(next(port), Ok(tag as u32));
    }
    let exit: Task<u32> = pool.run_with(3i32, RunOptions::new().name("async_exit"));
    let died = |outcome: Result<_, Error>| match outcome {
        Err(Error::WorkerExited { code, .. }) => assert_eq!(code, Some(3)),
        other => panic!("expected WorkerExited, got {other:?}"),
    };
    died(finish(exit).map(drop));
    for (task, _) in held {
        died(finish(task).map(drop));
    }
    let after: String = finish(pool.run_with((), RunOptions::new().name("sync_identity"))).unwrap();
    assert_ne!(after, before, "a new child serves");
}

/// A signal or a timeout does not make an async task run alone: tasks with one are all in
/// flight together on one worker (each waits for a value sent once every one has started).
fn async_tasks_with_a_signal_or_timeout_still_interleave(runtime: Runtime) {
    let pool = pool(runtime, 8).build().unwrap();
    let controller = AbortController::new();
    let tasks: Vec<_> = (0..8u32)
        .map(|tag| {
            let (port, theirs) = tinypool::channel::<u32>();
            let options = RunOptions::new().name("async_hold").channel(theirs);
            let options = if tag % 2 == 0 {
                options.timeout(Duration::from_secs(600))
            } else {
                options.signal(controller.signal())
            };
            (pool.run_with::<AsyncHeld, _>(tag, options), port)
        })
        .collect();
    for (tag, (_, port)) in tasks.iter().enumerate() {
        assert_eq!(
            next(port),
            Ok(tag as u32),
            "task {tag} started beside the others"
        );
    }
    for (tag, (task, port)) in tasks.into_iter().enumerate().rev() {
        port.send(100 + tag as u32).unwrap();
        let (got, _, value) = finish(task).unwrap().unwrap();
        assert_eq!((got, value), (tag as u32, 100 + tag as u32));
    }
    assert_eq!(pool.workers().len(), 1);
    common::destroy(pool);
}

/// An async task with a timeout shares its worker (a child's too, whose async exports only its
/// `HELLO` names): it starts while a sibling is in flight, times out there (its future
/// dropped), and the sibling then finishes on the same worker, which never left.
fn an_async_task_with_a_timeout_shares_its_worker_and_leaves_it_running(runtime: Runtime) {
    let exits = Arc::new(AtomicUsize::new(0));
    let counted = exits.clone();
    let pool = pool(runtime, 2)
        .on_worker_exit(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let before: String =
        finish(pool.run_with((), RunOptions::new().name("sync_identity"))).unwrap();
    let (sibling, port) = async_hold(&pool, 1);
    assert_eq!(next(&port), Ok(1));
    let (timed_port, theirs) = tinypool::channel::<u32>();
    let after = Duration::from_secs(1);
    let options = RunOptions::new()
        .name("async_hold")
        .channel(theirs)
        .timeout(after);
    let timed: Task<AsyncHeld> = pool.run_with(2u32, options);
    assert_eq!(next(&timed_port), Ok(2), "it started beside its sibling");
    assert_eq!(finish(timed), Err(Error::TimedOut { after }));
    assert_eq!(
        next(&timed_port),
        Err(Error::Disconnected),
        "its future was dropped"
    );
    port.send(3).unwrap();
    assert_eq!(finish(sibling).unwrap().unwrap(), (1, before.clone(), 3));
    let same: String = finish(pool.run_with((), RunOptions::new().name("sync_identity"))).unwrap();
    assert_eq!(same, before, "the same worker serves on");
    assert_eq!(exits.load(Ordering::SeqCst), 0, "no worker left");
    common::destroy(pool);
}

/// An argument's `Serialize` runs on the pool's side, for a child: when it sends on the channel
/// of a task running in that same child, its message goes out and the argument follows, on a
/// worker that serves on (the message's bridge and the argument share the child's channel).
fn a_serialize_that_sends_on_a_channel_of_the_same_worker_does_not_block_it(runtime: Runtime) {
    let pool = pool(runtime, 2).build().unwrap();
    let (held, port) = async_hold(&pool, 1);
    assert_eq!(next(&port), Ok(1), "the task started");
    *TALK.lock().unwrap() = Some(port.clone());
    let talked = finish(pool.run_with::<u32, _>(Talker(5), RunOptions::new().name("talker")));
    // The channel must not outlive the test in a static: it holds its bridge to the child.
    *TALK.lock().unwrap() = None;
    assert_eq!(talked, Ok(5));
    // Threads move the argument: nothing was serialized, nothing sent.
    if runtime == Runtime::Threads {
        port.send(7).expect("the task listens");
    }
    let (tag, _, value) = finish(held).unwrap().unwrap();
    assert_eq!((tag, value), (1, 7));
    assert_eq!(
        finish(pool.run_with::<u32, _>(Talker(6), RunOptions::new().name("talker"))),
        Ok(6)
    );
    drop(port);
    common::destroy(pool);
}
