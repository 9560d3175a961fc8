//! A frame body decoded as a `HelloReply` (the authenticated handshake's), as a handshake reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamweave_distributed::protocol::auth::HelloReply;

fuzz_target!(|data: &[u8]| swd_fuzz::message::decode::<HelloReply>(data));
