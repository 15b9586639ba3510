//! Model checks of the scheduler's own code, a real [`Scheduler`] driving threads-runtime
//! workers: `RUSTFLAGS="--cfg loom" cargo test --lib loom`.
//!
//! Time: loom models no clock, and a timed wait under loom is an untimed one (src/sync.rs).
//! So every deadline here is either already past when the scheduler computes it, or far
//! beyond the model's run, and no outcome depends on how much real time passes:
//! - `idle_timeout` is zero: an idle worker above `min_threads` finds its idle deadline
//!   (`now + 0`) already passed after its brief spin on the doorbell, never parks, and
//!   retires unless work arrived. Every interleaving of that exit with a submit is explored.
//!   (With `min_threads` workers, the idle ones have no deadline and park untimed.)
//! - `terminate_timeout` is an hour: `join_threads` only ever ends by the last worker's
//!   notification, as it must whenever workers finish their functions, so a model left
//!   waiting there is a real lost notification, which loom reports as a deadlock.
//!
//! loom allows five threads per model, the models' own included, and every worker the
//! scheduler spawns (a replacement too) is one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::{Scheduler, SchedulerOptions};
use crate::abort::AbortController;
use crate::exports::Exports;
use crate::hooks::WorkerHooks;
use crate::options::RunOptions;
use crate::reserve::Reserve;
use crate::runtime::thread::Threads;
use crate::runtime::{Flow, Launcher, Reporter, RunningWorker, WorkerOptions, WorkerStart};
use crate::task::{Job, Task};
use crate::Error;

/// `terminate_timeout`: never reached while a model runs (see the module's doc).
const FAR: Duration = Duration::from_secs(3600);

/// Checks `f` under every interleaving with at most `preemptions` preemptions (a switch
/// away from a thread that could go on; switches where a thread blocks are free).
/// Unbounded, these models do not finish in minutes: each scheduler step is a few locks
/// and atomics, and DPOR still leaves millions of interleavings. The bounds keep each
/// model within seconds; `LOOM_MAX_PREEMPTIONS` overrides them for a deeper local run.
fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = ::loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(preemptions));
    builder.check(f);
}

/// A threads-runtime pool of `min_threads..=max_threads` workers that idle out at once,
/// whose default export adds.
fn pool(min_threads: usize, max_threads: usize) -> Arc<Scheduler> {
    bounded(min_threads, max_threads, None)
}

/// [`pool`] with a `max_queue`.
fn bounded(min_threads: usize, max_threads: usize, max_queue: Option<usize>) -> Arc<Scheduler> {
    build(min_threads, max_threads, max_queue, |threads| {
        Box::new(threads)
    })
}

/// [`bounded`], its threads runtime wrapped by `launcher`.
fn build(
    min_threads: usize,
    max_threads: usize,
    max_queue: Option<usize>,
    launcher: impl FnOnce(Threads) -> Box<dyn Launcher>,
) -> Arc<Scheduler> {
    let options = SchedulerOptions {
        min_threads,
        max_threads,
        idle_timeout: Duration::ZERO,
        max_queue,
        isolate_workers: false,
        thread_name: "tinypool".to_owned(),
        stack_size: None,
        hooks: WorkerHooks::default(),
        task_timeout: None,
        record_timing: false,
        async_exports: Default::default(),
    };
    let threads = Threads {
        exports: Arc::new(Exports::new().export_default(|(a, b): (i32, i32)| a + b)),
        worker_data: None,
    };
    let worker_options = WorkerOptions {
        terminate_timeout: FAR,
        teardown: None,
        setup: None,
        concurrent_tasks_per_worker: 1,
        reporter: Reporter::default(),
    };
    Scheduler::new(options, launcher(threads), worker_options)
}

/// A pool like [`pool`]'s (no `min_threads`) whose workers send a task ahead whenever the
/// scheduler lets them ([`GivesBack`]).
fn pool_sending_ahead(max_threads: usize) -> Arc<Scheduler> {
    build(0, max_threads, None, |threads| Box::new(GivesBack(threads)))
}

/// The threads runtime, its workers sending a task ahead as a child's driver does, and giving
/// it back the first time they finish the task before it: the scheduler's half of sending
/// ahead (`take_ahead`, `hand_back`), explored with every worker always taking one.
struct GivesBack(Threads);

impl Launcher for GivesBack {
    fn start(
        &self,
        pool: &Arc<WorkerOptions>,
        me: &WorkerStart,
    ) -> Result<Box<dyn RunningWorker>, Error> {
        Ok(Box::new(GivingBack {
            worker: self.0.start(pool, me)?,
            started: VecDeque::new(),
            took_back: false,
        }))
    }
}

struct GivingBack {
    worker: Box<dyn RunningWorker>,
    /// The tasks started and not finished: the oldest, and the one ahead.
    started: VecDeque<Arc<dyn Job>>,
    took_back: bool,
}

impl RunningWorker for GivingBack {
    fn starts_ahead(&self) -> bool {
        true
    }

    fn may_send_ahead(&self) -> bool {
        self.started.len() <= 1 && !self.took_back
    }

    fn start(&mut self, jobs: &[Arc<dyn Job>]) {
        self.started.extend(jobs.iter().cloned());
        assert!(self.started.len() <= 2, "one task past the depth at most");
    }

    fn finish(&mut self, job: &Arc<dyn Job>) -> Flow {
        assert!(std::ptr::addr_eq(
            Arc::as_ptr(job),
            Arc::as_ptr(&self.started[0])
        ));
        if self.started.len() == 2 && !self.took_back {
            self.started.pop_back();
            self.took_back = true;
            return Flow::TookBack;
        }
        let flow = self.worker.finish(job);
        self.started.pop_front();
        self.took_back = false;
        flow
    }

    fn stop(self: Box<Self>) {
        self.worker.stop();
    }
}

/// `Pool::run_with`: the default export, with an abort signal or without.
fn run(scheduler: &Arc<Scheduler>, arg: (i32, i32), abort: Option<&AbortController>) -> Task<i32> {
    let options = match abort {
        Some(abort) => RunOptions::new().signal(abort.signal()),
        None => RunOptions::new(),
    };
    scheduler.submit(arg, options)
}

/// The bookkeeping agrees with itself: ids unique, in range and marked in use, each live
/// worker with its thread record.
fn check_consistent(scheduler: &Scheduler) {
    let state = scheduler.lock();
    let mut in_use = vec![false; scheduler.options.max_threads];
    for worker in &state.workers {
        assert!((1..=in_use.len()).contains(&worker.id), "id out of range");
        assert!(
            !in_use[worker.id - 1],
            "two live workers share id {}",
            worker.id
        );
        in_use[worker.id - 1] = true;
        assert!(
            state
                .threads
                .iter()
                .any(|r| r.serial == worker.serial && !r.finished),
            "a live worker without a running thread"
        );
    }
    // The list grows as workers are reserved: what it lacks is no one's.
    assert!(
        state.ids_in_use.len() <= in_use.len(),
        "more ids than max_threads"
    );
    let beyond = in_use.get(state.ids_in_use.len()..).unwrap_or_default();
    assert!(
        beyond.iter().all(|used| !used),
        "a worker's id is not in the list"
    );
    in_use.truncate(state.ids_in_use.len());
    assert_eq!(
        state.ids_in_use, in_use,
        "ids_in_use disagrees with the workers"
    );
    if !state.intake_open {
        assert_eq!(scheduler.intake.len(), 0, "a closed intake holds tasks");
    }
}

/// `Pool::destroy().wait()`: every worker retired, every thread finished.
fn destroy(scheduler: &Arc<Scheduler>) {
    scheduler.shut_down();
    assert_eq!(
        scheduler.join_threads(scheduler.stop_deadline(), None),
        Ok(())
    );
    let state = scheduler.lock();
    assert!(state.workers.is_empty() && state.queue.is_empty());
    assert!(state.threads.iter().all(|record| record.finished));
    assert!(state.ids_in_use.iter().all(|used| !used));
}

/// A worker idles out the moment it has nothing to do (`min_threads` 0, zero
/// `idle_timeout`), racing the next submit: that task goes to it, or to a new worker once
/// it is gone, never nowhere.
#[test]
fn loom_submit_races_a_worker_idling_out() {
    model(4, || {
        let scheduler = pool(0, 1);
        assert_eq!(run(&scheduler, (1, 2), None).wait(), Ok(3));
        check_consistent(&scheduler);
        assert_eq!(run(&scheduler, (3, 4), None).wait(), Ok(7));
        check_consistent(&scheduler);
        assert_eq!(scheduler.completed(), 2);
        destroy(&scheduler);
    });
}

/// Two callers submit at once to a one-worker pool whose worker idles out between tasks:
/// the second task is handed to the busy worker's queue, to the idle worker, or to a new
/// worker, and both resolve with their own value.
#[test]
fn loom_concurrent_submits_each_resolve_once() {
    model(2, || {
        let scheduler = pool(0, 1);
        let other = {
            let scheduler = scheduler.clone();
            ::loom::thread::spawn(move || run(&scheduler, (10, 20), None).wait())
        };
        assert_eq!(run(&scheduler, (1, 2), None).wait(), Ok(3));
        assert_eq!(other.join().unwrap(), Ok(30));
        check_consistent(&scheduler);
        assert_eq!(scheduler.completed(), 2);
        destroy(&scheduler);
    });
}

/// An abort fired from another thread while the worker runs (or is about to run, or has
/// just finished) the task: the caller sees one outcome, the worker is retired only if
/// the abort won, and its replacement (`min_threads` 1) takes the next task.
#[test]
fn loom_abort_races_publish() {
    model(2, || {
        let scheduler = pool(1, 1);
        let controller = AbortController::new();
        let task = run(&scheduler, (1, 2), Some(&controller));
        let aborter = ::loom::thread::spawn(move || controller.abort());
        let outcome = task.wait();
        assert!(
            matches!(outcome, Ok(3) | Err(Error::Aborted { reason: None })),
            "{outcome:?}"
        );
        aborter.join().unwrap();
        check_consistent(&scheduler);
        let ids: Vec<usize> = scheduler.workers().iter().map(|w| w.id).collect();
        assert_eq!(ids, [1], "one worker, the first or its replacement");
        assert_eq!(run(&scheduler, (3, 4), None).wait(), Ok(7));
        destroy(&scheduler);
    });
}

/// `destroy` from another thread while the task runs, or before it starts, or after it
/// finished: the task resolves (value or `Terminated`), every worker thread finishes and
/// `join_threads` sees it, and later tasks are refused.
#[test]
fn loom_destroy_races_a_running_task() {
    model(4, || {
        let scheduler = pool(0, 1);
        let task = run(&scheduler, (1, 2), None);
        let destroyer = {
            let scheduler = scheduler.clone();
            ::loom::thread::spawn(move || {
                scheduler.shut_down();
                scheduler.join_threads(scheduler.stop_deadline(), None)
            })
        };
        let outcome = task.wait();
        assert!(
            matches!(outcome, Ok(3) | Err(Error::Terminated)),
            "{outcome:?}"
        );
        assert_eq!(destroyer.join().unwrap(), Ok(()));
        destroy(&scheduler);
        assert_eq!(run(&scheduler, (3, 4), None).wait(), Err(Error::Terminated));
    });
}

/// A one-worker pool that idles out at once, three tasks submitted back to back: the
/// second joins the queue while the worker is busy (opening the intake), the third may go
/// through the intake while the worker empties the queue, idles and leaves. Whatever the
/// order, every task resolves with its own value.
#[test]
fn loom_tasks_in_the_intake_are_never_lost() {
    model(2, || {
        let scheduler = pool(0, 1);
        let tasks = [(1, 2), (3, 4), (5, 6)].map(|arg| run(&scheduler, arg, None));
        let results = tasks.map(Task::wait);
        assert_eq!(results, [Ok(3), Ok(7), Ok(11)]);
        check_consistent(&scheduler);
        assert_eq!(scheduler.completed(), 3);
        destroy(&scheduler);
    });
}

/// `destroy` racing submits that may go through the open intake: each task resolves with
/// its value or `Terminated`, and nothing is left in the intake.
#[test]
fn loom_destroy_races_the_intake() {
    model(2, || {
        let scheduler = pool(1, 1);
        let first = [(1, 2), (3, 4)].map(|arg| run(&scheduler, arg, None));
        let destroyer = {
            let scheduler = scheduler.clone();
            ::loom::thread::spawn(move || scheduler.shut_down())
        };
        let last = run(&scheduler, (5, 6), None);
        destroyer.join().unwrap();
        let [a, b] = first.map(Task::wait);
        let outcomes = [a, b, last.wait()];
        for (outcome, value) in outcomes.into_iter().zip([3, 7, 11]) {
            assert!(
                matches!(&outcome, Ok(v) if *v == value) || outcome == Err(Error::Terminated),
                "{outcome:?}"
            );
        }
        assert_eq!(scheduler.intake.len(), 0);
        destroy(&scheduler);
    });
}

/// `close` from another thread while tasks run, wait in the queue, or go through the intake:
/// each task submitted before resolves with its value, the one racing the close with its
/// value or `Closed`; the close ends once every worker is gone and its thread finished.
#[test]
fn loom_close_races_the_intake() {
    model(2, || {
        let scheduler = pool(1, 1);
        let first = [(1, 2), (3, 4)].map(|arg| run(&scheduler, arg, None));
        let closer = {
            let scheduler = scheduler.clone();
            ::loom::thread::spawn(move || {
                scheduler.close();
                scheduler.wait_closed(None)
            })
        };
        let last = run(&scheduler, (5, 6), None).wait();
        assert_eq!(closer.join().unwrap(), Ok(()));
        assert_eq!(first.map(Task::wait), [Ok(3), Ok(7)]);
        assert!(matches!(last, Ok(11) | Err(Error::Closed)), "{last:?}");
        let state = scheduler.lock();
        assert!(state.workers.is_empty() && state.queue.is_empty());
        assert!(state.threads.iter().all(|record| record.finished));
        assert_eq!(scheduler.intake.len(), 0);
    });
}

/// `idle` racing the worker that finishes the only task: it resolves only once that task
/// has been published.
#[test]
fn loom_idle_waits_for_the_published_task() {
    model(3, || {
        let scheduler = pool(1, 1);
        let task = run(&scheduler, (1, 2), None);
        assert_eq!(scheduler.idle().wait(), Ok(()));
        assert!(task.is_finished());
        assert_eq!(task.wait(), Ok(3));
        destroy(&scheduler);
    });
}

/// The places permits hold, and how many requests wait for one.
fn permits(scheduler: &Scheduler) -> (usize, usize) {
    let state = scheduler.lock();
    (state.permits.outstanding(), state.permits.waiting())
}

/// A `max_queue(1)` pool: a permit holds the one place and a request waits for it. The
/// permit is dropped on another thread while the request is dropped here, before its grant,
/// or after it (granted, never seen): either way the place is free again, never lost nor
/// counted twice, and the next request is granted at once and its task runs.
#[test]
fn loom_a_dropped_permit_races_a_dropped_reserve() {
    model(3, || {
        let scheduler = bounded(0, 1, Some(1));
        let permit = Reserve::new(scheduler.clone(), None, true).wait().unwrap();
        let waiting = Reserve::new(scheduler.clone(), None, true);
        assert_eq!(permits(&scheduler), (1, 1));
        let dropper = ::loom::thread::spawn(move || drop(permit));
        drop(waiting);
        dropper.join().unwrap();
        assert_eq!(permits(&scheduler), (0, 0), "the place is free");
        let permit = Reserve::new(scheduler.clone(), None, true).wait().unwrap();
        assert_eq!(permits(&scheduler), (1, 0));
        assert_eq!(permit.run::<i32, _>((1, 2)).wait(), Ok(3));
        assert_eq!(permits(&scheduler), (0, 0));
        destroy(&scheduler);
    });
}

/// A `max_queue(1)` pool of one worker: the second task may wait in the queue when a request
/// comes, which then waits until the worker takes that task. Whichever comes first, the
/// request is granted (no lost wake-up), and every task resolves with its value.
#[test]
fn loom_a_worker_taking_from_the_queue_grants_a_waiter() {
    model(3, || {
        let scheduler = bounded(1, 1, Some(1));
        let first = run(&scheduler, (1, 2), None);
        let second = run(&scheduler, (3, 4), None);
        let permit = Reserve::new(scheduler.clone(), None, true).wait().unwrap();
        assert_eq!(permit.run::<i32, _>((5, 6)).wait(), Ok(11));
        assert_eq!([first.wait(), second.wait()], [Ok(3), Ok(7)]);
        assert_eq!(permits(&scheduler), (0, 0));
        check_consistent(&scheduler);
        destroy(&scheduler);
    });
}

/// `close` on another thread races the permit's drop that would grant the waiting request:
/// the request gets the place (and its task runs, or fails with `Closed` if the close came
/// first) or fails with `Closed`; it never waits for ever, and no place stays counted.
#[test]
fn loom_close_races_a_grant() {
    model(3, || {
        let scheduler = bounded(0, 1, Some(1));
        let permit = Reserve::new(scheduler.clone(), None, true).wait().unwrap();
        let waiting = Reserve::new(scheduler.clone(), None, true);
        let closer = {
            let scheduler = scheduler.clone();
            ::loom::thread::spawn(move || scheduler.close())
        };
        drop(permit);
        match waiting.wait() {
            Ok(permit) => {
                let outcome = permit.run::<i32, _>((1, 2)).wait();
                assert!(matches!(outcome, Ok(3) | Err(Error::Closed)), "{outcome:?}");
            }
            Err(error) => assert_eq!(error, Error::Closed),
        }
        closer.join().unwrap();
        assert_eq!(permits(&scheduler), (0, 0));
        assert_eq!(scheduler.wait_closed(None), Ok(()));
    });
}

/// `Pool::stats`, once the pool is destroyed (every worker's count folded in): one task
/// resolved, and `outcome`'s kind counted once.
fn counted_once(scheduler: &Scheduler, outcome: &Result<i32, Error>) {
    let stats = scheduler.stats();
    assert_eq!(stats.resolved(), 1, "the task counted once");
    match outcome {
        Ok(_) => assert_eq!(stats.succeeded(), 1),
        Err(error) => assert_eq!(stats.failed(error.kind()), 1),
    }
}

/// `Task::abort` of a plain task (no signal, no timeout: it need not run alone) from another
/// thread, while the worker runs it, has just staged its result, or has published it: the
/// caller sees one outcome, counted once in the pool's statistics, and the worker (or its
/// replacement, if the abort won) takes the next task.
#[test]
fn loom_task_abort_races_publish() {
    model(2, || {
        let scheduler = pool(1, 1);
        let task = Arc::new(run(&scheduler, (1, 2), None));
        let aborter = {
            let task = task.clone();
            ::loom::thread::spawn(move || task.abort())
        };
        aborter.join().unwrap();
        let Ok(task) = Arc::try_unwrap(task) else {
            panic!("the aborter let go of the task")
        };
        let outcome = task.wait();
        assert!(
            matches!(outcome, Ok(3) | Err(Error::Aborted { reason: None })),
            "{outcome:?}"
        );
        check_consistent(&scheduler);
        assert_eq!(run(&scheduler, (3, 4), None).wait(), Ok(7));
        destroy(&scheduler);
        let stats = scheduler.stats();
        assert_eq!(stats.resolved(), 2, "each task counted once");
        let first_failed = u64::from(outcome.is_err());
        assert_eq!(stats.failed(crate::ErrorKind::Aborted), first_failed);
        assert_eq!(stats.succeeded(), 2 - first_failed);
    });
}

/// A task whose timeout (1 ns) has passed by the time anyone looks: the pool's timer thread
/// fires it while the worker refuses to start it (its deadline passed), runs it, or
/// publishes it. One outcome, counted once; the timer thread ends with the pool.
#[test]
fn loom_a_timeout_races_the_worker() {
    model(2, || {
        let scheduler = pool(1, 1);
        let after = Duration::from_nanos(1);
        let task = scheduler.submit::<_, i32>((1, 2), RunOptions::new().timeout(after));
        let outcome = task.wait();
        assert!(
            outcome == Ok(3) || outcome == Err(Error::TimedOut { after }),
            "{outcome:?}"
        );
        check_consistent(&scheduler);
        destroy(&scheduler);
        counted_once(&scheduler, &outcome);
        assert!(!scheduler.timer.has_thread(), "the timer thread was joined");
    });
}

/// Tasks queued behind two busy workers, which each take one ahead and give it back: every
/// task resolves once, with its own value, on whichever worker, and nothing is left behind.
#[test]
fn loom_a_task_given_back_runs_once() {
    model(2, || {
        let scheduler = pool_sending_ahead(2);
        let tasks: Vec<Task<i32>> = (0..4).map(|i| run(&scheduler, (i, 1), None)).collect();
        for (i, task) in (0..).zip(tasks) {
            assert_eq!(task.wait(), Ok(i + 1));
        }
        check_consistent(&scheduler);
        assert_eq!(scheduler.completed(), 4);
        destroy(&scheduler);
    });
}

/// Two tasks on one worker, which takes the second ahead and gives it back, while the first is
/// aborted (`Task::abort`): an abort that comes while the second is ahead only fails the first
/// (a child would run on), and the worker is retired as it gives the second back (its child
/// stopped then). Whenever the abort comes, each task resolves once, the second with its
/// value, on this worker or its replacement, and the pool still serves.
#[test]
fn loom_an_abort_races_a_task_given_back() {
    model(2, || {
        let scheduler = pool_sending_ahead(1);
        let first = run(&scheduler, (1, 2), None);
        let second = run(&scheduler, (3, 4), None);
        first.abort();
        let outcome = first.wait();
        assert!(
            matches!(outcome, Ok(3) | Err(Error::Aborted { reason: None })),
            "{outcome:?}"
        );
        assert_eq!(second.wait(), Ok(7));
        check_consistent(&scheduler);
        destroy(&scheduler);
        assert_eq!(scheduler.stats().resolved(), 2, "each task counted once");
    });
}
