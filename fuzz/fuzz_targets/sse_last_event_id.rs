#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tipwire_fuzz::run("sse_last_event_id", data));
