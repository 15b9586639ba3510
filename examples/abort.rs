//! Cancelling a task: one aborted while it waits in the queue, one while it runs.

use std::time::Duration;

use tinypool::{worker, AbortController, Exports, Pool, RunOptions};

fn main() -> Result<(), tinypool::Error> {
    let pool = Pool::builder()
        .exports(Exports::new().export_default(|steps: u32| {
            // A long job that checks for an abort between steps, as a thread cannot be killed.
            for step in 0..steps {
                if worker::aborted() {
                    return step;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            steps
        }))
        .max_threads(1)
        .build()?;

    let running = AbortController::new();
    let queued = AbortController::new();
    let first = pool.run_with::<u32, _>(1_000u32, RunOptions::new().signal(running.signal()));
    let second = pool.run_with::<u32, _>(1_000u32, RunOptions::new().signal(queued.signal()));

    queued.abort_with("not needed any more");
    println!("queued task: {}", second.wait().unwrap_err());

    running.abort();
    println!("running task: {}", first.wait().unwrap_err());

    // The pool replaced the aborted worker and keeps serving.
    println!("next task: {}", pool.run::<u32, _>(3u32).wait()?);
    pool.destroy().wait()
}
