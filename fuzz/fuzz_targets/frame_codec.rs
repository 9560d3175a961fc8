//! A byte stream of frames, arriving in reads of any size, decoded as `PeerMessage`s (the
//! data plane's traffic); the framing is the same for every message enum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamweave_distributed::protocol::PeerMessage;

fuzz_target!(|data: &[u8]| swd_fuzz::message::decode_stream::<PeerMessage>(data));
