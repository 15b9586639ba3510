//! Tasks as futures and handles: awaited under tokio's runtimes and under a plain `block_on`
//! (no runtime at all), one at a time or many polled by one future; a pending task woken when
//! it finishes; `wait_timeout`, `is_finished`, and a dropped task that still runs.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tinypool::{AbortController, Error, RunOptions, Runtime, Task};

use crate::common::{block_on, finish, next, BOUND};
use crate::{bodies, call, held, hold, pool, Body};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            tasks_are_futures,
            tasks_can_be_awaited_on_tokio_runtimes,
            a_pending_task_is_woken_when_it_finishes,
            wait_timeout_gives_the_handle_back,
            a_dropped_task_still_runs,
            is_finished_tells_whether_wait_would_block,
            tasks_can_be_awaited_under_a_plain_block_on,
        ],
        threads: [],
    }
}

fn tasks_are_futures(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let sum = block_on(async {
        let a = pool.run::<i32, _>((1, 2));
        let b = pool.run::<i32, _>((3, 4));
        a.await.unwrap() + b.await.unwrap()
    });
    assert_eq!(sum, 10);
    block_on(pool.destroy()).unwrap();
}

/// Turns a hang of an awaited future into a failure.
async fn within_bound<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .expect("the future did not resolve in time")
}

/// Tasks are futures for tokio: spawned onto a multi-thread runtime (a `Task` is `Send`), and
/// awaited on a current-thread runtime without blocking its only thread (the task there is
/// released by another future on that thread), one at a time or many polled by one future.
fn tasks_can_be_awaited_on_tokio_runtimes(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    multi.block_on(async {
        assert_eq!(within_bound(pool.run::<i32, _>((4, 6))).await, Ok(10));
        let handles: Vec<_> = (0..50)
            .map(|i| tokio::spawn(pool.run::<i32, _>((i, i))))
            .collect();
        for (i, handle) in (0..50).zip(handles) {
            assert_eq!(within_bound(handle).await.unwrap(), Ok(2 * i));
        }
    });

    let current = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    current.block_on(async {
        let (task, port) = hold(&pool, 0);
        let opener = tokio::spawn(async move {
            tokio::task::yield_now().await;
            port.send(5).unwrap();
            port // Kept open until the task is done.
        });
        let result = within_bound(task).await;
        assert_eq!(result.unwrap().unwrap().3, 5);
        drop(opener.await.unwrap());

        let tasks: Vec<Task<i32>> = (0..10).map(|x| pool.run((x, 1))).collect();
        assert_eq!(
            within_bound(join_all(tasks)).await,
            (1..11).map(Ok).collect::<Vec<_>>()
        );
        assert_eq!(within_bound(pool.destroy()).await, Ok(()));
    });
}

/// A task awaited while its function is still blocked is woken when it finishes (released
/// only once the task is known to be pending).
fn a_pending_task_is_woken_when_it_finishes(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let (mut task, port) = hold(&pool, 0);
    assert_eq!(next(&port), Ok(0));
    let mut pending = 0;
    let result = block_on(poll_fn(|cx| match Pin::new(&mut task).poll(cx) {
        Poll::Pending => {
            pending += 1;
            if pending == 1 {
                port.send(21).unwrap();
            }
            Poll::Pending
        }
        ready => ready,
    }));
    assert_eq!(result.unwrap().unwrap().3, 21);
    assert!(pending >= 1);
    pool.destroy().wait().unwrap();
}

/// `wait_timeout` gives the handle back while the task is not done; it keeps running and can
/// be waited on or awaited again.
fn wait_timeout_gives_the_handle_back(runtime: Runtime) {
    let pool = pool(runtime).max_threads(1).build().unwrap();
    let (task, port) = hold(&pool, 0);
    let task = task
        .wait_timeout(Duration::from_millis(5))
        .expect_err("blocked until released");
    let task = task
        .wait_timeout(Duration::ZERO)
        .expect_err("still blocked");
    assert_eq!(next(&port), Ok(0));
    assert!(!task.is_finished());
    port.send(3).unwrap();
    match task.wait_timeout(BOUND) {
        Ok(result) => assert_eq!(result.unwrap().unwrap().3, 3),
        Err(_) => panic!("the task did not resolve in time"),
    }

    // After a timeout the same handle can be awaited, or waited on without a limit.
    let (task, port) = hold(&pool, 1);
    let task = task.wait_timeout(Duration::ZERO).unwrap_err();
    port.send(4).unwrap();
    assert_eq!(block_on(task).unwrap().unwrap().3, 4);
    let (task, port) = hold(&pool, 2);
    let task = task.wait_timeout(Duration::from_millis(1)).unwrap_err();
    port.send(5).unwrap();
    assert_eq!(task.wait().unwrap().unwrap().3, 5);
    pool.destroy().wait().unwrap();
}

/// Dropping a `Task` detaches it: the function still runs, queued or on an idle pool (the
/// one worker's "counter" shows how many ran).
fn a_dropped_task_still_runs(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (blocking, port) = hold(&pool, 0);
    drop(call::<u32>(&pool, "counter"));
    drop(call::<u32>(&pool, "counter"));
    assert_eq!(pool.queue_size(), 2);
    assert_eq!(next(&port), Ok(0));
    port.send(0).unwrap();
    held(blocking);
    assert_eq!(finish(call::<u32>(&pool, "counter")), Ok(2));
    drop(call::<u32>(&pool, "counter"));
    assert_eq!(finish(call::<u32>(&pool, "counter")), Ok(4));
    pool.destroy().wait().unwrap();
}

/// `is_finished` is false while the function runs and true once the result is in (errors
/// included), so that waiting no longer blocks.
fn is_finished_tells_whether_wait_would_block(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    let (first, port) = hold(&pool, 0);
    let second = pool.run_with::<i32, _>((2, 3), RunOptions::new().name("multiply"));
    assert!(!first.is_finished());
    assert!(!second.is_finished());
    assert_eq!(format!("{first:?}"), "Task { finished: false }");
    assert_eq!(next(&port), Ok(0));
    port.send(0).unwrap();
    // One worker runs the tasks in order: once the second is done, the first is too.
    assert_eq!(finish(second), Ok(6));
    assert!(first.is_finished());
    assert_eq!(format!("{first:?}"), "Task { finished: true }");
    held(first);

    let mismatch = pool.run::<String, _>((1, 1));
    let other = pool.run_with::<i32, _>((3, 3), RunOptions::new().name("multiply"));
    assert_eq!(finish(other), Ok(9));
    assert!(mismatch.is_finished());
    assert!(matches!(finish(mismatch), Err(Error::TypeMismatch { .. })));
    pool.destroy().wait().unwrap();
}

/// Waits for every future of `futures`, polling them all each time one is woken: a minimal
/// `join_all` that needs no runtime.
struct JoinAll<F: Future> {
    futures: Vec<Pin<Box<F>>>,
    outputs: Vec<Option<F::Output>>,
}

fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> JoinAll<F> {
    let futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let outputs = futures.iter().map(|_| None).collect();
    JoinAll { futures, outputs }
}

impl<F: Future> Future for JoinAll<F>
where
    F::Output: Unpin,
{
    type Output = Vec<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        for (future, output) in this.futures.iter_mut().zip(this.outputs.iter_mut()) {
            if output.is_none() {
                if let Poll::Ready(value) = future.as_mut().poll(cx) {
                    *output = Some(value);
                }
            }
        }
        if this.outputs.iter().all(Option::is_some) {
            Poll::Ready(this.outputs.iter_mut().map(|o| o.take().unwrap()).collect())
        } else {
            Poll::Pending
        }
    }
}

/// No runtime at all: a hand-written `block_on` drives tasks, one and many at once, errors
/// included.
fn tasks_can_be_awaited_under_a_plain_block_on(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    assert_eq!(block_on(pool.run::<i32, _>((1, 2))), Ok(3));

    let tasks: Vec<Task<i32>> = (0..100).map(|i| pool.run((i, 1))).collect();
    let results = block_on(join_all(tasks));
    assert_eq!(results, (0..100).map(|i| Ok(i + 1)).collect::<Vec<_>>());

    let mismatch = block_on(pool.run::<i64, _>((1, 2)));
    assert!(
        matches!(mismatch, Err(Error::TypeMismatch { .. })),
        "{mismatch:?}"
    );
    let controller = AbortController::new();
    controller.abort();
    let options = RunOptions::new().signal(controller.signal());
    assert_eq!(
        block_on(pool.run_with::<i32, _>((1, 2), options)),
        Err(Error::Aborted { reason: None })
    );
    assert_eq!(block_on(pool.destroy()), Ok(()));
    assert_eq!(block_on(pool.run::<i32, _>((1, 2))), Err(Error::Terminated));
}
