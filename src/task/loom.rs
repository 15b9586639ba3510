//! Model checks of the result slot under every interleaving loom finds:
//! `RUSTFLAGS="--cfg loom" cargo test --lib loom`.

use super::slot::Counted;
use super::*;
use crate::sync::{AtomicUsize, Ordering};

fn aborted() -> Error {
    Error::Aborted { reason: None }
}

#[test]
fn a_result_reaches_a_waiter_that_parks() {
    ::loom::model(|| {
        let slot = Arc::new(Slot::<u32>::new());
        let worker = {
            let slot = slot.clone();
            ::loom::thread::spawn(move || assert!(slot.complete(Ok(7))))
        };
        assert_eq!(slot.wait(None), Some(Ok(7)));
        worker.join().unwrap();
    });
}

#[test]
fn complete_races_abort_and_exactly_one_wins() {
    ::loom::model(|| {
        let slot = Arc::new(Slot::<u32>::new());
        let worker = {
            let slot = slot.clone();
            ::loom::thread::spawn(move || {
                slot.stage(Ok(1));
                slot.publish(&Tally::owned())
            })
        };
        let abort = {
            let slot = slot.clone();
            ::loom::thread::spawn(move || slot.complete(Err(aborted())))
        };
        let published = worker.join().unwrap();
        let aborted_first = abort.join().unwrap();
        assert!(published != aborted_first, "exactly one resolves the task");
        let expected = if published { Ok(1) } else { Err(aborted()) };
        assert_eq!(slot.wait(None), Some(expected));
    });
}

#[test]
fn complete_races_dropping_the_handle() {
    ::loom::model(|| {
        let slot = Arc::new(Slot::<String>::new());
        let worker = {
            let slot = slot.clone();
            ::loom::thread::spawn(move || slot.complete(Ok("done".to_owned())))
        };
        drop(Task::<String>::new(slot));
        assert!(
            worker.join().unwrap(),
            "the worker still resolves a detached task"
        );
    });
}

#[test]
fn a_waker_registered_before_completion_is_woken() {
    ::loom::model(|| {
        let slot = Arc::new(Slot::<u32>::new());
        let worker = {
            let slot = slot.clone();
            ::loom::thread::spawn(move || slot.complete(Ok(3)))
        };
        assert_eq!(::loom::future::block_on(Task::<u32>::new(slot)), Ok(3));
        worker.join().unwrap();
    });
}

#[test]
fn an_abort_while_the_argument_is_lent_out_drops_it_once() {
    ::loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(Slot::<u32, Counted>::with_arg(Counted(drops.clone())));
        let driver = {
            let slot = slot.clone();
            ::loom::thread::spawn(move || {
                // Encoded, sent, and its result staged straight from `Pending`.
                let lent = slot.lend_arg(|arg| Arc::strong_count(&arg.0));
                slot.stage(Ok(1));
                (lent.is_some(), slot.publish(&Tally::owned()))
            })
        };
        let aborted_first = slot.complete(Err(aborted()));
        let (lent, published) = driver.join().unwrap();
        assert!(published != aborted_first, "exactly one resolves the task");
        assert!(lent || aborted_first, "only a resolved task lends nothing");
        let expected = if published { Ok(1) } else { Err(aborted()) };
        assert_eq!(slot.wait(None), Some(expected));
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "dropped once the task resolved"
        );
        drop(slot);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "and never twice");
    });
}
