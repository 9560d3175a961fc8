//! What security costs. Two measurements:
//!
//!   setup      - opening one admin connection (TCP connect, TLS, handshake) to a coordinator
//!                with no security, a shared secret, and TLS plus the secret: N connections in a
//!                row per configuration (`SWD_BENCH_CONNECTIONS`, default 200), configurations
//!                alternating in rounds so drift hits them alike. Prints median/p90 per
//!                configuration and the ratios to plain.
//!   wordcount  - the 20 M word count (`swd gen wordcount --words 20000000 --files 8`) on a
//!                coordinator and two workers (8 partitions), with TLS and the secret on every
//!                connection (control and data plane) and without, alternating
//!                (`SWD_BENCH_ROUNDS`, default 3); wall time from the coordinator's start to the
//!                job finished, the output checked against expected.tsv. Prints the medians and
//!                the throughput ratio on/off (goal >= 0.9).
//!
//! Run: `cargo bench -p swd --bench security -- setup` or `-- wordcount` (release).
//! For a quick ratio in a debug build: `cargo test -p swd --bench security -- setup`.
//! A measurement, not a test: it prints figures and asserts only that the output is exact.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{env_or, job_ended, print_ms, start_coordinator, start_worker, swd};
use streamweave_distributed::security::{Security, SecurityFiles};
use streamweave_distributed::Client;

/// The files of one secured cluster: `swd cert init` output and a secret.
struct Files {
    dir: PathBuf,
    secret: PathBuf,
}

impl Files {
    fn new(dir: &Path) -> Files {
        let certs = dir.join("certs");
        let made = swd()
            .args(["cert", "init"])
            .arg(&certs)
            .args(["--names", "coordinator,w1,w2,admin", "--hosts", "127.0.0.1"])
            .output()
            .expect("swd cert init");
        assert!(made.status.success(), "swd cert init failed");
        let secret = dir.join("secret");
        std::fs::write(&secret, "a-secret-for-the-security-benchmark").expect("secret");
        Files { dir: certs, secret }
    }

    fn pem(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// Flags for node `name` under `mode`.
    fn flags(&self, mode: Mode, name: &str) -> Vec<String> {
        let mut flags = Vec::new();
        if mode != Mode::Plain {
            flags.extend([
                "--secret-file".to_string(),
                self.secret.to_string_lossy().into_owned(),
            ]);
        }
        if mode == Mode::TlsSecret {
            flags.extend([
                "--tls-cert".to_string(),
                self.pem(&format!("{name}.pem")),
                "--tls-key".to_string(),
                self.pem(&format!("{name}-key.pem")),
                "--tls-ca".to_string(),
                self.pem("ca.pem"),
            ]);
        }
        flags
    }

    /// The client-side security of node `name` under `mode`.
    fn security(&self, mode: Mode, name: &str) -> Security {
        let tls = mode == Mode::TlsSecret;
        Security::load(&SecurityFiles {
            secret_file: (mode != Mode::Plain).then(|| self.secret.clone()),
            admin_secret_file: None,
            tls_cert: tls.then(|| self.dir.join(format!("{name}.pem"))),
            tls_key: tls.then(|| self.dir.join(format!("{name}-key.pem"))),
            tls_ca: tls.then(|| self.dir.join("ca.pem")),
        })
        .expect("load security")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    Secret,
    TlsSecret,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Secret => "secret",
            Mode::TlsSecret => "tls+secret",
        }
    }
}

async fn setup_cost(files: &Files) {
    let connections: usize = env_or("SWD_BENCH_CONNECTIONS", 200);
    let modes = [Mode::Plain, Mode::Secret, Mode::TlsSecret];
    let mut clusters = Vec::new();
    for mode in modes {
        let flags = files.flags(mode, "coordinator");
        let (coordinator, addr) = start_coordinator(|c| {
            c.args(["--partitions", "4"]).args(&flags);
        });
        clusters.push((mode, coordinator, addr, files.security(mode, "admin")));
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let rounds = 5;
    for _ in 0..rounds {
        for (i, (_, _, addr, security)) in clusters.iter().enumerate() {
            for _ in 0..connections / rounds {
                let start = Instant::now();
                let client = Client::connect_with(*addr, "default", Duration::from_secs(5), security)
                    .await
                    .expect("connect");
                times[i].push(start.elapsed().as_secs_f64() * 1e6);
                drop(client);
            }
        }
    }
    println!("connection set-up ({connections} connections each, microseconds):");
    let plain = median(&mut times[0]);
    for (i, (mode, ..)) in clusters.iter().enumerate() {
        let values = &mut times[i];
        let m = median(values);
        println!(
            "{:<12} median {:8.0} us  p90 {:8.0} us  ratio to plain {:5.2}",
            mode.name(),
            m,
            common::percentile(values, 0.9),
            m / plain
        );
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    common::percentile(values, 0.5)
}

/// The 20 M word corpus, generated once under `target/` and reused.
fn corpus() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("security-bench-corpus-20m");
    if !dir.join("expected.tsv").is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        let made = swd()
            .args(["gen", "wordcount", "--out"])
            .arg(&dir)
            .args(["--words", "20000000", "--files", "8"])
            .status()
            .expect("swd gen");
        assert!(made.success(), "swd gen failed");
    }
    dir
}

async fn wordcount_run(files: &Files, corpus: &Path, scratch: &Path, mode: Mode, round: usize) -> f64 {
    let output = scratch.join(format!("out-{}-{round}", mode.name()));
    let flags = files.flags(mode, "coordinator");
    let start = Instant::now();
    let (_coordinator, addr) = start_coordinator(|c: &mut Command| {
        c.args(["--partitions", "8", "--min-workers", "2", "--job", "wordcount"])
            .arg("--input")
            .arg(corpus.join("input"))
            .arg("--output")
            .arg(&output)
            .args(&flags);
    });
    let _workers: Vec<_> = ["w1", "w2"]
        .iter()
        .map(|id| {
            let flags = files.flags(mode, id);
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            start_worker(addr, id, &flags)
        })
        .collect();
    let elapsed = job_ended(addr, &files.security(mode, "coordinator")).await - start;
    let expected = std::fs::read_to_string(corpus.join("expected.tsv")).expect("expected.tsv");
    assert_eq!(
        sorted_output(&output),
        sorted(&expected),
        "{} output differs",
        mode.name()
    );
    let _ = std::fs::remove_dir_all(&output);
    elapsed.as_secs_f64()
}

fn sorted(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn sorted_output(dir: &Path) -> Vec<String> {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).expect("output") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && !name.starts_with('_') {
            text.push_str(&std::fs::read_to_string(entry.path()).expect("read"));
            text.push('\n');
        }
    }
    sorted(&text)
}

async fn wordcount(files: &Files, scratch: &Path) {
    let rounds: usize = env_or("SWD_BENCH_ROUNDS", 3);
    let corpus = corpus();
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        off.push(wordcount_run(files, &corpus, scratch, Mode::Plain, round).await * 1000.0);
        on.push(wordcount_run(files, &corpus, scratch, Mode::TlsSecret, round).await * 1000.0);
    }
    print_ms("wordcount plain", &mut off);
    print_ms("wordcount tls+auth", &mut on);
    let ratio = median(&mut off) / median(&mut on);
    println!("throughput with TLS and authentication / without: {ratio:.3} (goal >= 0.9)");
}

#[tokio::main]
async fn main() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let files = Files::new(scratch.path());
    let args: Vec<String> = std::env::args().collect();
    let wants = |m: &str| args.iter().any(|a| a == m);
    if wants("wordcount") {
        wordcount(&files, scratch.path()).await;
    } else {
        setup_cost(&files).await;
    }
}
