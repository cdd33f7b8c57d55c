#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dedupdav::fuzzing::pack(data));
