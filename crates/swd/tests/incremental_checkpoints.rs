//! Incremental checkpoints through real processes: a word count whose state is large (many
//! distinct words, counted first) and then changes little (a few hot words), checkpointed every
//! second, writes per checkpoint far less than the state it refers to, and stays exact through a
//! worker's SIGKILL (the survivors restore base plus deltas). Checkpointed often, the chains are
//! compacted apart from the barriers (a base built from the stored segments beside the
//! processing), and a restore from a chain that starts at such a base is exact too.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const FILES: usize = 8;
/// Lines of distinct words at the start of each file (10 words a line).
const DISTINCT_LINES: usize = 1_500;
/// Lines of hot words after them.
const HOT_LINES: usize = 24_000;

/// Writes the input (each file: distinct words, then lines of 10 of 40 hot words) and returns
/// the expected word count.
fn write_input(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::create_dir_all(dir).unwrap();
    let mut expected = BTreeMap::new();
    for f in 0..FILES {
        let mut text = String::new();
        for l in 0..DISTINCT_LINES {
            let words: Vec<String> = (0..10).map(|w| format!("distinct-{f}-{l}-{w}")).collect();
            text.push_str(&words.join(" "));
            text.push('\n');
        }
        for l in 0..HOT_LINES {
            let words: Vec<String> = (0..10).map(|w| format!("hot{}", (l * 7 + w) % 40)).collect();
            text.push_str(&words.join(" "));
            text.push('\n');
        }
        for word in text.split_whitespace() {
            *expected.entry(word.to_string()).or_insert(0) += 1;
        }
        std::fs::write(dir.join(format!("part-{f:03}.txt")), text).unwrap();
    }
    expected
}

fn checkpoint_sizes(s: &Value) -> Option<(u64, u64, u64)> {
    let c = &s["checkpoints"];
    Some((
        c["completed"].as_u64()?,
        c["last_size_bytes"].as_u64()?,
        c["state_bytes"].as_u64()?,
    ))
}

/// A checkpoint that wrote under a tenth of the state it refers to, with the distinct words in
/// the state (over 1 MB), newer than checkpoint `after`.
fn incremental_after(s: &Value, after: u64) -> bool {
    checkpoint_sizes(s)
        .is_some_and(|(done, written, state)| done > after && state > 1_000_000 && written * 10 < state)
}

/// A word count of [`write_input`] at `--rate RATE` with a checkpoint every `interval`, on
/// three workers (w1, w2, w3): the scratch directory, the cluster, the expected counts and the
/// output directory.
fn start_wordcount(
    rate: &str,
    interval: &str,
) -> (tempfile::TempDir, Cluster, BTreeMap<String, u64>, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let expected = write_input(&input);
    let output = dir.path().join("out");
    let flags = [
        "--rate",
        rate,
        "--min-workers",
        "3",
        "--checkpoint-interval",
        interval,
    ];
    let opts = Opts {
        partitions: 8,
        extra: job_flags("wordcount", &input, &output, &flags),
        ..Opts::default()
    };
    let mut cluster = Cluster::start(opts);
    for id in ["w1", "w2", "w3"] {
        cluster.add_worker(id, &[]);
    }
    (dir, cluster, expected, output)
}

/// Waits for the job to end and checks that it finished with exactly `expected` in `output`.
fn assert_finished_exactly(cluster: &Cluster, expected: &BTreeMap<String, u64>, output: &Path) {
    let finished = cluster.wait_for_long("the job to end", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    let mut want = String::new();
    for (word, n) in expected {
        want.push_str(&format!("{word}\t{n}\n"));
    }
    assert_eq!(output_lines(output), sorted_lines(want.as_bytes()));
}

#[test]
fn checkpoints_write_only_changed_state_and_a_sigkill_keeps_the_output_exact() {
    let (_dir, mut cluster, expected, output) = start_wordcount("3000", "1s");
    let before = cluster.wait_for("an incremental checkpoint", |s| incremental_after(s, 0));
    let (done, written, state) = checkpoint_sizes(&before).unwrap();
    eprintln!("before the kill: checkpoint {done} wrote {written} of {state} bytes");

    cluster.take_worker("w3").signal(libc::SIGKILL);
    // The survivors restore base plus deltas and checkpoint incrementally again.
    let after = cluster.wait_for("an incremental checkpoint after the restore", |s| {
        s["job"]["last_restored_checkpoint"].as_u64().is_some() && incremental_after(s, done)
    });
    let (done_after, written, state) = checkpoint_sizes(&after).unwrap();
    eprintln!("after the restore: checkpoint {done_after} wrote {written} of {state} bytes");
    assert_finished_exactly(&cluster, &expected, &output);
}

#[test]
fn chains_compacted_apart_from_the_barriers_restore_exactly_after_a_sigkill() {
    // 64 deltas past a base in about 7 s: the hot phase compacts apart.
    let (_dir, mut cluster, expected, output) = start_wordcount("2000", "100ms");
    let checkpoints = cluster.data_dir.path().join("checkpoints");
    let compacted = cluster.wait_for(
        "a committed checkpoint referring to a base compacted apart",
        |s| s["job"]["state"] == "running" && newest_refers_to(&checkpoints, "base-p").is_some(),
    );
    assert_eq!(compacted["job"]["state"], "running");
    let at = newest_refers_to(&checkpoints, "base-p").unwrap_or(0);
    eprintln!("checkpoint {at} refers to a compacted base");

    cluster.take_worker("w3").signal(libc::SIGKILL);
    let restored = cluster.wait_for("the restore after the kill", |s| {
        s["job"]["last_restored_checkpoint"].as_u64().is_some()
    });
    let from = restored["job"]["last_restored_checkpoint"].as_u64().unwrap_or(0);
    assert!(from >= at, "restored from checkpoint {from}, before {at}");
    assert_finished_exactly(&cluster, &expected, &output);
}
