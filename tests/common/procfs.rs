//! What `/proc` says about this process: its live threads, its children (zombies included) and
//! its open file descriptors. The tests use it to prove that a destroyed pool left nothing
//! behind, and to wait until a worker's thread or process is gone. Linux only.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

/// `flags` bit of a task that has begun to exit (`do_exit`).
const PF_EXITING: u64 = 0x4;

/// The fields after `(comm)` of a `/proc/.../stat` line: state, ppid, pgrp, session, tty_nr,
/// tpgid, flags, ... (the comm itself may contain spaces and parentheses).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().collect())
}

/// The parent of process `pid` (0 if it is gone).
pub fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat_fields(&stat)
        .and_then(|fields| fields.get(1)?.parse().ok())
        .unwrap_or(0)
}

/// The names (with their state) of this process's threads whose name passes `named` and that
/// have not begun to exit.
///
/// A joined thread can still be listed for a moment: `join` returns once the kernel cleared
/// the thread's id, which it does inside `do_exit`, after setting `PF_EXITING`. So a thread
/// that is exiting (or a zombie, state `Z`/`X`) is not counted; one that was not joined is.
pub fn threads_where(named: impl Fn(&str) -> bool) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        // A thread that ended meanwhile has no files any more.
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue;
        };
        let comm = comm.trim_end();
        if !named(comm) {
            continue;
        }
        let Some(fields) = stat_fields(&stat) else {
            continue;
        };
        let state = fields.first().copied().unwrap_or("?");
        let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
        if state == "Z" || state == "X" || flags & PF_EXITING != 0 {
            continue;
        }
        names.push(format!("{comm} (state {state})"));
    }
    names
}

/// The names of this process's live threads whose name starts with `{prefix}-` (a pool's
/// worker threads, and any other thread named after it).
pub fn live_threads(prefix: &str) -> Vec<String> {
    let prefix = format!("{prefix}-");
    threads_where(|name| name.starts_with(&prefix))
}

/// Live threads of this process whose name starts with `prefix` (names are cut to 15 bytes).
pub fn threads_named(prefix: &str) -> usize {
    threads_where(|name| name.starts_with(prefix)).len()
}

/// Live worker threads of the pool whose `thread_name` is `prefix`: those named
/// `<prefix>-<id>` (not, say, a `<prefix>-destroy` thread of the test's own). Both runtimes
/// have one per worker: the worker itself, or the driver of its child.
pub fn live(prefix: &str) -> usize {
    let prefix = format!("{prefix}-");
    threads_where(|name| {
        name.strip_prefix(&prefix)
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
    })
    .len()
}

/// The child processes of this process, zombies included: `(pid, state)` for every
/// `/proc/<pid>/stat` whose parent is this process.
pub fn children() -> Vec<(u32, String)> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        // A process that ended meanwhile has no stat any more.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(fields) = stat_fields(&stat) else {
            continue;
        };
        if fields.get(1) == Some(&me.as_str()) {
            found.push((pid, fields[0].to_owned()));
        }
    }
    found.sort_unstable();
    found
}

/// The pids of this process's children, zombies included, in order.
pub fn child_pids() -> Vec<u32> {
    children().into_iter().map(|(pid, _)| pid).collect()
}

/// Whether `pid` is (still) a child of this process, zombie or not.
pub fn is_child(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat_fields(&stat).and_then(|fields| fields.get(1).map(|ppid| ppid.to_string()))
        == Some(std::process::id().to_string())
}

/// Whether the process is gone for good: exited and reaped (a zombie still has its entry).
pub fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// This process's open file descriptors and what they point to (the directory handle that
/// lists them is left out).
pub fn open_fds() -> BTreeMap<i32, String> {
    let mut fds = BTreeMap::new();
    let dir = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd");
    for entry in dir {
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // The listing's own handle is already closed when it is read back: no link.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if target.starts_with("/proc/") && target.ends_with("/fd") {
            continue;
        }
        fds.insert(fd, target);
    }
    fds
}

/// What differs between two fd listings, for a failure message.
pub fn fd_diff(before: &BTreeMap<i32, String>, after: &BTreeMap<i32, String>) -> String {
    let mut diff = Vec::new();
    for (fd, target) in after {
        if before.get(fd) != Some(target) {
            diff.push(format!("+{fd} -> {target}"));
        }
    }
    for (fd, target) in before {
        if after.get(fd) != Some(target) {
            diff.push(format!("-{fd} -> {target}"));
        }
    }
    diff.join(", ")
}

/// Sends SIGKILL to `pid` if it is still a child of this process; returns whether it did.
/// (The check makes killing an unrelated process that reused a reaped pid practically
/// impossible: a reaped pid is not reused within the few microseconds in between.)
pub fn kill_child(pid: u32) -> bool {
    if !is_child(pid) {
        return false;
    }
    // SAFETY: kill(2) on one of our children.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) == 0 }
}
