//! The seed's MessageChannel example: the main thread and a running task talk over a channel.

use tinypool::{worker, Exports, Pool, RunOptions};

/// The task: wait for the main thread's message, answer it, and return what it received.
/// Channel errors are domain errors here, so they travel as the task's value.
fn answer(_: ()) -> Result<String, String> {
    let port = worker::port::<String>().map_err(|e| e.to_string())?;
    let message = port.recv().map_err(|e| e.to_string())?;
    println!("Worker received: {message}");
    port.send("Hello from worker thread!".to_owned())
        .map_err(|e| e.to_string())?;
    Ok(message)
}

fn main() -> Result<(), tinypool::Error> {
    let pool = Pool::builder()
        .exports(Exports::new().export_default(answer))
        .build()?;

    let (main_port, worker_port) = tinypool::channel::<String>();
    let task =
        pool.run_with::<Result<String, String>, _>((), RunOptions::new().channel(worker_port));

    main_port.send("Hello from main thread!".to_owned())?;
    println!("Main thread received: {}", main_port.recv()?);

    task.wait()?.expect("the worker answered");
    pool.destroy().wait()
}
