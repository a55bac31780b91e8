//! One voice connection's stream: validate the messages, segment the audio, transcribe each
//! utterance in order, and apply the quality gates.
//!
//! When the child pauses, the turn so far is transcribed at once, speculatively, while the
//! end-of-turn model decides and the audio goes on. If the turn then ends with nothing more
//! said, that transcript is the utterance's (a hit: it is under way when the model ends the turn,
//! and ready when the backstop does); if the child speaks again, it is stopped and dropped (a
//! miss), and nothing of it reaches the client.

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
use crate::metrics::SttMetrics;
use crate::quality;
use crate::silero::SileroVad;
use crate::smart_turn::SmartTurn;
use crate::turn::{KEPT_PAUSES, PauseProfile, TurnConfig, TurnDetector};
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
        segmenter = segmenter.with_turn_detector(TurnDetector {
            model: Arc::clone(model),
            config: turn.clone(),
            profile: PauseProfile::from_pauses(&stored),
        });
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

/// Work for the transcription task, in stream order.
#[derive(Debug)]
enum Job {
    /// Transcribe the turn so far, in case the turn ends at this pause.
    Speculate { utterance_id: u32, speculation: u32, utterance: Utterance },
    /// The child went on: stop and drop that speculation.
    Withdraw { speculation: u32 },
    /// A finished utterance: its transcript goes to the client.
    Final { utterance_id: u32, utterance: Utterance },
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

    fn get(&self, utterance_id: u32) -> Option<HashMap<String, String>> {
        let contexts = self.0.lock().ok()?;
        contexts.iter().find(|(id, _)| *id == utterance_id).map(|(_, context)| context.clone())
    }
}

/// A speculative transcription running beside the stream.
struct Speculation {
    id: u32,
    task: tokio::task::JoinHandle<Result<Judged, Status>>,
}

impl Speculation {
    /// Stops it (dropping the transcription stops whisper) and counts a miss.
    fn withdraw(self, metrics: &SttMetrics) {
        self.task.abort();
        SttMetrics::count(&metrics.speculations, "outcome", "miss");
    }
}

async fn transcribe_in_order(
    engine: Arc<Engine>,
    settings: StreamSettings,
    mut work: mpsc::Receiver<Job>,
    events: EventSender,
    contexts: TraceContexts,
) {
    let mut pending: Option<Speculation> = None;
    while let Some(job) = work.recv().await {
        if events.is_closed() {
            // The client went away: its queued utterances are not worth a worker.
            break;
        }
        let (utterance_id, utterance) = match job {
            Job::Speculate { utterance_id, speculation, utterance } => {
                if let Some(stale) = pending.take() {
                    stale.withdraw(&settings.metrics);
                }
                if !engine.has_idle_worker() {
                    // Guesses wait for nobody: the turn is transcribed when it ends.
                    SttMetrics::count(&settings.metrics.speculations, "outcome", "busy");
                    continue;
                }
                let span = tracing::info_span!(
                    "stt.speculation",
                    utterance_id,
                    speculation,
                    audio_ms = utterance.samples.len() as u64 / 16,
                );
                if let Some(context) = contexts.get(utterance_id) {
                    blob_kit::grpc::set_parent_from(&span, &context);
                }
                let (engine, settings) = (Arc::clone(&engine), settings.clone());
                let task = tokio::spawn(
                    async move { judge(&engine, &settings, utterance).await }.instrument(span),
                );
                pending = Some(Speculation { id: speculation, task });
                continue;
            }
            Job::Withdraw { speculation } => {
                if let Some(running) = pending.take_if(|p| p.id == speculation) {
                    running.withdraw(&settings.metrics);
                }
                continue;
            }
            Job::Final { utterance_id, utterance } => (utterance_id, utterance),
        };
        // The utterance joins the client's trace of its turn when the client sent one.
        let span = tracing::info_span!(
            "stt.utterance",
            utterance_id,
            audio_ms = utterance.samples.len() as u64 / 16,
            speech_ms = utterance.speech_ms,
            end = utterance.reason.as_str(),
            speculation_hit = tracing::field::Empty,
        );
        if let Some(context) = contexts.take(utterance_id) {
            blob_kit::grpc::set_parent_from(&span, &context);
        }
        let confirmed = match pending.take() {
            Some(speculation) if utterance.speculation == Some(speculation.id) => Some(speculation),
            Some(stale) => {
                stale.withdraw(&settings.metrics);
                None
            }
            None => None,
        };
        // A client that stops listening drops the transcription: its worker is freed at once.
        let judged = tokio::select! {
            judged = finish(&engine, &settings, utterance, confirmed).instrument(span) => judged,
            () = events.closed() => break,
        };
        match judged {
            Ok(judged) => {
                settings.metrics.outcome(judged.outcome);
                let event = TranscribeEvent { utterance_id, event: Some(judged.event) };
                if events.send(Ok(event)).await.is_err() {
                    break;
                }
            }
            Err(status) => {
                if status.code() == tonic::Code::ResourceExhausted {
                    settings.metrics.outcome("busy");
                    tracing::warn!("recogniser saturated; shedding the stream");
                }
                let _ = events.send(Err(status)).await;
                break;
            }
        }
    }
    if let Some(speculation) = pending {
        speculation.withdraw(&settings.metrics);
    }
}

/// The transcript of a finished utterance: the speculation's when it confirms one (and it
/// succeeded), else a transcription now.
async fn finish(
    engine: &Arc<Engine>,
    settings: &StreamSettings,
    utterance: Utterance,
    confirmed: Option<Speculation>,
) -> Result<Judged, Status> {
    if let Some(speculation) = confirmed {
        match speculation.task.await {
            Ok(Ok(judged)) => {
                SttMetrics::count(&settings.metrics.speculations, "outcome", "hit");
                tracing::Span::current().record("speculation_hit", true);
                return Ok(judged);
            }
            Ok(Err(status)) if status.code() == tonic::Code::ResourceExhausted => {
                SttMetrics::count(&settings.metrics.speculations, "outcome", "busy");
            }
            Ok(Err(status)) => return Err(status),
            Err(err) => tracing::warn!(error = %err, "a speculative transcription failed"),
        }
        tracing::Span::current().record("speculation_hit", false);
    }
    judge(engine, settings, utterance).await
}

/// An utterance's event for the client and the outcome to count once it is sent.
#[derive(Debug)]
struct Judged {
    event: Event,
    outcome: &'static str,
}

/// Transcribes one utterance, or rejects it with the numbers that decided it; a saturated
/// engine ends the stream with `RESOURCE_EXHAUSTED`.
async fn judge(
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

fn samples_ms(samples: usize) -> u32 {
    (samples as u64 * 1000 / u64::from(SAMPLE_RATE)) as u32
}
