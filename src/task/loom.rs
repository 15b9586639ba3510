//! Model checks of the result slot under every interleaving loom finds:
//! `RUSTFLAGS="--cfg loom" cargo test --lib loom`.

use super::*;

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
