//! The handshake's decision logic, without sockets: what each side sends next and whether it
//! accepts. [`super::handshake`] runs it over a stream.
//!
//! With a shared secret the handshake is a mutual challenge-response:
//!
//! ```text
//!  dialer                                            listener
//!    | -- Intro { hello, offer: (key, nonce_d) } -->   |  no offer but a secret here: Rejected
//!    | <-- Challenge { nonce_l, mac_l } ------------   |  mac_l = HMAC(k, "listener" | transcript)
//!    |  dialer checks mac_l (the listener knows k)     |
//!    | -- Proof { mac_d } ------------------------->   |  mac_d = HMAC(k, "dialer" | transcript)
//!    | <-- Accepted | Rejected ----------------------  |  checked in constant time
//! ```
//!
//! The transcript is the role, the cluster name, which key is used and both nonces, so a proof
//! is good for one connection only: a recorded `Proof` replayed to a fresh listener meets a new
//! `nonce_l` and fails. The two sides' MACs carry different labels, so a listener's MAC can never
//! be reflected back as a dialer's. The secret itself never crosses the wire. Without secrets on
//! either side, the listener answers the intro with `Accepted` at once.
//!
//! Refusals say what the peer got wrong in general terms ("authentication failed"), never the
//! listener's cluster name or which of its checks failed.

use ring::hmac;
use serde::{Deserialize, Serialize};

use super::handshake::{Hello, Role};
use super::ProtocolError;

/// Nonce length in bytes (256 bits: a repeat is never expected).
pub const NONCE_LEN: usize = 32;
/// A random value chosen by one side for one handshake.
pub type Nonce = [u8; NONCE_LEN];
/// An HMAC-SHA256 tag.
pub type Mac = [u8; 32];

/// Which secret a dialer proves it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    /// The cluster secret: workers, peers and read-only clients.
    Cluster,
    /// The admin secret: clients that may change the cluster (assign, rebalance, ...).
    Admin,
}

/// A dialer's offer to authenticate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The secret the dialer will prove.
    pub key: KeyKind,
    /// The dialer's nonce.
    pub nonce: Nonce,
}

/// What a dialer sends during the handshake (after the preamble).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DialerMessage {
    /// The introduction: who, for which cluster, and an offer when the dialer has a secret.
    Intro {
        /// Role and cluster.
        hello: Hello,
        /// Present when the dialer holds a secret.
        offer: Option<Offer>,
    },
    /// The dialer's answer to a [`HelloReply::Challenge`].
    Proof {
        /// HMAC over the transcript with the dialer's label.
        mac: Mac,
    },
}

/// What a listener answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Go ahead.
    Accepted,
    /// Refused, with a reason that names nothing of the listener's; the listener closes.
    Rejected {
        /// Why.
        reason: String,
    },
    /// Prove you know the secret; here is proof that the listener does.
    Challenge {
        /// The listener's nonce.
        nonce: Nonce,
        /// HMAC over the transcript with the listener's label.
        mac: Mac,
    },
}

/// A shared secret, ready to sign with. Its `Debug` output does not show it.
#[derive(Clone)]
pub struct SecretKey(hmac::Key);

impl SecretKey {
    /// Shortest secret accepted, in bytes.
    pub const MIN_LEN: usize = 16;

    /// A key from the secret's bytes; `None` when shorter than [`Self::MIN_LEN`].
    pub fn new(secret: &[u8]) -> Option<Self> {
        (secret.len() >= Self::MIN_LEN).then(|| SecretKey(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// The secrets a listener checks dialers against.
#[derive(Clone, Debug, Default)]
pub struct ListenerKeys {
    /// Required of every dialer when set.
    pub cluster: Option<SecretKey>,
    /// Accepted from clients that offer [`KeyKind::Admin`]; they get admin rights.
    pub admin: Option<SecretKey>,
}

impl ListenerKeys {
    fn key(&self, kind: KeyKind) -> Option<&SecretKey> {
        match kind {
            KeyKind::Cluster => self.cluster.as_ref(),
            KeyKind::Admin => self.admin.as_ref(),
        }
    }
}

/// Which side computes a MAC: the label keeps one side's MAC from passing as the other's.
#[derive(Clone, Copy)]
enum Side {
    Dialer,
    Listener,
}

fn transcript(side: Side, hello: &Hello, key: KeyKind, dialer: &Nonce, listener: &Nonce) -> Vec<u8> {
    let mut t = Vec::with_capacity(32 + hello.cluster.len() + 2 * NONCE_LEN);
    t.extend_from_slice(b"swd-auth-v1\0");
    t.extend_from_slice(match side {
        Side::Dialer => b"dialer\0\0",
        Side::Listener => b"listener",
    });
    t.push(match hello.role {
        Role::Worker => 1,
        Role::Client => 2,
        Role::Peer => 3,
    });
    t.push(match key {
        KeyKind::Cluster => 1,
        KeyKind::Admin => 2,
    });
    // Length-prefixed so that no two (cluster, nonces) pairs give the same bytes.
    t.extend_from_slice(&(hello.cluster.len() as u64).to_be_bytes());
    t.extend_from_slice(hello.cluster.as_bytes());
    t.extend_from_slice(dialer);
    t.extend_from_slice(listener);
    t
}

fn sign(key: &SecretKey, data: &[u8]) -> Mac {
    let tag = hmac::sign(&key.0, data);
    let mut mac = [0u8; 32];
    mac.copy_from_slice(tag.as_ref());
    mac
}

/// Constant-time check (ring compares tags without early exit).
fn verify(key: &SecretKey, data: &[u8], mac: &Mac) -> bool {
    hmac::verify(&key.0, data, mac).is_ok()
}

/// The reason every failed proof gets: the same whatever was wrong.
pub const AUTH_FAILED: &str = "authentication failed";

/// The dialer's side. Create it with [`DialerHandshake::new`], send its intro, then feed it the
/// listener's replies.
#[derive(Debug)]
pub struct DialerHandshake {
    hello: Hello,
    secret: Option<(KeyKind, SecretKey, Nonce)>,
    challenged: bool,
}

/// What the dialer does after a reply.
#[derive(Debug, PartialEq, Eq)]
pub enum DialerStep {
    /// Send this and wait for the listener's verdict.
    Send(DialerMessage),
    /// The listener accepted: the connection is open.
    Done,
}

impl DialerHandshake {
    /// A dialer introducing itself with `hello`, proving `secret` (with its kind) when given,
    /// using `nonce` (fresh random bytes for every connection). Returns the intro to send.
    pub fn new(hello: Hello, secret: Option<(KeyKind, SecretKey)>, nonce: Nonce) -> (Self, DialerMessage) {
        let offer = secret.as_ref().map(|(key, _)| Offer { key: *key, nonce });
        let intro = DialerMessage::Intro {
            hello: hello.clone(),
            offer,
        };
        let secret = secret.map(|(kind, key)| (kind, key, nonce));
        (
            DialerHandshake {
                hello,
                secret,
                challenged: false,
            },
            intro,
        )
    }

    /// Takes the listener's reply.
    pub fn on_reply(&mut self, reply: HelloReply) -> Result<DialerStep, ProtocolError> {
        match reply {
            HelloReply::Rejected { reason } => Err(ProtocolError::Rejected(reason)),
            HelloReply::Accepted if self.secret.is_some() && !self.challenged => {
                // A listener that skips the challenge proves nothing: it may be an impostor.
                Err(ProtocolError::Unauthenticated(
                    "the listener accepted without a secret; it is not configured with one".into(),
                ))
            }
            HelloReply::Accepted => Ok(DialerStep::Done),
            HelloReply::Challenge { .. } if self.challenged => Err(ProtocolError::Unauthenticated(
                "the listener challenged twice".into(),
            )),
            HelloReply::Challenge { nonce, mac } => {
                let Some((kind, key, ours)) = &self.secret else {
                    return Err(ProtocolError::Unauthenticated(
                        "the listener requires a shared secret (--secret-file)".into(),
                    ));
                };
                self.challenged = true;
                if !verify(
                    key,
                    &transcript(Side::Listener, &self.hello, *kind, ours, &nonce),
                    &mac,
                ) {
                    return Err(ProtocolError::Unauthenticated(
                        "the listener could not prove it knows the secret".into(),
                    ));
                }
                let mac = sign(key, &transcript(Side::Dialer, &self.hello, *kind, ours, &nonce));
                Ok(DialerStep::Send(DialerMessage::Proof { mac }))
            }
        }
    }
}

/// Who the listener accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The dialer's introduction.
    pub hello: Hello,
    /// The secret it proved, if any.
    pub key: Option<KeyKind>,
}

/// What the listener does after a dialer message.
#[derive(Debug)]
pub enum ListenerStep {
    /// Send this reply and wait for the dialer's proof.
    Continue(HelloReply),
    /// Send this reply (`Accepted`): the connection is open.
    Accept(HelloReply, Authenticated),
    /// Send this reply (`Rejected`) and close; the error is for the listener's log.
    Refuse(HelloReply, ProtocolError),
}

/// The listener's side: feed it the dialer's messages in order.
#[derive(Debug)]
pub struct ListenerHandshake {
    cluster: String,
    keys: ListenerKeys,
    nonce: Nonce,
    pending: Option<(Hello, KeyKind, Nonce)>,
}

fn refuse(public: &str, log: String) -> ListenerStep {
    ListenerStep::Refuse(
        HelloReply::Rejected {
            reason: public.to_string(),
        },
        ProtocolError::Unauthenticated(log),
    )
}

impl ListenerHandshake {
    /// A listener for `cluster` checking against `keys`, with its own fresh `nonce`.
    pub fn new(cluster: &str, keys: ListenerKeys, nonce: Nonce) -> Self {
        ListenerHandshake {
            cluster: cluster.to_string(),
            keys,
            nonce,
            pending: None,
        }
    }

    /// Takes one dialer message.
    pub fn on_message(&mut self, message: DialerMessage) -> ListenerStep {
        match (message, self.pending.take()) {
            (DialerMessage::Intro { hello, offer }, None) => self.on_intro(hello, offer),
            (DialerMessage::Proof { mac }, Some((hello, kind, theirs))) => {
                let Some(key) = self.keys.key(kind) else {
                    return refuse(AUTH_FAILED, "no key for the offered kind".into());
                };
                let t = transcript(Side::Dialer, &hello, kind, &theirs, &self.nonce);
                if verify(key, &t, &mac) {
                    let who = Authenticated {
                        hello,
                        key: Some(kind),
                    };
                    ListenerStep::Accept(HelloReply::Accepted, who)
                } else {
                    refuse(AUTH_FAILED, format!("wrong proof for the {kind:?} secret"))
                }
            }
            (DialerMessage::Intro { .. }, Some(_)) => refuse(AUTH_FAILED, "a second intro".into()),
            (DialerMessage::Proof { .. }, None) => refuse(AUTH_FAILED, "a proof without a challenge".into()),
        }
    }

    fn on_intro(&mut self, hello: Hello, offer: Option<Offer>) -> ListenerStep {
        if hello.cluster != self.cluster {
            // Name only what the peer sent: the listener's own cluster name stays private.
            let reason = format!(
                "cluster name mismatch: this listener does not serve {:?}",
                hello.cluster
            );
            return ListenerStep::Refuse(
                HelloReply::Rejected { reason },
                ProtocolError::Rejected(format!(
                    "cluster name mismatch: peer asked for {:?}",
                    hello.cluster
                )),
            );
        }
        let Some(offer) = offer else {
            if self.keys.cluster.is_some() {
                return refuse(
                    "authentication required: this listener needs the cluster secret (--secret-file)",
                    "the peer offered no secret".into(),
                );
            }
            let who = Authenticated { hello, key: None };
            return ListenerStep::Accept(HelloReply::Accepted, who);
        };
        if offer.key == KeyKind::Admin && hello.role != Role::Client {
            return refuse(
                AUTH_FAILED,
                format!("an admin secret offered by a {:?}", hello.role),
            );
        }
        let Some(key) = self.keys.key(offer.key) else {
            let log = format!(
                "the peer offered the {:?} secret, which is not configured here",
                offer.key
            );
            return refuse(AUTH_FAILED, log);
        };
        let t = transcript(Side::Listener, &hello, offer.key, &offer.nonce, &self.nonce);
        let mac = sign(key, &t);
        self.pending = Some((hello, offer.key, offer.nonce));
        ListenerStep::Continue(HelloReply::Challenge {
            nonce: self.nonce,
            mac,
        })
    }
}

/// Decodes one handshake frame sent by a dialer (`u32` big-endian length, then the postcard
/// body). Pure, so it can be fuzzed: any bytes give a message or an error, never a panic.
pub fn decode_dialer_frame(bytes: &[u8]) -> Result<DialerMessage, ProtocolError> {
    super::handshake::decode_handshake_frame(bytes)
}

/// Decodes one handshake frame sent by a listener; see [`decode_dialer_frame`].
pub fn decode_listener_frame(bytes: &[u8]) -> Result<HelloReply, ProtocolError> {
    super::handshake::decode_handshake_frame(bytes)
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
