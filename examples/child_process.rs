//! The seed's child-process example: the same pool, with workers in child processes. The
//! pool re-executes this program as its workers, so `main` first lets a worker serve.

use serde::{Deserialize, Serialize};
use tinypool::{Exports, Pool, Runtime};

#[derive(Serialize, Deserialize)]
struct Add {
    a: i32,
    b: i32,
}

fn exports() -> Exports {
    Exports::new().export_default(|Add { a, b }: Add| a + b)
}

fn main() -> Result<(), tinypool::Error> {
    // In a worker process this serves tasks and exits; here it returns at once.
    tinypool::worker::serve_if_worker(exports());

    let pool = Pool::builder().runtime(Runtime::ChildProcess).build()?;
    let result: i32 = pool.run(Add { a: 4, b: 6 }).wait()?;
    println!("{result}"); // Prints 10
    pool.destroy().wait()
}
