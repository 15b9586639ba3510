//! The driver's writing end ([`Outbox`]): the frames to the child, and the tasks whose channels
//! it bridges now.

use std::sync::{Arc, Mutex};

use crate::channel::ErasedPort;
use crate::codec::Serialization;
use crate::protocol::ToChild;
use crate::sync::lock;
use crate::transport::Writer;
use crate::Error;

/// Forwards what the caller sends on `port`, the channel of task `task`, to the child through
/// `outbox`, and its close. Weakly: a caller may keep its side of the channel long after the
/// worker is gone, and must not keep the worker's socket and shared memory with it; messages
/// to a worker that is gone are dropped, as those to a task that ended.
pub(super) fn bridge(
    outbox: &Arc<Mutex<Outbox>>,
    port: &dyn ErasedPort,
    task: u64,
    codec: Serialization,
    max: usize,
) -> Result<(), Error> {
    let sender = Arc::downgrade(outbox);
    let closer = sender.clone();
    port.forward_encoded(
        codec,
        Box::new(move |message| match sender.upgrade() {
            Some(outbox) => lock(&outbox).send_port(task, &message, max),
            None => Ok(()),
        }),
        Box::new(move || {
            if let Some(outbox) = closer.upgrade() {
                lock(&outbox).close_port(task, max);
            }
        }),
    )
}

/// The driver's writing end, shared with the bridges of task channels, which write from the
/// sender's thread.
pub(super) struct Outbox {
    pub(super) writer: Writer,
    /// The tasks whose channels are bridged to the child now: one at most, but in a child
    /// with async exports.
    pub(super) bridged: Vec<u64>,
}

impl Outbox {
    pub(super) fn new(writer: Writer) -> Self {
        Outbox {
            writer,
            bridged: Vec::new(),
        }
    }

    /// Sends a message of task `task`'s channel, unless the task has finished (the child
    /// would drop it).
    ///
    /// It never waits for the child (which may not be reading, or be stopped): the sender
    /// holds the channel's lock meanwhile, and `abort` and `destroy` need it. What the channel
    /// does not take now waits in order, as in an unbounded channel, and the driver sends it
    /// while it waits for the task's result.
    pub(super) fn send_port(&mut self, task: u64, message: &[u8], max: usize) -> Result<(), Error> {
        self.send_bridged(&ToChild::Port { task, message }, task, max)
    }

    /// Tells the child that the caller's side of task `task`'s channel closed, unless the
    /// task has finished.
    pub(super) fn close_port(&mut self, task: u64, max: usize) {
        let _ = self.send_bridged(&ToChild::PortClosed { task }, task, max);
    }

    fn send_bridged(&mut self, message: &ToChild<'_>, task: u64, max: usize) -> Result<(), Error> {
        if !self.bridged.contains(&task) {
            return Ok(());
        }
        self.writer.send(message, max)?;
        if self.writer.is_broken() {
            return Err(Error::Protocol {
                message: "writing the worker channel: the child is gone".to_owned(),
            });
        }
        Ok(())
    }
}
