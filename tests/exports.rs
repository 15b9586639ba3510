//! Exported functions: the default and named exports, unknown names, panics, exact types,
//! domain errors, and what a function can ask about its worker (spec §1.11, scenarios 1, 2,
//! 5, 14, 17, 18, 78, 82, 110).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::{finish, Counter};
use serde::{Deserialize, Serialize};
use tinypool::{worker, Error, Exports, Pool, RunOptions, Task};

/// A number unique to the calling thread: tells whether two tasks ran on the same worker.
fn marker() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static MARKER: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    MARKER.with(|marker| *marker)
}

fn one_worker(exports: Exports, prefix: &str) -> Pool {
    Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .thread_name(prefix)
        .build()
        .unwrap()
}

fn named(name: &'static str) -> RunOptions {
    RunOptions::new().name(name)
}

/// Scenario 17's "multiple" fixture: `a` returns "a", `b` returns "b", the default is `a`.
fn multiple() -> Exports {
    let a = |()| "a".to_owned();
    Exports::new()
        .default(a)
        .export("a", a)
        .export("b", |()| "b".to_owned())
}

#[test]
fn the_default_export_runs_when_no_name_is_given() {
    let pool = one_worker(
        Exports::new().default(|(a, b): (i32, i32)| a + b),
        "x-default",
    );
    assert_eq!(finish(pool.run::<i32, _>((4i32, 6i32))), Ok(10));
    assert_eq!(finish(pool.run::<i32, _>((-4i32, 1i32))), Ok(-3));
}

#[test]
fn named_exports_run_by_name_and_the_default_runs_without_one() {
    // Scenario 17.
    let pool = one_worker(multiple(), "x-named");
    assert_eq!(
        finish(pool.run_with::<String, _>((), named("a"))).unwrap(),
        "a"
    );
    assert_eq!(
        finish(pool.run_with::<String, _>((), named("b"))).unwrap(),
        "b"
    );
    assert_eq!(finish(pool.run::<String, _>(())).unwrap(), "a");
}

#[test]
fn builder_name_changes_which_export_run_calls() {
    // Scenario 18.
    let pool = Pool::builder()
        .exports(multiple())
        .name("b")
        .max_threads(1)
        .thread_name("x-poolname")
        .build()
        .unwrap();
    assert_eq!(
        finish(pool.run_with::<String, _>((), named("a"))).unwrap(),
        "a"
    );
    assert_eq!(
        finish(pool.run_with::<String, _>((), named("b"))).unwrap(),
        "b"
    );
    assert_eq!(finish(pool.run::<String, _>(())).unwrap(), "b");
    // Asking for "default" explicitly still reaches the default export.
    let default = pool.run_with::<String, _>((), named("default"));
    assert_eq!(finish(default).unwrap(), "a");
}

#[test]
fn exporting_as_default_by_name_sets_the_default_export() {
    let exports = Exports::new().export("default", |x: u8| x + 1);
    assert!(exports.contains("default"));
    let pool = one_worker(exports, "x-defname");
    assert_eq!(finish(pool.run::<u8, _>(1u8)), Ok(2));
}

#[test]
fn a_later_export_of_the_same_name_replaces_the_earlier() {
    let exports = Exports::new()
        .default(|x: u8| x)
        .export("f", |x: u8| x + 1)
        .export("f", |x: u8| x + 100)
        .default(|x: u8| x + 10);
    let pool = one_worker(exports, "x-replace");
    assert_eq!(finish(pool.run_with::<u8, _>(1u8, named("f"))), Ok(101));
    assert_eq!(finish(pool.run::<u8, _>(1u8)), Ok(11));
}

#[test]
fn exports_contains_exactly_the_exported_names() {
    let exports = multiple();
    assert!(exports.contains("default"));
    assert!(exports.contains("a"));
    assert!(exports.contains("b"));
    assert!(!exports.contains("c"));
    assert!(!Exports::new().export("a", |()| ()).contains("default"));
}

#[test]
fn an_unknown_name_fails_with_no_such_function_and_the_worker_stays() {
    // Scenario 82.
    let pool = one_worker(multiple().export("marker", |()| marker()), "x-unknown");
    let before = finish(pool.run_with::<u64, _>((), named("marker"))).unwrap();
    let error = finish(pool.run_with::<String, _>((), named("someHandler"))).unwrap_err();
    assert_eq!(
        error,
        Error::NoSuchFunction {
            name: "someHandler".to_owned()
        }
    );
    assert!(error.to_string().contains("\"someHandler\""), "{error}");
    let after = finish(pool.run_with::<u64, _>((), named("marker"))).unwrap();
    assert_eq!(before, after, "the same worker runs the next task");
}

#[test]
fn run_without_a_default_export_fails_with_no_such_function_default() {
    let pool = one_worker(Exports::new().export("a", |()| 1u8), "x-nodefault");
    assert_eq!(
        finish(pool.run::<u8, _>(())),
        Err(Error::NoSuchFunction {
            name: "default".to_owned()
        })
    );
    assert_eq!(finish(pool.run_with::<u8, _>((), named("a"))), Ok(1));
}

#[test]
fn a_pool_name_that_is_not_exported_fails_each_default_run_with_its_name() {
    let pool = Pool::builder()
        .exports(multiple())
        .name("missing")
        .max_threads(1)
        .thread_name("x-badname")
        .build()
        .unwrap();
    assert_eq!(
        finish(pool.run::<String, _>(())),
        Err(Error::NoSuchFunction {
            name: "missing".to_owned()
        })
    );
    assert_eq!(
        finish(pool.run_with::<String, _>((), named("b"))).unwrap(),
        "b"
    );
}

#[test]
fn a_panic_fails_the_task_with_its_message_and_the_worker_stays_usable() {
    // Scenarios 78 and 110: a throwing handler rejects with its message.
    let exports = Exports::new()
        .default(|()| (worker::id(), marker()))
        .export("panic", |()| -> u32 { panic!("not_caught") })
        .export("format", |x: u32| -> u32 { panic!("boom {x}") });
    let pool = one_worker(exports, "x-panic");
    let before = finish(pool.run::<(Option<usize>, u64), _>(())).unwrap();

    let error = finish(pool.run_with::<u32, _>((), named("panic"))).unwrap_err();
    assert_eq!(
        error,
        Error::Panicked {
            message: "not_caught".to_owned()
        }
    );
    assert!(error.to_string().contains("not_caught"), "{error}");
    assert_eq!(
        finish(pool.run_with::<u32, _>(42u32, named("format"))),
        Err(Error::Panicked {
            message: "boom 42".to_owned()
        })
    );

    let after = finish(pool.run::<(Option<usize>, u64), _>(())).unwrap();
    assert_eq!(
        after, before,
        "same worker id, same thread: the worker was not replaced"
    );
    assert_eq!(pool.threads(), 1);
}

#[test]
fn a_panic_with_a_non_string_payload_still_fails_the_task() {
    let exports = Exports::new().default(|()| -> u32 { std::panic::panic_any(7u8) });
    let pool = one_worker(exports, "x-anypanic");
    assert_eq!(
        finish(pool.run::<u32, _>(())),
        Err(Error::Panicked {
            message: "<non-string panic payload>".to_owned()
        })
    );
}

#[test]
fn a_wrong_argument_type_is_a_type_mismatch_and_the_function_is_not_called() {
    let called = Counter::new();
    let exports = {
        let called = called.clone();
        Exports::new()
            .default(move |x: i64| {
                called.bump();
                x
            })
            .export("pair", |(a, b): (i32, i32)| a + b)
    };
    let pool = one_worker(exports, "x-argtype");
    assert_eq!(
        finish(pool.run::<i64, _>(1i32)),
        Err(Error::TypeMismatch {
            expected: "i64".to_owned(),
            found: "i32".to_owned()
        })
    );
    assert_eq!(
        finish(pool.run_with::<i32, _>((1i64, 2i64), named("pair"))),
        Err(Error::TypeMismatch {
            expected: "(i32, i32)".to_owned(),
            found: "(i64, i64)".to_owned()
        })
    );
    assert_eq!(called.get(), 0, "no conversion, no call");
    // The worker is fine, and the exact types work.
    assert_eq!(finish(pool.run::<i64, _>(5i64)), Ok(5));
    assert_eq!(called.get(), 1);
}

#[test]
fn a_wrong_result_type_is_a_type_mismatch_and_the_function_is_not_called() {
    let called = Counter::new();
    let exports = {
        let called = called.clone();
        Exports::new().default(move |x: i64| {
            called.bump();
            x
        })
    };
    let pool = one_worker(exports, "x-restype");
    let error = finish(pool.run::<i32, _>(1i64)).unwrap_err();
    assert_eq!(
        error,
        Error::TypeMismatch {
            expected: "i64".to_owned(),
            found: "i32".to_owned()
        }
    );
    assert!(error.to_string().contains("`i64`"), "{error}");
    assert_eq!(
        finish(pool.run::<String, _>(1i64)),
        Err(Error::TypeMismatch {
            expected: "i64".to_owned(),
            found: std::any::type_name::<String>().to_owned()
        })
    );
    assert_eq!(called.get(), 0);
    assert_eq!(finish(pool.run::<i64, _>(3i64)), Ok(3));
    assert_eq!(called.get(), 1);
}

#[test]
fn domain_errors_are_result_values_not_task_errors() {
    let exports = Exports::new().default(|x: i32| -> Result<u32, String> {
        u32::try_from(x).map_err(|_| format!("{x} is negative"))
    });
    let pool = one_worker(exports, "x-domain");
    assert_eq!(finish(pool.run::<Result<u32, String>, _>(7i32)), Ok(Ok(7)));
    assert_eq!(
        finish(pool.run::<Result<u32, String>, _>(-1i32)),
        Ok(Err("-1 is negative".to_owned()))
    );
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Config {
    name: String,
    level: u8,
}

#[test]
fn worker_data_is_readable_from_every_worker() {
    // Scenario 14.
    let config = Config {
        name: "ABC".to_owned(),
        level: 3,
    };
    let met = Counter::new();
    let exports = {
        let met = met.clone();
        Exports::new().default(move |target: usize| {
            met.bump();
            met.wait_for(target);
            worker::data::<Config>().map_err(|error| error.to_string())
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .worker_data(config.clone())
        .min_threads(2)
        .max_threads(2)
        .thread_name("x-data")
        .build()
        .unwrap();
    let tasks: Vec<Task<Result<Option<Config>, String>>> = vec![pool.run(2usize), pool.run(2usize)];
    for task in tasks {
        assert_eq!(finish(task), Ok(Ok(Some(config.clone()))));
    }
    // Not in the main thread.
    assert_eq!(worker::data::<Config>(), Ok(None));
}

#[test]
fn worker_data_keeps_falsy_values() {
    // §2.19 item 8: Tinypool turns 0, "" and false into undefined.
    let pool = Pool::builder()
        .exports(Exports::new().default(|()| worker::data::<u32>().ok().flatten()))
        .worker_data(0u32)
        .max_threads(1)
        .thread_name("x-zero")
        .build()
        .unwrap();
    assert_eq!(finish(pool.run::<Option<u32>, _>(())), Ok(Some(0)));
}

#[test]
fn worker_data_is_none_when_not_given() {
    let pool = one_worker(
        Exports::new().default(|()| worker::data::<String>().map_err(|e| e.to_string())),
        "x-nodata",
    );
    assert_eq!(
        finish(pool.run::<Result<Option<String>, String>, _>(())),
        Ok(Ok(None))
    );
}

#[test]
fn worker_data_of_another_type_is_a_type_mismatch() {
    let exports = Exports::new().default(|()| match worker::data::<u32>() {
        Err(Error::TypeMismatch { expected, found }) => Some((expected, found)),
        _ => None,
    });
    let pool = Pool::builder()
        .exports(exports)
        .worker_data("ABC".to_owned())
        .max_threads(1)
        .thread_name("x-datatype")
        .build()
        .unwrap();
    assert_eq!(
        finish(pool.run::<Option<(String, String)>, _>(())),
        Ok(Some((
            std::any::type_name::<String>().to_owned(),
            "u32".to_owned()
        )))
    );
}

#[test]
fn worker_id_is_within_1_to_max_threads_inside_and_none_outside() {
    let met = Counter::new();
    let exports = {
        let met = met.clone();
        Exports::new().default(move |target: usize| {
            met.bump();
            met.wait_for(target);
            worker::id()
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(0)
        .max_threads(3)
        .thread_name("x-id")
        .build()
        .unwrap();
    let tasks: Vec<Task<Option<usize>>> = (0..3).map(|_| pool.run(3usize)).collect();
    let mut ids: Vec<usize> = tasks
        .into_iter()
        .map(|task| finish(task).unwrap().expect("inside a worker"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3], "three live workers hold ids 1..=3");
    let mut listed: Vec<usize> = pool.workers().iter().map(|w| w.id).collect();
    listed.sort_unstable();
    assert!(listed.iter().all(|id| (1..=3).contains(id)), "{listed:?}");
    assert_eq!(worker::id(), None);
}

#[test]
fn is_worker_is_true_only_inside_a_worker() {
    // Scenarios 1 and 2.
    let pool = one_worker(
        Exports::new().default(|()| (worker::is_worker(), worker::aborted())),
        "x-isworker",
    );
    assert_eq!(finish(pool.run::<(bool, bool), _>(())), Ok((true, false)));
    assert!(!worker::is_worker());
    assert!(!worker::aborted());
}

/// A value that must never be serialized: the threads runtime moves arguments and results.
#[derive(Debug)]
struct Unserializable(Box<u64>);

impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("the threads runtime serialized an argument or a result")
    }
}

impl<'de> Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("the threads runtime deserialized an argument or a result")
    }
}

#[test]
fn arguments_and_results_move_without_serialization() {
    let pool = one_worker(
        Exports::new().default(|mut value: Unserializable| {
            *value.0 += 1;
            let address = &*value.0 as *const u64 as usize;
            (address, value)
        }),
        "x-move",
    );
    let value = Unserializable(Box::new(41));
    let address = &*value.0 as *const u64 as usize;
    let (seen, value) = finish(pool.run::<(usize, Unserializable), _>(value)).unwrap();
    assert_eq!(*value.0, 42);
    assert_eq!(seen, address, "the worker got the caller's allocation");
    assert_eq!(
        &*value.0 as *const u64 as usize, address,
        "and gave it back"
    );
}
