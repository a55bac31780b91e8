//! Recognition: each utterance transcribed in stream order, and the speculative transcription
//! of the turn so far that a pause starts and the child's next word withdraws.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use blob_proto::stt::v1::TranscribeEvent;
use tokio::sync::mpsc;
use tonic::Status;
use tracing::Instrument as _;

use super::judging::{Judged, judge};
use super::{EventSender, StreamSettings};
use crate::engine::Engine;
use crate::metrics::SttMetrics;
use crate::vad::Utterance;

/// Work for the transcription task, in stream order.
#[derive(Debug)]
pub(super) enum Job {
    /// Transcribe the turn so far, in case the turn ends at this pause.
    Speculate { utterance_id: u32, speculation: u32, utterance: Utterance },
    /// The child went on: stop and drop that speculation.
    Withdraw { speculation: u32 },
    /// A finished utterance: its transcript goes to the client.
    Final { utterance_id: u32, utterance: Utterance },
}

/// W3C trace context headers.
type TraceContext = HashMap<String, String>;

/// Trace contexts the client sent for its utterances, by utterance id (the latest few).
#[derive(Clone, Default)]
pub(super) struct TraceContexts(Arc<std::sync::Mutex<VecDeque<(u32, TraceContext)>>>);

impl TraceContexts {
    const KEPT: usize = 8;

    pub(super) fn insert(&self, utterance_id: u32, context: HashMap<String, String>) {
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

pub(super) async fn transcribe_in_order(
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
