//! A job whose own code panics, run by a user binary (`swd-test-jobs`, which registers `poison`:
//! a repartition whose map panics on the one line containing `POISON`): the panic fails the
//! attempt, the job restarts and, after `--max-restarts` restarts in a row, fails with an error
//! naming the panic, the partition and the worker. `swd local` prints it and exits 1; a
//! coordinator keeps serving the failed job's status.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{run_command_bounded, status_at, wait_status_at, Proc};
use serde_json::Value;

/// The bar: a poisoned job ends within a minute.
const WITHIN: Duration = Duration::from_secs(60);

fn test_jobs() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swd-test-jobs"));
    command.stdin(Stdio::null());
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "warn");
    }
    command
}

/// Three files of 200 lines; line 77 of the second is the poisoned one.
fn poisoned_input(dir: &Path) -> std::path::PathBuf {
    let input = dir.join("input");
    std::fs::create_dir_all(&input).expect("input dir");
    for f in 1..=3 {
        let text: String = (1..=200)
            .map(|i| match (f, i) {
                (2, 77) => "this line is POISON\n".to_string(),
                _ => format!("line {i} of file {f}\n"),
            })
            .collect();
        std::fs::write(input.join(format!("f{f}.txt")), text).expect("write input");
    }
    input
}

/// Runs `swd-test-jobs ARGS` to its end, killed (and the test failed) after [`WITHIN`].
fn run_bounded(args: &[&str]) -> Output {
    let mut command = test_jobs();
    command.args(args);
    run_command_bounded(command, &format!("swd-test-jobs {}", args.join(" ")), WITHIN)
}

/// `swd local` with the poisoned job on 2 workers and 4 partitions, plus `extra` flags: it
/// exits 1, printing the failure with the panic's message and location, the partition and the
/// worker, after exactly `--max-restarts 2` restarts.
fn local_fails(extra: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = poisoned_input(dir.path());
    let output = dir.path().join("output");
    let mut args = vec!["local", "--workers", "2", "--partitions", "4", "--job", "poison"];
    // A generous heartbeat timeout: on a loaded machine a late heartbeat would restart the job
    // for another reason than the poison.
    args.extend(["--heartbeat-timeout", "2s", "--max-restarts", "2", "--input"]);
    let (input, output) = (input.display().to_string(), output.display().to_string());
    args.extend([input.as_str(), "--output", output.as_str()]);
    args.extend(extra);
    let out = run_bounded(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: job poison failed"))
        .unwrap_or_else(|| panic!("no failure line in: {stderr}"));
    let (head, error) = line.split_once(" restarts: ").unwrap_or_else(|| panic!("{line}"));
    assert_eq!(head, "error: job poison failed after 2");
    let (partition, rest) = error
        .strip_prefix("partition ")
        .and_then(|e| e.split_once(" on worker worker-"))
        .unwrap_or_else(|| panic!("no partition and worker in {line}"));
    assert!(partition.parse::<u32>().is_ok_and(|p| p < 4), "{line}");
    assert!(rest.starts_with("1: ") || rest.starts_with("2: "), "{line}");
    assert!(
        rest.contains(": panicked at ") && rest.contains("swd-test-jobs.rs:"),
        "names where it panicked: {line}"
    );
    assert!(rest.ends_with(": poison record"), "{line}");
}

#[test]
fn a_panicking_map_fails_swd_local_naming_the_panic_partition_and_worker() {
    local_fails(&[]);
}

#[test]
fn with_checkpoints_a_panicking_map_still_fails_after_max_restarts() {
    // No checkpoint can complete: the poisoned partition's source dies before its barrier.
    local_fails(&["--checkpoint-interval", "100ms"]);
}

#[test]
fn a_panic_after_the_exchange_fails_the_receiving_partition() {
    local_fails(&["--param", "at=receiver"]);
}

/// Starts `swd-test-jobs coordinator ARGS` on an ephemeral port.
fn start_coordinator(args: &[&str]) -> (Proc, SocketAddr) {
    let mut child = test_jobs()
        .args([
            "coordinator",
            "--bind",
            "127.0.0.1:0",
            "--heartbeat-timeout",
            "2s",
        ])
        .args(["--health-check-interval", "50ms"])
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
    let proc = Proc {
        name: "coordinator".to_string(),
        child,
    };
    (proc, addr)
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

fn wait_for(addr: SocketAddr, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_status_at(addr, WITHIN, what, done)
}

#[test]
fn the_coordinator_keeps_serving_the_status_of_a_failed_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = poisoned_input(dir.path());
    let output = dir.path().join("output");
    let (mut coordinator, addr) = start_coordinator(&[
        "--partitions",
        "4",
        "--min-workers",
        "2",
        "--max-restarts",
        "1",
        "--job",
        "poison",
        "--input",
        &input.display().to_string(),
        "--output",
        &output.display().to_string(),
    ]);
    let _workers = [start_worker(addr, "w1"), start_worker(addr, "w2")];
    let failed = wait_for(addr, "the job to fail", |s| s["job"]["state"] == "failed");
    let job = &failed["job"];
    assert_eq!(job["restarts"].as_u64(), Some(1), "{job:#}");
    assert_eq!(job["attempt"].as_u64(), Some(2), "{job:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("partition ")
            && (error.contains(" on worker w1: ") || error.contains(" on worker w2: "))
            && error.contains("panicked at ")
            && error.ends_with(": poison record"),
        "{error}"
    );
    // Still serving, in both forms, and the workers stay members.
    let table = test_jobs()
        .args(["status", "--coordinator", &addr.to_string()])
        .output()
        .expect("swd status");
    assert!(table.status.success());
    let table = String::from_utf8_lossy(&table.stdout);
    let job_line = table
        .lines()
        .find(|l| l.starts_with("job poison: failed"))
        .unwrap_or_else(|| panic!("no job line in {table}"));
    assert!(job_line.contains(&format!("({error})")), "{job_line}");
    let later = status_at(addr);
    assert_eq!(later["job"]["state"], "failed");
    assert_eq!(
        later["job"]["attempt"].as_u64(),
        Some(2),
        "nothing restarts a failed job"
    );
    assert_eq!(later["workers"].as_array().map(Vec::len), Some(2), "{later:#}");
    assert!(coordinator.is_running());
}
