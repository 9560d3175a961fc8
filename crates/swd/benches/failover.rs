//! Failure-to-reassignment time with real processes: a coordinator and three workers on
//! loopback (P = 12, heartbeat_interval 100 ms, heartbeat_timeout 500 ms, health check every
//! 50 ms). Each round SIGKILLs one worker and measures, from the kill:
//!   owned   - every one of its partitions is owned by a survivor in the coordinator's table;
//!   running - the survivors report those tasks running (they applied the new assignment).
//!
//! Run: `cargo bench -p swd --bench failover` (rounds: `SWD_BENCH_ROUNDS`, default 20).
//! This is a measurement, not a test: it prints figures and asserts nothing about speed.
mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{print_ms, wait_until, Killed};
use streamweave_distributed::{Client, ClusterStatus};

const PARTITIONS: usize = 12;
const WORKERS: usize = 3;

fn start_coordinator() -> (Killed, SocketAddr) {
    common::start_coordinator(|c| {
        c.args(["--partitions", &PARTITIONS.to_string()]).args([
            "--heartbeat-timeout",
            "500ms",
            "--health-check-interval",
            "50ms",
        ]);
    })
}

fn start_worker(addr: SocketAddr, id: &str) -> Killed {
    common::start_worker(addr, id, &[])
}

async fn status(client: &mut Client) -> ClusterStatus {
    client.status().await.expect("status")
}

fn settled(s: &ClusterStatus) -> bool {
    s.workers.len() == WORKERS
        && s.unassigned.is_empty()
        && s.moving.is_empty()
        && s.workers.iter().all(|w| w.load == w.partitions.len())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize = common::env_or("SWD_BENCH_ROUNDS", 20);
    let mut owned_ms = Vec::new();
    let mut running_ms = Vec::new();
    for round in 0..rounds {
        let (_coordinator, addr) = start_coordinator();
        let mut workers: Vec<Killed> = (1..=WORKERS)
            .map(|i| start_worker(addr, &format!("w{i}")))
            .collect();
        let mut client = Client::connect(addr, "default").await.expect("connect");
        wait_until(&mut client, "a settled cluster", settled).await;
        let victim = round % WORKERS;
        let victim_id = format!("w{}", victim + 1);
        let before = status(&mut client).await;
        let orphans: BTreeSet<usize> = before
            .workers
            .iter()
            .find(|w| w.id.as_str() == victim_id)
            .map(|w| w.partitions.iter().copied().collect())
            .unwrap_or_default();
        // Failures strike at any point between two heartbeats: spread the kill over the interval
        // instead of killing right after the acknowledgement that settled the cluster.
        tokio::time::sleep(Duration::from_millis(150 + (round as u64 * 37) % 100)).await;
        let killed_at = Instant::now();
        workers[victim].0.kill().expect("SIGKILL");
        let owned = wait_until(&mut client, "the orphans to be owned", |s| {
            s.workers
                .iter()
                .filter(|w| w.id.as_str() != victim_id)
                .flat_map(|w| w.partitions.iter())
                .filter(|p| orphans.contains(p))
                .count()
                == orphans.len()
        })
        .await;
        let running = wait_until(&mut client, "the survivors to run them", |s| {
            s.workers.len() == WORKERS - 1
                && s.unassigned.is_empty()
                && s.workers.iter().all(|w| w.load == w.partitions.len())
        })
        .await;
        owned_ms.push((owned - killed_at).as_secs_f64() * 1000.0);
        running_ms.push((running - killed_at).as_secs_f64() * 1000.0);
        drop(workers);
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("failover: {rounds} rounds, {WORKERS} workers, P={PARTITIONS}, heartbeat 100ms, timeout 500ms, check 50ms, {cores} cores");
    print_ms("kill -> owned", &mut owned_ms);
    print_ms("kill -> running", &mut running_ms);
}
