//! Attacks on the fork server (`Builder::fork_server`, Linux): a server stopped or killed at
//! the wrong moment, workers killed from outside, started by the hundred, aborted, recycled,
//! limited, forking their own children; whatever happens, every task resolves, nothing waits
//! for ever, and nothing is left behind (no process, no zombie, no descriptor in the pool, none
//! of the server's in a worker).
//!
//! A `harness = false` binary: one test at a time, so that the descriptors and the child
//! processes this process holds can be compared before and after each pool.

mod common;

#[cfg(target_os = "linux")]
mod attacks {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use tinypool::{worker, AbortController, Builder, Error, Exports, Pool, Port, RunOptions};
    use tinypool::{ResourceLimits, Runtime, Task};

    use crate::common::procfs::{child_pids, fd_diff, gone, live, open_fds, parent_of};
    use crate::common::{collect_errors, destroy, eventually, finish, named, recycle, BOUND};

    /// What the `fault` export does, after it sent its pid on the task's channel.
    #[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
    pub enum Fault {
        /// Returns the next message from the channel.
        WaitForMessage,
        /// Exits with the next message from the channel as its code.
        ExitWithMessage,
        /// An infinite loop (two minutes: a bug cannot leave it behind for long).
        Spin,
        /// The same, deaf to SIGTERM.
        SpinIgnoringSigterm,
        /// Forks a helper (no exec) that holds the worker's channel for two minutes, sends its
        /// pid, then exits with this code.
        ForkThenExit(i32),
    }

    /// The pid the setup export ran in (0: it did not run in this process).
    static SET_UP_IN: AtomicU32 = AtomicU32::new(0);

    /// What the teardown export's panic says, followed by its worker's pid.
    const TEARDOWN: &str = "teardown ran in";

    pub fn exports() -> Exports {
        crate::common::quiet_panics(TEARDOWN);
        Exports::new()
            .export_default(|()| place())
            .export("fault", fault)
            .export("open_fds", |()| {
                (0..1024)
                    // SAFETY: F_GETFD only reads a descriptor's flags; -1 for one not open.
                    .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
                    .collect::<Vec<i32>>()
            })
            .export("setup", |()| {
                SET_UP_IN.store(std::process::id(), Ordering::SeqCst);
            })
            .export("set_up_in", |()| {
                (std::process::id(), SET_UP_IN.load(Ordering::SeqCst))
            })
            .export("teardown", |()| -> u32 {
                panic!("{TEARDOWN} {}", std::process::id())
            })
            .export_async("async_place", |delay: u64| async move {
                // Yields once, so that the future really is polled twice.
                let mut yielded = false;
                std::future::poll_fn(|cx| {
                    if yielded {
                        std::task::Poll::Ready(())
                    } else {
                        yielded = true;
                        cx.waker().wake_by_ref();
                        std::task::Poll::Pending
                    }
                })
                .await;
                std::thread::sleep(Duration::from_millis(delay));
                place()
            })
    }

    /// Where a task ran: its process and that process's parent.
    type Place = (u32, u32);

    fn place() -> Place {
        // SAFETY: getppid has no preconditions.
        (std::process::id(), unsafe { libc::getppid() } as u32)
    }

    fn fault(fault: Fault) -> u32 {
        let port = worker::port::<u32>().expect("a channel");
        port.send(std::process::id()).expect("the test listens");
        match fault {
            Fault::WaitForMessage => port.recv().unwrap_or(u32::MAX),
            Fault::ExitWithMessage => std::process::exit(port.recv().unwrap_or(0) as i32),
            Fault::Spin => spin(),
            Fault::SpinIgnoringSigterm => {
                // SAFETY: sets a signal disposition.
                unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
                spin()
            }
            Fault::ForkThenExit(code) => {
                // SAFETY: the forked child only calls async-signal-safe functions.
                let helper = unsafe {
                    match libc::fork() {
                        0 => {
                            libc::sleep(120);
                            libc::_exit(0)
                        }
                        pid => pid,
                    }
                };
                assert!(helper > 0, "fork failed");
                port.send(helper as u32).expect("the test listens");
                std::process::exit(code)
            }
        }
    }

    fn spin() -> u32 {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            std::hint::spin_loop();
        }
        u32::MAX
    }

    // ---- Helpers --------------------------------------------------------------------------------

    fn forking(max: usize) -> Builder {
        Pool::builder()
            .runtime(Runtime::ChildProcess)
            .min_threads(0)
            .max_threads(max)
            .fork_server(true)
            .terminate_timeout(Duration::from_secs(5))
    }

    /// Starts `fault` with a channel: the task, the test's side of the channel, and the pid of
    /// the worker running it.
    fn start_fault(pool: &Pool, fault: Fault, options: RunOptions) -> (Task<u32>, Port<u32>, u32) {
        let (ours, theirs) = tinypool::channel::<u32>();
        let task = pool.run_with::<u32, _>(fault, options.name("fault").channel(theirs));
        let pid = ours
            .recv_timeout(BOUND)
            .expect("the task sends its pid first")
            .expect("the task started within the bound");
        (task, ours, pid)
    }

    fn signal(pid: u32, signal: libc::c_int) {
        // SAFETY: kill(2) on a process of this test's pool (or its helper).
        unsafe { libc::kill(pid as libc::pid_t, signal) };
    }

    /// A process killed when the test is done with it, even if the test fails: a stopped
    /// server is continued and killed, a helper a worker forked is killed.
    struct Killed(u32);

    impl Drop for Killed {
        fn drop(&mut self) {
            signal(self.0, libc::SIGKILL);
            signal(self.0, libc::SIGCONT);
        }
    }

    /// What this process holds before a pool, to compare with what it holds after.
    struct Before {
        fds: std::collections::BTreeMap<i32, String>,
        children: Vec<u32>,
    }

    impl Before {
        fn now() -> Self {
            Before {
                fds: open_fds(),
                children: child_pids(),
            }
        }

        /// No child process (not even a zombie) and no descriptor more than before.
        fn nothing_left(&self) {
            eventually("no child process left", || child_pids() == self.children);
            let after = open_fds();
            assert!(
                after == self.fds,
                "descriptors: {}",
                fd_diff(&self.fds, &after)
            );
        }
    }

    /// `test`, then a check that it left no child process (not even a zombie) and no
    /// descriptor more than it found.
    pub fn leaves_nothing(test: fn()) -> Box<dyn Fn()> {
        Box::new(move || {
            let before = Before::now();
            test();
            before.nothing_left();
        })
    }

    // ---- The server stopped or killed ----------------------------------------------------------

    /// A worker that ends while its server is stopped (SIGSTOP: it can neither reap it nor say
    /// how it ended): its task still fails within the bound, with the worker's own exit code,
    /// and the pool serves on and leaves nothing behind.
    pub fn a_worker_that_ends_while_its_server_is_stopped_fails_its_task() {
        let pool = forking(1)
            .startup_timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let (task, port, pid) = start_fault(&pool, Fault::ExitWithMessage, RunOptions::new());
        let server = parent_of(pid);
        assert_ne!(server, std::process::id(), "forked");
        let _server = Killed(server);
        signal(server, libc::SIGSTOP);
        port.send(9).unwrap();
        assert_eq!(
            finish(task),
            Err(Error::WorkerExited {
                code: Some(9),
                signal: None,
                message: None
            })
        );
        // The pool's side of a task's channel holds its worker's channel until dropped.
        drop(port);
        let (next, parent) = finish(pool.run::<Place, _>(())).expect("the pool serves on");
        assert_ne!(next, pid);
        assert_ne!(parent, server, "not by the stopped server");
        destroy(pool);
        eventually("the stopped server gone", || gone(server) && gone(pid));
    }

    /// `destroy` of a pool whose server is stopped, its workers idle: they stop, the pool is
    /// destroyed in time, and the server is killed and reaped.
    pub fn destroy_with_a_stopped_server_leaves_nothing() {
        let pool = forking(2)
            .min_threads(2)
            .startup_timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let tasks: Vec<Task<Place>> = (0..2).map(|_| pool.run(())).collect();
        let places: Vec<Place> = tasks.into_iter().map(|t| finish(t).unwrap()).collect();
        let server = places[0].1;
        let _server = Killed(server);
        signal(server, libc::SIGSTOP);
        destroy(pool);
        assert!(gone(server));
        eventually("the workers gone", || {
            places.iter().all(|&(pid, _)| gone(pid))
        });
    }

    /// In a pool whose process is a child subreaper (a supervisor, say), workers orphaned by
    /// their killed server become its children: they are reaped too, not left as zombies.
    pub fn a_subreaper_pool_reaps_the_workers_of_a_killed_server() {
        set_child_subreaper(true);
        // Off again however the test ends: later tests of this process must not reap orphans.
        struct Unset;
        impl Drop for Unset {
            fn drop(&mut self) {
                set_child_subreaper(false);
            }
        }
        let _unset = Unset;
        let pool = forking(2).build().unwrap();
        let held: Vec<(Task<u32>, Port<u32>, u32)> = (0..2)
            .map(|_| start_fault(&pool, Fault::WaitForMessage, RunOptions::new()))
            .collect();
        let server = parent_of(held[0].2);
        let held_pids: Vec<u32> = held.iter().map(|h| h.2).collect();
        signal(server, libc::SIGKILL);
        for (task, port, _) in held {
            assert!(matches!(
                finish(task),
                Err(Error::WorkerExited {
                    signal: Some(libc::SIGKILL),
                    ..
                })
            ));
            drop(port);
        }
        destroy(pool);
        let (mut statuses, mut left) = (Vec::new(), Vec::new());
        for pid in held_pids {
            // SAFETY: waitpid on an orphan that became this process's child, if it is one;
            // a failure leaves no zombie to later tests.
            let reaped =
                unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) };
            statuses.push((pid, reaped));
            if reaped > 0 {
                left.push(pid);
            }
        }
        assert!(
            left.is_empty(),
            "orphaned workers left as zombies: {statuses:?}"
        );
    }

    fn set_child_subreaper(on: bool) {
        // SAFETY: prctl on this process.
        let set = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, libc::c_ulong::from(on)) };
        assert_eq!(set, 0, "PR_SET_CHILD_SUBREAPER");
    }

    /// A worker that must start while the server is stopped does not wait for it past
    /// `startup_timeout`: the server is replaced, its workers die with it (their tasks fail
    /// with SIGKILL), and the new task runs.
    pub fn a_stopped_server_holds_no_start_past_the_startup_timeout() {
        let pool = forking(2)
            .startup_timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let (held, port, pid) = start_fault(&pool, Fault::WaitForMessage, RunOptions::new());
        let server = parent_of(pid);
        let _server = Killed(server);
        signal(server, libc::SIGSTOP);
        let (next, parent) = finish(pool.run::<Place, _>(())).expect("a worker starts");
        assert_ne!(next, pid);
        assert_ne!(parent, server, "not by the stopped server");
        assert_eq!(
            finish(held),
            Err(Error::WorkerExited {
                code: None,
                signal: Some(libc::SIGKILL),
                message: None
            }),
            "the stopped server was killed, and its worker with it"
        );
        drop(port);
        destroy(pool);
        eventually("the stopped server gone", || gone(server) && gone(pid));
    }

    /// The server killed while a worker's start waits for it (stopped first, so that the
    /// start waits): the start goes to a new server.
    pub fn a_server_killed_during_a_start_is_replaced() {
        let pool = forking(2)
            .thread_name("fsk")
            .startup_timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let (held, port, pid) = start_fault(&pool, Fault::WaitForMessage, RunOptions::new());
        let server = parent_of(pid);
        let _server = Killed(server);
        signal(server, libc::SIGSTOP);
        let next = pool.run::<Place, _>(());
        eventually("a second worker starting", || live("fsk") == 2);
        signal(server, libc::SIGKILL);
        let (next, parent) = finish(next).expect("a worker starts");
        assert!(
            parent != server && parent != std::process::id(),
            "a new server"
        );
        assert!(matches!(finish(held), Err(Error::WorkerExited { .. })));
        // Reaped once the last driver of its workers lets it go (the held task's, as it sees
        // its worker's death): not necessarily before the new server's first task ends.
        eventually("the killed server reaped", || gone(server));
        drop(port);
        destroy(pool);
        assert!(gone(next));
    }

    // ---- Many workers, and their ends ------------------------------------------------------------

    /// 500 isolated tasks on 8 workers at once: each runs in a fresh worker forked by one
    /// server, and destroy leaves no process, zombie or descriptor.
    pub fn five_hundred_isolated_tasks_on_eight_forked_workers() {
        let pool = forking(8).isolate_workers(true).build().unwrap();
        let tasks: Vec<Task<Place>> = (0..500).map(|_| pool.run(())).collect();
        let places: Vec<Place> = tasks
            .into_iter()
            .map(|task| finish(task).expect("a task on a forked worker"))
            .collect();
        let server = places[0].1;
        assert_ne!(server, std::process::id());
        assert!(places.iter().all(|&(_, parent)| parent == server));
        let mut pids: Vec<u32> = places.iter().map(|&(pid, _)| pid).collect();
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(pids.len(), 500, "a worker per task");
        destroy(pool);
        assert!(gone(server));
    }

    /// A worker that forks a helper (which holds its channel) and exits: its task fails with
    /// its exit code at once, and the pool serves on.
    pub fn a_forked_worker_that_forks_and_exits_fails_its_task_with_its_code() {
        let pool = forking(1).build().unwrap();
        let (task, port, pid) = start_fault(&pool, Fault::ForkThenExit(3), RunOptions::new());
        let helper = Killed(finish_port(&port));
        // The pool's side of a task's channel holds its worker's channel until dropped.
        drop(port);
        assert_eq!(
            finish(task),
            Err(Error::WorkerExited {
                code: Some(3),
                signal: None,
                message: None
            })
        );
        eventually("the worker reaped", || gone(pid));
        assert_ne!(finish(pool.run::<Place, _>(())).unwrap().0, pid);
        destroy(pool);
        drop(helper);
    }

    fn finish_port(port: &Port<u32>) -> u32 {
        port.recv_timeout(BOUND)
            .expect("a message")
            .expect("within the bound")
    }

    /// SIGKILL from outside: a busy worker's task fails naming the signal; an idle worker's
    /// death goes to `on_error`, naming it; a new worker is forked by the same server.
    pub fn a_forked_worker_killed_from_outside_is_reported_with_its_signal() {
        let (errors, hook) = collect_errors();
        let pool = forking(1).min_threads(1).on_error(hook).build().unwrap();
        let (task, port, busy) = start_fault(&pool, Fault::WaitForMessage, RunOptions::new());
        let server = parent_of(busy);
        signal(busy, libc::SIGKILL);
        let killed = Error::WorkerExited {
            code: None,
            signal: Some(libc::SIGKILL),
            message: None,
        };
        assert_eq!(finish(task), Err(killed.clone()));
        drop(port);
        let (idle, parent) = finish(pool.run::<Place, _>(())).unwrap();
        assert_eq!(parent, server, "the same server forks the next worker");
        signal(idle, libc::SIGKILL);
        eventually("the idle worker's death reported", || {
            errors.lock().unwrap().contains(&killed)
        });
        let (next, parent) = finish(pool.run::<Place, _>(())).unwrap();
        assert!(next != idle && parent == server);
        destroy(pool);
    }

    /// `abort` and `timeout` of a task on a forked worker kill that worker (SIGTERM, then
    /// SIGKILL after `terminate_timeout` for one deaf to SIGTERM, through its pidfd).
    pub fn abort_and_timeout_kill_a_forked_worker() {
        let pool = forking(1)
            .terminate_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let controller = AbortController::new();
        let options = RunOptions::new().signal(controller.signal());
        let (task, port, deaf) = start_fault(&pool, Fault::SpinIgnoringSigterm, options);
        drop(port);
        controller.abort();
        assert_eq!(finish(task), Err(Error::Aborted { reason: None }));
        eventually("the worker deaf to SIGTERM killed", || gone(deaf));
        let timeout = Duration::from_millis(300);
        let options = RunOptions::new().timeout(timeout);
        let (task, port, spinning) = start_fault(&pool, Fault::Spin, options);
        drop(port);
        assert_eq!(finish(task), Err(Error::TimedOut { after: timeout }));
        eventually("the timed-out worker killed", || gone(spinning));
        destroy(pool);
    }

    /// `destroy` while workers are starting: every task resolves, destroy returns in time, and
    /// nothing is left.
    pub fn destroy_while_forked_workers_start() {
        for round in 0..5 {
            let before = Before::now();
            let pool = forking(4).isolate_workers(true).build().unwrap();
            let tasks: Vec<Task<Place>> = (0..16).map(|_| pool.run(())).collect();
            if round > 0 {
                // Let some start, in later rounds.
                let _ = finish(pool.run::<Place, _>(()));
            }
            destroy(pool);
            for task in tasks {
                match finish(task) {
                    Ok(_) | Err(Error::Terminated) => {}
                    other => panic!("{other:?}"),
                }
            }
            before.nothing_left();
        }
    }

    /// `recycle_workers` and `max_memory_limit_before_recycle`: the next worker is a new fork of
    /// the same server.
    pub fn recycled_workers_are_forked_again() {
        let pool = forking(1).build().unwrap();
        let (first, server) = finish(pool.run::<Place, _>(())).unwrap();
        recycle(&pool);
        let (second, parent) = finish(pool.run::<Place, _>(())).unwrap();
        assert!(second != first && parent == server, "{first} {second}");
        destroy(pool);
        let pool = forking(1)
            .max_memory_limit_before_recycle(1)
            .build()
            .unwrap();
        let places: Vec<Place> = (0..3)
            .map(|_| finish(pool.run::<Place, _>(())).unwrap())
            .collect();
        assert!(places.iter().all(|&(_, parent)| parent == places[0].1));
        assert!(places[0].0 != places[1].0 && places[1].0 != places[2].0);
        destroy(pool);
    }

    /// `max_cpu_time` holds for a forked worker: its spinning task fails with `ResourceLimit`.
    pub fn the_cpu_time_limit_holds_for_a_forked_worker() {
        let pool = forking(1)
            .resource_limits(ResourceLimits::new().max_cpu_time(Duration::from_secs(1)))
            .build()
            .unwrap();
        let (task, port, pid) = start_fault(&pool, Fault::Spin, RunOptions::new());
        drop(port);
        assert_ne!(parent_of(pid), std::process::id(), "forked");
        assert_eq!(
            finish(task),
            Err(Error::ResourceLimit {
                limit: "cpu time".to_owned()
            })
        );
        destroy(pool);
    }

    /// `setup` runs in each forked worker (not in the server), `teardown` too.
    pub fn setup_and_teardown_run_in_each_forked_worker() {
        let (errors, hook) = collect_errors();
        let pool = forking(2)
            .setup("setup")
            .teardown("teardown")
            .on_error(hook)
            .build()
            .unwrap();
        let tasks: Vec<Task<(u32, u32)>> = (0..2)
            .map(|_| pool.run_with((), named("set_up_in")))
            .collect();
        let ran: Vec<(u32, u32)> = tasks.into_iter().map(|t| finish(t).unwrap()).collect();
        for &(pid, set_up_in) in &ran {
            assert_eq!(pid, set_up_in, "its own setup ran in it: {ran:?}");
        }
        let pids: Vec<u32> = pool.workers().iter().filter_map(|w| w.pid).collect();
        destroy(pool);
        let errors = errors.lock().unwrap().clone();
        for pid in pids {
            let said = format!("{TEARDOWN} {pid}");
            assert!(
                errors.iter().any(|error| error.to_string().contains(&said)),
                "{said}: {errors:?}"
            );
        }
    }

    /// Async exports, channels and `concurrent_tasks_per_worker` on forked workers.
    pub fn async_exports_and_concurrent_tasks_on_forked_workers() {
        let pool = forking(2).concurrent_tasks_per_worker(4).build().unwrap();
        let tasks: Vec<Task<Place>> = (0..16)
            .map(|_| pool.run_with(20u64, named("async_place")))
            .collect();
        let places: Vec<Place> = tasks.into_iter().map(|t| finish(t).unwrap()).collect();
        assert!(places.iter().all(|&(_, parent)| parent == places[0].1));
        assert_ne!(places[0].1, std::process::id());
        let tasks: Vec<Task<Place>> = (0..16).map(|_| pool.run(())).collect();
        for task in tasks {
            assert_eq!(finish(task).unwrap().1, places[0].1);
        }
        let (task, port, _) = start_fault(&pool, Fault::WaitForMessage, RunOptions::new());
        port.send(42).unwrap();
        assert_eq!(finish(task), Ok(42));
        drop(port);
        destroy(pool);
    }

    // ---- Descriptors ---------------------------------------------------------------------------

    /// A forked worker holds what a spawned one holds (its standard three and its channel), none
    /// of the server's (its control socket, its other workers' pidfds) nor the pool's; the pool
    /// holds no descriptor more after `destroy`, `close` or the drop of its last handle.
    pub fn forked_workers_hold_only_their_channel_and_pools_leak_nothing() {
        let before = Before::now();
        let spawned = Pool::builder()
            .runtime(Runtime::ChildProcess)
            .max_threads(1)
            .build()
            .unwrap();
        let spawned_fds: Vec<i32> = finish(spawned.run_with((), named("open_fds"))).unwrap();
        destroy(spawned);
        let pool = forking(3).build().unwrap();
        // Three workers at once, so that the server holds pidfds of others when it forks one.
        let held: Vec<(Task<u32>, Port<u32>, u32)> = (0..2)
            .map(|_| start_fault(&pool, Fault::WaitForMessage, RunOptions::new()))
            .collect();
        let forked_fds: Vec<i32> = finish(pool.run_with((), named("open_fds"))).unwrap();
        assert_eq!(forked_fds, spawned_fds, "a forked worker's descriptors");
        for (task, port, _) in held {
            port.send(1).unwrap();
            assert_eq!(finish(task), Ok(1));
        }
        destroy(pool);
        before.nothing_left();

        let pool = forking(2).build().unwrap();
        let (_, server) = finish(pool.run::<Place, _>(())).unwrap();
        pool.close().wait().unwrap();
        eventually("the server gone after close", || gone(server));
        drop(pool);
        before.nothing_left();

        let pool = forking(2).build().unwrap();
        let (worker, server) = finish(pool.run::<Place, _>(())).unwrap();
        drop(pool);
        eventually("the server and its worker gone after the drop", || {
            gone(server) && gone(worker)
        });
        before.nothing_left();
    }

    /// A pool shared by eight threads, each running isolated tasks: one server forks them all.
    pub fn workers_started_from_many_threads_at_once() {
        let pool = forking(8).isolate_workers(true).build().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    (0..20)
                        .map(|_| finish(pool.run::<Place, _>(())).unwrap().1)
                        .collect::<Vec<u32>>()
                })
            })
            .collect();
        let servers: Vec<u32> = threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect();
        assert!(servers.iter().all(|&server| server == servers[0]));
        destroy(pool);
    }
}

#[cfg(target_os = "linux")]
tinypool::test_workers!(attacks::exports);

#[cfg(target_os = "linux")]
fn main() {
    use attacks::*;
    // Each test must leave no child process and no descriptor behind.
    let tests: &[(&str, fn())] = &[
        (
            "a_worker_that_ends_while_its_server_is_stopped_fails_its_task",
            a_worker_that_ends_while_its_server_is_stopped_fails_its_task,
        ),
        (
            "destroy_with_a_stopped_server_leaves_nothing",
            destroy_with_a_stopped_server_leaves_nothing,
        ),
        (
            "a_subreaper_pool_reaps_the_workers_of_a_killed_server",
            a_subreaper_pool_reaps_the_workers_of_a_killed_server,
        ),
        (
            "a_stopped_server_holds_no_start_past_the_startup_timeout",
            a_stopped_server_holds_no_start_past_the_startup_timeout,
        ),
        (
            "a_server_killed_during_a_start_is_replaced",
            a_server_killed_during_a_start_is_replaced,
        ),
        (
            "five_hundred_isolated_tasks_on_eight_forked_workers",
            five_hundred_isolated_tasks_on_eight_forked_workers,
        ),
        (
            "a_forked_worker_that_forks_and_exits_fails_its_task_with_its_code",
            a_forked_worker_that_forks_and_exits_fails_its_task_with_its_code,
        ),
        (
            "a_forked_worker_killed_from_outside_is_reported_with_its_signal",
            a_forked_worker_killed_from_outside_is_reported_with_its_signal,
        ),
        (
            "abort_and_timeout_kill_a_forked_worker",
            abort_and_timeout_kill_a_forked_worker,
        ),
        (
            "destroy_while_forked_workers_start",
            destroy_while_forked_workers_start,
        ),
        (
            "recycled_workers_are_forked_again",
            recycled_workers_are_forked_again,
        ),
        (
            "the_cpu_time_limit_holds_for_a_forked_worker",
            the_cpu_time_limit_holds_for_a_forked_worker,
        ),
        (
            "setup_and_teardown_run_in_each_forked_worker",
            setup_and_teardown_run_in_each_forked_worker,
        ),
        (
            "async_exports_and_concurrent_tasks_on_forked_workers",
            async_exports_and_concurrent_tasks_on_forked_workers,
        ),
        (
            "forked_workers_hold_only_their_channel_and_pools_leak_nothing",
            forked_workers_hold_only_their_channel_and_pools_leak_nothing,
        ),
        (
            "workers_started_from_many_threads_at_once",
            workers_started_from_many_threads_at_once,
        ),
    ];
    common::run_cases(
        tests
            .iter()
            .map(|&(name, test)| (name.to_owned(), leaves_nothing(test)))
            .collect(),
    );
}

/// Elsewhere there is no fork server: nothing to attack.
#[cfg(not(target_os = "linux"))]
fn main() {}
