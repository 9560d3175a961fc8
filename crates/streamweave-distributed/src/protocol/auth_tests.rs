//! The handshake state machine without sockets: right and wrong secrets, replays, role and key
//! mismatches, and the decoders on garbage.

use super::*;

fn key(s: &str) -> SecretKey {
    SecretKey::new(s.as_bytes()).expect("long enough")
}

const SECRET: &str = "0123456789abcdef-cluster";
const ADMIN: &str = "0123456789abcdef-admin";

fn hello(role: Role) -> Hello {
    Hello {
        role,
        cluster: "c".to_string(),
    }
}

fn keys(cluster: Option<&str>, admin: Option<&str>) -> ListenerKeys {
    ListenerKeys {
        cluster: cluster.map(key),
        admin: admin.map(key),
    }
}

/// Runs both machines against each other; the dialer's and the listener's outcomes.
fn run(
    hello: Hello,
    dialer_secret: Option<(KeyKind, &str)>,
    listener_keys: ListenerKeys,
) -> (Result<(), ProtocolError>, Result<Authenticated, ProtocolError>) {
    let (mut dialer, intro) =
        DialerHandshake::new(hello, dialer_secret.map(|(k, s)| (k, key(s))), [1; NONCE_LEN]);
    let mut listener = ListenerHandshake::new("c", listener_keys, [2; NONCE_LEN]);
    let mut message = intro;
    loop {
        let (reply, outcome) = match listener.on_message(message) {
            ListenerStep::Continue(reply) => (reply, None),
            ListenerStep::Accept(reply, who) => (reply, Some(Ok(who))),
            ListenerStep::Refuse(reply, e) => (reply, Some(Err(e))),
        };
        match dialer.on_reply(reply) {
            Ok(DialerStep::Send(next)) => {
                assert!(outcome.is_none(), "the listener decided but the dialer goes on");
                message = next;
            }
            Ok(DialerStep::Done) => return (Ok(()), outcome.expect("the listener decided")),
            Err(e) => {
                let outcome = outcome.unwrap_or(Err(ProtocolError::Closed));
                return (Err(e), outcome);
            }
        }
    }
}

#[test]
fn right_secret_is_accepted_on_both_sides() {
    let (dial, accept) = run(
        hello(Role::Worker),
        Some((KeyKind::Cluster, SECRET)),
        keys(Some(SECRET), None),
    );
    dial.unwrap();
    assert_eq!(
        accept.unwrap(),
        Authenticated {
            hello: hello(Role::Worker),
            key: Some(KeyKind::Cluster)
        }
    );
}

#[test]
fn no_secrets_anywhere_is_accepted_unauthenticated() {
    let (dial, accept) = run(hello(Role::Client), None, keys(None, None));
    dial.unwrap();
    assert_eq!(accept.unwrap().key, None);
}

#[test]
fn wrong_secret_fails_and_the_dialer_learns_it_first() {
    // The listener proves first, so a dialer with a wrong secret sees that the listener's proof
    // does not check out and never sends its own.
    let (dial, accept) = run(
        hello(Role::Worker),
        Some((KeyKind::Cluster, "this is the wrong secret")),
        keys(Some(SECRET), None),
    );
    assert!(
        matches!(dial, Err(ProtocolError::Unauthenticated(ref m)) if m.contains("could not prove")),
        "{dial:?}"
    );
    assert!(accept.is_err());
}

#[test]
fn a_wrong_proof_is_refused_without_detail() {
    let mut listener = ListenerHandshake::new("c", keys(Some(SECRET), None), [2; NONCE_LEN]);
    let (_, intro) = DialerHandshake::new(
        hello(Role::Worker),
        Some((KeyKind::Cluster, key(SECRET))),
        [1; 32],
    );
    assert!(matches!(
        listener.on_message(intro),
        ListenerStep::Continue(HelloReply::Challenge { .. })
    ));
    match listener.on_message(DialerMessage::Proof { mac: [7; 32] }) {
        ListenerStep::Refuse(HelloReply::Rejected { reason }, ProtocolError::Unauthenticated(_)) => {
            assert_eq!(reason, AUTH_FAILED)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn missing_secret_is_refused_without_the_cluster_name() {
    let mut listener = ListenerHandshake::new("secret-cluster", keys(Some(SECRET), None), [2; 32]);
    let intro = DialerMessage::Intro {
        hello: Hello {
            role: Role::Worker,
            cluster: "secret-cluster".into(),
        },
        offer: None,
    };
    match listener.on_message(intro) {
        ListenerStep::Refuse(HelloReply::Rejected { reason }, _) => {
            assert!(reason.contains("authentication required"), "{reason}");
            assert!(!reason.contains("secret-cluster"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn cluster_mismatch_does_not_name_the_listeners_cluster() {
    let mut listener = ListenerHandshake::new("private", keys(None, None), [2; 32]);
    let (_, intro) = DialerHandshake::new(
        Hello {
            role: Role::Client,
            cluster: "other".into(),
        },
        None,
        [1; 32],
    );
    match listener.on_message(intro) {
        ListenerStep::Refuse(HelloReply::Rejected { reason }, _) => {
            assert!(
                reason.contains("cluster name mismatch") && reason.contains("other"),
                "{reason}"
            );
            assert!(!reason.contains("private"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_replayed_handshake_fails_against_a_fresh_nonce() {
    // Record a good handshake...
    let (mut dialer, intro) = DialerHandshake::new(
        hello(Role::Worker),
        Some((KeyKind::Cluster, key(SECRET))),
        [1; 32],
    );
    let mut first = ListenerHandshake::new("c", keys(Some(SECRET), None), [2; 32]);
    let ListenerStep::Continue(challenge) = first.on_message(intro.clone()) else {
        panic!("no challenge")
    };
    let Ok(DialerStep::Send(proof)) = dialer.on_reply(challenge) else {
        panic!("no proof")
    };
    assert!(matches!(
        first.on_message(proof.clone()),
        ListenerStep::Accept(..)
    ));
    // ... and replay the dialer's messages to a listener with another nonce.
    let mut second = ListenerHandshake::new("c", keys(Some(SECRET), None), [3; 32]);
    assert!(matches!(second.on_message(intro), ListenerStep::Continue(_)));
    assert!(matches!(
        second.on_message(proof),
        ListenerStep::Refuse(_, ProtocolError::Unauthenticated(_))
    ));
}

#[test]
fn a_proof_made_for_another_role_fails() {
    // A dialer that introduced itself as a worker cannot pass a proof computed for a client.
    let mut listener = ListenerHandshake::new("c", keys(Some(SECRET), None), [2; 32]);
    let (_, intro) = DialerHandshake::new(
        hello(Role::Worker),
        Some((KeyKind::Cluster, key(SECRET))),
        [1; 32],
    );
    let ListenerStep::Continue(HelloReply::Challenge { nonce, .. }) = listener.on_message(intro) else {
        panic!("no challenge")
    };
    let forged = sign(
        &key(SECRET),
        &transcript(
            Side::Dialer,
            &hello(Role::Client),
            KeyKind::Cluster,
            &[1; 32],
            &nonce,
        ),
    );
    assert!(matches!(
        listener.on_message(DialerMessage::Proof { mac: forged }),
        ListenerStep::Refuse(..)
    ));
}

#[test]
fn a_listener_mac_reflected_as_a_proof_fails() {
    let mut listener = ListenerHandshake::new("c", keys(Some(SECRET), None), [2; 32]);
    let (_, intro) = DialerHandshake::new(
        hello(Role::Worker),
        Some((KeyKind::Cluster, key(SECRET))),
        [1; 32],
    );
    let ListenerStep::Continue(HelloReply::Challenge { mac, .. }) = listener.on_message(intro) else {
        panic!("no challenge")
    };
    assert!(matches!(
        listener.on_message(DialerMessage::Proof { mac }),
        ListenerStep::Refuse(..)
    ));
}

#[test]
fn admin_secret_gives_the_admin_key_and_only_to_clients() {
    let both = || keys(Some(SECRET), Some(ADMIN));
    let (dial, accept) = run(hello(Role::Client), Some((KeyKind::Admin, ADMIN)), both());
    dial.unwrap();
    assert_eq!(accept.unwrap().key, Some(KeyKind::Admin));
    // The cluster secret offered as the admin one fails.
    let (dial, _) = run(hello(Role::Client), Some((KeyKind::Admin, SECRET)), both());
    assert!(dial.is_err());
    // A worker offering the admin secret is refused outright.
    let (dial, accept) = run(hello(Role::Worker), Some((KeyKind::Admin, ADMIN)), both());
    assert!(
        matches!(dial, Err(ProtocolError::Rejected(ref r)) if r == AUTH_FAILED),
        "{dial:?}"
    );
    assert!(accept.is_err());
    // An admin secret offered where none is configured is refused.
    let (dial, _) = run(
        hello(Role::Client),
        Some((KeyKind::Admin, ADMIN)),
        keys(Some(SECRET), None),
    );
    assert!(matches!(dial, Err(ProtocolError::Rejected(_))), "{dial:?}");
}

#[test]
fn a_dialer_with_a_secret_refuses_a_listener_without_one() {
    // Otherwise anyone could stand in for the coordinator.
    let (dial, _) = run(
        hello(Role::Worker),
        Some((KeyKind::Cluster, SECRET)),
        keys(None, None),
    );
    assert!(
        matches!(
            dial,
            Err(ProtocolError::Rejected(_) | ProtocolError::Unauthenticated(_))
        ),
        "{dial:?}"
    );
}

#[test]
fn short_secrets_are_refused() {
    assert!(SecretKey::new(b"short").is_none());
    assert!(SecretKey::new(&[0u8; SecretKey::MIN_LEN]).is_some());
}

#[test]
fn decoders_answer_garbage_with_errors() {
    for bytes in [
        &b""[..],
        b"\0\0\0",
        b"\0\0\0\x01\xff",
        b"\xff\xff\xff\xff",
        b"\0\0\0\0",
    ] {
        assert!(decode_dialer_frame(bytes).is_err());
        assert!(decode_listener_frame(bytes).is_err());
    }
    let mut buf = bytes::BytesMut::new();
    let (_, intro) = DialerHandshake::new(hello(Role::Peer), None, [9; 32]);
    super::super::codec::encode_frame(&intro, 4096, &mut buf).unwrap();
    assert_eq!(decode_dialer_frame(&buf).unwrap(), intro);
    buf.extend_from_slice(b"x");
    assert!(decode_dialer_frame(&buf).is_err(), "trailing bytes");
}
