//! Typed exports: handles that carry an export's types, so that the compiler checks both the
//! function registered and every call; and local exports, whose values (an `Arc`, a channel's
//! `Sender`) are not serde types and only move, on a thread pool.

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

use tinypool::{Export, Exports, Local, Pool, RunOptions};

/// Serde types: these run in either runtime.
const ADD: Export<(i32, i32), i32> = Export::new("add");
const SHOUT: Export<String, String> = Export::new("shout");

/// A word counter shared by every task, and where each task reports its count: neither is a
/// serde type, so the export is local (threads only).
type Counts = Arc<Mutex<Vec<(String, usize)>>>;
const COUNT: Export<(Counts, Sender<usize>, String), (), Local> = Export::local("count");

fn main() -> Result<(), tinypool::Error> {
    let pool = Pool::builder()
        .exports(
            Exports::new()
                // The closures' argument types come from the handles.
                .register(ADD, |(a, b)| a + b)
                .register(SHOUT, |text| text.to_uppercase())
                .register(COUNT, |(counts, report, text)| {
                    let words = text.split_whitespace().count();
                    counts.lock().unwrap().push((text, words));
                    let _ = report.send(words);
                }),
        )
        .build()?;

    // `pool.call(ADD, (4i64, 6i64))` would not compile, nor `let sum: i64 = ...`.
    let sum = pool.call(ADD, (4, 6)).wait()?;
    let shout = pool.call_with(SHOUT, "hello".to_owned(), RunOptions::new().priority(1));
    println!("add: {sum}, shout: {}", shout.wait()?);

    // The `Arc` and the `Sender` move to the worker threads; nothing is serialized.
    let counts = Counts::default();
    let (report, reports) = mpsc::channel();
    let lines = ["a tiny pool", "of threads", "that move values"];
    let tasks: Vec<_> = lines
        .iter()
        .map(|line| pool.call(COUNT, (counts.clone(), report.clone(), line.to_string())))
        .collect();
    for task in tasks {
        task.wait()?;
    }
    drop(report);
    println!("words: {}", reports.iter().sum::<usize>()); // 8
    println!("counted: {:?}", counts.lock().unwrap());

    pool.destroy().wait()
}
