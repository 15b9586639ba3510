//! Starting a worker process with `CreateProcessW`, and waiting for it (Windows).
//!
//! `std::process::Command` lets a child inherit every inheritable handle of the pool's
//! process, and has no way to put it in a Job Object before it runs. So the child is created
//! here, suspended, with `PROC_THREAD_ATTRIBUTE_HANDLE_LIST`: it inherits its standard handles,
//! the two ends of its channel's pipes and the section of its rings, nothing else (their
//! values, unchanged in the child, are the marker). Then it joins a Job Object of its own, made with
//! `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`: the pool holds the job's only handle, so when the
//! pool's process ends, however it ends, the system closes that handle and kills the child
//! and whatever it started. Only then does it run.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::os::windows::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    DuplicateHandle, DUPLICATE_SAME_ACCESS, GENERIC_READ, GENERIC_WRITE, HANDLE,
    INVALID_HANDLE_VALUE, WAIT_OBJECT_0,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::Console::{GetStdHandle, STD_ERROR_HANDLE, STD_OUTPUT_HANDLE};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectBasicAccountingInformation,
    JobObjectExtendedLimitInformation, QueryInformationJobObject, SetInformationJobObject,
    JOBOBJECT_BASIC_ACCOUNTING_INFORMATION, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOB_OBJECT_LIMIT_PROCESS_MEMORY, JOB_OBJECT_LIMIT_PROCESS_TIME,
};
use windows_sys::Win32::System::Memory::{FILE_MAP_READ, FILE_MAP_WRITE};
use windows_sys::Win32::System::Threading::{
    CreateProcessW, DeleteProcThreadAttributeList, GetCurrentProcess,
    InitializeProcThreadAttributeList, ResumeThread, TerminateProcess, UpdateProcThreadAttribute,
    WaitForSingleObject, CREATE_NEW_PROCESS_GROUP, CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT,
    EXTENDED_STARTUPINFO_PRESENT, INFINITE, LPPROC_THREAD_ATTRIBUTE_LIST, PROCESS_INFORMATION,
    PROC_THREAD_ATTRIBUTE_HANDLE_LIST, STARTF_USESTDHANDLES, STARTUPINFOEXW,
};

use super::Started;
use crate::options::{ChildOutput, ProcessOptions};
use crate::protocol::WORKER_ENV;
use crate::transport::{Channel, ExitWatch, Region};

/// The exit code of a child the pool terminated (as `std::process::Child::kill` uses).
const KILLED: u32 = 1;
/// How Rust's `abort` ends a process on Windows (`__fastfail`): an allocation refused under
/// the job's memory limit ends so, without a panic message.
const FAST_FAIL: u32 = 0xC000_0409;

/// Starts a worker as `options` say, with this process's environment plus `env`: its
/// channel's pipe ends inherited, and the section of the rings shared with it, their values
/// in the marker (`"<read>,<write>,<section>"`; without the last where no section could be
/// made, and the channel is the pipes alone). Always spawned (`_forks`: Windows has no
/// `fork`). `Err` says what failed.
pub(crate) fn start(
    options: &ProcessOptions,
    mut env: Vec<(OsString, OsString)>,
    _forks: &super::Forks,
) -> Result<Started, String> {
    let (channel, ends) = Channel::pair().map_err(|e| format!("creating the pipes: {e}"))?;
    // Inheritable copies, for this one child: closed once it has them.
    let read = inheritable(&ends.read, None).map_err(|e| format!("creating the pipes: {e}"))?;
    let write = inheritable(&ends.write, None).map_err(|e| format!("creating the pipes: {e}"))?;
    let (region, section) = match Region::create() {
        // The child may map the section, not extend it.
        Some((region, section)) => {
            let access = Some(FILE_MAP_READ | FILE_MAP_WRITE);
            let section =
                inheritable(&section, access).map_err(|e| format!("sharing the rings: {e}"))?;
            (Some(region), Some(section))
        }
        None => (None, None),
    };
    let mut marker = format!(
        "{},{}",
        read.as_raw_handle() as usize,
        write.as_raw_handle() as usize
    );
    let mut handles = vec![&read, &write];
    if let Some(section) = &section {
        marker.push_str(&format!(",{}", section.as_raw_handle() as usize));
        handles.push(section);
    }
    env.push((WORKER_ENV.into(), marker.into()));
    let child = ChildProcess::spawn(options, &env, &handles)
        .map_err(|e| format!("spawning the child: {e}"))?;
    Ok(Started {
        child,
        channel,
        region,
        bulk: None,
    })
}

/// The signal that ended a child: Windows has none.
pub(crate) fn signal_of(_status: &ExitStatus) -> Option<i32> {
    None
}

/// Which of `options`' resource limits `child`, which ended so, hit, if one did: its job
/// ended it for its CPU time (the job's accounting says it terminated a process for a limit,
/// or counts as much user time as the limit); an allocation refused under the job's memory
/// limit aborts without a panic message.
pub(crate) fn limit_hit(
    child: &ChildProcess,
    code: Option<i32>,
    _signal: Option<i32>,
    panicked: bool,
    options: &ProcessOptions,
) -> Option<&'static str> {
    if let (Some(time), Some(accounting)) = (options.max_cpu_time, child.accounting()) {
        if accounting.TotalTerminatedProcesses > 0 || accounting.TotalUserTime >= ticks(time) {
            return Some("cpu time");
        }
    }
    let fast_fail = code == Some(FAST_FAIL as i32);
    (fast_fail && !panicked && options.max_memory.is_some()).then_some("memory")
}

/// A child process this process started, in its own Job Object. Dropped, it is killed if it
/// has not ended (closing the job would kill it anyway).
pub(crate) struct ChildProcess {
    process: Arc<OwnedHandle>,
    /// The job's only handle: closing it kills the child, and anything it started.
    job: OwnedHandle,
    pid: u32,
    status: Option<ExitStatus>,
}

impl ChildProcess {
    /// Starts the worker executable as `options` say (as the program at its path, with its
    /// arguments, stdout and stderr) with this process's environment plus `env`, in a
    /// process group of its own (a console's Ctrl-C is for the application to handle); stdin
    /// reads `NUL`; it inherits `handles` (inheritable) and its standard handles, nothing
    /// else.
    fn spawn(
        options: &ProcessOptions,
        env: &[(OsString, OsString)],
        handles: &[&OwnedHandle],
    ) -> io::Result<ChildProcess> {
        let application = (options.executable.components().count() > 1)
            .then(|| wide(options.executable.as_os_str()))
            .transpose()?;
        let mut command_line = command_line(options.program.as_os_str(), &options.args)?;
        let mut environment = environment(env)?;
        let stdin = open_nul(GENERIC_READ)?;
        let stdout = output(options.stdout, STD_OUTPUT_HANDLE)?;
        let stderr = output(options.stderr, STD_ERROR_HANDLE)?;
        let raw = |handle: &Option<OwnedHandle>| {
            handle.as_ref().map_or(std::ptr::null_mut(), |handle| {
                handle.as_raw_handle() as HANDLE
            })
        };
        let mut inherited: Vec<HANDLE> = handles
            .iter()
            .map(|handle| handle.as_raw_handle() as HANDLE)
            .collect();
        for handle in [Some(&stdin), stdout.as_ref(), stderr.as_ref()]
            .into_iter()
            .flatten()
        {
            inherited.push(handle.as_raw_handle() as HANDLE);
        }
        let mut attributes = AttributeList::with_handles(&inherited)?;
        let mut startup: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
        startup.StartupInfo.cb = std::mem::size_of::<STARTUPINFOEXW>() as u32;
        startup.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
        startup.StartupInfo.hStdInput = stdin.as_raw_handle() as HANDLE;
        startup.StartupInfo.hStdOutput = raw(&stdout);
        startup.StartupInfo.hStdError = raw(&stderr);
        startup.lpAttributeList = attributes.list();
        let flags = CREATE_UNICODE_ENVIRONMENT
            | EXTENDED_STARTUPINFO_PRESENT
            | CREATE_SUSPENDED
            | CREATE_NEW_PROCESS_GROUP;
        let mut info: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: every pointer is to a local that outlives the call: the NUL-terminated
        // application name and command line (which CreateProcessW may write to), the
        // environment block (ending with two NULs), the startup info with its attribute list
        // of inheritable handles we own. The handles it returns are ours from here on.
        let created = unsafe {
            CreateProcessW(
                application
                    .as_ref()
                    .map_or(std::ptr::null(), |name| name.as_ptr()),
                command_line.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                1,
                flags,
                environment.as_mut_ptr().cast(),
                std::ptr::null(),
                &startup.StartupInfo,
                &mut info,
            )
        };
        if created == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the two handles CreateProcessW just returned, owned by nobody else.
        let (process, thread) = unsafe {
            (
                OwnedHandle::from_raw_handle(info.hProcess as RawHandle),
                OwnedHandle::from_raw_handle(info.hThread as RawHandle),
            )
        };
        let job = match job_for(&process, options) {
            Ok(job) => job,
            Err(error) => {
                // SAFETY: terminating the suspended child we just created.
                unsafe { TerminateProcess(process.as_raw_handle() as HANDLE, KILLED) };
                return Err(error);
            }
        };
        // SAFETY: resuming the child's main thread, suspended at creation.
        if unsafe { ResumeThread(thread.as_raw_handle() as HANDLE) } == u32::MAX {
            let error = io::Error::last_os_error();
            // SAFETY: as above.
            unsafe { TerminateProcess(process.as_raw_handle() as HANDLE, KILLED) };
            return Err(error);
        }
        Ok(ChildProcess {
            process: Arc::new(process),
            job,
            pid: info.dwProcessId,
            status: None,
        })
    }

    /// What its job counted (the child is its only process), if the system says.
    fn accounting(&self) -> Option<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION> {
        // SAFETY: zeroed plain integers, filled by the call for the job we own.
        unsafe {
            let mut info: JOBOBJECT_BASIC_ACCOUNTING_INFORMATION = std::mem::zeroed();
            let size = std::mem::size_of::<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION>() as u32;
            let queried = QueryInformationJobObject(
                self.job.as_raw_handle() as HANDLE,
                JobObjectBasicAccountingInformation,
                (&mut info as *mut JOBOBJECT_BASIC_ACCOUNTING_INFORMATION).cast(),
                size,
                std::ptr::null_mut(),
            );
            (queried != 0).then_some(info)
        }
    }

    pub(crate) fn id(&self) -> u32 {
        self.pid
    }

    /// What tells its death without waiting for it.
    pub(crate) fn watch(&self) -> ExitWatch {
        ExitWatch::new(self.process.clone())
    }

    /// How it ended, if it has.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.wait_for(0)
    }

    /// Waits until it ends.
    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.wait_for(INFINITE)? {
                return Ok(status);
            }
        }
    }

    /// Ends it: Windows has no signal to ask a process to stop, and a worker would not
    /// handle one (on Unix it dies of SIGTERM at once): `TerminateProcess`.
    pub(crate) fn terminate(&self) {
        if self.status.is_none() {
            // SAFETY: on our child's process handle, which stays valid while we hold it (an
            // ended process's handle does not name another process).
            unsafe { TerminateProcess(self.process.as_raw_handle() as HANDLE, KILLED) };
        }
    }

    /// `TerminateProcess`, unless it has ended.
    pub(crate) fn kill(&mut self) {
        self.terminate();
    }

    fn wait_for(&mut self, millis: u32) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let handle = self.process.as_raw_handle() as HANDLE;
        // SAFETY: a wait on our child's process handle.
        match unsafe { WaitForSingleObject(handle, millis) } {
            WAIT_OBJECT_0 => {}
            windows_sys::Win32::Foundation::WAIT_TIMEOUT => return Ok(None),
            _ => return Err(io::Error::last_os_error()),
        }
        let mut code = 0u32;
        // SAFETY: into a local, on the handle of a process that has ended.
        if unsafe { windows_sys::Win32::System::Threading::GetExitCodeProcess(handle, &mut code) }
            == 0
        {
            return Err(io::Error::last_os_error());
        }
        let status = ExitStatus::from_raw(code);
        self.status = Some(status);
        Ok(Some(status))
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.kill();
            let _ = self.wait();
        }
    }
}

/// The Job Object `process` (suspended) joins: it dies when the job's handle closes, an
/// unhandled exception ends it at once (no error-reporting dialog to wait on), `max_memory`
/// bounds its committed memory and `max_cpu_time` its user-mode CPU time (the system ends
/// it there, and [`limit_hit`] reads the job's accounting to say so).
fn job_for(process: &OwnedHandle, options: &ProcessOptions) -> io::Result<OwnedHandle> {
    // SAFETY: a new unnamed job, not inheritable; owned from here on.
    let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if job.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle was just created.
    let job = unsafe { OwnedHandle::from_raw_handle(job as RawHandle) };
    let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    limits.BasicLimitInformation.LimitFlags =
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION;
    if let Some(max) = options.max_memory {
        limits.BasicLimitInformation.LimitFlags |= JOB_OBJECT_LIMIT_PROCESS_MEMORY;
        limits.ProcessMemoryLimit = usize::try_from(max).unwrap_or(usize::MAX);
    }
    if let Some(time) = options.max_cpu_time {
        limits.BasicLimitInformation.LimitFlags |= JOB_OBJECT_LIMIT_PROCESS_TIME;
        limits.BasicLimitInformation.PerProcessUserTimeLimit = ticks(time);
    }
    // SAFETY: the limits struct, of the size given, for the job we own; then the process we
    // created into it.
    unsafe {
        let size = std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32;
        let info = (&limits as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast();
        let handle = job.as_raw_handle() as HANDLE;
        if SetInformationJobObject(handle, JobObjectExtendedLimitInformation, info, size) == 0
            || AssignProcessToJobObject(handle, process.as_raw_handle() as HANDLE) == 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(job)
}

/// `time` in the job's units of 100 ns, at least one; `Duration::MAX` saturates to "never"
/// in practice.
fn ticks(time: Duration) -> i64 {
    i64::try_from(time.as_nanos() / 100)
        .unwrap_or(i64::MAX)
        .max(1)
}

/// An inheritable copy of `handle`, with the same access or only `access`.
fn inheritable(handle: &OwnedHandle, access: Option<u32>) -> io::Result<OwnedHandle> {
    let mut copy: HANDLE = std::ptr::null_mut();
    // SAFETY: duplicates a handle we own within this process into a local; owned from here.
    let duplicated = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            handle.as_raw_handle() as HANDLE,
            GetCurrentProcess(),
            &mut copy,
            access.unwrap_or(0),
            1,
            if access.is_some() {
                0
            } else {
                DUPLICATE_SAME_ACCESS
            },
        )
    };
    if duplicated == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle was just created.
    Ok(unsafe { OwnedHandle::from_raw_handle(copy as RawHandle) })
}

/// `NUL`, opened for `access`, inheritable.
fn open_nul(access: u32) -> io::Result<OwnedHandle> {
    let attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: std::ptr::null_mut(),
        bInheritHandle: 1,
    };
    let name = wide(OsStr::new("NUL"))?;
    // SAFETY: a NUL-terminated name and attributes that outlive the call.
    let handle = unsafe {
        CreateFileW(
            name.as_ptr(),
            access,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            &attributes,
            OPEN_EXISTING,
            0,
            std::ptr::null_mut(),
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle was just created.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle as RawHandle) })
}

/// What the child's stdout or stderr (`which`) is: an inheritable copy of ours, `NUL`, or
/// our stderr; `None` if this process has none to give.
fn output(to: ChildOutput, which: u32) -> io::Result<Option<OwnedHandle>> {
    let ours = match to {
        ChildOutput::Null => return open_nul(GENERIC_WRITE).map(Some),
        ChildOutput::Inherit => which,
        ChildOutput::Stderr => STD_ERROR_HANDLE,
    };
    // SAFETY: GetStdHandle has no preconditions; the handle stays this process's.
    let handle = unsafe { GetStdHandle(ours) };
    if handle.is_null() || handle == INVALID_HANDLE_VALUE {
        return Ok(None);
    }
    // SAFETY: the handle is borrowed for the duplication only.
    let borrowed =
        std::mem::ManuallyDrop::new(unsafe { OwnedHandle::from_raw_handle(handle as RawHandle) });
    // A console handle of an old Windows cannot be duplicated: then the child has none.
    Ok(inheritable(&borrowed, None).ok())
}

/// `text` as a NUL-terminated UTF-16 string; an error if it holds a NUL.
fn wide(text: &OsStr) -> io::Result<Vec<u16>> {
    let mut wide: Vec<u16> = text.encode_wide().collect();
    if wide.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a NUL character in {text:?}"),
        ));
    }
    wide.push(0);
    Ok(wide)
}

/// The command line the child's C runtime (and Rust's `std::env::args`) splits back into
/// `program` and `args`: each argument quoted when it holds a space or a tab (or is empty),
/// its backslashes doubled before a quote, and its quotes escaped.
fn command_line(program: &OsStr, args: &[OsString]) -> io::Result<Vec<u16>> {
    let mut line = Vec::new();
    // The program is always quoted, and cannot hold a quote (Windows reads it up to the next).
    if program.encode_wide().any(|c| c == u16::from(b'"')) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a quote in the program's path {program:?}"),
        ));
    }
    append_argument(&mut line, program, true);
    for arg in args {
        line.push(u16::from(b' '));
        append_argument(&mut line, arg, false);
    }
    if line.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a NUL character in an argument",
        ));
    }
    line.push(0);
    Ok(line)
}

/// Appends one argument of a command line (see [`command_line`]).
fn append_argument(line: &mut Vec<u16>, arg: &OsStr, force_quotes: bool) {
    let (space, tab, quote, backslash) = (
        u16::from(b' '),
        u16::from(b'\t'),
        u16::from(b'"'),
        u16::from(b'\\'),
    );
    let quoted =
        force_quotes || arg.is_empty() || arg.encode_wide().any(|c| c == space || c == tab);
    if quoted {
        line.push(quote);
    }
    let mut backslashes = 0;
    for c in arg.encode_wide() {
        if c == backslash {
            backslashes += 1;
        } else {
            if c == quote {
                // Its backslashes doubled, then itself escaped.
                line.extend(std::iter::repeat_n(backslash, backslashes + 1));
            }
            backslashes = 0;
        }
        line.push(c);
    }
    if quoted {
        // Backslashes before the closing quote are doubled, so that it stays a quote.
        line.extend(std::iter::repeat_n(backslash, backslashes));
        line.push(quote);
    }
}

/// The environment block: this process's variables, those of `env` in place of any of the
/// same name (names are case-insensitive on Windows), sorted by name as Windows asks, each
/// `NAME=value` and NUL-terminated, then a final NUL.
fn environment(env: &[(OsString, OsString)]) -> io::Result<Vec<u16>> {
    let key = |name: &OsStr| name.to_string_lossy().to_uppercase();
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(name, _)| !env.iter().any(|(set, _)| key(set) == key(name)))
        .collect();
    vars.extend(env.iter().cloned());
    vars.sort_by_cached_key(|(name, _)| key(name));
    let mut block = Vec::new();
    for (name, value) in &vars {
        let mut pair = name.clone();
        pair.push("=");
        pair.push(value);
        block.extend(wide(&pair)?);
    }
    if block.is_empty() {
        block.push(0);
    }
    block.push(0);
    Ok(block)
}

/// An attribute list with one attribute, the handles a child inherits; deleted when dropped.
struct AttributeList {
    buffer: Vec<usize>,
    /// The handles it points to: they must stay put while it lives.
    _handles: Vec<HANDLE>,
}

impl AttributeList {
    fn with_handles(handles: &[HANDLE]) -> io::Result<AttributeList> {
        let mut handles = handles.to_vec();
        handles.dedup();
        let mut size = 0usize;
        // SAFETY: the documented size query (it fails, and says the size needed).
        unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut size) };
        let mut list = AttributeList {
            buffer: vec![0usize; size.div_ceil(std::mem::size_of::<usize>())],
            _handles: handles,
        };
        // SAFETY: a buffer of at least `size` bytes, pointer-aligned, for one attribute; the
        // handle array lives in `list` (a Vec's heap allocation does not move with it).
        unsafe {
            if InitializeProcThreadAttributeList(list.list(), 1, 0, &mut size) == 0 {
                let error = io::Error::last_os_error();
                list.buffer.clear();
                return Err(error);
            }
            if UpdateProcThreadAttribute(
                list.list(),
                0,
                PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
                list._handles.as_ptr().cast(),
                std::mem::size_of_val(&list._handles[..]),
                std::ptr::null_mut(),
                std::ptr::null(),
            ) == 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(list)
    }

    fn list(&mut self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        self.buffer.as_mut_ptr().cast()
    }
}

impl Drop for AttributeList {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            // SAFETY: the list was initialized (an empty buffer marks one that was not).
            unsafe { DeleteProcThreadAttributeList(self.list()) };
        }
    }
}
