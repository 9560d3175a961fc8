//! Recovery's choice of checkpoint from a store of arbitrary manifests and data files.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| swd_fuzz::checkpoint::restore(data));
