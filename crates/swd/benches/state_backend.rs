//! Keyed state backends: a coordinator and two workers run `wordcount` (8 partitions, no rate
//! limit) with `--state-backend memory` and then `--state-backend disk` on the same input, and
//! print the throughput (words per second, from the job's start to its end) and each run's
//! peak worker RSS (`VmHWM`) side by side. Then a word count of distinct words only, whose
//! keyed state is about `SWD_BENCH_STATE_GB` GB (18 bytes a key, as in checkpoint bytes),
//! runs on the disk backend: its workers' peak RSS against that state, and whether the output
//! is exact (every word once, with count 1).
//!
//! Run: `cargo bench -p swd --bench state_backend`. Knobs: `SWD_BENCH_KEYS` (distinct words of
//! the throughput runs, default 2000000, each counted 5 times), `SWD_BENCH_STATE_GB` (default
//! 0.25; the design goal is 4 GB of state under 1 GB RSS per worker: about 3.4 GB of input and
//! several GB of database files), `SWD_BENCH_CHECKPOINT` (a checkpoint interval for the
//! large-state run, e.g. `10s`; default none), `SWD_BENCH_PART_BYTES` (comma-separated part
//! sizes of the large-state run's checkpoint bases, `default` for the backend's own: one run
//! each, side by side; e.g. `default,100000000000` compares parts with a base in one piece),
//! `SWD_BENCH_KEYS=0` skips the throughput runs. A measurement: it asserts nothing about speed.
mod common;

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{start_coordinator, start_worker, Killed};
use streamweave_distributed::protocol::JobState;
use streamweave_distributed::Client;

const PARTITIONS: u64 = 8;
const WORDS_PER_LINE: u64 = 10;

/// Writes `PARTITIONS` files of lines of 10 words over `keys` distinct words, each `times`
/// times, spread by a stride so that neighbouring words are far apart in the key space.
fn write_input(dir: &Path, keys: u64, times: u64) -> u64 {
    std::fs::create_dir_all(dir).expect("input dir");
    let total = keys * times;
    let per_file = total.div_ceil(PARTITIONS);
    // A prime stride: coprime with the key count unless it divides it.
    let stride = if keys % 1_000_003 == 0 { 999_983 } else { 1_000_003 };
    let mut written = 0;
    for f in 0..PARTITIONS {
        let file = std::fs::File::create(dir.join(format!("part-{f:03}.txt"))).expect("input file");
        let mut out = BufWriter::new(file);
        let (start, end) = (f * per_file, ((f + 1) * per_file).min(total));
        let mut line = Vec::with_capacity(WORDS_PER_LINE as usize);
        for i in start..end {
            line.push(format!("k{:012}", (i % keys) * stride % keys));
            if line.len() as u64 == WORDS_PER_LINE || i + 1 == end {
                writeln!(out, "{}", line.join(" ")).expect("write");
                line.clear();
            }
            written += 1;
        }
        out.flush().expect("flush");
    }
    written
}

/// The peak resident set of process `pid`, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    (status.lines())
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The bytes of the files under `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    (entries.flatten())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

struct Run {
    seconds: f64,
    peak_rss: Vec<u64>,
    /// The largest the workers' state directories grew, in all.
    peak_disk: u64,
    finished: bool,
}

/// Runs word count over `input` on `backend` and returns its duration and the workers' peak RSS.
async fn run(
    scratch: &Path,
    input: &Path,
    backend: &str,
    checkpoint: Option<&str>,
    params: &[String],
) -> Run {
    // A run per part size reuses the names: each starts with nothing from the one before.
    let output = scratch.join(format!("out-{backend}"));
    let data = scratch.join(format!("data-{backend}"));
    for dir in [&output, &data] {
        let _ = std::fs::remove_dir_all(dir);
    }
    let (_coordinator, addr) = start_coordinator(|c| {
        c.args(["--partitions", &PARTITIONS.to_string(), "--min-workers", "2"])
            .args(["--job", "wordcount", "--state-backend", backend])
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(&output)
            .arg("--data-dir")
            .arg(&data);
        if let Some(interval) = checkpoint {
            c.args(["--checkpoint-interval", interval]);
        }
        for param in params {
            c.args(["--param", param]);
        }
    });
    let states: Vec<_> = (1..=2)
        .map(|i| scratch.join(format!("state-{backend}-w{i}")))
        .collect();
    for state in &states {
        let _ = std::fs::remove_dir_all(state);
    }
    let workers: Vec<Killed> = (states.iter().enumerate())
        .map(|(i, state)| {
            start_worker(
                addr,
                &format!("w{}", i + 1),
                &["--state-dir", &state.to_string_lossy()],
            )
        })
        .collect();
    let mut peak_disk = 0;
    let mut client = Client::connect(addr, "default").await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(6 * 3600);
    let mut started = None;
    let mut peak = vec![0; workers.len()];
    let finished = loop {
        let s = client.status().await.expect("status");
        let job = s.job.as_ref();
        if started.is_none() && job.is_some_and(|j| j.attempt > 0) {
            started = Some(Instant::now());
        }
        for (p, w) in peak.iter_mut().zip(&workers) {
            *p = (*p).max(peak_rss(w.0.id()));
        }
        peak_disk = peak_disk.max(states.iter().map(|d| dir_bytes(d)).sum());
        match job.map(|j| j.state) {
            Some(JobState::Finished) => break true,
            Some(JobState::Failed) => break false,
            _ if Instant::now() > deadline => break false,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    Run {
        seconds: started.map_or(0.0, |t| t.elapsed().as_secs_f64()),
        peak_rss: peak,
        peak_disk,
        finished,
    }
}

/// Whether the output of a distinct-words count has `keys` lines, each with count 1.
fn exact_distinct(output: &Path, keys: u64) -> bool {
    let mut lines = 0;
    let Ok(entries) = std::fs::read_dir(output) else {
        return false;
    };
    // Output files only: the sink keeps its bookkeeping in `.swd/`.
    let files = (entries.flatten()).filter(|e| !e.file_name().to_string_lossy().starts_with('.'));
    for entry in files {
        let Ok(file) = std::fs::File::open(entry.path()) else {
            return false;
        };
        for line in BufReader::new(file).lines() {
            let Ok(line) = line else { return false };
            if !line.ends_with("\t1") {
                return false;
            }
            lines += 1;
        }
    }
    lines == keys
}

fn mib(bytes: &[u64]) -> String {
    let v: Vec<String> = bytes.iter().map(|b| format!("{} MiB", b >> 20)).collect();
    v.join(", ")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let keys: u64 = common::env_or("SWD_BENCH_KEYS", 2_000_000);
    let state_gb: f64 = common::env_or("SWD_BENCH_STATE_GB", 0.25);
    let checkpoint = std::env::var("SWD_BENCH_CHECKPOINT").ok();
    let part_bytes: String = common::env_or("SWD_BENCH_PART_BYTES", "default".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("state backends: wordcount, 2 workers, P={PARTITIONS}, {cores} cores");

    let scratch = tempfile::tempdir().expect("scratch dir");
    let input = scratch.path().join("input");
    let words = write_input(&input, keys, 5);
    for backend in ["memory", "disk"].into_iter().filter(|_| keys > 0) {
        let r = run(scratch.path(), &input, backend, None, &[]).await;
        println!(
            "{backend:<6}: {keys} keys, {words} words in {:.2} s = {:.0} words/s, peak worker RSS {}, state on disk {} MiB{}",
            r.seconds,
            words as f64 / r.seconds.max(1e-9),
            mib(&r.peak_rss),
            r.peak_disk >> 20,
            if r.finished {
                ""
            } else {
                " (the job did not finish)"
            }
        );
    }
    drop(scratch);

    let scratch = tempfile::tempdir().expect("scratch dir");
    let input = scratch.path().join("input");
    let keys = (state_gb * 1e9 / common::keyed_input::BYTES_PER_KEY as f64) as u64;
    write_input(&input, keys, 1);
    for parts in part_bytes.split(',').map(str::trim) {
        let params = match parts {
            "default" => Vec::new(),
            bytes => vec![format!("state.part_bytes={bytes}")],
        };
        let r = run(scratch.path(), &input, "disk", checkpoint.as_deref(), &params).await;
        let exact = r.finished && exact_distinct(&scratch.path().join("out-disk"), keys);
        println!(
            "disk, {state_gb} GB of keyed state ({keys} keys){}, parts of {parts} bytes: {:.1} s, peak worker RSS {}, state on disk {} MiB at most, output {}",
            checkpoint
                .as_ref()
                .map(|c| format!(", checkpoints every {c}"))
                .unwrap_or_default(),
            r.seconds,
            mib(&r.peak_rss),
            r.peak_disk >> 20,
            if exact { "exact" } else { "NOT exact" }
        );
    }
}
