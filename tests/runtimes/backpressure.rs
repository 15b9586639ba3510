//! Waiting for room instead of failing: `Pool::reserve` resolves to a `Permit` once the
//! bounded queue has a place, first come, first granted; the permit's task takes that place
//! and is never refused with `QueueFull`; plain runs count the places permits hold; close and
//! destroy fail the waiting ones.

use std::time::Instant;

use tinypool::{Error, Export, Local, MaxQueue, Permit, Pool, Reserve, RunOptions, Runtime, Task};

use crate::common::{block_on, block_on_until, eventually, finish, next, within};
use crate::{bodies, held, hold, pool, Body, Hold};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            a_producer_held_by_reserve_loses_nothing,
            waiters_are_granted_in_order,
            a_dropped_reserve_gives_its_place_up,
            a_dropped_permit_frees_its_place,
            plain_runs_fail_queue_full_while_permits_hold_the_places,
            close_and_destroy_fail_waiting_reserves,
            an_unbounded_queue_grants_at_once,
            no_queue_refuses_at_once_with_no_queue,
            reserve_can_be_awaited,
            permits_call_typed_exports_in_their_places,
        ],
        threads: [],
    }
}

/// A one-worker pool with a queue of `max_queue` places, and its worker held by a "hold"
/// task until the test releases it: every task submitted meanwhile has to queue.
fn held_pool(runtime: Runtime, max_queue: usize) -> (Pool, Hold) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(max_queue))
        .build()
        .unwrap();
    let holding = hold(&pool, 0);
    assert_eq!(next(&holding.1), Ok(0), "the worker is held");
    (pool, holding)
}

/// Releases the held worker and checks what its task returned.
fn release((task, port): Hold) {
    port.send(5).unwrap();
    assert_eq!(held(task).3, 5);
}

/// The permit `reserve` resolves to; a bug that leaves it waiting fails the test.
fn granted(reserve: Reserve) -> Permit {
    within("a reserve", move || reserve.wait()).expect("a permit")
}

/// The error `reserve` resolves to; a bug that leaves it waiting fails the test.
fn refused(reserve: Reserve) -> Error {
    within("a reserve", move || reserve.wait()).expect_err("a refusal")
}

/// The answer of a `Reserve`, if it has one now (polled once, without blocking).
fn answered(reserve: &mut Reserve) -> Option<Result<Permit, Error>> {
    block_on_until(reserve, Instant::now())
}

#[track_caller]
fn assert_waiting(reserve: &mut Reserve, what: &str) {
    if let Some(answer) = answered(reserve) {
        panic!("{what} should still wait, but was answered: {answer:?}");
    }
}

/// A producer feeds 60 tasks through `reserve().wait()` into a `max_queue(2)` pool whose only
/// worker is held: it stops at the third, with the queue full, and goes on once the worker
/// runs again; every value arrives and no task is refused.
fn a_producer_held_by_reserve_loses_nothing(runtime: Runtime) {
    let (pool, holding) = held_pool(runtime, 2);
    let producer = {
        let pool = pool.clone();
        std::thread::spawn(move || -> Result<Vec<Task<i32>>, Error> {
            (0..60)
                .map(|i| Ok(pool.reserve().wait()?.run((i, i))))
                .collect()
        })
    };
    eventually("the producer has filled the queue", || {
        pool.queue_size() == 2
    });
    assert!(pool.needs_drain());
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::QueueFull));
    assert!(!producer.is_finished(), "the producer waits for room");

    release(holding);
    let tasks = within("the producer", move || producer.join().unwrap()).unwrap();
    let values: Vec<i32> = tasks.into_iter().map(|t| finish(t).unwrap()).collect();
    assert_eq!(values, (0..60).map(|i| i + i).collect::<Vec<_>>());
}

/// Three requests wait for the one place: each place that comes free (a permit dropped, a
/// task taken by the worker, a permit dropped again) goes to the oldest, and only to it.
fn waiters_are_granted_in_order(runtime: Runtime) {
    let (pool, holding) = held_pool(runtime, 1);
    let first = granted(pool.reserve());
    let mut waiting: Vec<Reserve> = (0..3).map(|_| pool.reserve()).collect();
    for reserve in &mut waiting {
        assert_waiting(reserve, "a request while the only place is held");
    }
    let [a, mut b, mut c] = <[Reserve; 3]>::try_from(waiting).unwrap();

    drop(first);
    let a = granted(a);
    assert_waiting(&mut b, "the second request");
    assert_waiting(&mut c, "the third request");
    let queued = a.run::<i32, _>((20, 1));
    assert_eq!(pool.queue_size(), 1);

    // The worker takes the queued task: its place goes to the second request.
    release(holding);
    let b = granted(b);
    assert_eq!(finish(queued), Ok(21));
    assert_waiting(&mut c, "the third request");
    drop(b);
    let c = granted(c);
    assert_eq!(finish(c.run::<i32, _>((2, 3))), Ok(5));
}

/// A request dropped while it waits leaves the line; one dropped after its place was granted
/// but before it was waited on hands that place to the next.
fn a_dropped_reserve_gives_its_place_up(runtime: Runtime) {
    let (pool, holding) = held_pool(runtime, 1);
    let permit = granted(pool.reserve());
    let mut gone = pool.reserve();
    assert_waiting(&mut gone, "a request while the only place is held");
    let next_in_line = pool.reserve();
    drop(gone);
    drop(permit);
    let permit = granted(next_in_line);

    let granted_unseen = pool.reserve();
    let mut last = pool.reserve();
    drop(permit); // The place goes to `granted_unseen`, which nobody waits on...
    assert_waiting(&mut last, "the request behind a granted one");
    drop(granted_unseen); // ...and so on to `last`.
    let permit = granted(last);

    let task = permit.run::<i32, _>((3, 4));
    release(holding);
    assert_eq!(finish(task), Ok(7));
}

/// An unused permit that is dropped frees its place: a plain run that was refused while it
/// held it now queues.
fn a_dropped_permit_frees_its_place(runtime: Runtime) {
    let (pool, holding) = held_pool(runtime, 1);
    let permit = granted(pool.reserve());
    assert!(pool.needs_drain());
    assert_eq!(finish(pool.run::<i32, _>((1, 1))), Err(Error::QueueFull));
    drop(permit);
    assert!(!pool.needs_drain());
    let queued = pool.run::<i32, _>((2, 2));
    assert_eq!(pool.queue_size(), 1);
    release(holding);
    assert_eq!(finish(queued), Ok(4));
    assert!(
        answered(&mut pool.reserve()).is_some_and(|answer| answer.is_ok()),
        "a place is free again"
    );
}

/// One task queued and two permits fill a queue of three: a plain run is refused, the
/// permits' tasks are not, and every queued task runs.
fn plain_runs_fail_queue_full_while_permits_hold_the_places(runtime: Runtime) {
    let (pool, holding) = held_pool(runtime, 3);
    let queued = pool.run::<i32, _>((1, 1));
    let permits = [granted(pool.reserve()), granted(pool.reserve())];
    assert_eq!(pool.queue_size(), 1, "a permit is not a task");
    assert!(pool.needs_drain());
    assert_eq!(finish(pool.run::<i32, _>((9, 9))), Err(Error::QueueFull));
    assert_waiting(&mut pool.reserve(), "a request with every place held");

    let reserved: Vec<Task<i32>> = permits
        .into_iter()
        .zip(2..)
        .map(|(permit, i)| permit.run((i, i)))
        .collect();
    assert_eq!(pool.queue_size(), 3);
    assert_eq!(finish(pool.run::<i32, _>((9, 9))), Err(Error::QueueFull));
    release(holding);
    assert_eq!(finish(queued), Ok(2));
    let values: Vec<i32> = reserved.into_iter().map(|t| finish(t).unwrap()).collect();
    assert_eq!(values, [4, 6]);
}

/// `close` fails a request blocked in `wait` with `Closed`, a permit held across it fails its
/// task with `Closed`, and later requests are refused at once; `destroy` does the same with
/// `Terminated`.
fn close_and_destroy_fail_waiting_reserves(runtime: Runtime) {
    for destroy in [false, true] {
        let expected = if destroy {
            Error::Terminated
        } else {
            Error::Closed
        };
        let (pool, holding) = held_pool(runtime, 1);
        let permit = granted(pool.reserve());
        let blocked = {
            let reserve = pool.reserve();
            std::thread::spawn(move || reserve.wait())
        };
        let mut awaited = pool.reserve();
        assert_waiting(&mut awaited, "a request while the only place is held");

        let stopping = if destroy {
            assert_eq!(pool.destroy().wait(), Ok(()));
            None
        } else {
            Some(pool.close())
        };
        let outcome = within("a waiting reserve", move || blocked.join().unwrap());
        assert_eq!(outcome.unwrap_err(), expected);
        let awaited = within("an awaited reserve", move || block_on(awaited));
        assert_eq!(awaited.unwrap_err(), expected);
        assert_eq!(finish(permit.run::<i32, _>((1, 2))), Err(expected.clone()));
        assert_eq!(refused(pool.reserve()), expected);

        if let Some(close) = stopping {
            release(holding);
            assert_eq!(close.wait(), Ok(()));
        } else {
            assert_eq!(finish(holding.0), Err(Error::Terminated));
        }
    }
}

/// With an unbounded queue there is nothing to count: a request is granted at once however
/// long the queue, and permits hold no place (plain runs still queue).
fn an_unbounded_queue_grants_at_once(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let holding = hold(&pool, 0);
    assert_eq!(next(&holding.1), Ok(0));
    let mut tasks: Vec<Task<i32>> = (0..10).map(|i| pool.run((i, i))).collect();
    let permits: Vec<Permit> = (0..20)
        .map(|_| answered(&mut pool.reserve()).expect("at once").unwrap())
        .collect();
    tasks.push(pool.run((10, 10)));
    tasks.extend(permits.into_iter().zip(11..).map(|(p, i)| p.run((i, i))));
    assert_eq!(pool.queue_size(), 31);
    release(holding);
    let values: Vec<i32> = tasks.into_iter().map(|t| finish(t).unwrap()).collect();
    assert_eq!(values, (0..31).map(|i| i + i).collect::<Vec<_>>());
}

/// A pool without a queue (`max_queue` 0) has no place to reserve: a request is refused at
/// once with `NoQueue`, even while a worker is idle, rather than wait for ever.
fn no_queue_refuses_at_once_with_no_queue(runtime: Runtime) {
    let pool = pool(runtime)
        .min_threads(1)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(0))
        .build()
        .unwrap();
    let answer = answered(&mut pool.reserve()).expect("answered at once");
    assert_eq!(answer.unwrap_err(), Error::NoQueue);
    assert_eq!(
        finish(pool.run::<i32, _>((1, 2))),
        Ok(3),
        "the idle worker runs"
    );
}

/// A request awaited (no async runtime: the crate's wakers) resolves when a place comes free
/// on another thread, and so does the permit's task.
fn reserve_can_be_awaited(runtime: Runtime) {
    let (pool, holding) = held_pool(runtime, 1);
    let permit = granted(pool.reserve());
    let mut reserve = pool.reserve();
    assert_waiting(&mut reserve, "a request while the only place is held");
    let dropper = std::thread::spawn(move || drop(permit));
    let permit = within("an awaited reserve", move || block_on(reserve)).unwrap();
    dropper.join().unwrap();
    let task = permit.run::<i32, _>((6, 7));
    release(holding);
    assert_eq!(within("an awaited task", move || block_on(task)), Ok(13));
}

/// A permit crosses threads (a producer hands it to whoever builds the task), and so does a
/// request.
const _: () = {
    const fn send<T: Send>() {}
    send::<Permit>();
    send::<Reserve>();
};

/// A handle to `crate::exports`'s "multiply".
const MULTIPLY: Export<(i32, i32), i32> = Export::new("multiply");
/// A local export (`typed::local_exports`): only a threads pool runs it.
const LOCAL_SQUARE: Export<u32, u32, Local> = Export::local("local_square");

/// `Permit::call` and `call_with` run a typed handle's export in the permit's place, never
/// refused for room (the handle names the export, not the options); a local handle runs on
/// threads, and a child-process pool refuses it at once and gives its place back.
fn permits_call_typed_exports_in_their_places(runtime: Runtime) {
    let (pool, holding) = held_pool(runtime, 2);
    let permits = [granted(pool.reserve()), granted(pool.reserve())];
    assert_eq!(finish(pool.run::<i32, _>((9, 9))), Err(Error::QueueFull));
    let [first, second] = permits;
    let product = first.call(MULTIPLY, (3, 4));
    let named = second.call_with(MULTIPLY, (5, 6), RunOptions::new().name("add"));
    assert_eq!(pool.queue_size(), 2, "both took their places");
    release(holding);
    assert_eq!(finish(product), Ok(12));
    assert_eq!(
        finish(named),
        Ok(30),
        "the handle's export, not the options' name"
    );
    pool.destroy().wait().unwrap();

    // A threads pool that exports the local function too (a child-process pool refuses to
    // build with one).
    let builder = match runtime {
        Runtime::Threads => {
            crate::pool(runtime).exports(crate::exports().merge(crate::typed::local_exports()))
        }
        _ => crate::pool(runtime),
    };
    let pool = builder
        .min_threads(1)
        .max_threads(1)
        .max_queue(MaxQueue::Limit(1))
        .build()
        .unwrap();
    let holding = hold(&pool, 0);
    assert_eq!(next(&holding.1), Ok(0), "the worker is held");
    let local = granted(pool.reserve()).call(LOCAL_SQUARE, 7);
    match runtime {
        Runtime::Threads => {
            assert_eq!(pool.queue_size(), 1);
            release(holding);
            assert_eq!(finish(local), Ok(49));
        }
        _ => {
            assert!(
                matches!(finish(local), Err(Error::InvalidOptions(ref m)) if m.contains("local_square")),
                "a child-process pool refuses a local handle"
            );
            // The only place came back: a new request is granted while the worker is held.
            let permit = granted(pool.reserve());
            let task = permit.call(MULTIPLY, (2, 3));
            release(holding);
            assert_eq!(finish(task), Ok(6));
        }
    }
    pool.destroy().wait().unwrap();
}
