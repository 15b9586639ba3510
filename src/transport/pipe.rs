//! The Windows twin of `socket.rs`: a worker's channel as two anonymous pipes, one each way,
//! with the same calls. None of them blocks, but `poll`, for as long as it is told.
//!
//! An anonymous pipe has no name another process could open: the child gets its ends by
//! inheritance alone (`spawn/windows.rs` lists exactly those handles). But such a pipe can
//! neither be read without blocking nor waited on with a timeout, so a channel's reading end
//! has a *pump* thread that reads the pipe into a buffer; the pool's writing end has one too,
//! writing a buffer out to its pipe. The channel's calls only touch those buffers, under one
//! lock, and a wait is a wait on its condvar, which the pumps notify. So `recv_now` and the
//! pool's `send_now` never block, `poll` wakes on data, room or the end, and the end of
//! stream is the other side's death (or its closing its end), as on a socket.
//!
//! The child writes to its pipe itself: its `Writer` waits until a frame is out anyway, and a
//! frame must be in the pipe, not in a buffer of the process, before the child may exit (its
//! last result, its teardown's failure, the panic message of a child about to abort).
//!
//! The buffers are bounded ([`BUFFER`]): a pool that outruns its child keeps the rest (its
//! `Writer` never blocks), as with a socket's buffer.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::ERROR_OPERATION_ABORTED;
use windows_sys::Win32::System::Pipes::{CreatePipe, PeekNamedPipe};
use windows_sys::Win32::System::IO::CancelSynchronousIo;

use super::exit::ExitWatch;

/// What each direction may hold between a side and its pump: a socket's buffer, roughly.
const BUFFER: usize = 256 << 10;
/// What one read or write of a pipe moves at most.
const CHUNK: usize = 64 << 10;

/// A worker's channel: our ends of its two pipes, and the pumps that serve them. Clones share
/// them; when the last clone is dropped, what was sent still goes out, then our ends close.
pub(crate) struct Channel {
    shared: Arc<Shared>,
    _user: Arc<User>,
    /// The child's side: the pipe it writes to itself, blocking (see the module's doc).
    direct: Option<Arc<File>>,
}

/// The child's ends of a new channel's pipes, not inheritable yet: what it reads, what it
/// writes.
pub(crate) struct ChildEnds {
    pub(crate) read: OwnedHandle,
    pub(crate) write: OwnedHandle,
}

struct Shared {
    state: Mutex<State>,
    /// The pipe the reading pump reads, for [`settle`] to ask what it still holds. Open while
    /// the pump runs, which it does until it sets `ended` or the channel is closed.
    inbound_pipe: usize,
    /// Notified by the pumps (data in, room out, an end) and by the last user's drop.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Read from the pipe, not taken yet.
    inbound: VecDeque<u8>,
    /// The pipe read its end (the other side closed it, or died), or failed.
    ended: bool,
    /// Reads of the pump cancelled while they waited on an empty pipe (see [`settle`]).
    cancelled_reads: u64,
    /// Given to `send_now`, not written yet.
    outbound: VecDeque<u8>,
    /// Why writing failed: the other side is gone.
    broken: Option<io::ErrorKind>,
    /// Every clone of the channel was dropped: the writing pump flushes and leaves.
    closed: bool,
}

/// Held by every clone of a [`Channel`]; the last one dropped closes it.
struct User {
    shared: Arc<Shared>,
    /// The reading pump, whose blocking read a close cancels.
    reader: Option<JoinHandle<()>>,
}

impl Drop for User {
    fn drop(&mut self) {
        lock(&self.shared).closed = true;
        self.shared.changed.notify_all();
        if let Some(reader) = &self.reader {
            // SAFETY: the pump's thread handle, owned by its `JoinHandle`, which outlives the
            // call; cancelling a read the thread may not be in is harmless. A pump left in its
            // read (a system without the call) ends when the other side closes its end.
            unsafe { CancelSynchronousIo(reader.as_raw_handle() as _) };
        }
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // The pumps never panic while holding the lock; a poisoned state is still consistent.
    shared
        .state
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

impl Channel {
    /// A new channel: our side, and the child's ends of its pipes.
    pub(crate) fn pair() -> io::Result<(Channel, ChildEnds)> {
        let (to_us, from_child) = pipe()?;
        let (to_child, from_us) = pipe()?;
        let channel = Channel::new(to_us, from_us, false)?;
        Ok((
            channel,
            ChildEnds {
                read: to_child,
                write: from_child,
            },
        ))
    }

    /// The child's side of its channel, over the pipe ends `read` and `write` it inherited.
    pub(crate) fn from_handles(read: OwnedHandle, write: OwnedHandle) -> io::Result<Channel> {
        Channel::new(read, write, true)
    }

    fn new(read: OwnedHandle, write: OwnedHandle, direct: bool) -> io::Result<Channel> {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            inbound_pipe: read.as_raw_handle() as usize,
            changed: Condvar::new(),
        });
        let direct = if direct {
            Some(Arc::new(File::from(write)))
        } else {
            let pumped = shared.clone();
            std::thread::Builder::new()
                .name("tinypool-pipe-out".to_owned())
                .spawn(move || pump_out(&pumped, File::from(write)))?;
            None
        };
        let pumped = shared.clone();
        let reader = std::thread::Builder::new()
            .name("tinypool-pipe-in".to_owned())
            .spawn(move || pump_in(&pumped, File::from(read)))?;
        Ok(Channel {
            _user: Arc::new(User {
                shared: shared.clone(),
                reader: Some(reader),
            }),
            shared,
            direct,
        })
    }

    /// Another handle to the same channel, as `UnixStream::try_clone` gives.
    pub(crate) fn try_clone(&self) -> io::Result<Channel> {
        Ok(Channel {
            shared: self.shared.clone(),
            _user: self._user.clone(),
            direct: self.direct.clone(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }
}

/// An anonymous pipe: (its reading end, its writing end), neither inheritable.
fn pipe() -> io::Result<(OwnedHandle, OwnedHandle)> {
    let mut read = std::ptr::null_mut();
    let mut write = std::ptr::null_mut();
    // SAFETY: CreatePipe writes two new handles into the locals; no security attributes, so
    // neither is inheritable.
    if unsafe { CreatePipe(&mut read, &mut write, std::ptr::null(), CHUNK as u32) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both handles were just created, and nothing else owns them.
    unsafe {
        Ok((
            OwnedHandle::from_raw_handle(read as RawHandle),
            OwnedHandle::from_raw_handle(write as RawHandle),
        ))
    }
}

/// Reads the pipe into the inbound buffer, until its end.
fn pump_in(shared: &Shared, mut pipe: File) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        {
            let mut state = lock(shared);
            while state.inbound.len() >= BUFFER && !state.closed {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            if state.closed {
                return;
            }
        }
        // A broken pipe (the writer's end closed) reads as the end, an error as well; but a
        // read cancelled while it waited (by `settle`, or by the channel's close) read nothing.
        let read = match pipe.read(&mut buf) {
            Ok(read) => read,
            Err(error) if error.raw_os_error() == Some(ERROR_OPERATION_ABORTED as i32) => {
                lock(shared).cancelled_reads += 1;
                shared.changed.notify_all();
                continue;
            }
            Err(_) => 0,
        };
        let mut state = lock(shared);
        if read == 0 {
            state.ended = true;
        } else {
            state.inbound.extend(&buf[..read]);
        }
        drop(state);
        shared.changed.notify_all();
        if read == 0 {
            return;
        }
    }
}

/// Writes the outbound buffer to the pipe, until the channel is closed and all is out, or
/// writing fails.
fn pump_out(shared: &Shared, mut pipe: File) {
    loop {
        let chunk: Vec<u8> = {
            let mut state = lock(shared);
            while state.outbound.is_empty() && !state.closed {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            if state.outbound.is_empty() {
                return; // Closed, and all sent: dropping the pipe closes our end.
            }
            let n = state.outbound.len().min(CHUNK);
            state.outbound.drain(..n).collect()
        };
        // Room was made.
        shared.changed.notify_all();
        if let Err(error) = pipe.write_all(&chunk) {
            let mut state = lock(shared);
            state.broken = Some(error.kind());
            state.outbound.clear();
            drop(state);
            shared.changed.notify_all();
            return;
        }
    }
}

/// Whether the other side closed its end: a read would say end of stream at once.
pub(crate) fn peer_closed(channel: &Channel) -> bool {
    let state = channel.state();
    state.ended && state.inbound.is_empty()
}

/// How often [`settle`] asks again whether the pump waits in a read.
const SETTLE_RETRY: Duration = Duration::from_millis(1);

/// Called once the child has exited, before its end is trusted: what it wrote last may still
/// be in the pipe, or in the pump's hands (read, not yet in the buffer), however long the pump
/// takes to be scheduled. Waits until the pump has put something in the buffer, or read the
/// pipe's end, or is found waiting in a read of the empty pipe: then nothing the child wrote
/// is left, since it writes no more. The pipe's end alone is not waited for: a process that
/// inherited the child's end in the instant it was inheritable may hold it open.
///
/// A read that waits and one that returned with bytes look alike from outside; cancelling it
/// (`CancelSynchronousIo`) tells them apart: only the waiting one is cancelled, having read
/// nothing, and the pump counts it. No time bound decides: a pump starved for seconds on a
/// loaded machine still delivers the child's last words.
pub(super) fn settle(channel: &Channel) {
    let Some(pump) = channel._user.reader.as_ref() else {
        return;
    };
    let mut state = channel.state();
    let cancelled = state.cancelled_reads;
    while state.inbound.is_empty() && !state.ended && state.cancelled_reads == cancelled {
        let mut waiting = 0u32;
        // SAFETY: asks how many bytes the pipe holds, into a local; the pump keeps the handle
        // open while `ended` is unset, which this lock keeps so during the call. A failure (a
        // broken pipe, at its end) leaves 0.
        unsafe {
            PeekNamedPipe(
                channel.shared.inbound_pipe as _,
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
                &mut waiting,
                std::ptr::null_mut(),
            )
        };
        if waiting == 0 {
            // SAFETY: the pump's thread handle, owned by its `JoinHandle`, which outlives the
            // call; cancelling when it is in no read does nothing (then it will be, or will
            // have delivered bytes, at the next try).
            unsafe { CancelSynchronousIo(pump.as_raw_handle() as _) };
        }
        state = (channel.shared.changed)
            .wait_timeout(state, SETTLE_RETRY)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Whether the other side closed its end (it exited, or was killed): writes to a ring it no
/// longer reads would wait forever.
pub(crate) fn hung_up(channel: &Channel) -> bool {
    let state = channel.state();
    state.ended || state.broken.is_some()
}

/// Waits up to `timeout` for `channel` to be readable (or at its end).
pub(crate) fn poll_readable(channel: &Channel, timeout: Duration) -> bool {
    poll(channel, None, false, timeout).0
}

/// Waits up to `timeout` for `channel` to be readable (or at its end), or, if `write`, for
/// its buffer to take more (or to be broken; the child's writes always may); returns
/// (readable, writable).
///
/// A child's exit ends its pipes, which wakes this wait; `peer` is not needed for that (a
/// process the child started in the instant its ends were inheritable may hold them: the
/// pool's waits are bounded by `POLL_INTERVAL` and look at the exit then).
pub(super) fn poll(
    channel: &Channel,
    peer: Option<&ExitWatch>,
    write: bool,
    timeout: Duration,
) -> (bool, bool) {
    let _ = peer;
    let deadline = Instant::now().checked_add(timeout);
    let mut state = channel.state();
    loop {
        let readable = !state.inbound.is_empty() || state.ended;
        let room = channel.direct.is_some() || state.outbound.len() < BUFFER;
        let writable = write && (room || state.broken.is_some());
        if readable || writable {
            return (readable, writable);
        }
        let left = match deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => Duration::MAX,
        };
        if left.is_zero() {
            return (false, false);
        }
        state = (channel.shared.changed)
            .wait_timeout(state, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Takes what the channel holds now: `None` if nothing, `Some(0)` at its end.
pub(super) fn recv_now(channel: &Channel, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let mut state = channel.state();
    if state.inbound.is_empty() {
        return Ok(state.ended.then_some(0));
    }
    let n = state.inbound.len().min(buf.len());
    for (to, from) in buf.iter_mut().zip(state.inbound.drain(..n)) {
        *to = from;
    }
    drop(state);
    // The reading pump may wait for room.
    channel.shared.changed.notify_all();
    Ok(Some(n))
}

/// Takes what the channel's buffer has room for of `bytes` now (the child's: writes them all
/// to its pipe, waiting for room there); returns how much, or the error that broke it.
pub(super) fn send_now(channel: &Channel, bytes: &[u8]) -> io::Result<usize> {
    if let Some(pipe) = &channel.direct {
        if let Err(error) = (&**pipe).write_all(bytes) {
            channel.state().broken = Some(error.kind());
            return Err(error);
        }
        return Ok(bytes.len());
    }
    let mut state = channel.state();
    if let Some(kind) = state.broken {
        return Err(kind.into());
    }
    let n = BUFFER.saturating_sub(state.outbound.len()).min(bytes.len());
    state.outbound.extend(&bytes[..n]);
    drop(state);
    if n > 0 {
        channel.shared.changed.notify_all();
    }
    Ok(n)
}
