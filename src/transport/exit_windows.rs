//! The Windows twin of `exit.rs`: a child's exit, as the pool's end of its channel sees it,
//! from the child's process handle (waitable, and signalled once the process has ended).

use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::sync::Arc;

use windows_sys::Win32::Foundation::WAIT_OBJECT_0;
use windows_sys::Win32::System::Threading::WaitForSingleObject;

/// Tells whether a child has exited. The end of its pipes does not say so: a process it
/// started may hold its ends for as long as it lives.
#[derive(Clone)]
pub(crate) struct ExitWatch {
    process: Arc<OwnedHandle>,
}

impl ExitWatch {
    /// Watches the process behind `process` (a handle the child's `ChildProcess` shares).
    pub(crate) fn new(process: Arc<OwnedHandle>) -> Self {
        ExitWatch { process }
    }

    /// Whether the child has exited.
    pub(crate) fn exited(&self) -> bool {
        // SAFETY: a wait of no time on a process handle we own.
        unsafe { WaitForSingleObject(self.process.as_raw_handle() as _, 0) == WAIT_OBJECT_0 }
    }
}
