//! The shared half of the fuzz targets: each target in `fuzz_targets/` is one call into this
//! crate, so a new decoder (a new message enum, a new handshake) is a new file of a few lines.
//!
//! ```text
//! libFuzzer bytes --> message::decode<T>          (frame body -> T, re-encode, decode again)
//!                 --> message::decode_stream<T>   (a byte stream in chunks == all at once)
//!                 --> handshake::Scripted + run   (an async handshake over scripted bytes)
//!                 --> checkpoint::{manifest, restore}  (a MemoryStore holding the bytes)
//!                 --> text::lines                 (splits of in-memory files vs. their lines)
//! ```
//!
//! Every helper panics (a crash for libFuzzer) only when the library breaks a property; an input
//! the library rightly refuses with an error is not a finding.

pub mod checkpoint;
pub mod handshake;
pub mod message;
pub mod seeds;
pub mod text;

/// Splits `data` into a leading byte (a parameter of the run: a chunk size, a count) and the
/// rest, or `None` when it is empty.
pub fn take_byte(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(b, rest)| (*b, rest))
}
