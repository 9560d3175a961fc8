//! Seed inputs: a few valid encodings per target, so that the fuzzer starts from inputs that
//! get past the first checks. `cargo run --example seeds` writes them to `corpus/<target>/`.

use bytes::BytesMut;
use serde::Serialize;
use streamweave_distributed::checkpoint::{CheckpointId, Manifest, PartitionEntry, StoredFile};
use streamweave_distributed::fuzzing::frame_checkpoint_file;
use streamweave_distributed::protocol::auth::DialerMessage;
use streamweave_distributed::protocol::{
    ClientRequest, ClientResponse, CoordinatorMessage, ErrorKind, Hello, HelloReply, MessageCodec,
    PeerMessage, Role, WorkerMessage, MAGIC, PROTOCOL_VERSION,
};
use streamweave_distributed::WorkerId;
use tokio_util::codec::Encoder;

/// One seed: its target, its name, its bytes.
pub type Seed = (&'static str, &'static str, Vec<u8>);

/// Every target's seeds.
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let peer_batch = PeerMessage::Batch {
        attempt: 1,
        partition: 2,
        from: 0,
        records: b"\x01\x05hello".to_vec(),
    };
    let peer_hello = PeerMessage::Hello {
        worker: WorkerId::new("w1"),
    };
    seeds.push(("peer_message", "batch", body(&peer_batch)));
    seeds.push(("peer_message", "hello", body(&peer_hello)));
    seeds.push(("worker_message", "leave", body(&WorkerMessage::Leave)));
    seeds.push((
        "coordinator_message",
        "leave-ack",
        body(&CoordinatorMessage::LeaveAck),
    ));
    let shutdown = CoordinatorMessage::Shutdown {
        reason: "stopping".into(),
    };
    seeds.push(("coordinator_message", "shutdown", body(&shutdown)));
    let refused = ClientResponse::Error {
        kind: ErrorKind::Other,
        message: "no".into(),
    };
    seeds.push(("client_response", "error", body(&refused)));
    seeds.push(("client_request", "status", body(&ClientRequest::Status)));
    // Two frames, read 3 bytes at a time, default maximum size.
    let mut stream = vec![3, 0];
    stream.extend(frame(&peer_hello));
    stream.extend(frame(&peer_batch));
    seeds.push(("frame_codec", "two-frames", stream));

    let hello = Hello {
        role: Role::Worker,
        cluster: "c".to_string(),
    };
    let intro = DialerMessage::Intro { hello, offer: None };
    seeds.push(("dialer_message", "intro", body(&intro)));
    seeds.push(("hello_reply", "accepted", body(&HelloReply::Accepted)));
    let mut dialer = vec![64];
    dialer.extend(preamble());
    dialer.extend(frame(&intro));
    seeds.push(("handshake_accept", "worker-hello", dialer));
    for (name, reply) in [
        ("accepted", HelloReply::Accepted),
        ("rejected", HelloReply::Rejected { reason: "no".into() }),
    ] {
        let mut listener = vec![5];
        listener.extend(preamble());
        listener.extend(frame(&reply));
        seeds.push(("handshake_dial", name, listener));
    }

    let state = b"state bytes";
    let mut manifest = Manifest::new(CheckpointId(7), "wordcount", 1, 1_700_000_000_000, 1);
    manifest.add_partition(PartitionEntry {
        partition: 0,
        state: StoredFile::of("state-p00000", state),
        source_offset: 42,
        source_exhausted: false,
        source_records: 3,
    });
    manifest.extra.insert("sink-epoch".into(), "3".into());
    let json = serde_json::to_vec(&manifest).expect("a manifest encodes");
    seeds.push(("checkpoint_manifest", "framed", [&[0u8][..], &json].concat()));
    seeds.push((
        "checkpoint_manifest",
        "raw",
        [&[1u8][..], &frame_checkpoint_file(&json)].concat(),
    ));
    // Checkpoint 1 intact, checkpoint 2 with a torn state file: recovery picks 1.
    let mut restore = Vec::new();
    for (id, state) in [(1u8, &state[..]), (2, &state[..4])] {
        let mut m = manifest.clone();
        m.id = CheckpointId(u64::from(id));
        let json = serde_json::to_vec(&m).expect("a manifest encodes");
        for (slot, bytes) in [(id << 4 | 2, state), (id << 4, &json[..])] {
            restore.push(slot);
            restore.extend((bytes.len() as u16).to_le_bytes());
            restore.extend_from_slice(bytes);
        }
    }
    seeds.push(("checkpoint_restore", "two-checkpoints", restore));

    seeds.push((
        "text_lines",
        "two-files",
        b"\x03\x04\x02one two\nthree\n\x00four\r\nfive".to_vec(),
    ));
    seeds.push((
        "text_lines",
        "one-file",
        b"\x07\x01\x01a\nbb\nccc\n\n\xffdd\nlast".to_vec(),
    ));
    seeds
}

/// The body of the frame holding `message`.
fn body<T: Serialize>(message: &T) -> Vec<u8> {
    frame(message)[4..].to_vec()
}

/// The frame (length prefix and body) holding `message`.
fn frame<T: Serialize>(message: &T) -> Vec<u8> {
    let mut buf = BytesMut::new();
    MessageCodec::<&T, ()>::new(1 << 20)
        .encode(message, &mut buf)
        .expect("a seed message encodes");
    buf.to_vec()
}

/// The handshake's opening bytes.
fn preamble() -> Vec<u8> {
    [&MAGIC[..], &PROTOCOL_VERSION.to_be_bytes()].concat()
}
