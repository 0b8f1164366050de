#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventfold_fuzz::wire_request::run(data));
