//! Loading secrets and the role checks on what a peer proved.

use super::*;

fn file(dir: &tempfile::TempDir, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn a_secret_file_loads_without_its_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let with_newline = file(&dir, "a", b"0123456789abcdef0123\n");
    let without = file(&dir, "b", b"0123456789abcdef0123");
    let a = Security::load(&SecurityFiles {
        secret_file: Some(with_newline),
        ..Default::default()
    })
    .unwrap();
    let b = Security::load(&SecurityFiles {
        secret_file: Some(without),
        ..Default::default()
    })
    .unwrap();
    // Same secret: the worker's proof passes the coordinator's check.
    let (kind, key) = a.dial_secret(Role::Worker).unwrap();
    assert_eq!(kind, KeyKind::Cluster);
    let hello = crate::protocol::Hello {
        role: Role::Worker,
        cluster: "c".into(),
    };
    let (mut dialer, intro) = crate::protocol::auth::DialerHandshake::new(hello, Some((kind, key)), [1; 32]);
    let mut listener = crate::protocol::auth::ListenerHandshake::new("c", b.listener_keys(), [2; 32]);
    let crate::protocol::auth::ListenerStep::Continue(challenge) = listener.on_message(intro) else {
        panic!("no challenge")
    };
    assert!(dialer.on_reply(challenge).is_ok());
}

#[test]
fn short_or_missing_secret_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let short = file(&dir, "s", b"tiny\n");
    let err = Security::load(&SecurityFiles {
        secret_file: Some(short),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, SecurityError::ShortSecret { .. }), "{err}");
    let err = Security::load(&SecurityFiles {
        secret_file: Some(dir.path().join("missing")),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn tls_files_go_together() {
    let err = Security::load(&SecurityFiles {
        tls_cert: Some("x.pem".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("go together"), "{err}");
}

#[test]
fn clients_prove_the_admin_secret_when_they_have_one() {
    let dir = tempfile::tempdir().unwrap();
    let security = Security::load(&SecurityFiles {
        secret_file: Some(file(&dir, "c", b"cluster-secret-0123456789")),
        admin_secret_file: Some(file(&dir, "a", b"admin-secret-0123456789")),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        security.dial_secret(Role::Client).map(|k| k.0),
        Some(KeyKind::Admin)
    );
    assert_eq!(
        security.dial_secret(Role::Worker).map(|k| k.0),
        Some(KeyKind::Cluster)
    );
    assert_eq!(
        security.dial_secret(Role::Peer).map(|k| k.0),
        Some(KeyKind::Cluster)
    );
    assert!(security.admin_required());
}

#[test]
fn admin_rights_follow_the_configuration() {
    let cluster_only = Security::with_secret(b"cluster-secret-0123456789").unwrap();
    let worker_key = PeerCredentials {
        key: Some(KeyKind::Cluster),
        certificate_name: None,
    };
    // Without admin credentials configured, the cluster secret is enough.
    assert!(worker_key.is_admin(&cluster_only));
    assert!(worker_key.may_be_worker(&cluster_only, "anyone").is_ok());
    let dir = tempfile::tempdir().unwrap();
    let with_admin = Security::load(&SecurityFiles {
        secret_file: Some(file(&dir, "c", b"cluster-secret-0123456789")),
        admin_secret_file: Some(file(&dir, "a", b"admin-secret-0123456789")),
        ..Default::default()
    })
    .unwrap();
    assert!(!worker_key.is_admin(&with_admin));
    let admin_key = PeerCredentials {
        key: Some(KeyKind::Admin),
        certificate_name: None,
    };
    assert!(admin_key.is_admin(&with_admin));
}

#[test]
fn debug_output_shows_no_secret() {
    let security = Security::with_secret(b"do-not-print-this-secret").unwrap();
    let text = format!("{security:?}");
    assert!(!text.contains("do-not-print"), "{text}");
    assert!(text.contains("secret: true"), "{text}");
}
