//! Where a caught panic happened, for [`Error::Panicked`]'s `location`.
//!
//! `catch_unwind` hands over a panic's payload but not its location: only the panic hook sees
//! that. So the first pool built chains a hook in front of the process's hook ([`install`]),
//! and a child worker's own hook does the same work (`runtime/child/mod.rs`): each notes the
//! location (`file:line:column`) and the message of the panic in a thread-local, then calls
//! the hook it replaced, so the default message on stderr and a user's hook still run. Whoever
//! catches the panic on that thread, an export or the codec, builds the error with [`caught`],
//! which takes the note.
//!
//! The note is taken only by a catch, so a thread that never panics never touches it: the
//! per-task path pays nothing. A note is used only when its message is the caught panic's:
//! a panic that some other code caught leaves a note behind, and a hook set later that does
//! not call the one it replaced leaves none, so a later panic then gets `None` rather than
//! another panic's location.

use std::any::Any;
use std::cell::Cell;
use std::panic::PanicHookInfo;
use std::sync::Once;

use crate::Error;

/// What the hook saw of this thread's last panic.
struct Note {
    location: String,
    message: String,
}

thread_local! {
    static LAST: Cell<Option<Note>> = const { Cell::new(None) };
}

/// Chains the noting hook in front of the process's hook, once per process. Does nothing on a
/// panicking thread (where the hook cannot be changed): a later pool installs it.
pub(crate) fn install() {
    static INSTALLED: Once = Once::new();
    if std::thread::panicking() {
        return;
    }
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            note(info);
            previous(info);
        }));
    });
}

/// Notes where the panic `info` describes happened, for the thread that panicked.
pub(crate) fn note(info: &PanicHookInfo<'_>) {
    let note = info.location().map(|location| Note {
        location: location.to_string(),
        message: panic_message(info.payload()),
    });
    // A thread being torn down has no thread-locals left: its panic goes without a note.
    let _ = LAST.try_with(|last| last.set(note));
}

/// The error for a panic caught on this thread with `payload`, its message passed through
/// `describe` (the codec says what it was doing).
pub(crate) fn caught(payload: &(dyn Any + Send), describe: impl FnOnce(String) -> String) -> Error {
    let message = panic_message(payload);
    let location = LAST
        .try_with(Cell::take)
        .ok()
        .flatten()
        .filter(|note| note.message == message)
        .map(|note| note.location);
    Error::Panicked {
        message: describe(message),
        location,
    }
}

/// The message of a panic payload, as `std` prints it.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::*;

    fn panic_here(message: &str) -> (Error, u32) {
        let line = line!() + 1;
        let payload = catch_unwind(AssertUnwindSafe(|| panic!("{message}"))).unwrap_err();
        (caught(&*payload, |message| message), line)
    }

    #[test]
    fn a_caught_panic_has_its_location_and_a_stale_note_is_not_used() {
        install();
        let (error, line) = panic_here("here");
        let expected = format!("{}:{line}:", file!());
        match &error {
            Error::Panicked {
                message,
                location: Some(location),
            } => {
                assert_eq!(message, "here");
                assert!(location.starts_with(&expected), "{location} at {expected}");
            }
            other => panic!("{other:?}"),
        }
        // The note was taken: a panic the hook did not see has no location.
        let payload: Box<dyn Any + Send> = Box::new("unseen");
        assert_eq!(
            caught(&*payload, |message| format!("said: {message}")),
            Error::Panicked {
                message: "said: unseen".to_owned(),
                location: None
            }
        );
        // Another panic's note (caught elsewhere) is not this one's.
        let _ = catch_unwind(|| panic!("noted, then caught by someone else"));
        assert!(matches!(
            caught(&*payload, |message| message),
            Error::Panicked { location: None, .. }
        ));
    }
}
