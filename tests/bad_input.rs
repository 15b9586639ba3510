//! Bad input and misuse: values that refuse to serialize, a teardown a child does not export,
//! and garbage on the wire in both directions: from a "worker" that is not a tinypool worker,
//! from a worker that answers a task with garbage, and to a real worker process after a valid
//! handshake. Every case ends in a clean error (or a clean exit of the child), never a panic,
//! a hang, or a process left behind.
//!
//! Covered elsewhere, so not repeated here: an unknown function name and wrong argument or
//! result types (`tests/runtimes/exports.rs`, both runtimes), running after `destroy`
//! (`tests/runtimes/destroy.rs`), an invalid teardown in the threads runtime
//! (`tests/runtimes/options.rs`, `tests/runtimes/teardown.rs`), a worker binary that exits or
//! never answers the handshake and a worker started by hand with the marker but no channel
//! (`tests/process_faults.rs`). The frame decoder's own properties are unit tests in
//! `src/protocol/`.
//!
//! A `harness = false` binary: its pools re-execute it, as a worker or as a fake worker (see
//! [`ROLE`]), so `main` first plays that part.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::wire::*;
use common::{destroy, finish, named, procfs, BOUND};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tinypool::{worker, AbortController, Error, Exports, Pool, RunOptions, Runtime, TypeRole};

/// Set on this binary re-executed as a fake worker: which one it plays (see [`fake_worker`]).
const ROLE: &str = "BAD_INPUT_ROLE";
/// The bytes a fake worker sends, in hex.
const BYTES: &str = "BAD_INPUT_BYTES";
/// The marker's name.
const WORKER_ENV: &str = "TINYPOOL_WORKER_FD";

// ---- Values that refuse to cross ----------------------------------------------------------

/// A byte whose `Serialize` fails for 0 (as a type postcard cannot carry fails, later): the
/// other values cross, so a channel of these can also carry a "hello".
#[derive(Debug, Clone, Copy, PartialEq)]
struct Touchy(u8);

impl Serialize for Touchy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 == 0 {
            return Err(S::Error::custom("Touchy(0) refuses to be serialized"));
        }
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u8::deserialize(deserializer).map(Touchy)
    }
}

/// User code that panics inside the codec: `Serialize` panics for 1, `Deserialize` for 2.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fragile(u8);

impl Serialize for Fragile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        assert_ne!(self.0, 1, "Fragile(1) panics when serialized");
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Fragile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u8::deserialize(deserializer)?;
        assert_ne!(value, 2, "Fragile(2) panics when deserialized");
        Ok(Fragile(value))
    }
}

/// A recursive value (a fake worker answers one nested a million levels deep).
#[derive(Debug, Serialize, Deserialize)]
enum Nest {
    Leaf,
    Node(Box<Nest>),
}

fn exports() -> Exports {
    Exports::new()
        .export_default(|x: i32| x)
        .export("make_fragile", Fragile)
        .export("take_fragile", |value: Fragile| value.0)
        .export("pid", |()| std::process::id())
        .export("make_touchy", Touchy)
        .export("take_touchy", |value: Touchy| value.0)
        .export("data_is", |()| {
            worker::data::<Touchy>().map(|data| data.map(|d| d.0)).ok()
        })
        // Says hello on its channel, then returns the first message it gets, or what went
        // wrong.
        .export("recv", |()| -> Result<u8, String> {
            let port = worker::port::<Touchy>().map_err(|e| e.to_string())?;
            port.send(Touchy(1)).map_err(|e| e.to_string())?;
            port.recv().map(|m| m.0).map_err(|e| e.to_string())
        })
        // Sends a message that cannot be encoded: in a child, its own `send` fails.
        .export("send_touchy", |()| -> Result<(), String> {
            let port = worker::port::<Touchy>().map_err(|e| e.to_string())?;
            port.send(Touchy(0)).map_err(|e| e.to_string())
        })
        .export("teardown_takes_i32", |_: i32| {})
}

fn pool(runtime: Runtime) -> tinypool::Builder {
    common::builder(runtime, exports)
        .min_threads(1)
        .max_threads(1)
}

fn expect_protocol<R: std::fmt::Debug>(result: Result<R, Error>, mentions: &str) {
    match result {
        Err(Error::Protocol { message }) => {
            assert!(
                message.contains(mentions),
                "{message:?} mentions {mentions:?}"
            )
        }
        other => panic!("expected Error::Protocol, got {other:?}"),
    }
}

/// The pool still serves, on the same worker (a child process when `pid` is given).
fn still_serves(pool: &Pool, pid: Option<u32>) {
    assert_eq!(finish(pool.run::<i32, _>(7)), Ok(7));
    if let Some(pid) = pid {
        assert_eq!(finish(pool.run_with((), named("pid"))), Ok(pid));
    }
}

fn pid(pool: &Pool, runtime: Runtime) -> Option<u32> {
    (runtime == Runtime::ChildProcess).then(|| finish(pool.run_with((), named("pid"))).unwrap())
}

// ---- 1. Misuse: values that cannot be serialized -------------------------------------------

/// A result whose `Serialize` fails: the child reports `Protocol` and serves on. Threads move
/// values and serialize nothing.
fn a_result_that_fails_to_serialize(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let pid = pid(&pool, runtime);
    let result = finish(pool.run_with::<Touchy, _>(0u8, named("make_touchy")));
    match runtime {
        Runtime::Threads => assert_eq!(result, Ok(Touchy(0))),
        _ => expect_protocol(result, "Touchy"),
    }
    assert_eq!(
        finish(pool.run_with::<Touchy, _>(3u8, named("make_touchy"))),
        Ok(Touchy(3))
    );
    still_serves(&pool, pid);
    destroy(pool);
}

fn an_argument_that_fails_to_serialize(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let pid = pid(&pool, runtime);
    let result = finish(pool.run_with::<u8, _>(Touchy(0), named("take_touchy")));
    match runtime {
        Runtime::Threads => assert_eq!(result, Ok(0)),
        _ => expect_protocol(result, "Touchy"),
    }
    still_serves(&pool, pid);
    destroy(pool);
}

fn worker_data_that_fails_to_serialize(runtime: Runtime) {
    let built = pool(runtime).worker_data(Touchy(0)).build();
    match runtime {
        Runtime::Threads => {
            let pool = built.unwrap();
            let data = finish(pool.run_with::<Option<Option<u8>>, _>((), named("data_is")));
            assert_eq!(data, Ok(Some(Some(0))));
            destroy(pool);
        }
        _ => expect_protocol(built, "Touchy"),
    }
}

/// Channel messages that cannot be encoded. Sent while the task runs: `send` says so and
/// nothing else breaks. Queued before the task started: the task fails, and the child's side
/// of the channel closes (so the function waiting on it returns and the worker serves on).
/// Sent by the task: its own `send` fails.
fn channel_messages_that_fail_to_serialize(runtime: Runtime) {
    let threads = runtime == Runtime::Threads;
    let pool = pool(runtime).build().unwrap();
    let pid = pid(&pool, runtime);

    let (ours, theirs) = tinypool::channel::<Touchy>();
    let task = pool.run_with::<Result<u8, String>, _>((), named("recv").channel(theirs));
    assert_eq!(
        ours.recv_timeout(BOUND),
        Ok(Some(Touchy(1))),
        "the task runs"
    );
    let sent = ours.send(Touchy(0));
    if threads {
        // Moved, not serialized: the task gets it, and returns (its side then closes).
        assert_eq!(sent, Ok(()));
    } else {
        // Refused at the send; the channel still works.
        expect_protocol(sent, "Touchy");
        ours.send(Touchy(8)).unwrap();
    }
    assert_eq!(finish(task), Ok(Ok(if threads { 0 } else { 8 })));
    still_serves(&pool, pid);

    let (ours, theirs) = tinypool::channel::<Touchy>();
    ours.send(Touchy(0)).unwrap();
    let task = pool.run_with::<Result<u8, String>, _>((), named("recv").channel(theirs));
    if threads {
        assert_eq!(finish(task), Ok(Ok(0)));
    } else {
        expect_protocol(finish(task), "Touchy");
    }
    still_serves(&pool, pid);

    let (_ours, theirs) = tinypool::channel::<Touchy>();
    let task = pool.run_with::<Result<(), String>, _>((), named("send_touchy").channel(theirs));
    match finish(task) {
        Ok(Ok(())) if threads => {}
        Ok(Err(message)) if !threads => assert!(message.contains("Touchy"), "{message:?}"),
        other => panic!("{runtime:?}: unexpected {other:?}"),
    }
    still_serves(&pool, pid);
    destroy(pool);
}

/// User code that panics while a value is serialized or deserialized, on either side (the
/// pool encoding an argument or decoding a result, the child decoding an argument or encoding
/// a result): the task fails with `Panicked` naming the panic and where it happened, the
/// worker serves on, nothing is left behind. Threads move values and serialize nothing.
fn serde_code_that_panics(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let pid = pid(&pool, runtime);
    let take =
        |value: u8| finish(pool.run_with::<u8, _>(Fragile(value), named("take_fragile"))).map(drop);
    let make =
        |value: u8| finish(pool.run_with::<Fragile, _>(value, named("make_fragile"))).map(drop);
    let cases = [
        (take(1), "Fragile(1) panics when serialized"),
        (take(2), "Fragile(2) panics when deserialized"),
        (make(1), "Fragile(1) panics when serialized"),
        (make(2), "Fragile(2) panics when deserialized"),
    ];
    for (result, says) in cases {
        match (runtime, result) {
            (Runtime::Threads, result) => assert_eq!(result, Ok(())),
            (_, Err(Error::Panicked { message, location })) => {
                assert!(message.contains(says), "{message:?} says {says:?}");
                let location = location.expect("the hook saw where");
                assert!(location.starts_with("tests/bad_input.rs:"), "{location}");
            }
            (_, other) => panic!("expected a panic that says {says:?}: {other:?}"),
        }
        still_serves(&pool, pid);
    }
    destroy(pool);
    assert_eq!(procfs::children(), vec![]);
}

// ---- 2. Misuse: a teardown the child does not export, or of the wrong type --------------------

/// The threads runtime refuses these at `build` (`tests/runtimes/options.rs`,
/// `tests/runtimes/teardown.rs`); a child-process pool cannot see the child's exports, so each
/// child reports the error when it stops.
fn a_bad_teardown_in_a_child_is_reported() {
    for (teardown, expected) in [
        (
            "no_such_teardown",
            Error::NoSuchFunction {
                name: "no_such_teardown".into(),
            },
        ),
        (
            "teardown_takes_i32",
            Error::TypeMismatch {
                what: TypeRole::Argument {
                    function: "teardown_takes_i32".into(),
                },
                expected: "i32".into(),
                found: "()".into(),
            },
        ),
    ] {
        let (hear, heard) = mpsc::channel();
        let pool = pool(Runtime::ChildProcess)
            .teardown(teardown)
            .on_error(move |error| {
                let _ = hear.send(error);
            })
            .build()
            .unwrap();
        let pid = pid(&pool, Runtime::ChildProcess).unwrap();
        destroy(pool);
        assert_eq!(heard.recv_timeout(BOUND), Ok(expected));
        assert!(heard.try_recv().is_err(), "one report per worker");
        assert!(procfs::gone(pid));
    }
}

// ---- 3. Garbage from a "worker" --------------------------------------------------------------

fn hello_body(magic: &[u8], version: u32) -> Vec<u8> {
    hello_naming(magic, version, &[])
}

/// The `DONE` of task 1: a result (`encoded`), no resident memory reported.
fn done_frame(encoded: &[u8]) -> Vec<u8> {
    let mut body = 1u64.to_le_bytes().to_vec();
    body.extend_from_slice(&0u64.to_le_bytes());
    body.push(0);
    body.extend(str_field(encoded));
    frame(DONE, &body)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// The parts this binary plays as a pool's fake worker, on fd 3:
/// - `hello`: sends the bytes instead of a handshake;
/// - `reply`: shakes hands properly, then answers the first task with the bytes, in the ring
///   to the pool as a real worker does (on the socket where there are no rings);
/// - `reply-outside`: the same, but on the socket, where no chunk of the ring announced them;
/// - `reply-slot`: the same, in the slot for big frames (announced in the ring); with a
///   suffix, a lie about it: `-huge` (announced longer than the slot), `-header` (a frame that
///   says it is longer than announced), `-over-max` (a frame over `max_message_size`).
///
/// Each then reads until the pool closes the channel, and exits 0.
fn fake_worker(role: &str) -> ! {
    // SAFETY: fd 3 is the channel the pool gave this process; nothing else owns it.
    let mut channel = unsafe { UnixStream::from_raw_fd(CHILD_FD) };
    let bytes = unhex(&std::env::var(BYTES).unwrap_or_default());
    let mut in_ring = false;
    if role.starts_with("reply") {
        // "reply-async": the default export is async, as the pool hears.
        let async_exports: &[&str] = if role == "reply-async" {
            &["default"]
        } else {
            &[]
        };
        channel
            .write_all(&frame(HELLO, &hello_naming(MAGIC, VERSION, async_exports)))
            .expect("hello");
        let (kind, body) = read_frame(&mut channel).expect("init");
        assert_eq!(kind, INIT);
        // worker id, codec, max_message_size, measure_memory, then whether there are rings.
        if body[8 + 1 + 8 + 1] == 1 {
            let region = Region::map();
            region.wait_for_the_task();
            if role == "reply" || role == "reply-async" {
                in_ring = region.reply(&mut channel, &bytes);
            }
            if role == "reply-shrunk" {
                // Tries to shrink the memory it shares with the pool (a pool that then reads
                // it would die of SIGBUS), then answers the task properly.
                // SAFETY: ftruncate on the region's fd; it is refused when the pool sealed it.
                let shrunk = unsafe { libc::ftruncate(RINGS_FD, 0) } == 0;
                eprintln!("fake worker: ftruncate of the rings succeeded: {shrunk}");
                in_ring = region.reply(&mut channel, &bytes);
            }
            if let Some(lie) = role.strip_prefix("reply-slot") {
                // INIT goes on: max_message_size at 9, the slots' capacity after the rings.
                let field = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
                let (max, capacity) = (field(9), field(19));
                assert!(capacity > 0, "the pool shares slots for big frames");
                let mut frame = bytes.clone();
                let mut announced = frame.len() as u64;
                match lie {
                    // Beyond the slot.
                    "-huge" => announced = 1 << 40,
                    // A frame that says it is longer than announced.
                    "-header" => frame[..4].copy_from_slice(&(1u32 << 30).to_le_bytes()),
                    // Within the slot, over max_message_size.
                    "-over-max" => {
                        frame = done_frame(&vec![7; max as usize]);
                        announced = frame.len() as u64;
                        assert!(announced <= capacity, "{announced} {capacity}");
                    }
                    _ => {}
                }
                region.reply_in_slot(&channel, capacity, &frame, announced);
                in_ring = true;
            }
            if role == "reply-nested" {
                // A result nested a million levels deep: a million times variant 1, then 0.
                let mut nested = vec![1u8; 1 << 20];
                nested.push(0);
                region.reply_on_socket(&mut channel, &done_frame(&nested));
                in_ring = true;
            }
        } else {
            let (kind, _) = read_frame(&mut channel).expect("run");
            assert_eq!(kind, RUN);
        }
    }
    if !in_ring {
        let _ = channel.write_all(&bytes);
    }
    let _ = std::io::copy(&mut channel, &mut std::io::sink());
    std::process::exit(0)
}

/// A fake worker's view of the rings.
struct Region(*mut u8);

impl Region {
    fn map() -> Region {
        Region(map_rings())
    }

    /// Line `line` (0 tail, 1 head, 2 sleeping) of ring `ring` (0 to the child, 1 to the pool).
    fn line(&self, ring: usize, line: usize) -> &AtomicU32 {
        // SAFETY: within the first page of the mapping, 64-byte aligned.
        unsafe { &*self.0.add(ring * 192 + line * 64).cast::<AtomicU32>() }
    }

    /// Waits for the task's `RUN` in the ring to the child (the pool kills this process if
    /// the test gives up first).
    fn wait_for_the_task(&self) {
        while self.line(0, 0).load(Ordering::SeqCst) == 0 {
            thread::yield_now();
        }
    }

    /// Puts `bytes` in the ring to the pool as one chunk, and nudges a pool asleep; `false`
    /// if they do not fit in a chunk.
    fn reply(&self, channel: &mut UnixStream, bytes: &[u8]) -> bool {
        let padded = bytes.len().div_ceil(4) * 4;
        if bytes.is_empty() || 4 + padded + 4 > RING / 4 {
            return false;
        }
        // SAFETY: the ring to the pool starts at 4096 + RING; the chunk and a nudge fit.
        unsafe {
            let ring = self.0.add(4096 + RING);
            ring.cast::<u32>().write(bytes.len() as u32);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ring.add(4), bytes.len());
        }
        self.line(1, 0).store(4 + padded as u32, Ordering::SeqCst);
        if self.line(1, 2).load(Ordering::SeqCst) != 0 {
            // SAFETY: as above, right after the chunk.
            unsafe {
                self.0
                    .add(4096 + RING + 4 + padded)
                    .cast::<u32>()
                    .write(2 << KIND | 1)
            };
            self.line(1, 0)
                .store(4 + padded as u32 + 4, Ordering::SeqCst);
            channel.write_all(&[0]).expect("nudge");
        }
        true
    }
}

impl Region {
    /// Announces `bytes` in the ring to the pool as on the socket (as a frame too big for the
    /// ring travels), sends them there, and nudges a pool asleep.
    fn reply_on_socket(&self, channel: &mut UnixStream, bytes: &[u8]) {
        let mut out: &UnixStream = channel;
        self.announce(channel, 1, bytes.len() as u64, || {
            out.write_all(bytes).expect("the frame")
        });
    }

    /// Announces, as the first chunk of the ring to the pool, `len` bytes of kind `kind`
    /// (after `before`), and nudges a pool asleep.
    fn announce(&self, channel: &UnixStream, kind: u32, len: u64, before: impl FnOnce()) {
        let len = len.to_le_bytes();
        // SAFETY: the ring to the pool starts at 4096 + RING; the chunk (a header and 8 bytes)
        // and a nudge after it fit.
        unsafe {
            let ring = self.0.add(4096 + RING);
            ring.cast::<u32>().write(kind << KIND | 8);
            std::ptr::copy_nonoverlapping(len.as_ptr(), ring.add(4), len.len());
        }
        self.line(1, 0).store(12, Ordering::SeqCst);
        before();
        if self.line(1, 2).load(Ordering::SeqCst) != 0 {
            // SAFETY: as above, right after the chunk.
            unsafe {
                self.0
                    .add(4096 + RING + 12)
                    .cast::<u32>()
                    .write(2 << KIND | 1)
            };
            self.line(1, 0).store(16, Ordering::SeqCst);
            let mut out = channel;
            out.write_all(&[0]).expect("nudge");
        }
    }

    /// Writes `frame` in the slot to the pool (slots of `capacity` bytes, `INIT`'s `bulk`)
    /// and announces it as `announced` bytes there.
    fn reply_in_slot(&self, channel: &UnixStream, capacity: u64, frame: &[u8], announced: u64) {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let slot = (capacity as usize + 64)
            .next_multiple_of(page)
            .max(64 << 10);
        // SAFETY: maps the start of the slot to the pool, within the memory the pool gave this
        // process on fd 5, and writes the frame after its first line.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                64 + frame.len(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                BULK_FD,
                slot as libc::off_t,
            );
            assert_ne!(base, libc::MAP_FAILED, "the slot to the pool");
            let base = base.cast::<u8>();
            std::ptr::copy_nonoverlapping(frame.as_ptr(), base.add(64), frame.len());
        }
        self.announce(channel, 4, announced, || {});
    }
}

/// A pool whose every worker is this binary playing `role` with `bytes`.
fn fake_pool(role: &str, bytes: &[u8]) -> Pool {
    Pool::builder()
        .runtime(Runtime::ChildProcess)
        .min_threads(0)
        .max_threads(1)
        .env(ROLE, role)
        .env(BYTES, hex(bytes))
        .startup_timeout(Duration::from_millis(50))
        .terminate_timeout(Duration::from_millis(100))
        .build()
        .expect("a pool")
}

/// Handshakes that are not tinypool's: arbitrary bytes, a wrong magic, a wrong version, a cut
/// or lying frame, a huge length prefix, another kind of frame.
fn bad_handshake() -> impl Strategy<Value = Vec<u8>> {
    let hello = frame(HELLO, &hello_body(MAGIC, VERSION));
    prop_oneof![
        vec(any::<u8>(), 0..48),
        (vec(any::<u8>(), 8), any::<u32>())
            .prop_filter("not the magic", |(magic, _)| magic[..] != MAGIC[..])
            .prop_map(|(magic, version)| frame(HELLO, &hello_body(&magic, version))),
        any::<u32>()
            .prop_filter("not the version", |version| *version != VERSION)
            .prop_map(|version| frame(HELLO, &hello_body(MAGIC, version))),
        (0..hello.len()).prop_map(move |cut| hello[..cut].to_vec()),
        ((64u32 << 20) + 1.., vec(any::<u8>(), 0..16)).prop_map(|(len, rest)| {
            let mut bytes = len.to_le_bytes().to_vec();
            bytes.extend(rest);
            bytes
        }),
        (any::<u8>(), vec(any::<u8>(), 0..32))
            .prop_filter("not a hello", |(kind, _)| *kind != HELLO)
            .prop_map(|(kind, body)| frame(kind, &body)),
        // A frame whose length promises more than comes.
        (1u32..1024).prop_map(|extra| {
            let mut bytes = frame(HELLO, &hello_body(MAGIC, VERSION));
            let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) + extra;
            bytes[..4].copy_from_slice(&len.to_le_bytes());
            bytes
        }),
    ]
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    })
}

fn a_worker_that_is_not_a_tinypool_worker_fails_to_start() {
    let tried = AtomicUsize::new(0);
    runner(40)
        .run(&bad_handshake(), |bytes| {
            tried.fetch_add(1, Ordering::Relaxed);
            let pool = fake_pool("hello", &bytes);
            match finish(pool.run::<i32, _>(1)) {
                Err(Error::WorkerStartFailed { message }) => {
                    prop_assert!(message.contains("bad_input"), "{}", message)
                }
                other => prop_assert!(
                    false,
                    "{:?}: expected WorkerStartFailed, got {:?}",
                    bytes,
                    other
                ),
            }
            prop_assert_eq!(pool.threads(), 0);
            destroy(pool);
            prop_assert_eq!(procfs::children(), vec![]);
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    println!("    {} bad handshakes tried", tried.load(Ordering::Relaxed));
}

/// Answers to a task that are not a well-formed result: arbitrary bytes, frames of a kind the
/// pool does not expect, a result for another task, cut, padded or lying results, bad error
/// codes, undecodable values, huge length prefixes.
fn bad_reply() -> impl Strategy<Value = Vec<u8>> {
    let done = |task: u64, rest: &[u8]| {
        let mut body = task.to_le_bytes().to_vec();
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(rest);
        frame(DONE, &body)
    };
    let good = done(1, &[&[0u8][..], &str_field(&[2])].concat());
    prop_oneof![
        vec(any::<u8>(), 1..48),
        (any::<u8>(), vec(any::<u8>(), 0..32))
            .prop_filter("an unexpected kind", |(kind, _)| {
                ![DONE, PORT, PANICKING].contains(kind)
            })
            .prop_map(|(kind, body)| frame(kind, &body)),
        (2u64.., vec(any::<u8>(), 0..16)).prop_map(move |(task, rest)| done(task, &rest)),
        (0..good.len()).prop_map({
            let good = good.clone();
            move |cut| good[..cut].to_vec()
        }),
        vec(any::<u8>(), 1..8).prop_map({
            let good = good.clone();
            move |extra| {
                let mut body = good[5..].to_vec();
                body.extend(extra);
                frame(DONE, &body)
            }
        }),
        (7u8.., vec(any::<u8>(), 0..8))
            .prop_map(move |(code, rest)| done(1, &[&[1u8, code][..], &rest].concat())),
        // A value that is not an i32 in postcard (an over-long varint), or trailing bytes.
        Just(done(1, &[&[0u8][..], &str_field(&[0xff; 6])].concat())),
        // A string that is not UTF-8 in a panic message.
        Just(frame(PANICKING, &str_field(&[0xff, 0xfe]))),
        ((64u32 << 20) + 1.., vec(any::<u8>(), 0..16)).prop_map(|(len, rest)| {
            let mut bytes = len.to_le_bytes().to_vec();
            bytes.extend(rest);
            bytes
        }),
        // A result whose length promises more than comes.
        (1u32..1024).prop_map({
            let good = good.clone();
            move |extra| {
                let mut bytes = good.clone();
                let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) + extra;
                bytes[..4].copy_from_slice(&len.to_le_bytes());
                bytes
            }
        }),
    ]
}

/// A worker that shakes hands properly, then answers a task with garbage and waits: the task
/// fails with a protocol error, or, for an answer that is merely incomplete, can be aborted;
/// either way the pool kills that worker and stops cleanly.
fn a_worker_answering_garbage_fails_only_its_task() {
    answering_garbage("reply");
}

/// [`a_worker_answering_garbage_fails_only_its_task`], from a worker whose `HELLO` says its
/// default export is async: its answers may come in any order, but a result for a task it
/// was not sent is still a protocol error, and its task can still be aborted.
fn a_concurrent_worker_answering_garbage_fails_only_its_task() {
    answering_garbage("reply-async");
}

fn answering_garbage(role: &str) {
    let tried = AtomicUsize::new(0);
    runner(64)
        .run(&bad_reply(), |bytes| {
            tried.fetch_add(1, Ordering::Relaxed);
            let pool = fake_pool(role, &bytes);
            let controller = AbortController::new();
            let task = pool.run_with::<i32, _>(1, RunOptions::new().signal(controller.signal()));
            // An incomplete answer leaves the task waiting for the rest: abort it.
            let outcome = match task.wait_timeout(Duration::from_millis(20)) {
                Ok(outcome) => outcome,
                Err(task) => {
                    controller.abort();
                    finish(task)
                }
            };
            match &outcome {
                Err(Error::Protocol { .. }) | Err(Error::Aborted { .. }) => {}
                other => prop_assert!(false, "{:?}: unexpected {:?}", bytes, other),
            }
            destroy(pool);
            prop_assert_eq!(procfs::children(), vec![]);
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    println!("    {} bad answers tried", tried.load(Ordering::Relaxed));
}

/// A worker that answers on the socket what no chunk of the rings announced: the task fails
/// with a protocol error, the worker is killed.
fn a_worker_answering_outside_the_rings_fails_its_task() {
    let good = done_frame(&[2]);
    let pool = fake_pool("reply-outside", &good);
    match finish(pool.run::<i32, _>(1)) {
        Err(Error::Protocol { message }) => assert!(message.contains("no chunk"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
    destroy(pool);
    assert_eq!(procfs::children(), vec![]);
}

/// A worker that shrinks the memory it shares with the pool cannot kill the pool's process
/// with SIGBUS: the pool sealed its size, and the task gets its answer.
fn a_worker_cannot_shrink_the_memory_it_shares_with_the_pool() {
    let good = done_frame(&[2]);
    let pool = fake_pool("reply-shrunk", &good);
    assert_eq!(finish(pool.run::<i32, _>(1)), Ok(1));
    destroy(pool);
    assert_eq!(procfs::children(), vec![]);
}

/// A worker's answer in the shared slot for big frames reaches its task (the fake worker's
/// own, here as a real one sends a big answer: so the lies below are told in the right place).
fn a_worker_answering_in_the_shared_slot_is_heard() {
    let pool = fake_pool("reply-slot", &done_frame(&[2]));
    assert_eq!(finish(pool.run::<i32, _>(1)), Ok(1));
    destroy(pool);
    assert_eq!(procfs::children(), vec![]);
}

/// A worker that lies about its frame in the shared slot for big frames (announced longer than
/// the slot, a frame longer than announced, a frame over `max_message_size`) fails its task
/// with a protocol error that says so, and is killed: the pool reads nothing outside the
/// slot, allocates nothing for the lie, and does not hang.
fn a_worker_lying_about_the_shared_slot_fails_its_task() {
    for (lie, says, max) in [
        (
            "huge",
            "a frame of 1099511627776 bytes announced, in a slot of",
            64 << 20,
        ),
        ("header", "a frame of 1073741824 bytes where", 64 << 20),
        // A slot holds a little more than max_message_size: it is a whole number of pages.
        (
            "over-max",
            "exceeds max_message_size (100000 bytes)",
            100_000,
        ),
    ] {
        let pool = Pool::builder()
            .runtime(Runtime::ChildProcess)
            .min_threads(0)
            .max_threads(1)
            .max_message_size(max)
            .env(ROLE, format!("reply-slot-{lie}"))
            .env(BYTES, hex(&done_frame(&[2])))
            .terminate_timeout(Duration::from_millis(100))
            .build()
            .expect("a pool");
        match finish(pool.run::<i32, _>(1)) {
            Err(Error::Protocol { message }) => assert!(message.contains(says), "{lie}: {message}"),
            other => panic!("{lie}: unexpected {other:?}"),
        }
        destroy(pool);
        assert_eq!(procfs::children(), vec![], "{lie}");
    }
}

/// A value nested deeper than a decoder's stack holds (here a worker's answer a million levels
/// deep): a protocol error, never a stack overflow that aborts the pool's process.
fn a_worker_answering_a_value_nested_a_million_deep_fails_its_task() {
    let pool = fake_pool("reply-nested", &[]);
    match finish(pool.run::<Nest, _>(1)) {
        Err(Error::Protocol { message }) => assert!(message.contains("Nest"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
    destroy(pool);
    assert_eq!(procfs::children(), vec![]);
}

// ---- 4. Garbage to a real worker after a valid handshake -------------------------------------

fn init_frame(max: u64) -> Vec<u8> {
    let mut body = 1u64.to_le_bytes().to_vec();
    body.push(0); // postcard
    body.extend_from_slice(&max.to_le_bytes());
    body.extend(str_field(b"")); // no teardown
    body.push(0); // no worker data
    frame(INIT, &body)
}

fn run_body(task: u64, name: &[u8], arg_type: &[u8], result_type: &[u8], arg: &[u8]) -> Vec<u8> {
    let mut body = task.to_le_bytes().to_vec();
    for field in [name, arg_type, result_type, b"", arg] {
        body.extend(str_field(field));
    }
    body
}

/// What the pool could send after the handshake, and worse: arbitrary bytes, frames of kinds
/// a worker never receives, cut, padded or lying tasks, tasks with fields that make no sense,
/// channel frames for tasks that do not exist, huge length prefixes.
fn bad_commands() -> impl Strategy<Value = Vec<u8>> {
    let good = run_body(1, b"default", b"i32", b"i32", &[4]);
    let bytes = vec(any::<u8>(), 0..24);
    prop_oneof![
        vec(any::<u8>(), 1..64),
        (any::<u8>(), bytes.clone())
            .prop_filter("not a command", |(kind, _)| {
                ![RUN, STOP, PORT, PORT_CLOSED].contains(kind)
            })
            .prop_map(|(kind, body)| frame(kind, &body)),
        (0..good.len()).prop_map({
            let good = good.clone();
            move |cut| frame(RUN, &good[..cut])
        }),
        bytes.clone().prop_map({
            let good = good.clone();
            move |extra| frame(RUN, &[&good[..], &extra].concat())
        }),
        (
            any::<u64>(),
            bytes.clone(),
            bytes.clone(),
            bytes.clone(),
            bytes.clone()
        )
            .prop_map(|(task, name, arg_type, result_type, arg)| {
                frame(RUN, &run_body(task, &name, &arg_type, &result_type, &arg))
            }),
        (bytes.clone(), bytes.clone()).prop_map(|(arg, junk)| {
            let mut frames = frame(RUN, &run_body(7, b"default", b"i32", b"i32", &arg));
            frames.extend(junk);
            frames
        }),
        (prop_oneof![Just(PORT), Just(PORT_CLOSED)], bytes.clone())
            .prop_map(|(kind, body)| frame(kind, &body)),
        (any::<u32>(), bytes.clone()).prop_map(|(len, rest)| {
            let mut bytes = len.max((1 << 20) + 1).to_le_bytes().to_vec();
            bytes.extend(rest);
            bytes
        }),
        (1u32..4096).prop_map({
            let good = good.clone();
            move |extra| {
                let mut bytes = frame(RUN, &good);
                let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) + extra;
                bytes[..4].copy_from_slice(&len.to_le_bytes());
                bytes
            }
        }),
        Just(frame(STOP, b"trailing")),
    ]
}

/// Starts this binary as a real worker on a socket the test holds, and completes the
/// handshake (with `init`, which may itself be garbage).
fn start_real_worker() -> (std::process::Child, UnixStream) {
    let (ours, theirs) = UnixStream::pair().expect("a socket pair");
    let fd = theirs.as_raw_fd();
    let mut command = Command::new(std::env::current_exe().expect("this executable"));
    command
        .env(WORKER_ENV, CHILD_FD.to_string())
        .env_remove(ROLE)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec: dup2 and fcntl only.
    unsafe {
        command.pre_exec(move || {
            if fd == CHILD_FD {
                libc::fcntl(fd, libc::F_SETFD, 0);
            } else if libc::dup2(fd, CHILD_FD) != CHILD_FD {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().expect("spawning a worker");
    drop(theirs);
    (child, ours)
}

/// Waits for `child` to exit (killing it after the bound); returns its status and stderr.
fn exit_of(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    let pid = child.id();
    let mut stderr = child.stderr.take().expect("stderr");
    let (done, finished) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = done.send((child.wait(), text));
    });
    let (status, text) = match finished.recv_timeout(BOUND) {
        Ok(outcome) => outcome,
        Err(_) => {
            procfs::kill_child(pid);
            let _ = finished.recv();
            panic!("the worker did not exit within {BOUND:?} after its channel closed");
        }
    };
    waiter.join().unwrap();
    (status.expect("waiting for the worker"), text)
}

fn a_real_worker_fed_garbage_exits_cleanly() {
    let tried = AtomicUsize::new(0);
    let exits = std::sync::Mutex::new(std::collections::BTreeMap::<String, usize>::new());
    let garbage = (any::<bool>(), bad_commands(), vec(any::<u8>(), 0..40));
    runner(256)
        .run(&garbage, |(garbage_init, commands, init_junk)| {
            tried.fetch_add(1, Ordering::Relaxed);
            let (child, mut channel) = start_real_worker();
            channel.set_read_timeout(Some(BOUND)).unwrap();
            let (kind, body) = read_frame(&mut channel).expect("the worker says hello");
            prop_assert_eq!(kind, HELLO);
            prop_assert_eq!(&body[..8], &MAGIC[..]);
            // Some cases garble the handshake's answer itself.
            let init = if garbage_init {
                frame(INIT, &init_junk)
            } else {
                init_frame(1 << 20)
            };
            // The worker may already have exited on bad input: a failed write is fine.
            let _ = channel.write_all(&init);
            let _ = channel.write_all(&commands);
            // The pool goes away: the worker must exit, not hang.
            let _ = channel.shutdown(std::net::Shutdown::Write);
            let (status, stderr) = exit_of(child);
            let code = status.code();
            prop_assert!(
                code == Some(0) || code == Some(2),
                "the worker ended with {:?} (signal {:?}); stderr: {}",
                code,
                status.signal(),
                stderr
            );
            if code == Some(2) {
                prop_assert!(stderr.contains("tinypool worker"), "{}", stderr);
            }
            *exits
                .lock()
                .unwrap()
                .entry(format!("exit {}", code.unwrap()))
                .or_default() += 1;
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    println!(
        "    {} garbage streams fed to real workers: {:?}",
        tried.load(Ordering::Relaxed),
        exits.lock().unwrap()
    );
    assert_eq!(procfs::children(), []);
}

fn main() {
    if let Some(role) = std::env::var_os(ROLE) {
        fake_worker(&role.to_string_lossy());
    }
    worker::serve_if_worker(exports());
    let both = |name: &str, body: fn(Runtime)| -> Vec<(String, Box<dyn Fn()>)> {
        vec![
            (
                format!("{name}_threads"),
                Box::new(move || body(Runtime::Threads)),
            ),
            (
                format!("{name}_child_processes"),
                Box::new(move || body(Runtime::ChildProcess)),
            ),
        ]
    };
    let mut cases = Vec::new();
    cases.extend(both(
        "a_result_that_fails_to_serialize",
        a_result_that_fails_to_serialize,
    ));
    cases.extend(both(
        "an_argument_that_fails_to_serialize",
        an_argument_that_fails_to_serialize,
    ));
    cases.extend(both(
        "worker_data_that_fails_to_serialize",
        worker_data_that_fails_to_serialize,
    ));
    cases.extend(both(
        "channel_messages_that_fail_to_serialize",
        channel_messages_that_fail_to_serialize,
    ));
    cases.extend(both("serde_code_that_panics", serde_code_that_panics));
    let single: [(&str, fn()); 10] = [
        (
            "a_bad_teardown_in_a_child_is_reported",
            a_bad_teardown_in_a_child_is_reported,
        ),
        (
            "a_worker_that_is_not_a_tinypool_worker_fails_to_start",
            a_worker_that_is_not_a_tinypool_worker_fails_to_start,
        ),
        (
            "a_worker_answering_garbage_fails_only_its_task",
            a_worker_answering_garbage_fails_only_its_task,
        ),
        (
            "a_concurrent_worker_answering_garbage_fails_only_its_task",
            a_concurrent_worker_answering_garbage_fails_only_its_task,
        ),
        (
            "a_worker_answering_outside_the_rings_fails_its_task",
            a_worker_answering_outside_the_rings_fails_its_task,
        ),
        (
            "a_real_worker_fed_garbage_exits_cleanly",
            a_real_worker_fed_garbage_exits_cleanly,
        ),
        (
            "a_worker_cannot_shrink_the_memory_it_shares_with_the_pool",
            a_worker_cannot_shrink_the_memory_it_shares_with_the_pool,
        ),
        (
            "a_worker_answering_a_value_nested_a_million_deep_fails_its_task",
            a_worker_answering_a_value_nested_a_million_deep_fails_its_task,
        ),
        (
            "a_worker_answering_in_the_shared_slot_is_heard",
            a_worker_answering_in_the_shared_slot_is_heard,
        ),
        (
            "a_worker_lying_about_the_shared_slot_fails_its_task",
            a_worker_lying_about_the_shared_slot_fails_its_task,
        ),
    ];
    for (name, body) in single {
        cases.push((name.to_owned(), Box::new(body) as Box<dyn Fn()>));
    }
    common::run_cases(cases);
}
