//! The wire format between a pool and its child workers, written out here on purpose (as
//! `src/protocol/mod.rs` and `src/transport/ring.rs` describe it), so that the tests that play
//! a fake worker speak it without the crate's help: frames, then the rings.

use std::io::Read;

/// The fd a pool gives its worker (the protocol's `CHILD_FD`).
pub const CHILD_FD: i32 = 3;

pub const HELLO: u8 = 1;
pub const INIT: u8 = 2;
pub const RUN: u8 = 3;
pub const PORT: u8 = 4;
pub const STOP: u8 = 5;
pub const DONE: u8 = 6;
pub const PANICKING: u8 = 7;
pub const PORT_CLOSED: u8 = 8;
pub const MAGIC: &[u8; 8] = b"TINYPOOL";
pub const VERSION: u32 = 7;

// After `INIT` a pool's frames travel in a region on fd 4: 4096 bytes of control lines (per
// ring three lines of 64 bytes: tail, head, sleeping; the ring to the child first), then each
// ring's 8 KiB. A chunk is a `u32` header (kind << 29 | length) and its bytes, padded to 4;
// kind 0 carries bytes, kind 1 announces bytes on the socket, kind 2 says a byte on the socket
// only woke the reader, kind 4 announces a frame in the slot for big frames (kinds 1 and 4
// carry a `u64` length).
pub const RINGS_FD: i32 = 4;
pub const RING: usize = 8 << 10;
pub const REGION: usize = 4096 + 2 * RING;
pub const KIND: u32 = 29;
/// The chunk kind that announces bytes on the socket.
pub const SOCKET: u32 = 1;
// The slots for big frames of `src/transport/bulk.rs`: fd 5, the slot to the child, then the
// slot to the pool, each `INIT`'s `bulk` plus a line of 64 bytes (the count of frames its
// reader released), rounded up to a page and at least 64 KiB; a frame starts after that line.
pub const BULK_FD: i32 = 5;

/// A frame: its length (the kind's byte and the body), its kind, its body.
pub fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = ((body.len() + 1) as u32).to_le_bytes().to_vec();
    frame.push(kind);
    frame.extend_from_slice(body);
    frame
}

/// A `HELLO`'s body that names `async_exports`: the pool then drives the child as one that
/// runs those exports' tasks concurrently, answered in any order.
pub fn hello_naming(magic: &[u8], version: u32, async_exports: &[&str]) -> Vec<u8> {
    let mut body = magic.to_vec();
    body.extend_from_slice(&version.to_le_bytes());
    body.extend_from_slice(&std::process::id().to_le_bytes());
    body.extend_from_slice(&(async_exports.len() as u32).to_le_bytes());
    for name in async_exports {
        body.extend_from_slice(&str_field(name.as_bytes()));
    }
    body
}

/// A text or bytes field: its `u32` length, then its bytes.
pub fn str_field(text: &[u8]) -> Vec<u8> {
    let mut field = (text.len() as u32).to_le_bytes().to_vec();
    field.extend_from_slice(text);
    field
}

/// Reads one frame the simple way (the test trusts what the pool sends).
pub fn read_frame(stream: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header) as usize;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    let kind = body.remove(0);
    Ok((kind, body))
}

/// The rings the pool shares with this process (a fake worker) on fd 4, mapped.
pub fn map_rings() -> *mut u8 {
    // SAFETY: maps the region the pool gave this process on fd 4, for the process's life.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            REGION,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            RINGS_FD,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED, "the rings");
    base.cast()
}
