//! A frame body decoded as a `CoordinatorMessage`, as a connection reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamweave_distributed::protocol::CoordinatorMessage;

fuzz_target!(|data: &[u8]| swd_fuzz::message::decode::<CoordinatorMessage>(data));
