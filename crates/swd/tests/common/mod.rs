//! A cluster of real `swd` processes on loopback for integration tests: a coordinator on an
//! ephemeral port, workers by id, status through `swd status --json`, the coordinator's event
//! log, and real signals. Every process is killed when the test ends, even on panic.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous: CI machines are shared and slow; conditions are polled, so passing runs are fast.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Generates a word-count corpus with `swd gen wordcount` (`input/`, `expected.tsv`), and checks
/// its `expected.tsv` and `words.txt` against a count made here from the input files, so that
/// the tests' expected results do not rest on the code under test.
pub fn corpus(dir: &Path, words: u64, files: u32) -> PathBuf {
    let out = dir.join("corpus");
    let generated = swd()
        .args(["gen", "wordcount", "--out"])
        .arg(&out)
        .args(["--words", &words.to_string(), "--files", &files.to_string()])
        .output()
        .expect("run swd gen");
    assert!(
        generated.status.success(),
        "swd gen failed: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let counts = count_words(&out.join("input"));
    assert_eq!(
        counts.values().sum::<u64>(),
        words,
        "words in the generated input"
    );
    let mut expected = String::new();
    for (word, count) in &counts {
        expected.push_str(&format!("{word}\t{count}\n"));
    }
    assert!(
        std::fs::read_to_string(out.join("expected.tsv")).expect("expected.tsv") == expected,
        "swd gen's expected.tsv differs from the input's word count"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("words.txt"))
            .expect("words.txt")
            .trim(),
        words.to_string()
    );
    let files_made = std::fs::read_dir(out.join("input")).expect("input dir").count();
    assert_eq!(files_made, files as usize, "input files");
    out
}

/// Counts the whitespace-separated words of every file in `dir`: a `BTreeMap` of `String`s is
/// sorted bytewise, like the jobs' sorted output.
pub fn count_words(dir: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("input dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("input file");
        for word in text.split_whitespace() {
            *counts.entry(word.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// The non-empty lines of `text`, sorted bytewise.
pub fn sorted_lines(text: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    lines.sort();
    lines
}

/// The non-empty lines of every file in `dir` whose name does not start with `.` or `_` (a
/// job's final output: temporaries and working directories are hidden), sorted bytewise.
pub fn output_lines(dir: &Path) -> Vec<Vec<u8>> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        bytes.extend(std::fs::read(entry.path()).expect("read output"));
        bytes.push(b'\n');
    }
    sorted_lines(&bytes)
}

/// Every line of a corpus's input, sorted: the failure-free output of a repartition.
pub fn input_lines(corpus: &Path) -> Vec<Vec<u8>> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(corpus.join("input")).expect("input dir") {
        bytes.extend(std::fs::read(entry.expect("entry").path()).expect("read input"));
        bytes.push(b'\n');
    }
    sorted_lines(&bytes)
}

/// A finished job's `records_in` and `records_out` are these.
pub fn assert_job_counts(finished: &Value, records_in: u64, records_out: u64) {
    assert_eq!(
        finished["job"]["records_in"].as_u64(),
        Some(records_in),
        "{finished:#}"
    );
    assert_eq!(
        finished["job"]["records_out"].as_u64(),
        Some(records_out),
        "{finished:#}"
    );
}

pub fn swd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swd"));
    command.stdin(Stdio::null());
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    command
}

/// Runs `swd ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    swd().args(args).output().expect("run swd")
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child we have not reaped yet.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill {} {}", signal, self.name);
    }

    /// Waits for the process to exit, up to the deadline.
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < end,
                "{} did not exit within {deadline:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options for the coordinator.
#[derive(Clone, Debug)]
pub struct Opts {
    pub partitions: usize,
    pub heartbeat_timeout: &'static str,
    pub health_check_interval: &'static str,
    pub heartbeat_interval: &'static str,
    pub rebalance: &'static str,
    pub extra: Vec<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            partitions: 12,
            heartbeat_timeout: "500ms",
            health_check_interval: "50ms",
            heartbeat_interval: "100ms",
            rebalance: "gradual",
            extra: Vec::new(),
        }
    }
}

pub struct Cluster {
    pub opts: Opts,
    pub addr: SocketAddr,
    pub coordinator: Proc,
    pub workers: Vec<Proc>,
    pub data_dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a coordinator on an ephemeral port and waits for its address.
    pub fn start(opts: Opts) -> Cluster {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let (coordinator, addr) = start_coordinator(&opts, "127.0.0.1:0", data_dir.path());
        Cluster {
            opts,
            addr,
            coordinator,
            workers: Vec::new(),
            data_dir,
        }
    }

    /// Starts a coordinator and `n` workers `w1..wn`, and waits until every partition is owned.
    pub fn with_workers(opts: Opts, n: usize) -> Cluster {
        let mut cluster = Cluster::start(opts);
        for i in 1..=n {
            cluster.add_worker(&format!("w{i}"), &[]);
        }
        cluster.wait_settled(n);
        cluster
    }

    /// Starts a worker process with this id and extra flags.
    pub fn add_worker(&mut self, id: &str, extra: &[&str]) {
        let child = swd()
            .args(["worker", "--coordinator", &self.addr.to_string(), "--id", id])
            .args(["--heartbeat-interval", self.opts.heartbeat_interval])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn worker");
        self.workers.push(Proc {
            name: id.to_string(),
            child,
        });
    }

    /// Starts a worker process with this id serving its `/metrics` on an ephemeral port, and
    /// returns that URL.
    pub fn add_worker_with_metrics(&mut self, id: &str) -> String {
        let mut child = swd()
            .args(["worker", "--coordinator", &self.addr.to_string(), "--id", id])
            .args(["--heartbeat-interval", self.opts.heartbeat_interval])
            .args(["--metrics-bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn worker");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let url = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("metrics on ").map(str::to_string))
            .unwrap_or_else(|| panic!("{id} printed no metrics URL"));
        // Whatever it prints later must not fill the pipe.
        std::thread::spawn(move || lines.for_each(drop));
        self.workers.push(Proc {
            name: id.to_string(),
            child,
        });
        url
    }

    pub fn worker(&mut self, id: &str) -> &mut Proc {
        self.workers
            .iter_mut()
            .find(|w| w.name == id)
            .unwrap_or_else(|| panic!("no worker {id}"))
    }

    /// Removes the worker's process from the cluster (it is killed when dropped).
    pub fn take_worker(&mut self, id: &str) -> Proc {
        let i = self
            .workers
            .iter()
            .position(|w| w.name == id)
            .unwrap_or_else(|| panic!("no worker {id}"));
        self.workers.remove(i)
    }

    /// `swd status --json`, parsed.
    pub fn status(&self) -> Value {
        status_at(self.addr)
    }

    /// Polls the status until `done` holds, or panics with the last status after the deadline.
    pub fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.wait_within(DEADLINE, what, done)
    }

    /// Like [`Cluster::wait_for`], with a deadline for whole jobs.
    pub fn wait_for_long(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.wait_within(DEADLINE * 4, what, done)
    }

    fn wait_within(&self, deadline: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        wait_status_at(self.addr, deadline, what, done)
    }

    /// Waits until `n` workers own every partition, nothing is moving, and each worker runs
    /// exactly what it owns.
    pub fn wait_settled(&self, n: usize) -> Value {
        self.wait_for(&format!("{n} workers owning every partition"), |s| settled(s, n))
    }

    /// The coordinator's event log.
    pub fn events(&self) -> Vec<Value> {
        read_events(self.data_dir.path())
    }
}

pub fn start_coordinator(opts: &Opts, bind: &str, data_dir: &Path) -> (Proc, SocketAddr) {
    let mut child = swd()
        .args([
            "coordinator",
            "--bind",
            bind,
            "--partitions",
            &opts.partitions.to_string(),
        ])
        .args(["--heartbeat-timeout", opts.heartbeat_timeout])
        .args(["--health-check-interval", opts.health_check_interval])
        .args(["--rebalance", opts.rebalance])
        .arg("--data-dir")
        .arg(data_dir)
        .args(&opts.extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn coordinator");
    let stdout = child.stdout.take().expect("coordinator stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read coordinator stdout");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("coordinator printed {line:?} instead of its address"))
        .parse()
        .expect("coordinator address");
    (
        Proc {
            name: "coordinator".to_string(),
            child,
        },
        addr,
    )
}

/// Polls the coordinator at `addr` until `done` holds, or panics with the last status after
/// `deadline`.
pub fn wait_status_at(
    addr: SocketAddr,
    deadline: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_status_with(addr, &[], deadline, what, done)
}

/// Like [`wait_status_at`], with extra flags for `swd status` (credentials).
pub fn wait_status_with(
    addr: SocketAddr,
    extra: &[&str],
    deadline: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let end = Instant::now() + deadline;
    let mut last = Value::Null;
    while Instant::now() < end {
        if let Some(status) = try_status_with(addr, extra) {
            if done(&status) {
                return status;
            }
            last = status;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}; last status: {last:#}");
}

pub fn try_status_at(addr: SocketAddr) -> Option<Value> {
    try_status_with(addr, &[])
}

/// `swd status --json` with extra flags, parsed; `None` when it fails.
pub fn try_status_with(addr: SocketAddr, extra: &[&str]) -> Option<Value> {
    let addr = addr.to_string();
    let mut args = vec!["status", "--coordinator", &addr, "--json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

pub fn status_at(addr: SocketAddr) -> Value {
    let out = run(&["status", "--coordinator", &addr.to_string(), "--json"]);
    assert!(
        out.status.success(),
        "swd status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status is JSON")
}

/// The newest committed checkpoint in `checkpoints` (a local store's directory), if its manifest
/// refers to a file whose name starts with `prefix` (`base-p`: a base compacted apart; `over-p`:
/// an overlay written while a recovery loaded). Retention may delete it meanwhile: then the next
/// poll looks again.
pub fn newest_refers_to(checkpoints: &Path, prefix: &str) -> Option<u64> {
    let newest = std::fs::read_dir(checkpoints)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("_MANIFEST").exists())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse::<u64>().ok())
        .max()?;
    let manifest = std::fs::read(checkpoints.join(format!("chk-{newest:010}/_MANIFEST"))).ok()?;
    manifest
        .windows(prefix.len())
        .any(|w| w == prefix.as_bytes())
        .then_some(newest)
}

pub fn read_events(dir: &Path) -> Vec<Value> {
    let path: PathBuf = dir.join("events.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("event line is JSON"))
        .collect()
}

pub fn workers(status: &Value) -> &Vec<Value> {
    status["workers"].as_array().expect("workers array")
}

pub fn partitions_of(status: &Value, id: &str) -> BTreeSet<u64> {
    workers(status)
        .iter()
        .find(|w| w["id"] == id)
        .map(|w| {
            w["partitions"]
                .as_array()
                .expect("partitions")
                .iter()
                .filter_map(Value::as_u64)
                .collect()
        })
        .unwrap_or_default()
}

pub fn worker_ids(status: &Value) -> Vec<String> {
    workers(status)
        .iter()
        .filter_map(|w| w["id"].as_str().map(str::to_string))
        .collect()
}

/// Every partition owned by exactly one worker: the sets are disjoint and cover 0..P.
pub fn assert_exclusive_and_complete(status: &Value) {
    let p = status["partitions"].as_u64().expect("partitions");
    let mut seen = BTreeSet::new();
    for w in workers(status) {
        for part in w["partitions"].as_array().expect("partitions") {
            let part = part.as_u64().expect("partition number");
            assert!(seen.insert(part), "partition {part} owned twice: {status:#}");
        }
    }
    assert_eq!(
        seen,
        (0..p).collect::<BTreeSet<_>>(),
        "not every partition is owned: {status:#}"
    );
}

/// `n` healthy workers, all partitions owned, nothing moving, and each worker's reported load
/// equal to what it owns (it has applied its assignment).
pub fn settled(status: &Value, n: usize) -> bool {
    let ws = workers(status);
    ws.len() == n
        && status["unassigned"].as_array().is_some_and(|u| u.is_empty())
        && status["moving"].as_array().is_some_and(|m| m.is_empty())
        && ws.iter().all(|w| {
            w["healthy"] == true && w["load"].as_u64() == w["partitions"].as_array().map(|p| p.len() as u64)
        })
}

/// Replays the event log and checks that no partition ever had two owners: a grant only goes
/// to a partition that has no owner and no unconfirmed revocation.
pub fn assert_never_owned_twice(events: &[Value]) {
    use std::collections::BTreeMap;
    let mut owner: BTreeMap<u64, String> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let kind = e["event"].as_str().unwrap_or_default();
        let Some(p) = e["partition"].as_u64() else {
            continue;
        };
        let w = e["worker"].as_str().unwrap_or_default().to_string();
        match kind {
            "granted" => {
                if let Some(prev) = owner.get(&p) {
                    panic!("event {i}: partition {p} granted to {w} while {prev} still held it; events: {events:#?}");
                }
                owner.insert(p, w);
            }
            "released" => {
                assert_eq!(
                    owner.remove(&p).as_deref(),
                    Some(w.as_str()),
                    "event {i}: release of {p} by a non-owner"
                );
            }
            _ => {}
        }
    }
}

/// Worker partition sets are pairwise disjoint (nothing is owned twice; some may be unowned).
pub fn assert_disjoint(status: &Value) {
    let mut seen = BTreeSet::new();
    for w in workers(status) {
        for part in w["partitions"].as_array().expect("partitions") {
            let part = part.as_u64().expect("partition number");
            assert!(seen.insert(part), "partition {part} owned twice: {status:#}");
        }
    }
}

/// Each worker's partitions, by id: what must not change when nothing should move.
pub fn ownership(status: &Value) -> std::collections::BTreeMap<String, BTreeSet<u64>> {
    worker_ids(status)
        .into_iter()
        .map(|id| {
            let parts = partitions_of(status, &id);
            (id, parts)
        })
        .collect()
}

/// The events after the first one matching `from` (exclusive); panics if none matches.
pub fn events_after(events: &[Value], from: impl Fn(&Value) -> bool) -> Vec<Value> {
    let i = events
        .iter()
        .position(from)
        .unwrap_or_else(|| panic!("no such event in {events:#?}"));
    events[i + 1..].to_vec()
}

/// Whether `e` is a `kind` event for `worker`.
pub fn is_event(e: &Value, kind: &str, worker: &str) -> bool {
    e["event"] == kind && e["worker"] == worker
}

impl Cluster {
    /// Polls the status until worker `id` has been seen healthy with `n` fresh heartbeats (its
    /// `last_heartbeat_ms` went down between two snapshots), running `check` on every snapshot.
    /// Time passes by the worker's own clock, not by a sleep.
    pub fn watch_heartbeats(&self, id: &str, n: usize, check: impl Fn(&Value)) -> Value {
        let end = Instant::now() + DEADLINE;
        let mut previous: Option<u64> = None;
        let mut fresh = 0;
        loop {
            let status = self.status();
            check(&status);
            let w = workers(&status).iter().find(|w| w["id"] == id);
            let ms = w.and_then(|w| w["last_heartbeat_ms"].as_u64());
            let healthy = w.is_some_and(|w| w["healthy"] == true);
            if let (Some(ms), Some(prev)) = (ms, previous) {
                if healthy && ms < prev {
                    fresh += 1;
                }
            }
            previous = ms;
            if fresh >= n {
                return status;
            }
            assert!(
                Instant::now() < end,
                "{id} was not seen with {n} fresh heartbeats; last status: {status:#}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `swd ARGS` with output captured, killing it and panicking if it is still running after
/// `deadline` (a command line that should fail but parses would otherwise run forever).
pub fn run_bounded(args: &[&str], deadline: Duration) -> Output {
    let mut command = swd();
    command.args(args);
    run_command_bounded(command, &format!("swd {}", args.join(" ")), deadline)
}

/// Runs `command` with output captured, killing it and panicking (naming it `name`) if it is
/// still running after `deadline`.
pub fn run_command_bounded(mut command: Command, name: &str, deadline: Duration) -> Output {
    use std::io::Read;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let mut proc = Proc {
        name: name.to_string(),
        child,
    };
    let status = proc.wait_exit(deadline);
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// `--job JOB --input INPUT --output OUTPUT` and then `more`, as [`Opts::extra`] takes a job.
pub fn job_flags(job: &str, input: &Path, output: &Path, more: &[&str]) -> Vec<String> {
    let mut flags = vec![
        "--job".to_string(),
        job.to_string(),
        "--input".to_string(),
        input.to_string_lossy().into_owned(),
        "--output".to_string(),
        output.to_string_lossy().into_owned(),
    ];
    flags.extend(more.iter().map(|s| s.to_string()));
    flags
}

/// The body of `GET url` (`http://HOST:PORT/PATH`), read to the end of the connection.
pub fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let mut stream = std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string())
}

/// The sum of every sample of metric `name` (any labels) in a Prometheus text exposition.
pub fn metric_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
