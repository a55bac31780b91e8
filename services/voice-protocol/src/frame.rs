//! Binary audio frames, version 4:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | magic `0xB1` |
//! | 1 | version `0x04` |
//! | 2..6 | sequence number, u32 little-endian |
//! | 6..22 | thread id, a UUID's 16 bytes |
//! | 22.. | PCM, signed 16-bit little-endian, 16 kHz, mono |

use crate::codes::ErrorCode;

/// First byte of every audio frame.
pub const MAGIC: u8 = 0xB1;
/// The frame version this parser reads.
pub const VERSION: u8 = 0x04;
/// Bytes before the PCM.
pub const HEADER_LEN: usize = 22;
/// Most PCM one frame may carry: 1 s of audio.
pub const MAX_PCM_BYTES: usize = 32_000;

/// A parsed frame, borrowing its PCM from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFrame<'a> {
    /// The client's sequence number.
    pub sequence: u32,
    /// The conversation thread the audio belongs to.
    pub thread_id: uuid::Uuid,
    /// s16le PCM, even length.
    pub pcm: &'a [u8],
}

/// Why a binary message is not an audio frame; each has a stable `error` event code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// `INVALID_FRAME`: shorter than the header.
    #[error("frame shorter than its {HEADER_LEN}-byte header")]
    TooShort,
    /// `INVALID_FRAME`: the first byte is not `0xB1`.
    #[error("bad magic byte 0x{0:02X} (expected 0xB1)")]
    BadMagic(u8),
    /// `UNSUPPORTED_VERSION`: a version other than 4.
    #[error("unsupported frame version {0} (expected 4)")]
    BadVersion(u8),
    /// `INVALID_AUDIO`: PCM of odd length cannot be s16.
    #[error("PCM has an odd number of bytes")]
    OddPcm,
    /// `FRAME_TOO_LARGE`: more PCM than one frame may carry.
    #[error("frame carries {0} bytes of PCM, over the {MAX_PCM_BYTES}-byte limit")]
    TooLarge(usize),
}

impl FrameError {
    /// The `error` event code.
    pub fn code(self) -> ErrorCode {
        match self {
            Self::TooShort | Self::BadMagic(_) => ErrorCode::InvalidFrame,
            Self::BadVersion(_) => ErrorCode::UnsupportedVersion,
            Self::OddPcm => ErrorCode::InvalidAudio,
            Self::TooLarge(_) => ErrorCode::FrameTooLarge,
        }
    }

    /// Checks PCM that arrived without a frame header (legacy clients) as a frame's PCM is
    /// checked.
    pub fn check_pcm(pcm: &[u8]) -> Result<(), Self> {
        if pcm.len() > MAX_PCM_BYTES {
            return Err(Self::TooLarge(pcm.len()));
        }
        if !pcm.len().is_multiple_of(2) {
            return Err(Self::OddPcm);
        }
        Ok(())
    }
}

impl<'a> AudioFrame<'a> {
    /// Parses one binary WebSocket message.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::TooShort);
        }
        if bytes[0] != MAGIC {
            return Err(FrameError::BadMagic(bytes[0]));
        }
        if bytes[1] != VERSION {
            return Err(FrameError::BadVersion(bytes[1]));
        }
        let pcm = &bytes[HEADER_LEN..];
        FrameError::check_pcm(pcm)?;
        let sequence = u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        let mut thread = [0u8; 16];
        thread.copy_from_slice(&bytes[6..HEADER_LEN]);
        Ok(Self { sequence, thread_id: uuid::Uuid::from_bytes(thread), pcm })
    }

    /// Encodes a frame (clients and tests).
    pub fn encode(sequence: u32, thread_id: uuid::Uuid, pcm: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + pcm.len());
        out.push(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&sequence.to_le_bytes());
        out.extend_from_slice(thread_id.as_bytes());
        out.extend_from_slice(pcm);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let thread = uuid::Uuid::new_v4();
        let bytes = AudioFrame::encode(7, thread, &[1, 0, 2, 0]);
        let frame = AudioFrame::parse(&bytes).unwrap();
        assert_eq!(frame, AudioFrame { sequence: 7, thread_id: thread, pcm: &[1, 0, 2, 0] });
    }

    #[test]
    fn frames_follow_the_documented_layout() {
        let thread = uuid::Uuid::from_bytes([7; 16]);
        let frame = AudioFrame::encode(258, thread, &[1, 0, 255, 255]);
        assert_eq!(&frame[..2], &[0xB1, 0x04]);
        assert_eq!(&frame[2..6], &[2, 1, 0, 0]);
        assert_eq!(&frame[6..22], &[7; 16]);
        assert_eq!(&frame[22..], &[1, 0, 255, 255]);
    }

    #[test]
    fn each_defect_has_its_error() {
        let good = AudioFrame::encode(1, uuid::Uuid::nil(), &[0; 4]);
        assert_eq!(AudioFrame::parse(&good[..10]), Err(FrameError::TooShort));
        let mut bad = good.clone();
        bad[0] = 0xB2;
        assert_eq!(AudioFrame::parse(&bad), Err(FrameError::BadMagic(0xB2)));
        let mut bad = good.clone();
        bad[1] = 3;
        assert_eq!(AudioFrame::parse(&bad), Err(FrameError::BadVersion(3)));
        let odd = AudioFrame::encode(1, uuid::Uuid::nil(), &[0; 3]);
        assert_eq!(AudioFrame::parse(&odd), Err(FrameError::OddPcm));
        let big = AudioFrame::encode(1, uuid::Uuid::nil(), &vec![0; MAX_PCM_BYTES + 2]);
        assert_eq!(AudioFrame::parse(&big), Err(FrameError::TooLarge(MAX_PCM_BYTES + 2)));
        let empty = AudioFrame::encode(1, uuid::Uuid::nil(), &[]);
        assert!(AudioFrame::parse(&empty).unwrap().pcm.is_empty());
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic generator keeps the test reproducible without a dependency.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 80) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if next() % 2 == 0 && len >= 2 {
                bytes[0] = MAGIC;
                bytes[1] = VERSION;
            }
            let _ = AudioFrame::parse(&bytes);
        }
    }
}
