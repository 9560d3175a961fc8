//! Chaos at scale: one checkpointed repartition job through at least 20 SIGKILLs of workers
//! (each replaced by a new worker process) and 2 SIGKILLs of the coordinator (each restarted on
//! its data directory and address), with exactly the failure-free output at the end, restored
//! from checkpoints.
//!
//! Every kill waits for the job to run again after the previous one and to complete a
//! checkpoint in that attempt, so the job makes progress between kills (restarts in a row
//! without a completed checkpoint are what fails a job). Long (one to two minutes):
//! `#[ignore]`d in `cargo test`, run by `.ci/run` with
//! `cargo test -p swd --test chaos -- --ignored --test-threads=1`.

mod common;

use common::*;

const WORKER_KILLS: usize = 20;
/// Which worker kills are preceded by a coordinator kill.
const COORDINATOR_KILLS_BEFORE: [usize; 2] = [7, 14];

/// Where the job stands: (attempt, newest committed checkpoint).
fn progress(s: &serde_json::Value) -> (u64, u64) {
    (
        s["job"]["attempt"].as_u64().unwrap_or(0),
        s["checkpoints"]["last_completed"].as_u64().unwrap_or(0),
    )
}

#[test]
#[ignore = "a two-minute soak: .ci/run runs it with --ignored"]
fn a_checkpointed_job_survives_twenty_worker_kills_and_two_coordinator_kills_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 100_000, 8);
    let output = dir.path().join("out");
    let opts = Opts {
        partitions: 8,
        extra: vec![
            "--job".into(),
            "repartition".into(),
            "--input".into(),
            corpus.join("input").to_string_lossy().to_string(),
            "--output".into(),
            output.to_string_lossy().to_string(),
            // 8 sources of 1,250 lines at 30 lines/s: 40 s of reading or more (a worker reads
            // only as many sources at once as it has slots), while the kills take about 20 s.
            "--rate".into(),
            "30".into(),
            "--min-workers".into(),
            "3".into(),
            "--checkpoint-interval".into(),
            "200ms".into(),
        ],
        ..Opts::default()
    };
    let mut cluster = Cluster::start(opts);
    let mut next_worker = 1;
    for _ in 0..3 {
        cluster.add_worker(&format!("w{next_worker}"), &[]);
        next_worker += 1;
    }
    let (mut worker_kills, mut coordinator_kills) = (0, 0);
    // What the job had reached at the last kill: the next one waits for a newer attempt with
    // a newer checkpoint.
    let mut at_kill = (0, 0);
    while worker_kills < WORKER_KILLS {
        let seen = cluster.wait_for("the job to run again and complete a checkpoint", |s| {
            assert_ne!(
                s["job"]["state"], "finished",
                "the job finished after {worker_kills} worker kills: make it longer"
            );
            assert_ne!(s["job"]["state"], "failed", "the job failed: {s:#}");
            let (attempt, checkpoint) = progress(s);
            s["job"]["state"] == "running" && attempt > at_kill.0 && checkpoint > at_kill.1
        });
        at_kill = progress(&seen);
        let coordinator_kills_due = COORDINATOR_KILLS_BEFORE
            .iter()
            .filter(|&&k| k <= worker_kills)
            .count();
        if coordinator_kills < coordinator_kills_due {
            cluster.coordinator.signal(libc::SIGKILL);
            cluster.coordinator.wait_exit(DEADLINE);
            let (coordinator, addr) =
                start_coordinator(&cluster.opts, &cluster.addr.to_string(), cluster.data_dir.path());
            assert_eq!(addr, cluster.addr);
            cluster.coordinator = coordinator;
            coordinator_kills += 1;
            continue;
        }
        // A different victim each time, among the workers alive now.
        let victim = cluster.workers[worker_kills * 7 % cluster.workers.len()]
            .name
            .clone();
        let mut killed = cluster.take_worker(&victim);
        killed.signal(libc::SIGKILL);
        killed.wait_exit(DEADLINE);
        worker_kills += 1;
        cluster.add_worker(&format!("w{next_worker}"), &[]);
        next_worker += 1;
    }
    let finished = cluster.wait_for_long("the job to end", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    eprintln!(
        "chaos: {worker_kills} worker SIGKILLs (each replaced), {coordinator_kills} coordinator \
         SIGKILLs (each restarted); final attempt {}, restored from checkpoint {}",
        finished["job"]["attempt"], finished["job"]["last_restored_checkpoint"]
    );
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    assert_eq!((worker_kills, coordinator_kills), (WORKER_KILLS, 2));
    assert!(
        finished["job"]["last_restored_checkpoint"]
            .as_u64()
            .is_some_and(|c| c >= 1),
        "the last attempt resumed from a checkpoint: {finished:#}"
    );
    let expected = input_lines(&corpus);
    let got = output_lines(&output);
    assert_eq!(got.len(), expected.len(), "as many lines out as in");
    assert!(got == expected, "every input line exactly once in the output");
    let lines = expected.len() as u64;
    assert_job_counts(&finished, lines, lines);
}
