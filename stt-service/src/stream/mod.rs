//! One voice connection's stream, in three parts:
//! - ingest and dispatch (here): validate the messages, segment the audio, send the speech
//!   events and queue the work;
//! - [`recognition`]: transcribe each utterance in order, and the speculative transcriptions;
//! - [`judging`]: whisper's output against the quality gates, as a transcript or a rejection.
//!
//! When the child pauses, the turn so far is transcribed at once, speculatively, while the
//! end-of-turn model decides and the audio goes on. If the turn then ends with nothing more
//! said, that transcript is the utterance's (a hit: it is under way when the model ends the turn,
//! and ready when the backstop does); if the child speaks again, it is stopped and dropped (a
//! miss), and nothing of it reaches the client.

mod judging;
mod recognition;

use std::sync::Arc;
use std::time::Duration;

use blob_kit::ErrorKind;
use blob_proto::stt::v1::{
    self as pb, TranscribeEvent, transcribe_event::Event, transcribe_request::Message,
};
use futures::{Stream, StreamExt as _};
use tokio::sync::mpsc;
use tonic::Status;

use self::judging::samples_ms;
use self::recognition::{Job, TraceContexts, transcribe_in_order};
use crate::engine::Engine;
use crate::metrics::SttMetrics;
use crate::silero::SileroVad;
use crate::smart_turn::SmartTurn;
use crate::turn::{KEPT_PAUSES, ModelTurn, PauseProfile, TurnConfig};
use crate::vad::{Detector, SAMPLE_RATE, SegmentEvent, Segmenter, SegmenterConfig, decode_pcm};

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
    /// The end-of-turn model and its settings; `None` ends utterances on a fixed silence.
    pub turn: Option<(Arc<SmartTurn>, TurnConfig)>,
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
    let config = match first_config(&mut inbound).await {
        Ok(config) => config,
        Err(status) => {
            let _ = events.send(Err(status)).await;
            return;
        }
    };
    tracing::Span::current().record("session_id", config.session_id.as_str());

    let (work_tx, work_rx) = mpsc::channel::<Job>(PENDING_UTTERANCES);
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
    if let Some((model, turn)) = &settings.turn {
        let stored = config.pause_profile.map(|p| p.pauses_ms).unwrap_or_default();
        let policy =
            ModelTurn::new(model.clone(), turn.clone(), PauseProfile::from_pauses(&stored));
        segmenter = segmenter.with_policy(Box::new(policy));
    }
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
        if !dispatch(&mut found, &mut utterance_id, &events, &work_tx, &settings.metrics).await {
            break;
        }
    }
    segmenter.flush(&mut found);
    dispatch(&mut found, &mut utterance_id, &events, &work_tx, &settings.metrics).await;
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
    if let Some(profile) = &config.pause_profile
        && profile.pauses_ms.len() > KEPT_PAUSES
    {
        return Err(ErrorKind::InvalidArgument
            .status(format!("pause_profile holds at most {KEPT_PAUSES} pauses")));
    }
    Ok(config)
}

/// Sends speech events and queues work; false when the client has gone.
async fn dispatch(
    found: &mut Vec<SegmentEvent>,
    utterance_id: &mut u32,
    events: &EventSender,
    work: &mpsc::Sender<Job>,
    metrics: &SttMetrics,
) -> bool {
    for event in found.drain(..) {
        let job = match event {
            SegmentEvent::SpeechStarted { offset_ms } => {
                *utterance_id += 1;
                let event = TranscribeEvent {
                    utterance_id: *utterance_id,
                    event: Some(Event::SpeechStarted(pb::SpeechStarted { offset_ms })),
                };
                if events.send(Ok(event)).await.is_err() {
                    return false;
                }
                continue;
            }
            SegmentEvent::Paused { speculation, utterance } => {
                Job::Speculate { utterance_id: *utterance_id, speculation, utterance }
            }
            SegmentEvent::Resumed { speculation } => Job::Withdraw { speculation },
            SegmentEvent::Utterance(mut utterance) => {
                SttMetrics::count(&metrics.turn_ends, "reason", utterance.reason.as_str());
                let pause_profile =
                    utterance.pauses.take().map(|pauses_ms| pb::PauseProfile { pauses_ms });
                let event = TranscribeEvent {
                    utterance_id: *utterance_id,
                    event: Some(Event::SpeechEnded(pb::SpeechEnded {
                        offset_ms: utterance.end_offset_ms,
                        duration_ms: samples_ms(utterance.samples.len()),
                        pause_profile,
                    })),
                };
                if events.send(Ok(event)).await.is_err() {
                    return false;
                }
                Job::Final { utterance_id: *utterance_id, utterance }
            }
        };
        if work.send(job).await.is_err() {
            return false;
        }
    }
    true
}
