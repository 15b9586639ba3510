//! `tinypool-bench soak`: a steady mixed load for minutes, reporting as it goes.
//!
//! ```text
//! tinypool-bench soak [--minutes N | --seconds N] [--runtime threads|process]
//! ```
//!
//! Two caller threads keep one pool busy with a mix of tasks: sums whose values are checked,
//! panics, and aborts at random moments, with a `cancel_pending_tasks` now and then. Every
//! few seconds it prints tasks done, errors by kind, resident memory (the process and its
//! children) and open file descriptors. At the end it checks the invariants: every task
//! resolved exactly once with a right value or an expected error, nothing left behind after
//! `destroy()`, no file descriptor leaked, and resident memory did not grow once warm.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tinypool::{AbortController, Error, MaxQueue, Pool, RunOptions, Runtime, Task};

use crate::systems::Res;

/// Counts of what the tasks came back with.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    submitted: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    /// Results that were wrong, or errors nothing injected: must stay 0.
    wrong: AtomicU64,
}

impl Tally {
    fn error(&self, kind: &str) {
        *self
            .errors
            .lock()
            .unwrap()
            .entry(kind.to_owned())
            .or_default() += 1;
    }

    fn resolved(&self) -> u64 {
        self.ok.load(Ordering::Relaxed) + self.errors.lock().unwrap().values().sum::<u64>()
    }
}

/// Runs the soak; `Err` when an invariant broke.
pub fn soak(args: &[String]) -> Res<()> {
    let mut duration = Duration::from_secs(60);
    let mut runtime = Runtime::Threads;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--minutes" => duration = Duration::from_secs(60 * number(value)?),
            "--seconds" => duration = Duration::from_secs(number(value)?),
            "--runtime" => {
                runtime = match value.as_str() {
                    "threads" => Runtime::Threads,
                    "process" => Runtime::ChildProcess,
                    other => return Err(format!("unknown runtime {other:?}")),
                }
            }
            other => return Err(format!("unknown soak option {other:?}")),
        }
    }
    let fds_before = open_fds();
    let builder = Pool::builder()
        .runtime(runtime)
        .min_threads(2)
        .max_threads(2)
        // A child takes its tasks 4 at a time: the batched path is soaked too.
        .concurrent_tasks_per_worker(4)
        .max_queue(MaxQueue::Limit(2_000));
    let pool = match runtime {
        Runtime::Threads => builder.exports(crate::worker::exports()),
        _ => builder,
    }
    .build()
    .map_err(|e| e.to_string())?;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..2u64)
        .map(|caller| {
            let (pool, tally, stop) = (pool.clone(), tally.clone(), stop.clone());
            std::thread::spawn(move || load(&pool, &tally, &stop, caller))
        })
        .collect();

    let start = Instant::now();
    let mut warm_rss = None;
    let mut last_rss = 0;
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(5).min(duration.saturating_sub(start.elapsed())));
        last_rss = resident_kib();
        // Warm once a third of the run is behind: allocator pools and caches are full.
        if warm_rss.is_none() && start.elapsed() >= duration / 3 {
            warm_rss = Some(last_rss);
        }
        let errors = tally.errors.lock().unwrap().clone();
        println!(
            "{:>6.0}s  done {:>10}  ok {:>10}  errors {:?}  rss {} KiB  fds {}",
            start.elapsed().as_secs_f64(),
            tally.resolved(),
            tally.ok.load(Ordering::Relaxed),
            errors,
            last_rss,
            open_fds(),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.join().map_err(|_| "a caller thread panicked")?;
    }
    pool.destroy().wait().map_err(|e| e.to_string())?;
    drop(pool);

    let mut broken = Vec::new();
    let (submitted, resolved) = (tally.submitted.load(Ordering::Relaxed), tally.resolved());
    if submitted != resolved {
        broken.push(format!("{submitted} tasks submitted, {resolved} resolved"));
    }
    let wrong = tally.wrong.load(Ordering::Relaxed);
    if wrong > 0 {
        broken.push(format!("{wrong} wrong values or unexpected errors"));
    }
    let children = children();
    if !children.is_empty() {
        broken.push(format!("child processes left after destroy: {children:?}"));
    }
    let fds_after = open_fds();
    if fds_after > fds_before {
        broken.push(format!(
            "{} file descriptors leaked",
            fds_after - fds_before
        ));
    }
    if let Some(warm) = warm_rss {
        // Some slack for the allocator; steady growth past it is a leak.
        if last_rss > warm + warm / 5 + 2048 {
            broken.push(format!(
                "resident memory grew from {warm} KiB (warm) to {last_rss} KiB"
            ));
        }
    }
    println!(
        "soak {runtime:?}: {submitted} tasks, {} ok, errors {:?}, lost {}",
        tally.ok.load(Ordering::Relaxed),
        tally.errors.lock().unwrap(),
        submitted.saturating_sub(resolved),
    );
    if broken.is_empty() {
        println!("invariants hold");
        Ok(())
    } else {
        Err(broken.join("; "))
    }
}

fn number(text: &str) -> Res<u64> {
    text.parse().map_err(|_| format!("not a number: {text:?}"))
}

/// One caller: batches of mixed tasks, each waited exactly once.
fn load(pool: &Pool, tally: &Tally, stop: &AtomicBool, caller: u64) {
    let mut seed = 0x9E37_79B9_7F4A_7C15 ^ (caller + 1);
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    while !stop.load(Ordering::Relaxed) {
        let mut batch: Vec<(Task<u64>, Option<u64>)> = Vec::new();
        let mut controllers = Vec::new();
        for i in 0..200u64 {
            let kind = random() % 20;
            let task = if kind == 0 {
                (
                    pool.run_with("soak".to_owned(), RunOptions::new().name("panic")),
                    None,
                )
            } else if kind == 1 {
                let controller = AbortController::new();
                let task = pool.run_with(
                    (i, 1u64),
                    RunOptions::new().name("add").signal(controller.signal()),
                );
                controllers.push(controller);
                (task, Some(i + 1))
            } else {
                (pool.run((i, caller)), Some(i + caller))
            };
            tally.submitted.fetch_add(1, Ordering::Relaxed);
            batch.push(task);
        }
        for controller in controllers.iter().filter(|_| random() % 2 == 0) {
            controller.abort();
        }
        if random() % 50 == 0 {
            pool.cancel_pending_tasks();
        }
        for (task, expected) in batch {
            match (task.wait(), expected) {
                (Ok(value), Some(expected)) if value == expected => {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                }
                (Err(Error::Panicked { .. }), None) => tally.error("Panicked"),
                (Err(Error::Aborted { .. }), _) => tally.error("Aborted"),
                (Err(Error::Cancelled), _) => tally.error("Cancelled"),
                (Err(Error::QueueFull), _) => tally.error("QueueFull"),
                (other, _) => {
                    eprintln!("soak: unexpected {other:?}");
                    tally.error("unexpected");
                    tally.wrong.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Resident memory of this process and its children, in KiB.
fn resident_kib() -> u64 {
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|line| line.starts_with("VmRSS:"))
                    .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    };
    rss(std::process::id()) + children().into_iter().map(rss).sum::<u64>()
}

/// The live children of this process.
fn children() -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name (which may hold spaces): state, ppid, ...
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after
                .split_whitespace()
                .nth(1)
                .and_then(|ppid| ppid.parse().ok())
                == Some(me)
        })
        .collect()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |entries| entries.count())
}
