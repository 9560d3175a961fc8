//! Accepting: the one path every inbound connection takes (coordinator, standby and data plane).
//! TLS first when configured, then the protocol handshake with the secrets, then what the peer
//! proved, for the caller's role checks.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::{NetStream, NetworkError};
use crate::protocol::{accept_handshake_with, refuse_handshake, Hello, ProtocolError, MAGIC};
use crate::security::{node_name_of, PeerCredentials, Security};

/// A connection that passed TLS and the handshake.
#[derive(Debug)]
pub struct Accepted {
    /// The stream, ready for framed messages.
    pub stream: NetStream,
    /// The peer's introduction.
    pub hello: Hello,
    /// What the peer proved.
    pub credentials: PeerCredentials,
}

/// Runs TLS (if `security` has it) and the handshake for `cluster` on an accepted socket. The
/// caller logs the error with the peer's address; the peer has been told as much as it may know.
pub async fn accept(tcp: TcpStream, security: &Security, cluster: &str) -> Result<Accepted, NetworkError> {
    let addr = tcp
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    // Before the handshakes, as the dialer does (see `Transport::connect`).
    let _ = tcp.set_nodelay(true);
    let mut stream = match security.tls() {
        None => NetStream::Plain(tcp),
        Some(tls) => {
            let mut first = [0u8; 4];
            if matches!(tcp.peek(&mut first).await, Ok(4)) && first == MAGIC {
                // A plaintext dialer: tell it in its own protocol, then close.
                let mut plain = tcp;
                let reason = "this listener requires TLS (--tls-cert, --tls-key, --tls-ca)";
                let _ = refuse_handshake(&mut plain, reason).await;
                return Err(NetworkError::Tls {
                    addr,
                    reason: "a plaintext peer reached this TLS listener".to_string(),
                });
            }
            tls.accept(tcp).await.map_err(|e| NetworkError::Tls {
                addr,
                reason: e.to_string(),
            })?
        }
    };
    let certificate_name = stream
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(node_name_of);
    let who = match accept_handshake_with(&mut stream, cluster, &security.listener_keys()).await {
        Ok(who) => who,
        Err(ProtocolError::NotOurProtocol { got }) if got[0] == 0x16 && got[1] == 3 => {
            // A TLS ClientHello: the peer has TLS configured and this listener does not.
            return Err(NetworkError::Tls {
                addr,
                reason: "a TLS peer reached this plaintext listener".to_string(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Accepted {
        stream,
        hello: who.hello,
        credentials: PeerCredentials {
            key: who.key,
            certificate_name,
        },
    })
}
