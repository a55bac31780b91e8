//! WAV files as the voice socket wants them: 16 kHz mono signed 16-bit.

use std::path::Path;

/// Reads a 16 kHz mono 16-bit WAV file.
pub fn read_wav(path: &Path) -> anyhow::Result<Vec<i16>> {
    let reader =
        hound::WavReader::open(path).map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
    let spec = reader.spec();
    anyhow::ensure!(
        spec.sample_rate == 16_000 && spec.channels == 1 && spec.bits_per_sample == 16,
        "{}: need 16 kHz mono 16-bit PCM, got {} Hz, {} channel(s), {} bits \
         (sox IN -r 16000 -c 1 -b 16 OUT.wav converts)",
        path.display(),
        spec.sample_rate,
        spec.channels,
        spec.bits_per_sample
    );
    reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))
}

/// PCM as the little-endian bytes a frame carries.
pub fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}
