//! The embedded cluster lives and dies with `swd local`: SIGINT and SIGTERM stop a running job
//! (after a final checkpoint, committed) and every process, with exit codes 130 and 143; a
//! SIGKILLed `swd local` leaves no coordinator or worker behind. Real processes, real signals;
//! the children are found in /proc by their parent's pid.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{swd, wait_status_with, Proc, DEADLINE};
use serde_json::Value;

const FILES: u64 = 4;
const LINES_PER_FILE: u64 = 100_000;

/// Input: file `f` holds the numbers `f * LINES_PER_FILE + 1 ..= (f + 1) * LINES_PER_FILE`, one
/// per line, so every line says which file it came from and where.
fn write_numbers(dir: &Path) {
    std::fs::create_dir_all(dir).expect("input dir");
    for f in 0..FILES {
        let text: String = (f * LINES_PER_FILE + 1..=(f + 1) * LINES_PER_FILE)
            .map(|n| format!("{n}\n"))
            .collect();
        std::fs::write(dir.join(format!("part-{f}.txt")), text).expect("input file");
    }
}

/// A running `swd local` whose stdout lines arrive on a channel.
struct Local {
    proc: Proc,
    stdout: mpsc::Receiver<String>,
}

impl Local {
    fn start(args: &[&str]) -> Local {
        let mut child = swd()
            .arg("local")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn swd local");
        let out = child.stdout.take().expect("stdout");
        let (lines, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Local {
            proc: Proc {
                name: "swd local".to_string(),
                child,
            },
            stdout,
        }
    }

    /// Waits for its exit; returns the exit code and everything it printed.
    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.proc.wait_exit(DEADLINE * 2);
        let printed: Vec<String> = self.stdout.iter().collect();
        (status.code(), printed.join("\n"))
    }

    /// Waits for a line containing `text` on stdout.
    fn wait_line(&self, text: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line with {text:?} on swd local's stdout: {e}"),
            }
        }
    }
}

/// A process as /proc shows it: its command line, to tell it from a later process that reuses
/// the pid.
#[derive(Clone, Debug)]
struct Seen {
    pid: i32,
    cmdline: String,
}

fn cmdline(pid: i32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&bytes)
            .replace('\0', " ")
            .trim()
            .to_string(),
    )
}

/// `(state, ppid)` from /proc/PID/stat (the command name in parentheses may hold spaces).
fn state_and_parent(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The live (not zombie) children of `parent`.
fn children(parent: i32) -> Vec<Seen> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let (Some((state, ppid)), Some(cmdline)) = (state_and_parent(pid), cmdline(pid)) {
            if ppid == parent && state != 'Z' {
                out.push(Seen { pid, cmdline });
            }
        }
    }
    out
}

/// Whether the process is still there (same command line, not a zombie).
fn alive(seen: &Seen) -> bool {
    state_and_parent(seen.pid).is_some_and(|(state, _)| state != 'Z')
        && cmdline(seen.pid).is_some_and(|c| c == seen.cmdline)
}

/// Polls until none of `processes` is alive; panics naming those left after `deadline`.
fn wait_all_gone(processes: &[Seen], deadline: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let left: Vec<&Seen> = processes.iter().filter(|p| alive(p)).collect();
        if left.is_empty() {
            return start.elapsed();
        }
        if start.elapsed() >= deadline {
            for p in &left {
                // SAFETY: kill(2) of a process seen with this command line a moment ago; a
                // failing test must not leave it running.
                unsafe { libc::kill(p.pid, libc::SIGKILL) };
            }
            panic!("still running {deadline:?} after swd local ended (now killed): {left:#?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The coordinator `swd local` started: its address and the secret file it shares with it.
struct LocalTarget {
    addr: SocketAddr,
    secret_file: String,
}

/// Waits until `swd local` has started its coordinator and `workers` workers; returns them and
/// the coordinator's address and secret file (read from a worker's command line).
fn wait_for_children(local: &Local, workers: usize) -> (Vec<Seen>, LocalTarget) {
    let end = Instant::now() + DEADLINE;
    loop {
        let seen = children(local.proc.pid());
        let flag = |name: &str| {
            seen.iter().find_map(|p| {
                let mut args = p.cmdline.split(' ');
                args.find(|a| *a == name)?;
                args.next().map(str::to_string)
            })
        };
        let addr = flag("--coordinator")
            .and_then(|a| a.parse().ok())
            .and_then(|addr| {
                let secret_file = flag("--secret-file")?;
                Some(LocalTarget { addr, secret_file })
            });
        let coordinators = seen
            .iter()
            .filter(|p| p.cmdline.contains(" coordinator "))
            .count();
        let started = seen.iter().filter(|p| p.cmdline.contains(" worker ")).count();
        if let (Some(addr), 1, true) = (addr, coordinators, started == workers) {
            return (seen, addr);
        }
        assert!(
            Instant::now() < end,
            "swd local did not start its cluster: {seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls the coordinator until `done` holds.
fn wait_status(target: LocalTarget, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let secret = ["--secret-file", target.secret_file.as_str()];
    wait_status_with(target.addr, &secret, DEADLINE, what, done)
}

/// The committed output's numbers (files not starting with `.` or `_`), each once.
fn committed_numbers(output: &Path) -> BTreeSet<u64> {
    let mut numbers = BTreeSet::new();
    for entry in std::fs::read_dir(output).expect("output dir").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("output file");
        for line in text.lines() {
            let n: u64 = line
                .parse()
                .unwrap_or_else(|_| panic!("{line:?} is not an input line"));
            assert!(
                (1..=FILES * LINES_PER_FILE).contains(&n),
                "{n} is not an input line"
            );
            assert!(numbers.insert(n), "{n} committed twice");
        }
    }
    numbers
}

/// Every file's committed lines are a prefix of it: the output of a consistent cut of the
/// sources, as a checkpoint takes it. Returns how many lines of each file were committed.
fn assert_prefix_of_each_file(numbers: &BTreeSet<u64>) -> BTreeMap<u64, u64> {
    let mut per_file: BTreeMap<u64, u64> = BTreeMap::new();
    for &n in numbers {
        *per_file.entry((n - 1) / LINES_PER_FILE).or_default() += 1;
    }
    for (&f, &count) in &per_file {
        let first = f * LINES_PER_FILE + 1;
        assert!(
            (first..first + count).all(|n| numbers.contains(&n)),
            "the committed lines of file {f} are not a prefix of it ({count} lines)"
        );
    }
    per_file
}

/// `swd local` running a rate-limited `repartition` of the numbers (2 workers, 4 partitions)
/// with checkpoints every 200 ms, its data directory and input under `dir`.
fn checkpointed_repartition(dir: &Path, output: &Path) -> Local {
    let input = dir.join("input");
    write_numbers(&input);
    Local::start(&[
        "--workers",
        "2",
        "--partitions",
        "4",
        "--job",
        "repartition",
        "--input",
        &input.to_string_lossy(),
        "--output",
        &output.to_string_lossy(),
        "--rate",
        "2000",
        "--checkpoint-interval",
        "200ms",
        "--data-dir",
        &dir.join("data").to_string_lossy(),
    ])
}

/// Runs a checkpointed, rate-limited `repartition` under `swd local`, stops it with `signal`
/// once a checkpoint is committed, and checks the exit code, the status line, that no process
/// is left and that the committed output is a consistent prefix of the input.
fn interrupt_checkpointed_job(signal: i32, name: &str, code: i32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("output");
    let local = checkpointed_repartition(dir.path(), &output);
    let (processes, addr) = wait_for_children(&local, 2);
    wait_status(addr, "a committed checkpoint of a running job", |s| {
        s["job"]["state"] == "running"
            && s["job"]["records_in"].as_u64() > Some(0)
            && s["checkpoints"]["last_completed"].as_u64().is_some()
    });
    local.proc.signal(signal);
    let (exit, printed) = local.finish();
    assert_eq!(exit, Some(code), "swd local's exit code; it printed:\n{printed}");
    let prefix = format!("job repartition stopped by {name} after ");
    let line = printed
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no status line in:\n{printed}"));
    let records_in: u64 = line[prefix.len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no record count in {line:?}"));
    let checkpoint = line
        .split_once("; output committed up to checkpoint ")
        .and_then(|(_, k)| k.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{line:?} does not name the final checkpoint"));
    assert!(checkpoint >= 1, "{line}");
    wait_all_gone(&processes, Duration::from_secs(5));
    let numbers = committed_numbers(&output);
    let per_file = assert_prefix_of_each_file(&numbers);
    // The count in the line is the coordinator's, from the workers' last progress reports.
    assert!(records_in > 0, "{line}");
    assert!(
        !numbers.is_empty(),
        "the final checkpoint committed nothing: {per_file:?}"
    );
    // The final checkpoint's epoch is committed: no output of it or before it is left pending
    // (pending epochs wait in the partitions' working directories, `.swd/PPPPP/`).
    let work = output.join(".swd");
    let pending: Vec<(String, u64)> = std::fs::read_dir(&work)
        .map(|dirs| dirs.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .flat_map(|dir| std::fs::read_dir(dir.path()).expect("a partition's working directory"))
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            let epoch = name
                .strip_prefix("epoch-")?
                .strip_suffix(".pending")?
                .parse::<u64>()
                .ok()?;
            Some((name, epoch))
        })
        .collect();
    for (name, epoch) in &pending {
        assert!(
            *epoch > checkpoint,
            "{name} is still pending after checkpoint {checkpoint}"
        );
    }
}

#[test]
fn sigint_stops_a_checkpointed_job_after_a_final_checkpoint_and_exits_130() {
    interrupt_checkpointed_job(libc::SIGINT, "SIGINT", 130);
}

#[test]
fn sigterm_stops_a_checkpointed_job_after_a_final_checkpoint_and_exits_143() {
    interrupt_checkpointed_job(libc::SIGTERM, "SIGTERM", 143);
}

#[test]
fn sigint_stops_a_job_without_checkpoints_and_says_nothing_is_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    let output = dir.path().join("output");
    write_numbers(&input);
    let local = Local::start(&[
        "--workers",
        "2",
        "--partitions",
        "4",
        "--job",
        "repartition",
        "--input",
        &input.to_string_lossy(),
        "--output",
        &output.to_string_lossy(),
        "--rate",
        "2000",
    ]);
    let (processes, addr) = wait_for_children(&local, 2);
    wait_status(addr, "a running job", |s| {
        s["job"]["state"] == "running" && s["job"]["records_in"].as_u64() > Some(0)
    });
    local.proc.signal(libc::SIGINT);
    let (exit, printed) = local.finish();
    assert_eq!(exit, Some(130), "it printed:\n{printed}");
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("job repartition stopped by SIGINT after ")
                && l.ends_with("; nothing committed")),
        "{printed}"
    );
    wait_all_gone(&processes, Duration::from_secs(5));
    assert!(committed_numbers(&output).is_empty());
}

#[test]
fn sigterm_stops_a_kept_running_cluster_and_exits_143() {
    let local = Local::start(&["--workers", "2", "--partitions", "4", "--keep-running"]);
    local.wait_line("running; press Ctrl-C to stop");
    let (processes, _) = wait_for_children(&local, 2);
    local.proc.signal(libc::SIGTERM);
    let (exit, printed) = local.finish();
    assert_eq!(exit, Some(143), "it printed:\n{printed}");
    assert!(printed.contains("local cluster stopped by SIGTERM"), "{printed}");
    wait_all_gone(&processes, Duration::from_secs(5));
}

#[test]
fn a_sigkilled_swd_local_leaves_no_process_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("output");
    let local = checkpointed_repartition(dir.path(), &output);
    let (processes, addr) = wait_for_children(&local, 2);
    wait_status(addr, "a running job", |s| {
        s["job"]["state"] == "running" && s["job"]["records_in"].as_u64() > Some(0)
    });
    local.proc.signal(libc::SIGKILL);
    let (exit, _) = local.finish();
    assert_eq!(exit, None, "killed by a signal");
    let took = wait_all_gone(&processes, Duration::from_secs(3));
    eprintln!("the children of the killed swd local were gone {took:?} after it");
    // What was committed is still a consistent prefix of the input.
    assert_prefix_of_each_file(&committed_numbers(&output));
}
