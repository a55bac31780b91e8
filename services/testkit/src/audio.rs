//! Reading test speech.

use std::path::Path;

/// 16 kHz mono s16 samples of a WAV file; panics on any other format.
pub fn read_wav(path: &Path) -> Vec<i16> {
    let mut reader =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (16_000, 1, 16),
        "{} must be 16 kHz mono s16",
        path.display()
    );
    reader.samples::<i16>().map(|s| s.expect("reading a sample")).collect()
}

/// Little-endian bytes of samples.
pub fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}
