//! TLS through the one accept path, over loopback: the peer's name comes from its certificate;
//! a plaintext dialer, a dialer of another CA and a TLS dialer against a plaintext listener are
//! refused with errors that say so on both sides.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::test_certs::{make, node};
use super::*;
use crate::network::{accept, Accepted, ConnectionPool, NetworkError, Transport};
use crate::protocol::{ClientRequest, ClientResponse, Hello, ProtocolError};

fn hello() -> Hello {
    Hello {
        role: Role::Client,
        cluster: "c".into(),
    }
}

/// A listener accepting one connection under `security`; the outcome of its accept.
async fn listen_once(
    security: Security,
) -> (
    SocketAddr,
    tokio::task::JoinHandle<Result<Accepted, NetworkError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        accept(tcp, &security, "c").await
    });
    (addr, task)
}

async fn dial(addr: SocketAddr, security: Security) -> Result<(), NetworkError> {
    let transport = Transport::new(ConnectionPool::new()).with_security(security);
    transport
        .connect::<ClientRequest, ClientResponse>(addr, &hello())
        .await
        .map(drop)
}

#[tokio::test]
async fn the_listener_learns_the_dialers_name_from_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), &["coordinator", "w1"]);
    let (addr, accepted) = listen_once(node(dir.path(), "coordinator")).await;
    dial(addr, node(dir.path(), "w1")).await.unwrap();
    let accepted = accepted.await.unwrap().unwrap();
    assert_eq!(accepted.credentials.certificate_name.as_deref(), Some("w1"));
    assert_eq!(accepted.hello, hello());
    let tls = node(dir.path(), "w1");
    assert!(accepted.credentials.may_be_worker(&tls, "w1").is_ok());
    assert!(accepted.credentials.may_be_worker(&tls, "w2").is_err());
    assert!(
        !accepted.credentials.is_admin(&tls),
        "TLS on: only the admin certificate is admin"
    );
}

#[tokio::test]
async fn a_plaintext_dialer_is_told_the_listener_requires_tls() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), &["coordinator"]);
    let (addr, accepted) = listen_once(node(dir.path(), "coordinator")).await;
    let err = dial(addr, Security::none()).await.unwrap_err();
    assert!(
        matches!(&err, NetworkError::Protocol(ProtocolError::Rejected(r)) if r.contains("requires TLS")),
        "{err}"
    );
    assert!(err.is_refusal());
    let err = accepted.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("plaintext peer"), "{err}");
}

#[tokio::test]
async fn a_tls_dialer_against_a_plaintext_listener_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), &["w1"]);
    let (addr, accepted) = listen_once(Security::none()).await;
    let err = dial(addr, node(dir.path(), "w1")).await.unwrap_err();
    assert!(matches!(err, NetworkError::Tls { .. }), "{err}");
    let err = accepted.await.unwrap().unwrap_err();
    assert!(
        err.to_string()
            .contains("TLS peer reached this plaintext listener"),
        "{err}"
    );
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_refused_on_both_sides() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    make(ours.path(), &["coordinator"]);
    make(theirs.path(), &["w1"]);
    let (addr, accepted) = listen_once(node(ours.path(), "coordinator")).await;
    let err = dial(addr, node(theirs.path(), "w1")).await.unwrap_err();
    assert!(matches!(err, NetworkError::Tls { .. }), "{err}");
    assert!(err.is_refusal(), "{err}");
    assert!(accepted.await.unwrap().is_err());
}

#[tokio::test]
async fn tls_and_a_secret_together() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), &["coordinator", "admin"]);
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "both-tls-and-a-secret-here").unwrap();
    let load = |name: &str| {
        Security::load(&SecurityFiles {
            secret_file: Some(secret.clone()),
            tls_cert: Some(dir.path().join(format!("{name}.pem"))),
            tls_key: Some(dir.path().join(format!("{name}-key.pem"))),
            tls_ca: Some(dir.path().join("ca.pem")),
            ..Default::default()
        })
        .unwrap()
    };
    let coordinator = load("coordinator");
    let (addr, accepted) = listen_once(coordinator.clone()).await;
    dial(addr, load("admin")).await.unwrap();
    let credentials = accepted.await.unwrap().unwrap().credentials;
    assert_eq!(credentials.key, Some(KeyKind::Cluster));
    assert!(credentials.is_admin(&coordinator), "the admin certificate");
    // The certificate without the secret is not enough.
    let (addr, _accepted) = listen_once(coordinator).await;
    let err = dial(addr, node(dir.path(), "admin")).await.unwrap_err();
    assert!(err.is_refusal(), "{err}");
}
