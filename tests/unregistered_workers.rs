//! A test binary without `tinypool::test_workers!`: a child-process pool that would re-execute
//! it is refused at once, with the fix in the message, and no child is ever started (one
//! would run this test suite again).
//!
//! One test, in steps: what is recorded (whether and where `serve_if_worker` was called) is
//! the process's, so no other test may share this binary.

use tinypool::{worker, Error, Exports, Pool, Runtime};

fn exports() -> Exports {
    Exports::new().export_default(|(a, b): (i32, i32)| a + b)
}

fn refusal() -> String {
    match Pool::builder().runtime(Runtime::ChildProcess).build() {
        Err(Error::InvalidOptions(message)) => message,
        Ok(pool) => {
            let _ = pool.destroy().wait();
            panic!("a pool that re-executes a test binary without test_workers! was built")
        }
        Err(other) => panic!("expected InvalidOptions, got {other:?}"),
    }
}

#[test]
fn a_pool_re_executing_a_test_binary_without_test_workers_is_refused_with_the_fix() {
    // Never called: libtest's `main` cannot call it.
    let never = refusal();
    assert!(
        never.contains("`main` must call tinypool::worker::serve_if_worker first"),
        "{never}"
    );
    assert!(
        never.contains("tinypool::test_workers!(exports);"),
        "{never}"
    );

    // The naive way: called inside a test, on the test's thread. (Not a worker: it returns.)
    worker::serve_if_worker(exports());
    let naive = refusal();
    let thread = "a_pool_re_executing_a_test_binary_without_test_workers_is_refused_with_the_fix";
    assert!(naive.contains(&format!("thread `{thread}`")), "{naive}");
    assert!(
        naive.contains("would re-run the test suite in every worker"),
        "{naive}"
    );
    assert!(
        naive.contains("tinypool::test_workers!(exports);"),
        "{naive}"
    );
    assert!(naive.contains("CARGO_BIN_EXE_"), "{naive}");
}
