//! The Windows twin of `hygiene.rs`: what a worker process does to itself before it serves,
//! and to answer the pool. Less than on Unix: the pool let it inherit its channel's handles
//! and its standard handles alone (a handle list, not every inheritable handle), put it in a
//! Job Object before it ran (which kills it with the pool's process, and applies
//! `resource_limits`), so there is nothing to close, no tie to make and no limit to apply
//! here; only a crash is made to end it at once, and its handles kept from grandchildren.

use std::ffi::{OsStr, OsString};
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::sync::{Arc, Mutex};

use windows_sys::Win32::Foundation::{SetHandleInformation, HANDLE_FLAG_INHERIT};
use windows_sys::Win32::Storage::FileSystem::{GetFileType, FILE_TYPE_PIPE};
use windows_sys::Win32::System::Diagnostics::Debug::{
    SetUnhandledExceptionFilter, EXCEPTION_EXECUTE_HANDLER, EXCEPTION_POINTERS,
};
use windows_sys::Win32::System::ProcessStatus::{K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};

use crate::protocol::{Init, WORKER_ENV};
use crate::transport::{Channel, Region};

/// The section of the rings the marker named, until [`map_rings`] maps it.
static SECTION: Mutex<Option<usize>> = Mutex::new(None);

/// The marker as Windows has it: its text, read once, by [`open_channel`].
pub(super) type ChannelMarker = OsString;

/// The marker ([`WORKER_ENV`]'s value), as [`open_channel`] reads it.
pub(super) fn read_marker(marker: OsString) -> Result<OsString, String> {
    Ok(marker)
}

/// The channel to the pool: the two pipe handles the marker names (`"<read>,<write>"`, then
/// `",<section>"` where the pool shares rings, as inherited); `Err` if this process was not
/// started by a pool. First, a crash (an exception nothing handles) is made to end this
/// process at once, its exception's code its exit code (see [`die_of_unhandled_exception`]).
pub(super) fn open_channel(marker: OsString) -> Result<Channel, String> {
    // SAFETY: installs a filter that only reads the record it is given and ends the process.
    unsafe { SetUnhandledExceptionFilter(Some(die_of_unhandled_exception)) };
    let handles: Option<Vec<usize>> = marker
        .to_str()
        .map(|text| text.split(',').map(|value| value.parse().ok()).collect())
        .and_then(|values: Option<Vec<usize>>| {
            values.filter(|values| values.len() == 2 || values.len() == 3)
        });
    let not_by_a_pool = || {
        format!(
            "this process was started as a tinypool worker ({WORKER_ENV}={marker:?}) but that \
             does not name its channel: worker processes are started by a tinypool Pool, not \
             by hand"
        )
    };
    let Some(handles) = handles else {
        return Err(not_by_a_pool());
    };
    for &handle in &handles[..2] {
        // SAFETY: GetFileType on a value that may not be a handle at all fails (or names
        // another kind of object): nothing is read or written through it.
        if handle == 0 || unsafe { GetFileType(handle as _) } != FILE_TYPE_PIPE {
            return Err(not_by_a_pool());
        }
    }
    // SAFETY: two pipe handles this process inherited for its channel (checked above), which
    // nothing else in it owns.
    let (read, write) = unsafe {
        (
            OwnedHandle::from_raw_handle(handles[0] as RawHandle),
            OwnedHandle::from_raw_handle(handles[1] as RawHandle),
        )
    };
    // Grandchildren (a pool built inside a task, any `Command`) must not inherit them.
    for handle in [&read, &write] {
        // SAFETY: on handles this process owns.
        unsafe { SetHandleInformation(handle.as_raw_handle() as _, HANDLE_FLAG_INHERIT, 0) };
    }
    if let Some(&section) = handles.get(2) {
        // Nor this one, which `map_rings` maps and closes once `INIT` says to.
        // SAFETY: on the section handle the pool named beside the pipes (on a value that is
        // no handle, the call fails, and so does the mapping).
        unsafe { SetHandleInformation(section as _, HANDLE_FLAG_INHERIT, 0) };
        *SECTION.lock().unwrap_or_else(|p| p.into_inner()) = Some(section);
    }
    Channel::from_handles(read, write).map_err(|e| format!("serving its channel: {e}"))
}

/// Ends this process on an exception nothing handled (an access violation, say), with the
/// exception's code as its exit code, which the pool reports in `WorkerExited`: no debugger
/// is started, no error report is waited for. The pool's Job Object asks Windows the same
/// (`JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION`); the filter makes it so where that flag is
/// not honoured (Wine starts its debugger, whose exit code says nothing of the crash).
unsafe extern "system" fn die_of_unhandled_exception(info: *const EXCEPTION_POINTERS) -> i32 {
    // SAFETY: the system passes the exception's pointers, valid during the call.
    let code = unsafe { (*(*info).ExceptionRecord).ExceptionCode };
    // SAFETY: ends this process.
    unsafe { TerminateProcess(GetCurrentProcess(), code as u32) };
    EXCEPTION_EXECUTE_HANDLER
}

/// The rings the pool shares with this worker, mapped from the section the marker named;
/// its handle is closed (the view stays).
pub(super) fn map_rings() -> Result<Arc<Region>, String> {
    let section = SECTION.lock().unwrap_or_else(|p| p.into_inner()).take();
    let section = section.ok_or("the pool offered rings but named no section")?;
    let region = Region::map(section).ok_or("cannot map the rings shared with the pool")?;
    // SAFETY: a section handle this process inherited for the rings (it mapped above), which
    // nothing else owns, and which the view does not need.
    drop(unsafe { OwnedHandle::from_raw_handle(section as RawHandle) });
    Ok(region)
}

/// Dies with the pool's process: its Job Object does that (the pool put this process in it
/// before it ran), so nothing is left to do.
pub(super) fn tie_to_parent(_parent: &OsStr) {}

/// Applies `resource_limits`: the pool's Job Object already does.
pub(super) fn limit_resources(_init: &Init<'_>) -> Result<(), String> {
    Ok(())
}

/// This process's resident memory (its working set), in bytes (0 where it cannot be read).
pub(super) fn resident_memory() -> u64 {
    // SAFETY: a zeroed counters struct (plain integers) filled by the call, for this process.
    unsafe {
        let mut counters: PROCESS_MEMORY_COUNTERS = std::mem::zeroed();
        let size = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
        if K32GetProcessMemoryInfo(GetCurrentProcess(), &mut counters, size) == 0 {
            return 0;
        }
        counters.WorkingSetSize as u64
    }
}
