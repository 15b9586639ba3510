//! The seed's "main process <-> worker process" example: a task in a child process and the
//! main process talk over a channel bridged across the process boundary.

use serde::{Deserialize, Serialize};
use tinypool::{worker, Exports, Pool, RunOptions, Runtime};

/// What the worker answers to each message.
#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    received: String,
    response: String,
}

/// Messages between the two sides.
#[derive(Debug, Serialize, Deserialize)]
enum Message {
    Text(String),
    Reply(Reply),
}

fn exports() -> Exports {
    Exports::new().export_default(|()| -> Result<Reply, String> {
        let port = worker::port::<Message>().map_err(|e| e.to_string())?;
        port.send(Message::Text("Child process started".into()))
            .map_err(|e| e.to_string())?;
        let Message::Text(received) = port.recv().map_err(|e| e.to_string())? else {
            return Err("expected a text message".into());
        };
        let reply = Reply {
            received,
            response: "Hello from worker".into(),
        };
        port.send(Message::Reply(Reply {
            received: reply.received.clone(),
            response: reply.response.clone(),
        }))
        .map_err(|e| e.to_string())?;
        Ok(reply)
    })
}

fn main() -> Result<(), tinypool::Error> {
    worker::serve_if_worker(exports());

    let pool = Pool::builder().runtime(Runtime::ChildProcess).build()?;
    let (main_port, worker_port) = tinypool::channel::<Message>();
    let task =
        pool.run_with::<Result<Reply, String>, _>((), RunOptions::new().channel(worker_port));

    println!("Main process received: {:?}", main_port.recv()?);
    main_port.send(Message::Text("Hello from main process".into()))?;
    println!("Main process received: {:?}", main_port.recv()?);

    let result = task.wait()?;
    println!("Task result: {result:?}");
    pool.destroy().wait()
}
