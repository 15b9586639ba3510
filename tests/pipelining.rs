//! Child processes take `concurrent_tasks_per_worker` tasks at once: the driver sends their
//! `RUN` frames together and the child runs them in order. These tests pin what a user relies
//! on: every task still runs exactly once and resolves with its own outcome, when the child
//! dies in the middle of a batch, when it passes its memory limit, with payloads larger than
//! the socket's buffers, and next to a task with a channel. At one task per child, a child is
//! sent its next task while it runs one (when tasks are queued): such a task still runs once,
//! in order, and never waits behind a slow task while another worker is free.
//!
//! The pools here re-execute this test binary as their workers, which serve [`exports`] before
//! the harness starts (`tinypool::test_workers!`). Tasks are held by *gates*, two FIFOs per
//! task (`common::fifo`): the task writes a byte to `started` (the test reads it: it is
//! running) and then waits for the test to open and close `go`.

mod common;

use std::fs;
use std::path::PathBuf;

use tinypool::{worker, Builder, Error, Exports, Pool, RunOptions, Runtime, Task};

use common::fifo::{self, Gate};
use common::finish;

tinypool::test_workers!(exports);

fn exports() -> Exports {
    Exports::new()
        .export("gate", fifo::gate)
        .export("record", record)
        .export("exit", |code: i32| -> u32 { std::process::exit(code) })
        .export("leak", leak)
        .export("echo", |bytes: Vec<u8>| bytes)
        .export("talk", |()| -> u32 {
            let port = worker::port::<u32>().expect("a channel");
            let message = port.recv().expect("the test sends one message");
            port.send(message + 1).expect("the test listens");
            message
        })
}

/// Appends `tag pid` to the log at `path`; returns its pid.
fn record((path, tag): (String, u32)) -> u32 {
    fifo::append(&path, tag)
}

/// Holds `mib` MiB of touched memory for the rest of the process; returns its pid.
fn leak(mib: usize) -> u32 {
    let memory = vec![1u8; mib << 20];
    std::hint::black_box(Box::leak(memory.into_boxed_slice()));
    std::process::id()
}

// ---- Helpers --------------------------------------------------------------------------------

/// A pool of one child-process worker that holds up to `concurrency` tasks.
fn one_worker(concurrency: usize) -> Builder {
    Pool::builder()
        .runtime(Runtime::ChildProcess)
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(concurrency)
}

/// A pool of two child-process workers, one task at a time each.
fn two_workers() -> Builder {
    Pool::builder()
        .runtime(Runtime::ChildProcess)
        .min_threads(2)
        .max_threads(2)
        .concurrent_tasks_per_worker(1)
}

/// A test's pool, scratch directory and log, with a first task held at its gate: the tasks
/// submitted next wait in the busy worker's hands, and go to its child together once the
/// first one ends ([`Scene::release`]).
struct Scene {
    pool: Pool,
    dir: PathBuf,
    log: PathBuf,
    first: Option<Gate>,
}

impl Scene {
    fn new(builder: Builder) -> Scene {
        let pool = builder.build().unwrap();
        let dir = fifo::scratch("pipelining");
        let first = Gate::new(&pool, &dir, "first");
        first.wait_started();
        Scene {
            pool,
            log: dir.join("log"),
            dir,
            first: Some(first),
        }
    }

    /// A task that logs `tag` and its pid.
    fn record(&self, tag: u32) -> Task<u32> {
        let arg = (self.log.to_string_lossy().into_owned(), tag);
        self.pool
            .run_with::<u32, _>(arg, RunOptions::new().name("record"))
    }

    fn records(&self, tags: std::ops::RangeInclusive<u32>) -> Vec<Task<u32>> {
        tags.map(|tag| self.record(tag)).collect()
    }

    /// Lets the first task end; returns the pid of the child it ran in.
    fn release(&mut self) -> u32 {
        let first = self.first.take().expect("released once");
        first.open();
        finish(first.task).unwrap()
    }

    /// The log's lines as (tag, pid), in the order they were written.
    fn log(&self) -> Vec<(u32, u32)> {
        fifo::read_log(&self.log)
    }

    fn end(self) {
        self.pool.destroy().wait().unwrap();
        fs::remove_dir_all(self.dir).unwrap();
    }
}

// ---- Tests ----------------------------------------------------------------------------------

/// Tasks a worker held when it got to them go to its child together: they count as started,
/// so `cancel_pending_tasks` leaves them be, and they run in order, each once.
#[test]
fn a_child_takes_its_tasks_at_once_and_runs_them_in_order() {
    let mut scene = Scene::new(one_worker(4));
    let second = Gate::new(&scene.pool, &scene.dir, "second");
    let records = scene.records(1..=2);
    assert_eq!(scene.pool.queue_size(), 0, "the busy worker took them");
    let pid = scene.release();
    second.wait_started();

    scene.pool.cancel_pending_tasks();
    second.open();
    assert_eq!(finish(second.task), Ok(pid));
    for task in records {
        assert_eq!(
            finish(task),
            Ok(pid),
            "sent with the second gate: not cancelled"
        );
    }
    assert_eq!(scene.log(), [(1, pid), (2, pid)]);
    scene.end();
}

/// A child that dies in the middle of a batch fails only the task it died in; the tasks sent
/// after it never started, and run once, on its replacement.
#[test]
fn a_child_dying_mid_batch_fails_only_its_own_task() {
    let mut scene = Scene::new(one_worker(4));
    let exit = scene
        .pool
        .run_with::<u32, _>(3, RunOptions::new().name("exit"));
    let records = scene.records(1..=3);
    let old = scene.release();

    match finish(exit) {
        Err(Error::WorkerExited { code, .. }) => assert_eq!(code, Some(3)),
        other => panic!("expected WorkerExited, got {other:?}"),
    }
    let pids: Vec<u32> = records.into_iter().map(|t| finish(t).unwrap()).collect();
    assert!(pids.iter().all(|&pid| pid != old), "ran on the replacement");
    let lines = scene.log();
    assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        lines.iter().all(|l| l.1 != old),
        "none ran in the dead child"
    );
    scene.end();
}

/// A child that passes `max_memory_limit_before_recycle` with tasks sent after the one that
/// passed it runs those too (they are in its socket already), and is then replaced.
#[test]
fn a_child_over_its_memory_limit_finishes_its_batch_then_is_replaced() {
    let mut scene = Scene::new(one_worker(4).max_memory_limit_before_recycle(64 << 20));
    let leak = scene
        .pool
        .run_with::<u32, _>(128usize, RunOptions::new().name("leak"));
    let records = scene.records(1..=2);
    let old = scene.release();

    assert_eq!(finish(leak), Ok(old));
    for task in records {
        assert_eq!(
            finish(task),
            Ok(old),
            "sent in the same batch: ran in the same child"
        );
    }
    assert_eq!(scene.log(), [(1, old), (2, old)]);
    let next = finish(scene.record(3)).unwrap();
    assert_ne!(next, old, "then the child was replaced");
    scene.end();
}

/// Many megabytes in flight both ways at once: a driver whose socket is full keeps reading
/// results, so neither side waits for the other forever.
#[test]
fn batches_larger_than_the_socket_buffers_go_through() {
    let pool = one_worker(8).build().unwrap();
    let payload: Vec<u8> = (0..1 << 20).map(|k| (k & 0xff) as u8).collect();
    let tasks: Vec<Task<Vec<u8>>> = (0..32)
        .map(|_| pool.run_with(payload.clone(), RunOptions::new().name("echo")))
        .collect();
    for task in tasks {
        assert!(
            finish(task).unwrap() == payload,
            "the payload came back whole"
        );
    }
    pool.destroy().wait().unwrap();
}

/// A task with a channel runs alone in its child (its messages follow its `RUN` frame), with
/// tasks before and after it in the same worker's hands.
#[test]
fn a_task_with_a_channel_runs_alone_between_batched_tasks() {
    let mut scene = Scene::new(one_worker(4));
    let before = scene.record(1);
    let (ours, theirs) = tinypool::channel::<u32>();
    let talk = scene
        .pool
        .run_with::<u32, _>((), RunOptions::new().name("talk").channel(theirs));
    let after = scene.record(2);
    let pid = scene.release();

    ours.send(41).unwrap();
    assert_eq!(ours.recv(), Ok(42));
    assert_eq!(finish(talk), Ok(41));
    assert_eq!((finish(before), finish(after)), (Ok(pid), Ok(pid)));
    assert_eq!(scene.log(), [(1, pid), (2, pid)]);
    scene.end();
}

/// Many small tasks with a deep pipeline: every result is its own.
#[test]
fn many_small_tasks_through_two_pipelined_children_resolve_each_with_its_value() {
    let pool = Pool::builder()
        .runtime(Runtime::ChildProcess)
        .min_threads(2)
        .max_threads(2)
        .concurrent_tasks_per_worker(32)
        .build()
        .unwrap();
    let tasks: Vec<Task<Vec<u8>>> = (0..20_000u32)
        .map(|i| pool.run_with(i.to_le_bytes().to_vec(), RunOptions::new().name("echo")))
        .collect();
    for (i, task) in (0u32..).zip(tasks) {
        assert_eq!(finish(task), Ok(i.to_le_bytes().to_vec()));
    }
    pool.destroy().wait().unwrap();
}

/// At one task per child, the next task goes to the child while it runs one: they still run
/// in order, each once.
#[test]
fn tasks_sent_ahead_run_in_order_each_once() {
    let mut scene = Scene::new(one_worker(1));
    let records = scene.records(1..=50);
    let pid = scene.release();
    for task in records {
        assert_eq!(finish(task), Ok(pid));
    }
    let lines = scene.log();
    assert_eq!(
        lines.iter().map(|l| l.0).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    scene.end();
}

/// Two workers, both held at gates, and tasks queued behind them: `a`'s worker, let go, takes
/// the slow task and, ahead, the first record. The slow task does not return; that record
/// must not wait for it: it runs on `b`'s worker once that one is free, with all the others.
#[test]
fn a_task_sent_ahead_behind_a_slow_one_runs_on_the_next_free_worker() {
    let pool = two_workers().build().unwrap();
    let dir = fifo::scratch("pipelining");
    let (a, b) = (Gate::new(&pool, &dir, "a"), Gate::new(&pool, &dir, "b"));
    a.wait_started();
    b.wait_started();
    let slow = Gate::new(&pool, &dir, "slow");
    let log = dir.join("log").to_string_lossy().into_owned();
    let records: Vec<Task<u32>> = (1..=4u32)
        .map(|tag| pool.run_with((log.clone(), tag), RunOptions::new().name("record")))
        .collect();
    a.open();
    let first = finish(a.task).unwrap();
    slow.wait_started();
    b.open();
    let second = finish(b.task).unwrap();

    for task in records {
        assert_eq!(finish(task), Ok(second), "ran on the free worker");
    }
    // Each once. (The one taken back may run after the others: `b`'s worker may have taken
    // those before the slow task's driver gave it back, a spin later.)
    let mut lines: Vec<String> = (fs::read_to_string(dir.join("log")).unwrap().lines())
        .map(str::to_owned)
        .collect();
    lines.sort_unstable();
    let expected: Vec<String> = (1..=4).map(|tag| format!("{tag} {second}")).collect();
    assert_eq!(lines, expected);
    slow.open();
    assert_eq!(finish(slow.task), Ok(first));
    pool.destroy().wait().unwrap();
    fs::remove_dir_all(dir).unwrap();
}

/// A task sent ahead to a child that dies before it got to it never ran: it runs once,
/// elsewhere.
#[test]
fn a_task_sent_ahead_to_a_child_that_dies_runs_once_elsewhere() {
    let pool = two_workers().build().unwrap();
    let dir = fifo::scratch("pipelining");
    let (a, b) = (Gate::new(&pool, &dir, "a"), Gate::new(&pool, &dir, "b"));
    a.wait_started();
    b.wait_started();
    let exit = pool.run_with::<u32, _>(3, RunOptions::new().name("exit"));
    let log = dir.join("log").to_string_lossy().into_owned();
    let records: Vec<Task<u32>> = (1..=3u32)
        .map(|tag| pool.run_with((log.clone(), tag), RunOptions::new().name("record")))
        .collect();
    a.open();
    let dead = finish(a.task).unwrap();
    match finish(exit) {
        Err(Error::WorkerExited { code, .. }) => assert_eq!(code, Some(3)),
        other => panic!("expected WorkerExited, got {other:?}"),
    }
    b.open();
    finish(b.task).unwrap();
    for task in records {
        assert_ne!(finish(task).unwrap(), dead, "not in the dead child");
    }
    let mut tags: Vec<u32> = fs::read_to_string(dir.join("log"))
        .unwrap()
        .lines()
        .map(|line| line.split_once(' ').unwrap().0.parse().unwrap())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, [1, 2, 3], "each once");
    pool.destroy().wait().unwrap();
    fs::remove_dir_all(dir).unwrap();
}
