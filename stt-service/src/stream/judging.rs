//! Judging: whisper's transcript of an utterance, or a rejection with the numbers that decided
//! it (too short, empty, invented, unsure).

use std::sync::Arc;

use blob_kit::ErrorKind;
use blob_proto::stt::v1::{self as pb, transcribe_event::Event};
use tonic::Status;

use super::StreamSettings;
use crate::engine::{Engine, TranscribeError};
use crate::quality;
use crate::vad::{SAMPLE_RATE, Utterance};

/// An utterance's event for the client and the outcome to count once it is sent.
#[derive(Debug)]
pub(super) struct Judged {
    pub(super) event: Event,
    pub(super) outcome: &'static str,
}

/// Transcribes one utterance, or rejects it with the numbers that decided it; a saturated
/// engine ends the stream with `RESOURCE_EXHAUSTED`.
pub(super) async fn judge(
    engine: &Arc<Engine>,
    settings: &StreamSettings,
    utterance: Utterance,
) -> Result<Judged, Status> {
    let duration_ms = samples_ms(utterance.samples.len());
    let reject = |reason: pb::RejectReason, detail: String, confidence: f32| {
        tracing::info!(?reason, %detail, duration_ms, "utterance rejected");
        let outcome = match reason {
            pb::RejectReason::TooShort => "too_short",
            pb::RejectReason::LowConfidence => "low_confidence",
            pb::RejectReason::Empty => "empty",
            pb::RejectReason::Hallucination => "hallucination",
            pb::RejectReason::Unspecified => "failed",
        };
        let event = Event::Rejected(pb::Rejected {
            reason: reason.into(),
            detail,
            duration_ms,
            confidence,
            rms: utterance.rms,
        });
        Ok(Judged { event, outcome })
    };
    if u128::from(utterance.speech_ms) < settings.min_speech.as_millis() {
        return reject(
            pb::RejectReason::TooShort,
            format!(
                "{} ms of speech is under the {} ms minimum",
                utterance.speech_ms,
                settings.min_speech.as_millis()
            ),
            0.0,
        );
    }
    let transcript = match engine.transcribe(utterance.samples.clone()).await {
        Ok(transcript) => transcript,
        Err(TranscribeError::Busy) => {
            tracing::warn!(duration_ms, "recogniser saturated");
            return Err(ErrorKind::ResourceExhausted.status("speech recognition is busy"));
        }
        Err(TranscribeError::Failed(err)) => {
            tracing::error!(error = %format!("{err:#}"), "transcription failed");
            return reject(pb::RejectReason::Unspecified, "recogniser failed".into(), 0.0);
        }
    };
    tracing::info!(
        duration_ms,
        inference_ms = transcript.inference_ms,
        confidence = transcript.confidence,
        no_speech = transcript.no_speech,
        "utterance transcribed"
    );
    tracing::debug!(text = %transcript.text, "transcript");
    if transcript.text.is_empty() {
        return reject(
            pb::RejectReason::Empty,
            "no words recognised".into(),
            transcript.confidence,
        );
    }
    if quality::is_invented(
        &transcript.text,
        utterance.rms,
        settings.segmenter.energy_threshold,
        transcript.no_speech,
    ) || quality::is_loop(&transcript.text)
    {
        return reject(
            pb::RejectReason::Hallucination,
            format!(
                "recogniser output not supported by the audio (rms {:.0}, no-speech {:.2})",
                utterance.rms, transcript.no_speech
            ),
            transcript.confidence,
        );
    }
    if transcript.confidence < settings.confidence_threshold {
        return reject(
            pb::RejectReason::LowConfidence,
            format!(
                "confidence {:.2} is under the {:.2} threshold",
                transcript.confidence, settings.confidence_threshold
            ),
            transcript.confidence,
        );
    }
    let event = Event::FinalTranscript(pb::FinalTranscript {
        text: transcript.text,
        confidence: transcript.confidence,
        language: transcript.language,
        duration_ms,
        inference_ms: transcript.inference_ms,
    });
    Ok(Judged { event, outcome: "transcribed" })
}

pub(super) fn samples_ms(samples: usize) -> u32 {
    (samples as u64 * 1000 / u64::from(SAMPLE_RATE)) as u32
}
