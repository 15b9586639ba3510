//! Typed exports (`Export<A, R, W>`, `Exports::register`, `Pool::call`, `Pool::call_with`) and
//! local exports (`Exports::export_local`, `Export::local`): typed calls return their values in
//! both runtimes and honour their options, and agree with runs by name; a local export runs
//! only on threads, where its values (an `Arc<Mutex<_>>`, a `Sender`) move, and a child-process
//! pool refuses it at `build()` and at the call. The compile-time checks are doc tests of
//! `Export`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

use tinypool::{
    AbortController, Error, Export, Exports, Local, Pool, RunOptions, Runtime, Task, TypeRole,
};

use crate::common::{finish, named, next};
use crate::{bodies, held, pool, Body, Held};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            typed_calls_return_their_values,
            call_with_honours_its_channel_and_signal_and_the_handle_names_the_export,
            call_with_honours_the_priority,
            a_typed_handle_and_a_run_by_name_agree,
            a_local_handle_runs_only_on_threads,
            local_exports_build_only_for_threads,
        ],
        threads: [
            a_local_export_moves_an_arc_mutex_and_a_sender,
            a_panicking_local_function_fails_with_panicked,
        ],
    }
}

/// Registered below, with its handle.
const SCALE: Export<(i64, i64), i64> = Export::new("scale");
/// Registered below: the smallest and the largest of a list.
const SPAN: Export<Vec<u32>, Option<(u32, u32)>> = Export::new("span");

// Handles to functions [`crate::exports`] exports by name.
const DEFAULT: Export<(i32, i32), i32> = Export::new("default");
const MULTIPLY: Export<(i32, i32), i32> = Export::new("multiply");
const HOLD: Export<u32, Result<Held, String>> = Export::new("hold");
const COUNTER: Export<(), u32> = Export::new("counter");

/// A local export of serde types: only a threads pool runs it (a child serves
/// [`local_exports`] too, and to it the function does not exist).
const LOCAL_SQUARE: Export<u32, u32, Local> = Export::local("local_square");

/// The typed exports both kinds of worker serve (part of [`crate::exports`]).
pub fn exports() -> Exports {
    Exports::new()
        .register(SCALE, |(x, k)| x * k)
        .register(SPAN, |list| {
            Some((*list.iter().min()?, *list.iter().max()?))
        })
}

/// Local exports, which a child serves beside [`crate::exports`] (and ignores).
pub fn local_exports() -> Exports {
    Exports::new().register(LOCAL_SQUARE, |n| n * n)
}

fn typed_calls_return_their_values(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    assert_eq!(finish(pool.call(SCALE, (6, 7))), Ok(42));
    assert_eq!(finish(pool.call(SPAN, vec![3, 9, 1])), Ok(Some((1, 9))));
    assert_eq!(finish(pool.call(SPAN, Vec::new())), Ok(None));
    // Handles to functions exported by name, the default one included.
    assert_eq!(finish(pool.call(DEFAULT, (4, 6))), Ok(10));
    assert_eq!(finish(pool.call(MULTIPLY, (4, 6))), Ok(24));
    let tasks: Vec<Task<i64>> = (0..8).map(|n| pool.call(SCALE, (n, 3))).collect();
    let values: Vec<i64> = tasks.into_iter().map(|t| finish(t).unwrap()).collect();
    assert_eq!(values, [0, 3, 6, 9, 12, 15, 18, 21]);
    pool.destroy().wait().unwrap();
}

/// `call_with` gives the task its channel and its signal; the name in the options is ignored:
/// the handle names the export.
fn call_with_honours_its_channel_and_signal_and_the_handle_names_the_export(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (port, theirs) = tinypool::channel::<u32>();
    let options = RunOptions::new().name("multiply").channel(theirs);
    let task = pool.call_with(HOLD, 7, options);
    assert_eq!(next(&port), Ok(7), "\"hold\" runs, with its channel");
    port.send(9).unwrap();
    let (tag, _, _, value) = held(task);
    assert_eq!((tag, value), (7, 9));

    let controller = AbortController::new();
    let (port, theirs) = tinypool::channel::<u32>();
    let options = RunOptions::new()
        .channel(theirs)
        .signal(controller.signal());
    let task = pool.call_with(HOLD, 8, options);
    assert_eq!(next(&port), Ok(8), "it started");
    controller.abort_with("enough");
    assert_eq!(
        finish(task),
        Err(Error::Aborted {
            reason: Some("enough".to_owned())
        })
    );
    // A signal that fired before the call: the task never starts.
    let options = RunOptions::new().signal(controller.signal());
    assert!(matches!(
        finish(pool.call_with(SCALE, (1, 1), options)),
        Err(Error::Aborted { .. })
    ));
    pool.destroy().wait().unwrap();
}

/// On a busy one-worker pool, a `call_with` of higher priority runs before the calls queued
/// ahead of it. "counter" says how many it ran before on its worker: the order of runs.
fn call_with_honours_the_priority(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (task, port) = crate::hold(&pool, 1);
    assert_eq!(next(&port), Ok(1), "the worker is busy");
    let first = pool.call(COUNTER, ());
    let second = pool.call_with(COUNTER, (), RunOptions::new());
    let urgent = pool.call_with(COUNTER, (), RunOptions::new().priority(5));
    assert_eq!(pool.queue_size(), 3);
    port.send(0).unwrap();
    held(task);
    let order: Vec<u32> = [first, second, urgent]
        .into_iter()
        .map(|task| finish(task).unwrap())
        .collect();
    assert_eq!(order, [1, 2, 0]);
    pool.destroy().wait().unwrap();
}

/// A handle and a run by name reach the same function. A handle is checked against the
/// function it registered at compile time; one that disagrees with a function exported by
/// name fails at run time, as a run by name does.
fn a_typed_handle_and_a_run_by_name_agree(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    for arg in [(2, 21), (-3, 5), (i64::MAX, 1)] {
        let typed = finish(pool.call(SCALE, arg));
        let by_name = finish(pool.run_with::<i64, _>(arg, named(SCALE.name())));
        assert_eq!(typed, by_name);
        assert_eq!(typed, Ok(arg.0 * arg.1));
    }
    const WIDE: Export<(i64, i64), i64> = Export::new("multiply");
    let error = finish(pool.call(WIDE, (4, 6))).unwrap_err();
    assert!(
        matches!(
            &error,
            Error::TypeMismatch { what: TypeRole::Argument { function }, expected, found }
                if function == "multiply" && expected == "(i32, i32)" && found == "(i64, i64)"
        ),
        "{error:?}"
    );
    pool.destroy().wait().unwrap();
}

/// A local handle runs on a threads pool (values move), and fails at once with
/// `InvalidOptions` naming it on a child-process pool, which goes on serving. A child serves
/// [`local_exports`] too, so the same name by `run_with` reaches no function there.
fn a_local_handle_runs_only_on_threads(runtime: Runtime) {
    let pool = match runtime {
        Runtime::Threads => Pool::builder()
            .exports(crate::exports().merge(local_exports()))
            .build()
            .unwrap(),
        _ => pool(runtime).build().unwrap(),
    };
    let local = finish(pool.call(LOCAL_SQUARE, 9));
    let by_name = finish(pool.run_with::<u32, _>(9u32, named(LOCAL_SQUARE.name())));
    match runtime {
        Runtime::Threads => {
            assert_eq!(local, Ok(81));
            assert_eq!(by_name, Ok(81));
        }
        _ => {
            let Err(Error::InvalidOptions(message)) = local else {
                panic!("expected InvalidOptions, got {local:?}");
            };
            assert!(message.contains("\"local_square\""), "{message}");
            assert_eq!(
                by_name,
                Err(Error::NoSuchFunction {
                    name: "local_square".to_owned()
                })
            );
        }
    }
    assert_eq!(
        finish(pool.call(SCALE, (2, 3))),
        Ok(6),
        "the pool serves on"
    );
    pool.destroy().wait().unwrap();
}

/// A child-process pool given exports with local functions fails at `build()`, naming them
/// (and only them); a threads pool takes them.
fn local_exports_build_only_for_threads(runtime: Runtime) {
    let exports = crate::exports()
        .export_local("b_local", |tx: Sender<u32>| drop(tx))
        .export_local("a_local", |data: Arc<Vec<u8>>| data.len());
    let built = Pool::builder().runtime(runtime).exports(exports).build();
    match runtime {
        Runtime::Threads => built.unwrap().destroy().wait().unwrap(),
        _ => {
            let Err(Error::InvalidOptions(message)) = built else {
                panic!("expected InvalidOptions, got {built:?}");
            };
            assert!(message.contains("\"a_local\", \"b_local\""), "{message}");
            assert!(!message.contains("scale"), "only the local ones: {message}");
        }
    }
}

/// A shared log and where each call reports.
type Log = Arc<Mutex<Vec<u32>>>;

/// Appends to the log, reports on the channel, and hands the log back.
const RECORD: Export<(Log, Sender<u32>, u32), Log, Local> = Export::local("record");
/// Sends the log's sum (exported by name with `export_local`).
const SUM: Export<(Log, Sender<u32>), bool, Local> = Export::local("sum");

/// A local export moves an `Arc<Mutex<_>>` in and out (the very same one comes back) and a
/// `Sender` in; one exported by name with `export_local` is called with a local handle.
fn a_local_export_moves_an_arc_mutex_and_a_sender() {
    let exports = Exports::new()
        .register(RECORD, |(log, done, n)| {
            log.lock().unwrap().push(n);
            done.send(n).unwrap();
            log
        })
        .export_local("sum", |(log, done): (Log, Sender<u32>)| {
            let sum = log.lock().unwrap().iter().sum();
            done.send(sum).is_ok()
        });
    let pool = Pool::builder()
        .exports(exports)
        .max_threads(2)
        .build()
        .unwrap();
    let log: Log = Arc::default();
    let (done, reports) = mpsc::channel();
    let tasks: Vec<Task<Log>> = (1..=4)
        .map(|n| pool.call(RECORD, (log.clone(), done.clone(), n)))
        .collect();
    for task in tasks {
        assert!(Arc::ptr_eq(&finish(task).unwrap(), &log), "the same Arc");
    }
    let mut reported: Vec<u32> = reports.try_iter().collect();
    reported.sort_unstable();
    assert_eq!(reported, [1, 2, 3, 4]);
    let mut logged = log.lock().unwrap().clone();
    logged.sort_unstable();
    assert_eq!(logged, [1, 2, 3, 4]);

    assert_eq!(finish(pool.call(SUM, (log.clone(), done))), Ok(true));
    assert_eq!(reports.try_recv(), Ok(10));
    // Every clone the tasks moved was dropped with them: only the test's is left.
    assert_eq!(Arc::strong_count(&log), 1);
    pool.destroy().wait().unwrap();
}

/// Panics on an odd count.
const TICK: Export<Arc<AtomicU32>, u32, Local> = Export::local("tick");

/// A local function that panics fails its task with `Panicked`, located in it; its worker
/// runs the next task.
fn a_panicking_local_function_fails_with_panicked() {
    let exports = Exports::new().register(TICK, |count| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        assert!(n % 2 == 0, "tick {n} is odd");
        n
    });
    let pool = Pool::builder()
        .exports(exports)
        .max_threads(1)
        .build()
        .unwrap();
    let count = Arc::new(AtomicU32::new(0));
    assert_eq!(finish(pool.call(TICK, count.clone())), Ok(0));
    let error = finish(pool.call(TICK, count.clone())).unwrap_err();
    let Error::Panicked {
        message,
        location: Some(location),
    } = &error
    else {
        panic!("expected a located panic, got {error:?}");
    };
    assert_eq!(message, "tick 1 is odd");
    assert!(location.contains("tests/runtimes/typed.rs"), "{location}");
    assert_eq!(
        finish(pool.call(TICK, count.clone())),
        Ok(2),
        "the worker serves on"
    );
    assert_eq!(pool.threads(), 1);
    pool.destroy().wait().unwrap();
}
