//! The start of a child-process worker, pool side: the child's `HELLO`, awaited until
//! `startup_timeout` (or the worker's retirement), checked, and answered with `INIT`; then
//! the rings and the slots for big frames in use, and the setup export awaited
//! (`setup.rs`). See the [protocol](crate::protocol).

use std::time::Instant;

use super::{ChildWorker, Flights, Next, Refusal};
use crate::protocol::{Hello, Init, ToChild};
use crate::sync::{lock, Ordering};
#[cfg(unix)]
use crate::transport::Wake;
use crate::transport::{Direction, POLL_INTERVAL};
use crate::wait::deadline_after;
use crate::Error;

impl ChildWorker {
    /// Shakes hands with the new child, worker `worker_id`, and waits for its setup.
    pub(super) fn handshake(&mut self, worker_id: usize) -> Result<(), Refusal> {
        let timeout = self.options.startup_timeout;
        let deadline = deadline_after(timeout);
        // In steps, so that a worker retired meanwhile (`destroy`) stops waiting at once.
        let hello = loop {
            let step = (Instant::now() + POLL_INTERVAL).min(deadline);
            match self.next_before(step)? {
                Next::Frame(frame) => break frame,
                Next::Ended(_) => return Err(Refusal::Silent),
                Next::Late if self.retired.load(Ordering::Acquire) => {
                    return Err(Error::Terminated.into())
                }
                Next::Late if Instant::now() < deadline => {}
                Next::Late => {
                    return Err(Error::Protocol {
                        message: format!(
                            "no handshake within startup_timeout ({timeout:?}): does its main \
                             call tinypool::worker::serve_if_worker first?"
                        ),
                    }
                    .into())
                }
            }
        };
        let hello = Hello::expect(&hello)?;
        if !hello.async_exports.is_empty() {
            self.flights = Some(Flights::new(hello.async_exports, worker_id));
            // Its driver sleeps in `poll` with tasks in flight: a ring must reach it there.
            #[cfg(unix)]
            self.reader
                .hear(Wake::new(&self.bell).map_err(|e| Error::WorkerStartFailed {
                    message: format!("making the driver's wake-up: {e}"),
                })?);
        }
        let options = &self.options;
        let init = ToChild::Init(Init {
            worker_id,
            codec: options.serialization,
            max_message_size: options.max_message_size,
            measure_memory: options.memory_recycle.is_some(),
            rings: self.region.is_some(),
            bulk: self.bulk.as_ref().map_or(0, |bulk| bulk.capacity()),
            max_memory: options.max_memory.unwrap_or(0),
            max_cpu_seconds: options.max_cpu_time.map_or(0, |time| {
                // Whole seconds, rounded up: what RLIMIT_CPU counts in.
                time.as_secs()
                    .saturating_add(u64::from(time.subsec_nanos() > 0))
            }),
            teardown: self.pool.teardown.as_deref().unwrap_or(""),
            setup: self.pool.setup.as_deref().unwrap_or(""),
            worker_data: (options.worker_data.as_ref())
                .map(|(type_name, bytes)| (*type_name, &bytes[..])),
        });
        self.send(&init, deadline_after(timeout))?;
        // The child reads `INIT` from the socket, then everything else from the rings.
        if let Some(region) = &self.region {
            self.reader.attach(region.reader(Direction::ToPool));
            let writer = &mut lock(&self.writer).writer;
            writer.attach(region.writer(Direction::ToChild));
            if let Some(bulk) = &self.bulk {
                self.reader.attach_bulk(bulk.reader(Direction::ToPool));
                writer.attach_bulk(bulk.writer(Direction::ToChild));
            }
        }
        match self.pool.setup.clone() {
            Some(setup) => self.await_setup(setup),
            None => Ok(()),
        }
    }
}
