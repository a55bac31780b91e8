//! One admitted voice socket: the loop that waits on the client, the recogniser, the reply, the
//! session's writer and signals, and the heartbeat, and hands each input to the part that owns
//! its state: [`AudioIngress`] (frames → speech stream), [`Conversation`] (turns, replies,
//! barge-in, pause), [`Persistence`] (the session-service writes). Generic over the socket
//! (`Sink`/`Stream` of WebSocket messages) and the services ([`Downstream`]), so it runs over
//! channels in the unit tests.

use std::time::Duration;

use axum::extract::ws::Message;
use blob_proto::session::v1 as session;
use blob_proto::stt::v1 as stt;
use blob_proto::stt::v1::transcribe_event::Event as SttEvent;
use blob_voice_protocol::{
    ClientMessage, ClientRequest, CloseCode, Empty, ErrorCode, PauseAnswer, RejectReason,
    ResumeReason, ServerEvent, ServerMessage, SessionCreated, SessionResumed, TtsHint,
    TurnEndAnswer,
};
use futures::{Sink, Stream, StreamExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use super::admission::Admitted;
use super::audio::AudioIngress;
use super::conversation::{Conversation, Effect, Outgoing, Setup};
use super::downstream::{Downstream, EventStream};
use super::limits::{AudioBudget, AudioVerdict, Beat, Heartbeat, RateLimiter, heartbeat_interval};
use super::messages::Stamp;
use super::outbox::{Outbox, SendError};
use super::persist::{Done, Job, Persistence};
use super::turn::{self, TurnUpdate};
use crate::config::WsSettings;
use crate::metrics::GatewayMetrics;

/// Why the connection ends: `Some` closes with that code, `None` means the socket is gone.
pub type Stop = Option<(CloseCode, &'static str)>;

/// How long the session's last writes may take once the socket has closed.
const PERSIST_GRACE: Duration = Duration::from_secs(10);

/// What a connection runs with besides its socket.
#[derive(Clone)]
pub struct Context<D> {
    /// The services.
    pub downstream: D,
    /// The socket's limits.
    pub settings: WsSettings,
    /// How the phone speaks replies.
    pub tts: TtsHint,
    /// Socket and turn metrics.
    pub metrics: GatewayMetrics,
    /// Cancelled when the gateway shuts down.
    pub shutdown: CancellationToken,
}

/// Everything the connection waits on.
struct Sources<R> {
    reader: R,
    speech: Option<EventStream<stt::TranscribeEvent>>,
    replies: mpsc::Receiver<TurnUpdate>,
    persisted: mpsc::UnboundedReceiver<Done>,
    signals: Option<EventStream<session::SessionSignal>>,
    /// When the speech stream broke: when to open it again, the wait after that, and when to
    /// give up.
    respeak:
        Option<(std::pin::Pin<Box<tokio::time::Sleep>>, std::time::Duration, tokio::time::Instant)>,
    /// When the signal stream broke: when to subscribe again, and the wait after that.
    rewatch: Option<(std::pin::Pin<Box<tokio::time::Sleep>>, std::time::Duration)>,
    heartbeat: tokio::time::Interval,
    shutdown: CancellationToken,
    /// The client's messages wait while a pause or resume is being stored, so that what the
    /// client sends after it is read in the state it asked for (audio is not transcribed after
    /// a pause, a `turn.end` finds no speech stream).
    held: bool,
}

enum Input<E> {
    Shutdown,
    Beat,
    Socket(Option<Result<Message, E>>),
    Speech(Option<Result<stt::TranscribeEvent, tonic::Status>>),
    Reply(TurnUpdate),
    Persisted(Done),
    Signal(Option<Result<session::SessionSignal, tonic::Status>>),
    Rewatch(std::time::Duration),
    Respeak,
}

impl<R, E> Sources<R>
where
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    async fn next(&mut self) -> Input<E> {
        tokio::select! {
            () = self.shutdown.cancelled() => Input::Shutdown,
            _ = self.heartbeat.tick() => Input::Beat,
            message = self.reader.next(), if !self.held => Input::Socket(message),
            event = next_or_pending(&mut self.speech) => Input::Speech(event),
            Some(update) = self.replies.recv() => Input::Reply(update),
            Some(done) = self.persisted.recv() => Input::Persisted(done),
            signal = next_or_pending(&mut self.signals) => Input::Signal(signal),
            backoff = rewatch_due(&mut self.rewatch) => Input::Rewatch(backoff),
            () = respeak_due(&self.respeak) => Input::Respeak,
        }
    }
}

async fn rewatch_due(
    rewatch: &mut Option<(std::pin::Pin<Box<tokio::time::Sleep>>, std::time::Duration)>,
) -> std::time::Duration {
    match rewatch {
        Some((sleep, backoff)) => {
            sleep.as_mut().await;
            let backoff = *backoff;
            *rewatch = None;
            backoff
        }
        None => std::future::pending().await,
    }
}

async fn respeak_due(
    respeak: &Option<(
        std::pin::Pin<Box<tokio::time::Sleep>>,
        std::time::Duration,
        tokio::time::Instant,
    )>,
) {
    match respeak {
        Some((sleep, _, _)) => tokio::time::sleep_until(sleep.deadline()).await,
        None => std::future::pending().await,
    }
}

/// How long a socket waits for a recogniser to come back after its speech stream broke.
const RESPEAK_WINDOW: std::time::Duration = std::time::Duration::from_secs(20);

/// The first wait before subscribing to a broken signal stream again, and the longest.
const REWATCH_FIRST: std::time::Duration = std::time::Duration::from_millis(200);
const REWATCH_MAX: std::time::Duration = std::time::Duration::from_secs(5);

async fn next_or_pending<T>(
    stream: &mut Option<EventStream<T>>,
) -> Option<Result<T, tonic::Status>> {
    match stream {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// The state of one admitted socket.
struct Connection<D: Downstream> {
    context: Context<D>,
    stamp: Stamp,
    user_id: String,
    epoch: u32,
    outbox: Outbox,
    audio: AudioIngress,
    conversation: Conversation,
    reply: Option<JoinHandle<()>>,
    replies: mpsc::Sender<TurnUpdate>,
    persistence: Persistence,
    limiter: RateLimiter,
    audio_budget: AudioBudget,
    heartbeat: Heartbeat,
}

/// Serves an admitted socket until it closes, then suspends its session (unless a newer
/// socket holds it or the session ended).
pub async fn run<D, S, R, E>(context: Context<D>, admitted: Admitted, sink: S, reader: R)
where
    D: Downstream,
    S: Sink<Message> + Send + Unpin + 'static,
    R: Stream<Item = Result<Message, E>> + Send + Unpin + 'static,
    E: Send + 'static,
{
    let settings = context.settings.clone();
    let session_id = admitted.session.session_id.clone();
    let outbox = Outbox::start(
        sink,
        settings.outbound_queue,
        admitted.last_event_seq,
        context.downstream.clone(),
        session_id.clone(),
        admitted.user_id.clone(),
    );
    let (replies, replies_rx) = mpsc::channel(16);
    let (persisted, persisted_rx) = mpsc::unbounded_channel();
    let mut sources = Sources {
        reader,
        speech: None,
        replies: replies_rx,
        persisted: persisted_rx,
        signals: Some(admitted.signals),
        rewatch: None,
        respeak: None,
        heartbeat: heartbeat_interval(settings.heartbeat_interval),
        shutdown: context.shutdown.clone(),
        held: false,
    };
    let conversation = Conversation::new(Setup {
        session_id: session_id.clone(),
        conversation_id: admitted.session.conversation_id.clone(),
        child: admitted.child,
        history: admitted.turns,
        pauses_ms: admitted.pauses_ms,
        paused: admitted.session.paused,
        tts: context.tts.clone(),
    });
    let mut connection = Connection {
        stamp: Stamp {
            session_id: session_id.clone(),
            conversation_id: admitted.session.conversation_id.clone(),
        },
        persistence: Persistence::start(
            context.downstream.clone(),
            session_id,
            admitted.user_id.clone(),
            persisted,
        ),
        user_id: admitted.user_id,
        epoch: admitted.epoch,
        outbox,
        audio: AudioIngress::new(settings.legacy_binary),
        conversation,
        reply: None,
        replies,
        limiter: RateLimiter::new(settings.max_messages_per_second),
        audio_budget: AudioBudget::new(settings.max_audio_speed, settings.audio_burst_seconds),
        heartbeat: Heartbeat::new(settings.max_missed_pongs),
        context,
    };
    connection.context.metrics.live_sockets.inc();
    tracing::info!(
        resumed = admitted.resumed,
        epoch = admitted.epoch,
        turns = connection.conversation.exchanges(),
        paused = connection.conversation.paused(),
        "voice socket open"
    );
    let stop = match connection.greet(admitted.resumed, admitted.replay, &mut sources).await {
        Ok(()) => connection.serve(&mut sources).await,
        Err(stop) => stop,
    };
    let Sources { reader, .. } = sources;
    connection.finish(stop, reader).await;
}

impl<D: Downstream> Connection<D> {
    async fn greet<R>(
        &mut self,
        resumed: bool,
        replay: Vec<session::StoredEvent>,
        sources: &mut Sources<R>,
    ) -> Result<(), Stop> {
        let session_id = self.stamp.session_id.clone();
        let paused = self.conversation.paused();
        let hello = if resumed {
            ServerEvent::SessionResumed(SessionResumed {
                session_id,
                resumed_turns_count: Some(self.conversation.exchanges() as u64),
                paused: Some(paused),
                replayed: Some(replay.len() as u64),
                reason: ResumeReason::Reconnected,
            })
        } else {
            ServerEvent::SessionCreated(SessionCreated { session_id, paused })
        };
        self.send(self.stamp.event(hello)).await?;
        for event in replay {
            self.outbox.send_raw(event.json).await.map_err(stop_for)?;
        }
        if !paused {
            self.open_speech(sources).await?;
        }
        Ok(())
    }

    async fn serve<R, E>(&mut self, sources: &mut Sources<R>) -> Stop
    where
        R: Stream<Item = Result<Message, E>> + Unpin,
    {
        loop {
            let input = sources.next().await;
            if let Err(stop) = self.on_input(input, sources).await {
                return stop;
            }
        }
    }

    async fn on_input<R, E>(
        &mut self,
        input: Input<E>,
        sources: &mut Sources<R>,
    ) -> Result<(), Stop> {
        match input {
            Input::Shutdown => {
                tracing::info!("gateway shutting down; closing the socket");
                Err(Some((CloseCode::GoingAway, "server restarting; reconnect")))
            }
            Input::Beat => match self.heartbeat.tick() {
                Beat::TimedOut => Err(Some((CloseCode::HeartbeatTimeout, "heartbeat timeout"))),
                Beat::Ping => self.send(self.stamp.event(ServerEvent::Ping(Empty {}))).await,
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
            Input::Speech(Some(Ok(event))) => self.on_speech(event, sources).await,
            Input::Speech(ended) => self.on_speech_lost(ended.and_then(Result::err), sources).await,
            Input::Reply(update) => self.on_reply(update, sources).await,
            Input::Persisted(done) => self.on_persisted(done, sources).await,
            Input::Signal(Some(Ok(signal))) => self.on_signal(signal, sources).await,
            Input::Signal(ended) => {
                // The session-service restarted or a rollout moved it: subscribe again, so an
                // end, an erasure, a revoke or a takeover is never missed.
                tracing::warn!(error = ?ended.and_then(Result::err), "session signals broke; subscribing again");
                sources.signals = None;
                sources.rewatch =
                    Some((Box::pin(tokio::time::sleep(REWATCH_FIRST)), REWATCH_FIRST));
                Ok(())
            }
            Input::Rewatch(waited) => self.rewatch(waited, sources).await,
            Input::Respeak => self.respeak(sources).await,
        }
    }

    // === effects ===

    /// Carries out what the conversation decided, in order.
    async fn apply<R>(
        &mut self,
        effects: Vec<Effect>,
        sources: &mut Sources<R>,
    ) -> Result<(), Stop> {
        for effect in effects {
            match effect {
                Effect::Send(outgoing) => self.send_outgoing(outgoing).await?,
                Effect::StartReply { request, span } => {
                    let task = turn::spawn(
                        self.context.downstream.clone(),
                        request,
                        self.replies.clone(),
                        &span,
                    );
                    if let Some(old) = self.reply.replace(task) {
                        old.abort();
                    }
                }
                Effect::CancelReply => {
                    if let Some(task) = self.reply.take() {
                        task.abort();
                    }
                }
                Effect::Persist(job) => self.persistence.push(job).await,
                Effect::TraceUtterance { utterance_id, trace_context } => {
                    self.audio.context(utterance_id, trace_context).await;
                }
                Effect::Stage { stage, speech_end } => {
                    self.context.metrics.stage(stage, speech_end);
                }
                Effect::OpenSpeech => self.open_speech(sources).await?,
                Effect::CloseSpeech => {
                    self.audio.detach();
                    sources.speech = None;
                }
            }
        }
        Ok(())
    }

    async fn send_outgoing(&mut self, outgoing: Outgoing) -> Result<(), Stop> {
        let message = self.stamp.message(
            outgoing.event,
            outgoing.request_id.as_deref(),
            outgoing.thread_id.as_deref(),
        );
        self.send(message).await
    }

    // === audio and the recogniser ===

    /// Whether audio of `bytes` may pass; past the socket's audio budget it is dropped with an
    /// `AUDIO_TOO_FAST` error, and if it goes on the socket closes.
    async fn within_audio_budget(
        &mut self,
        bytes: usize,
        request_id: Option<&str>,
    ) -> Result<bool, Stop> {
        match self.audio_budget.take(bytes) {
            AudioVerdict::Take => Ok(true),
            AudioVerdict::Drop => {
                let error = ServerEvent::error(
                    ErrorCode::AudioTooFast,
                    "audio is arriving faster than real time allows; it was dropped",
                );
                self.send(self.stamp.message(error, request_id, None)).await?;
                Ok(false)
            }
            AudioVerdict::Close => Err(Some((CloseCode::RateLimited, "audio too fast"))),
        }
    }

    async fn on_binary(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        if !self.within_audio_budget(bytes.len(), None).await? {
            return Ok(());
        }
        match self.audio.binary(bytes, self.conversation.paused()).await {
            Ok(ack) => self.ack(ack).await,
            Err(err) => self.bad_input(err.code(), &err.to_string(), None).await,
        }
    }

    async fn ack(&mut self, ack: Option<blob_voice_protocol::AudioAck>) -> Result<(), Stop> {
        match ack {
            Some(ack) => self.send(self.stamp.event(ServerEvent::AudioAck(ack))).await,
            None => Ok(()),
        }
    }

    fn speech_config(&self) -> stt::StreamConfig {
        stt::StreamConfig {
            sample_rate_hz: 16_000,
            language: String::new(),
            session_id: self.stamp.session_id.clone(),
            pause_profile: Some(stt::PauseProfile {
                pauses_ms: self.conversation.pauses_ms().to_vec(),
            }),
        }
    }

    async fn open_speech<R>(&mut self, sources: &mut Sources<R>) -> Result<(), Stop> {
        let config = self.speech_config();
        match self.context.downstream.open_speech(config).await {
            Ok(speech) => {
                self.audio.attach(speech.audio);
                sources.speech = Some(speech.events);
                Ok(())
            }
            Err(status) if status.code() == Code::ResourceExhausted => {
                // Every recogniser is holding all the streams it can: this socket goes, the
                // session waits, and the client comes back in a moment (perhaps elsewhere).
                tracing::warn!(%status, "no recogniser has room for another stream");
                let busy = ServerEvent::error(
                    ErrorCode::SttBusy,
                    "speech recognition is at capacity; reconnect in a moment",
                );
                self.send(self.stamp.event(busy)).await?;
                Err(Some((CloseCode::TryAgainLater, "recogniser at capacity")))
            }
            Err(status) => {
                tracing::error!(%status, "cannot open the speech stream");
                self.speech_unavailable().await
            }
        }
    }

    async fn on_speech_lost<R>(
        &mut self,
        status: Option<tonic::Status>,
        sources: &mut Sources<R>,
    ) -> Result<(), Stop> {
        sources.speech = None;
        self.audio.detach();
        match status {
            Some(status) if status.code() == Code::ResourceExhausted => {
                tracing::warn!(%status, "speech recognition busy");
                let busy = ServerEvent::error(
                    ErrorCode::SttBusy,
                    "speech recognition is busy; speak again soon",
                );
                self.send(self.stamp.event(busy)).await?;
                self.open_speech(sources).await
            }
            status => {
                // A restart or a rollout of the recogniser: the utterance is lost, the socket
                // stays while another recogniser comes back.
                tracing::warn!(?status, "speech stream lost; opening another");
                let lost = ServerEvent::error(
                    ErrorCode::SttInterrupted,
                    "speech recognition restarted; the last words were lost, say them again",
                );
                self.send(self.stamp.event(lost)).await?;
                let first = REWATCH_FIRST;
                let give_up = tokio::time::Instant::now() + RESPEAK_WINDOW;
                sources.respeak = Some((Box::pin(tokio::time::sleep(first)), first, give_up));
                Ok(())
            }
        }
    }

    /// Tries to open the speech stream again; gives up (`STT_UNAVAILABLE`, 1011) once the
    /// recogniser has been away for [`RESPEAK_WINDOW`].
    async fn respeak<R>(&mut self, sources: &mut Sources<R>) -> Result<(), Stop> {
        let Some((_, waited, give_up)) = sources.respeak.take() else {
            return Ok(());
        };
        if self.conversation.paused() || sources.speech.is_some() {
            // Paused (resuming opens the stream), or already open again.
            return Ok(());
        }
        let config = self.speech_config();
        match self.context.downstream.open_speech(config).await {
            Ok(speech) => {
                tracing::info!("speech stream open again");
                self.audio.attach(speech.audio);
                sources.speech = Some(speech.events);
                Ok(())
            }
            Err(status) if tokio::time::Instant::now() < give_up => {
                let next = (waited * 2).min(REWATCH_MAX);
                tracing::warn!(%status, retry_in = ?next, "no recogniser yet");
                sources.respeak = Some((Box::pin(tokio::time::sleep(next)), next, give_up));
                Ok(())
            }
            Err(status) => {
                tracing::error!(%status, "the recogniser did not come back");
                self.speech_unavailable().await
            }
        }
    }

    async fn speech_unavailable(&mut self) -> Result<(), Stop> {
        let error =
            ServerEvent::error(ErrorCode::SttUnavailable, "speech recognition is unavailable");
        self.send(self.stamp.event(error)).await?;
        Err(Some((CloseCode::Internal, "service unavailable")))
    }

    async fn on_speech<R>(
        &mut self,
        event: stt::TranscribeEvent,
        sources: &mut Sources<R>,
    ) -> Result<(), Stop> {
        let effects = match event.event {
            Some(SttEvent::SpeechStarted(_)) => {
                self.conversation.speech_started(event.utterance_id)
            }
            Some(SttEvent::SpeechEnded(ended)) => {
                self.conversation.speech_ended(ended.pause_profile.map(|p| p.pauses_ms))
            }
            Some(SttEvent::FinalTranscript(transcript)) => {
                let thread_id = self.audio.thread_id().map(str::to_owned);
                self.conversation.transcript(event.utterance_id, transcript, thread_id)
            }
            Some(SttEvent::Rejected(rejected)) => {
                let reason = match stt::RejectReason::try_from(rejected.reason) {
                    Ok(stt::RejectReason::TooShort) => RejectReason::TooShort,
                    Ok(stt::RejectReason::LowConfidence) => RejectReason::LowConfidence,
                    Ok(stt::RejectReason::Empty) => RejectReason::Empty,
                    Ok(stt::RejectReason::Hallucination) => RejectReason::Hallucination,
                    _ => RejectReason::Unrecognised,
                };
                self.conversation.rejected(reason, rejected.duration_ms, rejected.confidence)
            }
            None => Vec::new(),
        };
        self.apply(effects, sources).await
    }

    async fn on_reply<R>(
        &mut self,
        update: TurnUpdate,
        sources: &mut Sources<R>,
    ) -> Result<(), Stop> {
        let effects = match update {
            TurnUpdate::FirstToken { request_id } => self.conversation.first_token(&request_id),
            TurnUpdate::Sentence { request_id, text } => {
                self.conversation.sentence(&request_id, text)
            }
            TurnUpdate::Done { request_id, result } => {
                if let Err(status) = &result {
                    tracing::warn!(%status, "reply failed");
                }
                let effects =
                    self.conversation.reply_done(&request_id, result.map_err(|s| s.code()));
                if !effects.is_empty() {
                    self.reply = None; // The task has ended by itself.
                }
                effects
            }
        };
        self.apply(effects, sources).await
    }

    // === the session's writes and signals ===

    async fn on_persisted<R>(&mut self, done: Done, sources: &mut Sources<R>) -> Result<(), Stop> {
        match done {
            Done::Saved { request_id, stored } => {
                let effects = self.conversation.saved(&request_id, stored);
                self.apply(effects, sources).await
            }
            Done::Trimmed { progress, answer_to, stored } => {
                let event = if stored {
                    ServerEvent::PlaybackProgress(progress)
                } else {
                    ServerEvent::error(
                        ErrorCode::StateUnavailable,
                        "the conversation could not be saved",
                    )
                };
                self.send(self.stamp.message(event, answer_to.as_deref(), None)).await
            }
            Done::PauseSet { answer_to, stored: false, .. } => {
                sources.held = false;
                let error = ServerEvent::error(
                    ErrorCode::StateUnavailable,
                    "the session could not be changed",
                );
                self.send(self.stamp.message(error, answer_to.as_deref(), None)).await
            }
            Done::PauseSet { paused, answer_to, stored: true } => {
                sources.held = false;
                let effects = self.conversation.set_paused(paused);
                self.apply(effects, sources).await?;
                let answer = PauseAnswer { paused };
                let event =
                    if paused { ServerEvent::Paused(answer) } else { ServerEvent::Resumed(answer) };
                self.send(self.stamp.message(event, answer_to.as_deref(), None)).await
            }
        }
    }

    /// Subscribes to the session's signals again, then catches up with what happened while
    /// nobody listened: the session ended (or was erased, or its access revoked), another
    /// socket took it over, or it was paused or resumed.
    async fn rewatch<R>(
        &mut self,
        waited: std::time::Duration,
        sources: &mut Sources<R>,
    ) -> Result<(), Stop> {
        let session_id = self.stamp.session_id.clone();
        match self.context.downstream.rewatch(&session_id, &self.user_id).await {
            Ok((signals, now)) => {
                tracing::info!("session signals subscribed again");
                sources.signals = Some(signals);
                if now.user_id != self.user_id || now.state == session::SessionState::Ended as i32 {
                    return Err(Some((CloseCode::Normal, "session ended")));
                }
                if now.connection_count > self.epoch {
                    return Err(Some((
                        CloseCode::TakenOver,
                        "session taken over by another connection",
                    )));
                }
                if now.paused != self.conversation.paused() {
                    let effects = self.conversation.set_paused(now.paused);
                    self.apply(effects, sources).await?;
                }
                Ok(())
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                Err(Some((CloseCode::Normal, "session ended")))
            }
            Err(status) => {
                let next = (waited * 2).min(REWATCH_MAX);
                tracing::warn!(%status, retry_in = ?next, "cannot subscribe to session signals yet");
                sources.rewatch = Some((Box::pin(tokio::time::sleep(next)), next));
                Ok(())
            }
        }
    }

    async fn on_signal<R>(
        &mut self,
        signal: session::SessionSignal,
        sources: &mut Sources<R>,
    ) -> Result<(), Stop> {
        match session::SignalKind::try_from(signal.kind) {
            Ok(session::SignalKind::Paused) => {
                let effects = self.conversation.set_paused(true);
                self.apply(effects, sources).await
            }
            Ok(session::SignalKind::Resumed) => {
                let effects = self.conversation.set_paused(false);
                self.apply(effects, sources).await
            }
            Ok(session::SignalKind::Attached) if signal.epoch > self.epoch => {
                tracing::info!(epoch = signal.epoch, "a newer socket took the session over");
                Err(Some((CloseCode::TakenOver, "session taken over by another connection")))
            }
            Ok(session::SignalKind::Ended) => Err(Some((CloseCode::Normal, "session ended"))),
            _ => Ok(()),
        }
    }

    // === client requests ===

    async fn on_text<R>(&mut self, text: &str, sources: &mut Sources<R>) -> Result<(), Stop> {
        if !self.limiter.allow() {
            return Err(Some((CloseCode::RateLimited, "too many messages")));
        }
        let message = match ClientMessage::parse(text) {
            Ok(message) => message,
            Err(err) => {
                let error = ServerEvent::error(err.code, err.message);
                return self.send(self.stamp.message(error, err.request_id.as_deref(), None)).await;
            }
        };
        let answer_to = message.request_id;
        let reply_to = answer_to.as_deref();
        match message.request {
            ClientRequest::Pong => Ok(()),
            ClientRequest::Ping => {
                self.send(self.stamp.message(ServerEvent::Pong(Empty {}), reply_to, None)).await
            }
            ClientRequest::Pause | ClientRequest::Resume => {
                let paused = message.request == ClientRequest::Pause;
                self.persistence.push(Job::SetPaused { paused, answer_to }).await;
                sources.held = true;
                Ok(())
            }
            ClientRequest::AudioStream(_) if self.conversation.paused() => {
                let error = ServerEvent::error(ErrorCode::SessionPaused, "the session is paused");
                self.send(self.stamp.message(error, reply_to, None)).await
            }
            ClientRequest::AudioStream(stream) => {
                if !self.within_audio_budget(stream.pcm.len(), reply_to).await? {
                    return Ok(());
                }
                match self.audio.legacy(stream.sequence, &stream.pcm, false).await {
                    Ok(ack) => self.ack(ack).await,
                    Err(err) => {
                        let error = ServerEvent::error(err.code(), err.to_string());
                        self.send(self.stamp.message(error, reply_to, None)).await
                    }
                }
            }
            ClientRequest::PlaybackProgress(progress) => {
                let effects = self.conversation.playback(progress, answer_to);
                self.apply(effects, sources).await
            }
            ClientRequest::TurnEnd => {
                // The recogniser ends the utterance in progress at once, after every frame sent
                // before the request, rather than waiting for the silence that would end it.
                let flushed = self.audio.flush().await;
                let answer = ServerEvent::TurnEnded(TurnEndAnswer { flushed });
                self.send(self.stamp.message(answer, reply_to, None)).await
            }
        }
    }

    /// Invalid input: an `error` event, counted against the rate limit.
    async fn bad_input(
        &mut self,
        code: ErrorCode,
        message: &str,
        request_id: Option<&str>,
    ) -> Result<(), Stop> {
        if !self.limiter.allow() {
            return Err(Some((CloseCode::RateLimited, "too many messages")));
        }
        let error = ServerEvent::error(code, message);
        self.send(self.stamp.message(error, request_id, None)).await
    }

    // === plumbing ===

    async fn send(&mut self, message: ServerMessage) -> Result<(), Stop> {
        if let Some(code) = message.event.error_code() {
            let labels = vec![("code", code.as_str().to_owned())];
            self.context.metrics.ws_errors.get_or_create(&labels).inc();
        }
        self.outbox.send(message).await.map_err(stop_for)
    }

    /// Cancels work in flight, lets the session's writes finish, suspends the session (unless a
    /// newer socket holds it), closes.
    async fn finish<R, E>(mut self, stop: Stop, reader: R)
    where
        R: Stream<Item = Result<Message, E>> + Send + Unpin + 'static,
        E: Send + 'static,
    {
        self.context.metrics.live_sockets.dec();
        if let Some((code, _)) = stop {
            let labels = vec![("code", code.code().to_string())];
            self.context.metrics.ws_closes.get_or_create(&labels).inc();
        }
        if let Some(task) = self.reply.take() {
            task.abort();
        }
        self.audio.detach();
        self.persistence.finish(PERSIST_GRACE).await;
        if stop.is_none_or(|(code, _)| code.keeps_session()) {
            let request = session::SessionRef {
                session_id: self.stamp.session_id.clone(),
                user_id: self.user_id.clone(),
                epoch: self.epoch,
            };
            match self.context.downstream.suspend(request).await {
                Ok(()) => tracing::info!(?stop, "voice socket closed; session suspended"),
                Err(status) if status.code() == Code::FailedPrecondition => {
                    tracing::info!("voice socket closed; a newer socket holds the session");
                }
                Err(status) => tracing::error!(%status, "could not suspend the session"),
            }
        }
        let (lost, reordered) = self.audio.losses();
        let dropped = self.outbox.dropped_acks();
        if lost + reordered + dropped > 0 {
            tracing::info!(
                lost_frames = lost,
                reordered_frames = reordered,
                dropped_acks = dropped,
                "audio and ack losses on this socket"
            );
        }
        self.outbox.close(stop, reader).await;
    }
}

fn stop_for(err: SendError) -> Stop {
    match err {
        SendError::Closed => None,
        SendError::TooSlow => Some((CloseCode::SlowClient, "client reads too slowly")),
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
