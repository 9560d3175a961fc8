//! The large-state benches' input: word count over `keys` distinct words, then lines that touch
//! 1% of the keys per second under `--rate` (`SWD_BENCH_CHANGE_PER_MILLE`, default 10, changes
//! the share: a state too large for the machine to change 1% of it a second would measure a
//! backlog).
//!
//! The rate limits lines, not words, so the loading part is written as long lines
//! (`LOAD_WORDS_PER_LINE` words) and goes by in about a second of rate, bounded by the job's
//! own speed; the changing part is short lines (`WORDS_PER_LINE`) at the rate returned.

use std::io::{BufWriter, Write};
use std::path::Path;

/// Words per line of the changing part.
pub const WORDS_PER_LINE: u64 = 10;
/// Words per line of the loading part.
pub const LOAD_WORDS_PER_LINE: u64 = 1000;
/// Bytes of checkpointed state per key: a 16-byte word, its length and its count, as a
/// checkpoint encodes them (in memory a key takes about three times as much).
pub const BYTES_PER_KEY: u64 = 18;

/// Whether the checkpointed state (`state_bytes`) holds nearly all of `keys` keys.
pub fn loaded(state_bytes: Option<u64>, keys: u64) -> bool {
    state_bytes.is_some_and(|b| b >= keys * BYTES_PER_KEY * 9 / 10)
}

/// What [`write_keyed_input`] wrote.
pub struct KeyedInput {
    /// Lines per second per partition that make 1% of the keys change per second.
    pub rate: u64,
}

/// Thousandths of the keys changed per second (`SWD_BENCH_CHANGE_PER_MILLE`, default 10).
pub fn change_per_mille() -> u64 {
    match super::env_or("SWD_BENCH_CHANGE_PER_MILLE", 10) {
        0 => 10,
        per_mille => per_mille,
    }
}

/// Writes `keys` distinct words, then `change_seconds` seconds (at the returned rate) of lines
/// touching [`change_per_mille`] thousandths of the keys per second, over `files` files named
/// `part-NNN.txt`.
pub fn write_keyed_input(dir: &Path, keys: u64, files: u64, change_seconds: u64) -> KeyedInput {
    std::fs::create_dir_all(dir).expect("input dir");
    let changed = keys.saturating_mul(change_per_mille()) / 1000;
    let rate = changed.max(WORDS_PER_LINE * files) / WORDS_PER_LINE / files;
    let per_file = (keys / files).max(1);
    let load_per_file = per_file.div_ceil(LOAD_WORDS_PER_LINE);
    for f in 0..files {
        let file = std::fs::File::create(dir.join(format!("part-{f:03}.txt"))).expect("input file");
        let mut out = BufWriter::new(file);
        let mut line = |words: &mut dyn Iterator<Item = u64>| {
            let mut first = true;
            for i in words {
                let sep = if first { "" } else { " " };
                first = false;
                write!(out, "{sep}k{f:02}-{i:012}").expect("write");
            }
            writeln!(out).expect("write");
        };
        for l in 0..load_per_file {
            let start = l * LOAD_WORDS_PER_LINE;
            line(&mut (start..(start + LOAD_WORDS_PER_LINE).min(per_file)));
        }
        // A stride through the file's keys: every line touches keys not touched recently.
        let stride = (7919 % per_file).max(1);
        let mut i = 0;
        for _ in 0..rate * change_seconds {
            line(&mut (0..WORDS_PER_LINE).map(|_| {
                i = (i + stride) % per_file;
                i
            }));
        }
        out.flush().expect("flush");
    }
    KeyedInput { rate }
}
