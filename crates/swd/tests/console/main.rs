//! The coordinator's console, JSON API and `/metrics`, and a worker's `/metrics`, served by
//! real `swd` processes. Tier 2 (`tier2::`): the console in headless Chromium follows a
//! SIGKILLed worker live, and `promtool check metrics` accepts both nodes' metrics.

mod cdp;
#[path = "../common/mod.rs"]
mod common;
mod http;
mod metrics_text;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use common::{corpus, status_at, swd, wait_status_at, Proc, DEADLINE};
use metrics_text::Exposition;

/// A coordinator started with `args` (after `--data-dir`), its address and the URLs it printed
/// after `listening on` (`console on URL`, `metrics on URL`), by their first word.
fn coordinator(
    data_dir: &Path,
    args: &[String],
    urls: usize,
) -> (Proc, SocketAddr, BTreeMap<String, String>) {
    let mut child = swd()
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
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a first line").expect("read stdout");
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("coordinator printed {first:?}"))
        .parse()
        .expect("address");
    let urls = read_urls(&mut lines, urls);
    (
        Proc {
            name: "coordinator".into(),
            child,
        },
        addr,
        urls,
    )
}

/// A worker `id` with its `/metrics` on an ephemeral port, and that URL.
fn worker(coordinator: SocketAddr, id: &str) -> (Proc, String) {
    let mut child = swd()
        .args(["worker", "--coordinator", &coordinator.to_string(), "--id", id])
        .args(["--heartbeat-interval", "100ms", "--metrics-bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn worker");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let registered = lines.next().expect("a first line").expect("read stdout");
    assert!(registered.contains("registered"), "{registered}");
    let url = read_urls(&mut lines, 1).remove("metrics").expect("metrics URL");
    (
        Proc {
            name: id.into(),
            child,
        },
        url,
    )
}

fn read_urls(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    n: usize,
) -> BTreeMap<String, String> {
    (0..n)
        .map(|_| {
            let line = lines.next().expect("a URL line").expect("read stdout");
            let (what, url) = line
                .split_once(" on ")
                .unwrap_or_else(|| panic!("printed {line:?}"));
            (what.to_string(), url.to_string())
        })
        .collect()
}

/// A word count over `corpus` on 4 partitions with checkpoints, waiting for 2 workers.
fn wordcount_args(corpus: &Path, output: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--partitions",
        "4",
        "--min-workers",
        "2",
        "--job",
        "wordcount",
        "--input",
    ]
    .map(String::from)
    .to_vec();
    args.push(corpus.join("input").to_string_lossy().into());
    args.push("--output".into());
    args.push(output.to_string_lossy().into());
    args.extend(["--checkpoint-interval", "100ms"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Polls `url` until its metrics satisfy `done`.
fn wait_metrics(url: &str, what: &str, done: impl Fn(&Exposition) -> bool) -> Exposition {
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let metrics = Exposition::parse(&http::get(url));
        if done(&metrics) {
            return metrics;
        }
        assert!(
            std::time::Instant::now() < end,
            "{what} not in {url} within {DEADLINE:?}:\n{metrics:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_of_the_coordinator_and_its_workers_carry_the_key_series() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 30_000, 2);
    let args = wordcount_args(
        &corpus,
        &dir.path().join("out"),
        &["--metrics-bind", "127.0.0.1:0"],
    );
    let (_coordinator, addr, urls) = coordinator(&dir.path().join("data"), &args, 1);
    let (_w1, w1_url) = worker(addr, "w1");
    let (_w2, w2_url) = worker(addr, "w2");
    let status = wait_status_at(addr, DEADLINE * 2, "the job to finish", |s| {
        s["job"]["state"] == "finished"
    });
    let job = &status["job"];
    assert_eq!(job["restarts"], 0, "{status:#}");
    let records_in = job["records_in"].as_f64().expect("records_in");
    let records_out = job["records_out"].as_f64().expect("records_out");
    assert!(records_in > 0.0);

    let c = wait_metrics(&urls["metrics"], "the finished job", |m| {
        m.value("swd_job_state", &[("job", "wordcount"), ("state", "finished")]) == Some(1.0)
    });
    assert_eq!(
        c.value("swd_job_records_in_total", &[("job", "wordcount")]),
        Some(records_in)
    );
    assert_eq!(
        c.value("swd_job_records_out_total", &[("job", "wordcount")]),
        Some(records_out)
    );
    assert_eq!(
        c.value("swd_job_restarts_total", &[("job", "wordcount")]),
        Some(0.0)
    );
    assert_eq!(c.value("swd_partitions", &[]), Some(4.0));
    assert_eq!(c.value("swd_workers", &[("state", "active")]), Some(2.0));
    assert_eq!(c.sum("swd_worker_partitions"), 4.0);
    for w in ["w1", "w2"] {
        let age = c
            .value("swd_worker_heartbeat_age_seconds", &[("worker", w)])
            .expect("heartbeat age");
        assert!((0.0..0.5).contains(&age), "{w} heard from {age} s ago");
        assert_eq!(c.value("swd_worker_healthy", &[("worker", w)]), Some(1.0));
    }
    assert!(c
        .value("swd_assignment_generation", &[])
        .is_some_and(|g| g >= 1.0));
    assert_eq!(c.types["swd_checkpoints_completed_total"], "counter");
    assert_eq!(c.types["swd_checkpoint_last_duration_seconds"], "gauge");
    assert_eq!(c.types["swd_checkpoint_last_size_bytes"], "gauge");
    assert_eq!(c.types["swd_checkpoint_failures_total"], "counter");
    assert_eq!(c.types["swd_partition_move_pause_seconds_total"], "counter");

    // Each partition was read and committed by one worker: the workers' series add up to the
    // job's counts.
    let workers: Vec<Exposition> = [&w1_url, &w2_url]
        .iter()
        .map(|u| Exposition::parse(&http::get(u)))
        .collect();
    let total = |name: &str| workers.iter().map(|m| m.sum(name)).sum::<f64>();
    assert_eq!(total("swd_worker_records_in_total"), records_in);
    assert_eq!(total("swd_worker_records_out_total"), records_out);
    for m in &workers {
        assert_eq!(m.types["swd_worker_backpressure_wait_seconds_total"], "counter");
        assert_eq!(m.value("swd_worker_connected", &[]), Some(1.0));
        assert_eq!(m.value("swd_worker_job_attempts_total", &[]), Some(1.0));
        assert!(m.value("swd_worker_partitions", &[]).is_some());
    }
    // A scraper asking for OpenMetrics gets it.
    let (code, open) = http::get_with(
        &urls["metrics"],
        Some("application/openmetrics-text; version=1.0.0"),
    );
    assert_eq!(code, 200);
    assert!(
        open.ends_with("# EOF\n") && open.contains("# TYPE swd_job_records_in counter\n"),
        "{open}"
    );
}

#[test]
fn the_api_serves_what_swd_status_shows_and_the_page_its_assets() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 5_000, 1);
    let args = wordcount_args(&corpus, &dir.path().join("out"), &["--http-bind", "127.0.0.1:0"]);
    let (_coordinator, addr, urls) = coordinator(&dir.path().join("data"), &args, 1);
    let base = urls["console"].trim_end_matches('/').to_string();
    let (_w1, _) = worker(addr, "w1");
    let (_w2, _) = worker(addr, "w2");
    wait_status_at(addr, DEADLINE * 2, "the job to finish", |s| {
        s["job"]["state"] == "finished"
    });
    let api =
        |path: &str| -> Value { serde_json::from_str(&http::get(&format!("{base}{path}"))).expect("JSON") };
    let end = std::time::Instant::now() + DEADLINE;
    let served = loop {
        let served = api("/api/status");
        if served["job"]["state"] == "finished" {
            break served;
        }
        assert!(std::time::Instant::now() < end, "{served:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let cli = status_at(addr);
    for key in [
        "cluster",
        "generation",
        "partitions",
        "strategy",
        "unassigned",
        "role",
        "job",
    ] {
        assert_eq!(served[key], cli[key], "{key}");
    }
    let owners = |s: &Value| -> Vec<(Value, Value)> {
        s["workers"]
            .as_array()
            .expect("workers")
            .iter()
            .map(|w| (w["id"].clone(), w["partitions"].clone()))
            .collect()
    };
    assert_eq!(owners(&served), owners(&cli));
    let cluster = api("/api/cluster");
    assert_eq!(cluster["partitions"], 4);
    assert!(cluster.get("job").is_none(), "{cluster}");
    assert_eq!(api("/api/job")["name"], "wordcount");
    assert!(api("/api/checkpoints")["history"].is_array());
    let events = api("/api/events");
    let messages: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.starts_with("worker w1 joined")),
        "{messages:?}"
    );
    assert!(messages.contains(&"job wordcount finished"), "{messages:?}");
    let page = api("/api/console");
    assert!(
        page["samples"].as_array().is_some_and(|s| !s.is_empty()),
        "{page}"
    );
    assert_eq!(page["error"], Value::Null);
    let html = http::get(&format!("{base}/"));
    assert!(html.contains("<script src=\"/console.js\">"), "{html}");
    assert!(http::get(&format!("{base}/console.js")).contains("/api/console"));
    assert!(http::get(&format!("{base}/console.css")).contains("#partitions"));
    Exposition::parse(&http::get(&format!("{base}/metrics")));
    assert_eq!(http::get_with(&format!("{base}/nope"), None).0, 404);
}

#[test]
fn the_console_serves_at_most_64_connections_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--http-bind", "127.0.0.1:0"].map(String::from);
    let (_coordinator, _, urls) = coordinator(dir.path(), &args, 1);
    let host = urls["console"]
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    // The first status (503 until the console has one).
    let end = std::time::Instant::now() + DEADLINE;
    while http::get_with(&format!("http://{host}/api/cluster"), None).0 != 200 {
        assert!(std::time::Instant::now() < end, "no status from the console");
        std::thread::sleep(Duration::from_millis(50));
    }
    // 64 connections that say nothing hold every slot...
    let mut idle: Vec<std::net::TcpStream> = (0..64)
        .map(|_| std::net::TcpStream::connect(&host).expect("connect"))
        .collect();
    // ...so the 65th waits in the backlog, unanswered (a second is far beyond a local answer).
    let mut waiting = std::net::TcpStream::connect(&host).expect("connect");
    waiting.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    use std::io::{Read, Write};
    write!(
        waiting,
        "GET /api/cluster HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 1];
    let early = waiting.read(&mut first);
    assert!(early.is_err(), "answered beyond the limit: {early:?}");
    // One closes: the waiting request is served.
    idle.pop();
    waiting.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut answer = String::new();
    waiting
        .read_to_string(&mut answer)
        .expect("the answer once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

mod tier2 {
    use std::process::Command;
    use std::time::Instant;

    use super::*;

    #[test]
    #[ignore = "tier 2: needs chromium (scripts/tier2.sh)"]
    fn the_console_in_chromium_shows_a_sigkilled_worker_gone_and_its_partitions_moved_live() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = corpus(dir.path(), 400_000, 4);
        let mut args = wordcount_args(&corpus, &dir.path().join("out"), &["--http-bind", "127.0.0.1:0"]);
        // 12 partitions, a steady rate: records flow while the page is watched.
        args[1] = "12".into();
        args[3] = "3".into();
        args.extend(["--rate", "300"].map(String::from));
        let (_coordinator, addr, urls) = coordinator(&dir.path().join("data"), &args, 1);
        let mut workers: Vec<(Proc, String)> = ["w1", "w2", "w3"].iter().map(|id| worker(addr, id)).collect();
        wait_status_at(addr, DEADLINE, "records flowing", |s| {
            s["job"]["state"] == "running" && s["job"]["records_in"].as_u64().is_some_and(|n| n > 0)
        });
        let mut browser = cdp::Browser::open(&urls["console"]);
        let shown = "JSON.stringify({ workers: [...document.querySelectorAll('#workers tbody tr')]\
              .map(r => [r.dataset.worker, r.dataset.state, r.dataset.healthy]), \
            owners: [...document.querySelectorAll('#partitions .partition')].map(p => p.dataset.owner), \
            marker: window.__marker || null })";
        let parse = |v: &Value| -> Value {
            serde_json::from_str(v.as_str().unwrap_or("null")).unwrap_or(Value::Null)
        };
        let owners_in = |v: &Value, allowed: &[&str]| {
            v["owners"]
                .as_array()
                .is_some_and(|o| o.len() == 12 && o.iter().all(|w| allowed.iter().any(|a| w == a)))
        };
        browser.wait_for(
            "three healthy workers owning all 12 partitions",
            DEADLINE,
            shown,
            |v| {
                let v = parse(v);
                let rows = v["workers"].as_array().map_or(0, |w| {
                    w.iter().filter(|r| r[1] == "active" && r[2] == "true").count()
                });
                rows == 3 && owners_in(&v, &["w1", "w2", "w3"])
            },
        );
        // Proof that the page is not reloaded: a reload would lose this.
        browser.eval("window.__marker = 'same page'; true");
        let (victim, _) = workers.remove(1);
        let killed = Instant::now();
        victim.signal(libc::SIGKILL);
        let after = browser.wait_for(
            "w2 gone and its partitions with w1 and w3",
            Duration::from_secs(5),
            shown,
            |v| {
                let v = parse(v);
                let w2_alive = v["workers"].as_array().is_some_and(|w| {
                    w.iter()
                        .any(|r| r[0] == "w2" && r[1] == "active" && r[2] == "true")
                });
                !w2_alive && owners_in(&v, &["w1", "w3"])
            },
        );
        let took = killed.elapsed();
        let after = parse(&after);
        assert_eq!(after["marker"], "same page", "the page was reloaded");
        assert!(
            took <= Duration::from_secs(2),
            "the page showed the failure after {took:?}"
        );
        // Let the chart and the checkpoint history fill a little for the picture.
        browser.wait_for(
            "checkpoint rows",
            DEADLINE,
            "document.querySelectorAll('#checkpoints tbody tr').length",
            |v| v.as_u64().is_some_and(|n| n >= 6),
        );
        let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
        browser.screenshot(&shot);
        eprintln!(
            "screenshot: {} (the page showed the failure {took:?} after the SIGKILL)",
            shot.display()
        );
        drop(workers);
    }

    #[test]
    #[ignore = "tier 2: needs promtool (scripts/tier2.sh)"]
    fn promtool_accepts_the_metrics_of_the_coordinator_and_a_worker() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = corpus(dir.path(), 20_000, 2);
        let args = wordcount_args(
            &corpus,
            &dir.path().join("out"),
            &["--metrics-bind", "127.0.0.1:0"],
        );
        let (_coordinator, addr, urls) = coordinator(&dir.path().join("data"), &args, 1);
        let (_w1, w1_url) = worker(addr, "w1");
        let (_w2, _) = worker(addr, "w2");
        wait_status_at(addr, DEADLINE * 2, "the job to finish", |s| {
            s["job"]["state"] == "finished"
        });
        let coordinator_metrics = wait_metrics(&urls["metrics"], "the finished job", |m| {
            m.value("swd_job_state", &[("job", "wordcount"), ("state", "finished")]) == Some(1.0)
        });
        for (name, text) in [
            ("coordinator", coordinator_metrics.text),
            ("worker", http::get(&w1_url)),
        ] {
            let path = dir.path().join(format!("{name}.prom"));
            std::fs::write(&path, &text).unwrap();
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("promtool check metrics < '{}'", path.display()))
                .output()
                .expect("run promtool");
            assert!(
                out.status.success(),
                "promtool check metrics failed on the {name}'s metrics ({}): {}{}\n{text}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
