//! `weir-batch`: the Weir batch layout (`wit/BATCH.md`), in which records cross the plugin
//! boundary as one buffer per batch.
//!
//! [`Batch::parse`] validates a whole buffer once (every range inside the data arena, counts
//! consistent, UTF-8 where text is promised) and then hands out [`RecordRef`] views that read
//! fields straight from the bytes, without copying or allocating. [`BatchBuilder`] writes a
//! batch: [`BatchBuilder::push`] from borrowed parts, [`BatchBuilder::push_ref`] to copy a
//! record of another batch by its byte ranges. [`select`] keeps chosen records of a batch
//! (what a transform's `select` output means).
//!
//! The host validates every buffer a plugin returns with [`Batch::parse`] before using a byte
//! of it; a malformed buffer is a [`BatchError`] naming the first bad field, never a panic.
//! This crate has no dependencies and builds for `wasm32-wasip2`, where the Rust SDK uses it.

mod builder;
mod view;

pub use builder::{BatchBuilder, RecordData, select};
pub use view::{Batch, Header, Headers, RecordRef};

/// The first four bytes of every batch.
pub const MAGIC: [u8; 4] = *b"WRB1";
/// The layout version this crate reads and writes.
pub const VERSION: u16 = 1;
/// Bytes of the batch header in version 1.
pub const HEADER_SIZE: usize = 40;
/// Bytes of one record entry in version 1.
pub const RECORD_STRIDE: usize = 72;
/// Bytes of one header entry in version 1.
pub const HEADER_STRIDE: usize = 16;
/// The length that marks a null key, value, header value or source field.
pub const NULL: u32 = u32::MAX;

/// A buffer that is not a valid batch: what is wrong, naming the first bad field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError(pub String);

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BatchError {}

/// The record count of a buffer that starts like a batch (magic and version checked, nothing
/// else): for a caller that built the batch itself and only needs its size.
pub fn record_count(buf: &[u8]) -> Option<u32> {
    (buf.len() >= HEADER_SIZE && buf[..4] == MAGIC && u16_at(buf, 4) == VERSION)
        .then(|| u32_at(buf, 8))
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}
