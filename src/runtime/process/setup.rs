//! The setup export of a child-process worker, pool side: after `INIT` names it, the driver
//! waits for the child's `DONE` for task 0 before the worker counts as started (see the
//! [protocol](crate::protocol)).

use std::time::Instant;

use super::{note_panic, ChildWorker, Next, Refusal};
use crate::protocol::{Done, ToPool};
use crate::sync::Ordering;
use crate::transport::POLL_INTERVAL;
use crate::Error;

impl ChildWorker {
    /// Waits for the child's word on its setup export `name`: `DONE` for task 0, after any
    /// `PANICKING`. Unbounded, as a task is, but not past the child's end or the worker's
    /// retirement (`destroy`).
    pub(super) fn await_setup(&mut self, name: String) -> Result<(), Refusal> {
        loop {
            // Looked at before each frame, not only when none came: a setup that keeps
            // talking (a panic caught in a loop sends a frame each time) would otherwise hold
            // this loop, and `destroy`, for as long as it runs.
            if self.retired.load(Ordering::Acquire) {
                return Err(Error::Terminated.into());
            }
            let frame = match self.next_before(Instant::now() + POLL_INTERVAL)? {
                Next::Frame(frame) => frame,
                Next::Late => continue,
                Next::Ended(_) => return Err(Refusal::SetupDied(name)),
            };
            match ToPool::decode(&frame)? {
                ToPool::Done(Done {
                    task: 0, outcome, ..
                }) => {
                    return outcome.map(drop).map_err(|error| {
                        Refusal::Setup(match error {
                            // The child's message, carried as such.
                            Error::Protocol { message } => message,
                            other => other.to_string(),
                        })
                    });
                }
                ToPool::Panicking { message } => note_panic(&mut self.last_panic, message),
                _ => {
                    return Err(Error::Protocol {
                        message: format!("unexpected frame kind {} during setup", frame.kind),
                    }
                    .into())
                }
            }
        }
    }

    /// What a child that died in its setup `name` says: how it `ended`, and its panic if it
    /// said one first.
    pub(super) fn setup_died(&mut self, name: &str, ended: &str) -> String {
        let panic = match self.last_panic.take() {
            Some(message) => format!(" after a panic: {message}"),
            None => String::new(),
        };
        format!("setup \"{name}\" failed: the child {ended}{panic}")
    }
}
