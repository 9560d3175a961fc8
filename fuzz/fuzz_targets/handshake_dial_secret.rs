//! The dialer's side of the authenticated handshake, reading what a listener answered. The
//! bytes are fixed before the dialer picks its nonce, so a listener's proof in them cannot be
//! valid and an answer without a challenge proves nothing: no input may complete the handshake.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamweave_distributed::internals::dial_handshake_with;
use streamweave_distributed::protocol::{Hello, KeyKind, Role, SecretKey};
use swd_fuzz::handshake::{run, Scripted};

fuzz_target!(|data: &[u8]| {
    let Some(secret) = SecretKey::new(b"fuzz-cluster-secret-0123456789") else {
        panic!("the fuzz secret is too short");
    };
    let mut stream = Scripted::new(data);
    let hello = Hello {
        role: Role::Worker,
        cluster: "c".to_string(),
    };
    if run(dial_handshake_with(&mut stream, &hello, Some((KeyKind::Cluster, secret)))).is_ok() {
        panic!("completed a handshake with a listener that proved nothing");
    }
});
