//! The wire frames between a pool and its child-process workers.
//!
//! Each worker has a private `UnixStream` pair; the child's end sits on fd 3 (stdin, stdout
//! and stderr stay the user's). On it travel frames:
//!
//! ```text
//! frame   = length:u32le kind:u8 body          length counts kind + body, at most max_message_size
//! str     = len:u32le utf8-bytes
//! bytes   = len:u32le raw-bytes                (a value encoded with the pool's codec)
//! ```
//!
//! | kind | direction | body |
//! |---|---|---|
//! | `HELLO` | child → pool | magic:`b"TINYPOOL"` version:u32 pid:u32 |
//! | `INIT` | pool → child | worker_id:u64 codec:u8 max_message_size:u64 teardown:str has_data:u8 [data_type:str data:bytes] |
//! | `RUN` | pool → child | task:u64 name:str arg_type:str result_type:str port_type:str arg:bytes |
//! | `PORT` | both | task:u64 message:bytes |
//! | `PORT_CLOSED` | pool → child | task:u64: the caller's side of the task's channel closed |
//! | `STOP` | pool → child | (empty): run the teardown and exit |
//! | `DONE` | child → pool | task:u64 rss:u64 outcome:u8 (0 = value, 1 = error) value:bytes or error |
//! | `PANICKING` | child → pool | message:str, sent by the panic hook in case the child then dies |
//!
//! An error is `code:u8` followed by its fields as `str`s (see [`write_error`]). The child sends
//! `HELLO` first; the pool checks magic and version and answers `INIT`. Anything malformed,
//! truncated, of an unknown kind or longer than the cap is an [`Error::Protocol`], and no
//! buffer is ever sized from a length the cap did not first bound.

use std::io::{self, Read, Write};

use crate::Error;

/// Bumped on any change of the frames above.
pub(crate) const VERSION: u32 = 1;
pub(crate) const MAGIC: &[u8; 8] = b"TINYPOOL";
/// The child's end of the channel.
pub(crate) const CHILD_FD: i32 = 3;
/// The environment variable that marks a worker process; its value is the fd.
pub(crate) const WORKER_ENV: &str = "TINYPOOL_WORKER_FD";

pub(crate) const HELLO: u8 = 1;
pub(crate) const INIT: u8 = 2;
pub(crate) const RUN: u8 = 3;
pub(crate) const PORT: u8 = 4;
pub(crate) const STOP: u8 = 5;
pub(crate) const DONE: u8 = 6;
pub(crate) const PANICKING: u8 = 7;
pub(crate) const PORT_CLOSED: u8 = 8;

/// The default cap on a frame, 64 MiB.
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

fn protocol(message: impl Into<String>) -> Error {
    Error::Protocol {
        message: message.into(),
    }
}

/// Builds one frame's body; [`Frame::finish`] prefixes the length.
pub(crate) struct Frame {
    buf: Vec<u8>,
}

impl Frame {
    pub(crate) fn new(kind: u8) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&[0; 4]);
        buf.push(kind);
        Frame { buf }
    }

    pub(crate) fn u8(mut self, value: u8) -> Self {
        self.buf.push(value);
        self
    }

    pub(crate) fn u32(mut self, value: u32) -> Self {
        self.buf.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(crate) fn u64(mut self, value: u64) -> Self {
        self.buf.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(crate) fn raw(mut self, bytes: &[u8]) -> Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    pub(crate) fn bytes(self, bytes: &[u8]) -> Self {
        // Lengths above u32 are refused by `finish` through the frame cap.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.u32(len).raw(bytes)
    }

    pub(crate) fn str(self, text: &str) -> Self {
        self.bytes(text.as_bytes())
    }

    pub(crate) fn error(self, error: &Error) -> Self {
        write_error(self, error)
    }

    /// The frame, ready to write; [`Error::Protocol`] if it exceeds `max`.
    pub(crate) fn finish(mut self, max: usize) -> Result<Vec<u8>, Error> {
        let len = self.buf.len() - 4;
        if len > max || u32::try_from(len).is_err() {
            return Err(protocol(format!(
                "a message of {len} bytes exceeds max_message_size ({max} bytes)"
            )));
        }
        self.buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
        Ok(self.buf)
    }
}

/// Reads one frame: its kind and body. `Ok(None)` on a clean end of stream before a frame.
pub(crate) fn read_frame(
    reader: &mut impl Read,
    max: usize,
) -> Result<Option<(u8, Vec<u8>)>, Error> {
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
    let mut body = vec![0u8; len];
    if read_full(reader, &mut body)? != len {
        return Err(protocol("the stream ended inside a frame"));
    }
    let kind = body.remove(0);
    Ok(Some((kind, body)))
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

/// Writes a finished frame.
pub(crate) fn write_frame(writer: &mut impl Write, frame: &[u8]) -> Result<(), Error> {
    writer
        .write_all(frame)
        .map_err(|e| protocol(format!("writing the worker channel: {e}")))
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
        std::str::from_utf8(self.bytes()?).map_err(|_| protocol("a string is not UTF-8"))
    }

    pub(crate) fn error(&mut self) -> Result<Error, Error> {
        read_error(self)
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

/// The errors a child can report for a task; anything else it reports as `Protocol`.
fn write_error(frame: Frame, error: &Error) -> Frame {
    match error {
        Error::Panicked { message } => frame.u8(1).str(message),
        Error::NoSuchFunction { name } => frame.u8(2).str(name),
        Error::TypeMismatch { expected, found } => frame.u8(3).str(expected).str(found),
        Error::Disconnected => frame.u8(4),
        Error::NoChannel => frame.u8(5),
        Error::Protocol { message } => frame.u8(6).str(message),
        other => frame.u8(6).str(&other.to_string()),
    }
}

fn read_error(body: &mut Body<'_>) -> Result<Error, Error> {
    Ok(match body.u8()? {
        1 => Error::Panicked {
            message: body.str()?.to_owned(),
        },
        2 => Error::NoSuchFunction {
            name: body.str()?.to_owned(),
        },
        3 => Error::TypeMismatch {
            expected: body.str()?.to_owned(),
            found: body.str()?.to_owned(),
        },
        4 => Error::Disconnected,
        5 => Error::NoChannel,
        6 => protocol(body.str()?),
        code => return Err(protocol(format!("unknown error code {code}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;

    fn decode(bytes: &[u8]) -> Result<Option<(u8, Vec<u8>)>, Error> {
        read_frame(&mut &bytes[..], MAX)
    }

    #[test]
    fn a_frame_round_trips() {
        let frame = Frame::new(RUN)
            .u64(7)
            .str("multiply")
            .bytes(&[1, 2, 3])
            .finish(MAX)
            .unwrap();
        let (kind, body) = decode(&frame).unwrap().unwrap();
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
            },
            Error::NoSuchFunction { name: "f".into() },
            Error::type_mismatch("i64", "i32"),
            Error::Disconnected,
            Error::NoChannel,
        ] {
            let frame = Frame::new(DONE).error(&error).finish(MAX).unwrap();
            let (_, body) = decode(&frame).unwrap().unwrap();
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
        let error = Frame::new(PORT).raw(&[0; MAX + 1]).finish(MAX).unwrap_err();
        assert!(matches!(error, Error::Protocol { .. }));
    }

    #[test]
    fn truncated_frames_are_protocol_errors() {
        let frame = Frame::new(RUN).u64(1).finish(MAX).unwrap();
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
}
