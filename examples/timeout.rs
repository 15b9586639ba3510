//! Per-task timeouts: a stuck export (an endless loop, a hung call) no longer holds its worker
//! forever. The task fails with `Error::TimedOut` at its deadline, its worker is replaced (a
//! child process is killed, a thread leaves once its function sees `worker::aborted()`), and
//! the pool serves the next task. Shown on a child-process pool with `RunOptions::timeout`,
//! then on a thread pool with a pool-wide `Builder::task_timeout`.

use std::time::{Duration, Instant};

use tinypool::{worker, Error, Exports, Pool, RunOptions, Runtime};

fn exports() -> Exports {
    Exports::new()
        .export("export", |rows: u64| rows * 10)
        // Stuck for good: it never returns, and does not even look at `worker::aborted()`.
        // Only a process can be stopped from outside: the child is killed.
        .export("stuck", |()| -> u64 {
            loop {
                std::hint::spin_loop();
            }
        })
        // Stuck, but polite: it stops when told to, as a thread must be told.
        .export("hung", |()| -> u64 {
            while !worker::aborted() {
                std::thread::sleep(Duration::from_millis(1));
            }
            0
        })
}

fn main() -> Result<(), Error> {
    // In a worker process this serves tasks and exits; here it returns at once.
    worker::serve_if_worker(exports());

    // Child processes, a timeout on one task.
    let pool = Pool::builder()
        .runtime(Runtime::ChildProcess)
        .max_threads(1)
        .build()?;
    let started = Instant::now();
    let stuck = pool.run_with::<u64, _>(
        (),
        RunOptions::new()
            .name("stuck")
            .timeout(Duration::from_millis(500)),
    );
    match stuck.wait() {
        Err(Error::TimedOut { after }) => println!(
            "child process: the stuck export timed out after {after:?} ({:?} in all)",
            started.elapsed()
        ),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let rows = pool.run_with::<u64, _>(7u64, RunOptions::new().name("export"));
    println!("child process: still serving: {}", rows.wait()?);
    pool.destroy().wait()?;

    // Threads, one timeout for every task of the pool.
    let pool = Pool::builder()
        .exports(exports())
        .max_threads(2)
        .task_timeout(Duration::from_millis(300))
        .build()?;
    let hung = pool.run_with::<u64, _>((), RunOptions::new().name("hung"));
    let quick = pool.run_with::<u64, _>(4u64, RunOptions::new().name("export"));
    println!("threads: the quick one returned {}", quick.wait()?);
    match hung.wait() {
        Err(error @ Error::TimedOut { .. }) => println!("threads: {error}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let rows = pool.run_with::<u64, _>(9u64, RunOptions::new().name("export"));
    println!("threads: still serving: {}", rows.wait()?);
    pool.destroy().wait()
}
