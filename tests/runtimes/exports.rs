//! Exported functions (spec §1.11, scenarios 1, 2, 5, 14, 17, 18, 78, 82, 110): the default and
//! named exports, merged sets, unknown names, panics, exact types, a function's own errors,
//! worker data and the worker context, values too deep for a child, a pool run inside a worker.
//! Threads only: building `Exports` (the default by name, replacing an export, `contains`), a
//! pool without a default export, a function not called when the types do not match,
//! arguments and results moved without serialization, and a panic hook that replaces the
//! crate's.

use std::any::type_name;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use tinypool::{worker, Error, Exports, Pool, RunOptions, Runtime, Task, TypeRole};

use crate::common::{
    finish, named,
    procfs::{self, live},
    Counter,
};
use crate::{bodies, call, panicked_here, pool, prefix, start_gate, Body, Config, Nest};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            default_and_named_exports,
            unknown_names_fail_their_task,
            a_panic_fails_only_its_task,
            a_panic_message_too_long_for_a_frame_is_cut_not_lost,
            a_panic_with_a_non_string_payload_fails_the_task,
            types_must_match_exactly,
            domain_errors_are_result_values_not_task_errors,
            worker_ids_are_unique_and_within_max,
            worker_data_reaches_every_worker,
            worker_data_of_another_type_is_a_type_mismatch_and_zero_is_kept,
            worker_data_of_a_struct_reaches_every_worker,
            the_default_export_can_be_named_and_a_missing_pool_name_fails,
            the_worker_context_is_visible_only_inside_a_worker,
            merged_exports_serve_both_sets,
            values_nested_too_deep_for_a_child_fail_with_protocol,
            a_function_can_run_a_pool_of_its_own,
        ],
        threads: [
            exporting_as_default_by_name_sets_the_default_export,
            a_later_export_of_the_same_name_replaces_the_earlier,
            exports_contains_exactly_the_exported_names,
            run_without_a_default_export_fails_with_no_such_function_default,
            a_wrong_argument_type_is_a_type_mismatch_and_the_function_is_not_called,
            a_wrong_result_type_is_a_type_mismatch_and_the_function_is_not_called,
            arguments_and_results_move_without_serialization,
            a_panic_hook_that_replaces_the_crates_leaves_the_location_unknown,
        ],
    }
}

fn default_and_named_exports(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    assert_eq!(finish(pool.run::<i32, _>((4, 6))), Ok(10));
    let product = pool.run_with::<i32, _>((4, 6), RunOptions::new().name("multiply"));
    assert_eq!(finish(product), Ok(24));
    // A name made at run time (a `String`) reaches its export as a `&'static str` does.
    let owned = format!("multi{}", "ply");
    let product = pool.run_with::<i32, _>((4, 6), RunOptions::new().name(owned));
    assert_eq!(finish(product), Ok(24));
    let missing = pool.run_with::<i32, _>((4, 6), RunOptions::new().name(format!("x{}", 1)));
    assert_eq!(
        finish(missing),
        Err(Error::NoSuchFunction { name: "x1".into() })
    );
    let pool_b = pool_with_name(runtime);
    assert_eq!(finish(pool_b.run::<i32, _>((4, 6))), Ok(24));
    pool.destroy().wait().unwrap();
    pool_b.destroy().wait().unwrap();
}

fn pool_with_name(runtime: Runtime) -> Pool {
    pool(runtime).name("multiply").build().unwrap()
}

/// Scenario 82: an unknown name fails its task with `NoSuchFunction`, and the same worker
/// runs the next task.
fn unknown_names_fail_their_task(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let before: String = finish(call(&pool, "identity")).unwrap();
    let missing = pool.run_with::<i32, _>((1, 2), RunOptions::new().name("divide"));
    let error = finish(missing).unwrap_err();
    assert_eq!(
        error,
        Error::NoSuchFunction {
            name: "divide".into()
        }
    );
    assert!(error.to_string().contains("\"divide\""), "{error}");
    assert_eq!(finish(pool.run::<i32, _>((1, 2))), Ok(3));
    let after: String = finish(call(&pool, "identity")).unwrap();
    assert_eq!(before, after, "the same worker serves on");
    pool.destroy().wait().unwrap();
}

/// Scenarios 78 and 110: a panic fails its task with its message (a formatted one or a
/// literal) and the location of the `panic!`, and the same worker serves on.
fn a_panic_fails_only_its_task(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let before: String = finish(call(&pool, "identity")).unwrap();
    let panicked = pool.run_with::<i32, _>("boom".to_owned(), RunOptions::new().name("panic"));
    let error = finish(panicked).unwrap_err();
    let location = panicked_here(&error, "boom");
    assert_eq!(
        error.to_string(),
        format!("the task panicked at {location}: boom")
    );
    // `panic!` with a literal: a `&'static str` payload.
    panicked_here(
        &finish(call::<u32>(&pool, "panic_teardown")).unwrap_err(),
        "teardown failed",
    );
    let after: String = finish(call(&pool, "identity")).unwrap();
    assert_eq!(before, after, "the same worker serves on");
    assert_eq!(pool.threads(), 1);
    pool.destroy().wait().unwrap();
}

/// A child's panic message longer than `max_message_size` still fails its task as a panic
/// (its message cut to fit, marked with `…`), in a frame barely bigger than the task's own;
/// the same worker serves on. (On threads nothing crosses a frame: the message is whole.)
fn a_panic_message_too_long_for_a_frame_is_cut_not_lost(runtime: Runtime) {
    for max in [256, 4096] {
        let pool = pool(runtime)
            .max_threads(1)
            .max_message_size(max)
            .build()
            .unwrap();
        let before: String = finish(call(&pool, "identity")).unwrap();
        let long = pool.run_with::<i32, _>(("ab".to_owned(), 4096u32), named("panic_long"));
        match finish(long) {
            Err(Error::Panicked { message, .. }) if runtime == Runtime::Threads => {
                assert_eq!(message, "ab".repeat(4096));
            }
            Err(Error::Panicked { message, .. }) => {
                assert!(message.ends_with('…'), "{message}");
                assert!(message.len() < max, "{} bytes", message.len());
                assert!(
                    message.len() >= max / 8,
                    "cut more than needed: {message:?}"
                );
                let kept = message.trim_end_matches('…');
                assert!("ab".repeat(4096).starts_with(kept), "{message}");
            }
            other => panic!("expected a panic, got {other:?} (max_message_size {max})"),
        }
        let after: String = finish(call(&pool, "identity")).unwrap();
        assert_eq!(before, after, "the same worker serves on");
        pool.destroy().wait().unwrap();
    }
}

/// A panic with a payload that is not a string still fails only its task.
fn a_panic_with_a_non_string_payload_fails_the_task(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let before: String = finish(call(&pool, "identity")).unwrap();
    panicked_here(
        &finish(call::<u32>(&pool, "panic_any")).unwrap_err(),
        "<non-string panic payload>",
    );
    let after: String = finish(call(&pool, "identity")).unwrap();
    assert_eq!(before, after, "the same worker serves on");
    pool.destroy().wait().unwrap();
}

/// A mismatch names the export and says whether the argument or the result differs.
fn types_must_match_exactly(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let wrong_arg = finish(pool.run::<i32, _>((4i64, 6i64))).unwrap_err();
    assert_eq!(
        wrong_arg,
        Error::TypeMismatch {
            what: TypeRole::Argument {
                function: "default".into()
            },
            expected: "(i32, i32)".into(),
            found: "(i64, i64)".into()
        }
    );
    assert_eq!(
        wrong_arg.to_string(),
        "the argument of \"default\" has the wrong type: the export takes `(i32, i32)`, the \
         task passed `(i64, i64)`"
    );
    let multiply = RunOptions::new().name("multiply");
    let wrong_result = finish(pool.run_with::<i64, _>((4i32, 6i32), multiply)).unwrap_err();
    assert_eq!(
        wrong_result,
        Error::TypeMismatch {
            what: TypeRole::Result {
                function: "multiply".into()
            },
            expected: "i32".into(),
            found: "i64".into()
        }
    );
    assert_eq!(
        wrong_result.to_string(),
        "the result of \"multiply\" has the wrong type: the export returns `i32`, the task \
         expects `i64`"
    );
    pool.destroy().wait().unwrap();
}

/// A function's own errors are values of its result type, not task errors.
fn domain_errors_are_result_values_not_task_errors(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let checked =
        |x: i32| pool.run_with::<Result<u32, String>, _>(x, RunOptions::new().name("checked"));
    assert_eq!(finish(checked(7)), Ok(Ok(7)));
    assert_eq!(finish(checked(-1)), Ok(Err("-1 is negative".to_owned())));
    pool.destroy().wait().unwrap();
}

fn worker_ids_are_unique_and_within_max(runtime: Runtime) {
    let pool = pool(runtime).min_threads(2).build().unwrap();
    let (first, first_port) = start_gate(&pool);
    let (second, second_port) = start_gate(&pool);
    first_port.send(1).unwrap();
    second_port.send(2).unwrap();
    let (a, b) = (
        finish(first).unwrap().unwrap(),
        finish(second).unwrap().unwrap(),
    );
    let ids: HashSet<Option<usize>> = [a.0, b.0].into();
    assert_eq!(ids, [Some(1), Some(2)].into());
    for _ in 0..10 {
        let id: Option<usize> = finish(call(&pool, "id")).unwrap();
        assert!(matches!(id, Some(1..=2)), "{id:?}");
    }
    pool.destroy().wait().unwrap();
}

fn worker_data_reaches_every_worker(runtime: Runtime) {
    let pool = pool(runtime).worker_data("ABC".to_owned()).build().unwrap();
    let data: Result<Option<String>, String> = finish(call(&pool, "data")).unwrap();
    assert_eq!(data, Ok(Some("ABC".to_owned())));
    let none = pool_without_data(runtime);
    let data: Result<Option<String>, String> = finish(call(&none, "data")).unwrap();
    assert_eq!(data, Ok(None));
    pool.destroy().wait().unwrap();
    none.destroy().wait().unwrap();
}

fn pool_without_data(runtime: Runtime) -> Pool {
    pool(runtime).build().unwrap()
}

/// `worker::data` of another type than the pool's is a `TypeMismatch` naming both; a zero is
/// kept (§2.19 item 8: Tinypool hides falsy values).
fn worker_data_of_another_type_is_a_type_mismatch_and_zero_is_kept(runtime: Runtime) {
    type Data = Result<Option<u32>, (String, String, String)>;
    let pool = pool(runtime).worker_data("ABC".to_owned()).build().unwrap();
    let string = type_name::<String>();
    assert_eq!(
        finish(call::<Data>(&pool, "data_u32")),
        Ok(Err((
            string.to_owned(),
            "u32".to_owned(),
            format!(
                "worker_data has the wrong type: the pool was given a `{string}`, the function \
                 asked for a `u32`"
            )
        )))
    );
    pool.destroy().wait().unwrap();

    let pool = pool_with_zero(runtime);
    assert_eq!(finish(call::<Data>(&pool, "data_u32")), Ok(Ok(Some(0))));
    pool.destroy().wait().unwrap();
}

fn pool_named(runtime: Runtime, name: &'static str) -> Pool {
    pool(runtime).name(name).build().unwrap()
}

fn pool_with_zero(runtime: Runtime) -> Pool {
    pool(runtime).worker_data(0u32).build().unwrap()
}

/// Scenario 14: a struct given as `worker_data` reaches every worker (each task of an
/// isolated pool has a fresh one); the caller's thread is no worker and sees none.
fn worker_data_of_a_struct_reaches_every_worker(runtime: Runtime) {
    let config = Config {
        name: "ABC".to_owned(),
        level: 3,
    };
    let pool = pool(runtime)
        .worker_data(config.clone())
        .isolate_workers(true)
        .build()
        .unwrap();
    for _ in 0..3 {
        let data = finish(call::<Result<Option<Config>, String>>(&pool, "config"));
        assert_eq!(data, Ok(Ok(Some(config.clone()))));
    }
    assert_eq!(worker::data::<Config>(), Ok(None));
    pool.destroy().wait().unwrap();
}

/// Asking for "default" by name reaches the default export even when the pool's name is
/// another; a pool name that is not exported fails each default run with that name.
fn the_default_export_can_be_named_and_a_missing_pool_name_fails(runtime: Runtime) {
    let pool = pool_with_name(runtime);
    let default = pool.run_with::<i32, _>((4, 6), RunOptions::new().name("default"));
    assert_eq!(finish(default), Ok(10));
    assert_eq!(finish(pool.run::<i32, _>((4, 6))), Ok(24));
    pool.destroy().wait().unwrap();

    let pool = pool_named(runtime, "missing");
    assert_eq!(
        finish(pool.run::<i32, _>((4, 6))),
        Err(Error::NoSuchFunction {
            name: "missing".to_owned()
        })
    );
    let product = pool.run_with::<i32, _>((4, 6), RunOptions::new().name("multiply"));
    assert_eq!(finish(product), Ok(24));
    pool.destroy().wait().unwrap();
}

/// Inside a worker: `is_worker`, not aborted, an id; outside: none of these.
fn the_worker_context_is_visible_only_inside_a_worker(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let context = finish(call::<(bool, bool, Option<usize>)>(&pool, "context"));
    assert_eq!(context, Ok((true, false, Some(1))));
    assert!(!worker::is_worker());
    assert!(!worker::aborted());
    assert_eq!(worker::id(), None);
    pool.destroy().wait().unwrap();
}

/// Merged exports serve both sets, in both runtimes.
fn merged_exports_serve_both_sets(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let words = pool.run_with::<usize, _>("two words".to_owned(), RunOptions::new().name("words"));
    assert_eq!(finish(words), Ok(2));
    assert_eq!(finish(pool.run::<i32, _>((1, 2))), Ok(3));
    pool.destroy().wait().unwrap();
}

/// Threads move a value of any depth; a child process's values are encoded and decoded, which
/// recurses once per level: deeper than the codec allows (in either direction), the task fails
/// with `Protocol`, never with a stack overflow that aborts the process; and the pool serves on.
fn values_nested_too_deep_for_a_child_fail_with_protocol(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let deep = 20_000;
    let made = finish(pool.run_with::<Nest, _>(deep, RunOptions::new().name("nest")));
    let measured =
        finish(pool.run_with::<u32, _>(Nest::new(deep), RunOptions::new().name("depth")));
    match runtime {
        Runtime::Threads => {
            assert_eq!(made.map(|nest| nest.depth()), Ok(deep));
            assert_eq!(measured, Ok(deep));
        }
        _ => {
            for result in [made.map(|nest| nest.depth()), measured] {
                match result {
                    Err(Error::Protocol { message }) => {
                        assert!(message.contains("Nest"), "{message}")
                    }
                    other => panic!("expected a protocol error, got {other:?}"),
                }
            }
        }
    }
    let shallow = finish(pool.run_with::<Nest, _>(100u32, RunOptions::new().name("nest")));
    assert_eq!(shallow.map(|nest| nest.depth()), Ok(100));
    let shallow = finish(pool.run_with::<u32, _>(Nest::new(100), RunOptions::new().name("depth")));
    assert_eq!(shallow, Ok(100));
    pool.destroy().wait().unwrap();
}

/// A function may build a pool of its own, of its own runtime (a child's pool re-executes
/// the binary as grandchildren), run tasks on it and destroy it, leaving no process behind.
fn a_function_can_run_a_pool_of_its_own(runtime: Runtime) {
    let prefix = prefix("rt-outer", runtime);
    let pool = pool(runtime)
        .max_threads(2)
        .thread_name(&prefix)
        .build()
        .unwrap();
    let children = runtime == Runtime::ChildProcess;
    let tasks: Vec<Task<Result<(i32, u32), String>>> = (0..4)
        .map(|x| pool.run_with((x, children), RunOptions::new().name("nested")))
        .collect();
    for (x, task) in (0..4).zip(tasks) {
        let (value, inner_pid) = finish(task).unwrap().unwrap();
        assert_eq!(value, 2 * x + 1);
        if children {
            assert!(procfs::gone(inner_pid), "the inner pool reaped its child");
        } else {
            assert_eq!(inner_pid, std::process::id(), "threads of this process");
        }
    }
    pool.destroy().wait().unwrap();
    assert_eq!(live(&prefix), 0);
    assert_eq!(live("nested"), 0, "every inner pool joined its thread");
}

// ---- Threads only -------------------------------------------------------------------------------

fn one_worker(exports: Exports, prefix: &str) -> Pool {
    Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .thread_name(prefix)
        .build()
        .unwrap()
}

/// Scenario 17's "multiple" fixture: `a` returns "a", `b` returns "b", the default is `a`.
fn multiple() -> Exports {
    let a = |()| "a".to_owned();
    Exports::new()
        .export_default(a)
        .export("a", a)
        .export("b", |()| "b".to_owned())
}

fn exporting_as_default_by_name_sets_the_default_export() {
    let exports = Exports::new().export("default", |x: u8| x + 1);
    assert!(exports.contains("default"));
    let pool = one_worker(exports, "x-defname");
    assert_eq!(finish(pool.run::<u8, _>(1u8)), Ok(2));
}

fn a_later_export_of_the_same_name_replaces_the_earlier() {
    let exports = Exports::new()
        .export_default(|x: u8| x)
        .export("f", |x: u8| x + 1)
        .export("f", |x: u8| x + 100)
        .export_default(|x: u8| x + 10);
    let pool = one_worker(exports, "x-replace");
    assert_eq!(finish(pool.run_with::<u8, _>(1u8, named("f"))), Ok(101));
    assert_eq!(finish(pool.run::<u8, _>(1u8)), Ok(11));
}

fn exports_contains_exactly_the_exported_names() {
    let exports = multiple();
    assert!(exports.contains("default"));
    assert!(exports.contains("a"));
    assert!(exports.contains("b"));
    assert!(!exports.contains("c"));
    assert!(!Exports::new().export("a", |()| ()).contains("default"));
}

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

fn a_wrong_argument_type_is_a_type_mismatch_and_the_function_is_not_called() {
    let called = Counter::new();
    let exports = {
        let called = called.clone();
        Exports::new()
            .export_default(move |x: i64| {
                called.bump();
                x
            })
            .export("pair", |(a, b): (i32, i32)| a + b)
    };
    let pool = one_worker(exports, "x-argtype");
    assert_eq!(
        finish(pool.run::<i64, _>(1i32)),
        Err(Error::TypeMismatch {
            what: TypeRole::Argument {
                function: "default".to_owned()
            },
            expected: "i64".to_owned(),
            found: "i32".to_owned()
        })
    );
    let error = finish(pool.run_with::<i32, _>((1i64, 2i64), named("pair"))).unwrap_err();
    assert_eq!(
        error,
        Error::TypeMismatch {
            what: TypeRole::Argument {
                function: "pair".to_owned()
            },
            expected: "(i32, i32)".to_owned(),
            found: "(i64, i64)".to_owned()
        }
    );
    assert_eq!(
        error.to_string(),
        "the argument of \"pair\" has the wrong type: the export takes `(i32, i32)`, the task \
         passed `(i64, i64)`"
    );
    assert_eq!(called.get(), 0, "no conversion, no call");
    // The worker is fine, and the exact types work.
    assert_eq!(finish(pool.run::<i64, _>(5i64)), Ok(5));
    assert_eq!(called.get(), 1);
}

fn a_wrong_result_type_is_a_type_mismatch_and_the_function_is_not_called() {
    let called = Counter::new();
    let exports = {
        let called = called.clone();
        Exports::new().export_default(move |x: i64| {
            called.bump();
            x
        })
    };
    let pool = one_worker(exports, "x-restype");
    let error = finish(pool.run::<i32, _>(1i64)).unwrap_err();
    let result = || TypeRole::Result {
        function: "default".to_owned(),
    };
    assert_eq!(
        error,
        Error::TypeMismatch {
            what: result(),
            expected: "i64".to_owned(),
            found: "i32".to_owned()
        }
    );
    assert_eq!(
        error.to_string(),
        "the result of \"default\" has the wrong type: the export returns `i64`, the task \
         expects `i32`"
    );
    assert_eq!(
        finish(pool.run::<String, _>(1i64)),
        Err(Error::TypeMismatch {
            what: result(),
            expected: "i64".to_owned(),
            found: std::any::type_name::<String>().to_owned()
        })
    );
    assert_eq!(called.get(), 0);
    assert_eq!(finish(pool.run::<i64, _>(3i64)), Ok(3));
    assert_eq!(called.get(), 1);
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

fn arguments_and_results_move_without_serialization() {
    let pool = one_worker(
        Exports::new().export_default(|mut value: Unserializable| {
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

/// The crate notes where a panic happened through a panic hook it chains in front of the
/// process's when the first pool is built. A hook set later that does not call the one it
/// replaced leaves the location unknown: `None`, never another panic's. Put back, the crate's
/// hook locates panics again.
fn a_panic_hook_that_replaces_the_crates_leaves_the_location_unknown() {
    let pool = one_worker(
        Exports::new().export_default(|(message, panic): (String, bool)| -> u8 {
            // A panic the function catches itself is noted too: the note stays behind.
            let _ = std::panic::catch_unwind(|| panic!("caught inside"));
            if panic {
                panic!("{message}")
            }
            0
        }),
        "x-hook",
    );
    let run = |message: &str, panic: bool| finish(pool.run::<u8, _>((message.to_owned(), panic)));
    match run("located", true) {
        Err(Error::Panicked {
            message,
            location: Some(location),
        }) => {
            assert_eq!(message, "located");
            assert!(
                location.starts_with("tests/runtimes/exports.rs:"),
                "{location}"
            );
        }
        other => panic!("expected a located panic, got {other:?}"),
    }
    assert_eq!(run("", false), Ok(0));
    let crates = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let unknown = run("unlocated", true);
    std::panic::set_hook(crates);
    assert_eq!(
        unknown,
        Err(Error::Panicked {
            message: "unlocated".to_owned(),
            location: None
        }),
        "not the location of the panic caught inside"
    );
    assert!(matches!(
        run("located again", true),
        Err(Error::Panicked {
            location: Some(_),
            ..
        })
    ));
}
