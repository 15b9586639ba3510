//! The `tracing` feature, seen by a minimal subscriber written here: a `task` span per task
//! (its export, worker, wait and run times), inside which a threads pool's function runs; a
//! `worker started` and a `worker exited` event per worker (with why it left); and a
//! `worker died` warning for a child that died, with its exit status; and async tasks that
//! interleave on one worker, each in a span of its own; and a `fork server unusable` warning
//! that says why a pool's fork server refused (Linux). Built only with the feature (`cargo
//! test --all-features`).
#![cfg(feature = "tracing")]

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use tinypool::{worker, Error, Exports, Pool, Port, RunOptions, Runtime, Task};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use common::{finish, named, next};

tinypool::test_workers!(exports);

/// Set in a child's environment: it serves [`async_exports`] too, and so runs its tasks
/// concurrently.
const ASYNC_ENV: &str = "TINYPOOL_TEST_TRACING_ASYNC";

/// Set in a child's environment: its `exports()` leaves a thread running, so that a fork
/// server of that program refuses to serve.
const THREAD_ENV: &str = "TINYPOOL_TEST_TRACING_THREAD";

fn exports() -> Exports {
    if std::env::var_os(THREAD_ENV).is_some() {
        std::thread::spawn(|| loop {
            std::thread::park();
        });
    }
    let exports = Exports::new()
        .export_default(|(a, b): (i32, i32)| a + b)
        // An event of the user's own, inside the task's span in a threads pool.
        .export("inner", |()| tracing::info!(target: "user", "inside"))
        .export("exit_with", |code: i32| -> u32 { std::process::exit(code) });
    match std::env::var_os(ASYNC_ENV) {
        Some(_) => exports.merge(async_exports()),
        None => exports,
    }
}

/// Two names of one async function: each task's span names its export.
fn async_exports() -> Exports {
    Exports::new()
        .export_async("traced_a", traced)
        .export_async("traced_b", traced)
}

/// Says "begin" (tagged with `tag`), announces itself on its channel, waits for a value, says
/// "end", and returns the value.
async fn traced(tag: String) -> Result<u32, String> {
    tracing::info!(target: "user", tag = tag.as_str(), "begin");
    let port = worker::port::<u32>().map_err(|e| e.to_string())?;
    port.send(0).map_err(|e| e.to_string())?;
    let value = port.recv_async().await.map_err(|e| e.to_string())?;
    tracing::info!(target: "user", tag = tag.as_str(), "end");
    Ok(value)
}

type Fields = HashMap<String, String>;

/// A span: its name, its fields (those recorded later included).
struct SeenSpan {
    name: String,
    fields: Fields,
    /// The span it was made in.
    parent: Option<u64>,
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
        let parent = match span.parent() {
            Some(parent) => Some(parent.into_u64()),
            None if span.is_contextual() => {
                ENTERED.with(|entered| entered.borrow().last().copied())
            }
            None => None,
        };
        seen(|seen| {
            seen.spans.insert(
                id,
                SeenSpan {
                    name,
                    fields,
                    parent,
                },
            )
        });
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

/// Installs the subscriber (once per binary) and forgets what it heard; the tests run one at
/// a time, since they count what they hear.
fn start() -> MutexGuard<'static, ()> {
    static INSTALL: Once = Once::new();
    static SERIAL: Mutex<()> = Mutex::new(());
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(Recorder {
            next: AtomicU64::new(1),
        })
        .expect("the only subscriber of this binary");
    });
    let serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    seen(|seen| *seen = Seen::default());
    serial
}

/// The events of the user's saying `message`: their `tag` and the span they were in.
fn user_events(message: &str) -> Vec<(String, Option<u64>)> {
    seen(|seen| {
        seen.events
            .iter()
            .filter(|event| event.fields.get("message").map(String::as_str) == Some(message))
            .map(|event| (event.fields["tag"].clone(), event.parent))
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
    let _serial = start();

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

/// A "traced" task of export `export` (tagged with its name) and the caller's side of its
/// channel.
fn traced_task(pool: &Pool, export: &'static str) -> (Task<Result<u32, String>>, Port<u32>) {
    let (port, theirs) = tinypool::channel::<u32>();
    let options = RunOptions::new().name(export).channel(theirs);
    (pool.run_with(export.to_owned(), options), port)
}

/// Runs a "traced_a" and a "traced_b" task in flight together on `pool`'s one worker, and
/// lets the younger end first.
fn interleave(pool: &Pool) {
    let (a, a_port) = traced_task(pool, "traced_a");
    let (b, b_port) = traced_task(pool, "traced_b");
    assert_eq!(next(&a_port), Ok(0), "a started");
    assert_eq!(next(&b_port), Ok(0), "b started beside a");
    b_port.send(2).unwrap();
    assert_eq!(finish(b), Ok(Ok(2)));
    a_port.send(1).unwrap();
    assert_eq!(finish(a), Ok(Ok(1)));
}

/// The one span of each of the two tasks, by export, with its run time recorded, inside no
/// other span.
fn one_span_each() -> [(&'static str, u64); 2] {
    ["traced_a", "traced_b"].map(|export| {
        let spans = task_spans(export);
        assert_eq!(spans.len(), 1, "one span for the {export} task: {spans:?}");
        let (id, fields) = &spans[0];
        assert!(fields["run_us"].parse::<u64>().is_ok(), "{fields:?}");
        assert_eq!(fields["worker"], "1");
        let parent = seen(|seen| seen.spans[id].parent);
        assert_eq!(parent, None, "the {export} task's span is inside no other");
        (export, *id)
    })
}

/// Two async tasks interleaved on one worker thread: each has one span, and what each export
/// says, before and after its await point, is in its own task's span, never in the other's.
#[test]
fn async_tasks_on_a_thread_each_run_in_their_own_span() {
    let _serial = start();
    let pool = Pool::builder()
        .exports(exports().merge(async_exports()))
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    interleave(&pool);
    pool.destroy().wait().unwrap();
    let spans = one_span_each();
    for message in ["begin", "end"] {
        let said = user_events(message);
        assert_eq!(said.len(), 2, "{message}: {said:?}");
        for (tag, parent) in said {
            let own = spans.iter().find(|(export, _)| *export == tag).unwrap().1;
            assert_eq!(parent, Some(own), "{tag} said {message} in its own span");
        }
    }
}

/// Two async tasks in flight together in one child: each has exactly one span in the pool,
/// the one that ends first too, and neither is inside the other.
#[test]
fn async_tasks_in_a_child_each_have_one_span() {
    let _serial = start();
    let pool = Pool::builder()
        .runtime(Runtime::ChildProcess)
        .env(ASYNC_ENV, "1")
        .min_threads(1)
        .max_threads(1)
        .concurrent_tasks_per_worker(2)
        .build()
        .unwrap();
    interleave(&pool);
    pool.destroy().wait().unwrap();
    one_span_each();
}

/// A fork server whose `exports()` left a thread running refuses to fork (`REFUSED`): the
/// pool says why, once, and spawns its workers instead.
#[cfg(target_os = "linux")]
#[test]
fn a_fork_server_that_refuses_says_why() {
    let _serial = start();
    let pool = Pool::builder()
        .runtime(Runtime::ChildProcess)
        .min_threads(1)
        .max_threads(1)
        .isolate_workers(true)
        .fork_server(true)
        .env(THREAD_ENV, "1")
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(finish(pool.run::<i32, _>((2, 3))), Ok(5));
    }
    pool.destroy().wait().unwrap();
    let unusable = events("fork server unusable");
    assert_eq!(unusable.len(), 1, "said once: {unusable:?}");
    let (level, fields) = &unusable[0];
    assert_eq!(*level, Level::WARN);
    let reason = &fields["reason"];
    // At least the two threads its `exports()` left (a runtime may start more).
    let threads = reason
        .split("had ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|count| count.parse::<u32>().ok());
    assert!(reason.contains("refused"), "{reason}");
    assert!(threads.is_some_and(|count| count >= 2), "{reason}");
}
