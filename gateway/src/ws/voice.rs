//! One voice connection: pump audio to the stt-service, turn each final transcript into a
//! streamed reply from the llm-service, save each exchange, follow pause/resume and takeover
//! signals, and suspend the session whenever the socket goes away.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use base64::Engine as _;
use blob_proto::llm::v1 as llm;
use blob_proto::session::v1 as session;
use blob_proto::stt::v1 as stt;
use blob_proto::stt::v1::transcribe_event::Event as SttEvent;
use futures::StreamExt as _;
use futures::stream::SplitStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Streaming};
use tracing::Instrument as _;

use super::admission::{Admitted, admit};
use super::frame::{AudioFrame, FrameError, MAX_PCM_BYTES};
use super::limits::{Beat, Heartbeat, RateLimiter, heartbeat_interval};
use super::messages::{Inbound, Outbound, Stamp, close};
use super::outbox::{Outbox, SendError};
use super::turn::{self, TurnUpdate};
use crate::state::AppState;

/// Largest WebSocket message accepted (a frame of 1 s of audio is 32 KiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Audio chunks buffered towards the stt-service.
const AUDIO_QUEUE: usize = 64;
/// Earlier exchanges sent to the LLM with each new utterance.
const HISTORY_EXCHANGES: usize = 10;

/// Why the connection ends: `Some` closes with that code, `None` means the socket is gone.
type Stop = Option<(u16, &'static str)>;

/// Initial read buffer per socket.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// `GET /ws/voice?token=…&session_id=…[&last_seq=…]`: upgrades, then admits or closes.
pub async fn voice_socket(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let span = tracing::info_span!(
        "ws.voice",
        session_id = params.get("session_id").map(String::as_str).unwrap_or_default(),
        user_id = tracing::field::Empty,
    );
    // Held for the socket's whole life, so shutdown waits until its session is suspended.
    let live = state.sockets.token();
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        // tungstenite's 128 KiB default read buffer, per socket, dwarfs a socket's other state;
        // frames are under 1 KiB and the buffer grows for the rare larger message. Writes go out
        // as they are sent (the outbox flushes each message) rather than gathering in a buffer.
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            async move {
                handle(state, params, socket).await;
                drop(live);
            }
            .instrument(span)
        })
}

async fn handle(state: AppState, params: HashMap<String, String>, mut socket: WebSocket) {
    match admit(&state, &params).await {
        Ok(admitted) => {
            tracing::Span::current().record("user_id", admitted.user_id.as_str());
            let (sink, reader) = socket.split();
            Connection::run(state, admitted, sink, reader).await;
        }
        Err((code, reason)) => {
            tracing::info!(code, reason, "voice socket refused");
            let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
            let _ = socket.send(Message::Close(Some(frame))).await;
        }
    }
}

/// Everything the connection waits on.
struct Sources {
    reader: SplitStream<WebSocket>,
    stt: Option<Streaming<stt::TranscribeEvent>>,
    updates: mpsc::Receiver<TurnUpdate>,
    signals: Option<Streaming<session::SessionSignal>>,
    heartbeat: tokio::time::Interval,
    shutdown: CancellationToken,
}

enum Input {
    Shutdown,
    Beat,
    Socket(Option<Result<Message, axum::Error>>),
    Stt(Result<Option<stt::TranscribeEvent>, tonic::Status>),
    Update(TurnUpdate),
    Signal(Result<Option<session::SessionSignal>, tonic::Status>),
}

impl Sources {
    async fn next(&mut self) -> Input {
        tokio::select! {
            () = self.shutdown.cancelled() => Input::Shutdown,
            _ = self.heartbeat.tick() => Input::Beat,
            message = self.reader.next() => Input::Socket(message),
            event = next_or_pending(&mut self.stt) => Input::Stt(event),
            Some(update) = self.updates.recv() => Input::Update(update),
            signal = next_or_pending(&mut self.signals) => Input::Signal(signal),
        }
    }
}

async fn next_or_pending<T>(stream: &mut Option<Streaming<T>>) -> Result<Option<T>, tonic::Status> {
    match stream {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}

/// A final transcript waiting for, or getting, a reply.
#[derive(Debug, Clone)]
struct Utterance {
    request_id: String,
    text: String,
    thread_id: Option<String>,
    /// When the recogniser said the speech ended (turn latency is measured from here).
    speech_end: Option<Instant>,
    /// `voice.turn`: the root of this turn's trace across the services.
    span: tracing::Span,
}

/// The reply in progress.
struct ActiveTurn {
    utterance: Utterance,
    task: JoinHandle<()>,
    /// Sentences sent so far, joined.
    sent: String,
    chunks: u32,
    /// Characters the client reported hearing (`playback.progress`) before the reply was saved.
    heard: Option<usize>,
}

/// Sequence tracking of incoming audio frames.
#[derive(Debug, Default)]
struct AudioSequence {
    expected: Option<u32>,
    lost: u64,
    reordered: u64,
}

impl AudioSequence {
    /// The number an unnumbered (legacy) chunk gets: the next one expected.
    fn next(&self) -> u32 {
        self.expected.unwrap_or(0)
    }
}

/// The state of one admitted socket.
struct Connection {
    state: AppState,
    stamp: Stamp,
    user_id: String,
    epoch: u32,
    child: llm::ChildProfile,
    history: Vec<session::ConversationTurn>,
    thread_id: Option<String>,
    paused: bool,
    outbox: Outbox,
    audio: Option<mpsc::Sender<stt::TranscribeRequest>>,
    sequence: AudioSequence,
    waiting: VecDeque<Utterance>,
    active: Option<ActiveTurn>,
    updates: mpsc::Sender<TurnUpdate>,
    limiter: RateLimiter,
    heartbeat: Heartbeat,
    /// When the recogniser last reported the end of speech.
    speech_end: Option<Instant>,
    /// The trace of the utterance being spoken, by the recogniser's utterance id.
    turn_span: Option<(u32, tracing::Span)>,
    /// The child's pauses as the recogniser last reported them, kept with the conversation.
    pauses_ms: Vec<u32>,
}

impl Connection {
    async fn run(
        state: AppState,
        admitted: Admitted,
        sink: futures::stream::SplitSink<WebSocket, Message>,
        reader: SplitStream<WebSocket>,
    ) {
        let settings = state.config.ws.clone();
        let session_id = admitted.session.session_id.clone();
        let outbox = Outbox::start(
            sink,
            settings.outbound_queue,
            admitted.last_event_seq,
            state.clone(),
            session_id.clone(),
            admitted.user_id.clone(),
        );
        let (updates, updates_rx) = mpsc::channel(16);
        let mut sources = Sources {
            reader,
            stt: None,
            updates: updates_rx,
            signals: Some(admitted.signals),
            heartbeat: heartbeat_interval(settings.heartbeat_interval),
            shutdown: state.shutdown.clone(),
        };
        let mut connection = Self {
            stamp: Stamp { session_id, conversation_id: admitted.session.conversation_id.clone() },
            user_id: admitted.user_id,
            epoch: admitted.epoch,
            child: admitted.child,
            history: admitted.turns,
            thread_id: None,
            paused: admitted.session.paused,
            outbox,
            audio: None,
            sequence: AudioSequence::default(),
            waiting: VecDeque::new(),
            active: None,
            updates,
            limiter: RateLimiter::new(settings.max_messages_per_second),
            heartbeat: Heartbeat::new(settings.max_missed_pongs),
            speech_end: None,
            turn_span: None,
            pauses_ms: admitted.pauses_ms,
            state,
        };
        connection.state.metrics.live_sockets.inc();
        tracing::info!(
            resumed = admitted.resumed,
            epoch = admitted.epoch,
            turns = connection.history.len(),
            paused = connection.paused,
            "voice socket open"
        );
        let stop = match connection.greet(admitted.resumed, admitted.replay, &mut sources).await {
            Ok(()) => connection.serve(&mut sources).await,
            Err(stop) => stop,
        };
        connection.finish(stop, sources.reader).await;
    }

    async fn greet(
        &mut self,
        resumed: bool,
        replay: Vec<session::StoredEvent>,
        sources: &mut Sources,
    ) -> Result<(), Stop> {
        let hello = if resumed {
            self.stamp.session_resumed(self.history.len(), self.paused, replay.len())
        } else {
            self.stamp.session_created(self.paused)
        };
        self.send(hello).await?;
        for event in replay {
            self.outbox.send_raw(event.json).await.map_err(stop_for)?;
        }
        if !self.paused {
            self.open_stt(sources).await?;
        }
        Ok(())
    }

    async fn serve(&mut self, sources: &mut Sources) -> Stop {
        loop {
            let input = sources.next().await;
            if let Err(stop) = self.on_input(input, sources).await {
                return stop;
            }
        }
    }

    async fn on_input(&mut self, input: Input, sources: &mut Sources) -> Result<(), Stop> {
        match input {
            Input::Shutdown => {
                tracing::info!("gateway shutting down; closing the socket");
                Err(Some((close::GOING_AWAY, "server restarting; reconnect")))
            }
            Input::Beat => match self.heartbeat.tick() {
                Beat::TimedOut => Err(Some((close::HEARTBEAT_TIMEOUT, "heartbeat timeout"))),
                Beat::Ping => self.send(self.stamp.ping()).await,
            },
            Input::Socket(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => Err(None),
            Input::Socket(Some(Ok(message))) => {
                self.heartbeat.alive();
                match message {
                    Message::Binary(bytes) => self.on_binary(&bytes).await,
                    Message::Text(text) => self.on_text(&text, sources).await,
                    _ => Ok(()),
                }
            }
            Input::Stt(Ok(Some(event))) => self.on_stt_event(event).await,
            Input::Stt(result) => self.on_stt_lost(result.err(), sources).await,
            Input::Update(update) => self.on_update(update).await,
            Input::Signal(Ok(Some(signal))) => self.on_signal(signal, sources).await,
            Input::Signal(result) => {
                tracing::warn!(error = ?result.err(), "session signals ended; pause and takeover now follow this socket only");
                sources.signals = None;
                Ok(())
            }
        }
    }

    // === audio ===

    async fn on_binary(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        match AudioFrame::parse(bytes) {
            Ok(frame) => {
                self.thread_id = Some(frame.thread_id.to_string());
                self.on_audio(frame.sequence, frame.pcm).await
            }
            Err(FrameError::TooShort | FrameError::BadMagic(_))
                if self.state.config.ws.legacy_binary =>
            {
                let sequence = self.sequence.next();
                self.on_legacy_pcm(sequence, bytes, None).await
            }
            Err(err) => self.bad_input(err.code(), &err.to_string(), None).await,
        }
    }

    /// PCM from a legacy client (raw binary or `audio_stream`), checked like a frame's.
    async fn on_legacy_pcm(
        &mut self,
        sequence: u32,
        pcm: &[u8],
        request_id: Option<&str>,
    ) -> Result<(), Stop> {
        if pcm.len() > MAX_PCM_BYTES {
            return self
                .bad_input(
                    FrameError::TooLarge(pcm.len()).code(),
                    "audio chunk too large",
                    request_id,
                )
                .await;
        }
        if !pcm.len().is_multiple_of(2) {
            return self
                .bad_input(FrameError::OddPcm.code(), "PCM has an odd number of bytes", request_id)
                .await;
        }
        self.on_audio(sequence, pcm).await
    }

    async fn on_audio(&mut self, sequence: u32, pcm: &[u8]) -> Result<(), Stop> {
        if self.paused {
            return self.ack(sequence, "paused").await;
        }
        if let Some(expected) = self.sequence.expected {
            if sequence < expected {
                // A late frame would splice audio out of order: it is dropped and counted.
                self.sequence.reordered += 1;
                return self.ack(sequence, "late").await;
            }
            self.sequence.lost += u64::from(sequence - expected);
        }
        self.sequence.expected = Some(sequence.wrapping_add(1));
        let Some(audio) = &self.audio else {
            return Ok(());
        };
        let chunk = stt::TranscribeRequest {
            message: Some(stt::transcribe_request::Message::Audio(stt::AudioChunk {
                sequence,
                pcm_s16le: pcm.to_vec(),
            })),
        };
        if audio.send(chunk).await.is_err() {
            return Ok(()); // The stt stream's end arrives as its own input.
        }
        let used = AUDIO_QUEUE - audio.capacity();
        let buffer_state = if used < AUDIO_QUEUE / 2 { "ok" } else { "high" };
        self.ack(sequence, buffer_state).await
    }

    async fn ack(&mut self, sequence: u32, buffer_state: &str) -> Result<(), Stop> {
        let ack = self.stamp.audio_ack(
            sequence,
            buffer_state,
            self.sequence.lost,
            self.sequence.reordered,
        );
        self.send(ack).await
    }

    async fn open_stt(&mut self, sources: &mut Sources) -> Result<(), Stop> {
        let (audio, rx) = mpsc::channel(AUDIO_QUEUE);
        let config = stt::TranscribeRequest {
            message: Some(stt::transcribe_request::Message::Config(stt::StreamConfig {
                sample_rate_hz: 16_000,
                language: String::new(),
                session_id: self.stamp.session_id.clone(),
                pause_profile: Some(stt::PauseProfile { pauses_ms: self.pauses_ms.clone() }),
            })),
        };
        audio.try_send(config).expect("a new channel has room");
        match self.state.stt.clone().transcribe(ReceiverStream::new(rx)).await {
            Ok(response) => {
                self.audio = Some(audio);
                self.sequence.expected = None;
                sources.stt = Some(response.into_inner());
                Ok(())
            }
            Err(status) => {
                tracing::error!(%status, "cannot open the speech stream");
                self.stt_unavailable().await
            }
        }
    }

    async fn on_stt_lost(
        &mut self,
        status: Option<tonic::Status>,
        sources: &mut Sources,
    ) -> Result<(), Stop> {
        sources.stt = None;
        self.audio = None;
        match status {
            Some(status) if status.code() == Code::ResourceExhausted => {
                tracing::warn!(%status, "speech recognition busy");
                self.send(self.stamp.error(
                    "STT_BUSY",
                    "speech recognition is busy; speak again soon",
                    None,
                ))
                .await?;
                self.open_stt(sources).await
            }
            status => {
                tracing::error!(?status, "speech stream lost");
                self.stt_unavailable().await
            }
        }
    }

    async fn stt_unavailable(&mut self) -> Result<(), Stop> {
        self.send(self.stamp.error("STT_UNAVAILABLE", "speech recognition is unavailable", None))
            .await?;
        Err(Some((close::INTERNAL, "service unavailable")))
    }

    async fn on_stt_event(&mut self, event: stt::TranscribeEvent) -> Result<(), Stop> {
        match event.event {
            Some(SttEvent::SpeechStarted(_)) => {
                if self.active.is_some() {
                    self.barge_in().await?;
                }
                self.start_turn_trace(event.utterance_id).await;
                self.send(self.stamp.state("LISTENING", None)).await
            }
            Some(SttEvent::SpeechEnded(ended)) => {
                self.speech_end = Some(Instant::now());
                if let Some(profile) = ended.pause_profile {
                    self.pauses_ms = profile.pauses_ms;
                }
                self.send(self.stamp.state("TRANSCRIBING", None)).await
            }
            Some(SttEvent::FinalTranscript(transcript)) => {
                let span = self.take_turn_span(event.utterance_id);
                let utterance = Utterance {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    text: transcript.text,
                    thread_id: self.thread_id.clone(),
                    speech_end: self.speech_end.take(),
                    span,
                };
                utterance.span.record("request_id", utterance.request_id.as_str());
                let result = self.stamp.stt_result(
                    &utterance.text,
                    transcript.confidence,
                    &transcript.language,
                    transcript.duration_ms,
                    &utterance.request_id,
                    utterance.thread_id.as_deref(),
                );
                self.send(result).await?;
                self.state.metrics.stage("transcript", utterance.speech_end);
                self.waiting.push_back(utterance);
                self.start_next_reply().await
            }
            Some(SttEvent::Rejected(rejected)) => {
                let reason = match stt::RejectReason::try_from(rejected.reason) {
                    Ok(stt::RejectReason::TooShort) => "too_short",
                    Ok(stt::RejectReason::LowConfidence) => "low_confidence",
                    Ok(stt::RejectReason::Empty) => "empty",
                    Ok(stt::RejectReason::Hallucination) => "hallucination",
                    _ => "unrecognised",
                };
                self.turn_span = None; // The turn ends here: nothing was heard to answer.
                self.send(self.stamp.stt_rejected(
                    reason,
                    rejected.duration_ms,
                    rejected.confidence,
                ))
                .await?;
                if self.active.is_none() {
                    self.send(self.stamp.state("IDLE", None)).await?;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Starts the trace of a voice turn (a new trace per turn, not per socket) and hands its
    /// context to the recogniser, so that the utterance's recognition joins it.
    async fn start_turn_trace(&mut self, utterance_id: u32) {
        let span = tracing::info_span!(
            parent: None,
            "voice.turn",
            session_id = %self.stamp.session_id,
            conversation_id = %self.stamp.conversation_id,
            utterance_id,
            request_id = tracing::field::Empty,
        );
        let trace_context = span.in_scope(blob_kit::grpc::current_trace_context);
        if let Some(audio) = &self.audio {
            let context = stt::TranscribeRequest {
                message: Some(stt::transcribe_request::Message::Context(stt::UtteranceContext {
                    utterance_id,
                    trace_context,
                })),
            };
            let _ = audio.send(context).await;
        }
        self.turn_span = Some((utterance_id, span));
    }

    /// The turn trace of an utterance (a fresh one if its start was missed).
    fn take_turn_span(&mut self, utterance_id: u32) -> tracing::Span {
        match self.turn_span.take() {
            Some((id, span)) if id == utterance_id => span,
            _ => {
                tracing::info_span!(parent: None, "voice.turn", session_id = %self.stamp.session_id, utterance_id, request_id = tracing::field::Empty)
            }
        }
    }

    // === replies ===

    async fn start_next_reply(&mut self) -> Result<(), Stop> {
        if self.active.is_some() || self.paused {
            return Ok(());
        }
        let Some(utterance) = self.waiting.pop_front() else {
            return Ok(());
        };
        self.send(self.stamp.state("THINKING", Some(&utterance.request_id))).await?;
        let skip = self.history.len().saturating_sub(HISTORY_EXCHANGES);
        let history = self.history[skip..]
            .iter()
            .flat_map(|turn| {
                [
                    llm::Turn { role: llm::Role::User.into(), text: turn.user_text.clone() },
                    llm::Turn {
                        role: llm::Role::Assistant.into(),
                        text: turn.assistant_text.clone(),
                    },
                ]
            })
            .collect();
        let request = llm::GenerateReplyRequest {
            conversation_id: self.stamp.conversation_id.clone(),
            request_id: utterance.request_id.clone(),
            child: Some(self.child.clone()),
            history,
            user_text: utterance.text.clone(),
        };
        let task =
            turn::spawn(self.state.llm.clone(), request, self.updates.clone(), &utterance.span);
        self.active =
            Some(ActiveTurn { utterance, task, sent: String::new(), chunks: 0, heard: None });
        Ok(())
    }

    async fn on_update(&mut self, update: TurnUpdate) -> Result<(), Stop> {
        match update {
            TurnUpdate::FirstToken { request_id } => {
                if let Some(active) =
                    self.active.as_ref().filter(|a| a.utterance.request_id == request_id)
                {
                    self.state.metrics.stage("first_token", active.utterance.speech_end);
                }
                Ok(())
            }
            TurnUpdate::Sentence { request_id, text } => {
                let Some(active) =
                    self.active.as_mut().filter(|a| a.utterance.request_id == request_id)
                else {
                    return Ok(()); // From a reply that was cancelled meanwhile.
                };
                let index = active.chunks;
                active.chunks += 1;
                if !active.sent.is_empty() {
                    active.sent.push(' ');
                }
                active.sent.push_str(&text);
                let thread = active.utterance.thread_id.clone();
                let speech_end = active.utterance.speech_end;
                if index == 0 {
                    self.send(self.stamp.state("RESPONDING", Some(&request_id))).await?;
                }
                self.send(self.stamp.ai_chunk(&text, index, &request_id, thread.as_deref()))
                    .await?;
                if index == 0 {
                    self.state.metrics.stage("first_sentence", speech_end);
                }
                Ok(())
            }
            TurnUpdate::Done { request_id, result } => {
                if self.active.as_ref().is_none_or(|a| a.utterance.request_id != request_id) {
                    return Ok(());
                }
                let active = self.active.take().expect("checked above");
                match result {
                    Ok(text) => {
                        let response = self.stamp.ai_response(
                            &text,
                            &self.state.config.tts,
                            &request_id,
                            active.utterance.thread_id.as_deref(),
                        );
                        self.send(response).await?;
                        self.state.metrics.stage("reply_complete", active.utterance.speech_end);
                        let interrupted = active.heard.is_some();
                        self.save_exchange(&active.utterance, text, active.heard, interrupted)
                            .await?;
                    }
                    Err(status) => {
                        tracing::warn!(%status, "reply failed");
                        let (code, message) = match status.code() {
                            Code::DeadlineExceeded => {
                                ("LLM_TIMEOUT", "Blob took too long to answer")
                            }
                            _ => ("LLM_UNAVAILABLE", "Blob cannot answer right now"),
                        };
                        self.send(self.stamp.error(code, message, Some(&request_id))).await?;
                        if !active.sent.is_empty() {
                            self.save_exchange(&active.utterance, active.sent, active.heard, true)
                                .await?;
                        }
                    }
                }
                self.send(self.stamp.state("IDLE", Some(&request_id))).await?;
                self.start_next_reply().await
            }
        }
    }

    /// The child spoke while Blob was thinking or answering: stop the reply and keep only what
    /// was already sent as Blob's turn.
    async fn barge_in(&mut self) -> Result<(), Stop> {
        let Some(active) = self.active.take() else {
            return Ok(());
        };
        active.task.abort();
        tracing::info!(request_id = %active.utterance.request_id, chunks = active.chunks, "reply cancelled by barge-in");
        let cancelled = self.stamp.ai_cancelled(&active.utterance.request_id, &active.sent);
        self.send(cancelled).await?;
        self.save_exchange(&active.utterance, active.sent, active.heard, true).await
    }

    /// Stores the exchange; the local history keeps it even when the store is down.
    async fn save_exchange(
        &mut self,
        utterance: &Utterance,
        reply: String,
        heard: Option<usize>,
        interrupted: bool,
    ) -> Result<(), Stop> {
        let assistant_text = match heard {
            Some(chars) => reply.chars().take(chars).collect(),
            None => reply,
        };
        let turn = session::ConversationTurn {
            request_id: utterance.request_id.clone(),
            user_text: utterance.text.clone(),
            assistant_text,
            created_at_ms: time::OffsetDateTime::now_utc().unix_timestamp() * 1000,
            interrupted,
        };
        self.history.push(turn.clone());
        let request = self.state.request(session::AppendTurnsRequest {
            session_id: self.stamp.session_id.clone(),
            user_id: self.user_id.clone(),
            turns: vec![turn],
            pause_profile: (!self.pauses_ms.is_empty())
                .then(|| session::PauseProfile { pauses_ms: self.pauses_ms.clone() }),
        });
        let mut sessions = self.state.sessions.clone();
        let saved = sessions.append_turns(request).instrument(utterance.span.clone()).await;
        if let Err(status) = saved {
            tracing::error!(%status, "could not save the exchange");
            let message = self.stamp.error(
                "STATE_UNAVAILABLE",
                "the conversation could not be saved",
                Some(&utterance.request_id),
            );
            return self.send(message).await;
        }
        Ok(())
    }

    // === client requests ===

    async fn on_text(&mut self, text: &str, sources: &mut Sources) -> Result<(), Stop> {
        if !self.limiter.allow() {
            return Err(Some((close::RATE_LIMITED, "too many messages")));
        }
        let inbound: Inbound = match serde_json::from_str(text) {
            Ok(inbound) => inbound,
            Err(err) => {
                let message = format!("not a valid message: {err}");
                return self.send(self.stamp.error("INVALID_MESSAGE", &message, None)).await;
            }
        };
        let request_id = inbound.meta.request_id.as_deref();
        match (inbound.kind.as_str(), inbound.action.as_str()) {
            (_, "pong") => Ok(()),
            ("request", "ping") => self.send(self.stamp.pong(request_id)).await,
            ("request", "pause") => self.pause_request(true, request_id, sources).await,
            ("request", "resume") => self.pause_request(false, request_id, sources).await,
            ("request", "audio_stream") => self.on_audio_stream(&inbound.payload, request_id).await,
            ("request", "playback.progress") => {
                self.on_playback(&inbound.payload, request_id).await
            }
            ("request", "turn.end") => self.end_turn(request_id).await,
            ("request", action) => {
                let message = format!("unknown action {action:?}");
                self.send(self.stamp.error("UNKNOWN_ACTION", &message, request_id)).await
            }
            (kind, _) => {
                let message = format!("clients send type \"request\", not {kind:?}");
                self.send(self.stamp.error("INVALID_MESSAGE", &message, request_id)).await
            }
        }
    }

    /// Invalid input: an `error` event, counted against the rate limit.
    async fn bad_input(
        &mut self,
        code: &str,
        message: &str,
        request_id: Option<&str>,
    ) -> Result<(), Stop> {
        if !self.limiter.allow() {
            return Err(Some((close::RATE_LIMITED, "too many messages")));
        }
        self.send(self.stamp.error(code, message, request_id)).await
    }

    /// Legacy `audio_stream {audio: base64 PCM, sequence?}`.
    async fn on_audio_stream(
        &mut self,
        payload: &serde_json::Value,
        request_id: Option<&str>,
    ) -> Result<(), Stop> {
        if self.paused {
            return self
                .send(self.stamp.error("SESSION_PAUSED", "the session is paused", request_id))
                .await;
        }
        let decoded = payload["audio"]
            .as_str()
            .and_then(|audio| base64::engine::general_purpose::STANDARD.decode(audio).ok());
        let Some(pcm) = decoded else {
            return self
                .send(self.stamp.error(
                    "INVALID_AUDIO",
                    "payload.audio must be base64 PCM",
                    request_id,
                ))
                .await;
        };
        let sequence = payload["sequence"]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or_else(|| self.sequence.next());
        self.on_legacy_pcm(sequence, &pcm, request_id).await
    }

    /// `playback.progress {request_id, chars_spoken}`: the phone's speech was cut off.
    async fn on_playback(
        &mut self,
        payload: &serde_json::Value,
        request_id: Option<&str>,
    ) -> Result<(), Stop> {
        let (Some(turn_id), Some(chars)) =
            (payload["request_id"].as_str(), payload["chars_spoken"].as_u64())
        else {
            let message = "playback.progress needs request_id and chars_spoken";
            return self.send(self.stamp.error("INVALID_MESSAGE", message, request_id)).await;
        };
        let chars = usize::try_from(chars).unwrap_or(usize::MAX);
        if let Some(active) = self.active.as_mut().filter(|a| a.utterance.request_id == turn_id) {
            active.heard = Some(chars);
        } else if let Some(turn) = self.history.iter_mut().rev().find(|t| t.request_id == turn_id) {
            turn.assistant_text = turn.assistant_text.chars().take(chars).collect();
            turn.interrupted = true;
            let request = self.state.request(session::TrimTurnRequest {
                session_id: self.stamp.session_id.clone(),
                user_id: self.user_id.clone(),
                request_id: turn_id.to_owned(),
                assistant_chars: u32::try_from(chars).unwrap_or(u32::MAX),
            });
            if let Err(status) = self.state.sessions.clone().trim_turn(request).await {
                tracing::error!(%status, "could not trim the exchange");
                return self
                    .send(self.stamp.error(
                        "STATE_UNAVAILABLE",
                        "the conversation could not be saved",
                        request_id,
                    ))
                    .await;
            }
        } else {
            return self
                .send(self.stamp.error("UNKNOWN_TURN", "no reply with that request_id", request_id))
                .await;
        }
        let payload = serde_json::json!({ "request_id": turn_id, "chars_spoken": chars });
        self.send(self.stamp.response("playback.progress", payload, request_id)).await
    }

    /// `turn.end`: the child is done (a push-to-talk button let go). The recogniser ends the
    /// utterance in progress at once, after every frame sent before the request, rather than
    /// waiting for the silence that would end it.
    async fn end_turn(&mut self, request_id: Option<&str>) -> Result<(), Stop> {
        let flush = stt::TranscribeRequest {
            message: Some(stt::transcribe_request::Message::Flush(stt::Flush {})),
        };
        let flushed = match &self.audio {
            Some(audio) => audio.send(flush).await.is_ok(),
            None => false,
        };
        let payload = serde_json::json!({ "flushed": flushed });
        self.send(self.stamp.response("turn.end", payload, request_id)).await
    }

    async fn pause_request(
        &mut self,
        paused: bool,
        request_id: Option<&str>,
        sources: &mut Sources,
    ) -> Result<(), Stop> {
        let request = self.state.request(session::SetPausedRequest {
            session_id: self.stamp.session_id.clone(),
            user_id: self.user_id.clone(),
            paused,
        });
        if let Err(status) = self.state.sessions.clone().set_paused(request).await {
            tracing::error!(%status, "could not change the paused state");
            return self
                .send(self.stamp.error(
                    "STATE_UNAVAILABLE",
                    "the session could not be changed",
                    request_id,
                ))
                .await;
        }
        self.apply_pause(paused, sources).await?;
        let action = if paused { "pause" } else { "resume" };
        self.send(self.stamp.response(action, serde_json::json!({ "paused": paused }), request_id))
            .await
    }

    /// Enters or leaves the paused state (idempotent: signals echo our own changes).
    async fn apply_pause(&mut self, paused: bool, sources: &mut Sources) -> Result<(), Stop> {
        if self.paused == paused {
            return Ok(());
        }
        self.paused = paused;
        if paused {
            // No speech or reply work while paused: end the speech stream, drop what waits.
            self.audio = None;
            sources.stt = None;
            self.waiting.clear();
            self.barge_in().await?;
            self.send(self.stamp.session_paused()).await?;
            self.send(self.stamp.state("IDLE", None)).await
        } else {
            self.open_stt(sources).await?;
            self.send(self.stamp.session_unpaused()).await
        }
    }

    async fn on_signal(
        &mut self,
        signal: session::SessionSignal,
        sources: &mut Sources,
    ) -> Result<(), Stop> {
        match session::SignalKind::try_from(signal.kind) {
            Ok(session::SignalKind::Paused) => self.apply_pause(true, sources).await,
            Ok(session::SignalKind::Resumed) => self.apply_pause(false, sources).await,
            Ok(session::SignalKind::Attached) if signal.epoch > self.epoch => {
                tracing::info!(epoch = signal.epoch, "a newer socket took the session over");
                Err(Some((close::TAKEN_OVER, "session taken over by another connection")))
            }
            Ok(session::SignalKind::Ended) => Err(Some((close::NORMAL, "session ended"))),
            _ => Ok(()),
        }
    }

    // === plumbing ===

    async fn send(&mut self, message: Outbound) -> Result<(), Stop> {
        if message.kind == "error" {
            let code = message.payload["code"].as_str().unwrap_or("UNKNOWN").to_owned();
            self.state.metrics.ws_errors.get_or_create(&vec![("code", code)]).inc();
        }
        self.outbox.send(message).await.map_err(stop_for)
    }

    /// Cancels work in flight, suspends the session (unless a newer socket holds it), closes.
    async fn finish(mut self, stop: Stop, reader: SplitStream<WebSocket>) {
        self.state.metrics.live_sockets.dec();
        if let Some((code, _)) = stop {
            self.state.metrics.ws_closes.get_or_create(&vec![("code", code.to_string())]).inc();
        }
        if let Some(active) = self.active.take() {
            active.task.abort();
        }
        self.audio = None;
        let keep_session = !matches!(stop, Some((close::TAKEN_OVER | close::NORMAL, _)));
        if keep_session {
            let request = self.state.request(session::SessionRef {
                session_id: self.stamp.session_id.clone(),
                user_id: self.user_id.clone(),
                epoch: self.epoch,
            });
            match self.state.sessions.clone().suspend_session(request).await {
                Ok(_) => tracing::info!(?stop, "voice socket closed; session suspended"),
                Err(status) if status.code() == Code::FailedPrecondition => {
                    tracing::info!("voice socket closed; a newer socket holds the session");
                }
                Err(status) => tracing::error!(%status, "could not suspend the session"),
            }
        }
        if self.sequence.lost + self.sequence.reordered + self.outbox.dropped_acks() > 0 {
            tracing::info!(
                lost_frames = self.sequence.lost,
                reordered_frames = self.sequence.reordered,
                dropped_acks = self.outbox.dropped_acks(),
                "audio and ack losses on this socket"
            );
        }
        self.outbox.close(stop, reader).await;
    }
}

fn stop_for(err: SendError) -> Stop {
    match err {
        SendError::Closed => None,
        SendError::TooSlow => Some((close::SLOW_CLIENT, "client reads too slowly")),
    }
}
