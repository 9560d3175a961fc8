//! A frame body decoded as a `ClientRequest`, as a connection reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamweave_distributed::protocol::ClientRequest;

fuzz_target!(|data: &[u8]| swd_fuzz::message::decode::<ClientRequest>(data));
