//! Exported functions with worker threads only (spec §1.11): building `Exports` (the default
//! by name, replacing an export, `contains`), a pool without a default export, a function not
//! called when the types do not match, arguments and results moved without serialization, and
//! a panic hook that replaces the crate's.
//! Named exports, unknown names, panics, exact types, worker data and the worker context
//! (scenarios 1, 2, 5, 14, 17, 18, 78, 82, 110) are tested for both runtimes in
//! `tests/runtimes.rs`.

mod common;

use common::{finish, Counter};
use serde::{Deserialize, Serialize};
use tinypool::{Error, Exports, Pool, RunOptions, TypeRole};

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
        .export_default(a)
        .export("a", a)
        .export("b", |()| "b".to_owned())
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
        .export_default(|x: u8| x)
        .export("f", |x: u8| x + 1)
        .export("f", |x: u8| x + 100)
        .export_default(|x: u8| x + 10);
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

#[test]
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

#[test]
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
#[test]
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
            assert!(location.starts_with("tests/exports.rs:"), "{location}");
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
