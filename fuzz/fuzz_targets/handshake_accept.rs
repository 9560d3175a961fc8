//! The listener's side of the handshake, reading what a dialer sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamweave_distributed::internals::accept_handshake;
use streamweave_distributed::protocol::MAGIC;
use swd_fuzz::handshake::{run, Scripted};

fuzz_target!(|data: &[u8]| {
    let mut stream = Scripted::new(data);
    if let Ok(hello) = run(accept_handshake(&mut stream, "c")) {
        assert_eq!(hello.cluster, "c", "accepted a dialer of another cluster");
    }
    assert!(stream.written.is_empty() || stream.written.starts_with(&MAGIC));
});
