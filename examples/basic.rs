//! The seed's basic example: run the default export with `{ a: 4, b: 6 }`, print 10.

use serde::{Deserialize, Serialize};
use tinypool::{Exports, Pool};

#[derive(Serialize, Deserialize)]
struct Add {
    a: i32,
    b: i32,
}

fn main() -> Result<(), tinypool::Error> {
    let pool = Pool::builder()
        .exports(Exports::new().export_default(|Add { a, b }: Add| a + b))
        .build()?;

    let result: i32 = pool.run(Add { a: 4, b: 6 }).wait()?;
    println!("{result}"); // Prints 10

    // Make sure to destroy the pool once it's not needed any more: this stops its workers.
    pool.destroy().wait()
}
