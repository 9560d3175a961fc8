//! Moving partitions while a job runs: a coordinator (Gradual, P = 8, checkpoints every second)
//! runs `repartition` on a rate-limited input on two workers; each round a third worker joins
//! (it takes its share, one partition per checkpoint) and then leaves with SIGTERM (its
//! partitions move back before it exits). Measured, from the coordinator's event log and status:
//!   move      - per moved partition, from its checkpoint's trigger to the new owner being told
//!               to adopt it (the partition's records wait meanwhile; the others flow on);
//!   join      - from starting the worker to its share moved in;
//!   leave     - from SIGTERM to the worker's exit, its partitions handed over.
//! Every round also checks that the job attempt never restarted.
//!
//! Run: `cargo bench -p swd --bench rebalance` (rounds: `SWD_BENCH_ROUNDS`, default 5).
//! A measurement, not a test: it prints figures and asserts nothing about speed.
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{print_ms, start_coordinator, start_worker, wait_until, write_input, Killed};
use streamweave_distributed::protocol::JobState;
use streamweave_distributed::Client;

/// A worker reading all its source partitions at once, so moves catch sources mid-read.
fn worker(addr: SocketAddr, id: &str) -> Killed {
    start_worker(addr, id, &["--source-slots", "8"])
}

fn start_cluster(input: &Path, output: &Path, data: &Path) -> (Killed, SocketAddr, Vec<Killed>) {
    let (coordinator, addr) = start_coordinator(|c| {
        c.args(["--partitions", "8", "--heartbeat-timeout", "2s"])
            .args([
                "--health-check-interval",
                "50ms",
                "--min-workers",
                "2",
                "--rebalance",
                "gradual",
            ])
            .args([
                "--job",
                "repartition",
                "--rate",
                "2000",
                "--checkpoint-interval",
                "1s",
            ])
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(output)
            .arg("--data-dir")
            .arg(data);
    });
    let workers = vec![worker(addr, "w1"), worker(addr, "w2")];
    (coordinator, addr, workers)
}

/// The `duration_ms` of every `moved` event in the data directory's event log, by the worker
/// the partition left.
fn moves(data: &Path) -> Vec<(String, f64)> {
    let log = std::fs::read_to_string(data.join("events.jsonl")).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "moved")
        .map(|e| {
            (
                e["from"].as_str().unwrap_or_default().to_string(),
                e["duration_ms"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize = common::env_or("SWD_BENCH_ROUNDS", 5);
    let scratch = tempfile::tempdir().expect("scratch dir");
    let input = scratch.path().join("input");
    write_input(&input, 40_000);
    let (mut move_ms, mut join_ms, mut leave_ms) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let output = scratch.path().join(format!("out-{round}"));
        let data = scratch.path().join(format!("data-{round}"));
        let (_coordinator, addr, _workers) = start_cluster(&input, &output, &data);
        let mut client = Client::connect(addr, "default").await.expect("connect");
        wait_until(&mut client, "a running job with a checkpoint", |s| {
            s.job
                .as_ref()
                .is_some_and(|j| j.state == JobState::Running && j.records_in > 0)
                && s.checkpoints.as_ref().is_some_and(|c| c.completed >= 1)
        })
        .await;
        let joined_at = Instant::now();
        let mut w3 = worker(addr, "w3");
        let settled = |s: &streamweave_distributed::ClusterStatus, n: usize| {
            s.workers.len() == n && s.moving.is_empty() && s.unassigned.is_empty()
        };
        let joined = wait_until(&mut client, "w3's share moved in", |s| {
            settled(s, 3)
                && s.workers
                    .iter()
                    .any(|w| w.id.as_str() == "w3" && w.partitions.len() >= 2)
        })
        .await;
        join_ms.push((joined - joined_at).as_secs_f64() * 1000.0);
        // Leave mid-job: SIGTERM, then the worker waits until its partitions moved away.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let left_at = Instant::now();
        // SAFETY: kill(2) with a child's pid has no memory effects.
        unsafe {
            libc::kill(w3.0.id() as i32, libc::SIGTERM);
        }
        let exit = tokio::task::spawn_blocking(move || {
            let status = w3.0.wait().expect("wait for w3");
            (Instant::now(), status)
        })
        .await
        .expect("join");
        assert!(exit.1.success(), "w3 exited with {:?}", exit.1);
        leave_ms.push((exit.0 - left_at).as_secs_f64() * 1000.0);
        let status = client.status().await.expect("status");
        let job = status.job.expect("a job");
        assert_eq!(
            (job.attempt, job.restarts),
            (1, 0),
            "the job never restarted: {job:?}"
        );
        let moved = moves(&data);
        assert!(
            moved.iter().any(|(from, _)| from == "w3"),
            "w3's partitions moved back"
        );
        move_ms.extend(moved.into_iter().map(|(_, ms)| ms));
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "rebalance under load: {rounds} rounds, 2 workers + 1 joining and leaving, P=8, Gradual, repartition at 2000 lines/s per partition, checkpoints every 1s, {cores} cores"
    );
    println!("moves: {} in all, none restarted the job", move_ms.len());
    print_ms("move (pause of p)", &mut move_ms);
    print_ms("join -> share in", &mut join_ms);
    print_ms("SIGTERM -> exit", &mut leave_ms);
}
