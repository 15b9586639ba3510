//! The JSON line of a run, W3's timings (from hyperfine, or timed here without it) and the
//! markdown table of a whole `run.sh`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

use crate::systems::Res;
use crate::{arg_or, label, median, usage};

/// One run's result: printed as exactly one JSON line, its fields in this order.
pub struct Line {
    /// What ran: a system of this driver, or `node-<system>` for the Node side.
    pub system: String,
    /// `w1` … `w8` (with `w5copy`/`w5transfer`, `w6pss`, `w7sched`, `w1-async`, `w2-async`).
    pub workload: String,
    /// What was measured: `latency`, `throughput`, `cold_start`, …
    pub metric: &'static str,
    /// The unit of `value` and `samples`.
    pub unit: &'static str,
    /// One sample per repeat; `value` is their median.
    pub samples: Vec<f64>,
    /// Tasks per repeat (W7: the seconds watched).
    pub n: u64,
    /// Workers in the pool.
    pub workers: u64,
    /// How many samples.
    pub repeats: u64,
    /// `BENCH_LABEL`: `pinned` for the `taskset -c 0` runs, else empty.
    pub label: String,
}

impl Line {
    /// The line, as JSON.
    pub fn to_json(&self) -> String {
        let string = |s: &str| Value::from(s).to_string();
        let samples: Vec<String> = self.samples.iter().map(|&x| number(x)).collect();
        format!(
            "{{\"system\":{},\"workload\":{},\"metric\":{},\"unit\":{},\"value\":{},\
             \"samples\":[{}],\"n\":{},\"workers\":{},\"repeats\":{},\"label\":{}}}",
            string(&self.system),
            string(&self.workload),
            string(self.metric),
            string(self.unit),
            number(median(&self.samples)),
            samples.join(","),
            self.n,
            self.workers,
            self.repeats,
            string(&self.label),
        )
    }

    /// Prints the line on stdout.
    pub fn print(&self) {
        println!("{}", self.to_json());
    }
}

/// `x` rounded to 6 significant digits, as a JSON number (`null` if not finite).
fn number(x: f64) -> String {
    if !x.is_finite() {
        return "null".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let scale = 10f64.powi(5 - x.abs().log10().floor() as i32);
    Value::from((x * scale).round() / scale).to_string()
}

/// `hyperfine <system> <export.json>`: the W3 line from `hyperfine --export-json`.
pub fn hyperfine(args: &[String]) -> Res<()> {
    let [system, path] = args else {
        usage("hyperfine takes <system> <export.json>")
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let export: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let result = &export["results"][0];
    let times = result["times"]
        .as_array()
        .ok_or_else(|| format!("{path}: no results[0].times"))?;
    let samples: Vec<f64> = times
        .iter()
        .map(|t| t.as_f64().map(|secs| secs * 1e3))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("{path}: a time is not a number"))?;
    if let Some(codes) = result["exit_codes"].as_array() {
        if codes.iter().any(|code| code.as_i64() != Some(0)) {
            return Err(format!("{path}: a run exited with an error: {codes:?}"));
        }
    }
    if samples.is_empty() {
        return Err(format!("{path}: no runs"));
    }
    cold_start_line(system, samples).print();
    Ok(())
}

/// The W3 line of `samples` (ms per whole run).
fn cold_start_line(system: &str, samples: Vec<f64>) -> Line {
    Line {
        system: system.to_owned(),
        workload: "w3".into(),
        metric: "cold_start",
        unit: "ms",
        repeats: samples.len() as u64,
        samples,
        n: 1,
        workers: 1,
        label: label(),
    }
}

/// `time <system> <runs> <warmup> -- command...`: times whole runs of `command` (stdout
/// discarded) as hyperfine would, for a machine without hyperfine.
pub fn time(args: &[String]) -> Res<()> {
    let Some(split) = args.iter().position(|a| a == "--") else {
        usage("time needs `-- command...`")
    };
    let (head, command) = (&args[..split], &args[split + 1..]);
    if head.len() != 3 || command.is_empty() {
        usage("time takes <system> <runs> <warmup> -- command...");
    }
    let runs = arg_or(head, 1, 20, "runs");
    let warmup = head[2]
        .parse::<u64>()
        .unwrap_or_else(|_| usage("warmup must be an integer"));
    let mut samples = Vec::with_capacity(runs as usize);
    for run in 0..warmup + runs {
        let start = Instant::now();
        let status = Command::new(&command[0])
            .args(&command[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("{}: {e}", command[0]))?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        if !status.success() {
            return Err(format!("{command:?} failed: {status}"));
        }
        if run >= warmup {
            samples.push(ms);
        }
    }
    cold_start_line(&head[0], samples).print();
    Ok(())
}

/// The workloads in table order, with their names in the table.
const WORKLOADS: &[(&str, &str)] = &[
    ("w1", "W1 latency"),
    ("w1-async", "W1 latency, async export"),
    ("w2", "W2 throughput"),
    ("w2-async", "W2 throughput, async export"),
    ("w3", "W3 cold start"),
    ("w4", "W4 isolation"),
    ("w5copy", "W5 payload, copied"),
    ("w5transfer", "W5 payload, moved"),
    ("w6", "W6 idle RSS"),
    ("w6pss", "W6 idle PSS"),
    ("w7", "W7 idle CPU in 5 s"),
    ("w7sched", "W7 idle CPU in 5 s (schedstat)"),
    ("w8", "W8 1,000 async 10 ms sleeps (ideal 50)"),
];

/// Whether a system runs its workers in child processes: its row is compared with
/// tinypool-process, every other row with tinypool-threads.
fn is_process(system: &str) -> bool {
    matches!(
        system,
        "tinypool-process"
            | "tinypool-process-exe"
            | "procspawn"
            | "floor-unix"
            | "node-tinypool-process"
    )
}

/// tinypool's target for a workload (from the issue), and whether `value` meets it.
fn target(
    system: &str,
    workload: &str,
    label: &str,
    value: f64,
) -> Option<(&'static str, Option<bool>)> {
    let threads = match system {
        "tinypool-threads" => true,
        "tinypool-process" | "tinypool-process-exe" => false,
        _ => return None,
    };
    let at_most = |limit: f64, text: &'static str| Some((text, Some(value <= limit)));
    let at_least = |limit: f64, text: &'static str| Some((text, Some(value >= limit)));
    match (workload, threads) {
        ("w1", true) if label == "pinned" => at_most(6.0, "≤ 6"),
        ("w1", true) => at_most(2.0, "≤ 2"),
        ("w1", false) => at_most(10.0, "≤ 10"),
        ("w2", true) => at_least(5e6, "≥ 5,000,000"),
        ("w2", false) => at_least(5e5, "≥ 500,000"),
        ("w3", true) => at_most(1.5, "≤ 1.5"),
        ("w3", false) => at_most(3.0, "≤ 3"),
        ("w4", true) => at_least(15_000.0, "≥ 15,000"),
        ("w4", false) => at_least(1_000.0, "≥ 1,000"),
        ("w5transfer", true) => Some(("moved (zero-copy)", None)),
        ("w5copy", false) => at_least(2_000.0, "≥ 2,000"),
        ("w6", true) => at_most(3.5, "≤ 3.5"),
        ("w6", false) => at_most(8.0, "≤ 8"),
        ("w7" | "w7sched", _) => at_most(10.0, "≤ 10"),
        _ => None,
    }
}

/// A value for the table: thousands separators from 1,000 up, 3 significant digits below.
fn human(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    if x.abs() >= 1000.0 {
        let digits = format!("{:.0}", x.abs());
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        return if x < 0.0 {
            format!("-{grouped}")
        } else {
            grouped
        };
    }
    let decimals = match x.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    format!("{x:.decimals$}")
}

/// `table <results.jsonl>`: the markdown table of every JSON line in the file.
pub fn table(args: &[String]) -> Res<()> {
    let [path] = args else {
        usage("table takes <results.jsonl>")
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut rows: Vec<Value> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Value =
            serde_json::from_str(line).map_err(|e| format!("{path}:{}: {e}", number + 1))?;
        rows.push(row);
    }
    let field = |row: &Value, key: &str| row[key].as_str().unwrap_or("").to_owned();
    // The reference values: (workload, label, tinypool system) → value.
    let mut reference: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for row in &rows {
        let system = field(row, "system");
        if system == "tinypool-threads" || system == "tinypool-process" {
            if let Some(value) = row["value"].as_f64() {
                reference.insert((field(row, "workload"), field(row, "label"), system), value);
            }
        }
    }
    let mut labels: Vec<String> = Vec::new();
    for row in &rows {
        let label = field(row, "label");
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    println!("| Workload | System | Median | Unit | ÷ Tinypool | Tinypool target |");
    println!("|---|---|---:|---|---:|---|");
    let known: Vec<&str> = WORKLOADS.iter().map(|(w, _)| *w).collect();
    let mut order: Vec<(String, String)> = WORKLOADS
        .iter()
        .map(|(w, name)| (w.to_string(), name.to_string()))
        .collect();
    for row in &rows {
        let workload = field(row, "workload");
        if !known.contains(&workload.as_str()) && !order.iter().any(|(w, _)| *w == workload) {
            order.push((workload.clone(), workload));
        }
    }
    for (workload, name) in &order {
        for label in &labels {
            for row in rows
                .iter()
                .filter(|r| field(r, "workload") == *workload && field(r, "label") == *label)
            {
                let system = field(row, "system");
                let value = row["value"].as_f64().unwrap_or(f64::NAN);
                let reference_system = if is_process(&system) {
                    "tinypool-process"
                } else {
                    "tinypool-threads"
                };
                let ratio = reference
                    .get(&(workload.clone(), label.clone(), reference_system.to_owned()))
                    .filter(|r| **r != 0.0 && value.is_finite())
                    .map(|r| format!("{:.2}", value / r))
                    .unwrap_or_else(|| "–".into());
                let target = match target(&system, workload, label, value) {
                    Some((text, Some(true))) => format!("{text} ✓"),
                    Some((text, Some(false))) => format!("{text} ✗"),
                    Some((text, None)) => text.to_owned(),
                    None => String::new(),
                };
                let shown = if label.is_empty() {
                    name.clone()
                } else {
                    format!("{name} ({label})")
                };
                println!(
                    "| {shown} | {system} | {} | {} | {ratio} | {target} |",
                    human(value),
                    field(row, "unit"),
                );
            }
        }
    }
    println!();
    println!(
        "Median of the repeats. ÷ Tinypool: this row's value divided by Rust tinypool's on the \
         same workload and runtime (child-process rows by tinypool-process, the others by \
         tinypool-threads). Lower is better for µs, ms and MiB; higher for tasks/s and MiB/s."
    );
    Ok(())
}
