//! The `serialization` option of the child-process runtime: what crosses with postcard (the
//! default) and with JSON (the `json` feature), and the clear error, pointing to JSON, when a
//! value cannot cross with postcard.
//!
//! The pools re-execute this test binary as their workers, which serve [`exports`] before the
//! harness starts (`tinypool::test_workers!`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tinypool::{worker, Error, Exports, Pool, RunOptions, Runtime, Serialization};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Circle { radius: f64 },
    Square(u32),
    Empty,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Payload {
    name: String,
    shapes: Vec<Shape>,
    tags: BTreeMap<String, Option<i64>>,
    bytes: Vec<u8>,
}

/// Needs a self-describing format: postcard cannot decode it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Loose {
    Number(i64),
    Text(String),
}

/// Serializes as a map of unknown length: postcard cannot encode it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Flat {
    id: u32,
    #[serde(flatten)]
    extra: BTreeMap<String, u32>,
}

fn flat() -> Flat {
    Flat {
        id: 7,
        extra: [("x".to_owned(), 1)].into(),
    }
}

/// The advice a value postcard cannot carry comes with.
const USE_JSON: &str = "use `Serialization::Json` (the crate's `json` feature)";

tinypool::test_workers!(exports);

fn exports() -> Exports {
    Exports::new()
        .export_default(|payload: Payload| payload)
        .export("loose", |value: Loose| value)
        .export("flat", |value: Flat| value)
        .export("data", |()| {
            worker::data::<Payload>().map_err(|e| e.to_string())
        })
}

fn payload() -> Payload {
    Payload {
        name: "ünïcode ✓".to_owned(),
        shapes: vec![
            Shape::Circle { radius: 1.5 },
            Shape::Square(4),
            Shape::Empty,
        ],
        tags: [("a".to_owned(), Some(-1)), ("b".to_owned(), None)].into(),
        bytes: (0..=255).collect(),
    }
}

fn pool(serialization: Serialization) -> Result<Pool, Error> {
    Pool::builder()
        .runtime(Runtime::ChildProcess)
        .min_threads(1)
        .max_threads(1)
        .serialization(serialization)
        .worker_data(payload())
        .build()
}

#[test]
fn postcard_carries_rich_types_both_ways() {
    let pool = pool(Serialization::Postcard).unwrap();
    assert_eq!(pool.run::<Payload, _>(payload()).wait(), Ok(payload()));
    let data =
        pool.run_with::<Result<Option<Payload>, String>, _>((), RunOptions::new().name("data"));
    assert_eq!(data.wait(), Ok(Ok(Some(payload()))));
    pool.destroy().wait().unwrap();
}

/// An untagged enum fails in the child, which cannot decode the argument; a flattened struct
/// in the pool, which cannot encode it. Each error names the type and says to use JSON.
#[test]
fn postcard_refuses_self_describing_types_with_a_clear_error() {
    let pool = pool(Serialization::Postcard).unwrap();
    let loose = pool.run_with::<Loose, _>(Loose::Text("x".into()), RunOptions::new().name("loose"));
    let flat = pool.run_with::<Flat, _>(flat(), RunOptions::new().name("flat"));
    for (result, type_name) in [
        (loose.wait().map(drop), "Loose"),
        (flat.wait().map(drop), "Flat"),
    ] {
        match result {
            Err(Error::Protocol { message }) => {
                assert!(message.contains(type_name), "{message}");
                assert!(
                    message.contains("postcard cannot carry this type"),
                    "{message}"
                );
                assert!(message.contains(USE_JSON), "{message}");
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }
    assert_eq!(
        pool.run::<Payload, _>(payload()).wait(),
        Ok(payload()),
        "the pool serves on"
    );
    pool.destroy().wait().unwrap();
}

#[cfg(feature = "json")]
#[test]
fn json_carries_what_postcard_cannot() {
    let pool = pool(Serialization::Json).unwrap();
    for value in [Loose::Number(-7), Loose::Text("seven".into())] {
        let echoed = pool.run_with::<Loose, _>(value.clone(), RunOptions::new().name("loose"));
        assert_eq!(echoed.wait(), Ok(value));
    }
    let echoed = pool.run_with::<Flat, _>(flat(), RunOptions::new().name("flat"));
    assert_eq!(echoed.wait(), Ok(flat()));
    assert_eq!(pool.run::<Payload, _>(payload()).wait(), Ok(payload()));
    pool.destroy().wait().unwrap();
}

#[cfg(not(feature = "json"))]
#[test]
fn json_without_the_feature_is_an_invalid_option() {
    match pool(Serialization::Json) {
        Err(Error::InvalidOptions(message)) => assert!(message.contains("json"), "{message}"),
        other => panic!("expected InvalidOptions, got {other:?}"),
    }
}
