//! Gates made of FIFOs, for tasks that run in child processes (which share no memory with the
//! test). A gated task writes a byte to its `started` FIFO (the test reads it: the task runs),
//! then waits until the test opens and closes its `go` FIFO. Opening a FIFO waits for its
//! other end: nothing polls, nothing sleeps. A binary that uses [`Gate`] exports [`gate`] as
//! `"gate"`. Tasks that must show where and how often they ran [`append`] to a log.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use tinypool::{Pool, RunOptions, Task};

/// A fresh directory for one test's FIFOs and logs, named after `what`.
pub fn scratch(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tinypool-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let path = CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL in the path");
    // SAFETY: mkfifo with a valid, NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Waits until someone opens the FIFO at `path` for writing and closes it again.
pub fn wait_opened(path: &Path) {
    let mut fifo = File::open(path).expect("the FIFO opens");
    fifo.read_to_end(&mut Vec::new()).expect("reading the FIFO");
}

/// Opens the FIFO at `path` for writing and closes it: lets go whoever [`wait_opened`] it
/// (waiting until someone does).
pub fn open_and_close(path: &Path) {
    drop(writing(path));
}

/// Opens the FIFO at `path` for writing, once someone opened it to read: whoever
/// [`wait_opened`] it waits there until the file returned is dropped.
pub fn writing(path: &Path) -> File {
    File::options()
        .write(true)
        .open(path)
        .expect("the FIFO opens")
}

/// The export: announces that it runs, then waits until the test lets it go; returns its pid.
pub fn gate(dir: String) -> u32 {
    let dir = Path::new(&dir);
    File::options()
        .write(true)
        .open(dir.join("started"))
        .and_then(|mut started| started.write_all(b"!"))
        .expect("the test reads `started`");
    wait_opened(&dir.join("go"));
    std::process::id()
}

/// Blocks until the task gated in `dir` runs.
pub fn wait_started(dir: &Path) {
    let mut byte = [0u8];
    File::open(dir.join("started"))
        .and_then(|mut started| started.read_exact(&mut byte))
        .expect("the gated task announces itself");
}

/// A gated task and the test's side of its gate.
pub struct Gate {
    pub dir: PathBuf,
    pub task: Task<u32>,
}

impl Gate {
    /// Submits the export `"gate"` to `pool`, with its FIFOs in `dir/name`.
    pub fn new(pool: &Pool, dir: &Path, name: &str) -> Gate {
        Gate::named(pool, dir, name, "gate")
    }

    /// [`new`](Gate::new), running `export` (which takes the gate's directory, as [`gate`]).
    pub fn named(pool: &Pool, dir: &Path, name: &str, export: &'static str) -> Gate {
        let dir = Gate::make(dir, name);
        let task = pool.run_with::<u32, _>(
            dir.to_string_lossy().into_owned(),
            RunOptions::new().name(export),
        );
        Gate { dir, task }
    }

    /// The FIFOs of a gate in `dir/name`; returns that directory.
    pub fn make(dir: &Path, name: &str) -> PathBuf {
        let dir = dir.join(name);
        fs::create_dir(&dir).expect("the gate's directory");
        for fifo in ["started", "go"] {
            mkfifo(&dir.join(fifo));
        }
        dir
    }

    /// Blocks until the task runs.
    pub fn wait_started(&self) {
        wait_started(&self.dir);
    }

    /// Lets the task return.
    pub fn open(&self) {
        open_and_close(&self.dir.join("go"));
    }
}

/// Appends `tag pid` to the log at `log`, in one write (tasks running at once in several
/// children append to the same log); returns this process's pid.
pub fn append(log: &str, tag: u32) -> u32 {
    let pid = std::process::id();
    let mut log = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .expect("the log opens");
    log.write_all(format!("{tag} {pid}\n").as_bytes())
        .expect("the log is written");
    pid
}

/// The log's lines as (tag, pid), in the order they were written (none if it is missing).
pub fn read_log(log: &Path) -> Vec<(u32, u32)> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let (tag, pid) = line.split_once(' ').expect("`tag pid`");
            (tag.parse().unwrap(), pid.parse().unwrap())
        })
        .collect()
}
