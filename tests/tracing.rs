//! The `tracing` feature, seen by a minimal subscriber written here: a `task` span per task
//! (its export, worker, wait and run times), inside which a threads pool's function runs; a
//! `worker started` and a `worker exited` event per worker (with why it left); and a
//! `worker died` warning for a child that died, with its exit status. Built only with the
//! feature (`cargo test --all-features`).
#![cfg(feature = "tracing")]

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tinypool::{Error, Exports, Pool, Runtime};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use common::{finish, named};

tinypool::test_workers!(exports);

fn exports() -> Exports {
    Exports::new()
        .export_default(|(a, b): (i32, i32)| a + b)
        // An event of the user's own, inside the task's span in a threads pool.
        .export("inner", |()| tracing::info!(target: "user", "inside"))
        .export("exit_with", |code: i32| -> u32 { std::process::exit(code) })
}

type Fields = HashMap<String, String>;

/// A span: its name, its fields (those recorded later included).
struct SeenSpan {
    name: String,
    fields: Fields,
}

/// An event: its level, its fields (the message as `message`), and the span it was in.
struct SeenEvent {
    level: Level,
    fields: Fields,
    parent: Option<u64>,
}

#[derive(Default)]
struct Seen {
    spans: HashMap<u64, SeenSpan>,
    events: Vec<SeenEvent>,
}

static SEEN: Mutex<Option<Seen>> = Mutex::new(None);

fn seen<T>(f: impl FnOnce(&mut Seen) -> T) -> T {
    f(SEEN.lock().unwrap().get_or_insert_with(Seen::default))
}

thread_local! {
    /// The spans this thread is in, innermost last.
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Keeps what it hears of the targets `tinypool` and `user`.
struct Recorder {
    next: AtomicU64,
}

struct Fill<'a>(&'a mut Fields);

impl Visit for Fill<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        matches!(metadata.target(), "tinypool" | "user")
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut fields = Fields::new();
        span.record(&mut Fill(&mut fields));
        let name = span.metadata().name().to_owned();
        seen(|seen| seen.spans.insert(id, SeenSpan { name, fields }));
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        seen(|seen| {
            if let Some(span) = seen.spans.get_mut(&span.into_u64()) {
                values.record(&mut Fill(&mut span.fields));
            }
        });
    }

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::new();
        event.record(&mut Fill(&mut fields));
        let parent = ENTERED.with(|entered| entered.borrow().last().copied());
        let level = *event.metadata().level();
        seen(|seen| {
            seen.events.push(SeenEvent {
                level,
                fields,
                parent,
            })
        });
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(at) = entered.iter().rposition(|id| *id == span.into_u64()) {
                entered.remove(at);
            }
        });
    }
}

/// The `task` spans of export `export`.
fn task_spans(export: &str) -> Vec<(u64, Fields)> {
    seen(|seen| {
        seen.spans
            .iter()
            .filter(|(_, span)| span.name == "task" && span.fields["export"] == export)
            .map(|(id, span)| (*id, span.fields.clone()))
            .collect()
    })
}

/// The events saying `message`: their level and fields.
fn events(message: &str) -> Vec<(Level, Fields)> {
    seen(|seen| {
        seen.events
            .iter()
            .filter(|event| event.fields.get("message").map(String::as_str) == Some(message))
            .map(|event| (event.level, event.fields.clone()))
            .collect()
    })
}

#[test]
fn tasks_have_spans_and_workers_have_events() {
    tracing::subscriber::set_global_default(Recorder {
        next: AtomicU64::new(1),
    })
    .expect("the only subscriber of this binary");

    // Threads: the function runs inside its task's span.
    let pool = Pool::builder()
        .exports(exports())
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();
    assert_eq!(finish(pool.run::<i32, _>((2, 3))), Ok(5));
    assert_eq!(finish(pool.run_with::<(), _>((), named("inner"))), Ok(()));
    pool.destroy().wait().unwrap();

    let adds = task_spans("default");
    assert_eq!(adds.len(), 1);
    let fields = &adds[0].1;
    assert_eq!(fields["worker"], "1");
    for time in ["wait_us", "run_us"] {
        assert!(fields[time].parse::<u64>().is_ok(), "{time}: {fields:?}");
    }
    let inner = task_spans("inner");
    assert_eq!(inner.len(), 1);
    let inside = seen(|seen| {
        seen.events
            .iter()
            .find(|event| event.fields.get("message").map(String::as_str) == Some("inside"))
            .map(|event| event.parent)
    });
    assert_eq!(
        inside,
        Some(Some(inner[0].0)),
        "the user's event is in the span"
    );
    let started = events("worker started");
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].0, Level::DEBUG);
    assert_eq!(started[0].1["worker"], "1");
    assert!(!started[0].1.contains_key("pid"), "a thread has no pid");
    let exited = events("worker exited");
    assert_eq!(exited.len(), 1);
    assert_eq!(exited[0].1["exit"], "the pool was destroyed");

    // Child processes: a child that exits is a warning, with its status and pid.
    let pool = Pool::builder()
        .runtime(Runtime::ChildProcess)
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();
    let died = finish(pool.run_with::<u32, _>(3, named("exit_with")));
    assert!(
        matches!(died, Err(Error::WorkerExited { code: Some(3), .. })),
        "{died:?}"
    );
    assert_eq!(finish(pool.run::<i32, _>((2, 3))), Ok(5));
    pool.destroy().wait().unwrap();
    let deaths = events("worker died");
    assert_eq!(deaths.len(), 1);
    let (level, fields) = &deaths[0];
    assert_eq!(*level, Level::WARN);
    assert_eq!(fields["code"], "3");
    assert_eq!(fields["exit"], "crashed (exit code 3)");
    assert!(fields["pid"].parse::<u32>().is_ok(), "{fields:?}");
    // The first child, its replacement: each started with a pid.
    let children: Vec<_> = events("worker started")
        .into_iter()
        .filter(|(_, fields)| fields.contains_key("pid"))
        .collect();
    assert_eq!(children.len(), 2);
    assert_eq!(task_spans("exit_with").len(), 1);
}
