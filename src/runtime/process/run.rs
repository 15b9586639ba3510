//! A task's `RUN` frame on its way to the child: while the shared slot for big frames is free,
//! its argument is encoded straight into it, after room left for the frame's head, which is
//! written once the argument's length is known. A big argument so costs the pool one copy,
//! the encoding itself (a small one then goes in the ring, as any small frame). Otherwise, and
//! for an argument that does not fit the slot, it is encoded on its own and framed as any
//! message (see `transport/bulk.rs`).

use std::sync::Arc;

use crate::codec::{Encoded, Serialization};
use crate::protocol::{Run, ToChild};
use crate::task::Job;
use crate::transport::Writer;
use crate::Error;

/// Sends `job`'s `RUN` frame, as task `task`, through `writer`, in frames of at most `max`
/// bytes; `None` if the task resolved on its way here (nothing is sent).
pub(super) fn send(
    writer: &mut Writer,
    job: &Arc<dyn Job>,
    task: u64,
    codec: Serialization,
    max: usize,
) -> Option<Result<(), Error>> {
    let run = Run {
        task,
        name: job.name(),
        arg_type: job.arg_type(),
        result_type: job.result_type(),
        port_type: job.port().map_or("", |port| port.message_type()),
        arg: &[],
    };
    let head = run.head_size();
    if let Some(mut place) = writer.place_after(head, max) {
        return Some(match job.encode_arg_into(codec, &mut place)? {
            Ok(Encoded::InPlace) => {
                let len = place.len();
                writer.send_placed(head + len, head, |out| run.write_head(len, out))
            }
            Ok(Encoded::Vec(arg)) => writer.send(&ToChild::Run(Run { arg: &arg, ..run }), max),
            Err(error) => Err(error),
        });
    }
    let arg = job.encode_arg(codec)?;
    Some(arg.and_then(|arg| writer.send(&ToChild::Run(Run { arg: &arg, ..run }), max)))
}
