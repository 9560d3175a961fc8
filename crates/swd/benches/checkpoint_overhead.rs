//! What checkpoints cost in throughput: the same high-cardinality word count, unthrottled, with
//! a checkpoint every second and without checkpoints, side by side (rounds alternate).
//!
//! The input holds `K` distinct words (about 20 bytes of keyed state each: `SWD_BENCH_STATE_MB`,
//! default 100) over 8 files, every word `SWD_BENCH_PASSES` times (default 4), each pass visiting
//! the keys in a different order. Every key changes between any two checkpoints, so each
//! checkpoint's delta is as large as the rate allows: the worst case for incremental
//! checkpoints, not the 1% of the goal. Each run checks its output (every word counted
//! `PASSES` times, none missing) before its time counts.
//!
//! Run: `cargo bench -p swd --bench checkpoint_overhead` (`SWD_BENCH_ROUNDS`, default 2).
//! A measurement, not a test: it prints figures and asserts nothing about speed.
mod common;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use common::{job_ended, print_ms, start_coordinator, start_worker};
use streamweave_distributed::security::Security;

const FILES: u64 = 8;
const WORDS_PER_LINE: u64 = 10;
/// Bytes of state per key, roughly (a 16-byte word, its length and its count).
const BYTES_PER_KEY: u64 = 20;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `keys` distinct words over `FILES` files, each word `passes` times.
fn write_input(dir: &Path, keys: u64, passes: u64) {
    std::fs::create_dir_all(dir).expect("input dir");
    let per_file = (keys / FILES).max(1);
    for f in 0..FILES {
        let file = std::fs::File::create(dir.join(format!("part-{f:03}.txt"))).expect("input file");
        let mut out = BufWriter::new(file);
        for pass in 0..passes {
            // A stride coprime with most sizes: each pass visits the keys in another order.
            let stride = [1u64, 7919, 104_729, 1_299_709][pass as usize % 4] % per_file;
            let stride = if stride == 0 || gcd(stride, per_file) != 1 {
                1
            } else {
                stride
            };
            let mut i = pass % per_file;
            let mut line = Vec::with_capacity(WORDS_PER_LINE as usize);
            for _ in 0..per_file {
                line.push(format!("k{f:02}-{i:012}"));
                if line.len() as u64 == WORDS_PER_LINE {
                    writeln!(out, "{}", line.join(" ")).expect("write");
                    line.clear();
                }
                i = (i + stride) % per_file;
            }
            if !line.is_empty() {
                writeln!(out, "{}", line.join(" ")).expect("write");
            }
        }
        out.flush().expect("flush");
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Checks the word count's output: `keys` words, each counted `passes` times.
fn check_output(dir: &Path, keys: u64, passes: u64) {
    let (mut words, mut wrong) = (0u64, 0u64);
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with('.') || n.starts_with('_')) || !path.is_file() {
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("read output").lines() {
            let Some((_, count)) = line.split_once('\t') else {
                continue;
            };
            words += 1;
            if count.trim().parse::<u64>().ok() != Some(passes) {
                wrong += 1;
            }
        }
    }
    let expected = (keys / FILES).max(1) * FILES;
    assert_eq!((words, wrong), (expected, 0), "output: (words, wrong counts)");
}

/// One run; its wall time from the coordinator's start to the job finished, in ms.
async fn run(input: &Path, scratch: &Path, checkpoints: bool, round: u64, keys: u64, passes: u64) -> f64 {
    let output = scratch.join(format!("out-{checkpoints}-{round}"));
    let data = scratch.join(format!("data-{checkpoints}-{round}"));
    let start = Instant::now();
    let (_coordinator, addr) = start_coordinator(|c| {
        c.args(["--partitions", "8", "--min-workers", "2", "--job", "wordcount"])
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(&output)
            .arg("--data-dir")
            .arg(&data);
        if checkpoints {
            c.args(["--checkpoint-interval", "1s"]);
        }
    });
    let _workers: Vec<_> = ["w1", "w2"]
        .iter()
        .map(|id| start_worker(addr, id, &[]))
        .collect();
    let elapsed = job_ended(addr, &Security::default()).await - start;
    check_output(&output, keys, passes);
    let _ = std::fs::remove_dir_all(&output);
    let _ = std::fs::remove_dir_all(&data);
    elapsed.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let state_mb = env_or("SWD_BENCH_STATE_MB", 100);
    let passes = env_or("SWD_BENCH_PASSES", 4);
    let rounds = env_or("SWD_BENCH_ROUNDS", 2);
    let keys = state_mb * 1_000_000 / BYTES_PER_KEY;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "checkpoint overhead: wordcount, 2 workers, P=8, {keys} distinct words x {passes} passes, {cores} cores"
    );
    let scratch = tempfile::tempdir().expect("scratch dir");
    let input = scratch.path().join("input");
    write_input(&input, keys, passes);
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        off.push(run(&input, scratch.path(), false, round, keys, passes).await);
        on.push(run(&input, scratch.path(), true, round, keys, passes).await);
    }
    print_ms("no checkpoints", &mut off);
    print_ms("checkpoints 1s", &mut on);
    let median = |v: &[f64]| common::percentile(v, 0.5);
    println!(
        "throughput with a checkpoint every second / without: {:.3} (goal >= 0.95)",
        median(&off) / median(&on)
    );
}
