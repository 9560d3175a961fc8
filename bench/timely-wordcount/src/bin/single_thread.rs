//! Single-thread word-count baseline ("the per-core limit").
//!
//! `single-thread --input DIR --output DIR`: reads every file of DIR (names not starting with
//! `.` or `_`) in one thread, counts words split on `char::is_whitespace` in one
//! `FxHashMap<String, u64>`, and writes `word\tcount` lines to DIR/part-0.

use std::path::PathBuf;
use std::process::ExitCode;

use timely_wordcount::{count_words, for_each_text_block, list_input_files, write_counts, FxHashMap};

fn run() -> Result<(), String> {
    let mut input = None;
    let mut output = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--input" => input = Some(PathBuf::from(value()?)),
            "--output" => output = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!("usage: single-thread --input DIR --output DIR");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let input = input.ok_or("--input DIR is required")?;
    let output = output.ok_or("--output DIR is required")?;

    let files = list_input_files(&input).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut counts = FxHashMap::default();
    for path in &files {
        for_each_text_block(path, |text| count_words(&mut counts, text))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    std::fs::create_dir_all(&output).map_err(|e| format!("{}: {e}", output.display()))?;
    let part = output.join("part-0");
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
