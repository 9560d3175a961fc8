//! JetStream to JetStream with real processes: a `nats-server -js` of its own (temporary store),
//! `swd local` running `repartition` (2 workers, 4 partitions) from stream `IN` to subject
//! `OUT.lines` (captured by stream `OUT`). It measures:
//!   raw      - the client's own rates on this server: publish (acks awaited in windows) and
//!              consume (one ordered consumer), messages/s;
//!   backfill - `repartition --param until=end` over N stored messages, checkpoints every 1 s:
//!              messages/s from start to the exit of `swd local` (cluster start included);
//!   latency  - an unbounded `repartition` while a publisher sends at a fixed rate; each
//!              payload carries its publish time, and a core subscription on `OUT.lines` sees
//!              a record when the output stream stores it: p50 and p99 per rate and interval.
//!
//! Run: `cargo bench -p swd --bench jetstream` (`SWD_BENCH_MESSAGES`, default 200000;
//! `SWD_BENCH_SECONDS` per latency run, default 5). A measurement: it asserts nothing about speed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer::pull::OrderedConfig, stream::Config};
use futures::StreamExt;

struct Server {
    port: u16,
    child: Child,
    _store: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let store = tempfile::tempdir().expect("store");
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server (scripts/lib/nats.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        port,
        child,
        _store: store,
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

async fn fresh_streams(js: &jetstream::Context) {
    for name in ["IN", "OUT", "SWD_SPOOL"] {
        let _ = js.delete_stream(name).await;
    }
    for name in ["IN", "OUT"] {
        js.create_stream(Config {
            name: name.to_string(),
            subjects: vec![format!("{name}.lines")],
            ..Default::default()
        })
        .await
        .expect("create stream");
    }
}

/// Publishes `n` messages to `IN.lines`, acks awaited in windows; returns messages/s.
async fn publish(js: &jetstream::Context, n: usize) -> f64 {
    let started = Instant::now();
    let mut acks = std::collections::VecDeque::new();
    for i in 0..n {
        acks.push_back(
            js.publish("IN.lines", format!("line {i}").into())
                .await
                .expect("publish"),
        );
        if acks.len() >= 4096 {
            acks.pop_front().expect("an ack").await.expect("ack");
        }
    }
    for ack in acks {
        ack.await.expect("ack");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Reads `IN` from the start with one ordered consumer; returns messages/s.
async fn consume(js: &jetstream::Context, n: usize) -> f64 {
    let started = Instant::now();
    let stream = js.get_stream("IN").await.expect("IN");
    let consumer = stream
        .create_consumer(OrderedConfig::default())
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages").take(n);
    while let Some(message) = messages.next().await {
        message.expect("message");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn swd_local(port: u16, interval: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_swd"))
        .args([
            "local",
            "--workers",
            "2",
            "--partitions",
            "4",
            "--checkpoint-interval",
            interval,
        ])
        .args([
            "--job",
            "repartition",
            "--input",
            &format!("nats://127.0.0.1:{port}/IN"),
        ])
        .args(["--output", &format!("nats://127.0.0.1:{port}/OUT.lines")])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn swd local")
}

/// Percentile `q` of sorted `v`.
fn pct(v: &[f64], q: f64) -> f64 {
    v.get(((v.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Runs an unbounded repartition while publishing at `rate`/s for `seconds`; latencies in ms.
async fn latency(port: u16, rate: u64, interval: &str, seconds: u64) -> Vec<f64> {
    let client = async_nats::connect(format!("127.0.0.1:{port}"))
        .await
        .expect("connect");
    let js = jetstream::new(client.clone());
    fresh_streams(&js).await;
    let mut output = client.subscribe("OUT.lines").await.expect("subscribe");
    let mut local = swd_local(port, interval, &[]);
    // The clock starts once a first record went through: the figures measure the pipeline,
    // not the cluster's start.
    js.publish("IN.lines", "warm-up".into()).await.expect("publish");
    match tokio::time::timeout(Duration::from_secs(60), output.next()).await {
        Ok(Some(_)) => {}
        _ => panic!("the warm-up record never reached OUT.lines"),
    }
    let total = (rate * seconds) as usize;
    let publisher = tokio::spawn(async move {
        let started = Instant::now();
        for i in 0..total {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            let payload = format!("{} {i}", now_ns());
            // Fire and forget: the acks would pace the publisher, not the pipeline.
            let _ = js.publish("IN.lines", payload.into()).await;
        }
    });
    let mut latencies = Vec::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    while latencies.len() < total && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), output.next()).await {
            Ok(Some(message)) => {
                let text = String::from_utf8_lossy(&message.payload);
                if let Some(sent) = text.split(' ').next().and_then(|t| t.parse::<u128>().ok()) {
                    latencies.push(now_ns().saturating_sub(sent) as f64 / 1e6);
                }
            }
            _ => break,
        }
    }
    let _ = publisher.await;
    // SAFETY: kill(2) on the pid of a child this process spawned and has not reaped.
    unsafe { libc::kill(local.id() as i32, libc::SIGINT) };
    let _ = local.wait();
    if latencies.len() < total {
        eprintln!("  ({} of {total} records seen)", latencies.len());
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    latencies
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("SWD_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let seconds: u64 = std::env::var("SWD_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let server = start_server();
    let client = async_nats::connect(format!("127.0.0.1:{}", server.port))
        .await
        .expect("connect");
    let js = jetstream::new(client);

    fresh_streams(&js).await;
    let published = publish(&js, n).await;
    let consumed = consume(&js, n).await;
    println!("raw client: publish {published:.0} msg/s, consume {consumed:.0} msg/s ({n} messages)");

    let started = Instant::now();
    let status = swd_local(server.port, "1s", &["--param", "until=end"])
        .wait()
        .expect("swd local");
    let secs = started.elapsed().as_secs_f64();
    let out = js
        .get_stream("OUT")
        .await
        .expect("OUT")
        .get_info()
        .await
        .expect("info")
        .state
        .messages;
    assert_eq!(out, n as u64, "the backfill's output holds every message once");
    println!(
        "backfill repartition IN -> OUT: {n} messages in {secs:.2} s = {:.0} msg/s, cluster start \
         included ({:.2} of raw consume; {status})",
        n as f64 / secs,
        n as f64 / secs / consumed
    );

    for rate in [10_000u64, 100_000] {
        for interval in ["100ms", "1s"] {
            let l = latency(server.port, rate, interval, seconds).await;
            println!(
                "latency at {rate} msg/s, checkpoints every {interval}: p50 {:.1} ms, p99 {:.1} ms ({} records)",
                pct(&l, 0.5),
                pct(&l, 0.99),
                l.len()
            );
        }
    }
}
