//! The transport of a child-process worker: the two ends of its channel, a byte stream (a Unix
//! socket; on Windows, a pair of anonymous pipes) and (on Linux and Windows) two rings of shared
//! memory, one each way (`ring.rs`), used alike by the pool's driver and by the child.
//!
//! - [`Writer`] places each frame: in the ring, or announced there and written in the shared
//!   slot for big frames (`bulk.rs`: a frame too big for the ring, while the slot is free), or
//!   sent on the socket (a frame too big for the ring otherwise, or a nudge for a reader
//!   found asleep), or on the socket alone. The driver's never blocks (frames sent ahead
//!   wait in it, and go out while the driver waits for results); the child's waits for room.
//!   A [`Draft`](draft::Draft) is a frame written outside the writer (a task's argument, encoded by user
//!   code while the writer is free for others), in memory that grows as it needs, the writer's
//!   slot lent to it.
//! - [`Reader`] reads the frames back in the order the ring gives, spinning before it sleeps
//!   in `poll`, and never waits forever on the pool's side.
//! - `socket.rs` holds the socket's system calls, `wait.rs` the spin-then-nap wait for a peer
//!   that says nothing when it makes room or exits, and `exit.rs` how the pool sees its
//!   child's exit beside the socket. Their Windows twins, `pipe.rs` and `exit_windows.rs`,
//!   offer the same functions: the reader and writer are the same code on both.
//!
//! - `claims.rs`: a task sent ahead to a child is marked in a word of the rings' region, which
//!   the child claims before it runs it, or the pool takes back first.
//!
//! What travels is frames (`protocol`): the transport sees only their bytes.

mod bulk;
mod claims;
pub(crate) mod draft;
#[cfg(unix)]
mod exit;
#[cfg(windows)]
mod exit_windows;
#[cfg(windows)]
mod pipe;
mod reader;
mod ring;
#[cfg(unix)]
mod socket;
mod wait;
#[cfg(unix)]
mod wake;
mod writer;

#[cfg(windows)]
use exit_windows as exit;
// The stream's calls, this system's: reader.rs and writer.rs see one set of functions.
#[cfg(windows)]
use pipe as stream;
#[cfg(unix)]
use socket as stream;

use std::time::Duration;

pub(crate) use bulk::Bulk;
pub(crate) use claims::Ahead;
#[cfg(target_os = "linux")]
pub(crate) use exit::pidfd_open;
pub(crate) use exit::ExitWatch;
pub(crate) use reader::Reader;
pub(crate) use ring::{Direction, Region};
pub(crate) use stream::Channel;
pub(crate) use wait::Naps;
#[cfg(unix)]
pub(crate) use wake::Wake;
pub(crate) use writer::{Backlog, Writer};

/// How often a waiting read looks at its worker's abort flag and deadline.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(50);
