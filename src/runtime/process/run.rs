//! A task's `RUN` frame on its way to the child, its argument encoded in place, after room left
//! for the frame's head, which is written once the argument's length is known: first in the
//! writer's own buffer, where a small frame is made before it goes in the ring; if it does not
//! fit there, straight into the shared slot for big frames, while that is free (a big argument
//! so costs the pool one copy, the encoding itself). Otherwise, and for an argument that does
//! not fit the slot either, it is encoded on its own and framed as any message (see
//! `transport/bulk.rs`).

use std::sync::Arc;

use crate::codec::{Encoded, Place, Serialization};
use crate::protocol::{Run, ToChild};
use crate::task::Job;
use crate::transport::{Room, Writer};
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
    for room in [Room::Small, Room::Slot] {
        let Some(mut place) = writer.place_after(room, head, max) else {
            continue;
        };
        match job.encode_arg_into(codec, &mut place)? {
            Ok(Encoded::InPlace) => {
                let len = place.len();
                let write_head = |out: &mut Place<'_>| run.write_head(head, len, out);
                return Some(writer.send_placed(room, head + len, head, write_head));
            }
            // Bigger than this room: the next.
            Ok(Encoded::Full) => {}
            Err(error) => return Some(Err(error)),
        }
    }
    let arg = job.encode_arg(codec)?;
    Some(arg.and_then(|arg| writer.send(&ToChild::Run(Run { arg: &arg, ..run }), max)))
}
