//! A frame body decoded as a `DialerMessage` (the authenticated handshake's), as a handshake reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamweave_distributed::protocol::auth::DialerMessage;

fuzz_target!(|data: &[u8]| swd_fuzz::message::decode::<DialerMessage>(data));
