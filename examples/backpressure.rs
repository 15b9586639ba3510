//! Backpressure: a producer faster than its pool. With `max_queue(2)`, a plain `run` in a
//! tight loop has most of its tasks refused with `Error::QueueFull`; a producer that first
//! reserves a place (`pool.reserve().wait()?`) is held back instead, and loses nothing. Its
//! tasks go to a consumer thread, which prints the results as they come.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tinypool::{Error, Exports, MaxQueue, Pool, Task};

/// Slow work: a few milliseconds per item.
fn slow_square(n: u64) -> u64 {
    thread::sleep(Duration::from_millis(5));
    n * n
}

fn main() -> Result<(), Error> {
    let pool = Pool::builder()
        .exports(Exports::new().export_default(slow_square))
        .max_threads(2)
        .max_queue(MaxQueue::Limit(2))
        .build()?;

    // Without backpressure: the queue fills at once, and the rest is refused.
    let burst: Vec<Task<u64>> = (0..50u64).map(|n| pool.run(n)).collect();
    let refused = burst
        .into_iter()
        .map(Task::wait)
        .filter(|result| *result == Err(Error::QueueFull))
        .count();
    println!("plain runs: {refused} of 50 refused with QueueFull");

    // With backpressure: the producer waits for a place before each task.
    let (sender, tasks) = mpsc::channel::<(u64, Task<u64>)>();
    let producer = {
        let pool = pool.clone();
        thread::spawn(move || -> Result<(), Error> {
            for n in 0..200u64 {
                let permit = pool.reserve().wait()?; // Blocks while the queue is full.
                if sender.send((n, permit.run(n))).is_err() {
                    break; // The consumer is gone.
                }
            }
            Ok(())
        })
    };

    let mut received = 0;
    for (n, task) in tasks {
        let square = task.wait()?;
        assert_eq!(square, n * n);
        if n % 20 == 0 {
            println!("{n}² = {square}");
        }
        received += 1;
    }
    producer.join().expect("the producer does not panic")?;
    println!("reserved runs: {received} of 200 ran, none refused");
    pool.close().wait()
}
