//! Message channels between the caller and a running task (the seed's MessageChannel
//! example, spec §1.10): both directions, blocking and non-blocking receives, what happens
//! when the task ends, and the errors of `worker::port`.

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

/// The seed's example: the worker receives the main thread's message and replies.
#[test]
fn worker_receives_the_callers_message_and_replies() {
    let pool = pool(Exports::new().default(|()| -> Result<String, String> {
        let port = worker::port::<String>().map_err(|e| e.to_string())?;
        let message = port.recv().map_err(|e| e.to_string())?;
        port.send("Hello from worker thread!".to_owned())
            .map_err(|e| e.to_string())?;
        Ok(message)
    }));
    let (main_port, worker_port) = channel::<String>();
    let task = pool.run_with::<Result<String, String>, _>((), with_channel(worker_port));

    main_port
        .send("Hello from main thread!".to_owned())
        .unwrap();
    assert_eq!(recv(&main_port).as_deref(), Ok("Hello from worker thread!"));
    assert_eq!(finish(task), Ok(Ok("Hello from main thread!".to_owned())));
    pool.destroy().wait().unwrap();
}

/// Many messages both ways, in order: a ping-pong, then bursts. The worker stops when the
/// caller closes its side.
#[test]
fn many_messages_round_trip_in_order_both_ways() {
    let pool = pool(Exports::new().default(|()| -> Result<u64, String> {
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

/// When the task ends its side closes: the caller still receives everything it sent, then
/// every way of receiving reports `Disconnected`.
#[test]
fn caller_drains_what_was_sent_then_gets_disconnected() {
    let pool = pool(Exports::new().default(|n: u32| {
        let port = worker::port::<u32>().unwrap();
        for i in 0..n {
            port.send(i).unwrap();
        }
    }));
    let (main_port, worker_port) = channel::<u32>();
    let task = pool.run_with::<(), _>(3u32, with_channel(worker_port));
    assert_eq!(finish(task), Ok(()));

    assert_eq!(main_port.recv(), Ok(0));
    assert_eq!(main_port.try_recv(), Ok(Some(1)));
    assert_eq!(main_port.recv_timeout(Duration::from_secs(30)), Ok(Some(2)));
    assert_eq!(main_port.recv(), Err(Error::Disconnected));
    assert_eq!(main_port.try_recv(), Err(Error::Disconnected));
    assert_eq!(
        main_port.recv_timeout(Duration::from_secs(30)),
        Err(Error::Disconnected)
    );
    assert_eq!(block_on(main_port.recv_async()), Err(Error::Disconnected));
    pool.destroy().wait().unwrap();
}

/// Sending to a task that has finished is an error, never a panic.
#[test]
fn send_to_a_finished_task_fails_with_disconnected() {
    let pool = pool(Exports::new().default(|()| worker::port::<String>().is_ok()));
    let (main_port, worker_port) = channel::<String>();
    let task = pool.run_with::<bool, _>((), with_channel(worker_port));
    assert_eq!(finish(task), Ok(true));
    assert_eq!(main_port.send("late".to_owned()), Err(Error::Disconnected));
    // A clone of the caller's side sees the same.
    assert_eq!(
        main_port.clone().send("late".to_owned()),
        Err(Error::Disconnected)
    );
    pool.destroy().wait().unwrap();
}

/// `recv_timeout` gives `Ok(None)` when nothing arrives in time, and the message once it does.
#[test]
fn recv_timeout_returns_none_on_timeout() {
    let pool = pool(Exports::new().default(|()| {
        let port = worker::port::<u32>().unwrap();
        let n = port.recv().unwrap();
        port.send(n + 1).unwrap();
    }));
    let (main_port, worker_port) = channel::<u32>();
    let task = pool.run_with::<(), _>((), with_channel(worker_port));

    // The worker sends nothing before it hears from us.
    assert_eq!(main_port.recv_timeout(Duration::from_millis(5)), Ok(None));
    assert_eq!(main_port.recv_timeout(Duration::ZERO), Ok(None));
    main_port.send(41).unwrap();
    assert_eq!(
        main_port.recv_timeout(Duration::from_secs(30)),
        Ok(Some(42))
    );
    assert_eq!(finish(task), Ok(()));
    pool.destroy().wait().unwrap();
}

/// `try_recv` never blocks: `Ok(None)` while nothing is waiting, the message once it was sent.
#[test]
fn try_recv_returns_none_until_a_message_arrives() {
    let sent = Counter::new();
    let exports = {
        let sent = sent.clone();
        Exports::new().default(move |()| {
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
        Exports::new().default(move |()| {
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

/// When the caller closes its side, the worker drains what was sent, then gets
/// `Disconnected`, and its sends fail.
#[test]
fn worker_sees_disconnected_once_the_caller_closes() {
    let pool = pool(Exports::new().default(|()| {
        let port = worker::port::<u32>().unwrap();
        let mut got = Vec::new();
        let end = loop {
            match port.recv() {
                Ok(n) => got.push(n),
                Err(error) => break error,
            }
        };
        (
            got,
            end == Error::Disconnected,
            port.send(9) == Err(Error::Disconnected),
        )
    }));
    let (main_port, worker_port) = channel::<u32>();
    let task = pool.run_with::<(Vec<u32>, bool, bool), _>((), with_channel(worker_port));
    main_port.send(1).unwrap();
    main_port.send(2).unwrap();
    drop(main_port);
    assert_eq!(finish(task), Ok((vec![1, 2], true, true)));
    pool.destroy().wait().unwrap();
}

/// `worker::port` with another message type than the channel's is a `TypeMismatch` naming
/// both types.
#[test]
fn worker_port_of_the_wrong_type_is_a_type_mismatch() {
    let pool = pool(Exports::new().default(|()| match worker::port::<u32>() {
        Err(Error::TypeMismatch { expected, found }) => Some((expected, found)),
        _ => None,
    }));
    let (_main_port, worker_port) = channel::<String>();
    let task = pool.run_with::<Option<(String, String)>, _>((), with_channel(worker_port));
    let (expected, found) = finish(task).unwrap().expect("a TypeMismatch");
    assert!(expected.contains("String"), "{expected}");
    assert_eq!(found, "u32");
    pool.destroy().wait().unwrap();
}

/// A task given no channel gets `NoChannel`, and so does code outside any worker.
#[test]
fn worker_port_without_a_channel_is_no_channel() {
    let pool =
        pool(Exports::new().default(|()| matches!(worker::port::<u32>(), Err(Error::NoChannel))));
    assert_eq!(finish(pool.run::<bool, _>(())), Ok(true));

    // A channel given to one task is not seen by the next one on the same worker.
    let (_main_port, worker_port) = channel::<u32>();
    let pool1 = Pool::builder()
        .exports(Exports::new().default(|()| worker::port::<u32>().is_ok()))
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();
    assert_eq!(
        finish(pool1.run_with::<bool, _>((), with_channel(worker_port))),
        Ok(true)
    );
    assert_eq!(finish(pool1.run::<bool, _>(())), Ok(false));

    assert_eq!(worker::port::<u32>().unwrap_err(), Error::NoChannel);
    pool.destroy().wait().unwrap();
    pool1.destroy().wait().unwrap();
}

/// A task that ends without running (cancelled while queued) closes its channel too: the
/// caller is not left waiting for messages that can never come.
#[test]
fn channel_of_a_task_cancelled_in_the_queue_is_disconnected() {
    let (release, started) = (Gate::new(), Counter::new());
    let exports = {
        let (release, started) = (release.clone(), started.clone());
        Exports::new()
            .default(move |()| {
                started.bump();
                release.wait();
            })
            .export("talk", |()| {
                worker::port::<u32>().unwrap().send(1).unwrap();
            })
    };
    let pool = Pool::builder()
        .exports(exports)
        .min_threads(1)
        .max_threads(1)
        .build()
        .unwrap();
    let blocking = pool.run::<(), _>(());
    started.wait_for(1);
    let (main_port, worker_port) = channel::<u32>();
    let talk = pool.run_with::<(), _>((), with_channel(worker_port).name("talk"));
    assert_eq!(pool.queue_size(), 1);

    pool.cancel_pending_tasks();
    assert_eq!(main_port.try_recv(), Err(Error::Disconnected));
    assert_eq!(main_port.send(2), Err(Error::Disconnected));
    assert_eq!(finish(talk), Err(Error::Cancelled));

    release.open();
    assert_eq!(finish(blocking), Ok(()));
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
        Exports::new().default(move |()| {
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
