//! The disk state backend through real processes: a word count over a high-cardinality corpus
//! with `--state-backend disk`, checkpointed every second, keeps its keyed state in each
//! worker's `--state-dir` and stays exact through a worker's SIGKILL (the survivors load the
//! checkpoint's base and deltas into their own databases).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;

const FILES: usize = 8;
/// Lines per file, 10 words each: mostly distinct words, every fifth line of repeated ones.
const LINES: usize = 2_500;

/// Writes the input and returns the expected word count.
fn write_input(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::create_dir_all(dir).unwrap();
    let mut expected = BTreeMap::new();
    for f in 0..FILES {
        let mut text = String::new();
        for l in 0..LINES {
            let words: Vec<String> = match l % 5 {
                0 => (0..10).map(|w| format!("common{}", (l + w) % 300)).collect(),
                _ => (0..10).map(|w| format!("word-{f}-{l}-{w}")).collect(),
            };
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

/// Whether a database (a `*.fjall` directory) is in `dir`.
fn holds_a_database(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "fjall"))
    })
}

fn checkpointed_state(s: &Value) -> Option<(u64, u64)> {
    let c = &s["checkpoints"];
    Some((c["completed"].as_u64()?, c["state_bytes"].as_u64()?))
}

#[test]
fn a_disk_backed_word_count_survives_a_sigkill_with_exact_output() {
    let dir = tempfile::tempdir().unwrap();
    survives_a_sigkill(dir.path(), &[]);
}

#[test]
fn a_disk_backed_base_written_in_parts_survives_a_sigkill_with_exact_output() {
    let dir = tempfile::tempdir().unwrap();
    // Parts of 16 KiB: a partition's base (some 100-500 KB here) is written in several.
    let cluster = survives_a_sigkill(dir.path(), &["--param", "state.part_bytes=16384"]);
    let parts = files_named(&cluster.data_dir.path().join("checkpoints"), "part-p");
    assert!(
        parts > 8,
        "bases were written in parts: {parts} part files in the store"
    );
}

/// How many files under `dir` (at any depth) have names starting with `prefix`.
fn files_named(dir: &Path, prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.path().is_dir() {
            true => files_named(&e.path(), prefix),
            false => usize::from(e.file_name().to_string_lossy().starts_with(prefix)),
        })
        .sum()
}

/// A checkpointed word count on the disk backend (with `extra` flags), three workers, one
/// SIGKILLed once a checkpoint holds state: the job finishes with exact output. Returns the
/// cluster, ended.
fn survives_a_sigkill(dir: &Path, extra: &[&str]) -> Cluster {
    let input = dir.join("input");
    let expected = write_input(&input);
    let output = dir.join("out");
    let mut flags = vec![
        "--state-backend",
        "disk",
        "--rate",
        "500",
        "--min-workers",
        "3",
        "--checkpoint-interval",
        "1s",
    ];
    flags.extend_from_slice(extra);
    let opts = Opts {
        partitions: 8,
        extra: job_flags("wordcount", &input, &output, &flags),
        ..Opts::default()
    };
    let mut cluster = Cluster::start(opts);
    let state_dirs: Vec<_> = ["w1", "w2", "w3"]
        .iter()
        .map(|id| dir.join(format!("state-{id}")))
        .collect();
    for (id, state) in ["w1", "w2", "w3"].iter().zip(&state_dirs) {
        cluster.add_worker(id, &["--state-dir", &state.to_string_lossy()]);
    }
    // Some distinct words are in a completed checkpoint before the kill (the long deadline: a
    // loaded machine starts three debug workers slowly; the job runs for 5 s once they are in).
    let before = cluster.wait_for_long("a checkpoint with state", |s| {
        checkpointed_state(s).is_some_and(|(done, state)| done >= 2 && state > 100_000)
            || matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(
        before["job"]["state"], "running",
        "not killed mid-run: {before:#}"
    );
    assert!(
        state_dirs.iter().all(|d| holds_a_database(d)),
        "every worker keeps the job's state in its --state-dir"
    );
    let (done, state) = checkpointed_state(&before).unwrap();
    eprintln!("before the kill: checkpoint {done} refers to {state} bytes");

    cluster.take_worker("w3").signal(libc::SIGKILL);
    let finished = cluster.wait_for_long("the job to end", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    assert!(
        finished["job"]["last_restored_checkpoint"].as_u64().is_some(),
        "the survivors restored a checkpoint: {finished:#}"
    );
    let mut want = String::new();
    for (word, n) in &expected {
        want.push_str(&format!("{word}\t{n}\n"));
    }
    assert_eq!(output_lines(&output), sorted_lines(want.as_bytes()));
    cluster
}

#[test]
fn a_bad_state_backend_names_the_flag() {
    let out = run(&["local", "--job", "wordcount", "--state-backend", "rocks"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--state-backend"), "{stderr}");
}
