//! Named exports: one pool, several functions, picked per task by name.

use tinypool::{Exports, Pool, RunOptions};

fn main() -> Result<(), tinypool::Error> {
    let pool = Pool::builder()
        .exports(
            Exports::new()
                .export_default(|(a, b): (i64, i64)| a + b)
                .export("multiply", |(a, b): (i64, i64)| a * b)
                .export("shout", |text: String| text.to_uppercase()),
        )
        .build()?;

    let sum = pool.run::<i64, _>((4i64, 6i64));
    let product = pool.run_with::<i64, _>((4i64, 6i64), RunOptions::new().name("multiply"));
    let shout = pool.run_with::<String, _>("hello".to_owned(), RunOptions::new().name("shout"));
    println!("add: {}", sum.wait()?);
    println!("multiply: {}", product.wait()?);
    println!("shout: {}", shout.wait()?);

    // Asking for a function that is not exported is an error of that task, not a panic.
    let missing = pool.run_with::<i64, _>((1i64, 2i64), RunOptions::new().name("divide"));
    println!("divide: {}", missing.wait().unwrap_err());

    pool.destroy().wait()
}
