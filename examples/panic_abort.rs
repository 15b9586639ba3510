//! A child worker built with `panic = "abort"` still names its panic: the pool gets the panic
//! message before the child dies. CI builds this example with `-C panic=abort`; in a normal
//! (unwinding) build the panic is caught and the task fails with `Error::Panicked` instead.

use tinypool::{Error, Exports, Pool, Runtime};

fn exports() -> Exports {
    Exports::new().export_default(|message: String| -> u32 { panic!("{message}") })
}

fn main() {
    tinypool::worker::serve_if_worker(exports());

    let pool = Pool::builder()
        .runtime(Runtime::ChildProcess)
        .min_threads(1)
        .max_threads(1)
        .build()
        .expect("a child-process pool");
    let result = pool.run::<u32, _>("boom".to_owned()).wait();
    println!("{result:?}");
    let named_the_panic = match &result {
        Err(Error::WorkerExited {
            message: Some(message),
            ..
        }) if cfg!(panic = "abort") => message.contains("boom"),
        Err(Error::Panicked { message, .. }) if cfg!(panic = "unwind") => message == "boom",
        _ => false,
    };
    pool.destroy().wait().expect("destroy");
    if !named_the_panic {
        eprintln!("the panic message was lost");
        std::process::exit(1);
    }
}
