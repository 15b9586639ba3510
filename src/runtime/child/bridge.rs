//! The child's end of a task's channel: the messages of the caller's side, as the pool's
//! `PORT` frames bring them, wait here until the task asks for its port; the task's messages
//! go back as `PORT` frames.

use std::any::{type_name, Any};
use std::collections::VecDeque;
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Out;
use crate::channel::{channel, Port};
use crate::codec::Serialization;
use crate::protocol::ToPool;
use crate::sync::lock;
use crate::{Error, TypeRole};

/// Decodes a channel message and hands it to the task's port.
type Deliver = Box<dyn Fn(&[u8]) + Send>;

#[derive(Default)]
struct BridgeState {
    /// Messages that arrived before the task asked for its port.
    pending: VecDeque<Vec<u8>>,
    deliver: Option<Deliver>,
    /// The task's typed port (a `Port<T>`), once asked for.
    port: Option<Box<dyn Any + Send>>,
    close: Option<Box<dyn Fn() + Send>>,
    /// The task ended.
    closed: bool,
    /// The caller's side closed.
    peer_closed: bool,
}

/// The child's end of a task's channel. The message type is known only when the task asks
/// for its port, so messages wait here as bytes until then.
pub(crate) struct Bridge {
    task: u64,
    port_type: String,
    codec: Serialization,
    max: usize,
    writer: Out,
    state: Mutex<BridgeState>,
}

impl Bridge {
    /// The bridge of task `task`, whose channel carries `port_type`s.
    pub(super) fn new(
        task: u64,
        port_type: &str,
        codec: Serialization,
        max: usize,
        writer: &Out,
    ) -> Self {
        Bridge {
            task,
            port_type: port_type.to_owned(),
            codec,
            max,
            writer: writer.clone(),
            state: Mutex::default(),
        }
    }

    /// The task it bridges.
    pub(super) fn task(&self) -> u64 {
        self.task
    }

    /// The task's port, typed `T`.
    pub(crate) fn port<T>(&self) -> Result<Port<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        if self.port_type != type_name::<T>() {
            return Err(Error::type_mismatch(
                TypeRole::Channel,
                &self.port_type,
                type_name::<T>(),
            ));
        }
        let mut state = lock(&self.state);
        if let Some(port) = state
            .port
            .as_ref()
            .and_then(|port| port.downcast_ref::<Port<T>>())
        {
            return Ok(port.clone());
        }
        let (task_side, pool_side) = channel::<T>();
        let (task, codec, max, writer) = (self.task, self.codec, self.max, self.writer.clone());
        // The pool learns that the task's side closed from the task's result.
        pool_side.forward_to(
            Box::new(move |message: T| {
                let message = codec.encode(&message)?;
                let message = ToPool::Port {
                    task,
                    message: &message,
                };
                lock(&writer).send(&message, max)
            }),
            Box::new(|| {}),
        )?;
        let deliver_side = pool_side.clone();
        let deliver = move |bytes: &[u8]| {
            if let Ok(message) = codec.decode::<T>(bytes) {
                let _ = deliver_side.send(message);
            }
        };
        while let Some(bytes) = state.pending.pop_front() {
            deliver(&bytes);
        }
        if state.closed || state.peer_closed {
            pool_side.close();
        }
        state.deliver = Some(Box::new(deliver));
        state.close = Some(Box::new(move || pool_side.close()));
        state.port = Some(Box::new(task_side.clone()));
        Ok(task_side)
    }

    /// A message of the caller's side, as it crossed.
    pub(super) fn receive(&self, bytes: &[u8]) {
        let mut state = lock(&self.state);
        match &state.deliver {
            _ if state.closed => {}
            Some(deliver) => deliver(bytes),
            None => state.pending.push_back(bytes.to_vec()),
        }
    }

    /// The caller's side closed: the task drains what came, then gets `Disconnected`.
    pub(super) fn peer_closed(&self) {
        let mut state = lock(&self.state);
        state.peer_closed = true;
        if let Some(close) = &state.close {
            close();
        }
    }

    /// The task ended.
    pub(super) fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        state.deliver = None;
        state.port = None;
        if let Some(close) = state.close.take() {
            close();
        }
    }
}
