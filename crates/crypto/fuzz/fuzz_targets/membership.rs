#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| strongroom_crypto::fuzz_checks::membership(data));
