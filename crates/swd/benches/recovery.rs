//! Recovery time of a running job after a worker is SIGKILLed: a coordinator and three
//! workers run `repartition` on a rate-limited input with checkpoints every second
//! (heartbeat_interval 100 ms, heartbeat_timeout 500 ms, health check every 50 ms). Each round
//! kills one worker mid-job and measures, from the kill:
//!   restarted - the attempt on the survivors started (after the failure was detected),
//!               restored from the last checkpoint;
//!   flowing   - the survivors read records again in the new attempt.
//!
//! Run: `cargo bench -p swd --bench recovery` (rounds: `SWD_BENCH_ROUNDS`, default 10).
//! A measurement, not a test: it prints figures and asserts nothing about speed.
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{print_ms, start_coordinator, start_worker, wait_until, write_input, Killed};
use streamweave_distributed::protocol::JobState;
use streamweave_distributed::Client;

fn start_cluster(input: &Path, output: &Path, data: &Path) -> (Killed, SocketAddr, Vec<Killed>) {
    let (coordinator, addr) = start_coordinator(|c| {
        c.args(["--partitions", "8", "--heartbeat-timeout", "500ms"])
            .args(["--health-check-interval", "50ms", "--min-workers", "3"])
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
    let workers = (1..=3)
        .map(|i| start_worker(addr, &format!("w{i}"), &[]))
        .collect();
    (coordinator, addr, workers)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize = common::env_or("SWD_BENCH_ROUNDS", 10);
    let scratch = tempfile::tempdir().expect("scratch dir");
    let input = scratch.path().join("input");
    write_input(&input, 20_000);
    let (mut restarted, mut flowing) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let output = scratch.path().join(format!("out-{round}"));
        let data = scratch.path().join(format!("data-{round}"));
        let (_coordinator, addr, mut workers) = start_cluster(&input, &output, &data);
        let mut client = Client::connect(addr, "default").await.expect("connect");
        wait_until(&mut client, "a running job with a checkpoint", |s| {
            s.job
                .as_ref()
                .is_some_and(|j| j.state == JobState::Running && j.records_in > 0)
                && s.checkpoints.as_ref().is_some_and(|c| c.completed >= 1)
        })
        .await;
        // Strike anywhere between two heartbeats.
        tokio::time::sleep(Duration::from_millis(150 + (round as u64 * 37) % 100)).await;
        let attempt = client
            .status()
            .await
            .expect("status")
            .job
            .map_or(0, |j| j.attempt);
        let killed_at = Instant::now();
        workers[round % 3].0.kill().expect("SIGKILL");
        // The attempt that runs on the survivors: started after the failure was detected (an
        // earlier one may start and fail while the dead worker still looks alive).
        let victim = format!("w{}", round % 3 + 1);
        let started = wait_until(&mut client, "the next attempt on the survivors", |s| {
            s.job
                .as_ref()
                .is_some_and(|j| j.attempt > attempt && j.state == JobState::Running)
                && s.workers.iter().all(|w| w.id.as_str() != victim)
        })
        .await;
        let reading = wait_until(&mut client, "records in the new attempt", |s| {
            s.job
                .as_ref()
                .is_some_and(|j| j.attempt > attempt && j.records_in > 0)
        })
        .await;
        restarted.push((started - killed_at).as_secs_f64() * 1000.0);
        flowing.push((reading - killed_at).as_secs_f64() * 1000.0);
        drop(workers);
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("recovery: {rounds} rounds, 3 workers, P=8, repartition, checkpoints every 1s, heartbeat 100ms, timeout 500ms, {cores} cores");
    print_ms("kill -> restarted", &mut restarted);
    print_ms("kill -> flowing", &mut flowing);
}
