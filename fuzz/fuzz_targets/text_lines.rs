//! The text sources' line splitting over byte ranges of files, and resuming from offsets.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| swd_fuzz::text::lines(data));
