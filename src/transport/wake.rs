//! [`Wake`]: a worker's doorbell, heard by its driver while it sleeps in `poll` (Unix).
//!
//! A child with async exports runs tasks while its driver waits for their answers in `poll`,
//! which an `unpark` does not reach; yet new work (a ring of the worker's doorbell) must be
//! taken at once. So the doorbell also calls a hook that writes a byte to a socket pair whose
//! reading end sleeps in the same `poll` as the channel: the driver wakes for a ring as for a
//! frame, and an idle wait costs no CPU.
//!
//! The hook writes only while the driver sleeps, so that a ring costs no system call
//! otherwise: the driver marks itself sleeping, then looks at the bell; a ringer sets the
//! bell, then looks at the mark. A fence on each side makes sure that at least one of them
//! sees the other's store: either the driver sees the ring and does not sleep, or the ringer
//! sees the mark and writes.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use crate::wait::Doorbell;

/// The driver's end: what it polls, and the bell it listens to.
pub(crate) struct Wake {
    bell: Arc<Doorbell>,
    signal: Arc<Signal>,
    /// Readable once the hook wrote.
    heard: UnixStream,
}

/// The ringer's end, in the doorbell's hook.
struct Signal {
    /// Set while the driver sleeps in `poll`.
    sleeping: AtomicBool,
    said: UnixStream,
}

impl Signal {
    fn wake(&self) {
        // Paired with the fence in `Wake::arm` (see the module's doc).
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            // A full socket already holds a wake-up: nothing is lost.
            let _ = (&self.said).write(&[1]);
        }
    }
}

impl Wake {
    /// A wake-up for the thread that sleeps in `poll` while `bell` may ring: from now on,
    /// `bell` calls its hook. An error if the sockets cannot be made, or `bell` has a hook.
    pub(crate) fn new(bell: &Arc<Doorbell>) -> io::Result<Wake> {
        let (said, heard) = UnixStream::pair()?;
        said.set_nonblocking(true)?;
        heard.set_nonblocking(true)?;
        let signal = Arc::new(Signal {
            sleeping: AtomicBool::new(false),
            said,
        });
        let hook = signal.clone();
        if !bell.also_call(Box::new(move || hook.wake())) {
            return Err(io::Error::other("the doorbell has a hook already"));
        }
        Ok(Wake {
            bell: bell.clone(),
            signal,
            heard,
        })
    }

    /// Marks the driver sleeping; returns whether the bell rang already (then it must not
    /// sleep, and calls [`disarm`](Wake::disarm) at once).
    pub(super) fn arm(&self) -> bool {
        self.signal.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.bell.is_rung()
    }

    /// What `poll` watches beside the channel.
    pub(super) fn fd(&self) -> RawFd {
        self.heard.as_raw_fd()
    }

    /// The driver is awake again; `heard` (the `poll` found its end readable): the bytes the
    /// hook wrote are read, so that the next `poll` sleeps.
    pub(super) fn disarm(&self, heard: bool) {
        self.signal.sleeping.store(false, Ordering::Relaxed);
        if heard {
            let mut bytes = [0u8; 64];
            while matches!((&self.heard).read(&mut bytes), Ok(n) if n > 0) {}
        }
    }

    /// Whether the bell rang (and was not cleared).
    pub(super) fn rung(&self) -> bool {
        self.bell.is_rung()
    }
}
