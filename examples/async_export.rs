//! An I/O-bound async export: each task waits 100 ms (a stand-in for a request to another
//! service) without holding its worker, so one worker with `concurrent_tasks_per_worker(50)`
//! runs 50 of them at once, as a Node worker with `concurrentTasksPerWorker: 50` would.
//!
//! The wait here is a thread's sleep ending a channel's `recv_async`, which needs no async
//! runtime. With the `tokio` feature, exports can use `tokio::time::sleep` and `tokio::net`
//! directly (each worker runs its async tasks on a tokio runtime of its own).
//!
//! `cargo run --example async_export` prints how long 200 such tasks took on 2 workers, once
//! one at a time per worker and once 50 at a time.

use std::time::{Duration, Instant};

use tinypool::{Exports, Pool, Task};

/// Waits `ms` milliseconds without blocking the worker, then answers.
async fn fetch(ms: u64) -> String {
    let (done, port) = tinypool::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        let _ = done.send(());
    });
    let _ = port.recv_async().await;
    format!("waited {ms} ms on worker {:?}", tinypool::worker::id())
}

fn run(concurrency: usize) -> Result<Duration, tinypool::Error> {
    let pool = Pool::builder()
        .exports(Exports::new().export_default_async(fetch))
        .min_threads(2)
        .max_threads(2)
        .concurrent_tasks_per_worker(concurrency)
        .build()?;
    let started = Instant::now();
    let tasks: Vec<Task<String>> = (0..200).map(|_| pool.run(100u64)).collect();
    let mut last = String::new();
    for task in tasks {
        last = task.wait()?;
    }
    let took = started.elapsed();
    println!("concurrency {concurrency:>2}: 200 tasks of 100 ms in {took:.2?} ({last})");
    pool.destroy().wait()?;
    Ok(took)
}

fn main() -> Result<(), tinypool::Error> {
    let one = run(1)?;
    let fifty = run(50)?;
    println!("{:.1}x faster", one.as_secs_f64() / fifty.as_secs_f64());
    Ok(())
}
