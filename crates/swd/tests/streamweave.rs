//! The StreamWeave example's job (a user's `Tokenizer` before the exchange and `Formatter`
//! after it, `examples/streamweave/`) on real processes, run by `swd-test-jobs`, which
//! registers the example's exact code: the output is exact with `swd local`, and with
//! checkpoints through a worker SIGKILL; so is the stateful `streamweave-sorted`, whose
//! buffered partitions travel in the checkpoints.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{corpus, output_lines, run_command_bounded, sorted_lines, wait_status_at, Proc};
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(120);

fn test_jobs() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swd-test-jobs"));
    command.stdin(Stdio::null());
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "warn");
    }
    command
}

/// Word counts as the example's tokenizer defines words (lowercase letters and digits),
/// counted here independently, as `word<TAB>count` lines sorted bytewise.
fn expected_counts(input: &Path) -> Vec<Vec<u8>> {
    let mut counts = BTreeMap::<String, u64>::new();
    for entry in std::fs::read_dir(input).expect("input dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("input file");
        for raw in text.split_whitespace() {
            let word: String = raw
                .chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect();
            if !word.is_empty() {
                *counts.entry(word).or_insert(0) += 1;
            }
        }
    }
    let text: String = counts.iter().map(|(w, n)| format!("{w}\t{n}\n")).collect();
    sorted_lines(text.as_bytes())
}

#[test]
fn swd_local_runs_a_users_streamweave_transformers_with_exact_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).expect("input dir");
    std::fs::write(input.join("a.txt"), "Hello, World! hello\nThe world's END.\n").expect("write");
    std::fs::write(input.join("b.txt"), "END end, End? 42 -- x\n").expect("write");
    for via in ["streamweave", "native"] {
        let output = dir.path().join(format!("out-{via}"));
        let mut command = test_jobs();
        command
            .args(["local", "--workers", "2", "--partitions", "4"])
            .args(["--job", "streamweave-wordcount", "--param", &format!("via={via}")])
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output);
        let out = run_command_bounded(command, "swd-test-jobs local", WITHIN);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<String> = output_lines(&output)
            .into_iter()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .collect();
        assert_eq!(
            lines,
            [
                "42\t1",
                "end\t4",
                "hello\t2",
                "the\t1",
                "world\t1",
                "worlds\t1",
                "x\t1"
            ],
            "via={via}"
        );
    }
}

fn start_coordinator(args: &[&str], data_dir: &Path) -> (Proc, SocketAddr) {
    let mut child = test_jobs()
        .args([
            "coordinator",
            "--bind",
            "127.0.0.1:0",
            "--heartbeat-timeout",
            "500ms",
        ])
        .args(["--health-check-interval", "50ms", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn coordinator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("coordinator stdout"))
        .read_line(&mut line)
        .expect("read coordinator stdout");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("coordinator printed {line:?} instead of its address"))
        .parse()
        .expect("coordinator address");
    let name = "coordinator".to_string();
    (Proc { name, child }, addr)
}

fn start_worker(addr: SocketAddr, id: &str) -> Proc {
    let child = test_jobs()
        .args(["worker", "--coordinator", &addr.to_string(), "--id", id])
        .args(["--heartbeat-interval", "100ms"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn worker");
    Proc {
        name: id.to_string(),
        child,
    }
}

fn checkpoints_completed(s: &Value) -> u64 {
    s["checkpoints"]["completed"].as_u64().unwrap_or(0)
}

/// Runs `job` on 200,000 words with checkpoints every 200 ms on three workers, SIGKILLs one
/// after three checkpoints and starts another; returns the corpus, the output directory and
/// the finished status, having checked that the job finished from a restored checkpoint.
fn through_a_sigkill(dir: &Path, job: &str) -> (std::path::PathBuf, std::path::PathBuf, Value) {
    let corpus = corpus(dir, 200_000, 4);
    let output = dir.join("out");
    let data = dir.join("data");
    let (input, out) = (
        corpus.join("input").display().to_string(),
        output.display().to_string(),
    );
    let (_coordinator, addr) = start_coordinator(
        &[
            "--partitions",
            "8",
            "--min-workers",
            "3",
            "--job",
            job,
            "--input",
            &input,
            "--output",
            &out,
            "--param",
            "rate=800",
            "--checkpoint-interval",
            "200ms",
        ],
        &data,
    );
    let mut workers: Vec<Proc> = ["w1", "w2", "w3"]
        .iter()
        .map(|id| start_worker(addr, id))
        .collect();
    wait_status_at(addr, WITHIN, "a few checkpoints of the running job", |s| {
        s["job"]["state"] == "running" && checkpoints_completed(s) >= 3
    });
    let victim = workers.remove(1);
    victim.signal(libc::SIGKILL);
    drop(victim);
    workers.push(start_worker(addr, "w4"));
    let finished = wait_status_at(addr, WITHIN, "the job to end", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    assert!(
        finished["job"]["last_restored_checkpoint"]
            .as_u64()
            .is_some_and(|c| c >= 1),
        "the job resumed from a checkpoint: {finished:#}"
    );
    (corpus, output, finished)
}

#[test]
fn with_checkpoints_the_streamweave_job_is_exact_through_a_worker_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, output, _) = through_a_sigkill(dir.path(), "streamweave-wordcount");
    let expected = expected_counts(&corpus.join("input"));
    // The corpus's words are already lowercase letters and digits: the tokenizer keeps them.
    let generated = std::fs::read(corpus.join("expected.tsv")).expect("expected.tsv");
    assert_eq!(expected, sorted_lines(&generated));
    assert_eq!(output_lines(&output), expected);
}

#[test]
fn a_stateful_transformer_is_exact_through_a_worker_sigkill_and_runs_once_per_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (corpus, output, finished) = through_a_sigkill(dir.path(), "streamweave-sorted");
    assert!(
        finished["checkpoints"]["last_size_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "the buffered lines were checkpointed: {finished:#}"
    );
    let mut input = Vec::new();
    for entry in std::fs::read_dir(corpus.join("input")).expect("input dir") {
        input.extend(std::fs::read(entry.expect("entry").path()).expect("read input"));
        input.push(b'\n');
    }
    assert_eq!(
        output_lines(&output),
        sorted_lines(&input),
        "every line exactly once"
    );
    // Each partition's lines come out of one run of the transformer: sorted, in one file.
    let mut files = 0;
    for entry in std::fs::read_dir(&output).expect("output dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let text = std::fs::read(entry.path()).expect("read output");
        let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        if lines.is_empty() {
            continue;
        }
        files += 1;
        assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{name} is not sorted");
    }
    assert!(
        (2..=8).contains(&files),
        "one file per non-empty partition: {files}"
    );
}
