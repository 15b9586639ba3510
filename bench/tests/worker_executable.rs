//! A worker binary of the package as a pool's `filename`, from a plain `#[test]`: Cargo tells
//! a package's integration tests where its binaries are, in `CARGO_BIN_EXE_<name>`. This test
//! binary is never re-executed, so it needs neither `tinypool::test_workers!` nor
//! `serve_if_worker`; the worker binary's `main` serves first.

use tinypool::{Pool, Runtime};

#[test]
fn a_worker_binary_of_the_package_serves_a_plain_test() {
    let pool = Pool::builder()
        .runtime(Runtime::ChildProcess)
        .filename(env!("CARGO_BIN_EXE_tinypool-bench-worker"))
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();
    assert_eq!(pool.run::<u64, _>((2u64, 3u64)).wait(), Ok(5));
    let pid = pool.workers().first().and_then(|worker| worker.pid);
    assert!(pid.is_some_and(|pid| pid != std::process::id()), "{pid:?}");
    pool.destroy().wait().unwrap();
}

#[test]
fn the_worker_binary_serves_the_async_exports_when_told() {
    let pool = Pool::builder()
        .runtime(Runtime::ChildProcess)
        .filename(env!("CARGO_BIN_EXE_tinypool-bench-worker"))
        .env("TINYPOOL_BENCH_ASYNC", "1")
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(10)
        .build()
        .unwrap();
    let sleeps: Vec<_> = (0..10)
        .map(|_| pool.run_with::<u64, _>(1u64, tinypool::RunOptions::new().name("sleep")))
        .collect();
    for sleep in sleeps {
        assert_eq!(sleep.wait(), Ok(1));
    }
    assert_eq!(pool.run::<u64, _>((2u64, 3u64)).wait(), Ok(5));
    pool.destroy().wait().unwrap();
}
