//! Audio ingress: binary frames and legacy PCM checked, numbered and passed to the open speech
//! stream, each acknowledged with how it was taken.

use blob_proto::stt::v1 as stt;
use blob_voice_protocol::{AudioAck, AudioFrame, BufferState, FrameError, QueueState};
use tokio::sync::mpsc;

/// Sequence tracking of incoming audio frames.
#[derive(Debug, Default)]
struct AudioSequence {
    expected: Option<u32>,
    lost: u64,
    reordered: u64,
}

/// The audio side of one socket.
#[derive(Debug)]
pub struct AudioIngress {
    speech: Option<mpsc::Sender<stt::TranscribeRequest>>,
    sequence: AudioSequence,
    thread_id: Option<String>,
    legacy_binary: bool,
}

impl AudioIngress {
    /// No speech stream yet; `legacy_binary` takes binary messages without a header as PCM.
    pub fn new(legacy_binary: bool) -> Self {
        Self { speech: None, sequence: AudioSequence::default(), thread_id: None, legacy_binary }
    }

    /// Audio now goes to this stream; numbering starts again with its first frame.
    pub fn attach(&mut self, speech: mpsc::Sender<stt::TranscribeRequest>) {
        self.speech = Some(speech);
        self.sequence.expected = None;
    }

    /// No speech stream (paused, or lost): audio is acknowledged no more.
    pub fn detach(&mut self) {
        self.speech = None;
    }

    /// The audio thread of the last frame.
    pub fn thread_id(&self) -> Option<&str> {
        self.thread_id.as_deref()
    }

    /// Frames lost and reordered so far.
    pub fn losses(&self) -> (u64, u64) {
        (self.sequence.lost, self.sequence.reordered)
    }

    /// One binary message: a v4 frame, or raw PCM from a legacy client.
    pub async fn binary(
        &mut self,
        bytes: &[u8],
        paused: bool,
    ) -> Result<Option<AudioAck>, FrameError> {
        match AudioFrame::parse(bytes) {
            Ok(frame) => {
                self.thread_id = Some(frame.thread_id.to_string());
                Ok(self.audio(frame.sequence, frame.pcm, paused).await)
            }
            Err(FrameError::TooShort | FrameError::BadMagic(_)) if self.legacy_binary => {
                self.legacy(None, bytes, paused).await
            }
            Err(err) => Err(err),
        }
    }

    /// PCM from a legacy client (raw binary or `audio_stream`), checked like a frame's; without
    /// a sequence number it gets the next one expected.
    pub async fn legacy(
        &mut self,
        sequence: Option<u32>,
        pcm: &[u8],
        paused: bool,
    ) -> Result<Option<AudioAck>, FrameError> {
        FrameError::check_pcm(pcm)?;
        let sequence = sequence.unwrap_or_else(|| self.sequence.expected.unwrap_or(0));
        Ok(self.audio(sequence, pcm, paused).await)
    }

    /// Passes PCM on; the acknowledgement, or none when no speech stream takes it.
    async fn audio(&mut self, sequence: u32, pcm: &[u8], paused: bool) -> Option<AudioAck> {
        if paused {
            return Some(self.ack(sequence, QueueState::Paused));
        }
        if let Some(expected) = self.sequence.expected {
            if sequence < expected {
                // A late frame would splice audio out of order: it is dropped and counted.
                self.sequence.reordered += 1;
                return Some(self.ack(sequence, QueueState::Late));
            }
            self.sequence.lost += u64::from(sequence - expected);
        }
        self.sequence.expected = Some(sequence.wrapping_add(1));
        let speech = self.speech.as_ref()?;
        let chunk = stt::TranscribeRequest {
            message: Some(stt::transcribe_request::Message::Audio(stt::AudioChunk {
                sequence,
                pcm_s16le: pcm.to_vec(),
            })),
        };
        // A closed stream's end arrives as the connection's own input.
        speech.send(chunk).await.ok()?;
        let queue = speech.max_capacity();
        let used = queue - speech.capacity();
        let state = if used < queue / 2 { QueueState::Ok } else { QueueState::High };
        Some(self.ack(sequence, state))
    }

    fn ack(&self, sequence: u32, queue_state: QueueState) -> AudioAck {
        AudioAck {
            sequence,
            buffer_state: BufferState::Buffering,
            queue_state,
            lost_frames: self.sequence.lost,
            reordered_frames: self.sequence.reordered,
        }
    }

    /// Hands the recogniser the trace context of an utterance.
    pub async fn context(
        &self,
        utterance_id: u32,
        trace_context: std::collections::HashMap<String, String>,
    ) {
        self.forward(stt::transcribe_request::Message::Context(stt::UtteranceContext {
            utterance_id,
            trace_context,
        }))
        .await;
    }

    /// Ends the utterance in progress now (`turn.end`); false when no speech stream is open.
    pub async fn flush(&self) -> bool {
        self.forward(stt::transcribe_request::Message::Flush(stt::Flush {})).await
    }

    async fn forward(&self, message: stt::transcribe_request::Message) -> bool {
        match &self.speech {
            Some(speech) => {
                speech.send(stt::TranscribeRequest { message: Some(message) }).await.is_ok()
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(sequence: u32) -> Vec<u8> {
        AudioFrame::encode(sequence, uuid::Uuid::nil(), &[0; 640])
    }

    #[tokio::test]
    async fn frames_are_numbered_acknowledged_and_forwarded() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut audio = AudioIngress::new(false);
        assert_eq!(audio.binary(&frame(0), false).await.unwrap(), None, "no stream, no ack");
        audio.attach(tx);
        let ack = audio.binary(&frame(5), false).await.unwrap().unwrap();
        assert_eq!((ack.sequence, ack.queue_state, ack.lost_frames), (5, QueueState::Ok, 0));
        let ack = audio.binary(&frame(8), false).await.unwrap().unwrap();
        assert_eq!(ack.lost_frames, 2, "6 and 7 were skipped");
        let late = audio.binary(&frame(7), false).await.unwrap().unwrap();
        assert_eq!((late.queue_state, late.reordered_frames), (QueueState::Late, 1));
        let paused = audio.binary(&frame(9), true).await.unwrap().unwrap();
        assert_eq!(paused.queue_state, QueueState::Paused);
        let forwarded: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|r| match r.message {
                Some(stt::transcribe_request::Message::Audio(a)) => Some(a.sequence),
                _ => None,
            })
            .collect();
        assert_eq!(forwarded, [5, 8], "late and paused frames are not passed on");
        assert_eq!(audio.thread_id(), Some(uuid::Uuid::nil().to_string().as_str()));
    }

    #[tokio::test]
    async fn a_full_queue_reports_high_and_bad_input_its_error() {
        let (tx, _rx) = mpsc::channel(4);
        let mut audio = AudioIngress::new(false);
        audio.attach(tx);
        let states: Vec<QueueState> = [
            audio.binary(&frame(0), false).await,
            audio.binary(&frame(1), false).await,
            audio.binary(&frame(2), false).await,
        ]
        .into_iter()
        .map(|ack| ack.unwrap().unwrap().queue_state)
        .collect();
        assert_eq!(states, [QueueState::Ok, QueueState::High, QueueState::High]);
        assert_eq!(audio.binary(&[1, 2, 3], false).await, Err(FrameError::TooShort));
        assert_eq!(audio.legacy(None, &[0; 3], false).await, Err(FrameError::OddPcm));
        let mut legacy = AudioIngress::new(true);
        assert_eq!(legacy.binary(&[0; 40], true).await.unwrap().unwrap().sequence, 0);
    }
}
