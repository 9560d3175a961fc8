//! What checkpoints cost in throughput: the same high-cardinality word count, unthrottled, with
//! a checkpoint every second and without checkpoints, side by side (rounds alternate).
//!
//! The input holds `K` distinct words (18 bytes of checkpointed state each: `SWD_BENCH_STATE_MB`,
//! default 100) over 8 files, in one of two workloads (`SWD_BENCH_WORKLOAD`, default both):
//!   all - every word `SWD_BENCH_PASSES` times (default 4), each pass visiting the keys in a
//!         different order: every key changes between any two checkpoints, so each delta is as
//!         large as the rate allows (the worst case for incremental checkpoints);
//!   hot - every word once, then `PASSES x K` words (default 160 passes) over a hot 1% of the
//!         keys: once the state is built, each interval changes at most 1% of it (the regime of
//!         the goal). The state is written once whatever the run's length, so a short
//!         run weighs that write more than a job that runs for hours: at 160 passes a run lasts
//!         about 15 s on 2 cores, of which the state arrives over the first few seconds (the
//!         source reads its files in turns), and the input is 15 GB.
//! Each run checks its output (every word with its exact count, none missing) before its time
//! counts.
//!
//! Run: `cargo bench -p swd --bench checkpoint_overhead` (`SWD_BENCH_ROUNDS`, default 2).
//! A measurement, not a test: it prints figures and asserts nothing about speed.
mod common;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use common::keyed_input::BYTES_PER_KEY;
use common::{env_or, job_ended, print_ms, start_coordinator, start_worker};
use streamweave_distributed::security::Security;

const FILES: u64 = 8;
const WORDS_PER_LINE: u64 = 10;

/// The hot keys of each file in the `hot` workload (the first 1%), and how often each is seen
/// after the first pass.
fn hot_keys(per_file: u64, passes: u64) -> (u64, u64) {
    ((per_file / 100).max(1), 100 * passes)
}

/// Writes `keys` distinct words over `FILES` files: each word `passes` times (`hot` false), or
/// each once and then the hot keys (see [`hot_keys`]) round after round.
fn write_input(dir: &Path, keys: u64, passes: u64, hot: bool) {
    std::fs::create_dir_all(dir).expect("input dir");
    let per_file = (keys / FILES).max(1);
    for f in 0..FILES {
        let file = std::fs::File::create(dir.join(format!("part-{f:03}.txt"))).expect("input file");
        let mut out = BufWriter::new(file);
        if hot {
            let (hot, visits) = hot_keys(per_file, passes);
            write_words(&mut out, f, 0..per_file);
            // The hot keys in turn, `visits` times: whole lines of ten turns, written once
            // and repeated (a long run's input is gigabytes).
            let mut block = Vec::new();
            write_words(&mut block, f, (0..hot * WORDS_PER_LINE).map(|j| j % hot));
            for _ in 0..visits / WORDS_PER_LINE {
                out.write_all(&block).expect("write");
            }
            write_words(&mut out, f, (0..hot * (visits % WORDS_PER_LINE)).map(|j| j % hot));
            out.flush().expect("flush");
            continue;
        }
        for pass in 0..passes {
            // A stride coprime with most sizes: each pass visits the keys in another order.
            let stride = [1u64, 7919, 104_729, 1_299_709][pass as usize % 4] % per_file;
            let stride = if stride == 0 || gcd(stride, per_file) != 1 {
                1
            } else {
                stride
            };
            let first = pass % per_file;
            write_words(
                &mut out,
                f,
                (0..per_file).map(|n| (first + n * stride) % per_file),
            );
        }
        out.flush().expect("flush");
    }
}

/// Writes the words of file `f` with these indices, `WORDS_PER_LINE` to a line.
fn write_words(out: &mut impl Write, f: u64, indices: impl Iterator<Item = u64>) {
    let mut line = Vec::with_capacity(WORDS_PER_LINE as usize);
    for i in indices {
        line.push(format!("k{f:02}-{i:012}"));
        if line.len() as u64 == WORDS_PER_LINE {
            writeln!(out, "{}", line.join(" ")).expect("write");
            line.clear();
        }
    }
    if !line.is_empty() {
        writeln!(out, "{}", line.join(" ")).expect("write");
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Checks the word count's output: `keys` words, each counted `passes` times (`hot` false), or
/// once plus its visits as a hot key.
fn check_output(dir: &Path, keys: u64, passes: u64, hot: bool) {
    let per_file = (keys / FILES).max(1);
    let (hot_count, visits) = hot_keys(per_file, passes);
    let expected_count = |word: &str| -> u64 {
        let index: Option<u64> = word.rsplit('-').next().and_then(|i| i.parse().ok());
        match (hot, index) {
            (false, _) => passes,
            (true, Some(i)) if i < hot_count => 1 + visits,
            (true, _) => 1,
        }
    };
    let (mut words, mut wrong) = (0u64, 0u64);
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with('.') || n.starts_with('_')) || !path.is_file() {
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("read output").lines() {
            let Some((word, count)) = line.split_once('\t') else {
                continue;
            };
            words += 1;
            if count.trim().parse::<u64>().ok() != Some(expected_count(word)) {
                wrong += 1;
            }
        }
    }
    let expected = per_file * FILES;
    assert_eq!((words, wrong), (expected, 0), "output: (words, wrong counts)");
}

/// One run; its wall time from the coordinator's start to the job finished, in ms.
async fn run(
    input: &Path,
    scratch: &Path,
    checkpoints: bool,
    round: u64,
    keys: u64,
    passes: u64,
    hot: bool,
) -> f64 {
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
    check_output(&output, keys, passes, hot);
    let _ = std::fs::remove_dir_all(&output);
    let _ = std::fs::remove_dir_all(&data);
    elapsed.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let state_mb = env_or("SWD_BENCH_STATE_MB", 100);
    let passes: Option<u64> = std::env::var("SWD_BENCH_PASSES")
        .ok()
        .and_then(|p| p.trim().parse().ok());
    let rounds = env_or("SWD_BENCH_ROUNDS", 2);
    let keys = state_mb * 1_000_000 / BYTES_PER_KEY;
    let workloads = std::env::var("SWD_BENCH_WORKLOAD").unwrap_or_else(|_| "all,hot".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    for workload in workloads.split(',').map(str::trim) {
        let hot = match workload {
            "all" => false,
            "hot" => true,
            other => panic!("SWD_BENCH_WORKLOAD: all or hot, not {other:?}"),
        };
        let passes = passes.unwrap_or(if hot { 160 } else { 4 });
        println!(
            "checkpoint overhead ({workload}): wordcount, 2 workers, P=8, {keys} distinct words, {passes} passes, {cores} cores"
        );
        let scratch = tempfile::tempdir().expect("scratch dir");
        let input = scratch.path().join("input");
        write_input(&input, keys, passes, hot);
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            off.push(run(&input, scratch.path(), false, round, keys, passes, hot).await);
            on.push(run(&input, scratch.path(), true, round, keys, passes, hot).await);
        }
        print_ms("no checkpoints", &mut off);
        print_ms("checkpoints 1s", &mut on);
        let median = |v: &[f64]| common::percentile(v, 0.5);
        println!(
            "throughput with a checkpoint every second / without: {:.3} (goal >= 0.95)",
            median(&off) / median(&on)
        );
    }
}
