//! `Task` as a future, with worker threads only: many tasks polled by one future (a minimal
//! `join_all`) on a current-thread tokio runtime and under a plain `block_on`, errors
//! included. Tokio's runtimes, waking, `wait_timeout`, `is_finished` and dropping a task are
//! tested for both runtimes in `tests/runtimes.rs`.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use common::{block_on, Gate};
use tinypool::{AbortController, Error, Exports, Pool, RunOptions, Task};

/// Turns a hang of an awaited future into a failure.
async fn within_30s<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("the future did not resolve within 30 s")
}

fn adder(max_threads: usize) -> Pool {
    Pool::builder()
        .exports(Exports::new().export_default(|(a, b): (i32, i32)| a + b))
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

/// On a current-thread runtime, awaiting a task must not block the runtime's only thread:
/// the task here finishes only once another future on that thread has run.
#[tokio::test(flavor = "current_thread")]
async fn awaiting_a_task_does_not_block_a_current_thread_runtime() {
    let gate = Gate::new();
    let exports = {
        let gate = gate.clone();
        Exports::new().export_default(move |x: u32| {
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
