//! Hostile processes on a worker's data port while a real job runs: a hundred connections that
//! stall before or after the handshake, announce 16 MiB frames and send nothing more, or send
//! batches for partitions and attempts that are not theirs. The worker's memory stays near its
//! baseline, the strangers are disconnected, and the job's output is exact.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use streamweave_distributed::protocol::{Hello, PeerMessage, Role, MAGIC, PROTOCOL_VERSION};
use streamweave_distributed::WorkerId;

/// What the worker's resident memory may grow by under the attack: the hundred connections'
/// buffers and tasks, the few messages held, and allocator noise.
const RSS_ALLOWANCE_KIB: u64 = 16 * 1024;
/// The frame size the attackers announce: the default maximum.
const ANNOUNCED: u32 = 16 * 1024 * 1024;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut bytes = u32::try_from(body.len())
        .expect("small frame")
        .to_be_bytes()
        .to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// The dialer's side of the handshake for a data connection.
fn handshake() -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    let hello = Hello {
        role: Role::Peer,
        cluster: "default".to_string(),
    };
    bytes.extend(frame(&postcard::to_stdvec(&hello).expect("encode hello")));
    bytes
}

fn message(message: &PeerMessage) -> Vec<u8> {
    frame(&postcard::to_stdvec(message).expect("encode message"))
}

/// The first bytes of a frame announcing [`ANNOUNCED`] bytes: its header and 1 KiB of body.
fn announce_and_stall() -> Vec<u8> {
    let mut bytes = ANNOUNCED.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 1024]);
    bytes
}

/// Sends `bytes` without waiting long: a worker that stops reading (as it should) leaves the
/// rest in our socket buffer or fails the write.
fn send(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
    let _ = stream.flush();
}

/// One attacker: how it stalls or what it sends.
#[derive(Clone, Copy, Debug)]
enum Attack {
    /// TCP only.
    Silent,
    /// The handshake, then a 16 MiB frame header instead of a Hello.
    AnnounceBeforeHello,
    /// The handshake and a Hello as a stranger, then a 16 MiB frame header.
    AnnounceAfterHello,
    /// A stranger's batches for a partition of the running attempt.
    ForeignPartition,
    /// A stranger's batches for an attempt that does not exist.
    ForeignAttempt,
}

fn attack(addr: SocketAddr, kind: Attack, i: usize, attempt: u64) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect to the worker's data port");
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("write timeout");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let stranger = PeerMessage::Hello {
        worker: WorkerId::new(format!("evil-{i}")),
    };
    let batch = |attempt: u64, partition: u32| PeerMessage::Batch {
        attempt,
        partition,
        from: 0,
        records: vec![0xAB; 64 * 1024],
    };
    match kind {
        Attack::Silent => {}
        Attack::AnnounceBeforeHello => {
            send(&mut stream, &handshake());
            send(&mut stream, &announce_and_stall());
        }
        Attack::AnnounceAfterHello => {
            send(&mut stream, &[handshake(), message(&stranger)].concat());
            send(&mut stream, &announce_and_stall());
        }
        Attack::ForeignPartition | Attack::ForeignAttempt => {
            send(&mut stream, &[handshake(), message(&stranger)].concat());
            for n in 0..40u32 {
                let batch = match kind {
                    Attack::ForeignPartition => batch(attempt, n % 8),
                    _ => batch(1_000_000 + u64::from(n), n % 8),
                };
                send(&mut stream, &message(&batch));
            }
        }
    }
    stream
}

/// Whether the peer closed `stream` (after the handshake reply it may have sent).
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                )
            }
        }
    }
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// The highest resident memory of `pid` over `period`, sampled every 50 ms.
fn peak_rss_kib(pid: i32, period: Duration) -> u64 {
    let end = Instant::now() + period;
    let mut peak = rss_kib(pid);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        peak = peak.max(rss_kib(pid));
    }
    peak
}

/// Eight input files over a small vocabulary; the expected counts, computed here.
fn write_input(dir: &Path) -> BTreeMap<String, u64> {
    let mut expected = BTreeMap::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for f in 0..8 {
        let mut text = String::new();
        for _ in 0..2_500 {
            for _ in 0..6 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let word = format!("w{}", x % 300);
                text.push_str(&word);
                text.push(' ');
                *expected.entry(word).or_insert(0) += 1;
            }
            text.push('\n');
        }
        std::fs::write(dir.join(format!("part-{f}.txt")), text).expect("write input");
    }
    expected
}

/// Every `word<TAB>count` line of the job's output.
fn output_counts(dir: &Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        for line in std::fs::read_to_string(entry.path())
            .expect("read output")
            .lines()
        {
            let (word, n) = line.split_once('\t').expect("word<TAB>count");
            let previous = counts.insert(word.to_string(), n.parse().expect("a count"));
            assert!(previous.is_none(), "{word} appears twice in the output");
        }
    }
    counts
}

#[test]
fn a_hundred_hostile_connections_leave_the_workers_memory_and_the_jobs_output_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir(&input).expect("input dir");
    let expected = write_input(&input);
    let output = dir.path().join("out");
    // 20 000 lines over 8 partitions at 300 lines/s each: about 8 s, time for the attack.
    let opts = Opts {
        partitions: 8,
        // Failure detection is not under test: a loaded machine must not fail a worker.
        heartbeat_timeout: "3s",
        extra: job_flags(
            "wordcount",
            &input,
            &output,
            &["--rate", "300", "--min-workers", "2"],
        ),
        ..Opts::default()
    };
    let mut cluster = Cluster::start(opts);
    for id in ["w1", "w2"] {
        cluster.add_worker(id, &["--source-slots", "8"]);
    }
    let running = cluster.wait_for("the job to be running with records flowing", |s| {
        s["job"]["state"] == "running" && s["job"]["records_in"].as_u64().is_some_and(|n| n > 0)
    });
    let attempt = running["job"]["attempt"].as_u64().expect("the attempt");
    let address: SocketAddr = workers(&running)
        .iter()
        .find(|w| w["id"] == "w2")
        .and_then(|w| w["address"].as_str())
        .expect("w2's data address")
        .parse()
        .expect("a socket address");
    let pid = cluster.worker("w2").pid();
    let baseline = peak_rss_kib(pid, Duration::from_secs(1));

    let kinds = [
        Attack::Silent,
        Attack::AnnounceBeforeHello,
        Attack::AnnounceAfterHello,
        Attack::ForeignPartition,
        Attack::ForeignAttempt,
    ];
    let mut attackers: Vec<(Attack, TcpStream)> = (0..100)
        .map(|i| {
            let kind = kinds[i % kinds.len()];
            (kind, attack(address, kind, i, attempt))
        })
        .collect();
    let under_attack = peak_rss_kib(pid, Duration::from_secs(3));
    eprintln!("w2's resident memory: {baseline} KiB before the attack, {under_attack} KiB under it");
    let still_running = cluster.status();
    assert_eq!(
        still_running["job"]["state"], "running",
        "the job must still run after the attack, or the attack proved nothing: {still_running:#}"
    );
    assert!(
        under_attack <= baseline + RSS_ALLOWANCE_KIB,
        "w2's resident memory went from {baseline} KiB to {under_attack} KiB under the attack"
    );
    // Strangers sending records for the running attempt are disconnected at once.
    for (kind, stream) in &mut attackers {
        if matches!(kind, Attack::ForeignPartition) {
            assert!(
                closed_by_peer(stream),
                "a stranger's batches did not close its connection"
            );
        }
    }

    let finished = cluster.wait_for_long("the job to finish", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    assert_eq!(
        finished["job"]["restarts"], 0,
        "the attack disturbed the job: {finished:#}"
    );
    assert_eq!(output_counts(&output), expected);
    drop(attackers);
}
