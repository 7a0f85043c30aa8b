#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tipwire_fuzz::run("smtp_session", data));
