//! The wire frames between a pool and its child-process workers.
//!
//! Each worker has a private `UnixStream` pair; the child's end sits on fd 3 (stdin, stdout
//! and stderr stay the user's; on Windows, two anonymous pipes). On Linux, fd 4 is a memory
//! region the two sides share (on Windows, a section the marker names), with a ring per
//! direction (`transport/ring.rs`; `INIT` says whether it is there): after `INIT`,
//! the frames travel in the rings, and the socket carries only what a ring announces (frames
//! too big for it, wake-ups) and, by its end, a side's death. fd 5, when `INIT`'s `bulk` is
//! not 0, is more shared memory, a slot per direction for one big frame at a time
//! (`transport/bulk.rs`), which a ring announces too. Whichever way they travel, frames are:
//!
//! ```text
//! frame   = length:u32le kind:u8 body          length counts kind + body, at most max_message_size
//! str     = len:u32le utf8-bytes
//! bytes   = len:u32le raw-bytes                (a value encoded with the pool's codec)
//! ```
//!
//! | kind | direction | body |
//! |---|---|---|
//! | `HELLO` (1) | child → pool | magic:`b"TINYPOOL"` version:u32 pid:u32 async_count:u32 async_export:str × async_count (the names of its async exports) |
//! | `INIT` (2) | pool → child | worker_id:u64 codec:u8 max_message_size:u64 measure_memory:u8 rings:u8 bulk:u64 (the largest frame fd 5 carries; 0: none) max_memory:u64 max_cpu_seconds:u64 (0: no limit) teardown:str setup:str (empty: none) has_data:u8 [data_type:str data:bytes] |
//! | `RUN` (3) | pool → child | task:u64 name:str arg_type:str result_type:str port_type:str arg:bytes |
//! | `PORT` (4) | both | task:u64 message:bytes |
//! | `STOP` (5) | pool → child | (empty): run the teardown and exit |
//! | `DONE` (6) | child → pool | task:u64 rss:u64 (0 unless measure_memory) outcome:u8 (0 = value, 1 = error) value:bytes or error; task 0: the setup's outcome (the first frame after `INIT` when it names one), or a failed teardown's |
//! | `PANICKING` (7) | child → pool | message:str, sent by the panic hook in case the child then dies |
//! | `PORT_CLOSED` (8) | pool → child | task:u64: the caller's side of the task's channel closed |
//! | `ABORT` (9) | pool → child | task:u64: the task (of an async export) resolved in the pool; drop its future |
//!
//! An error is `code:u8` and its fields:
//!
//! | code | error | fields |
//! |---|---|---|
//! | 1 | `Panicked` | message:str has_location:u8 (1: location:str follows) |
//! | 2 | `NoSuchFunction` | name:str |
//! | 3 | `TypeMismatch` | role:u8 (0 argument, 1 result: function:str follows; 2 channel, 3 worker_data) expected:str found:str |
//! | 4 | `Disconnected` | |
//! | 5 | `NoChannel` | |
//! | 6 | `Protocol` (and any other error, as its message) | message:str |
//!
//! The child sends
//! `HELLO` first; the pool checks magic and version and answers `INIT`. When `INIT` names a
//! setup export, the child runs it before anything else and answers `DONE` for task 0 (an
//! empty value, or the failure's message as a `Protocol` error, after which it only waits to
//! be stopped); the pool sends no `RUN` before that answer. Anything malformed,
//! truncated, of an unknown kind, with bytes left over, or longer than the cap is an
//! [`Error::Protocol`], and no buffer is ever sized from a length the cap did not first bound.
//!
//! A pool may send several `RUN` frames before the first `DONE` (as many as
//! `concurrent_tasks_per_worker`); the child runs them in order and answers each in order. A
//! task with a channel is never sent behind another: its `PORT` frames follow its `RUN`.
//!
//! A child whose `HELLO` names async exports serves differently: a thread of its own reads
//! the frames while its tasks run, and the tasks of async exports run concurrently, so their
//! `DONE` frames come in any order (each names its task), and tasks with channels may be
//! in flight together (each `PORT` names its task). The pool tells such a child that a task
//! of an async export resolved on its side with `ABORT`: the child drops its future and
//! answers `DONE` for it (a result the pool drops), so every `RUN` gets exactly one `DONE`.
//! A `DONE` for a task the pool did not send, or already had an answer for, is a protocol
//! error.
//!
//! This module is the frame layer: [`read_frame`] reads a [`Frame`] (its kind and body), a
//! [`Body`] reads its fields, an [`Encoder`] writes them. The frames themselves, typed, are in
//! [`messages`]: [`ToChild`] and [`ToPool`], each with its encoding and decoding side by side;
//! nothing else reads or writes a frame's fields.

use std::io::{self, Read};
use std::time::Duration;

use crate::codec::Place;
use crate::Error;

#[cfg(target_os = "linux")]
pub(crate) mod fork;
mod messages;

#[cfg_attr(not(unix), allow(unused_imports))] // Used by the child-process runtime (Unix).
pub(crate) use messages::{Done, Hello, Init, Run, ToChild, ToPool};

/// Bumped on any change of the frames above, or of the shared memory they travel in.
pub(crate) const VERSION: u32 = 7;
const MAGIC: &[u8; 8] = b"TINYPOOL";
/// The child's end of the channel (Unix; on Windows the marker names two pipe handles and the
/// rings' section).
#[cfg(unix)]
pub(crate) const CHILD_FD: i32 = 3;
/// The file descriptor of the region the pool shares with its child (see `INIT`'s `rings`).
#[cfg(unix)]
pub(crate) const RINGS_FD: i32 = 4;
/// The file descriptor of the memory the pool shares with its child for big frames (see
/// `INIT`'s `bulk`).
#[cfg(unix)]
pub(crate) const BULK_FD: i32 = 5;
/// The environment variable that marks a worker process; its value is the fd (Unix: followed
/// by [`CLEAN`] when the child inherited no other descriptor, see [`Marker`]).
pub(crate) const WORKER_ENV: &str = "TINYPOOL_WORKER_FD";
/// What follows the fd in [`WORKER_ENV`] when the pool closed every other descriptor as it
/// started the child (or the child is a fork server's, which did).
#[cfg(unix)]
const CLEAN: &str = ",clean";

/// [`WORKER_ENV`]'s value on Unix: the channel's fd, and whether the child holds nothing else
/// it inherited. A child that does closes what it inherited (descriptors without
/// close-on-exec) before it serves; one that does not closes nothing, so that what the program
/// opened before it served stays open.
#[cfg(unix)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) fd: i32,
    pub(crate) clean: bool,
}

#[cfg(unix)]
impl Marker {
    pub(crate) fn parse(value: &std::ffi::OsStr) -> Option<Self> {
        let value = value.to_str()?;
        let (fd, clean) = match value.strip_suffix(CLEAN) {
            Some(fd) => (fd, true),
            None => (value, false),
        };
        Some(Marker {
            fd: fd.parse().ok()?,
            clean,
        })
    }

    pub(crate) fn to_env(self) -> String {
        let clean = if self.clean { CLEAN } else { "" };
        format!("{}{clean}", self.fd)
    }
}
/// The pool's process id, for the child to tie its life to (`PR_SET_PDEATHSIG`).
pub(crate) const PARENT_ENV: &str = "TINYPOOL_WORKER_PARENT";
/// What the child needs before `INIT`: the frame cap (`INIT` carries `worker_data`, which may
/// be as large as the pool's cap) and how long to wait for `INIT`, in milliseconds:
/// `"<max_message_size>,<startup_timeout_ms>"`.
pub(crate) const LIMITS_ENV: &str = "TINYPOOL_WORKER_LIMITS";

// The kinds of frame, as in the table above.
const HELLO: u8 = 1;
const INIT: u8 = 2;
const RUN: u8 = 3;
const PORT: u8 = 4;
const STOP: u8 = 5;
const DONE: u8 = 6;
const PANICKING: u8 = 7;
const PORT_CLOSED: u8 = 8;
const ABORT: u8 = 9;

/// The default cap on a frame, 64 MiB.
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// What a child needs to know before `INIT`, passed in [`LIMITS_ENV`].
pub(crate) struct Limits {
    /// The cap on `INIT`.
    pub(crate) max: usize,
    /// How long to wait for `INIT` after `HELLO`.
    pub(crate) startup: Duration,
}

impl Limits {
    /// From [`LIMITS_ENV`]; the defaults when it is missing or garbled.
    pub(crate) fn from_env(value: Option<&std::ffi::OsStr>) -> Self {
        let parsed = value.and_then(|value| {
            let (max, startup) = value.to_str()?.split_once(',')?;
            Some((max.parse().ok()?, startup.parse().ok()?))
        });
        let (max, startup_ms) = parsed.unwrap_or((DEFAULT_MAX_MESSAGE_SIZE, 10_000));
        Limits {
            max,
            startup: Duration::from_millis(startup_ms),
        }
    }

    /// The value a pool passes in [`LIMITS_ENV`].
    pub(crate) fn to_env(max: usize, startup: Duration) -> String {
        let startup_ms = u64::try_from(startup.as_millis()).unwrap_or(u64::MAX);
        format!("{max},{startup_ms}")
    }
}

fn protocol(message: impl Into<String>) -> Error {
    Error::Protocol {
        message: message.into(),
    }
}

// ---- Writing -----------------------------------------------------------------------------------

/// Something that travels as one frame: its kind and its fields, written to any [`Sink`].
pub(crate) trait Message {
    fn kind(&self) -> u8;

    /// Writes the body's fields, in order.
    fn fields<S: Sink>(&self, out: &mut Encoder<'_, S>);

    /// Encodes the frame into `buf`, replacing what it held; [`Error::Protocol`], and `buf`
    /// untouched, if it would exceed `max`. The frame is measured first, so that `buf` grows
    /// once, and never for a frame that is refused.
    #[cfg(test)]
    fn encode(&self, max: usize, buf: &mut Vec<u8>) -> Result<(), Error> {
        let size = self.measure(max)?;
        buf.clear();
        buf.reserve(size);
        self.write(size, buf);
        debug_assert_eq!(buf.len(), size, "measured and written alike");
        Ok(())
    }

    /// The frame's size, its header included; [`Error::Protocol`] if it would exceed `max`.
    fn measure(&self, max: usize) -> Result<usize, Error> {
        let mut len = 1; // The kind.
        self.fields(&mut Encoder(&mut len));
        match u32::try_from(len) {
            Ok(_) if len <= max => Ok(4 + len),
            _ => Err(protocol(format!(
                "a message of {len} bytes exceeds max_message_size ({max} bytes)"
            ))),
        }
    }

    /// Writes the frame, of `size` bytes as [`measure`](Self::measure) found, to `out`.
    fn write<S: Sink>(&self, size: usize, out: &mut S) {
        let header = u32::try_from(size - 4).expect("measured");
        // The header and the kind, put at once.
        let mut head = [self.kind(); 5];
        head[..4].copy_from_slice(&header.to_le_bytes());
        out.put(&head);
        self.fields(&mut Encoder(out));
    }

    /// The frame, in a buffer of its own.
    #[cfg(test)]
    fn to_frame(&self, max: usize) -> Result<Vec<u8>, Error> {
        let mut frame = Vec::new();
        self.encode(max, &mut frame)?;
        Ok(frame)
    }
}

/// Where an [`Encoder`] writes: a count of bytes (to measure a frame), or the frame itself.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for usize {
    fn put(&mut self, bytes: &[u8]) {
        *self += bytes.len();
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A frame written in place (shared memory): the place holds at least the measured frame.
impl Sink for Place<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let fits = Place::put(self, bytes);
        debug_assert!(fits, "a place holds the frame measured for it");
    }
}

/// Writes the fields of a frame's body.
pub(crate) struct Encoder<'s, S>(&'s mut S);

impl<S: Sink> Encoder<'_, S> {
    pub(crate) fn u8(&mut self, value: u8) -> &mut Self {
        self.0.put(&[value]);
        self
    }

    pub(crate) fn u32(&mut self, value: u32) -> &mut Self {
        self.0.put(&value.to_le_bytes());
        self
    }

    pub(crate) fn u64(&mut self, value: u64) -> &mut Self {
        self.0.put(&value.to_le_bytes());
        self
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.put(bytes);
        self
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        // Lengths above u32 are refused by `Message::encode` through the frame cap: the
        // measured frame counts every byte.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.u32(len).raw(bytes)
    }

    pub(crate) fn str(&mut self, text: &str) -> &mut Self {
        self.bytes(text.as_bytes())
    }
}

// ---- Reading -----------------------------------------------------------------------------------

/// A frame as read: its kind and its body, to decode with [`ToChild::decode`] or
/// [`ToPool::decode`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) kind: u8,
    pub(crate) body: Payload,
}

/// A frame's body: in a buffer of its own, or, for a big frame from the pool, lent where the
/// pool wrote it (a child's side of the shared memory for big frames, `transport/bulk.rs`),
/// until the payload is dropped. Only a child borrows so: the pool never reads in place what
/// a child wrote, which the child could change under it.
pub(crate) enum Payload {
    Owned(Vec<u8>),
    Lent(Box<dyn Lent>),
}

/// Bytes lent to a [`Payload`]; given back when dropped.
pub(crate) trait Lent: Send {
    fn bytes(&self) -> &[u8];
}

impl std::ops::Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Payload::Owned(bytes) => bytes,
            Payload::Lent(lent) => lent.bytes(),
        }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Payload::Owned(bytes)
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Payload {}

/// Reads one frame. `Ok(None)` on a clean end of stream before a frame.
pub(crate) fn read_frame(reader: &mut impl Read, max: usize) -> Result<Option<Frame>, Error> {
    let mut header = [0u8; 4];
    match read_full(reader, &mut header)? {
        0 => return Ok(None),
        4 => {}
        _ => return Err(protocol("the stream ended inside a frame header")),
    }
    let len = u32::from_le_bytes(header) as usize;
    if len == 0 {
        return Err(protocol("empty frame"));
    }
    if len > max {
        return Err(protocol(format!(
            "a frame of {len} bytes exceeds max_message_size ({max} bytes)"
        )));
    }
    let mut kind = [0u8; 1];
    let mut body = vec![0u8; len - 1];
    if read_full(reader, &mut kind)? != 1 || read_full(reader, &mut body)? != len - 1 {
        return Err(protocol("the stream ended inside a frame"));
    }
    Ok(Some(Frame {
        kind: kind[0],
        body: body.into(),
    }))
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, Error> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(protocol(format!("reading the worker channel: {e}"))),
        }
    }
    Ok(filled)
}

/// Reads the fields of a frame body, each read checked against what is left.
pub(crate) struct Body<'a> {
    rest: &'a [u8],
}

impl<'a> Body<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Body { rest: body }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.rest.len() < n {
            return Err(protocol("truncated frame"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Error> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    pub(crate) fn raw(&mut self, n: usize) -> Result<&'a [u8], Error> {
        self.take(n)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, Error> {
        text(self.bytes()?).ok_or_else(|| protocol("a string is not UTF-8"))
    }

    /// Fails unless every byte was read.
    pub(crate) fn end(&self) -> Result<(), Error> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(protocol("trailing bytes in frame"))
        }
    }
}

/// `bytes` as a string, if they are UTF-8. Most strings (exports' and types' names) are ASCII,
/// which a word at a time shows faster than a check of UTF-8 walks their bytes.
#[inline]
fn text(bytes: &[u8]) -> Option<&str> {
    if is_ascii(bytes) {
        // SAFETY: ASCII is UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).ok()
}

/// Whether `bytes` are ASCII: up to 16, from two overlapping words or half words read at
/// once (the standard library goes byte by byte below a word); more, as it does.
#[inline]
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let len = bytes.len();
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    match len {
        0 => true,
        1..=3 => (bytes[0] | bytes[len / 2] | bytes[len - 1]) < 0x80,
        4..=7 => (half(0) | half(len - 4)) & HIGH as u32 == 0,
        8..=16 => (word(0) | word(len - 8)) & HIGH == 0,
        _ => bytes.is_ascii(),
    }
}

/// [`Body`]'s reads without an error to make: the frames of every task (`RUN`, a `DONE` with a
/// value) are read so first, whole, and read again with a `Body` only if that fails, for the
/// error. What reads whole here reads alike there (a test checks).
pub(crate) struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Fields { rest: body }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        Some(head)
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    #[inline]
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    #[inline]
    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        self.take(len as usize)
    }

    #[inline]
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        text(self.bytes()?)
    }

    /// Whether every byte was read.
    #[inline]
    pub(crate) fn end(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TypeRole;

    const MAX: usize = 1024;

    /// A frame of any kind with any fields, for the frame layer's own tests (the frames
    /// themselves are [`messages`]' to test).
    pub(super) struct Raw<'a> {
        pub(super) kind: u8,
        pub(super) fields: &'a [Field<'a>],
    }

    pub(super) enum Field<'a> {
        U64(u64),
        Str(&'a str),
        Bytes(&'a [u8]),
        Raw(&'a [u8]),
        Error(&'a Error),
    }

    impl Message for Raw<'_> {
        fn kind(&self) -> u8 {
            self.kind
        }

        fn fields<S: Sink>(&self, out: &mut Encoder<'_, S>) {
            for field in self.fields {
                match field {
                    Field::U64(value) => out.u64(*value),
                    Field::Str(text) => out.str(text),
                    Field::Bytes(bytes) => out.bytes(bytes),
                    Field::Raw(bytes) => out.raw(bytes),
                    Field::Error(error) => out.error(error),
                };
            }
        }
    }

    pub(super) fn build(kind: u8, fields: &[Field<'_>], max: usize) -> Result<Vec<u8>, Error> {
        Raw { kind, fields }.to_frame(max)
    }

    fn decode(bytes: &[u8]) -> Result<Option<Frame>, Error> {
        read_frame(&mut &bytes[..], MAX)
    }

    #[test]
    fn ascii_is_told_from_the_rest_at_every_length() {
        for len in 0..=40 {
            for at in 0..len {
                let mut bytes = vec![b'a'; len];
                assert!(is_ascii(&bytes));
                bytes[at] = 0x80;
                assert!(!is_ascii(&bytes), "{len} bytes, 0x80 at {at}");
                bytes[at] = 0xff;
                assert!(!is_ascii(&bytes), "{len} bytes, 0xff at {at}");
                bytes[at] = 0x7f;
                assert!(is_ascii(&bytes));
            }
        }
    }

    #[test]
    fn a_frame_round_trips() {
        let fields = [
            Field::U64(7),
            Field::Str("multiply"),
            Field::Bytes(&[1, 2, 3]),
        ];
        let frame = build(RUN, &fields, MAX).unwrap();
        let Frame { kind, body } = decode(&frame).unwrap().unwrap();
        assert_eq!(kind, RUN);
        let mut body = Body::new(&body);
        assert_eq!(body.u64().unwrap(), 7);
        assert_eq!(body.str().unwrap(), "multiply");
        assert_eq!(body.bytes().unwrap(), &[1, 2, 3]);
        body.end().unwrap();
    }

    #[test]
    fn errors_round_trip() {
        for error in [
            Error::Panicked {
                message: "boom".into(),
                location: None,
            },
            Error::Panicked {
                message: "boom".into(),
                location: Some("src/lib.rs:1:2".into()),
            },
            Error::NoSuchFunction { name: "f".into() },
            Error::type_mismatch(
                TypeRole::Argument {
                    function: "add".into(),
                },
                "i64",
                "i32",
            ),
            Error::type_mismatch(
                TypeRole::Result {
                    function: "default".into(),
                },
                "u8",
                "()",
            ),
            Error::type_mismatch(TypeRole::Channel, "u8", "u16"),
            Error::type_mismatch(TypeRole::WorkerData, "String", "u32"),
            Error::Disconnected,
            Error::NoChannel,
        ] {
            let frame = build(DONE, &[Field::Error(&error)], MAX).unwrap();
            let Frame { body, .. } = decode(&frame).unwrap().unwrap();
            assert_eq!(Body::new(&body).error().unwrap(), error);
        }
    }

    #[test]
    fn an_empty_stream_is_a_clean_end() {
        assert_eq!(decode(&[]).unwrap(), None);
    }

    #[test]
    fn a_huge_length_prefix_is_refused_before_allocating() {
        let error = decode(&u32::MAX.to_le_bytes()).unwrap_err();
        assert!(matches!(error, Error::Protocol { ref message } if message.contains("exceeds")));
    }

    #[test]
    fn an_oversized_frame_is_refused_when_built() {
        let error = build(PORT, &[Field::Raw(&[0; MAX])], MAX).unwrap_err();
        assert!(matches!(error, Error::Protocol { .. }));
    }

    #[test]
    fn truncated_frames_are_protocol_errors() {
        let frame = build(RUN, &[Field::U64(1)], MAX).unwrap();
        for cut in 1..frame.len() {
            assert!(
                matches!(decode(&frame[..cut]), Err(Error::Protocol { .. })),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn reading_past_a_body_is_an_error_not_a_panic() {
        let mut body = Body::new(&[5, 0, 0, 0, b'a']);
        assert!(matches!(body.str(), Err(Error::Protocol { .. })));
        let mut body = Body::new(&[9]);
        assert!(matches!(body.error(), Err(Error::Protocol { .. })));
        assert!(matches!(
            Body::new(&[0xff, 0xff]).u32(),
            Err(Error::Protocol { .. })
        ));
        assert!(matches!(Body::new(&[1]).end(), Err(Error::Protocol { .. })));
    }

    #[test]
    fn an_empty_frame_is_an_error() {
        assert!(matches!(decode(&[0, 0, 0, 0]), Err(Error::Protocol { .. })));
    }

    // ---- Properties: any input ends in a frame or a clean error --------------------------------

    mod properties {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;
        use std::io;

        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::super::*;
        use super::{build, Field, MAX};
        use crate::TypeRole;

        /// Records the largest allocation this thread asks for while measuring, to show that
        /// no buffer is sized from a length the cap did not bound first.
        struct Tracking;

        thread_local! {
            static MEASURING: Cell<bool> = const { Cell::new(false) };
            static LARGEST: Cell<usize> = const { Cell::new(0) };
        }

        fn note(size: usize) {
            let _ = MEASURING.try_with(|measuring| {
                if measuring.get() {
                    LARGEST.with(|largest| largest.set(largest.get().max(size)));
                }
            });
        }

        // SAFETY: every call is passed on to the system allocator unchanged.
        unsafe impl GlobalAlloc for Tracking {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                note(layout.size());
                System.alloc(layout)
            }

            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                note(layout.size());
                System.alloc_zeroed(layout)
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                note(new_size);
                System.realloc(ptr, layout, new_size)
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                System.dealloc(ptr, layout)
            }
        }

        #[global_allocator]
        static ALLOCATOR: Tracking = Tracking;

        /// Runs `f`, returning its output and the largest allocation it made on this thread.
        fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
            LARGEST.with(|largest| largest.set(0));
            MEASURING.with(|measuring| measuring.set(true));
            let output = f();
            MEASURING.with(|measuring| measuring.set(false));
            (output, LARGEST.with(Cell::get))
        }

        /// Room for an error message on top of a frame's body.
        const MESSAGE: usize = 256;

        fn is_protocol(error: &Error) -> bool {
            matches!(error, Error::Protocol { .. })
        }

        /// Hands out its bytes in the given chunk sizes, with an `Interrupted` before some, and
        /// optionally fails for good at the end instead of saying end of stream.
        struct Chunked<'a> {
            bytes: &'a [u8],
            chunks: Vec<(usize, bool)>,
            next: usize,
            fail_at_end: bool,
        }

        impl io::Read for Chunked<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.bytes.is_empty() {
                    return if self.fail_at_end {
                        Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
                    } else {
                        Ok(0)
                    };
                }
                let (size, interrupt) = self.chunks.get(self.next).copied().unwrap_or((7, false));
                self.next += 1;
                if interrupt {
                    return Err(io::ErrorKind::Interrupted.into());
                }
                let n = size.max(1).min(buf.len()).min(self.bytes.len());
                buf[..n].copy_from_slice(&self.bytes[..n]);
                self.bytes = &self.bytes[n..];
                Ok(n)
            }
        }

        /// A frame built from arbitrary fields.
        fn any_frame() -> impl Strategy<Value = (u8, u64, String, Vec<u8>)> {
            (
                any::<u8>(),
                any::<u64>(),
                ".{0,40}",
                vec(any::<u8>(), 0..200),
            )
        }

        fn build_any((kind, n, text, bytes): &(u8, u64, String, Vec<u8>)) -> Vec<u8> {
            let fields = [Field::U64(*n), Field::Str(text), Field::Bytes(bytes)];
            build(*kind, &fields, MAX).unwrap()
        }

        #[test]
        fn the_tracker_sees_a_frames_allocation() {
            let frame = build(RUN, &[Field::Raw(&[1; 1000])], MAX).unwrap();
            let (decoded, largest) = largest_allocation(|| read_frame(&mut &frame[..], MAX));
            assert!(matches!(decoded, Ok(Some(Frame { kind: RUN, .. }))));
            assert!(largest >= 1000, "the body's buffer was seen: {largest}");
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            /// Any byte stream decodes, frame after frame, into frames that re-encode to the
            /// bytes consumed, until a clean end or a `Protocol` error; never a panic, never an
            /// allocation above the cap.
            #[test]
            fn any_bytes_decode_to_frames_or_a_clean_error(
                bytes in vec(any::<u8>(), 0..3_000),
                max in 1usize..2_048,
            ) {
                let mut reader = &bytes[..];
                let mut consumed = Vec::new();
                // Every frame takes at least 5 bytes: this many reads end it.
                for _ in 0..=bytes.len() / 5 + 1 {
                    let (decoded, largest) = largest_allocation(|| read_frame(&mut reader, max));
                    prop_assert!(largest <= max.max(MESSAGE), "allocated {} with max {}", largest, max);
                    match decoded {
                        Ok(Some(Frame { kind, body })) => {
                            prop_assert!(body.len() < max);
                            consumed.extend_from_slice(&(body.len() as u32 + 1).to_le_bytes());
                            consumed.push(kind);
                            consumed.extend_from_slice(&body);
                            prop_assert_eq!(&bytes[..consumed.len()], &consumed[..]);
                        }
                        Ok(None) => {
                            prop_assert_eq!(consumed.len(), bytes.len(), "a clean end only at the end");
                            return Ok(());
                        }
                        Err(error) => {
                            prop_assert!(is_protocol(&error), "{:?}", error);
                            return Ok(());
                        }
                    }
                }
                prop_assert!(false, "the stream never ended");
            }

            /// A length prefix above the cap is refused from the header alone, whatever follows.
            #[test]
            fn huge_length_prefixes_are_refused_before_allocating(
                max in 1usize..(64 << 20),
                excess in 1u64..=u64::from(u32::MAX),
                rest in vec(any::<u8>(), 0..64),
            ) {
                let len = (max as u64 + excess).min(u64::from(u32::MAX)) as u32;
                prop_assume!(len as usize > max);
                let mut bytes = len.to_le_bytes().to_vec();
                bytes.extend(rest);
                let (decoded, largest) = largest_allocation(|| read_frame(&mut &bytes[..], max));
                prop_assert!(largest <= MESSAGE, "allocated {} for a refused frame", largest);
                match decoded {
                    Err(Error::Protocol { message }) => prop_assert!(message.contains("exceeds")),
                    other => prop_assert!(false, "expected a refusal, got {:?}", other),
                }
            }

            /// Frames of any kind (unknown kinds are the reader's to refuse) and any fields round
            /// trip, however the stream cuts them into reads, with `Interrupted` in between.
            #[test]
            fn built_frames_round_trip_through_any_chunking(
                frames in vec(any_frame(), 1..6),
                chunks in vec((1usize..64, proptest::bool::weighted(0.1)), 0..64),
            ) {
                let stream: Vec<u8> = frames.iter().flat_map(build_any).collect();
                let mut reader = Chunked { bytes: &stream, chunks, next: 0, fail_at_end: false };
                for (kind, n, text, bytes) in &frames {
                    let decoded = read_frame(&mut reader, MAX);
                    let Ok(Some(Frame { kind: got_kind, body })) = decoded else {
                        return Err(TestCaseError::fail(format!("{decoded:?}")));
                    };
                    prop_assert_eq!(got_kind, *kind);
                    let mut body = Body::new(&body);
                    prop_assert_eq!(body.u64()?, *n);
                    prop_assert_eq!(body.str()?, text.as_str());
                    prop_assert_eq!(body.bytes()?, &bytes[..]);
                    body.end()?;
                }
                prop_assert_eq!(read_frame(&mut reader, MAX)?, None);
            }

            /// Every cut of a stream of frames, and every read error, is a clean error: a cut at
            /// a frame boundary is a clean end, anything else `Protocol`.
            #[test]
            fn cut_or_failing_streams_are_protocol_errors(
                frames in vec(any_frame(), 1..4),
                cut in any::<proptest::sample::Index>(),
                fail_at_end in any::<bool>(),
            ) {
                let stream: Vec<u8> = frames.iter().flat_map(build_any).collect();
                let cut = cut.index(stream.len());
                let boundaries: Vec<usize> = frames
                    .iter()
                    .scan(0, |end, frame| {
                        *end += build_any(frame).len();
                        Some(*end)
                    })
                    .collect();
                let mut reader = Chunked {
                    bytes: &stream[..cut],
                    chunks: Vec::new(),
                    next: 0,
                    fail_at_end,
                };
                let whole = boundaries.iter().filter(|&&end| end <= cut).count();
                for _ in 0..whole {
                    prop_assert!(matches!(read_frame(&mut reader, MAX), Ok(Some(_))));
                }
                match read_frame(&mut reader, MAX) {
                    Ok(None) => prop_assert!(!fail_at_end && (cut == 0 || boundaries.contains(&cut))),
                    Err(error) => prop_assert!(is_protocol(&error), "{:?}", error),
                    Ok(Some(frame)) => prop_assert!(false, "a frame past the cut: {:?}", frame),
                }
            }

            /// Reading any body with any sequence of field readers gives values or `Protocol`
            /// errors, and allocates no more than the body holds.
            #[test]
            fn body_readers_never_panic(
                body in vec(any::<u8>(), 0..256),
                reads in vec(0u8..8, 1..24),
            ) {
                let ((), largest) = largest_allocation(|| {
                    let mut fields = Body::new(&body);
                    for read in &reads {
                        let outcome = match read {
                            0 => fields.u8().map(drop),
                            1 => fields.u32().map(drop),
                            2 => fields.u64().map(drop),
                            3 => fields.bytes().map(drop),
                            4 => fields.str().map(drop),
                            5 => fields.error().map(drop),
                            6 => fields.raw(usize::from(body.first().copied().unwrap_or(0))).map(drop),
                            _ => fields.end(),
                        };
                        if let Err(error) = outcome {
                            assert!(is_protocol(&error), "{error:?}");
                        }
                    }
                });
                prop_assert!(largest <= body.len() + MESSAGE, "allocated {}", largest);
            }

            /// Errors round trip; any error code with any fields decodes or fails cleanly.
            #[test]
            fn errors_round_trip_and_unknown_codes_fail_cleanly(
                texts in (".{0,30}", ".{0,30}"),
                code in any::<u8>(),
                tail in vec(any::<u8>(), 0..40),
            ) {
                let (a, b) = texts;
                for error in [
                    Error::Panicked { message: a.clone(), location: None },
                    Error::Panicked { message: a.clone(), location: Some(b.clone()) },
                    Error::NoSuchFunction { name: a.clone() },
                    Error::TypeMismatch {
                        what: TypeRole::Argument { function: b.clone() },
                        expected: a.clone(),
                        found: b.clone(),
                    },
                    Error::TypeMismatch {
                        what: TypeRole::Result { function: a.clone() },
                        expected: a.clone(),
                        found: b.clone(),
                    },
                    Error::TypeMismatch { what: TypeRole::Channel, expected: a.clone(), found: b.clone() },
                    Error::TypeMismatch { what: TypeRole::WorkerData, expected: b.clone(), found: a.clone() },
                    Error::Protocol { message: b.clone() },
                    Error::Disconnected,
                    Error::NoChannel,
                ] {
                    let frame = build(DONE, &[Field::Error(&error)], MAX).unwrap();
                    let Frame { body, .. } = read_frame(&mut &frame[..], MAX)?.unwrap();
                    let mut body = Body::new(&body);
                    prop_assert_eq!(body.error()?, error);
                    body.end()?;
                }
                let mut bytes = vec![code];
                bytes.extend(tail);
                match Body::new(&bytes).error() {
                    Ok(_) => prop_assert!((1..=6).contains(&code)),
                    Err(error) => prop_assert!(is_protocol(&error)),
                }
            }

            /// A frame too big for the cap is refused when built, whatever it holds.
            #[test]
            fn frames_over_the_cap_are_refused_when_built(
                max in 64usize..512,
                extra in 1usize..64,
            ) {
                let body = vec![0u8; max + extra];
                prop_assert!(build(PORT, &[Field::Raw(&body)], max).is_err());
                prop_assert!(build(PORT, &[Field::Raw(&body[..max - 1])], max).is_ok());
            }
        }
    }
}
