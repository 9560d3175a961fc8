//! Move pause and recovery time against state size. A coordinator (Gradual, P = 8 unless
//! `SWD_BENCH_PARTITIONS` says otherwise, checkpoints every second, heartbeat timeout 1 s) and
//! two workers run `wordcount` on an input
//! whose first part holds `K` distinct words (the keyed state: 18 bytes a key as checkpointed)
//! and whose second part touches 1% of the keys per second. Once the state is loaded:
//!   move     - each round a third worker joins (its share moves to it, one partition per
//!              checkpoint, loaded ahead from the last committed checkpoint), then leaves with
//!              SIGTERM (its partitions move back). Per moved partition, from the coordinator's
//!              `resumed` events: `pause` (from the move's barrier being triggered to the new
//!              owner running the partition: its records wait meanwhile) and `preload` (the new
//!              owner loading the state ahead, while the old owner still runs it);
//!   recovery - a worker is SIGKILLed; from the kill: `restarted` (the attempt on the survivor
//!              started, after the failure was detected), `flowing` (records read in it), and
//!              `checkpointed` (its first checkpoint completed), and how many partitions the
//!              survivor took from its own memory (local recovery) rather than the store.
//!
//! Run: `cargo bench -p swd --bench state_moves` (state sizes in MB: `SWD_BENCH_STATE_MB`,
//! default `10,100,1000`; rounds of moves: `SWD_BENCH_ROUNDS`, default 3; the 1000 MB case writes
//! about 2 GB of input and needs a few GB of RAM; `SWD_BENCH_PARTITIONS`, default 8, with at
//! least 3 for a joining worker to take a partition: `SWD_BENCH_PARTITIONS=3
//! SWD_BENCH_STATE_MB=3000` moves 1 GB partitions; `SWD_BENCH_CHANGE_SECONDS`, default 300, the
//! length of the changing part, which must outlast the moves). A measurement, not a test: it
//! prints figures and asserts nothing about speed.
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::keyed_input::{change_per_mille, loaded, write_keyed_input, BYTES_PER_KEY};
use common::{env_or, print_ms, scrape, start_coordinator, start_worker, start_worker_with_metrics, Killed};
use streamweave_distributed::protocol::JobState;
use streamweave_distributed::{Client, ClusterStatus};

/// What the bench's environment sets.
#[derive(Clone, Copy)]
struct Knobs {
    partitions: u64,
    /// Seconds of the 1%-per-second phase: long enough for the moves and the kill.
    change_seconds: u64,
    rounds: usize,
}

/// Polls the status until `done` holds (within an hour: loading 1 GB takes a while).
async fn wait(
    client: &mut Client,
    what: &str,
    done: impl Fn(&ClusterStatus) -> bool,
) -> (Instant, ClusterStatus) {
    let end = Instant::now() + Duration::from_secs(3600);
    loop {
        let s = client.status().await.expect("status");
        if done(&s) {
            return (Instant::now(), s);
        }
        assert!(Instant::now() < end, "timed out waiting for {what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn owned(s: &ClusterStatus, id: &str) -> usize {
    s.workers
        .iter()
        .find(|w| w.id.as_str() == id)
        .map_or(0, |w| w.partitions.len())
}

/// The events of kind `kind` in the data directory's event log.
fn events(data: &Path, kind: &str) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(data.join("events.jsonl")).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == kind)
        .collect()
}

/// `(pause_ms, preload_ms)` of every `resumed` event in the data directory's event log.
fn resumed(data: &Path) -> Vec<(f64, Option<f64>)> {
    events(data, "resumed")
        .into_iter()
        .map(|e| {
            (
                e["pause_ms"].as_f64().unwrap_or(f64::NAN),
                e["preload_ms"].as_f64(),
            )
        })
        .collect()
}

async fn run(scratch: &Path, state_mb: u64, knobs: &Knobs) {
    let Knobs {
        partitions,
        change_seconds,
        rounds,
    } = *knobs;
    let keys = state_mb * 1_000_000 / BYTES_PER_KEY;
    let input = scratch.join("input");
    let written = write_keyed_input(&input, keys, partitions, change_seconds);
    let rate = written.rate;
    let (output, data) = (scratch.join("out"), scratch.join("data"));
    let (_coordinator, addr): (Killed, SocketAddr) = start_coordinator(|c| {
        c.args(["--partitions", &partitions.to_string(), "--min-workers", "2"])
            .args(["--heartbeat-timeout", "1s", "--health-check-interval", "50ms"])
            .args(["--rebalance", "gradual", "--job", "wordcount"])
            .args(["--checkpoint-interval", "1s", "--rate", &rate.to_string()])
            // One split per file: each source reads its keys before its changing lines.
            .args(["--param", "min_split=1099511627776"])
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .arg("--data-dir")
            .arg(&data);
    });
    let (w1, survivor_metrics) = start_worker_with_metrics(addr, "w1");
    let mut workers: Vec<Killed> = vec![w1, start_worker(addr, "w2", &[])];
    let mut client = Client::connect(addr, "default").await.expect("connect");
    let (_, s) = wait(&mut client, "the state loaded", |s| {
        loaded(s.checkpoints.as_ref().and_then(|c| c.state_bytes), keys)
    })
    .await;
    // Three more checkpoints: the last keys in, the chain past its first base.
    let settled = s.checkpoints.as_ref().and_then(|c| c.last_completed).unwrap_or(0) + 3;
    let (_, s) = wait(&mut client, "the state settled", |s| {
        s.checkpoints
            .as_ref()
            .and_then(|c| c.last_completed)
            .is_some_and(|id| id >= settled)
    })
    .await;
    let state = s.checkpoints.as_ref().and_then(|c| c.state_bytes).unwrap_or(0);
    for _ in 0..rounds {
        // Its partitions move back on SIGTERM, each loaded first: minutes at a gigabyte.
        let mut w3 = start_worker(addr, "w3", &["--drain-timeout", "900s"]);
        wait(&mut client, "w3's share moved in", |s| {
            owned(s, "w3") >= (partitions / 3) as usize && s.moving.is_empty()
        })
        .await;
        // SIGTERM: w3's partitions move back, then it exits.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(w3.0.id() as i32, libc::SIGTERM) };
        // Polling meanwhile: an admin connection idle for 30 s is closed.
        wait(&mut client, "w3 gone", |s| {
            s.workers.iter().all(|w| w.id.as_str() != "w3")
        })
        .await;
        let _ = w3.0.wait();
    }
    // A worker lost by itself (not the bench's kill) restarted the job: its moves' pauses
    // include the restart, and the recovery below would wait for an attempt that never comes.
    let lost: Vec<String> = events(&data, "failed")
        .iter()
        .map(|e| e["worker"].to_string())
        .collect();
    assert!(
        lost.is_empty(),
        "workers failed during the moves, before the bench's kill: {lost:?}"
    );
    let moves = resumed(&data);
    let mut pause: Vec<f64> = moves.iter().map(|m| m.0).collect();
    let mut preload: Vec<f64> = moves.iter().filter_map(|m| m.1).collect();

    let (_, before) = wait(&mut client, "a running attempt", |s| {
        s.job.as_ref().is_some_and(|j| j.state == JobState::Running)
    })
    .await;
    let attempt = before.job.as_ref().map_or(0, |j| j.attempt);
    let killed_at = Instant::now();
    workers[1].0.kill().expect("SIGKILL");
    let (restarted, s) = wait(&mut client, "the attempt on the survivor", |s| {
        s.job
            .as_ref()
            .is_some_and(|j| j.attempt > attempt && j.state == JobState::Running)
            && s.workers.iter().all(|w| w.id.as_str() != "w2")
    })
    .await;
    let restored = s
        .job
        .as_ref()
        .and_then(|j| j.last_restored_checkpoint)
        .unwrap_or(0);
    let first_in = s.job.as_ref().map_or(0, |j| j.records_in);
    let (flowing, _) = wait(&mut client, "records read in the new attempt", |s| {
        s.job
            .as_ref()
            .is_some_and(|j| j.attempt > attempt && j.records_in > first_in)
    })
    .await;
    let (checkpointed, _) = wait(&mut client, "a checkpoint of the new attempt", |s| {
        s.checkpoints
            .as_ref()
            .and_then(|c| c.last_completed)
            .is_some_and(|id| id > restored)
    })
    .await;
    let local = scrape(&survivor_metrics, "swd_worker_local_restores_total");
    let ms = |t: Instant| (t - killed_at).as_secs_f64() * 1000.0;
    println!(
        "state {state_mb} MB ({state} B referenced by the checkpoint), {} moves:",
        pause.len()
    );
    if !pause.is_empty() {
        print_ms("  move pause", &mut pause);
    }
    if !preload.is_empty() {
        print_ms("  move preload", &mut preload);
    }
    println!(
        "  recovery           kill -> restarted {:.0} ms, -> flowing {:.0} ms, -> checkpointed {:.0} ms, {local} partitions from the survivor's memory",
        ms(restarted),
        ms(flowing),
        ms(checkpointed)
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let sizes: Vec<u64> = std::env::var("SWD_BENCH_STATE_MB")
        .unwrap_or_else(|_| "10,100,1000".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let knobs = Knobs {
        partitions: env_or("SWD_BENCH_PARTITIONS", 8),
        change_seconds: env_or("SWD_BENCH_CHANGE_SECONDS", 300),
        rounds: env_or("SWD_BENCH_ROUNDS", 3),
    };
    assert!(
        knobs.partitions >= 3,
        "SWD_BENCH_PARTITIONS: at least 3, or the joining worker takes no partition"
    );
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "state_moves: wordcount, 2 workers (+1 joining), P={}, checkpoints every 1s, {}.{}% of keys changed per second, {cores} cores",
        knobs.partitions,
        change_per_mille() / 10,
        change_per_mille() % 10
    );
    for state_mb in sizes {
        let scratch = tempfile::tempdir().expect("scratch dir");
        run(scratch.path(), state_mb, &knobs).await;
    }
}
