//! From a [`Builder`] to the [`Options`] a pool runs with: defaults resolved, conflicts and
//! options the chosen runtime cannot honour refused with [`Error::InvalidOptions`].

use std::any::type_name;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;

use super::{Builder, ChildOutput, MaxQueue, Options, ProcessOptions, Runtime};
use crate::exports::{Exports, DEFAULT_NAME};
use crate::protocol::WORKER_ENV;
use crate::Error;

impl Builder {
    pub(crate) fn into_options(mut self) -> Result<Options, Error> {
        let invalid = |message: &str| Err(Error::InvalidOptions(message.to_owned()));
        let threads = self.runtime == Runtime::Threads;
        let exports = match self.exports.take() {
            Some(exports) if exports.is_empty() => {
                return invalid("exports: no function is exported");
            }
            Some(exports) => exports,
            None if threads => return invalid("exports: a threads pool needs exports"),
            // A child-process pool's workers own their exports.
            None => Exports::new(),
        };
        let local = exports.local_names();
        if !threads && !local.is_empty() {
            return Err(Error::InvalidOptions(format!(
                "exports: local functions cannot run in a child process, only on the Threads \
                 runtime: \"{}\" (export them with serde types, or build a Threads pool)",
                local.join("\", \"")
            )));
        }
        let process_only = [
            (self.filename.is_some(), "filename"),
            (!self.argv.is_empty(), "argv"),
            (!self.env.is_empty(), "env"),
            (self.stdout != ChildOutput::Inherit, "stdout"),
            (self.stderr != ChildOutput::Inherit, "stderr"),
            (
                self.memory_recycle.is_some(),
                "max_memory_limit_before_recycle",
            ),
            (
                self.resource_limits.max_memory.is_some(),
                "resource_limits.max_memory",
            ),
            (
                self.resource_limits.max_cpu_time.is_some(),
                "resource_limits.max_cpu_time",
            ),
            (self.fork_server, "fork_server"),
        ];
        for (set, option) in process_only {
            if threads && set {
                return Err(Error::InvalidOptions(format!(
                    "{option}: only the ChildProcess runtime can honour it"
                )));
            }
        }
        if !threads && self.resource_limits.stack_size.is_some() {
            return invalid("resource_limits.stack_size: only the Threads runtime can honour it");
        }
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (min_threads, max_threads) = match (self.min_threads, self.max_threads) {
            (Some(min), Some(max)) if min > max => {
                return invalid("min_threads and max_threads must not conflict (min > max)");
            }
            (Some(min), Some(max)) => (min, max),
            (Some(min), None) => (min, parallelism.max(min)),
            (None, Some(max)) => ((parallelism / 2).max(1).min(max), max),
            (None, None) => ((parallelism / 2).max(1), parallelism),
        };
        if max_threads == 0 {
            return invalid("max_threads must be at least 1");
        }
        if self.thread_name.contains('\0') {
            // std panics when it names a thread so: refused here, not as a worker starts.
            return invalid("thread_name must not contain a NUL byte");
        }
        if self.concurrent_tasks_per_worker == 0 {
            return invalid("concurrent_tasks_per_worker must be at least 1");
        }
        let hooks = [("teardown", &self.teardown), ("setup", &self.setup)];
        for (option, name) in hooks.into_iter().filter(|_| threads) {
            let Some(name) = name else { continue };
            match exports.get(name) {
                None => {
                    return Err(Error::InvalidOptions(format!(
                        "{option}: no function is exported as \"{name}\""
                    )))
                }
                Some(export) if export.arg_type() != type_name::<()>() => {
                    return Err(Error::InvalidOptions(format!(
                        "{option}: \"{name}\" must take `()`, not `{}`",
                        export.arg_type()
                    )))
                }
                // A worker runs it to its end before (or after) any task: a future would
                // have no worker loop to poll it.
                Some(export) if export.is_async() => {
                    return Err(Error::InvalidOptions(format!(
                        "{option}: \"{name}\" is an async export: a setup or teardown must \
                         be a plain function"
                    )))
                }
                Some(_) => {}
            }
        }
        let max_queue = match self.max_queue {
            MaxQueue::Unbounded => None,
            MaxQueue::Auto => Some(max_threads.saturating_mul(max_threads)),
            MaxQueue::Limit(limit) => Some(limit),
        };
        let process = if threads {
            None
        } else {
            Some(Arc::new(self.process_options()?))
        };
        Ok(Options {
            process,
            exports: Arc::new(exports),
            name: self.name.filter(|name| name != DEFAULT_NAME),
            min_threads,
            max_threads,
            idle_timeout: self.idle_timeout,
            max_queue,
            concurrent_tasks_per_worker: self.concurrent_tasks_per_worker,
            isolate_workers: self.isolate_workers,
            terminate_timeout: self.terminate_timeout,
            teardown: self.teardown,
            setup: self.setup,
            hooks: self.hooks,
            worker_data: self.worker_data,
            stack_size: self.resource_limits.stack_size,
            thread_name: self.thread_name,
            on_error: self.on_error,
            task_timeout: self.task_timeout,
            record_timing: self.record_timing,
        })
    }
}

impl Builder {
    fn process_options(&self) -> Result<ProcessOptions, Error> {
        let invalid = |message: String| Err(Error::InvalidOptions(message));
        if !cfg!(any(unix, windows)) {
            return invalid("runtime: the ChildProcess runtime needs Unix or Windows".into());
        }
        if std::env::var_os(WORKER_ENV).is_some() {
            return invalid(format!(
                "runtime: this process was started as a tinypool worker ({WORKER_ENV} is set) \
                 but did not call tinypool::worker::serve_if_worker first in main"
            ));
        }
        if !self.serialization.available() {
            return invalid("serialization: Json needs the crate's `json` feature".into());
        }
        if self.max_message_size < 64 {
            return invalid("max_message_size must be at least 64 bytes".into());
        }
        // The system takes them as NUL-terminated strings, and the environment as `KEY=VALUE`:
        // refused here, not as each worker fails to start.
        let nul = |text: &OsStr| text.as_encoded_bytes().contains(&0);
        if let Some(arg) = self.argv.iter().find(|arg| nul(arg)) {
            return invalid(format!("argv: {arg:?} contains a NUL byte"));
        }
        for (key, value) in &self.env {
            let bytes = key.as_encoded_bytes();
            if bytes.is_empty() || bytes.contains(&b'=') || nul(key) || nul(value) {
                return invalid(format!(
                    "env: {key:?} = {value:?}: a key must be non-empty and hold no '=', and \
                     neither may hold a NUL byte"
                ));
            }
        }
        let (program, executable) = match &self.filename {
            Some(path) => {
                #[cfg(any(unix, windows))]
                check_executable(path)?;
                (path.clone(), path.clone())
            }
            None => {
                let program = std::env::current_exe().map_err(|e| {
                    Error::InvalidOptions(format!("filename: cannot find this executable: {e}"))
                })?;
                let running = Path::new("/proc/self/exe");
                let executable = if cfg!(target_os = "linux") && running.exists() {
                    running.to_owned()
                } else {
                    program.clone()
                };
                (program, executable)
            }
        };
        let worker_data = match &self.worker_data {
            Some(data) => Some((data.type_name, (data.encode)(self.serialization)?)),
            None => None,
        };
        if let Some((type_name, bytes)) = &worker_data {
            // `INIT` carries it, with a few fields beside: it must fit under the cap.
            let teardown = self.teardown.as_ref().map_or(0, String::len);
            let setup = self.setup.as_ref().map_or(0, String::len);
            let init = bytes.len() + type_name.len() + teardown + setup + 128;
            if init > self.max_message_size {
                return invalid(format!(
                    "worker_data: {} bytes encoded, more than max_message_size ({} bytes) \
                     lets a child receive",
                    bytes.len(),
                    self.max_message_size
                ));
            }
        }
        if self.filename.is_none() {
            // Re-executing a program that does not serve first would run it whole in every
            // worker (under `cargo test`, the whole test suite): refused before any child.
            crate::worker::check_reexecutable().map_err(Error::InvalidOptions)?;
        }
        Ok(ProcessOptions {
            program,
            executable,
            args: self.argv.clone(),
            stdout: self.stdout,
            stderr: self.stderr,
            env: self.env.clone(),
            serialization: self.serialization,
            startup_timeout: self.startup_timeout,
            max_message_size: self.max_message_size,
            memory_recycle: self.memory_recycle,
            max_memory: self.resource_limits.max_memory,
            max_cpu_time: self.resource_limits.max_cpu_time,
            fork_server: self.fork_server,
            worker_data,
        })
    }
}

/// Refuses a `filename` that names no executable file, as `posix_spawnp` would find it (a
/// name without a `/` is looked up in `PATH`): the mistake is named once, at `build`, rather than as
/// the start failure of every worker.
#[cfg(unix)]
fn check_executable(path: &Path) -> Result<(), Error> {
    use std::os::unix::ffi::OsStrExt;

    let refuse = |why: &str| {
        Err(Error::InvalidOptions(format!(
            "filename: `{}` {why}",
            path.display()
        )))
    };
    let executable = |candidate: &Path| {
        let Ok(c_path) = std::ffi::CString::new(candidate.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: access reads the NUL-terminated path, which outlives the call.
        candidate.is_file() && unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0
    };
    if path.as_os_str().is_empty() {
        return refuse("is empty");
    }
    if !path.as_os_str().as_bytes().contains(&b'/') {
        // glibc's default when PATH is unset.
        let search = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
        if std::env::split_paths(&search).any(|dir| executable(&dir.join(path))) {
            return Ok(());
        }
        return refuse("is not an executable file in any directory of PATH");
    }
    match std::fs::metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => refuse("does not exist"),
        Err(error) => refuse(&format!("cannot be read: {error}")),
        Ok(metadata) if !metadata.is_file() => refuse("is not a file"),
        Ok(_) if !executable(path) => refuse("is not executable (no execute permission)"),
        Ok(_) => Ok(()),
    }
}

/// Refuses a `filename` that names no file, as `CreateProcessW` would find it: a path with a
/// directory is taken as it is (relative to the current directory); a bare name is looked up
/// where `CreateProcessW` looks, in its order (the directory of this executable, the current
/// one, the system directories, then `PATH`), with `.exe` added when it has no extension.
/// Windows has no execute permission to check.
#[cfg(windows)]
fn check_executable(path: &Path) -> Result<(), Error> {
    let refuse = |why: &str| {
        Err(Error::InvalidOptions(format!(
            "filename: `{}` {why}",
            path.display()
        )))
    };
    if path.as_os_str().is_empty() {
        return refuse("is empty");
    }
    if path.components().count() == 1 {
        let name = if path.extension().is_some() {
            path.to_owned()
        } else {
            path.with_extension("exe")
        };
        let mut dirs = Vec::new();
        dirs.extend(
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_owned)),
        );
        dirs.extend(std::env::current_dir().ok());
        if let Some(root) = std::env::var_os("SystemRoot").map(std::path::PathBuf::from) {
            dirs.extend([root.join("System32"), root.join("System"), root]);
        }
        if let Some(search) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&search));
        }
        if dirs.iter().any(|dir| dir.join(&name).is_file()) {
            return Ok(());
        }
        return refuse(
            "is not a file in this executable's directory, the current one, the system \
             directories or any directory of PATH (`.exe` is added to a name without an \
             extension)",
        );
    }
    match std::fs::metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => refuse("does not exist"),
        Err(error) => refuse(&format!("cannot be read: {error}")),
        Ok(metadata) if !metadata.is_file() => refuse("is not a file"),
        Ok(_) => Ok(()),
    }
}
