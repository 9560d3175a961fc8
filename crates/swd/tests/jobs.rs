//! Jobs across real `swd` processes: word count and repartition against known answers, edge
//! cases of the text input, clear errors for bad job flags, and a worker SIGKILLed mid-job.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

/// Every input file of a corpus, concatenated (each followed by a newline, so a file without a
/// final newline does not run into the next one).
fn input_bytes(corpus: &Path) -> Vec<u8> {
    let mut input = Vec::new();
    for entry in std::fs::read_dir(corpus.join("input")).expect("input dir") {
        input.extend(std::fs::read(entry.expect("entry").path()).expect("read input"));
        input.push(b'\n');
    }
    input
}

fn local(args: &[&str]) -> std::process::Output {
    run_bounded(&[&["local"], args].concat(), std::time::Duration::from_secs(300))
}

/// `swd local` running `job` on `workers` worker processes and `partitions` partitions.
fn local_job(job: &str, workers: u32, partitions: u32, input: &Path, output: &Path) -> std::process::Output {
    let (workers, partitions) = (workers.to_string(), partitions.to_string());
    let (input, output) = (
        input.to_str().expect("utf-8 path"),
        output.to_str().expect("utf-8 path"),
    );
    local(&[
        "--workers",
        &workers,
        "--partitions",
        &partitions,
        "--job",
        job,
        "--input",
        input,
        "--output",
        output,
    ])
}

fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "swd failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn wordcount_on_three_workers_equals_the_expected_counts_with_more_partitions_than_files() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 300_000, 3);
    let output = dir.path().join("out");
    // Ranges down to a byte, so the three files are cut over the eight partitions (the default
    // keeps ranges of 8 MiB or more).
    let out = local(&[
        "--workers",
        "3",
        "--partitions",
        "8",
        "--job",
        "wordcount",
        "--param",
        "min_split=1",
        "--input",
        corpus.join("input").to_str().expect("utf-8 path"),
        "--output",
        output.to_str().expect("utf-8 path"),
    ]);
    assert_success(&out);
    let expected = std::fs::read(corpus.join("expected.tsv")).unwrap();
    assert_eq!(output_lines(&output), sorted_lines(&expected));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("job wordcount finished"), "{stdout}");
    assert!(
        stdout.contains(output.to_str().unwrap()),
        "the summary names the output: {stdout}"
    );
}

#[test]
fn wordcount_with_fewer_partitions_than_files() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 100_000, 5);
    let output = dir.path().join("out");
    let out = local_job("wordcount", 2, 2, &corpus.join("input"), &output);
    assert_success(&out);
    let expected = std::fs::read(corpus.join("expected.tsv")).unwrap();
    assert_eq!(output_lines(&output), sorted_lines(&expected));
}

#[test]
fn wordcount_handles_the_awkward_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let mut long_line = String::new();
    for i in 0..400_000 {
        long_line.push_str(&format!("long{} ", i % 1000));
    }
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("crlf.txt", b"alpha beta\r\nbeta\r\n".to_vec()),
        ("tabs.txt", b"\tgamma\t\tdelta \t\n\n\n   \n".to_vec()),
        ("empty.txt", Vec::new()),
        ("no-final-newline.txt", b"omega omega".to_vec()),
        (
            "unicode.txt",
            "caf\u{e9}\u{a0}na\u{ef}ve\u{2003}caf\u{e9} \u{1f980}\n"
                .as_bytes()
                .to_vec(),
        ),
        ("invalid-utf8.txt", b"ok \xff\xfe bad\xc3 ok\n".to_vec()),
        ("long.txt", long_line.clone().into_bytes()),
        (".hidden", b"never counted\n".to_vec()),
        ("_SUCCESS", b"never counted\n".to_vec()),
    ];
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (name, bytes) in &files {
        std::fs::write(input.join(name), bytes).unwrap();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        for word in String::from_utf8_lossy(bytes).split_whitespace() {
            *expected.entry(word.to_string()).or_default() += 1;
        }
    }
    let output = dir.path().join("out");
    let out = local_job("wordcount", 2, 12, &input, &output);
    assert_success(&out);
    let mut want: Vec<Vec<u8>> = expected
        .iter()
        .map(|(w, c)| format!("{w}\t{c}").into_bytes())
        .collect();
    want.sort();
    assert_eq!(output_lines(&output), want);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid-utf8.txt"),
        "the lossy file is named in the log"
    );
}

#[test]
fn repartition_outputs_every_input_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 200_000, 3);
    let output = dir.path().join("out");
    let out = local_job("repartition", 3, 6, &corpus.join("input"), &output);
    assert_success(&out);
    let input = input_bytes(&corpus);
    assert_eq!(output_lines(&output), sorted_lines(&input));
}

#[test]
fn bad_job_flags_fail_with_a_clear_message_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = local(&[
        "--job",
        "wordcount",
        "--input",
        missing.to_str().unwrap(),
        "--output",
        "/tmp/x",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(missing.to_str().unwrap()),
        "names the missing input: {stderr}"
    );

    let out = local(&[
        "--job",
        "sing",
        "--input",
        dir.path().to_str().unwrap(),
        "--output",
        "/tmp/x",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown job") && stderr.contains("wordcount"),
        "{stderr}"
    );

    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "precious").unwrap();
    let out = local(&[
        "--job",
        "wordcount",
        "--input",
        dir.path().to_str().unwrap(),
        "--output",
        full.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(full.join("keep.txt")).unwrap(),
        "precious",
        "nothing was touched"
    );
}

#[test]
fn sigkill_of_a_worker_mid_job_restarts_it_and_the_output_is_still_exact() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 200_000, 4);
    let output = dir.path().join("out");
    // 20 000 lines over 8 partitions at 1 000 lines/s per partition: about 2.5 s per attempt,
    // long enough to kill a worker in the middle.
    let opts = Opts {
        partitions: 8,
        extra: vec![
            "--job".into(),
            "wordcount".into(),
            "--input".into(),
            corpus.join("input").to_string_lossy().to_string(),
            "--output".into(),
            output.to_string_lossy().to_string(),
            "--rate".into(),
            "1000".into(),
            "--min-workers".into(),
            "3".into(),
        ],
        ..Opts::default()
    };
    let mut cluster = Cluster::start(opts);
    for id in ["w1", "w2", "w3"] {
        cluster.add_worker(id, &[]);
    }
    cluster.wait_for("the job to be running with records flowing", |s| {
        s["job"]["state"] == "running" && s["job"]["records_in"].as_u64().is_some_and(|n| n > 0)
    });
    let victim = cluster.take_worker("w2");
    victim.signal(libc::SIGKILL);
    let finished = cluster.wait_for_long("the job to finish", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    assert!(
        finished["job"]["restarts"].as_u64().is_some_and(|r| r >= 1),
        "{finished:#}"
    );
    assert_eq!(finished["job"]["records_in"], 20_000);
    assert!(
        finished["job"]["last_recovery_ms"].is_u64(),
        "the recovery was timed: {finished:#}"
    );
    let expected = std::fs::read(corpus.join("expected.tsv")).unwrap();
    assert_eq!(output_lines(&output), sorted_lines(&expected));
    // A standalone coordinator keeps serving status after the job ends.
    assert_eq!(cluster.status()["job"]["state"], "finished");
}

/// A coordinator running `job` with checkpoints every 200 ms on a rate-limited input, and
/// three workers.
fn checkpointed_cluster(dir: &Path, job: &str, corpus: &Path, output: &Path) -> Cluster {
    let opts = Opts {
        partitions: 8,
        extra: vec![
            "--job".into(),
            job.into(),
            "--input".into(),
            corpus.join("input").to_string_lossy().to_string(),
            "--output".into(),
            output.to_string_lossy().to_string(),
            "--rate".into(),
            "800".into(),
            "--min-workers".into(),
            "3".into(),
            "--checkpoint-interval".into(),
            "200ms".into(),
        ],
        ..Opts::default()
    };
    let _ = dir;
    let mut cluster = Cluster::start(opts);
    for id in ["w1", "w2", "w3"] {
        cluster.add_worker(id, &[]);
    }
    cluster
}

fn checkpoints_completed(s: &serde_json::Value) -> u64 {
    s["checkpoints"]["completed"].as_u64().unwrap_or(0)
}

#[test]
fn repartition_with_checkpoints_is_exact_through_repeated_sigkills_and_restores_from_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 200_000, 4);
    let output = dir.path().join("out");
    let mut cluster = checkpointed_cluster(dir.path(), "repartition", &corpus, &output);
    // Kill a worker once some checkpoints are complete, replace it, and do it again.
    for (victim, replacement) in [("w2", "w4"), ("w4", "w5")] {
        let before = checkpoints_completed(&cluster.status());
        cluster.wait_for("two more checkpoints", |s| {
            s["job"]["state"] == "running" && checkpoints_completed(s) >= before + 2
        });
        cluster.take_worker(victim).signal(libc::SIGKILL);
        cluster.add_worker(replacement, &[]);
    }
    let finished = cluster.wait_for_long("the job to end", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    assert!(
        finished["job"]["restarts"].as_u64().is_some_and(|r| r >= 2),
        "{finished:#}"
    );
    assert!(
        finished["job"]["last_restored_checkpoint"]
            .as_u64()
            .is_some_and(|c| c >= 1),
        "recovery resumed from a checkpoint, not the beginning: {finished:#}"
    );
    let input = input_bytes(&corpus);
    assert_eq!(
        output_lines(&output),
        sorted_lines(&input),
        "every line exactly once"
    );
    // The counts survive the restores too: each partition's travel in its snapshots.
    let lines = sorted_lines(&input).len() as u64;
    assert_job_counts(&finished, lines, lines);
}

#[test]
fn wordcount_with_checkpoints_restores_its_counts_after_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 200_000, 4);
    let output = dir.path().join("out");
    let mut cluster = checkpointed_cluster(dir.path(), "wordcount", &corpus, &output);
    cluster.wait_for("a few checkpoints", |s| {
        s["job"]["state"] == "running" && checkpoints_completed(s) >= 3
    });
    cluster.take_worker("w3").signal(libc::SIGKILL);
    let finished = cluster.wait_for_long("the job to end", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    assert!(
        finished["job"]["last_restored_checkpoint"]
            .as_u64()
            .is_some_and(|c| c >= 1),
        "{finished:#}"
    );
    let expected = std::fs::read(corpus.join("expected.tsv")).unwrap();
    assert_eq!(output_lines(&output), sorted_lines(&expected));
    assert!(
        finished["checkpoints"]["last_size_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "keyed state was saved"
    );
}

#[test]
fn a_worker_lost_while_a_checkpoint_is_pending_aborts_it_and_the_output_is_still_exact() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 200_000, 4);
    let output = dir.path().join("out");
    let mut cluster = checkpointed_cluster(dir.path(), "repartition", &corpus, &output);
    cluster.wait_for("two checkpoints", |s| {
        s["job"]["state"] == "running" && checkpoints_completed(s) >= 2
    });
    // Frozen, w2 can no longer acknowledge: the next checkpoint is triggered and stays pending.
    let victim = cluster.take_worker("w2");
    victim.signal(libc::SIGSTOP);
    let pending = cluster.wait_for("a checkpoint pending on the frozen worker", |s| {
        let c = &s["checkpoints"];
        c["in_flight"]
            .as_u64()
            .is_some_and(|f| Some(f) > c["last_completed"].as_u64())
    });
    let pending = pending["checkpoints"]["in_flight"].as_u64().unwrap();
    victim.signal(libc::SIGKILL);
    cluster.add_worker("w4", &[]);
    let finished = cluster.wait_for_long("the job to end", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    // The attempt after the failure resumed from the last checkpoint completed before it.
    let events = cluster.events();
    let restart = events
        .iter()
        .find(|e| e["event"] == "job_started" && e["attempt"].as_u64() > Some(1))
        .expect("a restart");
    let restored = restart["restored"].as_u64();
    assert!(
        restored.is_some_and(|c| c >= 2 && c < pending),
        "restored {restored:?}, the pending checkpoint was {pending}"
    );
    let input = input_bytes(&corpus);
    assert_eq!(
        output_lines(&output),
        sorted_lines(&input),
        "every line exactly once"
    );
}

/// Kills the coordinator of a checkpointed repartition job mid-way, optionally damages the
/// newest checkpoint, restarts the coordinator on the same address and data directory, and
/// returns the final status, the checkpoint id that was newest when it died, and the
/// checkpoints the restarted coordinator's attempts resumed from (from its event log).
fn restart_coordinator_mid_job(damage_newest: bool) -> (serde_json::Value, u64, Vec<Option<u64>>) {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 200_000, 4);
    let output = dir.path().join("out");
    let mut cluster = checkpointed_cluster(dir.path(), "repartition", &corpus, &output);
    cluster.wait_for("three checkpoints", |s| {
        s["job"]["state"] == "running" && checkpoints_completed(s) >= 3
    });
    cluster.coordinator.signal(libc::SIGKILL);
    cluster.coordinator.wait_exit(DEADLINE);
    let events_before = cluster.events().len();
    let store = cluster.data_dir.path().join("checkpoints");
    let mut ids: Vec<u64> = std::fs::read_dir(&store)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .filter(|id| store.join(format!("chk-{id:010}")).join("_MANIFEST").exists())
        .collect();
    ids.sort_unstable();
    let newest = *ids.last().expect("a committed checkpoint");
    if damage_newest {
        let file = store.join(format!("chk-{newest:010}")).join("state-p00000");
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&file, bytes).unwrap();
    }
    let (coordinator, addr) =
        start_coordinator(&cluster.opts, &cluster.addr.to_string(), cluster.data_dir.path());
    assert_eq!(addr, cluster.addr);
    cluster.coordinator = coordinator;
    let finished = cluster.wait_for_long("the job to end after the restart", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    let input = input_bytes(&corpus);
    assert_eq!(
        output_lines(&output),
        sorted_lines(&input),
        "every line exactly once across the restart"
    );
    // The counts come back from the checkpoint the restarted coordinator read.
    let lines = sorted_lines(&input).len() as u64;
    assert_job_counts(&finished, lines, lines);
    let starts: Vec<Option<u64>> = cluster.events()[events_before..]
        .iter()
        .filter(|e| e["event"] == "job_started")
        .map(|e| e["restored"].as_u64())
        .collect();
    assert!(!starts.is_empty(), "the restarted coordinator started the job");
    (finished, newest, starts)
}

#[test]
fn a_restarted_coordinator_resumes_the_job_from_its_last_checkpoint() {
    let (finished, newest, starts) = restart_coordinator_mid_job(false);
    assert_eq!(starts[0], Some(newest), "{finished:#}");
}

#[test]
fn a_corrupted_checkpoint_is_skipped_for_the_previous_one() {
    let (finished, newest, starts) = restart_coordinator_mid_job(true);
    // The coordinator checks sizes, not bytes: the first attempt tries the newest; the worker
    // reading the altered state file reports it damaged, and the next attempt restores an
    // older one.
    assert_eq!(starts[0], Some(newest), "{finished:#}");
    assert!(
        starts[1..].iter().any(|r| r.is_some_and(|r| r < newest)),
        "restored {starts:?}, newest (damaged) {newest}: {finished:#}"
    );
}
