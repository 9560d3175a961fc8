//! The data plane against real TCP peers on loopback: admission, held messages, credits,
//! stalled frames.

use super::*;
use crate::protocol::PartitionOwner;
use crate::worker::exchange::CREDITS_PER_CHANNEL;

fn owner(worker: &str) -> PartitionOwner {
    PartitionOwner {
        worker: WorkerId::new(worker),
        address: "127.0.0.1:1".to_string(),
    }
}

/// w1's data plane in attempt 5: it owns partitions 0 and 2 of 4, w2 owns 1 and 3.
async fn w1_in_attempt_5() -> (DataPlane, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plane = DataPlane::start(listener, WorkerId::new("w1"), "test".into(), 1 << 20);
    plane.begin_attempt(5, &[owner("w1"), owner("w2"), owner("w1"), owner("w2")]);
    (plane, addr)
}

/// A data connection to `addr` introduced as worker `id`.
async fn peer(addr: std::net::SocketAddr, id: &str) -> Connection<PeerMessage, PeerMessage> {
    let hello = Hello {
        role: Role::Peer,
        cluster: "test".into(),
    };
    let mut connection = Transport::default().connect(addr, &hello).await.unwrap();
    connection
        .send(PeerMessage::Hello {
            worker: WorkerId::new(id),
        })
        .await
        .unwrap();
    connection
}

fn batch(attempt: u64, partition: u32) -> PeerMessage {
    PeerMessage::Batch {
        attempt,
        partition,
        from: 1,
        records: vec![0; 16],
    }
}

const LONG: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(300);

/// Whether the plane closes the connection `within` (it sends nothing else).
async fn closed(connection: &mut Connection<PeerMessage, PeerMessage>, within: Duration) -> bool {
    match tokio::time::timeout(within, connection.recv()).await {
        Ok(Ok(None) | Err(_)) => true,
        Ok(Ok(Some(other))) => panic!("unexpected {other:?}"),
        Err(_) => false,
    }
}

/// Polls `condition` until it holds or a deadline passes.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test]
async fn inboxes_exist_only_for_this_attempts_partitions_of_this_worker_from_its_members() {
    let (plane, addr) = w1_in_attempt_5().await;
    // A partition that does not exist, even from a member (whose next connection replaces
    // this one).
    let mut out_of_range = peer(addr, "w2").await;
    out_of_range.send(batch(5, 4)).await.unwrap();
    assert!(
        closed(&mut out_of_range, LONG).await,
        "a partition that does not exist"
    );
    // A member's records for one of our partitions make its inbox.
    let mut w2 = peer(addr, "w2").await;
    w2.send(batch(5, 0)).await.unwrap();
    assert!(eventually(|| plane.inbox_keys() == [(5, 0)]).await);
    // An older attempt is dropped; another worker's partition and a later attempt are
    // held: none makes an inbox.
    w2.send(batch(4, 2)).await.unwrap();
    w2.send(batch(6, 2)).await.unwrap();
    let mut stranger = peer(addr, "w9").await;
    stranger.send(batch(5, 2)).await.unwrap();
    assert!(
        closed(&mut stranger, LONG).await,
        "a non-member's records close its connection"
    );
    let mut w3 = peer(addr, "w3").await;
    w3.send(batch(7, 2)).await.unwrap();
    assert!(!closed(&mut w3, SHORT).await, "a later attempt is held");
    assert_eq!(plane.inbox_keys(), [(5, 0)]);
    // Attempt 6 starts here: w2's held batch goes in, attempt 5's inbox is gone.
    plane.begin_attempt(6, &[owner("w1"), owner("w2"), owner("w1"), owner("w2")]);
    assert!(eventually(|| plane.inbox_keys() == [(6, 2)]).await);
    // w3 owns nothing in attempt 7 either: its held batch closes it, without an inbox.
    plane.begin_attempt(7, &[owner("w1"), owner("w2"), owner("w1"), owner("w2")]);
    assert!(closed(&mut w3, LONG).await);
    assert!(plane.inbox_keys().is_empty());
}

#[tokio::test]
async fn a_partition_moving_here_takes_the_records_held_for_it() {
    let (plane, addr) = w1_in_attempt_5().await;
    let mut w2 = peer(addr, "w2").await;
    w2.send(batch(5, 1)).await.unwrap();
    assert!(!closed(&mut w2, SHORT).await, "held, not refused");
    assert!(plane.inbox_keys().is_empty());
    plane.own(5, 1);
    assert!(eventually(|| plane.inbox_keys() == [(5, 1)]).await);
    let mut inbox = plane.take_inbox(5, 1).unwrap();
    assert!(matches!(inbox.recv().await, Some(Inbound::Batch { from: 1, .. })));
}

#[tokio::test]
async fn a_sender_beyond_its_credits_is_disconnected() {
    let (plane, addr) = w1_in_attempt_5().await;
    let mut w2 = peer(addr, "w2").await;
    for _ in 0..CREDITS_PER_CHANNEL {
        w2.send(batch(5, 0)).await.unwrap();
    }
    let mut inbox = plane.take_inbox(5, 0).unwrap();
    // Applying one returns its credit: one more is within the grant.
    match inbox.recv().await {
        Some(Inbound::Batch { credit, .. }) => credit.release(),
        _ => panic!("expected a batch"),
    }
    match tokio::time::timeout(Duration::from_secs(5), w2.recv()).await {
        Ok(Ok(Some(PeerMessage::Credit {
            attempt: 5,
            partition: 0,
            from: 1,
            credits: 1,
        }))) => {}
        other => panic!("expected the credit back, got {other:?}"),
    }
    w2.send(batch(5, 0)).await.unwrap();
    assert!(!closed(&mut w2, SHORT).await, "within its credits");
    w2.send(batch(5, 0)).await.unwrap();
    assert!(closed(&mut w2, LONG).await, "one batch beyond its credits");
}

/// A raw data connection introduced as `id`, for writing partial frames.
async fn raw_peer(addr: std::net::SocketAddr, id: &str) -> tokio::net::TcpStream {
    use tokio_util::codec::Encoder;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let hello = Hello {
        role: Role::Peer,
        cluster: "test".into(),
    };
    crate::protocol::dial_handshake(&mut stream, &hello)
        .await
        .unwrap();
    let mut frame = bytes::BytesMut::new();
    crate::protocol::MessageCodec::<PeerMessage, ()>::new(1 << 20)
        .encode(
            PeerMessage::Hello {
                worker: WorkerId::new(id),
            },
            &mut frame,
        )
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, &frame)
        .await
        .unwrap();
    stream
}

/// Whether the plane closed `stream` (reads end) within `within`.
async fn raw_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, tokio::io::AsyncReadExt::read(stream, &mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_peer_stalled_in_the_middle_of_a_frame_is_closed_an_idle_one_is_not() {
    let (_plane, addr) = w1_in_attempt_5().await;
    let mut idle = raw_peer(addr, "w2").await;
    let mut stalled = raw_peer(addr, "w3").await;
    // A header announcing 64 KiB, ten bytes of it, then nothing.
    let mut partial = (64u32 * 1024).to_be_bytes().to_vec();
    partial.extend_from_slice(&[7; 10]);
    tokio::io::AsyncWriteExt::write_all(&mut stalled, &partial)
        .await
        .unwrap();
    assert!(raw_closed(&mut stalled, LONG).await, "stalled mid-frame");
    // By now the idle link has been idle for several stall periods.
    assert!(
        !raw_closed(&mut idle, STALLED_FRAME * 3).await,
        "idle between frames"
    );
}

#[tokio::test]
async fn credits_never_granted_close_the_connection() {
    let (_plane, addr) = w1_in_attempt_5().await;
    let mut w2 = peer(addr, "w2").await;
    w2.send(PeerMessage::Credit {
        attempt: 5,
        partition: 1,
        from: 0,
        credits: u32::MAX,
    })
    .await
    .unwrap();
    assert!(closed(&mut w2, LONG).await);
}

#[tokio::test]
async fn a_peer_that_cannot_be_reached_is_named_in_the_error() {
    let (plane, _) = w1_in_attempt_5().await;
    // Nothing listens there any more: the dial (w1 < w2, so w1 dials) is refused.
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = gone.local_addr().unwrap().to_string();
    drop(gone);
    let Err(error) = plane.connect(&WorkerId::new("w2"), &address).await else {
        panic!("a refused dial fails");
    };
    assert_eq!(error.lost_peer(), Some(&WorkerId::new("w2")), "{error}");
    assert!(error.to_string().contains("cannot reach worker w2"), "{error}");
}

#[tokio::test]
async fn a_link_closed_under_us_is_reported_and_a_replaced_one_or_a_shutdown_is_not() {
    let (plane, addr) = w1_in_attempt_5().await;
    let (to, mut reported) = tokio::sync::mpsc::unbounded_channel();
    plane.report_lost_peers(to);
    let w2 = WorkerId::new("w2");
    let w3 = WorkerId::new("w3");
    // w3 connects twice: the second connection replaces the first, which is no loss.
    let first = peer(addr, "w3").await;
    assert!(eventually(|| plane.live_link(&w3).is_some()).await);
    let first_link = plane.live_link(&w3).expect("w3's link");
    let _second = peer(addr, "w3").await;
    assert!(eventually(|| first_link.closed.is_cancelled()).await);
    drop(first);
    // w2 connects and goes away: reported.
    let gone = peer(addr, "w2").await;
    assert!(eventually(|| plane.live_link(&w2).is_some()).await);
    drop(gone);
    let report = tokio::time::timeout(LONG, reported.recv())
        .await
        .expect("a report");
    assert_eq!(report, Some(WorkerMessage::PeerUnreachable { peer: w2 }));
    // The worker stops: its links close without a report.
    plane.shutdown();
    assert!(
        tokio::time::timeout(SHORT, reported.recv()).await.is_err(),
        "nothing more"
    );
}
