//! A cluster with a shared secret, an admin secret and mutual TLS (`swd cert init`): clients
//! without the secret, with a wrong one, in plaintext, with a certificate of another CA, and a
//! worker with another worker's certificate are refused with a clear error; a worker's
//! credentials cannot rebalance; the coordinator logs each refusal with the peer's address and
//! keeps running; the word count through the secured control and data planes stays exact.
//! Real processes; the coordinator's log is read from its stderr file.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{corpus, output_lines, run_bounded, sorted_lines, swd, Proc, DEADLINE};
use serde_json::Value;

/// Files of one secured cluster.
struct Setup {
    dir: tempfile::TempDir,
    certs: PathBuf,
    secret: PathBuf,
    admin_secret: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = dir.path().join("certs");
        let out = run_bounded(
            &[
                "cert",
                "init",
                certs.to_str().expect("utf-8"),
                "--names",
                "coordinator,w1,w2,admin",
                "--hosts",
                "127.0.0.1",
            ],
            DEADLINE,
        );
        assert!(out.status.success(), "swd cert init: {}", text(&out.stderr));
        for file in [
            "ca.pem",
            "ca-key.pem",
            "w1.pem",
            "w1-key.pem",
            "admin.pem",
            "coordinator-key.pem",
        ] {
            assert!(certs.join(file).is_file(), "swd cert init wrote no {file}");
        }
        let secret = write_secret(dir.path(), "secret", "cluster-secret-for-the-security-test");
        let admin_secret = write_secret(dir.path(), "admin-secret", "admin-secret-for-the-security-test");
        Setup {
            dir,
            certs,
            secret,
            admin_secret,
        }
    }

    fn path(&self, name: &str) -> String {
        self.certs.join(name).to_str().expect("utf-8").to_string()
    }

    /// `--tls-cert/--tls-key/--tls-ca` for the certificate named `name`.
    fn tls(&self, name: &str) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path(&format!("{name}.pem")),
            "--tls-key".into(),
            self.path(&format!("{name}-key.pem")),
            "--tls-ca".into(),
            self.path("ca.pem"),
        ]
    }

    fn secret_flag(&self) -> Vec<String> {
        vec![
            "--secret-file".into(),
            self.secret.to_str().expect("utf-8").into(),
        ]
    }
}

fn write_secret(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("write secret");
    // Only this user may read a secret (swd warns otherwise).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Runs swd with these arguments to completion (bounded).
fn swd_with(args: Vec<String>) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_bounded(&args, DEADLINE)
}

/// A coordinator whose stderr goes to a file; returns it, its address and the log's path.
fn start_coordinator(setup: &Setup, flags: Vec<String>, job: &[String]) -> (Proc, SocketAddr, PathBuf) {
    let log = setup.dir.path().join("coordinator.log");
    let mut child = swd()
        .args(["coordinator", "--bind", "127.0.0.1:0", "--partitions", "4"])
        .args(["--heartbeat-timeout", "2s", "--min-workers", "2"])
        .arg("--data-dir")
        .arg(setup.dir.path().join("data"))
        .args(flags)
        .args(job)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
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
        .unwrap_or_else(|| panic!("coordinator printed {line:?}; log: {}", read(&log)))
        .parse()
        .expect("coordinator address");
    let proc = Proc {
        name: "coordinator".to_string(),
        child,
    };
    (proc, addr, log)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn start_worker(addr: SocketAddr, id: &str, flags: Vec<String>) -> Proc {
    let child = swd()
        .args(["worker", "--coordinator", &addr.to_string(), "--id", id])
        .args(["--heartbeat-interval", "100ms"])
        .args(flags)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn worker");
    Proc {
        name: id.to_string(),
        child,
    }
}

/// `swd status --json` with these credentials, until `done` holds.
fn wait_status(addr: SocketAddr, credentials: &[String], what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + DEADLINE * 2;
    let mut last = String::new();
    while Instant::now() < end {
        let mut args = strings(&["status", "--coordinator", &addr.to_string(), "--json"]);
        args.extend_from_slice(credentials);
        let out = swd_with(args);
        if out.status.success() {
            let status: Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
            if done(&status) {
                return status;
            }
            last = status.to_string();
        } else {
            last = text(&out.stderr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}; last: {last}");
}

/// Asserts that `swd status` with `credentials` fails and says `expected`.
fn assert_refused(addr: SocketAddr, credentials: Vec<String>, expected: &str) {
    let mut args = strings(&["status", "--coordinator", &addr.to_string(), "--timeout", "5s"]);
    args.extend(credentials);
    let out = swd_with(args.clone());
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "{args:?} was accepted: {}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains(expected),
        "{args:?}: expected {expected:?} in {stderr}"
    );
}

/// Polls `path` until it contains `needle`.
fn wait_log(path: &Path, needle: &str) -> String {
    let end = Instant::now() + DEADLINE;
    loop {
        let log = read(path);
        if log.contains(needle) {
            return log;
        }
        assert!(Instant::now() < end, "{needle:?} never logged; log:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wordcount_job(corpus: &Path, output: &Path) -> Vec<String> {
    vec![
        "--job".into(),
        "wordcount".into(),
        "--param".into(),
        "min_split=1".into(),
        "--input".into(),
        corpus.join("input").to_str().expect("utf-8").into(),
        "--output".into(),
        output.to_str().expect("utf-8").into(),
    ]
}

#[test]
fn tls_and_secrets_refuse_intruders_and_the_job_stays_exact() {
    let setup = Setup::new();
    let corpus = corpus(setup.dir.path(), 40_000, 3);
    let output = setup.dir.path().join("out");
    let mut coordinator_flags = setup.secret_flag();
    coordinator_flags.extend(strings(&[
        "--admin-secret-file",
        setup.admin_secret.to_str().expect("utf-8"),
    ]));
    coordinator_flags.extend(setup.tls("coordinator"));
    let (mut coordinator, addr, log) =
        start_coordinator(&setup, coordinator_flags, &wordcount_job(&corpus, &output));

    // The job waits for two workers: the intruders come first.
    let mut w1_credentials = setup.secret_flag();
    w1_credentials.extend(setup.tls("w1"));
    assert_refused(addr, setup.tls("w1"), "authentication required");
    let wrong = write_secret(setup.dir.path(), "wrong", "not-the-cluster-secret-at-all");
    let mut with_wrong = strings(&["--secret-file", wrong.to_str().expect("utf-8")]);
    with_wrong.extend(setup.tls("w1"));
    assert_refused(addr, with_wrong, "could not prove it knows the secret");
    assert_refused(addr, setup.secret_flag(), "requires TLS");
    let other_ca = setup.dir.path().join("other-ca");
    let made = swd_with(strings(&[
        "cert",
        "init",
        other_ca.to_str().expect("utf-8"),
        "--names",
        "w1",
        "--hosts",
        "127.0.0.1",
    ]));
    assert!(made.status.success(), "{}", text(&made.stderr));
    let mut foreign = setup.secret_flag();
    for (flag, file) in [
        ("--tls-cert", "w1.pem"),
        ("--tls-key", "w1-key.pem"),
        ("--tls-ca", "ca.pem"),
    ] {
        foreign.extend(strings(&[flag, other_ca.join(file).to_str().expect("utf-8")]));
    }
    assert_refused(addr, foreign, "TLS with");
    // A worker with w2's certificate cannot register as w1: refused, and it exits.
    let mut impostor_flags = setup.secret_flag();
    impostor_flags.extend(setup.tls("w2"));
    let mut impostor = start_worker(addr, "w1", impostor_flags);
    let exit = impostor.wait_exit(DEADLINE);
    assert!(!exit.success(), "the impostor registered");
    wait_log(&log, "refusing registration");
    // A worker's credentials cannot rebalance; the admin certificate can (below).
    let mut rebalance = strings(&["rebalance", "--coordinator", &addr.to_string()]);
    rebalance.extend(w1_credentials.clone());
    let out = swd_with(rebalance);
    assert!(!out.status.success(), "a worker's credentials rebalanced");
    assert!(
        text(&out.stderr).contains("needs admin credentials"),
        "{}",
        text(&out.stderr)
    );

    // Every refusal was logged with the peer's address, and the coordinator serves on.
    let logged = read(&log);
    let refusals = logged
        .lines()
        .filter(|l| l.contains("handshake failed peer=127.0.0.1:"))
        .count();
    assert!(
        refusals >= 4,
        "refusals logged with the peer's address:\n{logged}"
    );
    assert!(
        !logged.contains("cluster-secret-for"),
        "the secret was logged:\n{logged}"
    );
    assert!(coordinator.is_running(), "the coordinator died; log:\n{logged}");

    // The real workers, with their own certificates, run the job to the exact counts.
    let mut w2_credentials = setup.secret_flag();
    w2_credentials.extend(setup.tls("w2"));
    let _w1 = start_worker(addr, "w1", w1_credentials);
    let _w2 = start_worker(addr, "w2", w2_credentials);
    let mut admin = strings(&["--admin-secret-file", setup.admin_secret.to_str().expect("utf-8")]);
    admin.extend(setup.tls("admin"));
    let finished = wait_status(addr, &admin, "the job to finish", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    let expected = std::fs::read(corpus.join("expected.tsv")).expect("expected.tsv");
    assert_eq!(output_lines(&output), sorted_lines(&expected));
    let mut rebalance = strings(&["rebalance", "--coordinator", &addr.to_string()]);
    rebalance.extend(admin);
    let out = swd_with(rebalance);
    assert!(
        out.status.success(),
        "the admin could not rebalance: {}",
        text(&out.stderr)
    );
    assert!(coordinator.is_running());
}

#[test]
fn a_shared_secret_alone_refuses_strangers_and_the_job_stays_exact() {
    let setup = Setup::new();
    let corpus = corpus(setup.dir.path(), 30_000, 2);
    let output = setup.dir.path().join("out");
    let (mut coordinator, addr, log) =
        start_coordinator(&setup, setup.secret_flag(), &wordcount_job(&corpus, &output));
    assert_refused(addr, Vec::new(), "authentication required");
    let wrong = write_secret(setup.dir.path(), "wrong", "not-the-cluster-secret-at-all");
    assert_refused(
        addr,
        strings(&["--secret-file", wrong.to_str().expect("utf-8")]),
        "could not prove it knows the secret",
    );
    // A TLS client against this plaintext listener.
    let mut tls = setup.secret_flag();
    tls.extend(setup.tls("admin"));
    assert_refused(addr, tls, "TLS with");
    // A worker without the secret gives up at once instead of retrying forever.
    let mut stranger = start_worker(addr, "w9", Vec::new());
    assert!(
        !stranger.wait_exit(DEADLINE).success(),
        "a worker without the secret registered"
    );
    let logged = wait_log(&log, "the peer offered no secret");
    assert!(logged.contains("peer=127.0.0.1:"), "{logged}");
    assert!(coordinator.is_running(), "the coordinator died; log:\n{logged}");
    let _w1 = start_worker(addr, "w1", setup.secret_flag());
    let _w2 = start_worker(addr, "w2", setup.secret_flag());
    let finished = wait_status(addr, &setup.secret_flag(), "the job to finish", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    let expected = std::fs::read(corpus.join("expected.tsv")).expect("expected.tsv");
    assert_eq!(output_lines(&output), sorted_lines(&expected));
    // Without an admin secret configured, the cluster secret may rebalance.
    let mut rebalance = strings(&["rebalance", "--coordinator", &addr.to_string()]);
    rebalance.extend(setup.secret_flag());
    assert!(swd_with(rebalance).status.success());
    let status = wait_status(addr, &setup.secret_flag(), "two workers", |s| {
        s["workers"].as_array().is_some_and(|w| w.len() == 2)
    });
    let ids: Vec<&str> = status["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert!(!ids.contains(&"w9"), "{status:#}");
}
