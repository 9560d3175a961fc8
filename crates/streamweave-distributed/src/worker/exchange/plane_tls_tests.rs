//! The data plane with TLS: a peer whose certificate names another worker than its `Hello`
//! cannot replace that worker's link.

use super::*;
use crate::security::test_certs::{make, node};

async fn introduce(
    addr: std::net::SocketAddr,
    security: Security,
    id: &str,
) -> Connection<PeerMessage, PeerMessage> {
    let hello = Hello {
        role: Role::Peer,
        cluster: "test".into(),
    };
    let transport = Transport::new(ConnectionPool::new()).with_security(security);
    let mut connection = transport.connect(addr, &hello).await.unwrap();
    connection
        .send(PeerMessage::Hello {
            worker: WorkerId::new(id),
        })
        .await
        .unwrap();
    connection
}

#[tokio::test]
async fn a_peer_claiming_another_workers_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), &["w1", "w2", "w3"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plane = DataPlane::start_secured(
        listener,
        WorkerId::new("w3"),
        "test".into(),
        1 << 20,
        node(dir.path(), "w3"),
    );
    // w2's certificate, introduced as w1: closed, no link for w1.
    let mut impostor = introduce(addr, node(dir.path(), "w2"), "w1").await;
    let closed = tokio::time::timeout(Duration::from_secs(5), impostor.recv()).await;
    assert!(
        matches!(closed, Ok(Ok(None) | Err(_))),
        "the impostor's connection stayed open"
    );
    assert!(plane.live_link(&WorkerId::new("w1")).is_none());
    // w2's certificate introduced as w2: the link is made.
    let _real = introduce(addr, node(dir.path(), "w2"), "w2").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while plane.live_link(&WorkerId::new("w2")).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "w2's link never came up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    plane.shutdown();
}
