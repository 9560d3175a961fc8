//! A frame body decoded as a `PeerMessage`, as a connection reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamweave_distributed::protocol::PeerMessage;

fuzz_target!(|data: &[u8]| swd_fuzz::message::decode::<PeerMessage>(data));
