//! Many partitions: a thousand partitions run word count to the exact result on one worker and on
//! eight (threads scale with cores, not partitions), and a job that waits because its
//! partitions exceed the workers' capacity says so.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{corpus, count_words, run_bounded, Cluster, Opts};

/// The word counts in a finished word count's final output files.
fn output_counts(dir: &Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        for line in std::fs::read_to_string(entry.path()).expect("output").lines() {
            let (word, n) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("bad line {line:?}"));
            let n: u64 = n.parse().unwrap_or_else(|_| panic!("bad count in {line:?}"));
            assert!(counts.insert(word.to_string(), n).is_none(), "{word} twice");
        }
    }
    counts
}

fn local_wordcount(workers: &str, partitions: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 200_000, 4);
    let (input, output) = (corpus.join("input"), dir.path().join("out"));
    let mut args = vec![
        "local",
        "--workers",
        workers,
        "--partitions",
        partitions,
        "--heartbeat-timeout",
        "2s",
        "--job",
        "wordcount",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run_bounded(&args, Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "swd local failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Restarts are allowed (a loaded machine can delay a heartbeat past the timeout), but are
    // shown: the output must be exact either way.
    assert!(stdout.contains(&format!("{partitions} partitions")), "{stdout}");
    if !stdout.contains(" 0 restarts") {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).take(20).collect();
        eprintln!("{stdout}\n{}", warnings.join("\n"));
    }
    assert_eq!(output_counts(&output), count_words(&input));
}

#[test]
fn a_thousand_partitions_on_eight_workers_count_exactly_with_every_source_reading() {
    // Ranges down to a byte: each of the 1,000 source partitions reads its own share and sends
    // its partial counts and its end to all 1,000 partitions.
    local_wordcount("8", "1000", &["--param", "min_split=1"]);
}

#[test]
fn a_thousand_partitions_on_one_worker_count_exactly() {
    local_wordcount("1", "1000", &[]);
}

#[test]
fn a_job_waiting_for_capacity_says_why_and_runs_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 20_000, 2);
    let (input, output) = (corpus.join("input"), dir.path().join("out"));
    let mut cluster = Cluster::start(Opts {
        partitions: 200,
        heartbeat_timeout: "2s",
        extra: vec![
            "--job".into(),
            "wordcount".into(),
            "--input".into(),
            input.to_str().unwrap().into(),
            "--output".into(),
            output.to_str().unwrap().into(),
        ],
        ..Opts::default()
    });
    cluster.add_worker("w1", &["--max-tasks", "128"]);
    let waiting = cluster.wait_for("the job to wait for capacity", |s| {
        s["unassigned"].as_array().is_some_and(|u| u.len() == 72)
    });
    assert_eq!(waiting["job"]["state"], "waiting", "{waiting:#}");
    let reason = waiting["unassigned_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("72 of 200 partitions unassigned")
            && reason.contains("can run 128 partitions in all"),
        "{reason}"
    );
    let table = common::run(&["status", "--coordinator", &cluster.addr.to_string()]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("can run 128 partitions in all"),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );
    cluster.add_worker("w2", &["--max-tasks", "128"]);
    let finished = cluster.wait_for_long("the job to finish", |s| s["job"]["state"] == "finished");
    assert!(finished["unassigned_reason"].is_null(), "{finished:#}");
    assert_eq!(output_counts(&output), count_words(&input));
}
