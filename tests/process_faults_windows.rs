//! Faults of child-process workers on Windows, the twin of `process_faults.rs` (which speaks
//! of signals, `fork` and `prctl`): a crash (an access violation), `exit`, `abort()`, a double
//! panic, a worker terminated from outside, alive or idle, fails only its own task with what
//! ended it; `resource_limits` fail a task with `ResourceLimit`; and a parent program
//! terminated from outside takes its workers with it (their Job Objects).
//!
//! Built for `x86_64-pc-windows-gnu` and run under Wine in CI (`.ci/wine.sh`); elsewhere its
//! `main` runs nothing. A `harness = false` binary: the pools here re-execute it as their
//! workers, and one test re-executes it as a parent program, so `main` first lets a worker
//! serve.

#[cfg(windows)]
mod common;
#[cfg(windows)]
#[path = "process_faults_windows/faults.rs"]
mod faults;

fn main() {
    #[cfg(windows)]
    faults::main();
}
