//! See `hearth::fuzz::canonical_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth::fuzz::canonical_json(data);
});
