//! A checkpoint's manifest read back from a store: framing, then JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| swd_fuzz::checkpoint::manifest(data));
