//! Message channels between the caller and a running task (spec §1.10): both ways, in order,
//! and in bursts; what the caller drains once the task ended; `Disconnected` on either side;
//! `recv_timeout`, `try_recv` and `recv_async`; the errors of `worker::port`. Threads only:
//! `try_recv` once a message was provably sent, `recv_async` inside a worker, and what a
//! running task's channel keeps when the task is aborted or the pool destroyed.

use std::any::type_name;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tinypool::{channel, worker, Error, Exports, Pool, Port, RunOptions, Runtime, Task};

use crate::common::{block_on, finish, next, Counter, Gate, BOUND};
use crate::{bodies, call, one_thread, pool, Body};

/// This module's test bodies, in the order they run.
pub fn bodies() -> Vec<(&'static str, Body)> {
    bodies! {
        both: [
            channels_carry_messages_both_ways,
            many_messages_round_trip_in_order_both_ways,
            the_caller_drains_what_was_sent_then_gets_disconnected,
            send_to_a_finished_task_fails_with_disconnected,
            recv_timeout_and_try_recv_give_none_while_nothing_was_sent,
            recv_async_is_woken_by_the_tasks_message,
            worker_port_of_the_wrong_type_is_a_type_mismatch,
            worker_port_without_a_channel_is_no_channel,
            a_task_blocked_on_recv_wakes_with_disconnected_when_the_caller_drops_its_port,
        ],
        threads: [
            try_recv_returns_none_until_a_message_arrives,
            recv_async_resolves_under_block_on,
            channel_of_a_running_task_closes_when_it_is_aborted_or_terminated,
        ],
    }
}

fn channels_carry_messages_both_ways(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (port, theirs) = tinypool::channel::<u32>();
    // Sent before the task starts: it waits in the channel.
    port.send(1).unwrap();
    let task: Task<u32> = pool.run_with((), RunOptions::new().name("echo").channel(theirs));
    assert_eq!(next(&port), Ok(2));
    for n in 10..110 {
        port.send(n).unwrap();
        assert_eq!(next(&port), Ok(n + 1));
    }
    drop(port);
    assert_eq!(finish(task), Ok(101));
    pool.destroy().wait().unwrap();
}

/// Many messages both ways, in order: a ping-pong, then bursts (a thousand in flight each
/// way). The task stops when the caller closes its side.
fn many_messages_round_trip_in_order_both_ways(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (port, theirs) = tinypool::channel::<u32>();
    let task: Task<u32> = pool.run_with((), RunOptions::new().name("echo").channel(theirs));
    for n in 0..500 {
        port.send(n).unwrap();
        assert_eq!(next(&port), Ok(n + 1));
    }
    for n in 500..1500 {
        port.send(n).unwrap();
    }
    for n in 500..1500 {
        assert_eq!(next(&port), Ok(n + 1));
    }
    port.close();
    assert_eq!(finish(task), Ok(1500));
    assert_eq!(port.try_recv(), Err(Error::Disconnected));
    pool.destroy().wait().unwrap();
}

/// When the task ends its side closes: the caller still receives everything it sent, then
/// every way of receiving reports `Disconnected`.
fn the_caller_drains_what_was_sent_then_gets_disconnected(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (port, theirs) = tinypool::channel::<u32>();
    let task = pool
        .run_with::<Result<(), String>, _>(3u32, RunOptions::new().name("send_n").channel(theirs));
    assert_eq!(finish(task), Ok(Ok(())));

    assert_eq!(port.recv(), Ok(0));
    assert_eq!(port.try_recv(), Ok(Some(1)));
    assert_eq!(port.recv_timeout(BOUND), Ok(Some(2)));
    assert_eq!(port.recv(), Err(Error::Disconnected));
    assert_eq!(port.try_recv(), Err(Error::Disconnected));
    assert_eq!(port.recv_timeout(BOUND), Err(Error::Disconnected));
    assert_eq!(block_on(port.recv_async()), Err(Error::Disconnected));
    pool.destroy().wait().unwrap();
}

/// Sending to a task that has finished is an error, never a panic, from any clone.
fn send_to_a_finished_task_fails_with_disconnected(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (port, theirs) = tinypool::channel::<u32>();
    let task = pool
        .run_with::<Result<(), String>, _>(0u32, RunOptions::new().name("send_n").channel(theirs));
    assert_eq!(finish(task), Ok(Ok(())));
    assert_eq!(port.send(1), Err(Error::Disconnected));
    assert_eq!(port.clone().send(2), Err(Error::Disconnected));
    pool.destroy().wait().unwrap();
}

/// `recv_timeout` and `try_recv` give `Ok(None)` while the task has sent nothing, and the
/// message once it has.
fn recv_timeout_and_try_recv_give_none_while_nothing_was_sent(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (port, theirs) = tinypool::channel::<u32>();
    let task: Task<u32> = pool.run_with((), RunOptions::new().name("echo").channel(theirs));
    // "echo" sends nothing before it hears from us.
    assert_eq!(port.recv_timeout(Duration::from_millis(5)), Ok(None));
    assert_eq!(port.recv_timeout(Duration::ZERO), Ok(None));
    assert_eq!(port.try_recv(), Ok(None));
    port.send(41).unwrap();
    assert_eq!(port.recv_timeout(BOUND), Ok(Some(42)));
    assert_eq!(port.try_recv(), Ok(None));
    drop(port);
    assert_eq!(finish(task), Ok(1));
    pool.destroy().wait().unwrap();
}

/// `recv_async` needs no async runtime: it is pending until the task replies, then woken (the
/// task is sent its number only once the receive is known to be pending).
fn recv_async_is_woken_by_the_tasks_message(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (port, theirs) = tinypool::channel::<u32>();
    let task: Task<u32> = pool.run_with((), RunOptions::new().name("echo").channel(theirs));
    let mut pending = 0;
    let reply = block_on(async {
        let mut recv = pin!(port.recv_async());
        poll_fn(|cx| match recv.as_mut().poll(cx) {
            Poll::Pending => {
                pending += 1;
                if pending == 1 {
                    port.send(41).unwrap();
                }
                Poll::Pending
            }
            ready => ready,
        })
        .await
    });
    assert_eq!(reply, Ok(42));
    assert!(pending >= 1);
    drop(port);
    assert_eq!(finish(task), Ok(1));
    pool.destroy().wait().unwrap();
}

/// `worker::port` with another message type than the channel's is a `TypeMismatch` naming
/// both types.
fn worker_port_of_the_wrong_type_is_a_type_mismatch(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    let (_port, theirs) = tinypool::channel::<String>();
    let options = RunOptions::new().name("port_type").channel(theirs);
    let task = pool.run_with::<Option<(String, String, String)>, _>((), options);
    let string = type_name::<String>();
    assert_eq!(
        finish(task),
        Ok(Some((
            string.to_owned(),
            "u32".to_owned(),
            format!(
                "the task's channel has the wrong type: it carries `{string}`, the function \
                 asked for a port of `u32`"
            )
        )))
    );
    pool.destroy().wait().unwrap();
}

/// A task given no channel gets `NoChannel`; a channel given to one task is not seen by the
/// next on the same worker; outside a worker there is none either.
fn worker_port_without_a_channel_is_no_channel(runtime: Runtime) {
    let pool = pool(runtime).min_threads(1).max_threads(1).build().unwrap();
    assert_eq!(
        finish(call::<String>(&pool, "has_port")).as_deref(),
        Ok("none")
    );
    let (_port, theirs) = tinypool::channel::<u32>();
    let with = pool.run_with::<String, _>((), RunOptions::new().name("has_port").channel(theirs));
    assert_eq!(finish(with).as_deref(), Ok("ok"));
    assert_eq!(
        finish(call::<String>(&pool, "has_port")).as_deref(),
        Ok("none")
    );
    assert_eq!(worker::port::<u32>().unwrap_err(), Error::NoChannel);
    pool.destroy().wait().unwrap();
}

/// A task blocked on `recv` wakes when the caller drops its side: it first drains what was
/// sent, then gets `Disconnected`, and its sends fail.
fn a_task_blocked_on_recv_wakes_with_disconnected_when_the_caller_drops_its_port(runtime: Runtime) {
    let pool = pool(runtime).build().unwrap();
    for sent in [vec![], vec![1, 2]] {
        let (port, theirs) = tinypool::channel::<u32>();
        let options = RunOptions::new().name("drain").channel(theirs);
        let task = pool.run_with::<Result<(Vec<u32>, bool, bool), String>, _>((), options);
        assert_eq!(next(&port), Ok(0), "the task runs");
        for &n in &sent {
            port.send(n).unwrap();
        }
        drop(port);
        assert_eq!(finish(task), Ok(Ok((sent, true, true))));
    }
    pool.destroy().wait().unwrap();
}

// ---- Threads only -------------------------------------------------------------------------------

/// A pool of 1 to 2 worker threads serving `exports`.
fn threads_pool(exports: Exports) -> Pool {
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

/// `try_recv` never blocks: `Ok(None)` while nothing is waiting, the message once it was sent.
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
    let pool = threads_pool(exports);
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
    let pool = threads_pool(exports);
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
    let pool = one_thread(exports);

    let controller = tinypool::AbortController::new();
    let (main_port, worker_port) = channel::<u32>();
    let options = with_channel(worker_port).signal(controller.signal());
    let aborted = pool.run_with::<bool, _>((), options);
    started.wait_for(1);
    controller.abort();
    assert_eq!(finish(aborted), Err(Error::Aborted { reason: None }));
    assert_eq!(
        next(&main_port),
        Ok(1),
        "what was sent before is still there"
    );
    assert_eq!(next(&main_port), Err(Error::Disconnected));
    assert_eq!(main_port.send(2), Err(Error::Disconnected));

    let (main_port, worker_port) = channel::<u32>();
    let terminated = pool.run_with::<bool, _>((), with_channel(worker_port));
    started.wait_for(2);
    let destroy = pool.destroy();
    assert_eq!(finish(terminated), Err(Error::Terminated));
    assert_eq!(next(&main_port), Ok(1));
    assert_eq!(next(&main_port), Err(Error::Disconnected));
    // Both functions returned, so every thread stops in time.
    assert_eq!(destroy.wait(), Ok(()));
}
