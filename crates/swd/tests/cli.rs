//! The command line as users meet it: error messages, flag validation, the status table and
//! JSON, `swd local`, and signals.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use common::*;
use serde_json::Value;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs an `swd` command line that must be refused, and returns its stderr.
fn refused(args: &[&str]) -> String {
    let out = run_bounded(args, DEADLINE);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "`swd {}` succeeded; stderr: {stderr}",
        args.join(" ")
    );
    assert!(
        out.stdout.is_empty(),
        "`swd {}` printed {:?}",
        args.join(" "),
        text(&out.stdout)
    );
    stderr
}

/// A port with nothing listening on it (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn status_of_an_unreachable_coordinator_is_one_error_line() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let out = run_bounded(&["status", "--coordinator", &addr], DEADLINE);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "stdout: {:?}", text(&out.stdout));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {stderr:?}");
    let expected = format!("error: cannot reach coordinator at {addr}: connection refused");
    assert!(lines[0].starts_with(&expected), "stderr: {stderr:?}");
}

#[test]
fn bad_flags_are_refused_naming_the_flag() {
    let coordinator = |extra: &[&str]| {
        let mut args = vec!["coordinator", "--bind", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        refused(&args)
    };
    let stderr = coordinator(&["--heartbeat-timeout", "5"]);
    assert!(stderr.contains("--heartbeat-timeout"), "{stderr}");
    let stderr = coordinator(&["--heartbeat-timeout", "100ms", "--health-check-interval", "200ms"]);
    assert!(stderr.contains("--heartbeat-timeout"), "{stderr}");
    let stderr = coordinator(&["--partitions", "0"]);
    assert!(stderr.contains("--partitions"), "{stderr}");
    let stderr = coordinator(&["--checkpoint-timeout", "0s"]);
    assert!(
        stderr.contains("--checkpoint-timeout") && stderr.contains("above zero"),
        "{stderr}"
    );
    let stderr = coordinator(&["--rebalance", "sometimes"]);
    assert!(
        stderr.contains("--rebalance") && stderr.contains("sometimes"),
        "{stderr}"
    );
    let stderr = refused(&["worker", "--id", "w1"]);
    assert!(stderr.contains("--coordinator"), "{stderr}");
}

#[test]
fn partition_lists_are_accepted() {
    let mut cluster = Cluster::start(Opts {
        rebalance: "manual",
        ..Opts::default()
    });
    cluster.add_worker("w1", &["--partitions", "0-2,5"]);
    let status = cluster.wait_for("w1 to own 0-2,5", |s| {
        partitions_of(s, "w1") == [0, 1, 2, 5].into_iter().collect()
    });
    assert_eq!(
        status["unassigned"],
        serde_json::json!([3, 4, 6, 7, 8, 9, 10, 11])
    );
    let out = run_bounded(
        &[
            "assign",
            "--coordinator",
            &cluster.addr.to_string(),
            "--worker",
            "w1",
            "--partitions",
            "3-4",
        ],
        DEADLINE,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    cluster.wait_for("w1 to own 0-5", |s| partitions_of(s, "w1") == (0..6).collect());
}

/// The column where each whitespace-separated cell of `line` starts.
fn cell_starts(line: &str) -> Vec<usize> {
    let bytes = line.as_bytes();
    (0..bytes.len())
        .filter(|&i| bytes[i] != b' ' && (i == 0 || bytes[i - 1] == b' '))
        .collect()
}

/// Partitions as the table writes them: ranges such as `0-2,5`, or `-` for none.
fn ranges(parts: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let mut j = i;
        while j + 1 < parts.len() && parts[j + 1] == parts[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            parts[i].to_string()
        } else {
            format!("{}-{}", parts[i], parts[j])
        });
        i = j + 1;
    }
    if out.is_empty() {
        "-".to_string()
    } else {
        out.join(",")
    }
}

#[test]
fn status_prints_an_aligned_table() {
    let cluster = Cluster::with_workers(Opts::default(), 3);
    let json = cluster.status();
    let out = run_bounded(&["status", "--coordinator", &cluster.addr.to_string()], DEADLINE);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    let h = lines
        .iter()
        .position(|l| l.starts_with("WORKER"))
        .unwrap_or_else(|| panic!("no header line:\n{table}"));
    let header: Vec<&str> = lines[h].split_whitespace().collect();
    for column in ["WORKER", "ADDRESS", "STATE", "HEALTHY", "PARTITIONS"] {
        assert!(header.contains(&column), "header lacks {column}:\n{table}");
    }
    let rows = &lines[h + 1..];
    assert_eq!(rows.len(), 3, "one row per worker:\n{table}");
    let starts = cell_starts(lines[h]);
    for (row, id) in rows.iter().zip(["w1", "w2", "w3"]) {
        assert_eq!(
            cell_starts(row),
            starts,
            "row not aligned with the header:\n{table}"
        );
        let cells: Vec<&str> = row.split_whitespace().collect();
        let cell = |column: &str| cells[header.iter().position(|c| *c == column).expect("column")];
        assert_eq!(cell("WORKER"), id, "{table}");
        assert!(cell("ADDRESS").starts_with("127.0.0.1:"), "{table}");
        assert_eq!(cell("STATE"), "active", "{table}");
        assert_eq!(cell("HEALTHY"), "yes", "{table}");
        let parts: Vec<u64> = partitions_of(&json, id).into_iter().collect();
        assert_eq!(cell("PARTITIONS"), ranges(&parts), "{table}");
    }
}

#[test]
fn status_json_has_the_documented_fields() {
    let cluster = Cluster::with_workers(Opts::default(), 2);
    let status = cluster.status();
    assert!(status["generation"].is_u64(), "{status:#}");
    assert_eq!(status["partitions"], 12, "{status:#}");
    assert!(status["unassigned"].is_array(), "{status:#}");
    let ws = workers(&status);
    assert_eq!(ws.len(), 2, "{status:#}");
    for w in ws {
        assert!(w["id"].is_string(), "{w:#}");
        assert!(w["address"].is_string(), "{w:#}");
        assert!(w["state"].is_string(), "{w:#}");
        assert!(w["healthy"].is_boolean(), "{w:#}");
        assert!(
            w["partitions"]
                .as_array()
                .is_some_and(|p| p.iter().all(Value::is_u64)),
            "{w:#}"
        );
        assert!(w["capacity"].is_u64(), "{w:#}");
        assert!(w["load"].is_u64(), "{w:#}");
    }
}

/// Pids of live processes whose environment holds `tag`.
fn processes_tagged(tag: &str) -> Vec<u32> {
    let needle = format!("SWD_TEST_TAG={tag}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(Path::new("/proc").join(pid.to_string()).join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|var| var == needle.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn local_runs_a_cluster_prints_it_and_cleans_up() {
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    // The scan finds a tagged process while it runs (once it has printed, it has exec'd).
    let mut probe = Proc {
        name: "probe".to_string(),
        child: swd()
            .args(["coordinator", "--bind", "127.0.0.1:0"])
            .env("SWD_TEST_TAG", &tag)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn probe"),
    };
    let mut line = String::new();
    BufReader::new(probe.child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read probe stdout");
    assert!(line.starts_with("listening on "), "probe printed {line:?}");
    assert!(
        processes_tagged(&tag).contains(&probe.child.id()),
        "the scan does not work"
    );
    probe.signal(libc::SIGTERM);
    probe.wait_exit(DEADLINE);

    let out: Output = {
        let mut command = swd();
        command
            .args(["local", "--workers", "3", "--partitions", "12"])
            .env("SWD_TEST_TAG", &tag);
        command.output().expect("run swd local")
    };
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "swd local failed: {}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    let h = lines
        .iter()
        .position(|l| l.starts_with("WORKER"))
        .unwrap_or_else(|| panic!("no table:\n{stdout}"));
    let rows = &lines[h + 1..];
    assert_eq!(rows.len(), 3, "{stdout}");
    for (row, i) in rows.iter().zip(1..) {
        assert!(row.starts_with(&format!("worker-{i} ")), "{stdout}");
    }
    let left = processes_tagged(&tag);
    assert!(left.is_empty(), "swd local left processes behind: {left:?}");
}

#[test]
fn a_coordinator_stopped_by_sigint_exits_0() {
    let mut cluster = Cluster::with_workers(Opts::default(), 1);
    cluster.coordinator.signal(libc::SIGINT);
    let code = cluster.coordinator.wait_exit(DEADLINE);
    assert!(code.success(), "exit status {code}");
    assert!(
        cluster.worker("w1").is_running(),
        "the worker went down with the coordinator"
    );
}

#[test]
fn in_process_storage_and_bad_addresses_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let out = out.to_str().expect("utf-8 path");
    let stderr = refused(&["local", "--checkpoint-store", "memory://x"]);
    assert!(
        stderr.contains("--checkpoint-store") && stderr.contains("in-process only"),
        "{stderr}"
    );
    let stderr = refused(&[
        "local",
        "--job",
        "wordcount",
        "--input",
        "memory://x/in",
        "--output",
        out,
    ]);
    assert!(
        stderr.contains("--input") && stderr.contains("in-process only"),
        "{stderr}"
    );
    let stderr = refused(&["worker", "--coordinator", "127.0.0.1:1", "--advertise", "nohost"]);
    assert!(
        stderr.contains("--advertise") && stderr.contains("HOST:PORT"),
        "{stderr}"
    );
    let stderr = refused(&["status", "--coordinator", "no-port-here"]);
    assert!(
        stderr.contains("--coordinator") && stderr.contains("HOST:PORT"),
        "{stderr}"
    );
}

#[test]
fn output_into_a_pipe_closed_early_ends_quietly() {
    let cluster = Cluster::with_workers(Opts::default(), 1);
    let addr = cluster.addr.to_string();
    for command in [
        &["status", "--coordinator", &addr][..],
        &["jobs", "--coordinator", &addr],
    ] {
        let mut child = swd()
            .args(command)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn swd");
        // The reader goes away before anything is written, as `swd jobs | head -0` does.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait for swd");
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{command:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{command:?}: {stderr}");
    }
}
