//! One voice connection's stream: validate the messages, segment the audio, transcribe each
//! utterance in order, and apply the quality gates.

use std::sync::Arc;
use std::time::Duration;

use blob_kit::ErrorKind;
use blob_proto::stt::v1::{
    self as pb, TranscribeEvent, transcribe_event::Event, transcribe_request::Message,
};
use std::collections::{HashMap, VecDeque};

use futures::{Stream, StreamExt as _};
use tokio::sync::mpsc;
use tonic::Status;
use tracing::Instrument as _;

use crate::engine::{Engine, TranscribeError};
use crate::quality;
use crate::silero::SileroVad;
use crate::vad::{
    Detector, SAMPLE_RATE, SegmentEvent, Segmenter, SegmenterConfig, Utterance, decode_pcm,
};

/// Largest audio chunk accepted in one message (1 s of audio).
pub const MAX_CHUNK_BYTES: usize = (SAMPLE_RATE * 2) as usize;
/// Utterances waiting for the recogniser, per stream, before audio reading waits too.
const PENDING_UTTERANCES: usize = 4;

/// Per-stream settings shared by every stream.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Segmentation.
    pub segmenter: SegmenterConfig,
    /// The neural voice activity detector; `None` leaves it to the energy gate.
    pub vad: Option<Arc<SileroVad>>,
    /// Shorter speech is rejected as `too_short`.
    pub min_speech: Duration,
    /// Lower confidence is rejected as `low_confidence`.
    pub confidence_threshold: f32,
    /// Where outcomes are counted.
    pub metrics: crate::metrics::SttMetrics,
}

/// Outbound events, as the gRPC response stream carries them.
pub type EventSender = mpsc::Sender<Result<TranscribeEvent, Status>>;

/// Runs one stream to its end. Errors in the client's messages end the stream with a status.
pub async fn run<S>(
    engine: Arc<Engine>,
    settings: StreamSettings,
    mut inbound: S,
    events: EventSender,
) where
    S: Stream<Item = Result<pb::TranscribeRequest, Status>> + Unpin,
{
    let session_id = match first_config(&mut inbound).await {
        Ok(config) => config.session_id,
        Err(status) => {
            let _ = events.send(Err(status)).await;
            return;
        }
    };
    tracing::Span::current().record("session_id", session_id.as_str());

    let (work_tx, work_rx) = mpsc::channel::<(u32, Utterance)>(PENDING_UTTERANCES);
    let contexts = TraceContexts::default();
    let worker = tokio::spawn(transcribe_in_order(
        engine,
        settings.clone(),
        work_rx,
        events.clone(),
        contexts.clone(),
    ));

    let detector =
        settings.vad.as_ref().map_or(Detector::Energy, |vad| Detector::Silero(vad.stream()));
    let mut segmenter = Segmenter::new(settings.segmenter.clone(), detector);
    let mut found = Vec::new();
    let mut utterance_id = 0u32;
    let mut last_sequence: Option<u32> = None;
    loop {
        let message = match inbound.next().await {
            None => break,
            Some(Err(status)) => {
                // Cancelled by the client (its socket closed, or it paused): nothing more to do.
                tracing::debug!(%status, "client stream cancelled");
                drop(work_tx);
                worker.abort();
                return;
            }
            Some(Ok(request)) => request.message,
        };
        match message {
            Some(Message::Audio(chunk)) => {
                if chunk.pcm_s16le.len() > MAX_CHUNK_BYTES {
                    let _ = events
                        .send(Err(ErrorKind::InvalidArgument.status(format!(
                            "audio chunk of {} bytes is over the {MAX_CHUNK_BYTES}-byte limit",
                            chunk.pcm_s16le.len()
                        ))))
                        .await;
                    break;
                }
                let Some(pcm) = decode_pcm(&chunk.pcm_s16le) else {
                    let _ = events
                        .send(Err(ErrorKind::InvalidArgument
                            .status("audio chunk has an odd number of bytes (not s16le)")))
                        .await;
                    break;
                };
                if last_sequence.is_some_and(|last| chunk.sequence <= last) {
                    tracing::debug!(sequence = chunk.sequence, "audio chunk out of order");
                }
                last_sequence = Some(chunk.sequence);
                segmenter = match segment(segmenter, pcm, &mut found).await {
                    Ok(segmenter) => segmenter,
                    Err(status) => {
                        let _ = events.send(Err(status)).await;
                        drop(work_tx);
                        worker.abort();
                        return;
                    }
                };
            }
            Some(Message::Flush(_)) => segmenter.flush(&mut found),
            Some(Message::Context(context)) => {
                contexts.insert(context.utterance_id, context.trace_context);
            }
            Some(Message::Config(_)) => {
                let _ = events
                    .send(Err(ErrorKind::InvalidArgument.status("config may only be sent first")))
                    .await;
                break;
            }
            None => {}
        }
        if !dispatch(&mut found, &mut utterance_id, &events, &work_tx).await {
            break;
        }
    }
    segmenter.flush(&mut found);
    dispatch(&mut found, &mut utterance_id, &events, &work_tx).await;
    drop(work_tx);
    // The queued utterances are still worth transcribing, unless the client stops listening.
    let mut worker = worker;
    tokio::select! {
        _ = &mut worker => {}
        () = events.closed() => worker.abort(),
    }
}

/// Feeds audio to the segmenter; a neural detector runs on the blocking pool, since a second
/// of audio is 31 model calls.
async fn segment(
    mut segmenter: Segmenter,
    pcm: Vec<i16>,
    found: &mut Vec<SegmentEvent>,
) -> Result<Segmenter, Status> {
    if !segmenter.is_neural() {
        segmenter.push(&pcm, found);
        return Ok(segmenter);
    }
    let mut events = std::mem::take(found);
    let (segmenter, events) = tokio::task::spawn_blocking(move || {
        segmenter.push(&pcm, &mut events);
        (segmenter, events)
    })
    .await
    .map_err(|err| {
        tracing::error!(error = %err, "voice activity detection failed");
        ErrorKind::Internal.status("voice activity detection failed")
    })?;
    *found = events;
    Ok(segmenter)
}

async fn first_config<S>(inbound: &mut S) -> Result<pb::StreamConfig, Status>
where
    S: Stream<Item = Result<pb::TranscribeRequest, Status>> + Unpin,
{
    let first = inbound
        .next()
        .await
        .ok_or_else(|| ErrorKind::InvalidArgument.status("stream closed before its config"))??;
    let Some(Message::Config(config)) = first.message else {
        return Err(ErrorKind::InvalidArgument.status("the first message must be the config"));
    };
    if config.sample_rate_hz != SAMPLE_RATE {
        return Err(ErrorKind::InvalidArgument.status(format!(
            "sample_rate_hz must be {SAMPLE_RATE}, got {}",
            config.sample_rate_hz
        )));
    }
    Ok(config)
}

/// Sends speech-started events and queues utterances; false when the client has gone.
async fn dispatch(
    found: &mut Vec<SegmentEvent>,
    utterance_id: &mut u32,
    events: &EventSender,
    work: &mpsc::Sender<(u32, Utterance)>,
) -> bool {
    for event in found.drain(..) {
        match event {
            SegmentEvent::SpeechStarted { offset_ms } => {
                *utterance_id += 1;
                let event = TranscribeEvent {
                    utterance_id: *utterance_id,
                    event: Some(Event::SpeechStarted(pb::SpeechStarted { offset_ms })),
                };
                if events.send(Ok(event)).await.is_err() {
                    return false;
                }
            }
            SegmentEvent::Utterance(utterance) => {
                let event = TranscribeEvent {
                    utterance_id: *utterance_id,
                    event: Some(Event::SpeechEnded(pb::SpeechEnded {
                        offset_ms: utterance.end_offset_ms,
                        duration_ms: samples_ms(utterance.samples.len()),
                    })),
                };
                if events.send(Ok(event)).await.is_err() {
                    return false;
                }
                if work.send((*utterance_id, utterance)).await.is_err() {
                    return false;
                }
            }
        }
    }
    true
}

/// W3C trace context headers.
type TraceContext = HashMap<String, String>;

/// Trace contexts the client sent for its utterances, by utterance id (the latest few).
#[derive(Clone, Default)]
struct TraceContexts(Arc<std::sync::Mutex<VecDeque<(u32, TraceContext)>>>);

impl TraceContexts {
    const KEPT: usize = 8;

    fn insert(&self, utterance_id: u32, context: HashMap<String, String>) {
        if let Ok(mut contexts) = self.0.lock() {
            if contexts.len() == Self::KEPT {
                contexts.pop_front();
            }
            contexts.push_back((utterance_id, context));
        }
    }

    fn take(&self, utterance_id: u32) -> Option<HashMap<String, String>> {
        let mut contexts = self.0.lock().ok()?;
        let index = contexts.iter().position(|(id, _)| *id == utterance_id)?;
        contexts.remove(index).map(|(_, context)| context)
    }
}

async fn transcribe_in_order(
    engine: Arc<Engine>,
    settings: StreamSettings,
    mut work: mpsc::Receiver<(u32, Utterance)>,
    events: EventSender,
    contexts: TraceContexts,
) {
    while let Some((utterance_id, utterance)) = work.recv().await {
        if events.is_closed() {
            // The client went away: its queued utterances are not worth a worker.
            return;
        }
        // The utterance joins the client's trace of its turn when the client sent one.
        let span = tracing::info_span!(
            "stt.utterance",
            utterance_id,
            audio_ms = utterance.samples.len() as u64 / 16,
            speech_ms = utterance.speech_ms,
        );
        if let Some(context) = contexts.take(utterance_id) {
            blob_kit::grpc::set_parent_from(&span, &context);
        }
        // A client that stops listening drops the transcription: its worker is freed at once.
        let judged = tokio::select! {
            judged = judge(&engine, &settings, utterance).instrument(span) => judged,
            () = events.closed() => return,
        };
        match judged {
            Ok(event) => {
                let event = TranscribeEvent { utterance_id, event: Some(event) };
                if events.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            Err(status) => {
                let _ = events.send(Err(status)).await;
                return;
            }
        }
    }
}

/// Transcribes one utterance, or rejects it with the numbers that decided it; a saturated
/// engine ends the stream with `RESOURCE_EXHAUSTED`.
async fn judge(
    engine: &Arc<Engine>,
    settings: &StreamSettings,
    utterance: Utterance,
) -> Result<Event, Status> {
    let duration_ms = samples_ms(utterance.samples.len());
    let reject = |reason: pb::RejectReason, detail: String, confidence: f32| {
        tracing::info!(?reason, %detail, duration_ms, "utterance rejected");
        settings.metrics.outcome(match reason {
            pb::RejectReason::TooShort => "too_short",
            pb::RejectReason::LowConfidence => "low_confidence",
            pb::RejectReason::Empty => "empty",
            pb::RejectReason::Hallucination => "hallucination",
            pb::RejectReason::Unspecified => "failed",
        });
        Ok(Event::Rejected(pb::Rejected {
            reason: reason.into(),
            detail,
            duration_ms,
            confidence,
            rms: utterance.rms,
        }))
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
            settings.metrics.outcome("busy");
            tracing::warn!(duration_ms, "recogniser saturated; shedding the stream");
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
    settings.metrics.outcome("transcribed");
    Ok(Event::FinalTranscript(pb::FinalTranscript {
        text: transcript.text,
        confidence: transcript.confidence,
        language: transcript.language,
        duration_ms,
        inference_ms: transcript.inference_ms,
    }))
}

fn samples_ms(samples: usize) -> u32 {
    (samples as u64 * 1000 / u64::from(SAMPLE_RATE)) as u32
}
