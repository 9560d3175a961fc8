//! The versioned handshake that opens every connection: magic bytes, protocol version, the
//! dialer's role and the cluster name, and (with a shared secret) a mutual challenge-response.
//! The listener answers with its own magic and version and then accepts, challenges or rejects
//! with a reason, so a mismatched peer learns why it was turned away. The decisions are in
//! [`super::auth`]; this module moves its messages over a stream.

use bytes::BytesMut;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use super::auth::HelloReply;
use super::auth::{
    Authenticated, DialerHandshake, DialerMessage, DialerStep, KeyKind, ListenerHandshake, ListenerKeys,
    ListenerStep, Nonce, SecretKey,
};
use super::codec::{decode_frame, encode_frame};
use super::ProtocolError;

/// The first four bytes of every connection.
pub const MAGIC: [u8; 4] = *b"SWDP";
/// The protocol version this build speaks. Peers must speak the same one.
pub const PROTOCOL_VERSION: u16 = 11;

/// Handshakes are tiny; a larger frame at this stage is not our protocol.
const MAX_HANDSHAKE_FRAME: usize = 4096;

/// What the dialer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A worker: registers, heartbeats, receives assignments.
    Worker,
    /// An admin client: status, assign, rebalance.
    Client,
    /// Another worker, for the data plane.
    Peer,
}

/// The dialer's introduction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The dialer's role.
    pub role: Role,
    /// The cluster the dialer means to join; a coordinator of another cluster rejects it.
    pub cluster: String,
}

/// Fresh random bytes for one handshake.
pub(crate) fn fresh_nonce() -> Result<Nonce, ProtocolError> {
    crate::security::random_bytes()
        .ok_or_else(|| ProtocolError::Io(std::io::Error::other("the system random source failed")))
}

/// Runs the dialer's side of the handshake on a fresh stream, without a secret.
pub async fn dial_handshake<S>(stream: &mut S, hello: &Hello) -> Result<(), ProtocolError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    dial_handshake_with(stream, hello, None).await
}

/// Runs the dialer's side, proving `secret` (of the given kind) when one is given.
pub async fn dial_handshake_with<S>(
    stream: &mut S,
    hello: &Hello,
    secret: Option<(KeyKind, SecretKey)>,
) -> Result<(), ProtocolError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut machine, intro) = DialerHandshake::new(hello.clone(), secret, fresh_nonce()?);
    write_preamble(stream).await?;
    write_frame(stream, &intro).await?;
    stream.flush().await?;
    read_preamble(stream).await?;
    loop {
        let reply: HelloReply = read_frame(stream).await?;
        match machine.on_reply(reply)? {
            DialerStep::Done => return Ok(()),
            DialerStep::Send(message) => {
                write_frame(stream, &message).await?;
                stream.flush().await?;
            }
        }
    }
}

/// Runs the listener's side of the handshake without secrets; returns the dialer's [`Hello`]
/// when it is accepted. On a version or cluster mismatch the dialer is told why before the
/// error returns.
pub async fn accept_handshake<S>(stream: &mut S, cluster: &str) -> Result<Hello, ProtocolError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Ok(accept_handshake_with(stream, cluster, &ListenerKeys::default())
        .await?
        .hello)
}

/// Runs the listener's side, requiring the secrets in `keys`; returns who was accepted.
pub async fn accept_handshake_with<S>(
    stream: &mut S,
    cluster: &str,
    keys: &ListenerKeys,
) -> Result<Authenticated, ProtocolError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match read_preamble(stream).await {
        Ok(()) => {}
        Err(ProtocolError::VersionMismatch { ours, theirs }) => {
            write_preamble(stream).await?;
            let reason =
                format!("protocol version {theirs} is not supported (this coordinator speaks {ours})");
            reject(stream, reason).await?;
            return Err(ProtocolError::VersionMismatch { ours, theirs });
        }
        Err(e) => return Err(e),
    }
    write_preamble(stream).await?;
    let mut machine = ListenerHandshake::new(cluster, keys.clone(), fresh_nonce()?);
    let mut challenged = false;
    loop {
        let message: DialerMessage = match read_frame(stream).await {
            Ok(message) => message,
            // The dialer checks our proof first and hangs up when it does not hold our secret.
            Err(ProtocolError::Closed) if challenged => {
                return Err(ProtocolError::Unauthenticated(
                    "the peer hung up after the challenge: it does not hold this secret".into(),
                ))
            }
            Err(e) => return Err(e),
        };
        match machine.on_message(message) {
            ListenerStep::Continue(reply) => {
                challenged = true;
                write_frame(stream, &reply).await?;
                stream.flush().await?;
            }
            ListenerStep::Accept(reply, who) => {
                write_frame(stream, &reply).await?;
                stream.flush().await?;
                return Ok(who);
            }
            ListenerStep::Refuse(reply, error) => {
                write_frame(stream, &reply).await?;
                stream.flush().await?;
                return Err(error);
            }
        }
    }
}

/// Reads a dialer's preamble and introduction and answers with a rejection: for a plaintext
/// dialer that reached a TLS listener, so it learns why instead of seeing the socket close.
pub(crate) async fn refuse_handshake<S>(stream: &mut S, reason: &str) -> Result<(), ProtocolError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    read_preamble(stream).await?;
    write_preamble(stream).await?;
    let _intro: DialerMessage = read_frame(stream).await?;
    reject(stream, reason.to_string()).await
}

/// Decodes one whole handshake frame (length prefix and body) from `bytes`; bytes after the
/// frame are an error, as is a frame above the handshake's size limit.
pub(crate) fn decode_handshake_frame<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtocolError> {
    let mut buf = BytesMut::from(bytes);
    let item = decode_frame(MAX_HANDSHAKE_FRAME, &mut buf)?.ok_or(ProtocolError::Truncated)?;
    if !buf.is_empty() {
        return Err(ProtocolError::Decode(format!(
            "{} bytes after the frame",
            buf.len()
        )));
    }
    Ok(item)
}

async fn reject<S: AsyncWrite + Unpin>(stream: &mut S, reason: String) -> Result<(), ProtocolError> {
    write_frame(stream, &HelloReply::Rejected { reason }).await?;
    stream.flush().await?;
    Ok(())
}

async fn write_preamble<S: AsyncWrite + Unpin>(stream: &mut S) -> Result<(), ProtocolError> {
    let mut preamble = [0u8; 6];
    preamble[..4].copy_from_slice(&MAGIC);
    preamble[4..].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    stream.write_all(&preamble).await?;
    Ok(())
}

async fn read_preamble<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(), ProtocolError> {
    let mut preamble = [0u8; 6];
    read_exact(stream, &mut preamble).await?;
    let got = [preamble[0], preamble[1], preamble[2], preamble[3]];
    if got != MAGIC {
        return Err(ProtocolError::NotOurProtocol { got });
    }
    let theirs = u16::from_be_bytes([preamble[4], preamble[5]]);
    if theirs != PROTOCOL_VERSION {
        return Err(ProtocolError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs,
        });
    }
    Ok(())
}

async fn write_frame<S: AsyncWrite + Unpin, T: Serialize>(
    stream: &mut S,
    item: &T,
) -> Result<(), ProtocolError> {
    let mut buf = BytesMut::new();
    encode_frame(item, MAX_HANDSHAKE_FRAME, &mut buf)?;
    stream.write_all(&buf).await?;
    Ok(())
}

async fn read_frame<S: AsyncRead + Unpin, T: DeserializeOwned>(stream: &mut S) -> Result<T, ProtocolError> {
    let mut len = [0u8; 4];
    read_exact(stream, &mut len).await?;
    let size = u32::from_be_bytes(len) as usize;
    if size > MAX_HANDSHAKE_FRAME {
        return Err(ProtocolError::FrameTooLarge {
            size,
            max: MAX_HANDSHAKE_FRAME,
        });
    }
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.extend_from_slice(&len);
    buf.resize(4 + size, 0);
    read_exact(stream, &mut buf[4..]).await?;
    decode_frame(MAX_HANDSHAKE_FRAME, &mut buf)?.ok_or(ProtocolError::Truncated)
}

async fn read_exact<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> Result<(), ProtocolError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ProtocolError::Closed),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(cluster: &str) -> Hello {
        Hello {
            role: Role::Worker,
            cluster: cluster.to_string(),
        }
    }

    #[tokio::test]
    async fn matching_peers_shake_hands() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let h = hello("c");
        let (dial, accept) = tokio::join!(dial_handshake(&mut a, &h), accept_handshake(&mut b, "c"));
        dial.unwrap();
        assert_eq!(accept.unwrap(), hello("c"));
    }

    #[tokio::test]
    async fn cluster_mismatch_is_rejected_with_reason_on_both_sides() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let h = hello("x");
        let (dial, accept) = tokio::join!(dial_handshake(&mut a, &h), accept_handshake(&mut b, "c"));
        match dial {
            Err(ProtocolError::Rejected(reason)) => {
                assert!(reason.contains("cluster name mismatch"), "{reason}")
            }
            other => panic!("expected rejection, got {other:?}"),
        }
        assert!(matches!(accept, Err(ProtocolError::Rejected(_))));
    }

    #[tokio::test]
    async fn other_version_is_told_and_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let accept = tokio::spawn(async move { accept_handshake(&mut b, "c").await });
        let mut preamble = MAGIC.to_vec();
        preamble.extend_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
        a.write_all(&preamble).await.unwrap();
        let err = accept.await.unwrap().unwrap_err();
        assert!(
            matches!(err, ProtocolError::VersionMismatch { theirs, .. } if theirs == PROTOCOL_VERSION + 1)
        );
        // The dialer receives our preamble and a rejection naming the versions.
        read_preamble(&mut a).await.unwrap();
        match read_frame::<_, HelloReply>(&mut a).await.unwrap() {
            HelloReply::Rejected { reason } => assert!(reason.contains("not supported"), "{reason}"),
            other => panic!("expected a rejection of a wrong version, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn http_request_is_not_our_protocol() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let err = accept_handshake(&mut b, "c").await.unwrap_err();
        assert!(matches!(err, ProtocolError::NotOurProtocol { got } if &got == b"GET "));
    }

    #[tokio::test]
    async fn dialing_something_else_is_an_error() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        b.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await.unwrap();
        let err = dial_handshake(&mut a, &hello("c")).await.unwrap_err();
        assert!(matches!(err, ProtocolError::NotOurProtocol { .. }));
    }

    #[tokio::test]
    async fn early_close_is_closed_not_panic() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&MAGIC[..2]).await.unwrap();
        drop(a);
        assert!(matches!(
            accept_handshake(&mut b, "c").await,
            Err(ProtocolError::Closed)
        ));
    }
}
