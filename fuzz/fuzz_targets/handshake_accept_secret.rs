//! The listener's side of the authenticated handshake (a cluster and an admin secret), reading
//! what a dialer sent. The bytes are fixed before the listener picks its nonce, so they cannot
//! hold a proof over it: no input may be accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamweave_distributed::internals::accept_handshake_with;
use streamweave_distributed::protocol::{ListenerKeys, SecretKey, MAGIC};
use swd_fuzz::handshake::{run, Scripted};

fuzz_target!(|data: &[u8]| {
    let keys = ListenerKeys {
        cluster: SecretKey::new(b"fuzz-cluster-secret-0123456789"),
        admin: SecretKey::new(b"fuzz-admin-secret-0123456789ab"),
    };
    let mut stream = Scripted::new(data);
    if let Ok(who) = run(accept_handshake_with(&mut stream, "c", &keys)) {
        panic!("accepted {who:?} without a proof over this listener's nonce");
    }
    assert!(stream.written.is_empty() || stream.written.starts_with(&MAGIC));
});
