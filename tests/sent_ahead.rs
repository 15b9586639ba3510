//! Tasks sent ahead: at one task per child, while tasks are queued, a child's driver sends it
//! the next task while it runs one, marked in a claim word the child claims before running it;
//! the driver takes it back when the task before it is slow, for another worker. These tests
//! hold a task *on its way*, marked ahead and not yet sent, and do to the pool what a user may
//! do meanwhile: abort the task before it, let a worker leave, have the slow task say something
//! first. Each checks what the pool promises without sending ahead: an aborted running task's
//! child is stopped, and no task waits behind a slow one while a worker is free, or could be.
//!
//! The pools here re-execute this test binary as their workers (`tinypool::test_workers!`).
//! Tasks are held by FIFO gates (`common::fifo`), and a task is held on its way by an argument
//! whose encoding, done by its driver once the task is marked ahead, waits on a FIFO ([`Held`]).
//!
//! Linux only: tasks go ahead through the rings (Linux, Windows), and the gates are FIFOs.
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use tinypool::{Builder, Error, Exports, Pool, RunOptions, Runtime, Task};

use common::fifo::{self, Gate};
use common::{finish, Counter};

tinypool::test_workers!(exports);

fn exports() -> Exports {
    Exports::new()
        .export("gate", fifo::gate)
        .export("held_gate", |held: Held<String>| fifo::gate(held.value))
        .export("caught_then_gate", caught_then_gate)
        .export("record", |(log, tag): (String, u32)| {
            fifo::append(&log, tag)
        })
        .export("held_record", |held: Held<(String, u32)>| {
            fifo::append(&held.value.0, held.value.1)
        })
        .export("lie_in_claims", lie_in_claims)
}

/// A hostile worker's lie, told in the claim words of the region it shares with its pool (found
/// by its name in `/proc/self/maps`): task `next` is marked taken back (so this child skips it,
/// as if the pool had revoked it), and the other words hold nonsense (states no side writes).
fn lie_in_claims(next: u64) -> u32 {
    let maps = fs::read_to_string("/proc/self/maps").expect("the process's maps");
    let line = (maps.lines())
        .find(|line| line.ends_with("/memfd:tinypool (deleted)"))
        .expect("the rings' region is mapped");
    let start = line.split('-').next().expect("an address range");
    let base = usize::from_str_radix(start, 16).expect("a hex address");
    // SAFETY: the claim words, four `u32`s at offset 1024 of the region, which this process
    // maps shared and writable for its life; the pool reads them only as atomics.
    let words = unsafe { &*((base + 1024) as *const [std::sync::atomic::AtomicU32; 4]) };
    words[0].store((next as u32) << 3 | 3, Ordering::SeqCst);
    // States 7, 6 and 5: no side writes them, and the pool takes none for free.
    for (k, word) in (0..).zip(&words[1..]) {
        word.store(u32::MAX - k, Ordering::SeqCst);
    }
    std::process::id()
}

/// Catches a panic of its own (its message reaches the pool at once, through the child's panic
/// hook), lets go whoever waits on the FIFO `panicked` in its gate's directory, then is a gate.
fn caught_then_gate(dir: String) -> u32 {
    let caught = std::panic::catch_unwind(|| panic!("a panic caught on purpose"));
    assert!(caught.is_err(), "it panicked");
    fifo::open_and_close(&Path::new(&dir).join("panicked"));
    fifo::gate(dir)
}

/// An argument whose encoding (the first time only) waits until the FIFO `hold` is opened and
/// closed. A driver encodes a task's argument after it marked the task ahead and before the
/// task goes out: the task stays on its way, on its worker, for as long as the test needs.
#[derive(Deserialize)]
struct Held<T> {
    value: T,
    hold: String,
    #[serde(skip)]
    waited: Arc<AtomicBool>,
}

impl<T> Held<T> {
    fn new(value: T, hold: &Path) -> Held<T> {
        Held {
            value,
            hold: hold.to_string_lossy().into_owned(),
            waited: Arc::default(),
        }
    }
}

impl<T: Serialize> Serialize for Held<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !self.waited.swap(true, Ordering::AcqRel) {
            fifo::wait_opened(Path::new(&self.hold));
        }
        let mut fields = serializer.serialize_struct("Held", 2)?;
        fields.serialize_field("value", &self.value)?;
        fields.serialize_field("hold", &self.hold)?;
        fields.end()
    }
}

// ---- Helpers --------------------------------------------------------------------------------

/// A pool of child processes at one task each, `min` to `max` of them.
fn children(min: usize, max: usize) -> Builder {
    Pool::builder()
        .runtime(Runtime::ChildProcess)
        .min_threads(min)
        .max_threads(max)
        .concurrent_tasks_per_worker(1)
}

/// A task that logs `tag` and its pid in `dir`'s log.
fn record(pool: &Pool, dir: &Path, tag: u32) -> Task<u32> {
    let log = dir.join("log").to_string_lossy().into_owned();
    pool.run_with((log, tag), RunOptions::new().name("record"))
}

/// [`record`], its encoding held until the FIFO `hold` (made here) is opened.
fn held_record(pool: &Pool, dir: &Path, tag: u32, hold: &Path) -> Task<u32> {
    fifo::mkfifo(hold);
    let log = dir.join("log").to_string_lossy().into_owned();
    pool.run_with(
        Held::new((log, tag), hold),
        RunOptions::new().name("held_record"),
    )
}

/// On a one-worker pool: a first task, let go, then `slow`, which runs (held at its gate), and
/// behind it a record tagged 1, which the worker took with `slow` to send ahead, its encoding
/// held by the FIFO `hold` in `dir`. Returns `slow`, that record and the worker's pid.
fn slow_with_the_next_on_its_way(pool: &Pool, dir: &Path) -> (Gate, Task<u32>, u32) {
    let first = Gate::new(pool, dir, "first");
    first.wait_started();
    let slow = Gate::new(pool, dir, "slow");
    let next = held_record(pool, dir, 1, &dir.join("hold"));
    first.open();
    let pid = finish(first.task).unwrap();
    slow.wait_started();
    (slow, next, pid)
}

/// The log's lines as (tag, pid), in the order they were written.
fn log(dir: &Path) -> Vec<(u32, u32)> {
    fifo::read_log(&dir.join("log"))
}

fn end(pool: Pool, dir: PathBuf) {
    pool.destroy().wait().unwrap();
    fs::remove_dir_all(dir).unwrap();
}

// ---- Tests ----------------------------------------------------------------------------------

/// `Task::abort` of a task running in a child at one task per child stops that child (the task
/// runs alone there), even when the next task was just given to the same worker, to be sent
/// ahead: that one goes to the replacement instead of waiting for ever behind the aborted task.
#[test]
fn aborting_a_running_task_with_the_next_one_on_its_way_stops_its_child() {
    let pool = children(1, 1).build().unwrap();
    let dir = fifo::scratch("sent-ahead");
    let (slow, next, old) = slow_with_the_next_on_its_way(&pool, &dir);
    slow.task.abort();
    fifo::open_and_close(&dir.join("hold"));

    let ran = finish(next).unwrap();
    assert_ne!(
        ran, old,
        "ran on the replacement, not behind the aborted task"
    );
    assert_eq!(finish(slow.task), Err(Error::Aborted { reason: None }));
    assert_eq!(log(&dir), [(1, ran)]);
    end(pool, dir);
}

/// Likewise when the task behind it never went out (aborted too, before its driver got to it):
/// the aborted task's child is stopped, and the next task runs on its replacement.
#[test]
fn aborting_a_running_task_and_the_one_behind_it_before_it_went_out_stops_its_child() {
    let pool = children(1, 1).build().unwrap();
    let dir = fifo::scratch("sent-ahead");
    let first = Gate::new(&pool, &dir, "first");
    first.wait_started();
    // `slow`'s own encoding waits: the worker holds it and `behind`, neither sent yet.
    let slow_dir = Gate::make(&dir, "slow");
    let hold = dir.join("hold");
    fifo::mkfifo(&hold);
    let slow = pool.run_with::<u32, _>(
        Held::new(slow_dir.to_string_lossy().into_owned(), &hold),
        RunOptions::new().name("held_gate"),
    );
    let behind = record(&pool, &dir, 1);
    first.open();
    let old = finish(first.task).unwrap();
    // Opened once the driver waits in `slow`'s encoding.
    let encoding = fifo::writing(&hold);
    slow.abort();
    behind.abort();
    // `slow` goes out (it was on its way); `behind` does not.
    drop(encoding);

    let ran = finish(record(&pool, &dir, 2)).unwrap();
    assert_ne!(
        ran, old,
        "ran on the replacement, not behind the aborted task"
    );
    assert_eq!(finish(slow), Err(Error::Aborted { reason: None }));
    assert_eq!(finish(behind), Err(Error::Aborted { reason: None }));
    assert_eq!(log(&dir), [(2, ran)]);
    end(pool, dir);
}

/// A task sent ahead behind a slow task goes to the free worker even when the slow task said
/// something before it stalled (a panic it caught, whose message the driver reads first): the
/// driver looks again before each wait for the slow task's answer, not only before the first.
#[test]
fn a_task_sent_ahead_behind_a_slow_task_that_spoke_first_runs_on_the_free_worker() {
    spoke_first(children(2, 2));
}

/// The same with workers forked from a fork server, which map the claim words as spawned
/// ones do.
#[test]
fn a_task_sent_ahead_to_a_forked_worker_behind_a_slow_task_runs_on_the_free_worker() {
    spoke_first(children(2, 2).fork_server(true));
}

fn spoke_first(builder: Builder) {
    let pool = builder.build().unwrap();
    let dir = fifo::scratch("sent-ahead");
    let (a, b) = (Gate::new(&pool, &dir, "a"), Gate::new(&pool, &dir, "b"));
    a.wait_started();
    b.wait_started();
    let slow_dir = Gate::make(&dir, "slow");
    fifo::mkfifo(&slow_dir.join("panicked"));
    let slow = Gate {
        task: pool.run_with(
            slow_dir.to_string_lossy().into_owned(),
            RunOptions::new().name("caught_then_gate"),
        ),
        dir: slow_dir,
    };
    // Its encoding waits until `slow` caught its panic: the panic's message is then in the
    // channel before this task goes out, and before its driver looks whether `slow` is quick.
    let next = {
        let log = dir.join("log").to_string_lossy().into_owned();
        let held = Held::new((log, 1u32), &slow.dir.join("panicked"));
        pool.run_with::<u32, _>(held, RunOptions::new().name("held_record"))
    };
    a.open();
    let first = finish(a.task).unwrap();
    slow.wait_started();
    b.open();
    let second = finish(b.task).unwrap();

    assert_eq!(finish(next), Ok(second), "ran on the free worker");
    slow.open();
    assert_eq!(finish(slow.task), Ok(first));
    assert_eq!(log(&dir), [(1, second)]);
    end(pool, dir);
}

/// A task taken back from behind a slow task, with no worker idle, gets a new one when the pool
/// has room for it (a worker idled out while the task was ahead), as a task submitted then
/// would: it does not wait for the slow task to end.
#[test]
fn a_task_taken_back_starts_a_worker_when_the_pool_has_room() {
    let exits = Counter::new();
    let pool = {
        let exits = exits.clone();
        children(1, 2)
            .idle_timeout(Duration::ZERO)
            .on_worker_exit(move |_, _| exits.bump())
            .build()
            .unwrap()
    };
    let dir = fifo::scratch("sent-ahead");
    let (a, b) = (Gate::new(&pool, &dir, "a"), Gate::new(&pool, &dir, "b"));
    a.wait_started();
    b.wait_started();
    let slow = Gate::new(&pool, &dir, "slow");
    let next = held_record(&pool, &dir, 1, &dir.join("hold"));
    a.open();
    let first = finish(a.task).unwrap();
    // `a`'s worker took `slow`, and `next` to send ahead: nothing is queued, so `b`'s worker,
    // let go, idles out at once (above `min_threads`, no `idle_timeout`).
    slow.wait_started();
    b.open();
    finish(b.task).unwrap();
    exits.wait_for(1);
    fifo::open_and_close(&dir.join("hold"));

    let ran = finish(next).unwrap();
    assert_ne!(ran, first, "ran on a new worker, not behind the slow task");
    slow.open();
    assert_eq!(finish(slow.task), Ok(first));
    assert_eq!(log(&dir), [(1, ran)]);
    end(pool, dir);
}

/// `cancel_pending_tasks` leaves a task sent ahead be (its child may have started it), but one
/// its driver then takes back never started: it fails `Cancelled`, as it would have in the
/// queue, instead of running after the cancel.
#[test]
fn a_task_taken_back_after_a_cancel_is_cancelled() {
    let pool = children(1, 1).build().unwrap();
    let dir = fifo::scratch("sent-ahead");
    let (slow, next, old) = slow_with_the_next_on_its_way(&pool, &dir);
    pool.cancel_pending_tasks();
    // `next` goes out, ahead, and is taken back from behind `slow`.
    fifo::open_and_close(&dir.join("hold"));

    assert_eq!(finish(next), Err(Error::Cancelled));
    slow.open();
    assert_eq!(finish(slow.task), Ok(old), "a running task finishes");
    assert_eq!(log(&dir), []);
    end(pool, dir);
}

/// A child that lies in its claim words hurts only its own tasks: the task it was told to skip
/// waits, as a task that never returns does (the pool sends nothing ahead to it any more:
/// no word looks free), and `destroy` ends it in time, failing that task; nothing crashes,
/// nothing is left.
#[test]
fn a_child_that_lies_in_its_claim_words_hurts_only_its_own_tasks() {
    let pool = children(1, 1).build().unwrap();
    // Its first task is task 1: it marks task 2, the next, as taken back.
    let liar = finish(pool.run_with::<u32, _>(2u64, RunOptions::new().name("lie_in_claims")));
    let liar = liar.expect("the lie is told");
    let dir = fifo::scratch("sent-ahead");
    let skipped = record(&pool, &dir, 1);
    // Queued behind it, where a task would be sent ahead to an honest child.
    let queued: Vec<Task<u32>> = (2..=4).map(|tag| record(&pool, &dir, tag)).collect();
    assert_eq!(common::destroy_within(&pool, false), Ok(()));
    assert_eq!(finish(skipped), Err(Error::Terminated));
    for task in queued {
        assert_eq!(finish(task), Err(Error::Terminated));
    }
    assert!(
        log(&dir).is_empty(),
        "the child skipped task 2 and was given no other"
    );
    assert!(common::procfs::gone(liar), "the lying child was reaped");
    fs::remove_dir_all(dir).unwrap();
}
