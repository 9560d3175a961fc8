//! Partitions that move while a checkpointed job runs carry their state through a checkpoint
//! barrier: real `swd` processes, a worker joining or leaving mid-job, and the job going on
//! without a restart, its output exact.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

fn job_cluster(job: &str, corpus: &Path, output: &Path, rebalance: &'static str, workers: usize) -> Cluster {
    let opts = Opts {
        partitions: 8,
        rebalance,
        // Failure detection is not under test here: a loaded machine must not fail a worker.
        heartbeat_timeout: "3s",
        extra: vec![
            "--job".into(),
            job.into(),
            "--input".into(),
            corpus.join("input").to_string_lossy().to_string(),
            "--output".into(),
            output.to_string_lossy().to_string(),
            "--rate".into(),
            "1000".into(),
            "--min-workers".into(),
            workers.to_string(),
            "--checkpoint-interval".into(),
            "200ms".into(),
        ],
        ..Opts::default()
    };
    let mut cluster = Cluster::start(opts);
    for i in 1..=workers {
        cluster.add_worker(&format!("w{i}"), ALL_SOURCES);
    }
    cluster
}

/// Every source partition of a worker reads at once, so moves catch sources mid-read.
const ALL_SOURCES: &[&str] = &["--source-slots", "8"];

fn completed(s: &serde_json::Value) -> u64 {
    s["checkpoints"]["completed"].as_u64().unwrap_or(0)
}

/// Final output lines, sorted.
fn output_lines(dir: &Path) -> Vec<String> {
    let mut lines: Vec<String> = epochs(dir)
        .into_values()
        .flat_map(|e| e.into_values().flatten())
        .collect();
    lines.sort();
    lines
}

/// Committed output by epoch and partition (files `part-PPPPP-EEEE...`).
fn epochs(dir: &Path) -> BTreeMap<u64, BTreeMap<u64, Vec<String>>> {
    let mut out: BTreeMap<u64, BTreeMap<u64, Vec<String>>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().to_string();
        let Some((partition, epoch)) = name
            .strip_prefix("part-")
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(p, e)| Some((p.parse::<u64>().ok()?, e.parse::<u64>().ok()?)))
        else {
            assert!(
                name.starts_with('.') || name.starts_with('_'),
                "unexpected output file {name}"
            );
            continue;
        };
        let text = std::fs::read_to_string(entry.path()).expect("read output");
        out.entry(epoch)
            .or_default()
            .entry(partition)
            .or_default()
            .extend(text.lines().map(str::to_string));
    }
    out
}

fn input_lines(corpus: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(corpus.join("input")).expect("input dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read input");
        lines.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_string));
    }
    lines.sort();
    lines
}

/// The `moved` events: (partition, from, to, checkpoint).
fn moves(events: &[serde_json::Value]) -> Vec<(u64, String, String, u64)> {
    events
        .iter()
        .filter(|e| e["event"] == "moved")
        .map(|e| {
            (
                e["partition"].as_u64().unwrap(),
                e["from"].as_str().unwrap().to_string(),
                e["to"].as_str().unwrap().to_string(),
                e["checkpoint"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn run_to_end(cluster: &Cluster) -> serde_json::Value {
    let finished = cluster.wait_for_long("the job to end", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    assert_eq!(finished["job"]["attempt"], 1, "no restart: {finished:#}");
    assert_eq!(finished["job"]["restarts"], 0, "no restart: {finished:#}");
    finished
}

/// The job's `records_in` counts every input line once and `records_out` every committed
/// record once, moves and restores or not.
fn assert_counts(finished: &serde_json::Value, corpus: &Path, output: &Path) {
    assert_job_counts(
        finished,
        input_lines(corpus).len() as u64,
        output_lines(output).len() as u64,
    );
}

/// The generator's word counts, sorted.
fn expected_counts(corpus: &Path) -> Vec<String> {
    let expected = std::fs::read_to_string(corpus.join("expected.tsv")).unwrap();
    let mut expected: Vec<String> = expected.lines().map(str::to_string).collect();
    expected.sort();
    expected
}

#[test]
fn a_worker_joining_mid_job_takes_its_partitions_with_their_counts_and_the_output_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 200_000, 4);
    let output = dir.path().join("out");
    let mut cluster = job_cluster("wordcount", &corpus, &output, "gradual", 2);
    cluster.wait_for("two checkpoints", |s| {
        s["job"]["state"] == "running" && completed(s) >= 2
    });
    cluster.add_worker("w3", ALL_SOURCES);
    let finished = run_to_end(&cluster);
    assert_counts(&finished, &corpus, &output);
    let events = cluster.events();
    assert_never_owned_twice(&events);
    let moved = moves(&events);
    assert!(
        moved.len() >= 2,
        "w3 took its share through checkpoints: {moved:?}"
    );
    assert!(moved.iter().all(|(_, _, to, _)| to == "w3"), "{moved:?}");
    let expected = expected_counts(&corpus);
    assert_eq!(
        output_lines(&output),
        expected,
        "the counts moved with their partitions"
    );
}

#[test]
fn gradual_rebalance_under_load_moves_one_partition_per_checkpoint_while_the_others_keep_producing() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 200_000, 4);
    let output = dir.path().join("out");
    let mut cluster = job_cluster("repartition", &corpus, &output, "gradual", 2);
    cluster.wait_for("two checkpoints", |s| {
        s["job"]["state"] == "running" && completed(s) >= 2
    });
    cluster.add_worker("w3", ALL_SOURCES);
    let finished = run_to_end(&cluster);
    assert_counts(&finished, &corpus, &output);
    let events = cluster.events();
    assert_never_owned_twice(&events);
    let moved = moves(&events);
    assert!(moved.len() >= 2, "{moved:?}");
    let mut checkpoints: Vec<u64> = moved.iter().map(|m| m.3).collect();
    checkpoints.dedup();
    assert_eq!(
        checkpoints.len(),
        moved.len(),
        "one partition per checkpoint: {moved:?}"
    );

    // Per-partition progress: committed records of each partition in each epoch (checkpoint).
    let by_epoch = epochs(&output);
    let partitions = 8u64;
    eprintln!("records committed per epoch (rows) and partition (columns); * = a partition moved at this checkpoint");
    for (epoch, parts) in &by_epoch {
        let row: Vec<String> = (0..partitions)
            .map(|q| {
                let n = parts.get(&q).map_or(0, Vec::len);
                let mark = if moved.iter().any(|m| m.0 == q && m.3 == *epoch) {
                    "*"
                } else {
                    " "
                };
                format!("{n:>5}{mark}")
            })
            .collect();
        let label = if *epoch == u64::MAX {
            "final".to_string()
        } else {
            epoch.to_string()
        };
        eprintln!("{label:>6} {}", row.join(""));
    }
    // While sources run, every regular epoch (200 ms, not a move's own checkpoint, which may
    // follow the previous move at once) has output from every partition: moving one never
    // stopped the others, and a moved partition went on at its new owner.
    let last_with_output = by_epoch
        .keys()
        .filter(|e| **e != u64::MAX)
        .max()
        .copied()
        .unwrap_or(0);
    let regular: Vec<u64> = (1..last_with_output)
        .filter(|e| !checkpoints.contains(e))
        .collect();
    let first_move = checkpoints[0];
    assert!(
        regular.iter().any(|e| *e > *checkpoints.last().unwrap()),
        "the job ran on after the rebalance: {regular:?}"
    );
    for e in regular.iter().filter(|e| **e + 1 >= first_move) {
        for q in 0..partitions {
            assert!(
                by_epoch
                    .get(e)
                    .and_then(|p| p.get(&q))
                    .is_some_and(|l| !l.is_empty()),
                "partition {q} produced nothing in epoch {e} (moves at {checkpoints:?})"
            );
        }
    }
    assert_eq!(
        output_lines(&output),
        input_lines(&corpus),
        "every line exactly once"
    );
}

#[test]
fn immediate_rebalance_moves_every_partition_at_one_checkpoint_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 200_000, 4);
    let output = dir.path().join("out");
    let mut cluster = job_cluster("wordcount", &corpus, &output, "immediate", 2);
    cluster.wait_for("two checkpoints", |s| {
        s["job"]["state"] == "running" && completed(s) >= 2
    });
    cluster.add_worker("w3", ALL_SOURCES);
    let finished = run_to_end(&cluster);
    assert_counts(&finished, &corpus, &output);
    let events = cluster.events();
    // (Immediate grants without waiting for releases, so the replay check does not apply.)

    let moved = moves(&events);
    assert!(moved.len() >= 2, "{moved:?}");
    assert!(
        moved.iter().all(|m| m.3 == moved[0].3),
        "all at one barrier: {moved:?}"
    );
    let expected = expected_counts(&corpus);
    assert_eq!(output_lines(&output), expected);
}

#[test]
fn a_worker_joining_then_leaving_mid_job_takes_partitions_and_hands_them_back_before_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 200_000, 4);
    let output = dir.path().join("out");
    let mut cluster = job_cluster("repartition", &corpus, &output, "gradual", 2);
    cluster.wait_for("two checkpoints", |s| {
        s["job"]["state"] == "running" && completed(s) >= 2
    });
    // w3 takes partitions from w1 and w2 inside the running attempt...
    cluster.add_worker("w3", ALL_SOURCES);
    cluster.wait_for("w3's share", |s| {
        s["job"]["state"] == "running" && partitions_of(s, "w3").len() >= 2 && settled(s, 3)
    });
    // ...and hands them back (to the workers they came from) when it leaves.
    let mut leaver = cluster.take_worker("w3");
    leaver.signal(libc::SIGTERM);
    let status = leaver.wait_exit(DEADLINE);
    assert!(
        status.success(),
        "w3 exited cleanly after its partitions moved: {status:?}"
    );
    let after = cluster.status();
    assert!(
        !worker_ids(&after).contains(&"w3".to_string()),
        "w3 left the membership: {after:#}"
    );
    let finished = run_to_end(&cluster);
    assert_counts(&finished, &corpus, &output);
    let events = cluster.events();
    assert_never_owned_twice(&events);
    let moved = moves(&events);
    let (to_w3, from_w3): (Vec<_>, Vec<_>) = moved.iter().partition(|m| m.2 == "w3");
    assert!(to_w3.len() >= 2 && to_w3.len() == from_w3.len(), "{moved:?}");
    assert!(from_w3.iter().all(|m| m.1 == "w3"), "{moved:?}");
    let left = events
        .iter()
        .position(|e| is_event(e, "left", "w3"))
        .expect("w3 left");
    let last_move = events.iter().rposition(|e| e["event"] == "moved").unwrap();
    assert!(last_move < left, "every partition moved before w3 left");
    assert_eq!(
        output_lines(&output),
        input_lines(&corpus),
        "every line exactly once"
    );
}

#[test]
fn a_new_owner_killed_right_after_taking_partitions_recovers_from_a_checkpoint_and_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 200_000, 4);
    let output = dir.path().join("out");
    let mut cluster = job_cluster("wordcount", &corpus, &output, "gradual", 2);
    cluster.wait_for("two checkpoints", |s| {
        s["job"]["state"] == "running" && completed(s) >= 2
    });
    cluster.add_worker("w3", ALL_SOURCES);
    let deadline = std::time::Instant::now() + DEADLINE;
    while moves(&cluster.events()).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no partition moved to w3");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    cluster.take_worker("w3").signal(libc::SIGKILL);
    let finished = cluster.wait_for_long("the job to end", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    assert!(
        finished["job"]["restarts"].as_u64().is_some_and(|r| r >= 1),
        "{finished:#}"
    );
    assert!(
        finished["job"]["last_restored_checkpoint"]
            .as_u64()
            .is_some_and(|c| c >= 2),
        "restored from a checkpoint: {finished:#}"
    );
    let expected = expected_counts(&corpus);
    assert_eq!(output_lines(&output), expected);
}
