//! Any text message through the client request parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    blob_voice_protocol::fuzzing::check_client_bytes(data);
});
