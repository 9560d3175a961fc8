//! What the process benchmarks share: child processes killed on drop, the `swd` command,
//! percentiles, polling the coordinator's status, and the knobs read from the environment.

#![allow(dead_code)]

pub mod keyed_input;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use streamweave_distributed::{Client, ClusterStatus};

/// The number in environment variable `name` (a bench's knob), or `default` when it is unset or
/// not a number.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The built `swd`, quiet; with `SWD_BENCH_LOG_DIR` set, each process logs to a file of its own
/// there (`swd-N.log`, in the order started; filter `SWD_BENCH_LOG`, default `info`), to see
/// where a figure's time goes.
pub fn swd() -> Command {
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut command = Command::new(env!("CARGO_BIN_EXE_swd"));
    command.stdin(Stdio::null());
    match std::env::var_os("SWD_BENCH_LOG_DIR") {
        Some(dir) => {
            let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let log = std::fs::File::create(Path::new(&dir).join(format!("swd-{n}.log"))).expect("log file");
            let filter = std::env::var("SWD_BENCH_LOG").unwrap_or_else(|_| "info".to_string());
            command.stderr(log).env("RUST_LOG", filter);
        }
        None => {
            command.stderr(Stdio::null()).env("RUST_LOG", "warn");
        }
    }
    command
}

/// Starts `swd coordinator --bind 127.0.0.1:0` with the flags `configure` adds, and reads the
/// address it prints.
pub fn start_coordinator(configure: impl FnOnce(&mut Command)) -> (Killed, SocketAddr) {
    let mut command = swd();
    command.args(["coordinator", "--bind", "127.0.0.1:0"]);
    configure(&mut command);
    let mut child = command.stdout(Stdio::piped()).spawn().expect("spawn coordinator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read address");
    let addr = line
        .trim()
        .trim_start_matches("listening on ")
        .parse()
        .expect("address");
    (Killed(child), addr)
}

/// Starts `swd worker --id id` for the coordinator at `addr` (heartbeat every 100 ms) with
/// `extra` flags.
pub fn start_worker(addr: SocketAddr, id: &str, extra: &[&str]) -> Killed {
    Killed(
        swd()
            .args(["worker", "--coordinator", &addr.to_string(), "--id", id])
            .args(["--heartbeat-interval", "100ms"])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn worker"),
    )
}

/// [`start_worker`] with the worker's `/metrics` on an ephemeral port; returns its URL too.
#[allow(dead_code)]
pub fn start_worker_with_metrics(addr: SocketAddr, id: &str) -> (Killed, String) {
    let mut child = swd()
        .args(["worker", "--coordinator", &addr.to_string(), "--id", id])
        .args(["--heartbeat-interval", "100ms", "--metrics-bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn worker");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("metrics on ").map(str::to_string))
        .expect("the worker's metrics URL");
    std::thread::spawn(move || lines.for_each(drop));
    (Killed(child), url)
}

/// The sum of the samples of metric `name` at `url` (a Prometheus text exposition).
#[allow(dead_code)]
pub fn scrape(url: &str, name: &str) -> f64 {
    use std::io::Read;
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the metrics");
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Writes the jobs' input: 4 files of `lines` short lines each.
pub fn write_input(dir: &Path, lines: usize) {
    std::fs::create_dir_all(dir).expect("input dir");
    for f in 0..4 {
        let mut file = std::fs::File::create(dir.join(format!("part-{f}.txt"))).expect("input file");
        for i in 0..lines {
            writeln!(file, "file {f} line {i} with a few words").expect("write");
        }
    }
}

/// The `q` quantile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Prints one line of milliseconds: median, p90, min and max (sorts `values`).
pub fn print_ms(name: &str, values: &mut [f64]) {
    values.sort_by(f64::total_cmp);
    println!(
        "{name:<18} median {:6.0} ms  p90 {:6.0} ms  min {:6.0} ms  max {:6.0} ms",
        percentile(values, 0.5),
        percentile(values, 0.9),
        values[0],
        values[values.len() - 1]
    );
}

/// Polls the status (every 2 ms) until `done` holds; the time it did. Panics after a minute.
pub async fn wait_until(client: &mut Client, what: &str, done: impl Fn(&ClusterStatus) -> bool) -> Instant {
    wait_within(client, what, Duration::from_secs(60), done).await
}

/// [`wait_until`] with a deadline of `within`.
pub async fn wait_within(
    client: &mut Client,
    what: &str,
    within: Duration,
    done: impl Fn(&ClusterStatus) -> bool,
) -> Instant {
    let end = Instant::now() + within;
    loop {
        let s = client.status().await.expect("status");
        if done(&s) {
            return Instant::now();
        }
        assert!(Instant::now() < end, "timed out waiting for {what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The moment the job at `addr` ended (finished or failed), connecting with `security` as soon
/// as the coordinator listens.
pub async fn job_ended(addr: SocketAddr, security: &streamweave_distributed::security::Security) -> Instant {
    let mut client = loop {
        if let Ok(c) = Client::connect_with(addr, "default", Duration::from_secs(5), security).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Large-state runs on a loaded 2-core machine can take minutes.
    wait_within(&mut client, "the job to end", Duration::from_secs(1800), |s| {
        s.job.as_ref().is_some_and(|j| {
            matches!(
                j.state,
                streamweave_distributed::protocol::JobState::Finished
                    | streamweave_distributed::protocol::JobState::Failed
            )
        })
    })
    .await
}
