//! The coordinator's listener under connections that never finish: a bounded number is taken
//! at once, and an admin connection that asks nothing is closed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::commands::Command;
use super::server::{accept_loop, Shared};
use crate::network::{ConnectionPool, Transport};
use crate::protocol::{ClientRequest, ClientResponse, Hello, Role, DEFAULT_MAX_FRAME_SIZE};

/// A listener with no actor behind it (nothing here reaches one), for `max_workers` workers.
async fn listen(max_workers: usize) -> (SocketAddr, CancellationToken, mpsc::Receiver<Command>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (commands, inbox) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let shared = Shared::new(commands, "default", DEFAULT_MAX_FRAME_SIZE, shutdown.clone());
    let tracker = TaskTracker::new();
    tokio::spawn(accept_loop(listener, shared, tracker, max_workers));
    (addr, shutdown, inbox)
}

async fn admin(
    addr: SocketAddr,
    within: Duration,
) -> Option<crate::network::Connection<ClientRequest, ClientResponse>> {
    let hello = Hello {
        role: Role::Client,
        cluster: "default".into(),
    };
    let transport = Transport::new(ConnectionPool::new().with_timeout(within));
    transport.connect(addr, &hello).await.ok()
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    // One worker: 65 connections at once.
    let (addr, shutdown, _inbox) = listen(1).await;
    let mut stalled = Vec::new();
    for _ in 0..65 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // Half a preamble, then nothing: each holds a slot until its handshake times out.
        stream.write_all(b"SW").await.unwrap();
        stalled.push(stream);
    }
    assert!(
        admin(addr, Duration::from_millis(500)).await.is_none(),
        "a 66th connection is not served while 65 are open"
    );
    // One of them leaves: its slot goes to the next connection.
    drop(stalled.pop());
    assert!(admin(addr, Duration::from_secs(3)).await.is_some());
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_admin_connection_without_requests_is_closed() {
    let (addr, shutdown, _inbox) = listen(1).await;
    let connection = admin(addr, Duration::from_secs(3)).await.unwrap();
    let (mut reader, _writer) = connection.split();
    // Paused time jumps to the idle deadline once nothing else is pending.
    let closed = tokio::time::timeout(Duration::from_secs(60), reader.recv()).await;
    assert!(matches!(closed, Ok(Ok(None))), "{closed:?}");
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_client_idle_past_the_admin_timeout_connects_again_for_its_next_request() {
    let (addr, shutdown, mut inbox) = listen(1).await;
    let mut client = crate::Client::connect(addr, "default").await.unwrap();
    // Paused time jumps past the coordinator's idle deadline: it closes the connection.
    tokio::time::sleep(Duration::from_secs(45)).await;
    let asked = tokio::spawn(async move { client.status().await });
    let command = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await;
    assert!(
        matches!(command, Ok(Some(Command::Admin { .. }))),
        "the request after the close reached the coordinator"
    );
    // The reply is dropped with the command: the request fails, but was not lost on the way.
    drop(command);
    assert!(asked.await.unwrap().is_err());
    shutdown.cancel();
}
