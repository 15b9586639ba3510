//! Workers that keep talking: a child (or what it forked) that sends well-formed frames
//! without end, at moments the pool only means to read what is left (its stop, the check of a
//! child found dead) or while its task is aborted. A stream of frames that never ends must not
//! hold the pool's driver: the child is killed at `terminate_timeout`, `destroy()` returns in
//! time with no error, and no worker thread, child process or descriptor is left behind.
//!
//! (Garbage, lies about the rings and the big-frame slot, and answers for tasks never sent are
//! `tests/bad_input.rs`'s; these workers say nothing wrong, they just never stop.)
//!
//! A `harness = false` binary: its pools re-execute it, as a worker or as a fake worker (see
//! [`ROLE`]), so `main` first plays that part.

mod common;

#[cfg(target_os = "linux")]
mod attacks {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    use super::common::wire::*;
    use super::common::{self, destroy_within, procfs};
    use tinypool::{
        worker, AbortController, Builder, ChildOutput, Error, Exports, Pool, RunOptions, Runtime,
    };

    /// Set on this binary re-executed as a fake worker: which one it plays (see [`fake_worker`]).
    pub const ROLE: &str = "HOSTILE_ROLE";
    /// A file the `chatty_setup` export makes when it starts.
    const MARK: &str = "HOSTILE_MARK";

    /// A `HELLO` of this protocol's version, naming no async export.
    fn hello() -> Vec<u8> {
        frame(HELLO, &hello_naming(MAGIC, VERSION, &[]))
    }

    /// A `PANICKING` frame: what a child's panic hook says, which the pool reads and notes.
    fn panicking(message: &[u8]) -> Vec<u8> {
        let mut body = (message.len() as u32).to_le_bytes().to_vec();
        body.extend_from_slice(message);
        frame(PANICKING, &body)
    }

    /// Announces, as the first chunk of the ring to the pool, a stream of `len` bytes on the
    /// socket (a `SOCKET` chunk: what a frame too big for the ring takes).
    fn announce_on_socket(len: u64) {
        let base = map_rings();
        // SAFETY: the ring to the pool starts at 4096 + RING: the chunk (a header and 8 bytes)
        // fits at its start; its tail is the first line of the ring's controls, at 192.
        unsafe {
            let ring = base.add(4096 + RING);
            ring.cast::<u32>().write(SOCKET << KIND | 8);
            std::ptr::copy_nonoverlapping(len.to_le_bytes().as_ptr(), ring.add(4), 8);
            (*base.add(192).cast::<AtomicU32>()).store(12, Ordering::SeqCst);
        }
    }

    /// Waits until the pool sent a task (the tail of the ring to the child moved).
    fn wait_for_a_task() {
        let base = map_rings();
        // SAFETY: the tail of the ring to the child, the region's first line.
        let tail = unsafe { &*base.cast::<AtomicU32>() };
        while tail.load(Ordering::SeqCst) == 0 {
            thread::yield_now();
        }
    }

    /// Forks a helper that floods the pool with `PANICKING` frames, and exits.
    fn orphan(channel: &mut UnixStream) -> ! {
        // SAFETY: fork in a process with one thread; the child only floods and exits.
        match unsafe { libc::fork() } {
            0 => flood(channel, &panicking(b"still talking")),
            pid => {
                assert!(pid > 0, "fork");
                std::process::exit(0)
            }
        }
    }

    /// Shakes hands as a worker of this version would, with rings (the floods announce their
    /// frames there).
    fn handshake(channel: &mut UnixStream) {
        channel.write_all(&hello()).expect("hello");
        let (kind, body) = read_frame(channel).expect("init");
        assert_eq!(kind, INIT);
        // worker id, codec, max_message_size, measure_memory, then whether there are rings.
        assert_eq!(body[8 + 1 + 8 + 1], 1, "the pool shares rings");
    }

    /// Sends `frame` again and again until the pool is gone (its end of the socket closed):
    /// on the socket, announced in the ring as one stream without end. The socket's buffer
    /// holds thousands of them, so the pool finds it empty only if it reads them faster than
    /// this process, which runs now and then, writes them.
    fn flood(channel: &mut UnixStream, frame: &[u8]) -> ! {
        announce_on_socket(1 << 62);
        let frames = frame.repeat(4096);
        while channel.write_all(&frames).is_ok() {}
        std::process::exit(0)
    }

    /// A `DONE` of task 0 that says the teardown failed (`Error::Disconnected`): what a child
    /// sends after `STOP` when its teardown fails.
    fn teardown_failed() -> Vec<u8> {
        let mut body = 0u64.to_le_bytes().to_vec(); // task 0
        body.extend_from_slice(&0u64.to_le_bytes()); // no resident memory
        body.extend_from_slice(&[1, 4]); // an error: `Disconnected`
        frame(DONE, &body)
    }

    /// The parts this binary plays as a pool's fake worker, on fd 3, after a proper handshake:
    /// - `stop-flood`: floods the pool with reports of a failed teardown ([`teardown_failed`]);
    /// - `orphan-flood`: forks a helper that floods the pool with `PANICKING` frames, and exits:
    ///   the pool finds its child dead while frames keep coming from the helper, which holds
    ///   the channel and the rings;
    /// - `task-orphan`: the same once it was sent a task.
    pub fn fake_worker(role: &str) -> ! {
        // SAFETY: fd 3 is the channel the pool gave this process; nothing else owns it.
        let mut channel = unsafe { UnixStream::from_raw_fd(CHILD_FD) };
        handshake(&mut channel);
        match role {
            "stop-flood" => flood(&mut channel, &teardown_failed()),
            "orphan-flood" => orphan(&mut channel),
            "task-orphan" => {
                wait_for_a_task();
                orphan(&mut channel)
            }
            other => panic!("no such role: {other}"),
        }
    }

    /// The real worker's exports, which talk without end ([`keep_panicking`]):
    /// - `chatty_setup`, a setup export, once it made the file [`MARK`] names;
    /// - `chatty_deaf` ignores SIGTERM, and says on its channel that it runs first.
    pub fn exports() -> Exports {
        Exports::new()
            .export("chatty_deaf", |()| {
                // SAFETY: sets a signal disposition.
                unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
                let port = worker::port::<u8>().expect("run with a channel");
                port.send(1).expect("the caller listens");
                keep_panicking();
            })
            .export("chatty_setup", |()| {
                std::fs::write(std::env::var_os(MARK).expect("a mark"), b"").expect("the mark");
                keep_panicking();
            })
    }

    /// Panics and catches the panic again and again, each panic's message sent to the pool by
    /// the worker's panic hook, for two minutes (far beyond any test: a bug cannot leave it
    /// running long).
    fn keep_panicking() {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            let _ = std::panic::catch_unwind(|| panic!("still talking"));
        }
    }

    /// A pool of this binary's real workers, their panics' messages (on stderr) discarded.
    fn child_pool(prefix: &str) -> Builder {
        Pool::builder()
            .runtime(Runtime::ChildProcess)
            .env("RUST_BACKTRACE", "0")
            .stderr(ChildOutput::Null)
            .min_threads(1)
            .max_threads(1)
            .terminate_timeout(Duration::from_millis(100))
            .thread_name(prefix)
    }

    /// What `destroy()` must leave: no worker thread of `prefix`, no child process.
    fn nothing_left(prefix: &str) {
        common::eventually("the worker threads ended", || procfs::live(prefix) == 0);
        assert_eq!(procfs::children(), vec![]);
    }

    /// `destroy()` of a pool whose child, told to stop, reports a failed teardown again and
    /// again, returns in time with no error, and leaves neither the worker's thread nor its
    /// child: the pool reads what its child says after `STOP` until `terminate_timeout`, and
    /// reports the teardown's failure once, not for as long as the child repeats it. (The
    /// `on_error` hook here takes a millisecond, as one that writes a log may: the pool then
    /// reads slower than the child writes, and never finds the stream dry.)
    pub fn destroy_stops_a_child_that_never_stops_talking() {
        let before = procfs::open_fds();
        let reports = Arc::new(AtomicUsize::new(0));
        let pool = child_pool("hostile-s")
            .env(ROLE, "stop-flood")
            .on_error({
                let reports = reports.clone();
                move |_| {
                    reports.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(1));
                }
            })
            .build()
            .expect("a pool");
        common::eventually("the worker started", || pool.threads() == 1);
        assert_eq!(destroy_within(&pool, false), Ok(()), "destroy");
        drop(pool);
        nothing_left("hostile-s");
        assert_eq!(
            reports.load(Ordering::SeqCst),
            1,
            "one teardown, one report"
        );
        let after = procfs::open_fds();
        assert_eq!(before, after, "{}", procfs::fd_diff(&before, &after));
    }

    /// A child that exits while a process it forked keeps writing frames into its channel is
    /// found dead and replaced, and `destroy()` then returns with nothing left: the pool reads
    /// a dead child's last words for a bounded time, not for as long as its helper talks.
    pub fn a_dead_child_whose_helper_keeps_talking_is_found_dead() {
        let (errors, on_error) = common::collect_errors();
        let pool = child_pool("hostile-o")
            .env(ROLE, "orphan-flood")
            .on_error(on_error)
            .build()
            .expect("a pool");
        common::eventually("the dead child reported", || {
            !errors.lock().unwrap().is_empty()
        });
        assert!(
            matches!(errors.lock().unwrap()[0], Error::WorkerExited { .. }),
            "{:?}",
            errors.lock().unwrap()
        );
        assert_eq!(destroy_within(&pool, false), Ok(()), "destroy");
        drop(pool);
        nothing_left("hostile-o");
    }

    /// A child that exits in the middle of a task while a process it forked keeps writing
    /// frames into its channel fails its task with `Error::WorkerExited`, as any child that
    /// dies does: its last words are read, not its helper's for as long as it talks.
    pub fn a_task_whose_child_dies_while_its_helper_talks_fails() {
        let pool = child_pool("hostile-t")
            .env(ROLE, "task-orphan")
            .build()
            .expect("a pool");
        let task = pool.run::<i32, _>(1);
        assert!(
            matches!(common::finish(task), Err(Error::WorkerExited { .. })),
            "the task fails"
        );
        assert_eq!(destroy_within(&pool, false), Ok(()), "destroy");
        drop(pool);
        nothing_left("hostile-t");
    }

    /// A setup export that keeps reporting panics, and so never ends, does not hold
    /// `destroy()`: the worker still starting stops waiting for its setup, its child is killed,
    /// and nothing is left.
    pub fn destroy_stops_a_setup_that_never_stops_talking() {
        let mark = std::env::temp_dir().join(format!("hostile-setup-{}", std::process::id()));
        let _ = std::fs::remove_file(&mark);
        let pool = child_pool("hostile-u")
            .setup("chatty_setup")
            .env(MARK, &mark)
            .build()
            .expect("a pool");
        common::eventually("the setup runs", || mark.exists());
        assert_eq!(destroy_within(&pool, false), Ok(()), "destroy");
        drop(pool);
        nothing_left("hostile-u");
        std::fs::remove_file(&mark).expect("the mark");
    }

    /// An aborted task whose child ignores SIGTERM and keeps reporting panics: the
    /// child is killed at `terminate_timeout` after the abort, however many frames it still
    /// sends, and `destroy()` then returns with nothing left.
    pub fn an_aborted_chatty_child_deaf_to_sigterm_is_killed() {
        let pool = child_pool("hostile-c").build().expect("a pool");
        let (caller, port) = tinypool::channel::<u8>();
        let controller = AbortController::new();
        let options = RunOptions::new()
            .name("chatty_deaf")
            .channel(port)
            .signal(controller.signal());
        let task = pool.run_with::<(), _>((), options);
        assert_eq!(common::next(&caller), Ok(1), "the task talks");
        let pid = pool.workers()[0].pid.expect("a child");
        controller.abort();
        assert!(matches!(common::finish(task), Err(Error::Aborted { .. })));
        common::eventually("the aborted child killed", || procfs::gone(pid));
        assert_eq!(destroy_within(&pool, false), Ok(()), "destroy");
        drop(pool);
        nothing_left("hostile-c");
    }
}

#[cfg(target_os = "linux")]
fn main() {
    use attacks::*;
    use tinypool::worker;
    if let Some(role) = std::env::var_os(ROLE) {
        fake_worker(&role.to_string_lossy());
    }
    worker::serve_if_worker(exports());
    let cases: [(&str, fn()); 5] = [
        (
            "destroy_stops_a_child_that_never_stops_talking",
            destroy_stops_a_child_that_never_stops_talking,
        ),
        (
            "a_dead_child_whose_helper_keeps_talking_is_found_dead",
            a_dead_child_whose_helper_keeps_talking_is_found_dead,
        ),
        (
            "a_task_whose_child_dies_while_its_helper_talks_fails",
            a_task_whose_child_dies_while_its_helper_talks_fails,
        ),
        (
            "destroy_stops_a_setup_that_never_stops_talking",
            destroy_stops_a_setup_that_never_stops_talking,
        ),
        (
            "an_aborted_chatty_child_deaf_to_sigterm_is_killed",
            an_aborted_chatty_child_deaf_to_sigterm_is_killed,
        ),
    ];
    common::run_cases(
        cases
            .into_iter()
            .map(|(name, body)| (name.to_owned(), Box::new(body) as Box<dyn Fn()>))
            .collect(),
    );
}

#[cfg(not(target_os = "linux"))]
fn main() {}
