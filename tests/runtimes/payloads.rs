//! Payloads bigger than a child's rings (which carry frames of up to 2 KiB): arguments and
//! results of megabytes, many in a row, among small tasks in flight, and on task channels. On
//! child processes they cross in the shared slots for big frames, or, while a slot is taken,
//! on the socket; either way every byte arrives, in order, and each task gets its own answer.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use tinypool::{channel, worker, Error, Exports, Pool, RunOptions, Runtime, Task};

use crate::common::{destroy, finish, next};
use crate::{bodies, Body};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            big_arguments_and_results_cross_whole,
            many_big_frames_in_a_row_cross_whole,
            big_frames_among_small_tasks_in_flight_keep_their_answers,
            big_messages_cross_a_task_channel_both_ways,
            an_argument_is_serialized_once_whatever_its_size,
        ],
        threads: [],
    }
}

/// The exports of these tests (served by both kinds of worker, through the crate's).
pub fn exports() -> Exports {
    Exports::new()
        .export("sum_bytes", |bytes: Vec<u8>| {
            (bytes.len(), checksum(&bytes))
        })
        .export("make_bytes", |(len, seed): (usize, u8)| pattern(len, seed))
        .export("flip_bytes", |bytes: Vec<u8>| flip(&bytes))
        // Answers each message on its channel flipped, while it holds its own (big) argument,
        // until the caller hangs up; returns the argument's checksum.
        .export("bounce_bytes", |bytes: Vec<u8>| -> Result<u64, String> {
            let port = worker::port::<Vec<u8>>().map_err(|e| e.to_string())?;
            while let Ok(message) = port.recv() {
                port.send(flip(&message)).map_err(|e| e.to_string())?;
            }
            Ok(checksum(&bytes))
        })
        .export("sum_words", |words: Counted| {
            let bytes: Vec<u8> = words.0.iter().flat_map(|word| word.to_le_bytes()).collect();
            (words.0.len(), checksum(&bytes))
        })
}

/// How many times a [`Counted`] was serialized, in this process.
static SERIALIZED: AtomicUsize = AtomicUsize::new(0);

/// Words whose `Serialize` counts its calls: it is user code, with its side effects and its
/// cost. postcard writes them one at a time, so that a big one crosses every room a child
/// pool's frame grows through (its buffer, the shared slot mapped further and further) in the
/// middle of a value.
#[derive(Deserialize)]
pub struct Counted(Vec<u32>);

impl Serialize for Counted {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SERIALIZED.fetch_add(1, Ordering::SeqCst);
        self.0.serialize(serializer)
    }
}

/// `len` words of 5 bytes each in postcard, differing with `seed`.
fn words(len: usize, seed: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (1 << 31) | i.wrapping_mul(2_654_435_761).wrapping_add(seed))
        .collect()
}

fn words_checksum(words: &[u32]) -> u64 {
    let bytes: Vec<u8> = words.iter().flat_map(|word| word.to_le_bytes()).collect();
    checksum(&bytes)
}

/// `len` bytes that differ with `seed` and along the buffer (no period of 256: a byte out of
/// place shows).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(seed as u64) as u8 ^ (i >> 9) as u8)
        .collect()
}

fn flip(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|byte| !byte).collect()
}

/// FNV-1a: a byte out of place changes it.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ byte as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Sizes around the rings' limit and well past it (a slot is mapped 64 KiB at first, then
/// grows).
const SIZES: [usize; 7] = [
    2_000,
    2_049,
    65_000,
    70_000,
    1 << 20,
    (3 << 20) + 7,
    5 << 20,
];

fn one_worker(runtime: Runtime, concurrency: usize) -> Pool {
    crate::pool(runtime)
        .max_threads(1)
        .concurrent_tasks_per_worker(concurrency)
        .build()
        .expect("a pool")
}

fn sum(pool: &Pool, bytes: Vec<u8>) -> Task<(usize, u64)> {
    pool.run_with(bytes, RunOptions::new().name("sum_bytes"))
}

fn make(pool: &Pool, len: usize, seed: u8) -> Task<Vec<u8>> {
    pool.run_with((len, seed), RunOptions::new().name("make_bytes"))
}

fn flipped(pool: &Pool, bytes: Vec<u8>) -> Task<Vec<u8>> {
    pool.run_with(bytes, RunOptions::new().name("flip_bytes"))
}

/// A big argument, a big result, and both at once, arrive whole.
fn big_arguments_and_results_cross_whole(runtime: Runtime) {
    let pool = one_worker(runtime, 1);
    for (seed, len) in SIZES.into_iter().enumerate() {
        let bytes = pattern(len, seed as u8);
        let expected = (len, checksum(&bytes));
        assert_eq!(finish(sum(&pool, bytes.clone())), Ok(expected), "{len}");
        let made = finish(make(&pool, len, seed as u8)).expect("bytes");
        assert!(made == bytes, "a result of {len} bytes came back altered");
        let back = finish(flipped(&pool, bytes.clone())).expect("bytes");
        assert!(back == flip(&bytes), "{len} bytes came back altered");
    }
    destroy(pool);
}

/// Big frames one after another, each way, every one answered whole; then a burst of them
/// sent ahead to a child that takes several at once (the slot taken, the next ones go by the
/// socket, and back to the slot).
fn many_big_frames_in_a_row_cross_whole(runtime: Runtime) {
    let pool = one_worker(runtime, 1);
    for round in 0..40usize {
        let len = (1 << 20) + round * 40_503;
        let bytes = pattern(len, round as u8);
        let back = finish(flipped(&pool, bytes.clone())).expect("bytes");
        assert!(back == flip(&bytes), "round {round}: altered");
    }
    destroy(pool);
    let pool = one_worker(runtime, 4);
    let sent: Vec<Vec<u8>> = (0..24)
        .map(|i| pattern((1 << 20) + i * 10_007, i as u8))
        .collect();
    let tasks: Vec<Task<Vec<u8>>> = sent
        .iter()
        .map(|bytes| flipped(&pool, bytes.clone()))
        .collect();
    for (i, (task, bytes)) in tasks.into_iter().zip(&sent).enumerate() {
        let back = finish(task).expect("bytes");
        assert!(back == flip(bytes), "task {i} of the burst: altered");
    }
    destroy(pool);
}

/// With several tasks in flight on one child, big arguments and results among small tasks:
/// each task resolves with its own answer.
fn big_frames_among_small_tasks_in_flight_keep_their_answers(runtime: Runtime) {
    let pool = one_worker(runtime, 8);
    for round in 0..5 {
        let mut small = Vec::new();
        let mut big = Vec::new();
        let mut made = Vec::new();
        for i in 0..16i32 {
            small.push((i, pool.run::<i32, _>((i, round))));
            if i % 5 == 2 {
                let bytes = pattern((2 << 20) + i as usize, i as u8);
                let expected = (bytes.len(), checksum(&bytes));
                big.push((expected, sum(&pool, bytes)));
            }
            if i % 7 == 3 {
                made.push((i as u8, make(&pool, 1 << 20, i as u8)));
            }
        }
        for (i, task) in small {
            assert_eq!(finish(task), Ok(i + round), "small task {i}");
        }
        for (expected, task) in big {
            assert_eq!(finish(task), Ok(expected));
        }
        for (seed, task) in made {
            assert!(finish(task).expect("bytes") == pattern(1 << 20, seed));
        }
    }
    destroy(pool);
}

/// Big messages on a task's channel, each way, while the task holds a big argument (on a child,
/// the slot its argument came in): each crosses whole, in order.
fn big_messages_cross_a_task_channel_both_ways(runtime: Runtime) {
    let pool = one_worker(runtime, 1);
    let argument = pattern(3 << 20, 1);
    let (port, theirs) = channel::<Vec<u8>>();
    let task: Task<Result<u64, String>> = pool.run_with(
        argument.clone(),
        RunOptions::new().name("bounce_bytes").channel(theirs),
    );
    for (i, len) in [300_000, 2 << 20, 10, (1 << 20) + 1, 5_000]
        .into_iter()
        .enumerate()
    {
        let message = pattern(len, i as u8);
        port.send(message.clone()).expect("the task listens");
        let answer = next(&port).expect("an answer");
        assert!(answer == flip(&message), "message {i} came back altered");
    }
    drop(port);
    assert_eq!(finish(task), Ok(Ok(checksum(&argument))));
    destroy(pool);
}

/// A task's argument is serialized once, whatever its size: small (a ring's frame), bigger
/// (the shared slot, mapped at 64 KiB first, then further), bigger than `max_message_size`
/// (refused, naming the cap), or big while the slot is taken by the task before it (on the
/// socket). Threads move arguments and serialize none.
fn an_argument_is_serialized_once_whatever_its_size(runtime: Runtime) {
    const MAX: usize = 8 << 20;
    let pool = crate::pool(runtime)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .max_message_size(MAX)
        .build()
        .expect("a pool");
    let calls = |tasks: usize| match runtime {
        Runtime::Threads => 0,
        _ => tasks,
    };
    let run = |words: Vec<u32>| -> Task<(usize, u64)> {
        pool.run_with(Counted(words), RunOptions::new().name("sum_words"))
    };
    for (seed, len) in [10, 1_000, 20_000, 300_000, 1_000_000, 20_000, 1_000_000]
        .into_iter()
        .enumerate()
    {
        let sent = words(len, seed as u32);
        let expected = (len, words_checksum(&sent));
        SERIALIZED.store(0, Ordering::SeqCst);
        assert_eq!(finish(run(sent)), Ok(expected), "{len} words");
        assert_eq!(SERIALIZED.load(Ordering::SeqCst), calls(1), "{len} words");
    }
    // Two big ones in flight: the first holds the slot until its task is done.
    SERIALIZED.store(0, Ordering::SeqCst);
    let sent = [words(400_000, 1), words(400_000, 2)];
    let tasks: Vec<_> = sent.iter().map(|words| run(words.clone())).collect();
    for (task, words) in tasks.into_iter().zip(&sent) {
        assert_eq!(finish(task), Ok((words.len(), words_checksum(words))));
    }
    assert_eq!(SERIALIZED.load(Ordering::SeqCst), calls(2), "two in flight");
    // Over the cap: refused once encoded past it, the worker unharmed.
    SERIALIZED.store(0, Ordering::SeqCst);
    let over = words(2 * MAX / 5, 3);
    let expected = (over.len(), words_checksum(&over));
    match (runtime, finish(run(over))) {
        (Runtime::Threads, result) => assert_eq!(result, Ok(expected)),
        (_, Err(Error::Protocol { message })) => assert!(
            message.contains(&format!("exceeds max_message_size ({MAX} bytes)")),
            "{message}"
        ),
        (_, other) => panic!("expected the cap named, got {other:?}"),
    }
    assert_eq!(SERIALIZED.load(Ordering::SeqCst), calls(1), "over the cap");
    let sent = words(5, 4);
    assert_eq!(finish(run(sent.clone())), Ok((5, words_checksum(&sent))));
    destroy(pool);
}
