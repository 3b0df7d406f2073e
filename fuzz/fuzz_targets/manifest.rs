#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| imgstore_fuzz::manifest(data));
