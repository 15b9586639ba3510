//! How this program is ready to be re-executed as a pool's worker: what
//! [`serve_if_worker`](crate::worker::serve_if_worker) and
//! [`test_workers!`](crate::test_workers) record, and the rule
//! [`Builder::build`](crate::Builder::build) checks before a pool without `filename`
//! re-executes this program.
//!
//! std's atomics, not `crate::sync`'s: loom does not model them, and they are written before
//! `main`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// `serve_if_worker` was called on the main thread.
static SERVED_ON_MAIN: AtomicBool = AtomicBool::new(false);
/// The first other thread `serve_if_worker` was called on (for the error message).
static SERVED_ELSEWHERE: OnceLock<String> = OnceLock::new();
/// How many `test_workers!` constructors ran.
static TEST_WORKERS: AtomicUsize = AtomicUsize::new(0);

pub(super) fn record_serve_call() {
    let thread = std::thread::current();
    // std names the thread that runs `main` "main" (`#[tokio::main]` runs its body there
    // too); libtest runs each test on a thread named after the test, even one at a time.
    match thread.name() {
        Some("main") => SERVED_ON_MAIN.store(true, Ordering::Relaxed),
        name => {
            let _ = SERVED_ELSEWHERE.get_or_init(|| name.unwrap_or("<unnamed>").to_owned());
        }
    }
}

/// Whether a child-process pool may re-execute this program: `Err` says why not, and what to
/// do instead.
pub(crate) fn check_reexecutable() -> Result<(), String> {
    reexecutable(
        TEST_WORKERS.load(Ordering::Relaxed),
        SERVED_ON_MAIN.load(Ordering::Relaxed),
        SERVED_ELSEWHERE.get().map(String::as_str),
    )
}

/// The rule of [`check_reexecutable`], from what was recorded.
fn reexecutable(test_workers: usize, on_main: bool, elsewhere: Option<&str>) -> Result<(), String> {
    match (test_workers, on_main, elsewhere) {
        (2.., _, _) => Err(format!(
            "runtime: tinypool::test_workers! is used {test_workers} times in this program, \
             and a worker would serve the exports of whichever runs first: keep one"
        )),
        (1, _, _) | (0, true, _) => Ok(()),
        (0, false, Some(thread)) => Err(format!(
            "runtime: a ChildProcess pool without `filename` re-executes this program, but \
             tinypool::worker::serve_if_worker was only called on thread `{thread}`, not first \
             thing in `main`: every worker would run what comes before that call, and calling \
             it inside a #[test] would re-run the test suite in every worker. Instead, write \
             `tinypool::test_workers!(exports);` once at the top level of the test file, or \
             give the pool a worker executable with `filename(env!(\"CARGO_BIN_EXE_<name>\"))`"
        )),
        (0, false, None) => Err(
            "runtime: a ChildProcess pool without `filename` re-executes \
             this program, so `main` must call tinypool::worker::serve_if_worker first (in a \
             test binary, whose `main` is the harness's: write \
             `tinypool::test_workers!(exports);` once at the top level of the test file), or \
             the pool needs a worker executable, given with `filename`"
                .to_owned(),
        ),
    }
}

/// Records a `test_workers!` constructor.
pub(super) fn record_test_workers() {
    TEST_WORKERS.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::reexecutable;

    #[test]
    fn a_program_may_be_re_executed_once_it_serves_first() {
        assert_eq!(
            reexecutable(0, true, None),
            Ok(()),
            "serve_if_worker in main"
        );
        assert_eq!(
            reexecutable(0, true, Some("helper")),
            Ok(()),
            "and elsewhere too"
        );
        assert_eq!(reexecutable(1, false, None), Ok(()), "test_workers!");
        assert_eq!(
            reexecutable(1, false, Some("a_test")),
            Ok(()),
            "and a stray call"
        );
    }

    #[test]
    fn otherwise_the_refusal_names_the_fix() {
        let naive = reexecutable(0, false, Some("a_test")).unwrap_err();
        assert!(naive.contains("thread `a_test`"), "{naive}");
        assert!(naive.contains("re-run the test suite"), "{naive}");
        assert!(
            naive.contains("tinypool::test_workers!(exports);"),
            "{naive}"
        );
        assert!(naive.contains("CARGO_BIN_EXE_"), "{naive}");
        let never = reexecutable(0, false, None).unwrap_err();
        assert!(never.contains("`main` must call"), "{never}");
        assert!(
            never.contains("tinypool::test_workers!(exports);"),
            "{never}"
        );
        let twice = reexecutable(2, true, None).unwrap_err();
        assert!(twice.contains("used 2 times"), "{twice}");
    }
}
