//! Property tests of the wire format: every message round-trips through [`MessageCodec`], frames
//! survive any split, and broken or hostile input yields an error, never a panic or a large
//! allocation.

use std::fmt::Debug;

use bytes::{BufMut, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::{Decoder, Encoder};

use super::*;
use crate::{Generation, PartitionId, WorkerId, WorkerState};

const MAX: usize = DEFAULT_MAX_FRAME_SIZE;

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn worker_id() -> impl Strategy<Value = WorkerId> {
    any::<String>().prop_map(WorkerId::new)
}

fn generation() -> impl Strategy<Value = Generation> {
    any::<u64>().prop_map(Generation)
}

fn partitions() -> impl Strategy<Value = Vec<PartitionId>> {
    vec(any::<PartitionId>(), 0..8)
}

fn register_request() -> impl Strategy<Value = RegisterRequest> {
    (
        worker_id(),
        any::<u64>(),
        any::<String>(),
        any::<usize>(),
        partitions(),
    )
        .prop_map(
            |(worker_id, incarnation, address, capacity, requested)| RegisterRequest {
                worker_id,
                incarnation,
                address,
                capacity,
                requested,
                jobs: vec!["wordcount".to_string(), "repartition".to_string()],
            },
        )
}

fn job_progress() -> impl Strategy<Value = JobProgress> {
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<Option<u64>>()).prop_map(
        |(attempt, records_in, records_out, lag)| JobProgress {
            attempt,
            records_in,
            records_out,
            lag,
        },
    )
}

fn job_spec() -> impl Strategy<Value = JobSpecWire> {
    (
        any::<String>(),
        proptest::option::of(any::<String>()),
        vec((any::<String>(), any::<String>()), 0..3),
    )
        .prop_map(|(name, input, params)| JobSpecWire {
            name,
            input: input.map(Into::into),
            output: Some("out".into()),
            params: params.into_iter().collect(),
        })
}

fn peer_message() -> impl Strategy<Value = PeerMessage> {
    prop_oneof![
        any::<String>().prop_map(|w| PeerMessage::Hello {
            worker: WorkerId::new(w)
        }),
        (any::<u64>(), any::<u32>(), vec(any::<u8>(), 0..300)).prop_map(|(attempt, partition, records)| {
            PeerMessage::Batch {
                attempt,
                partition,
                from: partition / 2,
                records,
            }
        }),
        (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(attempt, partition, from)| {
            PeerMessage::EndOfStream {
                attempt,
                partition,
                from,
            }
        }),
        (any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
            |(attempt, partition, from, credits)| PeerMessage::Credit {
                attempt,
                partition,
                from,
                credits,
            }
        ),
    ]
}

fn worker_message() -> impl Strategy<Value = WorkerMessage> {
    prop_oneof![
        register_request().prop_map(WorkerMessage::Register),
        (partitions(), proptest::option::of(job_progress()))
            .prop_map(|(running, job)| WorkerMessage::Heartbeat { running, job }),
        (any::<u64>(), any::<usize>(), any::<u64>()).prop_map(|(attempt, partition, records_out)| {
            WorkerMessage::PartitionDone {
                attempt,
                partition,
                records_out,
            }
        }),
        (
            any::<u64>(),
            proptest::option::of(any::<usize>()),
            any::<String>(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(worker_id())
        )
            .prop_map(
                |(attempt, partition, error, damaged_checkpoint, unreachable_peer)| {
                    WorkerMessage::JobFailed {
                        attempt,
                        partition,
                        error,
                        damaged_checkpoint,
                        unreachable_peer,
                    }
                }
            ),
        (generation(), partitions())
            .prop_map(|(generation, running)| WorkerMessage::Ack { generation, running }),
        Just(WorkerMessage::Leave),
        worker_id().prop_map(|peer| WorkerMessage::PeerUnreachable { peer }),
        (
            (any::<u64>(), any::<u64>(), any::<usize>(), any::<u32>()),
            (
                any::<String>(),
                any::<u64>(),
                any::<u64>(),
                any::<bool>(),
                any::<u64>(),
                partitions()
            )
        )
            .prop_map(
                |(
                    (attempt, id, partition, state_crc32),
                    (state_file, state_bytes, source_offset, source_exhausted, source_records, ended_sources),
                )| WorkerMessage::CheckpointAck {
                    attempt,
                    id,
                    partition,
                    state_file,
                    state_bytes,
                    state_crc32,
                    source_offset,
                    source_exhausted,
                    source_records,
                    ended_sources,
                }
            ),
        (any::<u64>(), any::<u64>(), partitions(), 0..3u8).prop_map(
            |(attempt, checkpoint, partitions, phase)| {
                WorkerMessage::MoveStatus {
                    attempt,
                    checkpoint,
                    partitions,
                    phase: [MovePhase::Preloaded, MovePhase::PreloadFailed, MovePhase::Resumed]
                        [phase as usize],
                }
            }
        ),
    ]
}

fn coordinator_message() -> impl Strategy<Value = CoordinatorMessage> {
    prop_oneof![
        (generation(), any::<usize>(), any::<u64>()).prop_map(
            |(generation, num_partitions, heartbeat_timeout_ms)| CoordinatorMessage::Registered {
                generation,
                num_partitions,
                heartbeat_timeout_ms,
            }
        ),
        any::<String>().prop_map(|reason| CoordinatorMessage::RegistrationRefused { reason }),
        proptest::option::of(any::<String>()).prop_map(|leader| CoordinatorMessage::NotLeader { leader }),
        Just(CoordinatorMessage::HeartbeatAck),
        (generation(), partitions()).prop_map(|(generation, partitions)| CoordinatorMessage::Assignment {
            generation,
            partitions
        }),
        Just(CoordinatorMessage::LeaveAck),
        any::<String>().prop_map(|reason| CoordinatorMessage::Shutdown { reason }),
        any::<String>().prop_map(|reason| CoordinatorMessage::Fenced { reason }),
        (
            any::<u64>(),
            job_spec(),
            vec((any::<String>(), any::<String>()), 0..4)
        )
            .prop_map(|(attempt, spec, owners)| CoordinatorMessage::StartJob {
                attempt,
                spec,
                checkpoints: Some(CheckpointPlan {
                    store_dir: "/tmp/c".to_string(),
                    restore: Some(RestorePoint {
                        id: attempt,
                        partitions: vec![("state-p00000".to_string(), 7)],
                        source_records: vec![9],
                    })
                }),
                owners: owners
                    .into_iter()
                    .map(|(w, address)| PartitionOwner {
                        worker: WorkerId::new(w),
                        address
                    })
                    .collect(),
            }),
        any::<u64>().prop_map(|attempt| CoordinatorMessage::StopJob { attempt }),
        (
            any::<u64>(),
            any::<u64>(),
            vec((any::<usize>(), any::<String>(), any::<String>()), 0..4),
            vec(any::<usize>(), 0..4)
        )
            .prop_map(
                |(attempt, id, moves, keep_chains)| CoordinatorMessage::TriggerCheckpoint {
                    attempt,
                    id,
                    keep_chains,
                    moves: moves
                        .into_iter()
                        .map(|(partition, w, address)| PartitionMove {
                            partition,
                            to: PartitionOwner {
                                worker: WorkerId::new(w),
                                address,
                            },
                        })
                        .collect(),
                }
            ),
        (
            any::<u64>(),
            any::<u64>(),
            vec(
                (
                    any::<usize>(),
                    any::<String>(),
                    any::<u64>(),
                    any::<bool>(),
                    any::<u64>()
                ),
                0..4
            ),
            partitions()
        )
            .prop_map(|(attempt, checkpoint, adopted, ended_sources)| {
                CoordinatorMessage::AdoptPartitions {
                    attempt,
                    checkpoint,
                    partitions: adopted
                        .into_iter()
                        .map(
                            |(partition, state_file, source_offset, source_exhausted, source_records)| {
                                Adoption {
                                    partition,
                                    state_file,
                                    source_offset,
                                    source_exhausted,
                                    source_records,
                                }
                            },
                        )
                        .collect(),
                    ended_sources,
                }
            }),
        (
            any::<u64>(),
            any::<u64>(),
            vec((any::<usize>(), any::<String>()), 0..4)
        )
            .prop_map(
                |(attempt, checkpoint, preloads)| CoordinatorMessage::PreparePartitions {
                    attempt,
                    checkpoint,
                    partitions: preloads
                        .into_iter()
                        .map(|(partition, state_file)| Preload {
                            partition,
                            state_file
                        })
                        .collect(),
                }
            ),
    ]
}

fn client_request() -> impl Strategy<Value = ClientRequest> {
    prop_oneof![
        Just(ClientRequest::Status),
        (worker_id(), partitions())
            .prop_map(|(worker, partitions)| ClientRequest::Assign { worker, partitions }),
        Just(ClientRequest::Rebalance),
        worker_id().prop_map(|worker| ClientRequest::FailWorker { worker }),
        Just(ClientRequest::Checkpoint),
        Just(ClientRequest::StopJob),
        (
            job_spec(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<String>())
        )
            .prop_map(|(spec, checkpoint_interval_ms, from_savepoint)| {
                ClientRequest::SubmitJob(Box::new(crate::protocol::SubmitJob {
                    spec,
                    checkpoint_interval_ms,
                    from_savepoint,
                }))
            }),
        Just(ClientRequest::ListJobs),
        any::<String>().prop_map(|id| ClientRequest::CancelJob { id }),
        any::<String>().prop_map(|id| ClientRequest::StopSubmittedJob { id }),
    ]
}

fn job_entry() -> impl Strategy<Value = crate::protocol::JobEntry> {
    use crate::protocol::SubmittedJobState as S;
    let state = prop_oneof![
        Just(S::Starting),
        Just(S::Waiting),
        Just(S::Running),
        Just(S::Restarting),
        Just(S::Stopping),
        Just(S::Finished),
        Just(S::Failed),
        Just(S::Stopped),
        Just(S::Cancelled),
    ];
    (
        (
            any::<String>(),
            any::<String>(),
            state,
            proptest::option::of(any::<u16>()),
        ),
        (any::<u64>(), any::<u64>(), any::<u64>()),
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<String>()),
    )
        .prop_map(
            |(
                (id, name, state, master_port),
                (restarts, records_in, records_out),
                error,
                savepoint,
                output,
            )| {
                crate::protocol::JobEntry {
                    id,
                    name,
                    state,
                    master_port,
                    restarts,
                    records_in,
                    records_out,
                    error,
                    savepoint,
                    output,
                }
            },
        )
}

fn worker_state() -> impl Strategy<Value = WorkerState> {
    prop_oneof![
        Just(WorkerState::Active),
        Just(WorkerState::Disconnected),
        Just(WorkerState::Failed),
        Just(WorkerState::Leaving),
    ]
}

fn worker_status() -> impl Strategy<Value = WorkerStatus> {
    (
        worker_id(),
        any::<String>(),
        worker_state(),
        any::<bool>(),
        partitions(),
        any::<usize>(),
        any::<usize>(),
        any::<u64>(),
    )
        .prop_map(
            |(id, address, state, healthy, partitions, capacity, load, last_heartbeat_ms)| WorkerStatus {
                id,
                address,
                state,
                healthy,
                partitions,
                capacity,
                load,
                last_heartbeat_ms,
            },
        )
}

fn moving_partition() -> impl Strategy<Value = MovingPartition> {
    (
        any::<PartitionId>(),
        worker_id(),
        proptest::option::of(worker_id()),
    )
        .prop_map(|(partition, from, to)| MovingPartition { partition, from, to })
}

fn cluster_status() -> impl Strategy<Value = ClusterStatus> {
    (
        any::<String>(),
        generation(),
        any::<usize>(),
        any::<String>(),
        partitions(),
        vec(moving_partition(), 0..4),
        vec(worker_status(), 0..4),
    )
        .prop_map(
            |(cluster, generation, partitions, strategy, unassigned, moving, workers)| ClusterStatus {
                cluster,
                generation,
                partitions,
                strategy,
                unassigned,
                moving,
                workers,
                job: None,
                checkpoints: Some(CheckpointStatus {
                    completed: 2,
                    last_completed: Some(9),
                    last_duration_ms: None,
                    last_size_bytes: Some(10),
                    state_bytes: Some(12),
                    in_flight: Some(10),
                }),
            },
        )
}

fn client_response() -> impl Strategy<Value = ClientResponse> {
    let kind = prop_oneof![
        Just(ErrorKind::WorkerNotFound),
        Just(ErrorKind::InvalidPartition),
        Just(ErrorKind::RebalanceFailed),
        Just(ErrorKind::Other),
        Just(ErrorKind::Forbidden),
    ];
    prop_oneof![
        cluster_status().prop_map(|s| ClientResponse::Status(Box::new(s))),
        generation().prop_map(|generation| ClientResponse::Done { generation }),
        (kind, any::<String>()).prop_map(|(kind, message)| ClientResponse::Error { kind, message }),
        any::<u64>().prop_map(|id| ClientResponse::CheckpointTriggered { id }),
        proptest::option::of(any::<String>()).prop_map(|leader| ClientResponse::NotLeader { leader }),
        proptest::option::of(any::<u64>()).prop_map(|checkpoint| ClientResponse::Stopping { checkpoint }),
        any::<String>().prop_map(|id| ClientResponse::JobSubmitted { id }),
        proptest::collection::vec(job_entry(), 0..4).prop_map(ClientResponse::Jobs),
        any::<String>().prop_map(|id| ClientResponse::JobCancelled { id }),
        any::<String>().prop_map(|savepoint| ClientResponse::JobStopping { savepoint }),
    ]
}

fn hello() -> impl Strategy<Value = Hello> {
    let role = prop_oneof![Just(Role::Worker), Just(Role::Client)];
    (role, any::<String>()).prop_map(|(role, cluster)| Hello { role, cluster })
}

fn hello_reply() -> impl Strategy<Value = HelloReply> {
    prop_oneof![
        Just(HelloReply::Accepted),
        any::<String>().prop_map(|reason| HelloReply::Rejected { reason }),
    ]
}

/// A few messages of every type that crosses the wire.
#[derive(Clone, Debug)]
struct Batches {
    worker: Vec<WorkerMessage>,
    coordinator: Vec<CoordinatorMessage>,
    request: Vec<ClientRequest>,
    response: Vec<ClientResponse>,
    hello: Vec<Hello>,
    reply: Vec<HelloReply>,
    peer: Vec<PeerMessage>,
}

fn batches() -> impl Strategy<Value = Batches> {
    (
        vec(worker_message(), 0..4),
        vec(coordinator_message(), 0..4),
        vec(client_request(), 0..4),
        vec(client_response(), 0..3),
        vec(hello(), 0..3),
        vec(hello_reply(), 0..3),
        vec(peer_message(), 0..4),
    )
        .prop_map(
            |(worker, coordinator, request, response, hello, reply, peer)| Batches {
                worker,
                coordinator,
                request,
                response,
                hello,
                reply,
                peer,
            },
        )
}

/// Runs a check that is generic over the message type on each batch of `batches`.
macro_rules! for_each_type {
    ($batches:expr, $check:ident) => {{
        let b: &Batches = &$batches;
        $check(&b.worker);
        $check(&b.coordinator);
        $check(&b.request);
        $check(&b.response);
        $check(&b.hello);
        $check(&b.reply);
        $check(&b.peer);
    }};
}

/// Runs `$check::<T>($($arg),*)` for every type that crosses the wire.
macro_rules! for_each_decoded_type {
    ($check:ident($($arg:expr),*)) => {{
        $check::<WorkerMessage>($($arg),*);
        $check::<CoordinatorMessage>($($arg),*);
        $check::<ClientRequest>($($arg),*);
        $check::<ClientResponse>($($arg),*);
        $check::<Hello>($($arg),*);
        $check::<HelloReply>($($arg),*);
        $check::<PeerMessage>($($arg),*);
    }};
}

// ---------------------------------------------------------------------------------------------
// Checks, generic over the message type
// ---------------------------------------------------------------------------------------------

trait Message: Serialize + DeserializeOwned + Clone + PartialEq + Debug {}
impl<T: Serialize + DeserializeOwned + Clone + PartialEq + Debug> Message for T {}

fn codec_with<T>(max: usize) -> MessageCodec<T, T> {
    MessageCodec::new(max)
}

/// One frame holding `message`.
fn frame<T: Message>(message: &T) -> BytesMut {
    let mut buf = BytesMut::new();
    codec_with::<T>(MAX)
        .encode(message.clone(), &mut buf)
        .expect("a small message encodes");
    buf
}

fn round_trips<T: Message>(messages: &[T]) {
    let mut codec = codec_with::<T>(MAX);
    for message in messages {
        let mut buf = frame(message);
        let prefix = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        assert_eq!(
            prefix,
            buf.len() - 4,
            "the prefix is the body's length, big-endian"
        );
        assert_eq!(codec.decode(&mut buf).unwrap().as_ref(), Some(message));
        assert!(buf.is_empty());
    }
    // Several frames in one buffer.
    let mut buf = BytesMut::new();
    for message in messages {
        codec.encode(message.clone(), &mut buf).unwrap();
    }
    let mut decoded = Vec::new();
    while let Some(message) = codec.decode(&mut buf).unwrap() {
        decoded.push(message);
    }
    assert_eq!(decoded, messages);
    assert!(buf.is_empty());
    assert_eq!(codec.decode_eof(&mut buf).unwrap(), None, "a clean end");
}

/// Several frames fed one byte at a time: each decodes exactly when its last byte arrived.
fn byte_by_byte<T: Message>(messages: &[T]) {
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    for message in messages {
        bytes.extend_from_slice(&frame(message));
        ends.push(bytes.len());
    }
    let mut codec = codec_with::<T>(MAX);
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for (i, &byte) in bytes.iter().enumerate() {
        buf.put_u8(byte);
        while let Some(message) = codec.decode(&mut buf).unwrap() {
            decoded.push(message);
        }
        let complete = ends.iter().filter(|&&end| end <= i + 1).count();
        assert_eq!(
            decoded.len(),
            complete,
            "after {} of {} bytes",
            i + 1,
            bytes.len()
        );
    }
    assert_eq!(decoded, messages);
}

/// A frame cut in two anywhere: nothing until whole, then the message; the head alone at EOF is
/// `Truncated`.
fn split_anywhere<T: Message>(messages: &[T]) {
    let mut codec = codec_with::<T>(MAX);
    for message in messages {
        let bytes = frame(message);
        for cut in 0..=bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            if cut < bytes.len() {
                assert_eq!(codec.decode(&mut buf).unwrap(), None, "cut at {cut}");
                assert_eq!(&buf[..], &bytes[..cut], "an incomplete frame stays in the buffer");
                let at_eof = codec.decode_eof(&mut buf.clone());
                if cut == 0 {
                    assert_eq!(at_eof.unwrap(), None);
                } else {
                    assert!(
                        matches!(at_eof, Err(ProtocolError::Truncated)),
                        "cut at {cut}: {at_eof:?}"
                    );
                }
            }
            buf.extend_from_slice(&bytes[cut..]);
            assert_eq!(
                codec.decode(&mut buf).unwrap().as_ref(),
                Some(message),
                "cut at {cut}"
            );
            assert!(buf.is_empty());
        }
    }
}

/// A message of body size `n` passes a maximum of `n` and is refused, unwritten, below it; the
/// decoder draws the same line.
fn size_limit_is_exact<T: Message>(messages: &[T]) {
    for message in messages {
        let whole = frame(message);
        let n = whole.len() - 4;
        let mut buf = BytesMut::from(&b"already here"[..]);
        codec_with::<T>(n).encode(message.clone(), &mut buf).unwrap();
        assert_eq!(&buf[12..], &whole[..]);

        let mut buf = BytesMut::from(&b"already here"[..]);
        let err = codec_with::<T>(n - 1)
            .encode(message.clone(), &mut buf)
            .unwrap_err();
        assert!(
            matches!(err, ProtocolError::FrameTooLarge { size, max } if size == n && max == n - 1),
            "{err:?}"
        );
        assert_eq!(&buf[..], b"already here", "nothing written");

        let err = codec_with::<T>(n - 1).decode(&mut whole.clone()).unwrap_err();
        assert!(
            matches!(err, ProtocolError::FrameTooLarge { size, max } if size == n && max == n - 1),
            "{err:?}"
        );
    }
}

/// Arbitrary bytes: every call answers `Ok(Some)`, `Ok(None)` or `Err`, without panicking.
fn decode_garbage<T: DeserializeOwned>(bytes: &[u8], max: usize) {
    let mut codec = MessageCodec::<T, T>::new(max);
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
    let _ = codec.decode_eof(&mut BytesMut::from(bytes));
}

/// A complete frame whose body is arbitrary: a message or a `Decode` error, never "need more".
fn decode_random_body<T: DeserializeOwned>(body: &[u8]) {
    let mut buf = BytesMut::new();
    buf.put_u32(body.len() as u32);
    buf.extend_from_slice(body);
    match MessageCodec::<T, T>::new(MAX).decode(&mut buf) {
        Ok(Some(_)) => assert!(buf.is_empty(), "the whole frame is consumed"),
        Err(ProtocolError::Decode(_)) => {}
        other => panic!(
            "a complete frame gave {:?}",
            other.map(|m| m.map(|_| "a message"))
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_message_round_trips_alone_and_several_to_a_buffer(b in batches()) {
        for_each_type!(b, round_trips);
    }

    #[test]
    fn frames_fed_byte_by_byte_decode_exactly_when_complete(b in batches()) {
        for_each_type!(b, byte_by_byte);
    }

    #[test]
    fn a_frame_split_anywhere_decodes_once_whole_and_is_truncated_at_eof(b in batches()) {
        for_each_type!(b, split_anywhere);
    }

    #[test]
    fn the_maximum_frame_size_is_exact_on_both_sides(b in batches()) {
        for_each_type!(b, size_limit_is_exact);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic_the_decoder(
        bytes in vec(any::<u8>(), 0..256),
        max in prop_oneof![Just(MAX), 0usize..128],
    ) {
        for_each_decoded_type!(decode_garbage(&bytes, max));
    }

    #[test]
    fn random_bytes_behind_a_valid_prefix_never_panic_the_decoder(
        prefix in vec(any::<u8>(), 0..4),
        body in vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = ((prefix.len() + body.len()) as u32).to_be_bytes().to_vec();
        bytes.extend(prefix.iter().chain(&body));
        for_each_decoded_type!(decode_garbage(&bytes, MAX));
    }

    #[test]
    fn a_complete_frame_of_random_bytes_is_a_message_or_a_decode_error(body in vec(any::<u8>(), 0..64)) {
        for_each_decoded_type!(decode_random_body(&body));
    }

    #[test]
    fn a_length_above_the_maximum_is_refused_without_allocating(
        max in 0usize..(1 << 20),
        excess in 1u32..=u32::MAX,
        tail in vec(any::<u8>(), 0..16),
    ) {
        let size = (max as u64 + u64::from(excess)).min(u64::from(u32::MAX)) as usize;
        let mut buf = BytesMut::with_capacity(64);
        buf.put_u32(size as u32);
        buf.extend_from_slice(&tail);
        let capacity = buf.capacity();
        let mut codec = MessageCodec::<WorkerMessage, WorkerMessage>::new(max);
        let err = codec.decode(&mut buf).unwrap_err();
        prop_assert!(matches!(err, ProtocolError::FrameTooLarge { size: s, max: m } if s == size && m == max), "{:?}", err);
        prop_assert_eq!(buf.capacity(), capacity, "no room reserved for the announced frame");
        let err = codec.decode_eof(&mut buf).unwrap_err();
        prop_assert!(matches!(err, ProtocolError::FrameTooLarge { .. }), "{:?}", err);
    }
}

// ---------------------------------------------------------------------------------------------
// Golden cases
// ---------------------------------------------------------------------------------------------

#[test]
fn the_largest_length_prefix_is_refused_without_allocating() {
    let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
    let capacity = buf.capacity();
    let mut codec = MessageCodec::<CoordinatorMessage, CoordinatorMessage>::new(MAX);
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, ProtocolError::FrameTooLarge { size, max } if size == u32::MAX as usize && max == MAX),
        "{err:?}"
    );
    assert_eq!(buf.capacity(), capacity);
}

#[test]
fn encoding_a_message_above_the_maximum_is_refused() {
    let mut codec = MessageCodec::<CoordinatorMessage, CoordinatorMessage>::new(1024);
    let message = CoordinatorMessage::Shutdown {
        reason: "x".repeat(2000),
    };
    let mut buf = BytesMut::new();
    let err = codec.encode(message, &mut buf).unwrap_err();
    assert!(
        matches!(err, ProtocolError::FrameTooLarge { size, max: 1024 } if size > 2000),
        "{err:?}"
    );
    assert!(buf.is_empty());
}

#[test]
fn a_frame_cut_short_at_eof_is_truncated() {
    let message = WorkerMessage::Ack {
        generation: Generation(7),
        running: vec![1, 2, 3],
    };
    let bytes = frame(&message);
    let mut codec = MessageCodec::<WorkerMessage, WorkerMessage>::new(MAX);
    for cut in [1, 3, 4, bytes.len() - 1] {
        let err = codec.decode_eof(&mut BytesMut::from(&bytes[..cut])).unwrap_err();
        assert!(matches!(err, ProtocolError::Truncated), "cut at {cut}: {err:?}");
    }
    let mut whole = bytes.clone();
    assert_eq!(codec.decode_eof(&mut whole).unwrap(), Some(message));
    assert_eq!(codec.decode_eof(&mut whole).unwrap(), None);
}
