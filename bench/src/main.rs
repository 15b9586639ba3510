//! `tinypool-bench`: the benchmark driver of tinypool.
//!
//! ```text
//! tinypool-bench <system> <workload> [n] [repeats]      one run: prints one JSON line
//! tinypool-bench measure <system> <w6|w6pss|w7|w7sched> [n] [repeats] [-- command...]
//! tinypool-bench hyperfine <system> <export.json>       W3: hyperfine's export as a JSON line
//! tinypool-bench time <system> <runs> <warmup> -- command...   W3 without hyperfine
//! tinypool-bench table <results.jsonl>                  the markdown table of many runs
//! tinypool-bench soak [--minutes N] [--runtime threads|process]   a long mixed load
//! ```
//!
//! See bench/README.md for the systems, the workloads and the JSON line.

mod measure;
mod report;
mod soak;
mod systems;
mod worker;

use std::io::{self, Write};
use std::process;
use std::time::Instant;

use report::Line;
use systems::{Res, System};

/// How to call the driver.
const USAGE: &str = "\
usage: tinypool-bench <system> <workload> [n] [repeats]
       tinypool-bench measure <system> <w6|w6pss|w7|w7sched> [n] [repeats] [-- command...]
       tinypool-bench hyperfine <system> <hyperfine-export.json>
       tinypool-bench time <system> <runs> <warmup> -- command...
       tinypool-bench table <results.jsonl>
       tinypool-bench soak [--minutes N | --seconds N] [--runtime threads|process]
systems:   tinypool-threads tinypool-process tinypool-process-exe rayon threadpool tokio procspawn floor-mpsc floor-unix
workloads: w1 w2 w3 w4 w5copy w5transfer w6 w7 (w3, w6 and w7 are the processes that
           hyperfine and `measure` look at); tinypool's only: w1-async w2-async w8";

/// Set by `soak` for itself and its workers: panics print nothing.
const QUIET_PANICS: &str = "TINYPOOL_BENCH_QUIET_PANICS";

/// The W5 buffer: 1 MiB.
const PAYLOAD_BYTES: usize = 1 << 20;

/// Makes the heap steady for W5, here and in the worker processes started from now on.
///
/// By default glibc serves a 1 MiB buffer with `mmap` (or, after its threshold adapts, from
/// a heap it trims back to the kernel), so that dropping one in a worker thread unmaps its
/// pages, with a TLB shoot-down to the other cores, and which of these happens depends on the
/// history of the process. That cost, tens of µs, dominates a 1 MiB hand-over and swings
/// tenfold between runs. With a fixed 32 MiB mmap threshold and no trimming, buffers come from
/// and go back to the heap, and W5 times the pool's hand-over (and, for w5copy, the copy).
pub fn steady_heap() {
    // Only the driver's single thread exists yet, and the variable is only read at start-up.
    std::env::set_var(worker::HEAP_ENV, "1");
    worker::tune_heap();
}

fn main() {
    // The soak panics on purpose thousands of times: keep its output (and its worker
    // processes', which inherit the variable) to the reports.
    if std::env::var_os(QUIET_PANICS).is_some() {
        std::panic::set_hook(Box::new(|_| {}));
    }
    worker::init_fault();
    worker::init_heap();
    // A tinypool-process worker is this binary re-executed: it serves here and exits.
    tinypool::worker::serve_if_worker(worker::exports());
    // A procspawn worker too.
    procspawn::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(systems::FLOOR_CHILD) {
        systems::floor_child();
    }
    if let Err(message) = run(&args) {
        eprintln!("tinypool-bench: {message}");
        process::exit(1);
    }
}

/// Exits with code 2 after a usage error.
pub fn usage(message: &str) -> ! {
    eprintln!("tinypool-bench: {message}\n{USAGE}");
    process::exit(2)
}

/// Parses the optional positive integer at `args[index]`.
pub fn arg_or(args: &[String], index: usize, default: u64, what: &str) -> u64 {
    match args.get(index) {
        None => default,
        Some(text) => match text.parse::<u64>() {
            Ok(value) if value > 0 => value,
            _ => usage(&format!("{what} must be a positive integer, not {text:?}")),
        },
    }
}

/// The label of every line this process prints: `BENCH_LABEL` (run.sh sets `pinned` for the
/// `taskset -c 0` runs, `c32` for the W2 runs with `BENCH_CONCURRENCY=32`), empty by default.
pub fn label() -> String {
    std::env::var("BENCH_LABEL").unwrap_or_default()
}

/// Dispatches on the first argument: a mode, or a system and its workload.
fn run(args: &[String]) -> Res<()> {
    let Some(first) = args.first() else {
        usage("no system given")
    };
    match first.as_str() {
        "measure" => return measure::measure(&args[1..]),
        "hyperfine" => return report::hyperfine(&args[1..]),
        "time" => return report::time(&args[1..]),
        "table" => return report::table(&args[1..]),
        "soak" => {
            if std::env::var_os(QUIET_PANICS).is_none() {
                // Before any thread exists, and inherited by the worker processes.
                std::env::set_var(QUIET_PANICS, "1");
                std::panic::set_hook(Box::new(|_| {}));
            }
            return soak::soak(&args[1..]);
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return Ok(());
        }
        _ => {}
    }
    let system = first.as_str();
    if !systems::SYSTEMS.contains(&system) {
        usage(&format!("unknown system {system:?}"));
    }
    let Some(workload) = args.get(1).map(String::as_str) else {
        usage("no workload given")
    };
    if args.len() > 4 {
        usage("too many arguments");
    }
    match workload {
        "w1-async" | "w2-async" | "w8" if !systems::is_async(system) => usage(&format!(
            "{workload} needs async exports, and {system} has none: tinypool's systems only"
        )),
        "w1-async" => latency(system, workload, args),
        "w2-async" => throughput(system, workload, args),
        "w8" => sleeps(system, args),
        "w1" => latency(system, workload, args),
        "w2" => throughput(system, workload, args),
        "w3" => cold_start(system),
        "w4" => isolation(system, args),
        "w5copy" | "w5transfer" => payload(system, workload, args),
        "w6" | "w7" => idle(system, workload, args),
        _ => usage(&format!("unknown workload {workload:?}")),
    }
}

/// The median of `samples` (the mean of the middle two for an even count).
pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => sorted[mid],
        _ => (sorted[mid - 1] + sorted[mid]) / 2.0,
    }
}

/// Builds a pool, runs `body` on it, and closes it even when `body` failed.
fn with_pool<T>(
    system: &str,
    workers: usize,
    isolate: bool,
    body: impl FnOnce(&mut dyn System) -> Res<T>,
) -> Res<T> {
    with_built(systems::build(system, workers, isolate)?, body)
}

/// The same with the pool `asynchronous` workloads use ([`systems::build_async`]) if set.
fn with_pool_of<T>(
    system: &str,
    workers: usize,
    asynchronous: bool,
    body: impl FnOnce(&mut dyn System) -> Res<T>,
) -> Res<T> {
    if asynchronous {
        with_built(systems::build_async(system, workers)?, body)
    } else {
        with_pool(system, workers, false, body)
    }
}

/// Runs `body` on `pool`, and closes it even when `body` failed.
fn with_built<T>(
    mut pool: Box<dyn System>,
    body: impl FnOnce(&mut dyn System) -> Res<T>,
) -> Res<T> {
    let result = body(&mut *pool);
    let closed = pool.close();
    let value = result?;
    closed?;
    Ok(value)
}

/// `n` sequential round trips of `add(i, 1)`, each result checked.
fn round_trips(pool: &mut dyn System, n: u64) -> Res<()> {
    for i in 0..n {
        let answer = pool.add(i, 1)?;
        if answer != i + 1 {
            return Err(format!("add({i}, 1) returned {answer}, not {}", i + 1));
        }
    }
    Ok(())
}

/// `add(i, 1)` for every `i` in `0..n` at once, their sum checked.
fn all_at_once(pool: &mut dyn System, n: u64) -> Res<()> {
    let sum = pool.add_all(n)?;
    let expected = n * (n + 1) / 2;
    if sum != expected {
        return Err(format!("the {n} sums add up to {sum}, not {expected}"));
    }
    Ok(())
}

/// Runs `body` `repeats` times, each sample `value(seconds)`.
fn sample(
    repeats: u64,
    mut body: impl FnMut() -> Res<()>,
    value: impl Fn(f64) -> f64,
) -> Res<Vec<f64>> {
    let mut samples = Vec::with_capacity(repeats as usize);
    for _ in 0..repeats {
        let start = Instant::now();
        body()?;
        samples.push(value(start.elapsed().as_secs_f64()));
    }
    Ok(samples)
}

/// W1: µs per sequential round trip on one worker; `w1-async`: the same of an async `add`
/// that is ready at once.
fn latency(system: &str, workload: &str, args: &[String]) -> Res<()> {
    let n = arg_or(args, 2, 20_000, "n");
    let repeats = arg_or(args, 3, 5, "repeats");
    let samples = with_pool_of(system, 1, workload == "w1-async", |pool| {
        round_trips(pool, (n / 10).max(1))?;
        sample(
            repeats,
            || round_trips(pool, n),
            |secs| secs * 1e6 / n as f64,
        )
    })?;
    Line {
        system: system.to_owned(),
        workload: workload.to_owned(),
        metric: "latency",
        unit: "us/task",
        samples,
        n,
        workers: 1,
        repeats,
        label: label(),
    }
    .print();
    Ok(())
}

/// W2: tasks per second, all submitted at once to two workers; `w2-async`: the same of an
/// async `add` that is ready at once.
fn throughput(system: &str, workload: &str, args: &[String]) -> Res<()> {
    let n = arg_or(args, 2, 200_000, "n");
    let repeats = arg_or(args, 3, 5, "repeats");
    let samples = with_pool_of(system, 2, workload == "w2-async", |pool| {
        all_at_once(pool, (n / 10).max(1))?;
        sample(repeats, || all_at_once(pool, n), |secs| n as f64 / secs)
    })?;
    Line {
        system: system.to_owned(),
        workload: workload.to_owned(),
        metric: "throughput",
        unit: "tasks/s",
        samples,
        n,
        workers: 2,
        repeats,
        label: label(),
    }
    .print();
    Ok(())
}

/// W8's sleep, in ms.
const SLEEP_MS: u64 = 10;

/// W8: ms until `n` async tasks of a 10 ms sleep (default 1,000), submitted at once to two
/// workers that each keep up to `concurrent_tasks_per_worker` of them in flight, have all
/// finished. The concurrency is `BENCH_CONCURRENCY`, 100 unless set: ideally 1,000 / (2 × 100)
/// rounds of 10 ms, 50 ms. A warm-up of n/10 sleeps comes first.
fn sleeps(system: &str, args: &[String]) -> Res<()> {
    let n = arg_or(args, 2, 1_000, "n");
    let repeats = arg_or(args, 3, 5, "repeats");
    if std::env::var_os("BENCH_CONCURRENCY").is_none() {
        // Only the driver's thread exists yet, and the variable is read when the pool is built.
        std::env::set_var("BENCH_CONCURRENCY", "100");
    }
    let samples = with_pool_of(system, 2, true, |pool| {
        pool.sleep_all((n / 10).max(1), SLEEP_MS)?;
        sample(repeats, || pool.sleep_all(n, SLEEP_MS), |secs| secs * 1e3)
    })?;
    Line {
        system: system.to_owned(),
        workload: "w8".to_owned(),
        metric: "async_sleeps",
        unit: "ms",
        samples,
        n,
        workers: 2,
        repeats,
        label: label(),
    }
    .print();
    Ok(())
}

/// W3: the whole process that hyperfine times: a pool of one worker, `add(1, 2)`, print 3,
/// destroy, exit.
fn cold_start(system: &str) -> Res<()> {
    with_pool(system, 1, false, |pool| {
        let answer = pool.add(1, 2)?;
        if answer != 3 {
            return Err(format!("add(1, 2) returned {answer}"));
        }
        println!("{answer}");
        Ok(())
    })
}

/// W4: tasks per second on two workers when every task gets a fresh worker.
fn isolation(system: &str, args: &[String]) -> Res<()> {
    let n = arg_or(args, 2, 200, "n");
    let repeats = arg_or(args, 3, 5, "repeats");
    let samples = with_pool(system, 2, true, |pool| {
        all_at_once(pool, 2)?;
        sample(repeats, || all_at_once(pool, n), |secs| n as f64 / secs)
    })?;
    Line {
        system: system.to_owned(),
        workload: "w4".to_owned(),
        metric: "isolation",
        unit: "tasks/s",
        samples,
        n,
        workers: 2,
        repeats,
        label: label(),
    }
    .print();
    Ok(())
}

/// The W5 buffer: byte k is `k & 0xff`.
fn payload_buffer() -> Vec<u8> {
    (0..PAYLOAD_BYTES).map(|k| (k & 0xff) as u8).collect()
}

/// Sends `buf` and checks the length that comes back.
fn payload_trip(pool: &mut dyn System, buf: Vec<u8>) -> Res<()> {
    let length = pool.payload(buf)?;
    if length != PAYLOAD_BYTES {
        return Err(format!("payload returned {length}, not {PAYLOAD_BYTES}"));
    }
    Ok(())
}

/// W5: MiB per second of 1 MiB buffers sent to one worker, which answers their length.
///
/// `w5copy` pays for a copy of every buffer. The process systems copy by nature (serialized,
/// written to a socket, read into a new buffer). In the threads systems an argument moves
/// (nothing is serialized), so w5copy *clones the buffer per call*, inside the timed section,
/// to model the copy that a structured clone makes in Node. `w5transfer` (threads systems
/// only) moves each buffer, zero-copy: the `n` buffers are cloned before the timed section,
/// and only their hand-over (and their drop in the worker) is timed. Both modes first make the
/// heap steady ([`steady_heap`]), in this process and in the workers it starts.
fn payload(system: &str, workload: &str, args: &[String]) -> Res<()> {
    let n = arg_or(args, 2, 200, "n");
    let repeats = arg_or(args, 3, 5, "repeats");
    let transfer = workload == "w5transfer";
    if transfer && !systems::is_threads(system) {
        usage(&format!(
            "w5transfer is for threads systems: {system} always copies (run w5copy)"
        ));
    }
    steady_heap();
    let buf = payload_buffer();
    let samples = with_pool(system, 1, false, |pool| {
        for _ in 0..(n / 10).max(1) {
            payload_trip(pool, buf.clone())?;
        }
        let mut samples = Vec::with_capacity(repeats as usize);
        for _ in 0..repeats {
            let moved: Vec<Vec<u8>> = if transfer {
                (0..n).map(|_| buf.clone()).collect()
            } else {
                Vec::new()
            };
            let start = Instant::now();
            if transfer {
                for one in moved {
                    payload_trip(pool, one)?;
                }
            } else {
                for _ in 0..n {
                    payload_trip(pool, buf.clone())?;
                }
            }
            let secs = start.elapsed().as_secs_f64();
            samples.push(n as f64 * (PAYLOAD_BYTES as f64 / (1 << 20) as f64) / secs);
        }
        Ok(samples)
    })?;
    Line {
        system: system.to_owned(),
        workload: workload.to_owned(),
        metric: "payload",
        unit: "MiB/s",
        samples,
        n,
        workers: 1,
        repeats,
        label: label(),
    }
    .print();
    Ok(())
}

/// W6/W7: the idle process that `measure` looks at: a pool of two workers runs `n` tasks
/// (W6: 100, W7: 10), prints READY, and idles until stdin ends; then it destroys the pool.
fn idle(system: &str, workload: &str, args: &[String]) -> Res<()> {
    let n = arg_or(args, 2, if workload == "w6" { 100 } else { 10 }, "n");
    if args.len() > 3 {
        usage(&format!(
            "{workload} takes no repeats: `measure` repeats it"
        ));
    }
    with_pool(system, 2, false, |pool| {
        all_at_once(pool, n)?;
        let mut out = io::stdout().lock();
        writeln!(out, "READY")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
        drop(out);
        io::copy(&mut io::stdin().lock(), &mut io::sink()).map_err(|e| e.to_string())?;
        Ok(())
    })
}
