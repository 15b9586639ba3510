//! A task's `RUN` frame on its way to the child. Its argument is encoded once, in place, after
//! room left for the frame's head, which is written once the argument's length is known: in a
//! [`Draft`], outside the lock the driver's writer is shared under, since `Serialize` is user
//! code, which may send on a task channel bridged to this very child (its bridge takes that
//! lock) or take long. The draft starts in the driver thread's buffer, where a small frame is
//! made before it goes in the ring; a bigger one moves on to the shared slot for big frames,
//! lent by the writer while it is free (a big argument so costs the pool one copy, the encoding
//! itself), and past it, or while it is taken, to the buffer grown (see `transport/draft.rs`).
//! The head is written there too, still outside the lock, which is then taken once, to send
//! the frame (a small one is copied into the ring then, unless frames wait before it).
//!
//! [`ChildWorker::send_run`] gives the frame its task id, marks it in a claim word first when
//! it goes ahead (`ahead.rs`), and bridges its channel once it is out.

use std::cell::Cell;
use std::sync::{Arc, Mutex, MutexGuard};

use super::outbox::{self, Outbox};
use super::ChildWorker;
use crate::codec::{Encoded, Place, Serialization};
use crate::protocol::Run;
use crate::sync::lock;
use crate::task::Job;
use crate::transport::draft::Draft;
use crate::Error;

thread_local! {
    /// The driver thread's buffer for the frames it drafts, swapped with its writer's as each
    /// goes out, so that no task allocates one.
    static BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

impl ChildWorker {
    /// Sends `job`'s `RUN` frame (or as much of it as the channel takes now: the rest goes
    /// out while the driver waits for results); returns the task's id, or `None` if nothing
    /// was sent.
    pub(super) fn send_run(&mut self, job: &Arc<dyn Job>, ahead: bool) -> Option<u64> {
        let codec = self.options.serialization;
        let task = self.next_task;
        let port = job.port();
        let mark = if ahead { self.mark_ahead(task) } else { None };
        // `None`: it resolved on its way here, nothing to send.
        let Some((sent, mut out)) = send(&self.writer, job, task, codec, self.max()) else {
            self.unmark_ahead(mark);
            return None;
        };
        self.next_task += 1;
        if sent.is_ok() && port.is_some() {
            // Its messages follow the `RUN` frame, in order, sent as the child reads them.
            out.bridged.push(task);
        }
        drop(out);
        if let Err(error) = sent {
            self.unmark_ahead(mark);
            job.fail(error, &self.tally);
            return None;
        }
        if mark.is_some() {
            self.ahead = mark;
        }
        let Some(port) = port else {
            return Some(task);
        };
        let bridged = outbox::bridge(&self.writer, port, task, codec, self.max());
        if let Err(error) = bridged {
            // The task runs on in the child; its result will be dropped. Its side of the
            // channel hears that the caller's closed, so a function waiting on it returns
            // instead of holding the worker forever.
            job.fail(error, &self.tally);
            lock(&self.writer).close_port(task, self.max());
        }
        Some(task)
    }
}

/// Sends `job`'s `RUN` frame, as task `task`, through `outbox`, in frames of at most `max`
/// bytes; returns the outcome with the outbox still locked (what follows the frame is noted
/// under the same lock), or `None` if the task resolved on its way here (nothing is sent).
pub(super) fn send<'o>(
    outbox: &'o Mutex<Outbox>,
    job: &Arc<dyn Job>,
    task: u64,
    codec: Serialization,
    max: usize,
) -> Option<(Result<(), Error>, MutexGuard<'o, Outbox>)> {
    let run = Run {
        task,
        name: job.name(),
        arg_type: job.arg_type(),
        result_type: job.result_type(),
        port_type: job.port().map_or("", |port| port.message_type()),
        arg: &[],
    };
    let head = run.head_size();
    let mut buffer = BUFFER.take();
    let mut lend = || lock(outbox).writer.lend_slot();
    let mut draft = Draft::new(&mut buffer, head, max, &mut lend);
    let (encoded, len) = {
        let mut place = draft.place();
        (job.encode_arg_into(codec, &mut place), place.len())
    };
    let mut drafted = draft.finish(len);
    let too_big = drafted.size > max.saturating_add(4);
    let send = matches!(encoded, Some(Ok(Encoded::InPlace))) && !too_big;
    if send {
        drafted.write_head(&mut buffer, |out: &mut Place<'_>| {
            run.write_head(head, len, out)
        });
    }
    let mut out = lock(outbox);
    let sent = match encoded {
        Some(Ok(Encoded::InPlace)) if send => Some(out.writer.send_draft(&mut buffer, drafted)),
        failed => {
            out.writer.discard_draft(&mut buffer, drafted);
            failed.map(|encoded| {
                encoded.and_then(|encoded| {
                    Err(Error::Protocol {
                        message: match encoded {
                            // Its place stopped growing at the frame cap.
                            Encoded::Full => format!(
                                "a message of more than {max} bytes exceeds max_message_size \
                                 ({max} bytes)"
                            ),
                            Encoded::InPlace => format!(
                                "a message of {} bytes exceeds max_message_size ({max} bytes)",
                                drafted_len(head, len)
                            ),
                        },
                    })
                })
            })
        }
    };
    BUFFER.set(buffer);
    sent.map(|sent| (sent, out))
}

/// The bytes a frame of a `head` and an argument of `len` bytes counts against
/// `max_message_size` (all but its header).
fn drafted_len(head: usize, len: usize) -> usize {
    (head + len).saturating_sub(4)
}
