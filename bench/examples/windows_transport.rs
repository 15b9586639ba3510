//! W1 and W2 of `tinypool-process` on Windows (under Wine here), the driver's definitions
//! without its Unix-only systems and measurements: how the Windows transport (shared-memory
//! rings beside the pipes, or the pipes alone) was measured. See bench/README.md, "Rings on
//! Windows".
//!
//! ```text
//! windows_transport <w1|w2> [n] [repeats]
//! ```
//!
//! prints the driver's JSON line (`system` is `tinypool-process`, `label` is `$BENCH_LABEL`).
//! W1: one worker, n/10 warm-up round trips, then n sequential `add(i, 1)`, each checked, µs per
//! task. W2: two workers, n/10 warm-up, then n `add(i, 1)` submitted at once and all awaited,
//! their sum checked, tasks per second. `value` is the median of the repeats.

use std::time::Instant;

use tinypool::{Exports, Pool, Runtime, Task};

type Res<T> = Result<T, String>;

fn exports() -> Exports {
    Exports::new().export_default(|(a, b): (u64, u64)| a + b)
}

fn main() {
    tinypool::worker::serve_if_worker(exports());
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(error) = run(&args) {
        eprintln!("windows_transport: {error}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Res<()> {
    let workload = args.first().map(String::as_str).unwrap_or("");
    let number = |at: usize, default: u64| -> Res<u64> {
        args.get(at).map_or(Ok(default), |text| {
            text.parse().map_err(|_| format!("not a number: {text}"))
        })
    };
    let (workers, default_n) = match workload {
        "w1" => (1, 20_000),
        "w2" => (2, 200_000),
        _ => return Err("usage: windows_transport <w1|w2> [n] [repeats]".to_owned()),
    };
    let n = number(1, default_n)?;
    let repeats = number(2, 5)?;
    let pool = Pool::builder()
        .runtime(Runtime::ChildProcess)
        .min_threads(workers)
        .max_threads(workers)
        .build()
        .map_err(|e| e.to_string())?;
    let once = |n: u64| match workload {
        "w1" => round_trips(&pool, n),
        _ => all_at_once(&pool, n),
    };
    once((n / 10).max(1))?;
    let mut samples = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        once(n)?;
        let secs = start.elapsed().as_secs_f64();
        samples.push(match workload {
            "w1" => secs * 1e6 / n as f64,
            _ => n as f64 / secs,
        });
    }
    pool.destroy().wait().map_err(|e| e.to_string())?;
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let (metric, unit) = match workload {
        "w1" => ("latency", "us/task"),
        _ => ("throughput", "tasks/s"),
    };
    let samples: Vec<String> = samples.iter().map(|s| format!("{s:.3}")).collect();
    println!(
        "{{\"system\":\"tinypool-process\",\"workload\":\"{workload}\",\"metric\":\"{metric}\",\
         \"unit\":\"{unit}\",\"value\":{:.3},\"samples\":[{}],\"n\":{n},\"workers\":{workers},\
         \"repeats\":{repeats},\"label\":\"{}\"}}",
        sorted[sorted.len() / 2],
        samples.join(","),
        std::env::var("BENCH_LABEL").unwrap_or_default(),
    );
    Ok(())
}

/// `n` sequential round trips of `add(i, 1)`, each result checked.
fn round_trips(pool: &Pool, n: u64) -> Res<()> {
    for i in 0..n {
        let answer = pool
            .run::<u64, _>((i, 1u64))
            .wait()
            .map_err(|e| e.to_string())?;
        if answer != i + 1 {
            return Err(format!("add({i}, 1) returned {answer}, not {}", i + 1));
        }
    }
    Ok(())
}

/// `add(i, 1)` for every `i` in `0..n` at once, their sum checked.
fn all_at_once(pool: &Pool, n: u64) -> Res<()> {
    let tasks: Vec<Task<u64>> = (0..n).map(|i| pool.run((i, 1u64))).collect();
    let mut sum = 0u64;
    for task in tasks {
        sum = sum.wrapping_add(task.wait().map_err(|e| e.to_string())?);
    }
    let expected = n * (n + 1) / 2;
    if sum != expected {
        return Err(format!("the {n} sums add up to {sum}, not {expected}"));
    }
    Ok(())
}
