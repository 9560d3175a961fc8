//! A frame body decoded as a `ClientResponse`, as a connection reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamweave_distributed::protocol::ClientResponse;

fuzz_target!(|data: &[u8]| swd_fuzz::message::decode::<ClientResponse>(data));
