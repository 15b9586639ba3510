//! The frames, typed: [`ToChild`] (what a pool sends) and [`ToPool`] (what a child sends),
//! each kind's encoding and decoding side by side, as the table in the [module's
//! doc](super) lays them out.
//!
//! Encoding borrows (a `RUN` its argument's bytes and its names, a `DONE` its result's), so
//! that nothing is copied on the way to the wire but into the frame; decoding borrows from the
//! frame read, and checks every field, the kind, and that nothing is left over.

use super::ABORT;
use super::{
    protocol, Body, Encoder, Fields, Frame, Message, Sink, DONE, HELLO, INIT, MAGIC, PANICKING,
    PORT, PORT_CLOSED, RUN, STOP, VERSION,
};
use crate::codec::{copy_to, Place, Serialization};
use crate::{Error, TypeRole};

/// What a pool sends its child.
#[derive(Debug, PartialEq)]
pub(crate) enum ToChild<'a> {
    /// The answer to `HELLO`: who the worker is and how it works.
    Init(Init<'a>),
    /// A task.
    Run(Run<'a>),
    /// A message of the caller's side of task `task`'s channel.
    Port { task: u64, message: &'a [u8] },
    /// The caller's side of task `task`'s channel closed.
    PortClosed { task: u64 },
    /// Run the teardown and exit.
    Stop,
    /// Task `task` resolved in the pool (aborted, timed out): drop its future. Sent only for
    /// a task of an async export; the child answers `DONE` for it all the same, unless it had
    /// already.
    Abort { task: u64 },
}

/// What a child sends its pool.
#[derive(Debug, PartialEq)]
pub(crate) enum ToPool<'a> {
    /// The child's first frame.
    Hello(Hello),
    /// The outcome of a task (or, for task 0, of the setup or the teardown).
    Done(Done<'a>),
    /// A panic's message, sent by the panic hook in case the child then dies.
    Panicking { message: &'a str },
    /// A message of the task's side of task `task`'s channel.
    Port { task: u64, message: &'a [u8] },
}

/// `HELLO`: the child is a tinypool worker speaking `version`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) version: u32,
    pub(crate) pid: u32,
    /// The names of the child's async exports: their tasks run concurrently, end in any
    /// order, and are aborted with `ABORT` rather than by killing the child.
    pub(crate) async_exports: Vec<String>,
}

/// `INIT`.
#[derive(Debug, PartialEq)]
pub(crate) struct Init<'a> {
    pub(crate) worker_id: usize,
    pub(crate) codec: Serialization,
    pub(crate) max_message_size: usize,
    /// Whether each `DONE` reports the child's resident memory.
    pub(crate) measure_memory: bool,
    /// Whether fd 4 is a region of rings, which carry the frames after `INIT`.
    pub(crate) rings: bool,
    /// The largest frame (header included) that fd 5 carries in shared memory, each way; 0
    /// when it is not there.
    pub(crate) bulk: usize,
    /// `resource_limits`: bytes of address space, seconds of CPU time; 0 for none.
    pub(crate) max_memory: u64,
    pub(crate) max_cpu_seconds: u64,
    /// The teardown export; empty for none.
    pub(crate) teardown: &'a str,
    /// The setup export, run before the first task and answered with `DONE` for task 0;
    /// empty for none.
    pub(crate) setup: &'a str,
    /// `worker_data`: its type's name and its encoded value.
    pub(crate) worker_data: Option<(&'a str, &'a [u8])>,
}

/// `RUN`: a task, with the names of its types, so that a mismatch is an error, not a
/// misreading.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Run<'a> {
    pub(crate) task: u64,
    /// The export to call.
    pub(crate) name: &'a str,
    pub(crate) arg_type: &'a str,
    pub(crate) result_type: &'a str,
    /// The type of the task's channel's messages; empty: it has no channel.
    pub(crate) port_type: &'a str,
    /// The argument, encoded with the pool's codec.
    pub(crate) arg: &'a [u8],
}

impl Run<'_> {
    /// The bytes of this `RUN` frame before its argument's (its header, its other fields and
    /// the argument's length): what [`write_head`](Self::write_head) writes, the argument
    /// following it, encoded in place.
    pub(crate) fn head_size(&self) -> usize {
        // The header, the kind, the task, four strings' lengths and bytes, the argument's
        // length: as `fields` writes them (a test checks), added up without a walk.
        let strings = self.name.len() + self.arg_type.len();
        let strings = strings + self.result_type.len() + self.port_type.len();
        4 + 1 + 8 + 4 * 4 + strings + 4
    }

    /// Writes this frame's head, of `head` bytes ([`head_size`](Self::head_size)), to `out`,
    /// for an argument of `arg_len` bytes that follows it (`self.arg` is not written). The
    /// frame, head and argument, must be within the cap (the caller's place for both was).
    ///
    /// The fields go in with one check of room and one copy each (this runs for every task),
    /// the bytes `fields` would write.
    #[inline]
    pub(crate) fn write_head(&self, head: usize, arg_len: usize, out: &mut Place<'_>) {
        debug_assert_eq!(head, self.head_size());
        // The lengths that count the argument: the frame's, and the argument's own.
        let frame = u32::try_from(head - 4 + arg_len).expect("a frame within the cap");
        let arg = u32::try_from(arg_len).expect("a frame within the cap");
        let field = |text: &str| u32::try_from(text.len()).expect("a frame within the cap");
        let write = |at: *mut u8| {
            let mut cursor = Cursor(at);
            // SAFETY: the fields add up to `head` bytes (`head_size`), the place's.
            unsafe {
                cursor.put(&frame.to_le_bytes());
                cursor.put(&[RUN]);
                cursor.put(&self.task.to_le_bytes());
                for text in [self.name, self.arg_type, self.result_type, self.port_type] {
                    cursor.put(&field(text).to_le_bytes());
                    cursor.put(text.as_bytes());
                }
                cursor.put(&arg.to_le_bytes());
            }
            debug_assert_eq!(cursor.0 as usize - at as usize, head, "measured alike");
        };
        // SAFETY: `write` writes the head's `head` bytes, only writing.
        let fits = unsafe { out.put_with(head, write) };
        debug_assert!(fits, "a place holds the head measured for it");
    }
}

impl<'a> Run<'a> {
    /// A well-formed `RUN` body, read at once ([`Fields`]); `None` for anything else.
    #[inline]
    fn read(body: &'a [u8]) -> Option<Self> {
        let mut fields = Fields::new(body);
        let run = Run {
            task: fields.u64()?,
            name: fields.str()?,
            arg_type: fields.str()?,
            result_type: fields.str()?,
            port_type: fields.str()?,
            arg: fields.bytes()?,
        };
        fields.end().then_some(run)
    }
}

impl<'a> Done<'a> {
    /// A well-formed `DONE` body with a value, read at once ([`Fields`]); `None` for
    /// anything else (an error, say).
    #[inline]
    fn read_value(body: &'a [u8]) -> Option<Self> {
        let mut fields = Fields::new(body);
        let (task, rss) = (fields.u64()?, fields.u64()?);
        if fields.u8()? != 0 {
            return None;
        }
        let value = fields.bytes()?;
        fields.end().then_some(Done {
            task,
            rss,
            outcome: Ok(value),
        })
    }
}

/// Writes bytes one after another through a raw pointer (the memory may be shared).
struct Cursor(*mut u8);

impl Cursor {
    /// Writes `bytes` and moves past them.
    ///
    /// # Safety
    ///
    /// `bytes.len()` bytes at the cursor must be valid for writes, this process's memory
    /// `bytes` does not overlap.
    #[inline(always)]
    unsafe fn put(&mut self, bytes: &[u8]) {
        // SAFETY: the caller's promise.
        unsafe {
            copy_to(bytes, self.0);
            self.0 = self.0.add(bytes.len());
        }
    }
}

/// `DONE`.
#[derive(Debug, PartialEq)]
pub(crate) struct Done<'a> {
    pub(crate) task: u64,
    /// The child's resident memory, in bytes; 0 unless `INIT` asked for it.
    pub(crate) rss: u64,
    /// The result, encoded with the pool's codec, or why there is none.
    pub(crate) outcome: Result<&'a [u8], Error>,
}

impl Message for ToChild<'_> {
    fn kind(&self) -> u8 {
        match self {
            ToChild::Init(_) => INIT,
            ToChild::Run(_) => RUN,
            ToChild::Port { .. } => PORT,
            ToChild::PortClosed { .. } => PORT_CLOSED,
            ToChild::Stop => STOP,
            ToChild::Abort { .. } => ABORT,
        }
    }

    fn fields<S: Sink>(&self, out: &mut Encoder<'_, S>) {
        match self {
            ToChild::Init(init) => {
                out.u64(init.worker_id as u64)
                    .u8(init.codec.code())
                    .u64(init.max_message_size as u64)
                    .u8(u8::from(init.measure_memory))
                    .u8(u8::from(init.rings))
                    .u64(init.bulk as u64)
                    .u64(init.max_memory)
                    .u64(init.max_cpu_seconds)
                    .str(init.teardown)
                    .str(init.setup);
                match init.worker_data {
                    Some((type_name, bytes)) => out.u8(1).str(type_name).bytes(bytes),
                    None => out.u8(0),
                };
            }
            ToChild::Run(run) => {
                out.u64(run.task)
                    .str(run.name)
                    .str(run.arg_type)
                    .str(run.result_type)
                    .str(run.port_type)
                    .bytes(run.arg);
            }
            ToChild::Port { task, message } => {
                out.u64(*task).bytes(message);
            }
            ToChild::PortClosed { task } => {
                out.u64(*task);
            }
            ToChild::Stop => {}
            ToChild::Abort { task } => {
                out.u64(*task);
            }
        }
    }
}

impl<'a> ToChild<'a> {
    /// Decodes a frame from the pool.
    pub(crate) fn decode(frame: &'a Frame) -> Result<Self, Error> {
        if frame.kind == RUN {
            if let Some(run) = Run::read(&frame.body) {
                return Ok(ToChild::Run(run));
            }
        }
        Self::read_fields(frame)
    }

    /// [`decode`](Self::decode), field by field, each read checked.
    fn read_fields(frame: &'a Frame) -> Result<Self, Error> {
        let mut body = Body::new(&frame.body);
        let message = match frame.kind {
            INIT => ToChild::Init(Init::fields(&mut body)?),
            RUN => ToChild::Run(Run {
                task: body.u64()?,
                name: body.str()?,
                arg_type: body.str()?,
                result_type: body.str()?,
                port_type: body.str()?,
                arg: body.bytes()?,
            }),
            PORT => ToChild::Port {
                task: body.u64()?,
                message: body.bytes()?,
            },
            PORT_CLOSED => ToChild::PortClosed { task: body.u64()? },
            STOP => ToChild::Stop,
            ABORT => ToChild::Abort { task: body.u64()? },
            other => {
                return Err(protocol(format!(
                    "unexpected frame kind {other} from the pool"
                )))
            }
        };
        body.end()?;
        Ok(message)
    }
}

impl Message for ToPool<'_> {
    fn kind(&self) -> u8 {
        match self {
            ToPool::Hello(_) => HELLO,
            ToPool::Done(_) => DONE,
            ToPool::Panicking { .. } => PANICKING,
            ToPool::Port { .. } => PORT,
        }
    }

    fn fields<S: Sink>(&self, out: &mut Encoder<'_, S>) {
        match self {
            ToPool::Hello(hello) => {
                out.raw(MAGIC).u32(hello.version).u32(hello.pid);
                out.u32(u32::try_from(hello.async_exports.len()).unwrap_or(u32::MAX));
                for name in &hello.async_exports {
                    out.str(name);
                }
            }
            ToPool::Done(done) => match &done.outcome {
                Ok(value) => {
                    // Every task's: its fixed fields put at once, then the value.
                    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
                    let mut head = [0u8; 21];
                    head[..8].copy_from_slice(&done.task.to_le_bytes());
                    head[8..16].copy_from_slice(&done.rss.to_le_bytes());
                    head[17..].copy_from_slice(&len.to_le_bytes());
                    out.raw(&head).raw(value);
                }
                Err(error) => {
                    out.u64(done.task).u64(done.rss).u8(1).error(error);
                }
            },
            ToPool::Panicking { message } => {
                out.str(message);
            }
            ToPool::Port { task, message } => {
                out.u64(*task).bytes(message);
            }
        }
    }
}

impl<'a> ToPool<'a> {
    /// Decodes a frame from a child.
    pub(crate) fn decode(frame: &'a Frame) -> Result<Self, Error> {
        if frame.kind == DONE {
            if let Some(done) = Done::read_value(&frame.body) {
                return Ok(ToPool::Done(done));
            }
        }
        Self::read_fields(frame)
    }

    /// [`decode`](Self::decode), field by field, each read checked.
    fn read_fields(frame: &'a Frame) -> Result<Self, Error> {
        let mut body = Body::new(&frame.body);
        let message = match frame.kind {
            HELLO => ToPool::Hello(Hello::fields(&mut body)?),
            DONE => ToPool::Done(Done {
                task: body.u64()?,
                rss: body.u64()?,
                outcome: match body.u8()? {
                    0 => Ok(body.bytes()?),
                    _ => Err(body.error()?),
                },
            }),
            PANICKING => ToPool::Panicking {
                message: body.str()?,
            },
            PORT => ToPool::Port {
                task: body.u64()?,
                message: body.bytes()?,
            },
            other => {
                return Err(protocol(format!(
                    "unexpected frame kind {other} from the child"
                )))
            }
        };
        body.end()?;
        Ok(message)
    }
}

impl Hello {
    /// A child's first frame: its `HELLO`, or why it is not a tinypool worker of this
    /// version.
    pub(crate) fn expect(frame: &Frame) -> Result<Hello, Error> {
        if frame.kind != HELLO {
            return Err(not_a_worker());
        }
        let mut body = Body::new(&frame.body);
        let hello = Hello::fields(&mut body)?;
        body.end()?;
        Ok(hello)
    }

    /// Checks the magic, then the version, before anything that may differ between versions.
    fn fields(body: &mut Body<'_>) -> Result<Hello, Error> {
        if body.raw(MAGIC.len())? != MAGIC {
            return Err(not_a_worker());
        }
        let version = body.u32()?;
        if version != VERSION {
            return Err(protocol(format!(
                "protocol version {version}, this pool speaks {VERSION}"
            )));
        }
        let pid = body.u32()?;
        // Each name takes at least its length's 4 bytes: a count the body cannot hold fails
        // at the first missing name, before anything is sized from it.
        let count = body.u32()?;
        let mut async_exports = Vec::new();
        for _ in 0..count {
            async_exports.push(body.str()?.to_owned());
        }
        Ok(Hello {
            version,
            pid,
            async_exports,
        })
    }
}

impl<'a> Init<'a> {
    /// A pool's first frame: its `INIT`, or why it is none.
    pub(crate) fn expect(frame: &'a Frame) -> Result<Init<'a>, Error> {
        if frame.kind != INIT {
            return Err(protocol("the pool did not answer the handshake"));
        }
        let mut body = Body::new(&frame.body);
        let init = Init::fields(&mut body)?;
        body.end()?;
        Ok(init)
    }

    fn fields(body: &mut Body<'a>) -> Result<Init<'a>, Error> {
        Ok(Init {
            worker_id: body.u64()? as usize,
            codec: Serialization::from_code(body.u8()?)?,
            max_message_size: body.u64()? as usize,
            measure_memory: body.u8()? != 0,
            rings: body.u8()? != 0,
            bulk: body.u64()? as usize,
            max_memory: body.u64()?,
            max_cpu_seconds: body.u64()?,
            teardown: body.str()?,
            setup: body.str()?,
            worker_data: match body.u8()? {
                0 => None,
                _ => Some((body.str()?, body.bytes()?)),
            },
        })
    }
}

fn not_a_worker() -> Error {
    protocol("the child is not a tinypool worker")
}

// ---- Errors: the errors a child can report for a task; anything else as `Protocol` ---------

impl<S: Sink> Encoder<'_, S> {
    pub(crate) fn error(&mut self, error: &Error) -> &mut Self {
        match error {
            Error::Panicked { message, location } => {
                self.u8(1).str(message);
                match location {
                    Some(location) => self.u8(1).str(location),
                    None => self.u8(0),
                }
            }
            Error::NoSuchFunction { name } => self.u8(2).str(name),
            Error::TypeMismatch {
                what,
                expected,
                found,
            } => {
                self.u8(3);
                match what {
                    TypeRole::Argument { function } => self.u8(0).str(function),
                    TypeRole::Result { function } => self.u8(1).str(function),
                    TypeRole::Channel => self.u8(2),
                    TypeRole::WorkerData => self.u8(3),
                }
                .str(expected)
                .str(found)
            }
            Error::Disconnected => self.u8(4),
            Error::NoChannel => self.u8(5),
            Error::Protocol { message } => self.u8(6).str(message),
            other => self.u8(6).str(&other.to_string()),
        }
    }
}

impl Body<'_> {
    pub(crate) fn error(&mut self) -> Result<Error, Error> {
        Ok(match self.u8()? {
            1 => Error::Panicked {
                message: self.str()?.to_owned(),
                location: match self.u8()? {
                    0 => None,
                    _ => Some(self.str()?.to_owned()),
                },
            },
            2 => Error::NoSuchFunction {
                name: self.str()?.to_owned(),
            },
            3 => {
                let what = match self.u8()? {
                    0 => TypeRole::Argument {
                        function: self.str()?.to_owned(),
                    },
                    1 => TypeRole::Result {
                        function: self.str()?.to_owned(),
                    },
                    2 => TypeRole::Channel,
                    3 => TypeRole::WorkerData,
                    role => return Err(protocol(format!("unknown type role {role}"))),
                };
                Error::TypeMismatch {
                    what,
                    expected: self.str()?.to_owned(),
                    found: self.str()?.to_owned(),
                }
            }
            4 => Error::Disconnected,
            5 => Error::NoChannel,
            6 => protocol(self.str()?),
            code => return Err(protocol(format!("unknown error code {code}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::super::read_frame;
    use super::super::tests::{build, Field};
    use super::*;

    const MAX: usize = 1 << 16;

    /// `message` encoded, then read back as a frame.
    fn wire(message: &impl Message) -> Frame {
        let bytes = message.to_frame(MAX).unwrap();
        let mut stream = &bytes[..];
        let frame = read_frame(&mut stream, MAX).unwrap().unwrap();
        assert!(stream.is_empty(), "one frame, all of it read");
        frame
    }

    fn is_protocol(error: &Error) -> bool {
        matches!(error, Error::Protocol { .. })
    }

    fn text() -> impl Strategy<Value = String> {
        ".{0,24}"
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        vec(any::<u8>(), 0..96)
    }

    fn codec() -> impl Strategy<Value = Serialization> {
        prop_oneof![Just(Serialization::Postcard), Just(Serialization::Json)]
    }

    /// Every error a child can report, and others (sent as `Protocol`).
    fn error() -> impl Strategy<Value = Error> {
        (text(), text(), any::<bool>(), 0u8..11).prop_map(|(a, b, located, which)| match which {
            0 => Error::Panicked {
                message: a,
                location: located.then_some(b),
            },
            1 => Error::NoSuchFunction { name: a },
            2 => Error::type_mismatch(TypeRole::Argument { function: a }, &b, "i32"),
            3 => Error::type_mismatch(TypeRole::Result { function: b }, &a, "()"),
            4 => Error::type_mismatch(TypeRole::Channel, &a, &b),
            5 => Error::type_mismatch(TypeRole::WorkerData, &b, &a),
            6 => Error::Disconnected,
            7 => Error::NoChannel,
            8 => Error::Protocol { message: a },
            9 => Error::Terminated,
            _ => Error::WorkerExited {
                code: Some(3),
                signal: None,
                message: Some(a),
            },
        })
    }

    /// What an error becomes on its way: itself, or, if a child cannot report it as such, a
    /// `Protocol` error with its message.
    fn as_sent(error: &Error) -> Error {
        match error {
            Error::Terminated | Error::WorkerExited { .. } => Error::Protocol {
                message: error.to_string(),
            },
            other => other.clone(),
        }
    }

    /// Every strict prefix of `frame`'s body, and the body with bytes added, is refused.
    fn cuts_and_extensions_are_refused(
        frame: &Frame,
        decode: impl Fn(&Frame) -> Result<(), Error>,
    ) -> Result<(), TestCaseError> {
        for cut in 0..frame.body.len() {
            let cut = Frame {
                kind: frame.kind,
                body: frame.body[..cut].to_vec().into(),
            };
            let refused = decode(&cut);
            prop_assert!(
                matches!(&refused, Err(e) if is_protocol(e)),
                "{:?}",
                refused
            );
        }
        let mut longer = frame.body.to_vec();
        longer.push(0);
        let longer = Frame {
            kind: frame.kind,
            body: longer.into(),
        };
        let refused = decode(&longer);
        prop_assert!(
            matches!(&refused, Err(e) if is_protocol(e)),
            "{:?}",
            refused
        );
        Ok(())
    }

    fn child_decodes(frame: &Frame) -> Result<(), Error> {
        ToChild::decode(frame).map(drop)
    }

    fn pool_decodes(frame: &Frame) -> Result<(), Error> {
        ToPool::decode(frame).map(drop)
    }

    #[test]
    fn the_kinds_are_the_tables() {
        let run = Run {
            task: 1,
            name: "f",
            arg_type: "i32",
            result_type: "i32",
            port_type: "",
            arg: &[2],
        };
        assert_eq!(ToChild::Run(run).kind(), 3);
        assert_eq!(
            ToChild::Port {
                task: 1,
                message: &[]
            }
            .kind(),
            4
        );
        assert_eq!(ToChild::Stop.kind(), 5);
        assert_eq!(ToChild::PortClosed { task: 1 }.kind(), 8);
        assert_eq!(
            ToPool::Hello(Hello {
                version: 4,
                pid: 1,
                async_exports: Vec::new()
            })
            .kind(),
            1
        );
        assert_eq!(ToPool::Panicking { message: "" }.kind(), 7);
        let done = Done {
            task: 1,
            rss: 0,
            outcome: Ok(&[]),
        };
        assert_eq!(ToPool::Done(done).kind(), 6);
        // The wire, byte for byte: what `tests/bad_input.rs` writes by hand.
        let stop = ToChild::Stop.to_frame(MAX).unwrap();
        assert_eq!(stop, [1, 0, 0, 0, 5]);
        let port = ToPool::Port {
            task: 2,
            message: &[9],
        };
        let mut expected = vec![14, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9];
        assert_eq!(port.to_frame(MAX).unwrap(), expected);
        let hello = ToPool::Hello(Hello {
            version: VERSION,
            pid: 7,
            async_exports: vec!["go".to_owned()],
        });
        expected = vec![27, 0, 0, 0, 1];
        expected.extend_from_slice(b"TINYPOOL");
        expected.extend_from_slice(&[7, 0, 0, 0, 7, 0, 0, 0]);
        expected.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0, b'g', b'o']);
        assert_eq!(hello.to_frame(MAX).unwrap(), expected);
        let abort = ToChild::Abort { task: 3 };
        let expected = vec![9, 0, 0, 0, 9, 3, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(abort.to_frame(MAX).unwrap(), expected);
    }

    #[test]
    fn a_message_over_the_cap_is_refused_before_it_is_built() {
        let arg = [0u8; 100];
        let run = ToChild::Run(Run {
            task: 1,
            name: "f",
            arg_type: "",
            result_type: "",
            port_type: "",
            arg: &arg,
        });
        let mut buf = vec![1, 2, 3];
        let refused = run.encode(100, &mut buf);
        assert!(matches!(refused, Err(Error::Protocol { message }) if message.contains("exceeds")));
        assert_eq!(buf, [1, 2, 3], "left as it was");
        run.encode(200, &mut buf).unwrap();
        assert_eq!(ToChild::decode(&wire(&run)).unwrap(), run);
    }

    /// A `RUN` frame whose argument was encoded in place, its head written after, is the
    /// frame `encode` makes, whatever the argument's length.
    #[test]
    fn a_run_written_in_place_is_the_frame_encoded() {
        let names = [
            ("export", "A", "R", "P"),
            ("", "", "", ""),
            ("naïve::name", "alloc::vec::Vec<(u64, u64)>", "Résultat", ""),
        ];
        for (len, (name, arg_type, result_type, port_type)) in [0, 1, 127, 128, 3_000, 70_000]
            .into_iter()
            .zip(names.iter().cycle())
        {
            let arg: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let run = Run {
                task: 7 + len as u64,
                name,
                arg_type,
                result_type,
                port_type,
                arg: &[],
            };
            let head = run.head_size();
            let mut memory = vec![0u8; head + len + 10];
            let base = memory.as_mut_ptr();
            // SAFETY: two places within `memory`, not overlapping, which nothing else uses
            // while they live.
            let (mut arg_place, mut head_place) =
                unsafe { (Place::new(base.add(head), len + 10), Place::new(base, head)) };
            assert!(arg_place.put(&arg));
            run.write_head(head, arg.len(), &mut head_place);
            assert!(!head_place.is_full());
            let encoded = ToChild::Run(Run { arg: &arg, ..run }).to_frame(usize::MAX);
            assert_eq!(&memory[..head + len], &encoded.unwrap()[..]);
        }
    }

    #[test]
    fn first_frames_say_what_is_wrong() {
        let done = ToPool::Done(Done {
            task: 1,
            rss: 0,
            outcome: Ok(&[]),
        });
        let not = |frame: &Frame| match Hello::expect(frame) {
            Err(Error::Protocol { message }) => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(not(&wire(&done)), "the child is not a tinypool worker");
        let hello = wire(&ToPool::Hello(Hello {
            version: VERSION,
            pid: 1,
            async_exports: Vec::new(),
        }));
        assert_eq!(Hello::expect(&hello).unwrap().pid, 1);
        let mut body = hello.body.to_vec();
        body[0] = b'X';
        let hello = Frame {
            kind: hello.kind,
            body: body.into(),
        };
        assert_eq!(not(&hello), "the child is not a tinypool worker");
        let other = wire(&ToPool::Hello(Hello {
            version: 3,
            pid: 1,
            async_exports: Vec::new(),
        }));
        assert_eq!(
            not(&other),
            format!("protocol version 3, this pool speaks {VERSION}")
        );
        match Init::expect(&wire(&ToChild::Stop)) {
            Err(Error::Protocol { message }) => {
                assert_eq!(message, "the pool did not answer the handshake")
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn init_round_trips(
            (worker_id, max_message_size, max_memory, max_cpu_seconds) in any::<(u32, u32, u64, u64)>(),
            (codec, measure_memory, rings, bulk) in (codec(), any::<bool>(), any::<bool>(), any::<u32>()),
            (teardown, setup) in (text(), text()),
            data in proptest::option::of((text(), bytes())),
        ) {
            let init = ToChild::Init(Init {
                worker_id: worker_id as usize,
                codec,
                max_message_size: max_message_size as usize,
                measure_memory,
                rings,
                bulk: bulk as usize,
                max_memory,
                max_cpu_seconds,
                teardown: &teardown,
                setup: &setup,
                worker_data: data.as_ref().map(|(name, bytes)| (name.as_str(), &bytes[..])),
            });
            let frame = wire(&init);
            prop_assert_eq!(ToChild::decode(&frame)?, init);
            let ToChild::Init(init) = ToChild::decode(&frame)? else { unreachable!() };
            prop_assert_eq!(Init::expect(&frame)?, init);
            cuts_and_extensions_are_refused(&frame, child_decodes)?;
        }

        #[test]
        fn run_round_trips(
            task in any::<u64>(),
            (name, arg_type, result_type, port_type) in (text(), text(), text(), text()),
            arg in bytes(),
        ) {
            let run = ToChild::Run(Run {
                task,
                name: &name,
                arg_type: &arg_type,
                result_type: &result_type,
                port_type: &port_type,
                arg: &arg,
            });
            let frame = wire(&run);
            prop_assert_eq!(ToChild::decode(&frame)?, run);
            cuts_and_extensions_are_refused(&frame, child_decodes)?;
        }

        #[test]
        fn the_other_frames_to_a_child_round_trip(task in any::<u64>(), message in bytes()) {
            for sent in [
                ToChild::Port { task, message: &message },
                ToChild::PortClosed { task },
                ToChild::Stop,
                ToChild::Abort { task },
            ] {
                let frame = wire(&sent);
                prop_assert_eq!(ToChild::decode(&frame)?, sent);
                cuts_and_extensions_are_refused(&frame, child_decodes)?;
            }
        }

        #[test]
        fn hello_round_trips_in_this_version_only(
            pid in any::<u32>(),
            version in any::<u32>(),
            async_exports in vec(text(), 0..4),
        ) {
            let hello = ToPool::Hello(Hello { version: VERSION, pid, async_exports: async_exports.clone() });
            let frame = wire(&hello);
            prop_assert_eq!(ToPool::decode(&frame)?, hello);
            prop_assert_eq!(Hello::expect(&frame)?, Hello { version: VERSION, pid, async_exports });
            cuts_and_extensions_are_refused(&frame, pool_decodes)?;
            let other = wire(&ToPool::Hello(Hello { version, pid, async_exports: Vec::new() }));
            match ToPool::decode(&other) {
                Ok(_) => prop_assert_eq!(version, VERSION),
                Err(Error::Protocol { message }) => {
                    prop_assert!(message.contains("protocol version"), "{}", message)
                }
                Err(other) => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn done_round_trips(
            (task, rss) in any::<(u64, u64)>(),
            value in proptest::result::maybe_ok(bytes(), error()),
        ) {
            let done = ToPool::Done(Done { task, rss, outcome: value.as_deref().map_err(Clone::clone) });
            let frame = wire(&done);
            let expected = Done { task, rss, outcome: value.as_deref().map_err(as_sent) };
            prop_assert_eq!(ToPool::decode(&frame)?, ToPool::Done(expected));
            cuts_and_extensions_are_refused(&frame, pool_decodes)?;
        }

        /// A `DONE`'s fixed fields, put at once, are those the table lays out.
        #[test]
        fn a_done_is_its_fields(
            (task, rss) in any::<(u64, u64)>(),
            value in bytes(),
        ) {
            let done = ToPool::Done(Done { task, rss, outcome: Ok(&value) });
            let fields = [Field::U64(task), Field::U64(rss), Field::Raw(&[0]), Field::Bytes(&value)];
            prop_assert_eq!(done.to_frame(MAX)?, build(DONE, &fields, MAX)?);
        }

        #[test]
        fn the_other_frames_to_a_pool_round_trip(task in any::<u64>(), message in bytes(), text in text()) {
            for sent in [ToPool::Port { task, message: &message }, ToPool::Panicking { message: &text }] {
                let frame = wire(&sent);
                prop_assert_eq!(ToPool::decode(&frame)?, sent);
                cuts_and_extensions_are_refused(&frame, pool_decodes)?;
            }
        }

        /// A `RUN` and a `DONE` with a value read at once, whole, exactly when they read so
        /// field by field, and alike: whatever their bytes, or a valid frame's with one byte
        /// changed, cut or added.
        #[test]
        fn frames_read_at_once_read_as_field_by_field(
            (task, name, arg) in (any::<u64>(), text(), bytes()),
            (at, byte, how) in (any::<usize>(), any::<u8>(), 0..4u8),
            random in bytes(),
        ) {
            let run = wire(&ToChild::Run(Run {
                task, name: &name, arg_type: "A", result_type: "", port_type: "P", arg: &arg,
            }));
            let done = wire(&ToPool::Done(Done { task, rss: 3, outcome: Ok(&arg) }));
            for (kind, valid) in [(RUN, &run.body), (DONE, &done.body)] {
                let mut body = valid.to_vec();
                match how {
                    0 if !body.is_empty() => body[at % valid.len()] = byte,
                    1 => body.truncate(at % (valid.len() + 1)),
                    2 => body.insert(at % (valid.len() + 1), byte),
                    _ => body.clone_from(&random),
                }
                let frame = Frame { kind, body: body.into() };
                if kind == RUN {
                    let slow = ToChild::read_fields(&frame).ok();
                    prop_assert_eq!(Run::read(&frame.body).map(ToChild::Run), slow);
                } else {
                    let slow = ToPool::read_fields(&frame).ok().filter(|done| {
                        matches!(done, ToPool::Done(Done { outcome: Ok(_), .. }))
                    });
                    prop_assert_eq!(Done::read_value(&frame.body).map(ToPool::Done), slow);
                }
            }
        }

        /// Any kind and any body decode, either way, to a message that survives another trip
        /// unchanged, or to a `Protocol` error; never a panic.
        #[test]
        fn any_frame_decodes_to_a_message_or_a_clean_error(kind in any::<u8>(), body in bytes()) {
            let frame = Frame { kind, body: body.into() };
            match ToChild::decode(&frame) {
                Ok(message) => {
                    prop_assert!([INIT, RUN, PORT, PORT_CLOSED, STOP, ABORT].contains(&kind));
                    let again = wire(&message);
                    prop_assert_eq!(ToChild::decode(&again)?, message);
                }
                Err(error) => prop_assert!(is_protocol(&error), "{:?}", error),
            }
            match ToPool::decode(&frame) {
                Ok(message) => {
                    prop_assert!([HELLO, DONE, PANICKING, PORT].contains(&kind));
                    let again = wire(&message);
                    prop_assert_eq!(ToPool::decode(&again)?, message);
                }
                Err(error) => prop_assert!(is_protocol(&error), "{:?}", error),
            }
            for first in [Hello::expect(&frame).map(drop), Init::expect(&frame).map(drop)] {
                if let Err(error) = first {
                    prop_assert!(is_protocol(&error), "{:?}", error);
                }
            }
        }
    }
}
