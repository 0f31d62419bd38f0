//! See `hearth::fuzz::pdu`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hearth::fuzz::pdu(data);
});
