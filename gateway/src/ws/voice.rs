//! One voice connection: admit the socket, pump audio to the stt-service, turn each final
//! transcript into a reply from the llm-service, save each exchange, and suspend the session
//! when the socket goes away.

use std::collections::{HashMap, VecDeque};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use blob_proto::llm::v1 as llm;
use blob_proto::session::v1 as session;
use blob_proto::stt::v1 as stt;
use blob_proto::stt::v1::transcribe_event::Event as SttEvent;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tracing::Instrument as _;

use super::frame::AudioFrame;
use super::messages::{Inbound, Outbound, Stamp, close};
use crate::auth::AuthError;
use crate::state::AppState;

/// Largest WebSocket message accepted (a frame of 1 s of audio is 32 KiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Audio chunks buffered towards the stt-service.
const AUDIO_QUEUE: usize = 64;
/// Earlier exchanges sent to the LLM with each new utterance.
const HISTORY_EXCHANGES: usize = 10;

/// `GET /ws/voice?token=…&session_id=…`: upgrades, then admits or closes with a code.
pub async fn voice_socket(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let span = tracing::info_span!(
        "ws.voice",
        session_id = params
            .get("session_id")
            .map(String::as_str)
            .unwrap_or_default(),
        user_id = tracing::field::Empty,
    );
    // Held for the socket's whole life, so shutdown waits until its session is suspended.
    let live = state.sockets.token();
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| {
            async move {
                handle(state, params, socket).await;
                drop(live);
            }
            .instrument(span)
        })
}

async fn handle(state: AppState, params: HashMap<String, String>, mut socket: WebSocket) {
    let admitted = match admit(&state, &params).await {
        Ok(admitted) => admitted,
        Err((code, reason)) => {
            tracing::info!(code, reason, "voice socket refused");
            close_with(&mut socket, code, reason).await;
            return;
        }
    };
    tracing::Span::current().record("user_id", admitted.user_id.as_str());
    Connection::start(state, admitted, socket).await;
}

/// Who is connecting, to which session, with what history.
struct Admitted {
    user_id: String,
    session: session::Session,
    resumed: bool,
    turns: Vec<session::ConversationTurn>,
    child: llm::ChildProfile,
}

/// Checks the token and the session, in the documented order, and attaches the socket.
async fn admit(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<Admitted, (u16, &'static str)> {
    let token = params
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or((close::POLICY, "missing token"))?;
    let claims = state.tokens.verify(token).map_err(|err| match err {
        AuthError::Expired => (close::TOKEN_EXPIRED, "token expired"),
        _ => (close::POLICY, "invalid token"),
    })?;
    let session_id = params
        .get("session_id")
        .filter(|s| !s.is_empty())
        .ok_or((close::SESSION_NOT_FOUND, "missing session_id"))?;
    if claims.sid.as_ref().is_some_and(|sid| sid != session_id) {
        return Err((close::POLICY, "token is for another session"));
    }
    let downstream = |status: tonic::Status| match status.code() {
        Code::NotFound => (close::SESSION_NOT_FOUND, "session not found"),
        Code::PermissionDenied => (close::USER_MISMATCH, "session belongs to another user"),
        _ => {
            tracing::error!(%status, "session-service failed during admission");
            (close::INTERNAL, "session service unavailable")
        }
    };
    let mut sessions = state.sessions.clone();
    let stored = sessions
        .get_session(state.request(session::GetSessionRequest {
            session_id: session_id.clone(),
        }))
        .await
        .map_err(downstream)?
        .into_inner();
    if stored.user_id != claims.sub {
        return Err((close::USER_MISMATCH, "session belongs to another user"));
    }
    let attached = sessions
        .attach_session(state.request(session::AttachSessionRequest {
            session_id: session_id.clone(),
            user_id: claims.sub.clone(),
        }))
        .await
        .map_err(downstream)?
        .into_inner();
    let session = attached
        .session
        .ok_or((close::INTERNAL, "session service answered nothing"))?;
    let child = sessions
        .get_child(state.request(session::GetChildRequest {
            user_id: claims.sub.clone(),
            child_id: session.child_id.clone(),
        }))
        .await
        .map_err(downstream)?
        .into_inner()
        .child
        .map(|c| llm::ChildProfile {
            name: c.name,
            grade_level: c.grade_level,
        })
        .unwrap_or_default();
    Ok(Admitted {
        user_id: claims.sub,
        session,
        resumed: attached.resumed,
        turns: attached.turns,
        child,
    })
}

async fn close_with(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// A final transcript waiting for, or getting, a reply.
#[derive(Debug, Clone)]
struct Utterance {
    request_id: String,
    text: String,
    thread_id: Option<String>,
}

/// What a reply task reports back to its connection.
enum TurnUpdate {
    /// The first text of the reply exists.
    Responding { request_id: String },
    /// The reply is complete (or failed).
    Done {
        utterance: Utterance,
        reply: Result<String, tonic::Status>,
    },
}

/// The state of one admitted socket.
struct Connection {
    state: AppState,
    socket: WebSocket,
    stamp: Stamp,
    user_id: String,
    child: llm::ChildProfile,
    /// Every exchange so far, oldest first.
    history: Vec<session::ConversationTurn>,
    /// The thread id of the latest audio frame.
    thread_id: Option<String>,
    /// Transcripts waiting for the reply in progress to finish.
    waiting: VecDeque<Utterance>,
    /// The reply in progress.
    reply_task: Option<JoinHandle<()>>,
    updates_tx: mpsc::Sender<TurnUpdate>,
}

impl Connection {
    async fn start(state: AppState, admitted: Admitted, socket: WebSocket) {
        let (updates_tx, mut updates_rx) = mpsc::channel(8);
        let mut connection = Self {
            stamp: Stamp {
                session_id: admitted.session.session_id.clone(),
                conversation_id: admitted.session.conversation_id.clone(),
            },
            state,
            socket,
            user_id: admitted.user_id,
            child: admitted.child,
            history: admitted.turns,
            thread_id: None,
            waiting: VecDeque::new(),
            reply_task: None,
            updates_tx,
        };
        let hello = if admitted.resumed {
            connection.stamp.session_resumed(connection.history.len())
        } else {
            connection.stamp.session_created()
        };
        tracing::info!(
            resumed = admitted.resumed,
            turns = connection.history.len(),
            "voice socket open"
        );
        let close_code = match connection.send(&hello).await {
            Ok(()) => connection.run(&mut updates_rx).await,
            Err(()) => None,
        };
        connection.finish(close_code).await;
    }

    /// The main loop; returns the close code to send, if the server is the one closing.
    async fn run(&mut self, updates: &mut mpsc::Receiver<TurnUpdate>) -> Option<u16> {
        let (audio_tx, audio_rx) = mpsc::channel::<stt::TranscribeRequest>(AUDIO_QUEUE);
        let config = stt::TranscribeRequest {
            message: Some(stt::transcribe_request::Message::Config(
                stt::StreamConfig {
                    sample_rate_hz: 16_000,
                    language: String::new(),
                    session_id: self.stamp.session_id.clone(),
                },
            )),
        };
        audio_tx.try_send(config).expect("a new channel has room");
        let mut stt_client = self.state.stt.clone();
        let mut stt_events = match stt_client.transcribe(ReceiverStream::new(audio_rx)).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                tracing::error!(%status, "cannot open the speech stream");
                let _ = self
                    .send(&self.stamp.error(
                        "STT_UNAVAILABLE",
                        "speech recognition is unavailable",
                        None,
                    ))
                    .await;
                return Some(close::INTERNAL);
            }
        };

        let shutdown = self.state.shutdown.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    tracing::info!("gateway shutting down; closing the socket");
                    return Some(close::GOING_AWAY);
                }
                message = self.socket.recv() => match message {
                    None | Some(Err(_)) => return None,
                    Some(Ok(Message::Close(_))) => return None,
                    Some(Ok(Message::Binary(bytes))) => {
                        match AudioFrame::parse(&bytes) {
                            Ok(frame) => {
                                self.thread_id = Some(frame.thread_id.to_string());
                                let chunk = stt::TranscribeRequest {
                                    message: Some(stt::transcribe_request::Message::Audio(stt::AudioChunk {
                                        sequence: frame.sequence,
                                        pcm_s16le: frame.pcm.to_vec(),
                                    })),
                                };
                                if audio_tx.send(chunk).await.is_err() {
                                    return self.stt_lost("speech stream closed").await;
                                }
                            }
                            Err(err) => {
                                let message = self.stamp.error(err.code(), &err.to_string(), None);
                                if self.send(&message).await.is_err() {
                                    return None;
                                }
                            }
                        }
                    }
                    Some(Ok(Message::Text(text))) => {
                        if self.on_text(&text).await.is_err() {
                            return None;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                },
                event = stt_events.message() => match event {
                    Ok(Some(event)) => {
                        if self.on_stt_event(event).await.is_err() {
                            return None;
                        }
                    }
                    Ok(None) => return self.stt_lost("speech stream ended").await,
                    Err(status) => return self.stt_lost(&status.to_string()).await,
                },
                Some(update) = updates.recv() => {
                    if self.on_update(update).await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    async fn stt_lost(&mut self, why: &str) -> Option<u16> {
        tracing::error!(why, "speech stream lost");
        let _ = self
            .send(
                &self
                    .stamp
                    .error("STT_UNAVAILABLE", "speech recognition is unavailable", None),
            )
            .await;
        Some(close::INTERNAL)
    }

    async fn on_text(&mut self, text: &str) -> Result<(), ()> {
        let inbound: Inbound = match serde_json::from_str(text) {
            Ok(inbound) => inbound,
            Err(err) => {
                let message = format!("not a valid message: {err}");
                return self
                    .send(&self.stamp.error("INVALID_MESSAGE", &message, None))
                    .await;
            }
        };
        let request_id = inbound.meta.request_id.as_deref();
        match (inbound.kind.as_str(), inbound.action.as_str()) {
            ("request", "ping") => self.send(&self.stamp.pong(request_id)).await,
            ("request", action) => {
                let message = format!("unknown action {action:?}");
                self.send(&self.stamp.error("UNKNOWN_ACTION", &message, request_id))
                    .await
            }
            (kind, _) => {
                let message = format!("clients send type \"request\", not {kind:?}");
                self.send(&self.stamp.error("INVALID_MESSAGE", &message, request_id))
                    .await
            }
        }
    }

    async fn on_stt_event(&mut self, event: stt::TranscribeEvent) -> Result<(), ()> {
        match event.event {
            Some(SttEvent::SpeechStarted(_)) => {
                self.send(&self.stamp.state("LISTENING", None)).await
            }
            Some(SttEvent::SpeechEnded(_)) => {
                self.send(&self.stamp.state("TRANSCRIBING", None)).await
            }
            Some(SttEvent::FinalTranscript(transcript)) => {
                let utterance = Utterance {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    text: transcript.text,
                    thread_id: self.thread_id.clone(),
                };
                let result = self.stamp.stt_result(
                    &utterance.text,
                    transcript.confidence,
                    &transcript.language,
                    transcript.duration_ms,
                    &utterance.request_id,
                    utterance.thread_id.as_deref(),
                );
                self.send(&result).await?;
                self.waiting.push_back(utterance);
                self.start_next_reply().await
            }
            Some(SttEvent::Rejected(rejected)) => {
                let reason = match stt::RejectReason::try_from(rejected.reason) {
                    Ok(stt::RejectReason::TooShort) => "too_short",
                    Ok(stt::RejectReason::LowConfidence) => "low_confidence",
                    Ok(stt::RejectReason::Empty) => "empty",
                    _ => "unrecognised",
                };
                let message =
                    self.stamp
                        .stt_rejected(reason, rejected.duration_ms, rejected.confidence);
                self.send(&message).await?;
                if self.reply_task.is_none() {
                    self.send(&self.stamp.state("IDLE", None)).await?;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Starts a reply for the oldest waiting transcript, unless one is in progress.
    async fn start_next_reply(&mut self) -> Result<(), ()> {
        if self.reply_task.is_some() {
            return Ok(());
        }
        let Some(utterance) = self.waiting.pop_front() else {
            return Ok(());
        };
        self.send(&self.stamp.state("THINKING", Some(&utterance.request_id)))
            .await?;
        let skip = self.history.len().saturating_sub(HISTORY_EXCHANGES);
        let history = self.history[skip..]
            .iter()
            .flat_map(|turn| {
                [
                    llm::Turn {
                        role: llm::Role::User.into(),
                        text: turn.user_text.clone(),
                    },
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
        let llm_client = self.state.llm.clone();
        let updates = self.updates_tx.clone();
        let span = tracing::info_span!("voice.turn", request_id = %utterance.request_id);
        self.reply_task = Some(tokio::spawn(
            async move {
                let reply = generate(llm_client, request, &updates, &utterance.request_id).await;
                let _ = updates.send(TurnUpdate::Done { utterance, reply }).await;
            }
            .instrument(span),
        ));
        Ok(())
    }

    async fn on_update(&mut self, update: TurnUpdate) -> Result<(), ()> {
        match update {
            TurnUpdate::Responding { request_id } => {
                self.send(&self.stamp.state("RESPONDING", Some(&request_id)))
                    .await
            }
            TurnUpdate::Done { utterance, reply } => {
                self.reply_task = None;
                match reply {
                    Ok(text) => {
                        let response = self.stamp.ai_response(
                            &text,
                            &self.state.config.tts,
                            &utterance.request_id,
                            utterance.thread_id.as_deref(),
                        );
                        self.send(&response).await?;
                        self.save_exchange(&utterance, text).await?;
                    }
                    Err(status) => {
                        tracing::warn!(%status, "reply failed");
                        let (code, message) = match status.code() {
                            Code::DeadlineExceeded => {
                                ("LLM_TIMEOUT", "Blob took too long to answer")
                            }
                            _ => ("LLM_UNAVAILABLE", "Blob cannot answer right now"),
                        };
                        self.send(&self.stamp.error(code, message, Some(&utterance.request_id)))
                            .await?;
                    }
                }
                self.send(&self.stamp.state("IDLE", Some(&utterance.request_id)))
                    .await?;
                self.start_next_reply().await
            }
        }
    }

    /// Stores the exchange; the local history keeps it even when the store is down.
    async fn save_exchange(&mut self, utterance: &Utterance, reply: String) -> Result<(), ()> {
        let turn = session::ConversationTurn {
            request_id: utterance.request_id.clone(),
            user_text: utterance.text.clone(),
            assistant_text: reply,
            created_at_ms: time::OffsetDateTime::now_utc().unix_timestamp() * 1000,
        };
        self.history.push(turn.clone());
        let request = self.state.request(session::AppendTurnsRequest {
            session_id: self.stamp.session_id.clone(),
            user_id: self.user_id.clone(),
            turns: vec![turn],
        });
        if let Err(status) = self.state.sessions.clone().append_turns(request).await {
            tracing::error!(%status, "could not save the exchange");
            let message = self.stamp.error(
                "STATE_UNAVAILABLE",
                "the conversation could not be saved",
                Some(&utterance.request_id),
            );
            return self.send(&message).await;
        }
        Ok(())
    }

    async fn send(&mut self, message: &Outbound) -> Result<(), ()> {
        let text = serde_json::to_string(message).map_err(|_| ())?;
        self.socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|_| ())
    }

    /// Cancels work in flight, suspends the session, and closes the socket if still open.
    async fn finish(mut self, close_code: Option<u16>) {
        if let Some(task) = self.reply_task.take() {
            task.abort();
        }
        let request = self.state.request(session::SessionRef {
            session_id: self.stamp.session_id.clone(),
            user_id: self.user_id.clone(),
        });
        match self.state.sessions.clone().suspend_session(request).await {
            Ok(_) => tracing::info!("voice socket closed; session suspended"),
            Err(status) => tracing::error!(%status, "could not suspend the session"),
        }
        if let Some(code) = close_code {
            let reason = if code == close::INTERNAL {
                "service unavailable"
            } else {
                "closing"
            };
            close_with(&mut self.socket, code, reason).await;
        }
    }
}

/// Streams one reply from the llm-service; reports when the first text arrives.
async fn generate(
    mut client: blob_proto::llm::v1::companion_client::CompanionClient<
        blob_kit::grpc::TracedChannel,
    >,
    request: llm::GenerateReplyRequest,
    updates: &mpsc::Sender<TurnUpdate>,
    request_id: &str,
) -> Result<String, tonic::Status> {
    let mut stream = client.generate_reply(request).await?.into_inner();
    let mut text = String::new();
    let mut responding = false;
    while let Some(event) = stream.message().await? {
        match event.event {
            Some(llm::reply_event::Event::Delta(delta)) => {
                if !responding {
                    responding = true;
                    let update = TurnUpdate::Responding {
                        request_id: request_id.to_owned(),
                    };
                    let _ = updates.send(update).await;
                }
                text.push_str(&delta.text);
            }
            Some(llm::reply_event::Event::Final(reply)) => return Ok(reply.text),
            None => {}
        }
    }
    if text.trim().is_empty() {
        Err(tonic::Status::unavailable(
            "the reply stream ended without a reply",
        ))
    } else {
        Ok(text.trim().to_owned())
    }
}
