//! Starting a worker process, with its end of the channel in place and the marker in its
//! environment, and watching it to its end: `unix.rs`, the child's end of a socket pair on fd 3,
//! the shared rings on fd 4 and the shared slots for big frames on fd 5, with `posix_spawn`
//! (`posix.rs`) or forked from the pool's fork server (`forks.rs`, Linux),
//! `windows.rs` with `CreateProcessW` (the child's ends of two anonymous pipes and the section
//! of the rings, inherited by handle, in a Job Object that kills it with the pool's process).
//! Both give the driver the same [`Started`] and the same
//! `ChildProcess` calls: `id`, `watch`, `try_wait`, `wait`, `terminate`, `kill`.

use std::sync::Arc;

use crate::transport::{Bulk, Channel, Region};

#[cfg(target_os = "linux")]
mod forks;
#[cfg(unix)]
mod posix;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

#[cfg(unix)]
pub(crate) use unix::{limit_hit, signal_of, start, ChildProcess};
#[cfg(windows)]
pub(crate) use windows::{limit_hit, signal_of, start, ChildProcess};

#[cfg(target_os = "linux")]
pub(crate) use forks::Forks;

/// Elsewhere than on Linux every worker is spawned: there is no fork server.
#[cfg(not(target_os = "linux"))]
pub(crate) struct Forks;

#[cfg(not(target_os = "linux"))]
impl Forks {
    pub(crate) fn new(_on: bool) -> Self {
        Forks
    }

    pub(crate) fn release(&self) {}
}

/// A worker process just started: the child, the pool's end of its channel, and the rings and
/// the slots for big frames it shares with the child, if any.
pub(crate) struct Started {
    pub(crate) child: ChildProcess,
    pub(crate) channel: Channel,
    pub(crate) region: Option<Arc<Region>>,
    pub(crate) bulk: Option<Arc<Bulk>>,
}
