//! The dialer's side of the handshake, reading what a listener answered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamweave_distributed::internals::dial_handshake;
use streamweave_distributed::protocol::{Hello, Role};
use swd_fuzz::handshake::{run, Scripted};

fuzz_target!(|data: &[u8]| {
    let mut stream = Scripted::new(data);
    let hello = Hello {
        role: Role::Worker,
        cluster: "c".to_string(),
    };
    let _ = run(dial_handshake(&mut stream, &hello));
});
