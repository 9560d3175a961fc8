//! Hostile and broken peers on the coordinator's port: whatever arrives, the coordinator closes
//! that one connection and carries on. Before and after each attack the cluster is the same, the
//! coordinator still runs, and a new worker can still join.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use serde_json::Value;
use streamweave_distributed::protocol::auth::DialerMessage;
use streamweave_distributed::protocol::{Hello, HelloReply, Role, MAGIC, PROTOCOL_VERSION};

/// How long the coordinator may take to answer or close a connection.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// A fixed-seed xorshift64 so the garbage is the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the coordinator");
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("read timeout");
    stream
        .set_write_timeout(Some(READ_TIMEOUT))
        .expect("write timeout");
    stream
}

fn preamble(version: u16) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&version.to_be_bytes());
    bytes
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut bytes = u32::try_from(body.len())
        .expect("small frame")
        .to_be_bytes()
        .to_vec();
    bytes.extend_from_slice(body);
    bytes
}

fn hello(role: Role, cluster: &str) -> Vec<u8> {
    let hello = Hello {
        role,
        cluster: cluster.to_string(),
    };
    // The introduction without a secret (this coordinator has none).
    let intro = DialerMessage::Intro { hello, offer: None };
    let mut bytes = preamble(PROTOCOL_VERSION);
    bytes.extend(frame(&postcard::to_stdvec(&intro).expect("encode hello")));
    bytes
}

/// Sends `bytes`, ignoring errors: the coordinator may close the connection before all of
/// them arrive.
fn send(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
    let _ = stream.flush();
}

/// Reads until the coordinator closes the connection and returns what it sent. Panics if it
/// keeps the connection open.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return reply,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return reply
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("the coordinator kept the connection open ({e}); it sent {reply:?}"),
        }
    }
}

/// The coordinator's side of an accepted handshake: its preamble and `Accepted`.
fn accepted() -> Vec<u8> {
    let mut bytes = preamble(PROTOCOL_VERSION);
    bytes.extend(frame(
        &postcard::to_stdvec(&HelloReply::Accepted).expect("encode"),
    ));
    bytes
}

/// Splits the coordinator's answer to a handshake into its preamble and its reply frame.
fn parse_reply(reply: &[u8]) -> ([u8; 6], HelloReply) {
    assert!(reply.len() >= 10, "short reply: {reply:?}");
    assert_eq!(&reply[..4], b"SWDP", "the reply starts with the magic: {reply:?}");
    let len = u32::from_be_bytes([reply[6], reply[7], reply[8], reply[9]]) as usize;
    assert_eq!(reply.len(), 10 + len, "one frame after the preamble: {reply:?}");
    let answer = postcard::from_bytes(&reply[10..]).expect("a HelloReply frame");
    (reply[..6].try_into().expect("6 bytes"), answer)
}

/// What must not change: generation, members and their partitions.
fn summary(status: &Value) -> Value {
    serde_json::json!({
        "generation": status["generation"],
        "workers": worker_ids(status),
        "ownership": ownership(status),
    })
}

/// Runs `attack` against a settled two-worker cluster and checks that nothing changed.
fn survives(attack: impl FnOnce(SocketAddr)) {
    // Failure detection is not under test here: a long timeout keeps a slow machine from
    // failing a worker in the middle and changing the status for that reason.
    let opts = Opts {
        heartbeat_timeout: "10s",
        health_check_interval: "100ms",
        ..Opts::default()
    };
    let mut cluster = Cluster::with_workers(opts, 2);
    let before = cluster.status();
    let events_before = cluster.events().len();
    // A peer that connects and says nothing stays connected throughout: it must not hold up
    // anything else.
    let idle = connect(cluster.addr);
    attack(cluster.addr);
    let after = cluster.status();
    assert_eq!(
        summary(&after),
        summary(&before),
        "the attack changed the cluster"
    );
    assert!(cluster.coordinator.is_running(), "the coordinator died");
    cluster.add_worker("w3", &[]);
    let joined = cluster.wait_settled(3);
    assert_exclusive_and_complete(&joined);
    let events = cluster.events();
    let new = &events[events_before..];
    assert!(
        new.first().is_some_and(|e| is_event(e, "joined", "w3")),
        "the first event after the attack is w3 joining: {new:#?}"
    );
    assert!(cluster.coordinator.is_running(), "the coordinator died");
    drop(idle);
}

#[test]
fn random_bytes_are_dropped() {
    survives(|addr| {
        let mut rng = XorShift(0x5eed_1234_abcd_0001);
        for i in 0..24 {
            let len = 1 + (rng.next() % 8192) as usize;
            let mut garbage = match i % 3 {
                // At the very start, after a good preamble, and after a whole worker handshake.
                0 => Vec::new(),
                1 => preamble(PROTOCOL_VERSION),
                _ => hello(Role::Worker, "default"),
            };
            garbage.extend(rng.bytes(len));
            let mut stream = connect(addr);
            send(&mut stream, &garbage);
            read_until_closed(&mut stream);
        }
    });
}

#[test]
fn an_http_request_is_dropped_without_an_answer() {
    survives(|addr| {
        let mut stream = connect(addr);
        send(
            &mut stream,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n",
        );
        let reply = read_until_closed(&mut stream);
        assert!(reply.is_empty(), "answered HTTP with {reply:?}");
    });
}

#[test]
fn a_four_gib_length_prefix_is_refused_without_waiting_for_the_body() {
    survives(|addr| {
        // In the handshake: the preamble, then a Hello frame announcing 4 GiB - 1.
        let mut stream = connect(addr);
        let mut bytes = preamble(PROTOCOL_VERSION);
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        send(&mut stream, &bytes);
        let reply = read_until_closed(&mut stream);
        assert_eq!(reply, preamble(PROTOCOL_VERSION), "only the preamble, then close");
        // After a good worker handshake: a message frame announcing 4 GiB - 1.
        let mut stream = connect(addr);
        let mut bytes = hello(Role::Worker, "default");
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        send(&mut stream, &bytes);
        assert_eq!(read_until_closed(&mut stream), accepted());
    });
}

#[test]
fn an_undecodable_frame_after_a_good_handshake_is_dropped() {
    survives(|addr| {
        for role in [Role::Worker, Role::Client] {
            // Variant 200 of a four-variant enum, then junk.
            let mut bytes = hello(role, "default");
            bytes.extend(frame(&[0xc8, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff]));
            let mut stream = connect(addr);
            send(&mut stream, &bytes);
            assert_eq!(read_until_closed(&mut stream), accepted(), "{role:?}");
        }
    });
}

#[test]
fn a_wrong_protocol_version_is_rejected_with_a_reason() {
    survives(|addr| {
        let mut stream = connect(addr);
        send(&mut stream, &preamble(PROTOCOL_VERSION + 1));
        let reply = read_until_closed(&mut stream);
        let (their_preamble, answer) = parse_reply(&reply);
        assert_eq!(their_preamble.to_vec(), preamble(PROTOCOL_VERSION));
        match answer {
            HelloReply::Rejected { reason } => assert!(reason.contains("version"), "{reason}"),
            other => panic!("a peer of another version was answered {other:?}"),
        }
    });
}

#[test]
fn a_wrong_cluster_name_is_rejected_with_a_reason() {
    survives(|addr| {
        for role in [Role::Worker, Role::Client] {
            let mut stream = connect(addr);
            send(&mut stream, &hello(role, "another-cluster"));
            let reply = read_until_closed(&mut stream);
            let (_, answer) = parse_reply(&reply);
            match answer {
                HelloReply::Rejected { reason } => {
                    assert!(reason.contains("another-cluster"), "{reason}")
                }
                other => panic!("a peer of another cluster was answered {other:?}"),
            }
        }
    });
}

#[test]
fn half_a_handshake_then_close_is_dropped() {
    survives(|addr| {
        // Half the preamble.
        let mut stream = connect(addr);
        send(&mut stream, &preamble(PROTOCOL_VERSION)[..3]);
        stream.shutdown(Shutdown::Write).expect("shutdown");
        assert!(read_until_closed(&mut stream).is_empty());
        // The preamble and half the Hello frame.
        let whole = hello(Role::Worker, "default");
        let mut stream = connect(addr);
        send(&mut stream, &whole[..whole.len() - 3]);
        stream.shutdown(Shutdown::Write).expect("shutdown");
        assert_eq!(read_until_closed(&mut stream), preamble(PROTOCOL_VERSION));
    });
}
