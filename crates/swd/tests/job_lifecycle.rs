//! Jobs submitted to a running cluster of real `swd` processes: a coordinator started without a
//! job and three workers; `swd run` submits, `swd jobs --json` lists, `swd cancel` cancels and
//! `swd stop` stops with a savepoint that `swd run --from-savepoint` resumes, on another number
//! of workers, with exact output.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Runs `swd ARGS` (bounded) and returns its output.
fn swd_out(args: &[&str]) -> Output {
    run_bounded(args, Duration::from_secs(120))
}

/// Runs `swd ARGS`, which must succeed; its stdout, trimmed.
fn swd_ok(args: &[&str]) -> String {
    let out = swd_out(args);
    assert!(
        out.status.success(),
        "swd {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `swd ARGS`, which must fail naming `what` on stderr.
fn swd_fails_naming(args: &[&str], what: &str) {
    let out = swd_out(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "swd {} succeeded", args.join(" "));
    assert!(stderr.contains(what), "swd {}: {stderr}", args.join(" "));
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `swd run` arguments for a job on the cluster at `addr`.
fn run_args(addr: &str, job: &str, input: &Path, output: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["run", "--coordinator", addr, "--job", job, "--input"]
        .iter()
        .map(ToString::to_string)
        .collect();
    args.extend([
        path(input).to_string(),
        "--output".into(),
        path(output).to_string(),
    ]);
    // Ranges down to a byte, so that every partition reads a share of the small corpora.
    args.extend(["--param".into(), "min_split=1".into()]);
    args.extend(extra.iter().map(ToString::to_string));
    args
}

/// Submits a job; its id, checked to be the one line `swd run` prints.
fn submit(addr: &str, job: &str, input: &Path, output: &Path, extra: &[&str]) -> String {
    let args = run_args(addr, job, input, output, extra);
    let id = swd_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        id.len() == 10 && id.starts_with("j-") && id[2..].chars().all(|c| c.is_ascii_hexdigit()),
        "swd run printed {id:?}, not a job id alone"
    );
    id
}

/// `swd jobs --json`, parsed.
fn jobs(addr: &str) -> Vec<Value> {
    let out = swd_ok(&["jobs", "--coordinator", addr, "--json"]);
    match serde_json::from_str(&out) {
        Ok(Value::Array(jobs)) => jobs,
        other => panic!("swd jobs --json printed {out}: {other:?}"),
    }
}

fn job(jobs: &[Value], id: &str) -> Value {
    jobs.iter()
        .find(|j| j["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("job {id} not listed: {jobs:#?}"))
}

/// Polls `swd jobs --json` until `done` holds for the list; the list.
fn wait_jobs(addr: &str, what: &str, deadline: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let end = Instant::now() + deadline;
    loop {
        let listed = jobs(addr);
        if done(&listed) {
            return listed;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}: {listed:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn state_is(jobs: &[Value], id: &str, state: &str) -> bool {
    jobs.iter().any(|j| j["id"] == id && j["state"] == state)
}

/// A corpus of `words` words in `files` files under `dir/name`: its input and expected counts.
fn corpus_in(dir: &Path, name: &str, words: u64, files: u32) -> PathBuf {
    let parent = dir.join(name);
    std::fs::create_dir_all(&parent).expect("corpus dir");
    corpus(&parent, words, files)
}

fn cluster() -> Cluster {
    Cluster::with_workers(
        Opts {
            partitions: 8,
            ..Opts::default()
        },
        3,
    )
}

#[test]
fn two_jobs_run_at_once_on_one_cluster_and_both_finish_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        corpus_in(dir.path(), "a", 120_000, 3),
        corpus_in(dir.path(), "b", 80_000, 2),
    );
    let (out_a, out_b) = (dir.path().join("out-a"), dir.path().join("out-b"));
    let cluster = cluster();
    let addr = cluster.addr.to_string();
    // 12,000 and 8,000 lines over 8 partitions at 400 lines/s each: two seconds or more.
    let ja = submit(&addr, "wordcount", &a.join("input"), &out_a, &["--rate", "400"]);
    let jb = submit(&addr, "wordcount", &b.join("input"), &out_b, &["--rate", "400"]);
    assert_ne!(ja, jb);
    wait_jobs(&addr, "both jobs running at once", DEADLINE, |l| {
        state_is(l, &ja, "running") && state_is(l, &jb, "running")
    });
    let listed = wait_jobs(&addr, "both jobs finished", DEADLINE * 4, |l| {
        state_is(l, &ja, "finished") && state_is(l, &jb, "finished")
    });
    for (id, corpus, output, lines) in [(&ja, &a, &out_a, 12_000), (&jb, &b, &out_b, 8_000)] {
        let expected = std::fs::read(corpus.join("expected.tsv")).unwrap();
        assert_eq!(output_lines(output), sorted_lines(&expected), "job {id}'s output");
        let entry = job(&listed, id);
        assert_eq!(entry["name"], "wordcount");
        assert_eq!(entry["restarts"], 0, "{entry:#}");
        assert_eq!(entry["records_in"], lines, "{entry:#}");
        assert_eq!(
            entry["records_out"].as_u64(),
            Some(expected.iter().filter(|b| **b == b'\n').count() as u64),
            "{entry:#}"
        );
    }
    // The cluster itself still has its three workers, each owning a share.
    let status = cluster.status();
    assert_eq!(worker_ids(&status), vec!["w1", "w2", "w3"]);
    assert_exclusive_and_complete(&status);
}

#[test]
fn a_stopped_job_resumes_from_its_savepoint_on_fewer_workers_with_each_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus_in(dir.path(), "c", 100_000, 2);
    let output = dir.path().join("out");
    let mut cluster = cluster();
    let addr = cluster.addr.to_string();
    // Repartition writes every line as it goes, so a resume that re-read what the savepoint
    // covers would write lines twice. 10,000 lines at 150/s per partition: about 8 s.
    let id = submit(
        &addr,
        "repartition",
        &corpus.join("input"),
        &output,
        &["--rate", "150", "--checkpoint-interval", "200ms"],
    );
    wait_jobs(&addr, "the job under way", DEADLINE, |l| {
        l.iter()
            .any(|j| j["id"] == id && j["records_in"].as_u64() > Some(2_000))
    });
    let savepoint = swd_ok(&["stop", "--coordinator", &addr, &id]);
    let (job_id, checkpoint) = savepoint
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("swd stop printed {savepoint:?}"));
    assert_eq!(job_id, id, "{savepoint}");
    assert!(checkpoint.parse::<u64>().is_ok(), "{savepoint}");
    let listed = jobs(&addr);
    let stopped = job(&listed, &id);
    assert_eq!(stopped["state"], "stopped", "{stopped:#}");
    assert_eq!(stopped["savepoint"], savepoint.as_str());
    // The savepoint's output is committed: part of the input, each line once.
    let all = input_lines(&corpus);
    let before = output_lines(&output);
    assert!(
        !before.is_empty() && before.len() < all.len(),
        "{} of {} lines",
        before.len(),
        all.len()
    );
    // One worker fewer: the resumed job spreads over two.
    drop(cluster.take_worker("w3"));
    cluster.wait_settled(2);
    let args = run_args(
        &addr,
        "repartition",
        &corpus.join("input"),
        &output,
        &[
            "--rate",
            "2000",
            "--checkpoint-interval",
            "200ms",
            "--from-savepoint",
            &savepoint,
            "--wait",
        ],
    );
    let resumed = swd_out(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        resumed.status.success(),
        "swd run --from-savepoint --wait: {stderr}"
    );
    assert!(stderr.contains("finished"), "--wait follows the job: {stderr}");
    let new_id = String::from_utf8_lossy(&resumed.stdout).trim().to_string();
    assert_ne!(new_id, id);
    assert_eq!(
        output_lines(&output),
        all,
        "every input line exactly once across the stop"
    );
    assert_eq!(job(&jobs(&addr), &new_id)["state"], "finished");
}

#[test]
fn cancel_ends_one_job_while_the_workers_keep_serving_the_other_and_bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        corpus_in(dir.path(), "a", 100_000, 2),
        corpus_in(dir.path(), "b", 60_000, 2),
    );
    let (out_a, out_b) = (dir.path().join("out-a"), dir.path().join("out-b"));
    let cluster = cluster();
    let addr = cluster.addr.to_string();
    // The job to cancel, followed with --wait: it must exit non-zero once cancelled.
    let args = run_args(
        &addr,
        "wordcount",
        &a.join("input"),
        &out_a,
        &["--rate", "50", "--wait"],
    );
    let mut waiting = swd()
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn swd run --wait");
    let mut line = String::new();
    BufReader::new(waiting.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the job id");
    let cancelled = line.trim().to_string();
    let mut waiting = Proc {
        name: "swd run --wait".into(),
        child: waiting,
    };
    let kept = submit(&addr, "wordcount", &b.join("input"), &out_b, &["--rate", "500"]);
    wait_jobs(&addr, "both jobs running", DEADLINE, |l| {
        state_is(l, &cancelled, "running") && state_is(l, &kept, "running")
    });
    swd_ok(&["cancel", "--coordinator", &addr, &cancelled]);
    let listed = jobs(&addr);
    assert_eq!(job(&listed, &cancelled)["state"], "cancelled");
    let status = waiting.wait_exit(DEADLINE);
    assert!(
        !status.success(),
        "swd run --wait of a cancelled job exited {status}"
    );
    // Cancelled once only; then the other job finishes exactly on the same workers.
    swd_fails_naming(&["cancel", "--coordinator", &addr, &cancelled], &cancelled);
    wait_jobs(&addr, "the other job finished", DEADLINE * 4, |l| {
        state_is(l, &kept, "finished")
    });
    let expected = std::fs::read(b.join("expected.tsv")).unwrap();
    assert_eq!(output_lines(&out_b), sorted_lines(&expected));
    assert_eq!(job(&jobs(&addr), &cancelled)["state"], "cancelled");
    assert_eq!(worker_ids(&cluster.status()), vec!["w1", "w2", "w3"]);
    // Bad input, each named.
    for command in ["cancel", "stop"] {
        swd_fails_naming(&[command, "--coordinator", &addr, "j-00000000"], "j-00000000");
    }
    let bad_name = run_args(&addr, "no-such-job", &a.join("input"), &dir.path().join("x"), &[]);
    swd_fails_naming(
        &bad_name.iter().map(String::as_str).collect::<Vec<_>>(),
        "no-such-job",
    );
    // A bad state parameter is refused when the job is given, naming the parameter.
    for param in ["state.part_bytes=lots", "state.backend=rocksdb"] {
        let bad = run_args(
            &addr,
            "wordcount",
            &a.join("input"),
            &dir.path().join("w"),
            &["--param", param],
        );
        let name = param.split('=').next().unwrap_or(param);
        swd_fails_naming(&bad.iter().map(String::as_str).collect::<Vec<_>>(), name);
    }
    for savepoint in ["j-00000000:3", "nonsense"] {
        let bad = run_args(
            &addr,
            "wordcount",
            &a.join("input"),
            &dir.path().join("y"),
            &["--from-savepoint", savepoint],
        );
        swd_fails_naming(&bad.iter().map(String::as_str).collect::<Vec<_>>(), savepoint);
    }
    // A job without checkpoints has no savepoint to stop at.
    let plain = submit(
        &addr,
        "wordcount",
        &b.join("input"),
        &dir.path().join("z"),
        &["--rate", "50"],
    );
    swd_fails_naming(&["stop", "--coordinator", &addr, &plain], "without checkpoints");
    swd_ok(&["cancel", "--coordinator", &addr, &plain]);
}

/// A coordinator started with `--job` takes no submitted jobs, and says so.
#[test]
fn a_coordinator_with_its_own_job_refuses_submissions() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus_in(dir.path(), "c", 1_000, 1);
    let data = dir.path().join("data");
    let opts = Opts {
        extra: vec![
            "--job".into(),
            "wordcount".into(),
            "--input".into(),
            path(&corpus.join("input")).into(),
            "--output".into(),
            path(&dir.path().join("out")).into(),
        ],
        ..Opts::default()
    };
    let (_coordinator, addr): (Proc, SocketAddr) = start_coordinator(&opts, "127.0.0.1:0", &data);
    let addr = addr.to_string();
    let args = run_args(
        &addr,
        "wordcount",
        &corpus.join("input"),
        &dir.path().join("o2"),
        &[],
    );
    swd_fails_naming(&args.iter().map(String::as_str).collect::<Vec<_>>(), "--job");
}
