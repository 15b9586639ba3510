//! `measure`: W6 (idle memory) and W7 (idle CPU) of a process and its descendants, read from
//! `/proc`. The process is this driver's `<system> w6|w7` mode, or any command given after
//! `--` (run.sh passes the Node side's) that prints `READY` once its pool is warm and then
//! idles until its stdin ends.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::report::Line;
use crate::systems::Res;
use crate::{arg_or, label, usage};

/// How long the process may settle after READY before it is looked at.
const SETTLE: Duration = Duration::from_millis(500);
/// How long it may take to exit once its stdin ends.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// One process, from `/proc/<pid>/stat`.
struct Stat {
    /// The parent's pid.
    ppid: u32,
    /// The process group.
    pgrp: u32,
    /// utime + stime + cutime + cstime, in clock ticks.
    ticks: u64,
}

/// Reads `/proc/<pid>/stat`; `None` once the process is gone.
fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces and parentheses of its own.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    let field = |index: usize| fields.get(index)?.parse::<u64>().ok();
    // fields[0] is field 3 of proc(5): state, ppid, pgrp, …, utime (14) … cstime (17).
    Some(Stat {
        ppid: field(1)? as u32,
        pgrp: field(2)? as u32,
        ticks: field(11)? + field(12)? + field(13)? + field(14)?,
    })
}

/// Every process, by pid.
fn processes() -> BTreeMap<u32, Stat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// `root` and its descendants.
fn tree(root: u32) -> BTreeMap<u32, Stat> {
    let mut all = processes();
    let mut members = BTreeSet::from([root]);
    loop {
        let before = members.len();
        for (pid, stat) in &all {
            if members.contains(&stat.ppid) {
                members.insert(*pid);
            }
        }
        if members.len() == before {
            break;
        }
    }
    all.retain(|pid, _| members.contains(pid));
    all
}

/// `Rss` and `Pss` of a process, in kB, from `/proc/<pid>/smaps_rollup`.
fn memory(pid: u32) -> Res<(u64, u64)> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .ok_or_else(|| format!("{path}: no {key}"))
    };
    Ok((value("Rss:")?, value("Pss:")?))
}

/// The on-CPU time of every thread of a process, in ns, from `/proc/<pid>/task/*/schedstat`.
fn schedstat_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|task| {
            let text = fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            text.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s times.
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
        .filter(|&hz| hz > 0)
        .unwrap_or(100)
}

/// The measured process; killed with its whole process group if dropped before it exits.
struct Idle {
    /// The process, until it has been waited for.
    child: Option<Child>,
    /// Its stdout, where READY arrives.
    stdout: BufReader<ChildStdout>,
    /// Its pid, also its process group's id.
    pid: u32,
}

impl Idle {
    /// Starts `command` in a process group of its own and waits for its READY.
    fn start(command: &[String]) -> Res<Idle> {
        let mut child = Command::new(&command[0])
            .args(&command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("{}: {e}", command[0]))?;
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let pid = child.id();
        let mut idle = Idle {
            child: Some(child),
            stdout,
            pid,
        };
        let mut line = String::new();
        loop {
            line.clear();
            let read = idle
                .stdout
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            if read == 0 {
                return Err(format!("{command:?} ended before printing READY"));
            }
            if line.trim() == "READY" {
                return Ok(idle);
            }
        }
    }

    /// Ends stdin, waits for a clean exit, and checks that no process of its group is left.
    fn finish(mut self) -> Res<()> {
        let mut child = self.child.take().expect("not finished yet");
        // Nothing is read after READY: a process that writes much more would block, time out
        // and fail, rather than hang this one on a pipe that a stuck descendant holds open.
        drop(child.stdin.take());
        let deadline = Instant::now() + EXIT_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if Instant::now() > deadline {
                kill_group(self.pid);
                let _ = child.wait();
                return Err(format!("pid {} did not exit after stdin ended", self.pid));
            }
            sleep(Duration::from_millis(10));
        };
        if !status.success() {
            kill_group(self.pid);
            return Err(format!("the idle process failed: {status}"));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left: Vec<u32> = processes()
                .into_iter()
                .filter(|(_, stat)| stat.pgrp == self.pid)
                .map(|(pid, _)| pid)
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                kill_group(self.pid);
                return Err(format!("processes {left:?} outlived the idle process"));
            }
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(self.pid);
            let _ = child.wait();
        }
    }
}

/// SIGKILLs the process group `pgid` (the measured process and what it started).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// `measure <system> <w6|w6pss|w7|w7sched> [n] [repeats] [-- command...]`.
///
/// - `w6`/`w6pss`: RSS/PSS in MiB, summed over the process and its descendants, `SETTLE`
///   after READY. `n` is the tasks the default command runs first (100); 3 repeats.
/// - `w7`/`w7sched`: CPU used by the process and its descendants while idle, in ms per 5 s:
///   utime+stime (+ cutime+cstime) from `/proc/<pid>/stat` (clock ticks, 10 ms apart), or
///   on-CPU time from every thread's `schedstat` (ns, but blind to threads that exit). `n` is
///   the seconds watched (5; a shorter window is scaled to 5 s); 1 repeat.
pub fn measure(args: &[String]) -> Res<()> {
    let (head, command) = match args.iter().position(|a| a == "--") {
        Some(split) => (&args[..split], Some(&args[split + 1..])),
        None => (args, None),
    };
    let [system, workload, ..] = head else {
        usage("measure takes <system> <w6|w6pss|w7|w7sched> [n] [repeats] [-- command...]")
    };
    if head.len() > 4 {
        usage("too many arguments");
    }
    let memory_run = match workload.as_str() {
        "w6" | "w6pss" => true,
        "w7" | "w7sched" => false,
        _ => usage(&format!("measure: unknown workload {workload:?}")),
    };
    let n = arg_or(head, 2, if memory_run { 100 } else { 5 }, "n");
    let repeats = arg_or(head, 3, if memory_run { 3 } else { 1 }, "repeats");
    let command: Vec<String> = match command {
        Some([]) => usage("measure: empty command after --"),
        Some(command) => command.to_vec(),
        None => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut command = vec![exe.to_string_lossy().into_owned(), system.clone()];
            if memory_run {
                command.extend(["w6".to_owned(), n.to_string()]);
            } else {
                command.push("w7".to_owned());
            }
            command
        }
    };
    let hz = clock_ticks();
    let mut samples = Vec::with_capacity(repeats as usize);
    for _ in 0..repeats {
        let idle = Idle::start(&command)?;
        sleep(SETTLE);
        let sample = match workload.as_str() {
            "w6" | "w6pss" => {
                let (mut rss, mut pss) = (0, 0);
                for pid in tree(idle.pid).keys() {
                    let (r, p) = memory(*pid)?;
                    rss += r;
                    pss += p;
                }
                let kb = if workload == "w6" { rss } else { pss };
                kb as f64 / 1024.0
            }
            _ => {
                let sched = workload == "w7sched";
                let read = |pid: u32, stat: &Stat| {
                    if sched {
                        schedstat_ns(pid)
                    } else {
                        stat.ticks
                    }
                };
                let before: BTreeMap<u32, u64> = tree(idle.pid)
                    .iter()
                    .map(|(pid, stat)| (*pid, read(*pid, stat)))
                    .collect();
                sleep(Duration::from_secs(n));
                let used: u64 = tree(idle.pid)
                    .iter()
                    .map(|(pid, stat)| {
                        let now = read(*pid, stat);
                        now.saturating_sub(before.get(pid).copied().unwrap_or(0))
                    })
                    .sum();
                let ms = if sched {
                    used as f64 / 1e6
                } else {
                    used as f64 * 1e3 / hz as f64
                };
                ms * 5.0 / n as f64
            }
        };
        idle.finish()?;
        samples.push(sample);
    }
    let (metric, unit) = match workload.as_str() {
        "w6" => ("idle_rss", "MiB"),
        "w6pss" => ("idle_pss", "MiB"),
        "w7" => ("idle_cpu", "ms/5s"),
        _ => ("idle_cpu_schedstat", "ms/5s"),
    };
    Line {
        system: system.clone(),
        workload: workload.clone(),
        metric,
        unit,
        samples,
        n,
        workers: 2,
        repeats,
        label: label(),
    }
    .print();
    Ok(())
}
