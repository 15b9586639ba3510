//! The transport of a child-process worker: the two ends of its channel, a socket and (on
//! Linux) two rings of shared memory, one each way (`ring.rs`), used alike by the pool's
//! driver and by the child.
//!
//! - [`Writer`] places each frame: in the ring, or announced there and sent on the socket (a
//!   frame too big for the ring, or a nudge for a reader found asleep), or on the socket
//!   alone. The driver's never blocks (frames sent ahead wait in it, and go out while the
//!   driver waits for results); the child's waits for room.
//! - [`Reader`] reads the frames back in the order the ring gives, spinning before it sleeps
//!   in `poll`, and never waits forever on the pool's side.
//! - `socket.rs` holds the socket's system calls, `wait.rs` the spin-then-nap wait for a peer
//!   that says nothing when it makes room or exits, and `exit.rs` how the pool sees its
//!   child's exit beside the socket.
//!
//! What travels is frames (`protocol`): the transport sees only their bytes.

mod exit;
mod reader;
mod ring;
mod socket;
mod wait;
mod writer;

use std::time::Duration;

pub(crate) use exit::ExitWatch;
pub(crate) use reader::Reader;
pub(crate) use ring::{Direction, Region};
pub(crate) use wait::Naps;
pub(crate) use writer::{Backlog, Writer};

/// How often a waiting read looks at its worker's abort flag and deadline.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(50);
