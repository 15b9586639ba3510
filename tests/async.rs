//! `Task` as a future and as a blocking handle: under tokio (multi-thread and current-thread
//! runtimes) and under a plain `block_on`, many at once, `wait_timeout`, `is_finished`, and
//! dropping a task.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use common::{block_on, finish, Counter, Gate};
use tinypool::{AbortController, Error, Exports, Pool, RunOptions, Task};

/// Turns a hang of an awaited future into a failure.
async fn within_30s<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("the future did not resolve within 30 s")
}

fn adder(max_threads: usize) -> Pool {
    Pool::builder()
        .exports(Exports::new().default(|(a, b): (i32, i32)| a + b))
        .min_threads(1)
        .max_threads(max_threads)
        .build()
        .unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_can_be_awaited_on_a_multi_thread_tokio_runtime() {
    let pool = adder(2);
    assert_eq!(within_30s(pool.run::<i32, _>((4, 6))).await, Ok(10));

    // Spawned onto the runtime: a `Task` is `Send + 'static`.
    let handles: Vec<_> = (0..50)
        .map(|i| tokio::spawn(pool.run::<i32, _>((i, i))))
        .collect();
    for (i, handle) in (0..50).zip(handles) {
        assert_eq!(within_30s(handle).await.unwrap(), Ok(2 * i));
    }
    assert_eq!(within_30s(pool.destroy()).await, Ok(()));
}

/// On a current-thread runtime, awaiting a task must not block the runtime's only thread:
/// the task here finishes only once another future on that thread has run.
#[tokio::test(flavor = "current_thread")]
async fn awaiting_a_task_does_not_block_a_current_thread_runtime() {
    let gate = Gate::new();
    let exports = {
        let gate = gate.clone();
        Exports::new().default(move |x: u32| {
            gate.wait();
            x + 1
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .max_threads(1)
        .build()
        .unwrap();
    let task = pool.run::<u32, _>(1u32);
    let opener = tokio::spawn(async move {
        tokio::task::yield_now().await;
        gate.open();
    });
    assert_eq!(within_30s(task).await, Ok(2));
    opener.await.unwrap();

    let tasks: Vec<Task<u32>> = (0..10u32).map(|x| pool.run(x)).collect();
    assert_eq!(
        within_30s(join_all(tasks)).await,
        (1..11u32).map(Ok).collect::<Vec<_>>()
    );
    assert_eq!(within_30s(pool.destroy()).await, Ok(()));
}

/// No runtime at all: a hand-written `block_on` drives tasks, one and many at once, errors
/// included.
#[test]
fn tasks_can_be_awaited_under_a_plain_block_on() {
    let pool = adder(2);
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

/// A task awaited while it is still blocked in its function is woken when it finishes.
#[test]
fn a_pending_task_is_woken_when_it_finishes() {
    let (gate, started) = (Gate::new(), Counter::new());
    let exports = {
        let (gate, started) = (gate.clone(), started.clone());
        Exports::new().default(move |x: u32| {
            started.bump();
            gate.wait();
            x * 2
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .max_threads(1)
        .build()
        .unwrap();
    let mut task = pool.run::<u32, _>(21u32);
    started.wait_for(1);
    let mut pending = 0;
    let result = block_on(std::future::poll_fn(|cx| {
        match Pin::new(&mut task).poll(cx) {
            Poll::Pending => {
                // Open the gate only once the task is known to be pending.
                pending += 1;
                gate.open();
                Poll::Pending
            }
            ready => ready,
        }
    }));
    assert_eq!(result, Ok(42));
    assert!(pending >= 1);
    pool.destroy().wait().unwrap();
}

/// `wait_timeout` gives the handle back when the task is not done; the task keeps running and
/// can be waited on again.
#[test]
fn wait_timeout_returns_the_handle_and_the_task_can_be_waited_again() {
    let (gate, started) = (Gate::new(), Counter::new());
    let exports = {
        let (gate, started) = (gate.clone(), started.clone());
        Exports::new().default(move |x: u32| {
            started.bump();
            gate.wait();
            x + 100
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .max_threads(1)
        .build()
        .unwrap();
    let task = pool.run::<u32, _>(1u32);
    let task = task
        .wait_timeout(Duration::from_millis(5))
        .expect_err("blocked behind the gate");
    let task = task
        .wait_timeout(Duration::ZERO)
        .expect_err("still blocked");
    started.wait_for(1);
    assert!(!task.is_finished());

    gate.open();
    match task.wait_timeout(Duration::from_secs(30)) {
        Ok(result) => assert_eq!(result, Ok(101)),
        Err(_) => panic!("the task did not resolve within 30 s"),
    }

    // Time out, then block without a limit.
    let (gate2, exports) = {
        let gate = Gate::new();
        let g = gate.clone();
        (
            gate,
            Exports::new().default(move |x: u32| {
                g.wait();
                x
            }),
        )
    };
    let pool2 = Pool::builder()
        .exports(exports)
        .max_threads(1)
        .build()
        .unwrap();
    let task = pool2.run::<u32, _>(5u32);
    let task = task.wait_timeout(Duration::from_millis(1)).unwrap_err();
    gate2.open();
    assert_eq!(task.wait(), Ok(5));

    // And after a timeout the same handle can be awaited.
    let task = pool.run::<u32, _>(2u32);
    assert_eq!(block_on(task), Ok(102));
    pool.destroy().wait().unwrap();
    pool2.destroy().wait().unwrap();
}

/// Dropping a `Task` detaches it: the function still runs, queued or already running.
#[test]
fn dropping_a_task_detaches_it_and_the_function_still_runs() {
    let (gate, ran) = (Gate::new(), Counter::new());
    let exports = {
        let (gate, ran) = (gate.clone(), ran.clone());
        Exports::new()
            .default(move |()| gate.wait())
            .export("count", move |()| ran.bump())
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();
    let blocking = pool.run::<(), _>(());
    // Queued behind the blocking task, then dropped.
    drop(pool.run_with::<(), _>((), RunOptions::new().name("count")));
    drop(pool.run_with::<(), _>((), RunOptions::new().name("count")));
    assert_eq!(pool.queue_size(), 2);
    gate.open();
    ran.wait_for(2);
    assert_eq!(finish(blocking), Ok(()));

    // Dropped right away, on an idle pool.
    drop(pool.run_with::<(), _>((), RunOptions::new().name("count")));
    ran.wait_for(3);
    pool.destroy().wait().unwrap();
    assert_eq!(ran.get(), 3);
}

/// `is_finished` is false while the function runs and true once the result is in, so that
/// `wait` no longer blocks.
#[test]
fn is_finished_tells_whether_wait_would_block() {
    let gate = Gate::new();
    let exports = {
        let gate = gate.clone();
        Exports::new()
            .default(move |x: u32| {
                gate.wait();
                x
            })
            .export("quick", |x: u32| x)
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();
    let first = pool.run::<u32, _>(1u32);
    let second = pool.run_with::<u32, _>(2u32, RunOptions::new().name("quick"));
    assert!(!first.is_finished());
    assert!(!second.is_finished());
    assert_eq!(format!("{first:?}"), "Task { finished: false }");

    gate.open();
    // One worker runs the tasks in order: once the second is done, the first is too.
    assert_eq!(finish(second), Ok(2));
    assert!(first.is_finished());
    assert_eq!(format!("{first:?}"), "Task { finished: true }");
    assert_eq!(first.wait(), Ok(1));

    // Failures count as finished too.
    let mismatch = pool.run::<String, _>(1u32);
    let other = pool.run_with::<u32, _>(3u32, RunOptions::new().name("quick"));
    assert_eq!(finish(other), Ok(3));
    assert!(mismatch.is_finished());
    assert!(matches!(mismatch.wait(), Err(Error::TypeMismatch { .. })));
    pool.destroy().wait().unwrap();
}
