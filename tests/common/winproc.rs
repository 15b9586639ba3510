//! The Windows twin of `procfs.rs`, with the same functions the behaviour suite uses: this
//! process's live threads by name (Toolhelp's thread list and each thread's description,
//! which std sets from its name), its children (Toolhelp's process list, by parent id), and
//! whether a process is gone. Built for `x86_64-pc-windows-gnu` and run under Wine in CI.
#![allow(dead_code)]

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, Thread32First, Thread32Next,
    PROCESSENTRY32W, TH32CS_SNAPPROCESS, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcessId, GetExitCodeThread, GetThreadDescription, OpenProcess, OpenThread,
    TerminateProcess, WaitForSingleObject, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
    PROCESS_TERMINATE, THREAD_QUERY_LIMITED_INFORMATION,
};

/// What `GetExitCodeThread` says of a thread still running.
const STILL_ACTIVE: u32 = 259;

/// A handle closed when dropped.
struct Handle(HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a handle this value owns.
        unsafe { CloseHandle(self.0) };
    }
}

fn snapshot(what: u32) -> Handle {
    // SAFETY: a snapshot of the system's processes or threads, owned from here on.
    let handle = unsafe { CreateToolhelp32Snapshot(what, 0) };
    assert!(handle != INVALID_HANDLE_VALUE, "CreateToolhelp32Snapshot");
    Handle(handle)
}

/// The description (std's thread name) of thread `id`, if it is still running.
fn running_thread_name(id: u32) -> Option<String> {
    // SAFETY: opens a thread of this process, owned by the guard.
    let thread = unsafe { OpenThread(THREAD_QUERY_LIMITED_INFORMATION, 0, id) };
    if thread.is_null() {
        return None;
    }
    let thread = Handle(thread);
    let mut code = 0u32;
    // SAFETY: into a local, on the handle above.
    if unsafe { GetExitCodeThread(thread.0, &mut code) } == 0 || code != STILL_ACTIVE {
        return None;
    }
    let mut description = std::ptr::null_mut();
    // SAFETY: the call allocates the string, read up to its NUL and freed with LocalFree.
    unsafe {
        if GetThreadDescription(thread.0, &mut description) < 0 || description.is_null() {
            return Some(String::new());
        }
        let len = (0..).take_while(|&i| *description.add(i) != 0).count();
        let name = String::from_utf16_lossy(std::slice::from_raw_parts(description, len));
        windows_sys::Win32::Foundation::LocalFree(description.cast());
        Some(name)
    }
}

/// The names of this process's threads whose name passes `named` and that still run.
pub fn threads_where(named: impl Fn(&str) -> bool) -> Vec<String> {
    let me = unsafe { GetCurrentProcessId() };
    let threads = snapshot(TH32CS_SNAPTHREAD);
    let mut entry: THREADENTRY32 = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
    let mut names = Vec::new();
    // SAFETY: walks the snapshot into a local of the size it says.
    let mut more = unsafe { Thread32First(threads.0, &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == me {
            if let Some(name) = running_thread_name(entry.th32ThreadID) {
                if named(&name) {
                    names.push(name);
                }
            }
        }
        // SAFETY: as above.
        more = unsafe { Thread32Next(threads.0, &mut entry) } != 0;
    }
    names
}

/// The ids of this process's running threads named `name`.
pub fn thread_ids_named(name: &str) -> Vec<u32> {
    let me = unsafe { GetCurrentProcessId() };
    let threads = snapshot(TH32CS_SNAPTHREAD);
    let mut entry: THREADENTRY32 = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
    let mut ids = Vec::new();
    // SAFETY: walks the snapshot into a local of the size it says.
    let mut more = unsafe { Thread32First(threads.0, &mut entry) } != 0;
    while more {
        let id = entry.th32ThreadID;
        if entry.th32OwnerProcessID == me && running_thread_name(id).as_deref() == Some(name) {
            ids.push(id);
        }
        // SAFETY: as above.
        more = unsafe { Thread32Next(threads.0, &mut entry) } != 0;
    }
    ids
}

/// The names of this process's live threads whose name starts with `{prefix}-`.
pub fn live_threads(prefix: &str) -> Vec<String> {
    let prefix = format!("{prefix}-");
    threads_where(|name| name.starts_with(&prefix))
}

/// Live threads of this process whose name starts with `prefix`.
pub fn threads_named(prefix: &str) -> usize {
    threads_where(|name| name.starts_with(prefix)).len()
}

/// Live worker threads of the pool whose `thread_name` is `prefix`: those named
/// `<prefix>-<id>`.
pub fn live(prefix: &str) -> usize {
    let prefix = format!("{prefix}-");
    threads_where(|name| {
        name.strip_prefix(&prefix)
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
    })
    .len()
}

/// The processes this process started that still run: `(pid, "R")`.
pub fn children() -> Vec<(u32, String)> {
    children_of(unsafe { GetCurrentProcessId() })
        .into_iter()
        .map(|pid| (pid, "R".to_owned()))
        .collect()
}

/// The processes `parent` started that still run, in order (`parent` may have ended: a
/// process keeps its parent's id).
pub fn children_of(parent: u32) -> Vec<u32> {
    let processes = snapshot(TH32CS_SNAPPROCESS);
    let mut entry: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
    let mut found = Vec::new();
    // SAFETY: walks the snapshot into a local of the size it says.
    let mut more = unsafe { Process32FirstW(processes.0, &mut entry) } != 0;
    while more {
        if entry.th32ParentProcessID == parent && !gone(entry.th32ProcessID) {
            found.push(entry.th32ProcessID);
        }
        // SAFETY: as above.
        more = unsafe { Process32NextW(processes.0, &mut entry) } != 0;
    }
    found.sort_unstable();
    found
}

/// The pids of this process's running children, in order.
pub fn child_pids() -> Vec<u32> {
    children().into_iter().map(|(pid, _)| pid).collect()
}

/// Whether `pid` is a running child of this process.
pub fn is_child(pid: u32) -> bool {
    child_pids().contains(&pid)
}

/// Whether the process has ended (or no process has that id any more).
pub fn gone(pid: u32) -> bool {
    let access = PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION;
    // SAFETY: opens a process by id, owned by the guard.
    let process = unsafe { OpenProcess(access, 0, pid) };
    if process.is_null() {
        return true;
    }
    let process = Handle(process);
    // SAFETY: a wait of no time on the handle above.
    unsafe { WaitForSingleObject(process.0, 0) == WAIT_OBJECT_0 }
}

/// Whether this process runs under Wine (whose `ntdll` exports `wine_get_version`), which
/// does not enforce a Job Object's memory and CPU time limits.
pub fn under_wine() -> bool {
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
    // SAFETY: looks up an export of a module every process has loaded.
    unsafe {
        let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
        !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
    }
}

/// Terminates `pid` (exit code 1) if it is still a running child of this process; returns
/// whether it did.
pub fn kill_child(pid: u32) -> bool {
    if !is_child(pid) {
        return false;
    }
    // SAFETY: opens our child, owned by the guard, and terminates it.
    unsafe {
        let process = OpenProcess(PROCESS_TERMINATE, 0, pid);
        if process.is_null() {
            return false;
        }
        let process = Handle(process);
        TerminateProcess(process.0, 1) != 0
    }
}
