//! Child-process workers in a tokio program.
//!
//! A worker process is this program re-executed, and it must serve before anything else
//! runs: with `#[tokio::main]`, every child would first build a tokio runtime (threads and
//! all) only to serve synchronous exports, and an export that calls `block_on` would panic in
//! the children only. So `main` stays a plain function: it lets a worker serve, then builds
//! the runtime. In async code, tasks are awaited: `.wait()` would block the executor's thread.
//!
//! `cargo run --example tokio` prints the factorials of 1 to 5.

use tinypool::{Exports, Pool, Runtime};

fn exports() -> Exports {
    Exports::new().export_default(|n: u64| (1..=n).product::<u64>())
}

fn main() -> Result<(), tinypool::Error> {
    tinypool::worker::serve_if_worker(exports());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(factorials())
}

async fn factorials() -> Result<(), tinypool::Error> {
    let pool = Pool::builder()
        .runtime(Runtime::ChildProcess)
        .max_threads(2)
        .build()?;
    let tasks: Vec<_> = (1..=5u64).map(|n| pool.run::<u64, _>(n)).collect();
    for (n, task) in (1..).zip(tasks) {
        println!("{n}! = {}", task.await?);
    }
    pool.destroy().await
}
