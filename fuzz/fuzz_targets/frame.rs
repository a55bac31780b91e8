//! Any binary message through the v4 audio frame parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    blob_voice_protocol::fuzzing::check_frame(data);
});
