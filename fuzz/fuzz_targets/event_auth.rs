//! See `hearth::fuzz::event_auth`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth::fuzz::event_auth(data);
});
