#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventfold_fuzz::model::run(data));
