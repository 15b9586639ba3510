//! Waiting for a peer that says nothing when it is done: it empties a ring without telling,
//! or exits. Such a wait spins first ([`spin_until`]: most waits end within microseconds),
//! then naps in growing sleeps, so that a long one costs no CPU.

use std::time::Duration;

use crate::wait::spin_until;

/// The first nap of a wait; each next one is twice as long, up to the wait's longest.
const FIRST_NAP: Duration = Duration::from_micros(20);

/// The longest nap of a wait for room in a ring (the socket says nothing of the ring, so
/// sleeping in `poll` instead would be a busy loop).
pub(crate) const RING_NAP: Duration = Duration::from_millis(1);

/// Growing sleeps: 20 µs, then twice as long each time, up to `longest`.
pub(crate) struct Naps {
    next: Duration,
    longest: Duration,
}

impl Naps {
    pub(crate) fn new(longest: Duration) -> Self {
        Naps {
            next: FIRST_NAP.min(longest),
            longest,
        }
    }

    /// Sleeps for the next nap, or `left` if that is shorter.
    pub(crate) fn sleep(&mut self, left: Duration) {
        std::thread::sleep(self.next.min(left));
        self.next = (self.next * 2).min(self.longest);
    }
}

/// Waits until `done(state)`: spins, then naps (up to `longest` each); before each nap,
/// `give_up(state)` may end the wait. Returns whether `done` said so.
pub(crate) fn spin_then_nap<S: ?Sized>(
    state: &mut S,
    longest: Duration,
    mut done: impl FnMut(&mut S) -> bool,
    mut give_up: impl FnMut(&mut S) -> bool,
) -> bool {
    if spin_until(|| done(state)) {
        return true;
    }
    let mut naps = Naps::new(longest);
    while !done(state) {
        if give_up(state) {
            return false;
        }
        naps.sleep(longest);
    }
    true
}
