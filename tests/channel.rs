//! Message channels between the caller and a running task, with worker threads only (spec
//! §1.10): bursts of messages in flight, `try_recv` once a message was provably sent,
//! `recv_async` inside a worker, and what a running task's channel keeps when the task is
//! aborted or the pool destroyed. The rest (both directions, draining, `Disconnected`, the
//! errors of `worker::port`) is tested for both runtimes in `tests/runtimes.rs`.

mod common;

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use common::{block_on, finish, Counter, Gate};
use tinypool::{channel, worker, Error, Exports, Pool, Port, RunOptions};

/// Like `recv`, but a hang fails the test.
fn recv<T: Send + 'static>(port: &Port<T>) -> Result<T, Error> {
    match port.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(message)) => Ok(message),
        Ok(None) => panic!("no message within 30 s"),
        Err(error) => Err(error),
    }
}

fn pool(exports: Exports) -> Pool {
    Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(2)
        .build()
        .unwrap()
}

fn with_channel<T>(port: Port<T>) -> RunOptions
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    RunOptions::new().channel(port)
}

/// Many messages both ways, in order: a ping-pong, then bursts. The worker stops when the
/// caller closes its side.
#[test]
fn many_messages_round_trip_in_order_both_ways() {
    let pool = pool(Exports::new().export_default(|()| -> Result<u64, String> {
        let port = worker::port::<u64>().map_err(|e| e.to_string())?;
        let mut echoed = 0;
        loop {
            match port.recv() {
                Ok(n) => port.send(n * 2).map_err(|e| e.to_string())?,
                Err(Error::Disconnected) => return Ok(echoed),
                Err(error) => return Err(error.to_string()),
            }
            echoed += 1;
        }
    }));
    let (main_port, worker_port) = channel::<u64>();
    let task = pool.run_with::<Result<u64, String>, _>((), with_channel(worker_port));

    for n in 0..500u64 {
        main_port.send(n).unwrap();
        assert_eq!(recv(&main_port), Ok(n * 2));
    }
    for n in 500..1500u64 {
        main_port.send(n).unwrap();
    }
    for n in 500..1500u64 {
        assert_eq!(recv(&main_port), Ok(n * 2));
    }
    main_port.close();
    assert_eq!(finish(task), Ok(Ok(1500)));
    assert_eq!(main_port.try_recv(), Err(Error::Disconnected));
    pool.destroy().wait().unwrap();
}

/// `try_recv` never blocks: `Ok(None)` while nothing is waiting, the message once it was sent.
#[test]
fn try_recv_returns_none_until_a_message_arrives() {
    let sent = Counter::new();
    let exports = {
        let sent = sent.clone();
        Exports::new().export_default(move |()| {
            let port = worker::port::<String>().unwrap();
            let go = port.recv().unwrap();
            port.send(format!("{go}!")).unwrap();
            sent.bump();
            // Stays alive until told to stop, so the channel is still open below.
            port.recv().unwrap()
        })
    };
    let pool = pool(exports);
    let (main_port, worker_port) = channel::<String>();
    let task = pool.run_with::<String, _>((), with_channel(worker_port));

    assert_eq!(main_port.try_recv(), Ok(None));
    main_port.send("go".to_owned()).unwrap();
    sent.wait_for(1);
    assert_eq!(main_port.try_recv(), Ok(Some("go!".to_owned())));
    assert_eq!(main_port.try_recv(), Ok(None));
    main_port.send("stop".to_owned()).unwrap();
    assert_eq!(finish(task), Ok("stop".to_owned()));
    assert_eq!(main_port.try_recv(), Err(Error::Disconnected));
    pool.destroy().wait().unwrap();
}

/// `recv_async` needs no async runtime: it is pending until the worker sends, then woken.
/// Inside a worker it works the same.
#[test]
fn recv_async_resolves_under_block_on() {
    let gate = Gate::new();
    let exports = {
        let gate = gate.clone();
        Exports::new().export_default(move |()| {
            let port = worker::port::<u32>().unwrap();
            let n = block_on(port.recv_async()).unwrap();
            gate.wait();
            port.send(n * 3).unwrap();
        })
    };
    let pool = pool(exports);
    let (main_port, worker_port) = channel::<u32>();
    let task = pool.run_with::<(), _>((), with_channel(worker_port));
    main_port.send(14).unwrap();

    // The worker replies only once we are pending (the gate opens on the first `Pending`),
    // so the reply has to wake us.
    let mut pending = 0;
    let reply = block_on(async {
        let mut recv = pin!(main_port.recv_async());
        poll_fn(|cx| match recv.as_mut().poll(cx) {
            Poll::Pending => {
                pending += 1;
                gate.open();
                Poll::Pending
            }
            ready => ready,
        })
        .await
    });
    assert_eq!(reply, Ok(42));
    assert!(pending >= 1);
    assert_eq!(finish(task), Ok(()));
    assert_eq!(block_on(main_port.recv_async()), Err(Error::Disconnected));
    pool.destroy().wait().unwrap();
}

/// A task that fails while its function runs (aborted, or the pool destroyed) ends there: its
/// channel closes at once, so a function blocked on the port wakes up with `Disconnected`
/// and its worker can stop.
#[test]
fn channel_of_a_running_task_closes_when_it_is_aborted_or_terminated() {
    let started = Counter::new();
    let exports = {
        let started = started.clone();
        Exports::new().export_default(move |()| {
            let port = worker::port::<u32>().unwrap();
            port.send(1).unwrap();
            started.bump();
            // Ignores `worker::aborted()`: only the channel can release it.
            port.recv().is_ok()
        })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();

    let controller = tinypool::AbortController::new();
    let (main_port, worker_port) = channel::<u32>();
    let options = with_channel(worker_port).signal(controller.signal());
    let aborted = pool.run_with::<bool, _>((), options);
    started.wait_for(1);
    controller.abort();
    assert_eq!(finish(aborted), Err(Error::Aborted { reason: None }));
    assert_eq!(
        recv(&main_port),
        Ok(1),
        "what was sent before is still there"
    );
    assert_eq!(recv(&main_port), Err(Error::Disconnected));
    assert_eq!(main_port.send(2), Err(Error::Disconnected));

    let (main_port, worker_port) = channel::<u32>();
    let terminated = pool.run_with::<bool, _>((), with_channel(worker_port));
    started.wait_for(2);
    let destroy = pool.destroy();
    assert_eq!(finish(terminated), Err(Error::Terminated));
    assert_eq!(recv(&main_port), Ok(1));
    assert_eq!(recv(&main_port), Err(Error::Disconnected));
    // Both functions returned, so every thread stops in time.
    assert_eq!(destroy.wait(), Ok(()));
}
