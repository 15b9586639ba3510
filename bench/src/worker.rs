//! What a benchmark worker runs: the functions tinypool's workers export, and the process
//! settings they share with the driver. Compiled into the driver (whose re-executed copies are
//! the `tinypool-process` workers) and into `tinypool-bench-worker`, the small worker
//! executable of `tinypool-process-exe`.

mod timer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tinypool::Exports;

/// What `add` adds to every sum: 1 when `TINYPOOL_BENCH_FAULT` is set, so that the harness's
/// result checks can be seen to fail (the workers of both process systems inherit it).
static FAULT: AtomicU64 = AtomicU64::new(0);

/// Reads `TINYPOOL_BENCH_FAULT`; call before anything else in `main`.
pub fn init_fault() {
    let fault = std::env::var_os("TINYPOOL_BENCH_FAULT").is_some_and(|v| !v.is_empty());
    FAULT.store(u64::from(fault), Ordering::Relaxed);
}

/// Set by the W5 modes, for themselves and the worker processes they start: see the driver's
/// `steady_heap`.
pub const HEAP_ENV: &str = "TINYPOOL_BENCH_STEADY_HEAP";

/// Makes the heap steady if this process is a worker of a W5 run; call first in `main`.
pub fn init_heap() {
    if std::env::var_os(HEAP_ENV).is_some() {
        tune_heap();
    }
}

/// Fixes glibc's mmap threshold at 32 MiB and turns trimming off.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_heap() {
    use std::os::raw::c_int;
    extern "C" {
        /// glibc's `mallopt(3)`.
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;
    // SAFETY: mallopt takes plain integers, may be called at any time, and these parameters
    // and values are valid.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, c_int::MAX);
    }
}

/// Elsewhere the allocator is left as it is.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_heap() {}

/// The task of W1–W4, W6 and W7: `add(a, b)` (wrong by one under `TINYPOOL_BENCH_FAULT`).
#[inline]
pub fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
        .wrapping_add(FAULT.load(Ordering::Relaxed))
}

/// The task of W5: the length of the buffer it was given.
#[inline]
pub fn payload(buf: Vec<u8>) -> usize {
    buf.len()
}

/// Set (to `1`) in the environment of the child processes of the async workloads (`w8`,
/// `w1-async`, `w2-async`): they then serve [`async_exports`] instead of [`sync_exports`].
pub const ASYNC_ENV: &str = "TINYPOOL_BENCH_ASYNC";

/// What this process's workers serve: [`async_exports`] in a child process of an async
/// workload ([`ASYNC_ENV`]), [`sync_exports`] otherwise.
pub fn exports() -> Exports {
    if std::env::var_os(ASYNC_ENV).is_some() {
        async_exports()
    } else {
        sync_exports()
    }
}

/// The exports of the async workloads: `add` again, but async (a future ready at its first
/// poll), as the default export and by name, and `sleep(ms)`, an async export that waits `ms`
/// milliseconds on a timer thread ([`timer::sleep`]) and returns `ms` (plus one under
/// `TINYPOOL_BENCH_FAULT`). They are a set of their own because a pool whose exports include
/// an async one serves its tasks differently (a child reads its channel on a thread of its own),
/// and W1–W7 measure the sync path.
pub fn async_exports() -> Exports {
    let add = |(a, b): (u64, u64)| async move { add(a, b) };
    Exports::new()
        .export_default_async(add)
        .export_async("add", add)
        .export_async("sleep", |ms: u64| async move {
            timer::sleep(Duration::from_millis(ms)).await;
            ms.wrapping_add(FAULT.load(Ordering::Relaxed))
        })
}

/// The functions tinypool's workers export for W1–W7; a child-process worker serves these. `add`
/// is also the default export, so that W1–W4 take the pool's default path, as a Tinypool pool
/// with a single-function `filename` does.
pub fn sync_exports() -> Exports {
    let add = |(a, b): (u64, u64)| add(a, b);
    Exports::new()
        .export_default(add)
        .export("add", add)
        .export("payload", payload)
        // For the soak: a task that fails.
        .export("panic", |message: String| -> u64 { panic!("{message}") })
}
