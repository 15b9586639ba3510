//! A graceful close: tasks queued before `close()` still run and print their results; a task
//! submitted after it fails with `Error::Closed`; `close().wait()` returns once every worker
//! has stopped.

use tinypool::{Error, Exports, Pool, Task};

fn main() -> Result<(), Error> {
    let pool = Pool::builder()
        .exports(Exports::new().export_default(|n: u64| (1..=n).product::<u64>()))
        .max_threads(2)
        .build()?;

    // More tasks than workers: most of them wait in the queue.
    let tasks: Vec<(u64, Task<u64>)> = (1..=10u64).map(|n| (n, pool.run(n))).collect();

    let close = pool.close();
    match pool.run::<u64, _>(11u64).wait() {
        Err(Error::Closed) => println!("after close: {}", Error::Closed),
        other => println!("unexpected: {other:?}"),
    }

    for (n, task) in tasks {
        println!("{n}! = {}", task.wait()?);
    }
    close.wait()?;
    println!("closed: {} workers left", pool.threads());
    Ok(())
}
