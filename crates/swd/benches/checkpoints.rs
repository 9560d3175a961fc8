//! Incremental checkpoints against state size: a coordinator and two workers run `wordcount`
//! (8 partitions, checkpoints every second) on an input whose first part holds `K` distinct
//! words (the keyed state: 18 bytes a key as checkpointed) and whose second part touches 1% of
//! the keys per second (rate-limited lines of words drawn across the whole key space). Once the
//! distinct words are in, every checkpoint committed is recorded from the status: the bytes it wrote
//! (`checkpoints.last_size_bytes`), the state it refers to (`checkpoints.state_bytes`) and its
//! duration from trigger to last acknowledgement (`last_duration_ms`). Two lines per size: every
//! checkpoint since the state was 90% loaded (the tail of the load included: its deltas hold the
//! last new keys), and the change phase alone (from the first checkpoint that wrote under 2% of
//! the state: the regime of 1% changed per interval).
//!
//! Run: `cargo bench -p swd --bench checkpoints` (state sizes in MB: `SWD_BENCH_STATE_MB`,
//! default `10,100,1000`; the 1000 MB case writes about 1 GB of input and needs a few GB of RAM).
//! A measurement, not a test: it prints figures and asserts nothing about speed.
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::keyed_input::{loaded, write_keyed_input, BYTES_PER_KEY};
use common::{percentile, start_coordinator, start_worker};
use streamweave_distributed::protocol::JobState;
use streamweave_distributed::{Client, ClusterStatus};

const PARTITIONS: u64 = 8;
/// Seconds of the 1%-per-second phase (`SWD_BENCH_CHANGE_SECONDS`, default 15; past about 64
/// seconds the chains are compacted apart from the barriers during it).
fn change_seconds() -> u64 {
    common::env_or("SWD_BENCH_CHANGE_SECONDS", 15)
}

struct Sample {
    written: u64,
    state: u64,
    duration_ms: u64,
}

async fn run(scratch: &Path, state_mb: u64) -> Vec<Sample> {
    let keys = state_mb * 1_000_000 / BYTES_PER_KEY;
    let input = scratch.join(format!("input-{state_mb}"));
    let written = write_keyed_input(&input, keys, PARTITIONS, change_seconds());
    let rate = written.rate;
    let (output, data) = (
        scratch.join(format!("out-{state_mb}")),
        scratch.join(format!("data-{state_mb}")),
    );
    let (_coordinator, addr) = start_coordinator(|c| {
        c.args(["--partitions", &PARTITIONS.to_string(), "--min-workers", "2"])
            .args(["--job", "wordcount", "--checkpoint-interval", "1s"])
            .args(["--rate", &rate.to_string()])
            // One split per file: each source reads its keys before its changing lines.
            .args(["--param", "min_split=1099511627776"])
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .arg("--data-dir")
            .arg(&data);
    });
    let _workers: Vec<_> = (1..=2)
        .map(|i| start_worker(addr, &format!("w{i}"), &[]))
        .collect();
    let mut client = Client::connect(addr, "default").await.expect("connect");
    let end = Instant::now() + Duration::from_secs(3600);
    let mut samples = Vec::new();
    let mut last = None;
    loop {
        let s: ClusterStatus = client.status().await.expect("status");
        let job_over = s
            .job
            .as_ref()
            .is_some_and(|j| j.state != JobState::Running && j.attempt > 0);
        if let Some(c) = &s.checkpoints {
            if c.last_completed != last {
                last = c.last_completed;
                if let (Some(written), Some(state)) = (c.last_size_bytes, c.state_bytes) {
                    if loaded(Some(state), keys) {
                        samples.push(Sample {
                            written,
                            state,
                            duration_ms: c.last_duration_ms.unwrap_or(0),
                        });
                    }
                }
            }
        }
        if job_over || Instant::now() > end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    samples
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let sizes: Vec<u64> = std::env::var("SWD_BENCH_STATE_MB")
        .unwrap_or_else(|_| "10,100,1000".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let per_mille = common::keyed_input::change_per_mille();
    println!(
        "checkpoints: wordcount, 2 workers, P=8, checkpoints every 1s, {}.{}% of keys changed per second, {cores} cores",
        per_mille / 10,
        per_mille % 10
    );
    for state_mb in sizes {
        let scratch = tempfile::tempdir().expect("scratch dir");
        let samples = run(scratch.path(), state_mb).await;
        if samples.is_empty() {
            println!("state {state_mb:>5} MB: no checkpoint once the state was loaded");
            continue;
        }
        let state = samples.iter().map(|s| s.state).max().unwrap_or(0);
        let changing = samples
            .iter()
            .position(|s| s.written.saturating_mul(50) < s.state)
            .map_or(&samples[..0], |first| &samples[first..]);
        for (what, samples) in [("since loaded", &samples[..]), ("change phase", changing)] {
            if samples.is_empty() {
                println!("state {state_mb:>5} MB, {what}: no checkpoint");
                continue;
            }
            let mut written: Vec<f64> = samples.iter().map(|s| s.written as f64).collect();
            let mut duration: Vec<f64> = samples.iter().map(|s| s.duration_ms as f64).collect();
            written.sort_by(f64::total_cmp);
            duration.sort_by(f64::total_cmp);
            println!(
                "state {state_mb:>5} MB ({state} B referenced), {what}: {} checkpoints, written median {:.0} B ({:.2}% of state) p90 {:.0} B max {:.0} B, duration median {:.0} ms p90 {:.0} ms max {:.0} ms",
                samples.len(),
                percentile(&written, 0.5),
                100.0 * percentile(&written, 0.5) / state.max(1) as f64,
                percentile(&written, 0.9),
                written[written.len() - 1],
                percentile(&duration, 0.5),
                percentile(&duration, 0.9),
                duration[duration.len() - 1],
            );
        }
    }
}
