//! Single-thread word-count baseline ("the per-core limit").
//!
//! `single-thread --input DIR --output DIR [--shard I/N]`: reads every file of DIR (names not
//! starting with `.` or `_`, sorted by name) in one thread, counts words split on
//! `char::is_whitespace` in one `FxHashMap<String, u64>`, and writes `word\tcount` lines to
//! OUTDIR/part-0.
//!
//! With `--shard I/N` it reads only the files `i` with `i % N == I` and writes OUTDIR/part-I:
//! N such processes run side by side give the wall time of N perfectly scaling cores with no
//! exchange at all (their outputs still have to be merged by word to make a word count).

use std::path::PathBuf;
use std::process::ExitCode;

use timely_wordcount::{count_words, for_each_text_block, list_input_files, write_counts, FxHashMap};

fn run() -> Result<(), String> {
    let mut input = None;
    let mut output = None;
    let mut shard = (0usize, 1usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--input" => input = Some(PathBuf::from(value()?)),
            "--output" => output = Some(PathBuf::from(value()?)),
            "--shard" => {
                let v = value()?;
                let parsed = v
                    .split_once('/')
                    .and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)));
                shard = match parsed {
                    Some((i, n)) if i < n => (i, n),
                    _ => return Err(format!("--shard {v:?}: expected I/N with I < N")),
                };
            }
            "-h" | "--help" => {
                println!("usage: single-thread --input DIR --output DIR [--shard I/N]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let input = input.ok_or("--input DIR is required")?;
    let output = output.ok_or("--output DIR is required")?;

    let files = list_input_files(&input).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut counts = FxHashMap::default();
    for path in files.iter().skip(shard.0).step_by(shard.1) {
        for_each_text_block(path, |text| count_words(&mut counts, text))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    std::fs::create_dir_all(&output).map_err(|e| format!("{}: {e}", output.display()))?;
    let part = output.join(format!("part-{}", shard.0));
    write_counts(&part, &counts).map_err(|e| format!("{}: {e}", part.display()))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("single-thread: {e}");
            ExitCode::FAILURE
        }
    }
}
