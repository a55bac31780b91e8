//! The conversation of one socket: whose turn it is, which transcripts wait for a reply, the
//! reply in progress, barge-in, pause and the exchanges so far. It sends nothing and calls
//! nothing: each input returns the [`Effect`]s the connection carries out, in order, so the turn
//! logic is tested without a socket or a service.

use std::collections::VecDeque;
use std::time::Instant;

use blob_proto::llm::v1 as llm;
use blob_proto::session::v1 as session;
use blob_proto::stt::v1 as stt;
use blob_voice_protocol::{
    ConversationState, ErrorCode, PlaybackProgress, RejectReason, Reply, ReplyCancelled,
    ReplyChunk, ResumeReason, ServerEvent, SessionPaused, SessionResumed, SttRejected, SttResult,
    TtsHint, round_confidence,
};

use super::persist::Job;

/// A server message to send, with the turn and audio thread it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// What it says.
    pub event: ServerEvent,
    /// The turn (`meta.request_id`).
    pub request_id: Option<String>,
    /// The audio thread (`meta.thread_id`).
    pub thread_id: Option<String>,
}

impl Outgoing {
    fn plain(event: ServerEvent) -> Self {
        Self { event, request_id: None, thread_id: None }
    }

    fn turn(event: ServerEvent, request_id: &str) -> Self {
        Self { event, request_id: Some(request_id.to_owned()), thread_id: None }
    }
}

/// What the connection does for the conversation.
#[derive(Debug)]
pub enum Effect {
    /// Send a message.
    Send(Outgoing),
    /// Ask for a reply (only one runs at a time).
    StartReply {
        /// The request.
        request: llm::GenerateReplyRequest,
        /// The turn's trace.
        span: tracing::Span,
    },
    /// Stop the reply in progress.
    CancelReply,
    /// A session-service write, done off the socket's loop: an exchange (a failure is
    /// reported with `STATE_UNAVAILABLE` on its turn), or a trim to what was heard (then the
    /// `playback.progress` request is answered).
    Persist(Job),
    /// Hand the recogniser an utterance's trace context.
    TraceUtterance {
        /// The recogniser's utterance.
        utterance_id: u32,
        /// W3C trace context of the turn.
        trace_context: std::collections::HashMap<String, String>,
    },
    /// Record how long after the end of speech a stage was reached.
    Stage {
        /// `transcript`, `first_token`, `first_sentence` or `reply_complete`.
        stage: &'static str,
        /// When the recogniser said the speech ended.
        speech_end: Option<Instant>,
    },
    /// Open the speech stream (unpaused).
    OpenSpeech,
    /// Close the speech stream (paused).
    CloseSpeech,
}

/// A final transcript waiting for, or getting, a reply.
#[derive(Debug, Clone)]
pub struct Utterance {
    request_id: String,
    text: String,
    thread_id: Option<String>,
    /// When the recogniser said the speech ended (turn latency is measured from here).
    speech_end: Option<Instant>,
    /// `voice.turn`: the root of this turn's trace across the services.
    span: tracing::Span,
}

/// The reply being written or spoken.
#[derive(Debug)]
pub struct ActiveReply {
    utterance: Utterance,
    /// Sentences sent so far, joined.
    sent: String,
    chunks: u32,
    /// Characters the client reported hearing (`playback.progress`) before the reply was saved.
    heard: Option<usize>,
}

/// Blob's side of the turn.
#[derive(Debug, Default)]
pub enum TurnState {
    /// Nothing to answer.
    #[default]
    Idle,
    /// Blob has been asked; no sentence yet.
    Thinking(ActiveReply),
    /// Blob's sentences are going out.
    Responding(ActiveReply),
    /// Blob's reply is complete and its exchange is being stored: `IDLE`, and the next
    /// waiting utterance's reply, follow once it is (so a client that sees `IDLE` knows the
    /// exchange is kept).
    Saving {
        /// The reply's turn.
        request_id: String,
    },
}

impl TurnState {
    fn reply(&self) -> Option<&ActiveReply> {
        match self {
            Self::Idle | Self::Saving { .. } => None,
            Self::Thinking(reply) | Self::Responding(reply) => Some(reply),
        }
    }

    fn reply_mut(&mut self) -> Option<&mut ActiveReply> {
        match self {
            Self::Idle | Self::Saving { .. } => None,
            Self::Thinking(reply) | Self::Responding(reply) => Some(reply),
        }
    }

    fn take(&mut self) -> Option<ActiveReply> {
        match std::mem::take(self) {
            Self::Idle | Self::Saving { .. } => None,
            Self::Thinking(reply) | Self::Responding(reply) => Some(reply),
        }
    }

    fn is(&self, request_id: &str) -> bool {
        self.reply().is_some_and(|r| r.utterance.request_id == request_id)
    }
}

/// The child's side of the turn, as the recogniser reports it.
#[derive(Debug, Default)]
enum Speech {
    /// No utterance in progress.
    #[default]
    Silent,
    /// The child is speaking.
    Speaking { utterance_id: u32, span: tracing::Span },
    /// The speech ended; its words are being recognised.
    Ended { utterance_id: Option<u32>, span: Option<tracing::Span>, at: Instant },
}

/// The ids and settings a conversation is created with.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The session.
    pub session_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The child, for Blob's persona.
    pub child: llm::ChildProfile,
    /// The exchanges so far.
    pub history: Vec<session::ConversationTurn>,
    /// The child's pauses kept with the conversation.
    pub pauses_ms: Vec<u32>,
    /// Whether the session is paused.
    pub paused: bool,
    /// How the phone speaks replies.
    pub tts: TtsHint,
}

/// One socket's conversation.
#[derive(Debug)]
pub struct Conversation {
    setup: Setup,
    speech: Speech,
    turn: TurnState,
    waiting: VecDeque<Utterance>,
}

impl Conversation {
    /// The conversation as admitted.
    pub fn new(setup: Setup) -> Self {
        Self { setup, speech: Speech::Silent, turn: TurnState::Idle, waiting: VecDeque::new() }
    }

    /// Whether the session is paused.
    pub fn paused(&self) -> bool {
        self.setup.paused
    }

    /// Exchanges so far.
    pub fn exchanges(&self) -> usize {
        self.setup.history.len()
    }

    /// The child's pauses so far.
    pub fn pauses_ms(&self) -> &[u32] {
        &self.setup.pauses_ms
    }

    /// Blob's side of the turn.
    pub fn turn(&self) -> &TurnState {
        &self.turn
    }

    // === the child's speech ===

    /// The recogniser heard speech begin: Blob stops talking over the child.
    pub fn speech_started(&mut self, utterance_id: u32) -> Vec<Effect> {
        let mut effects = self.barge_in();
        let span = tracing::info_span!(
            parent: None,
            "voice.turn",
            session_id = %self.setup.session_id,
            conversation_id = %self.setup.conversation_id,
            utterance_id,
            request_id = tracing::field::Empty,
        );
        let trace_context = span.in_scope(blob_kit::grpc::current_trace_context);
        effects.push(Effect::TraceUtterance { utterance_id, trace_context });
        self.speech = Speech::Speaking { utterance_id, span };
        effects
            .push(Effect::Send(Outgoing::plain(ServerEvent::state(ConversationState::Listening))));
        effects
    }

    /// The recogniser heard the speech end (with the child's pauses as it now knows them).
    pub fn speech_ended(&mut self, pauses_ms: Option<Vec<u32>>) -> Vec<Effect> {
        let (utterance_id, span) = match std::mem::take(&mut self.speech) {
            Speech::Speaking { utterance_id, span } => (Some(utterance_id), Some(span)),
            Speech::Ended { utterance_id, span, .. } => (utterance_id, span),
            Speech::Silent => (None, None),
        };
        self.speech = Speech::Ended { utterance_id, span, at: Instant::now() };
        if let Some(pauses) = pauses_ms {
            self.setup.pauses_ms = pauses;
        }
        vec![Effect::Send(Outgoing::plain(ServerEvent::state(ConversationState::Transcribing)))]
    }

    /// The child's words: a turn to answer, now or after the reply in progress.
    pub fn transcript(
        &mut self,
        utterance_id: u32,
        heard: stt::FinalTranscript,
        thread_id: Option<String>,
    ) -> Vec<Effect> {
        let (span, speech_end) = match std::mem::take(&mut self.speech) {
            Speech::Speaking { utterance_id: id, span } if id == utterance_id => (Some(span), None),
            Speech::Ended { utterance_id: id, span, at } => {
                (span.filter(|_| id == Some(utterance_id)), Some(at))
            }
            _ => (None, None),
        };
        let span = span.unwrap_or_else(|| {
            tracing::info_span!(parent: None, "voice.turn", session_id = %self.setup.session_id, utterance_id, request_id = tracing::field::Empty)
        });
        let utterance = Utterance {
            request_id: uuid::Uuid::new_v4().to_string(),
            text: heard.text.clone(),
            thread_id: thread_id.clone(),
            speech_end,
            span,
        };
        utterance.span.record("request_id", utterance.request_id.as_str());
        let mut effects = vec![
            Effect::Send(Outgoing {
                event: ServerEvent::SttResult(SttResult {
                    transcript: heard.text,
                    confidence: round_confidence(heard.confidence),
                    language: heard.language,
                    duration_ms: heard.duration_ms,
                }),
                request_id: Some(utterance.request_id.clone()),
                thread_id,
            }),
            Effect::Stage { stage: "transcript", speech_end },
        ];
        self.waiting.push_back(utterance);
        effects.extend(self.start_next_reply());
        effects
    }

    /// Speech was heard but not used: the turn ends with nothing to answer.
    pub fn rejected(
        &mut self,
        reason: RejectReason,
        duration_ms: u32,
        confidence: f32,
    ) -> Vec<Effect> {
        self.speech = Speech::Silent;
        let mut effects =
            vec![Effect::Send(Outgoing::plain(ServerEvent::SttRejected(SttRejected {
                reason,
                duration_ms,
                confidence: round_confidence(confidence),
            })))];
        if matches!(self.turn, TurnState::Idle) {
            effects
                .push(Effect::Send(Outgoing::plain(ServerEvent::state(ConversationState::Idle))));
        }
        effects
    }

    // === Blob's reply ===

    fn start_next_reply(&mut self) -> Vec<Effect> {
        if !matches!(self.turn, TurnState::Idle) || self.setup.paused {
            return Vec::new();
        }
        let Some(utterance) = self.waiting.pop_front() else {
            return Vec::new();
        };
        // The whole conversation goes with the request: the llm-service alone decides how much
        // of it the model sees (`LLM_HISTORY_TURNS`, `LLM_HISTORY_TOKEN_BUDGET`).
        let history = self
            .setup
            .history
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
            conversation_id: self.setup.conversation_id.clone(),
            request_id: utterance.request_id.clone(),
            child: Some(self.setup.child.clone()),
            history,
            user_text: utterance.text.clone(),
        };
        let effects = vec![
            Effect::Send(Outgoing::turn(
                ServerEvent::state(ConversationState::Thinking),
                &utterance.request_id,
            )),
            Effect::StartReply { request, span: utterance.span.clone() },
        ];
        self.turn = TurnState::Thinking(ActiveReply {
            utterance,
            sent: String::new(),
            chunks: 0,
            heard: None,
        });
        effects
    }

    /// The model's first text for `request_id` arrived.
    pub fn first_token(&mut self, request_id: &str) -> Vec<Effect> {
        match self.turn.reply().filter(|r| r.utterance.request_id == request_id) {
            Some(reply) => {
                vec![Effect::Stage { stage: "first_token", speech_end: reply.utterance.speech_end }]
            }
            None => Vec::new(),
        }
    }

    /// The next sentence of the reply for `request_id` (ignored when that reply was cancelled).
    pub fn sentence(&mut self, request_id: &str, text: String) -> Vec<Effect> {
        if !self.turn.is(request_id) {
            return Vec::new();
        }
        let mut effects = Vec::new();
        if let TurnState::Thinking(_) = self.turn {
            let TurnState::Thinking(reply) = std::mem::take(&mut self.turn) else { unreachable!() };
            self.turn = TurnState::Responding(reply);
            effects.push(Effect::Send(Outgoing::turn(
                ServerEvent::state(ConversationState::Responding),
                request_id,
            )));
        }
        let reply = self.turn.reply_mut().expect("responding");
        let index = reply.chunks;
        reply.chunks += 1;
        if !reply.sent.is_empty() {
            reply.sent.push(' ');
        }
        reply.sent.push_str(&text);
        effects.push(Effect::Send(Outgoing {
            event: ServerEvent::ReplyChunk(ReplyChunk { text, index }),
            request_id: Some(request_id.to_owned()),
            thread_id: reply.utterance.thread_id.clone(),
        }));
        if index == 0 {
            effects.push(Effect::Stage {
                stage: "first_sentence",
                speech_end: reply.utterance.speech_end,
            });
        }
        effects
    }

    /// The reply for `request_id` is complete (its whole text), or failed.
    pub fn reply_done(
        &mut self,
        request_id: &str,
        result: Result<String, tonic::Code>,
    ) -> Vec<Effect> {
        if !self.turn.is(request_id) {
            return Vec::new();
        }
        let reply = self.turn.take().expect("checked above");
        let mut effects = Vec::new();
        match result {
            Ok(text) => {
                effects.push(Effect::Send(Outgoing {
                    event: ServerEvent::Reply(Reply {
                        text: text.clone(),
                        tts_hint: self.setup.tts.clone(),
                    }),
                    request_id: Some(request_id.to_owned()),
                    thread_id: reply.utterance.thread_id.clone(),
                }));
                effects.push(Effect::Stage {
                    stage: "reply_complete",
                    speech_end: reply.utterance.speech_end,
                });
                let interrupted = reply.heard.is_some();
                effects.push(self.save(&reply.utterance, text, reply.heard, interrupted));
                self.turn = TurnState::Saving { request_id: request_id.to_owned() };
            }
            Err(code) => {
                let error = match code {
                    tonic::Code::DeadlineExceeded => {
                        ServerEvent::error(ErrorCode::LlmTimeout, "Blob took too long to answer")
                    }
                    _ => ServerEvent::error(
                        ErrorCode::LlmUnavailable,
                        "Blob cannot answer right now",
                    ),
                };
                effects.push(Effect::Send(Outgoing::turn(error, request_id)));
                if !reply.sent.is_empty() {
                    effects.push(self.save(&reply.utterance, reply.sent, reply.heard, true));
                    self.turn = TurnState::Saving { request_id: request_id.to_owned() };
                }
            }
        }
        if matches!(self.turn, TurnState::Idle) {
            effects.extend(self.turn_over(request_id));
        }
        effects
    }

    /// An exchange was stored (or could not be): a failure is reported on its turn, and the
    /// turn that waited for it is over.
    pub fn saved(&mut self, request_id: &str, stored: bool) -> Vec<Effect> {
        let mut effects = Vec::new();
        if !stored {
            let error = ServerEvent::error(
                ErrorCode::StateUnavailable,
                "the conversation could not be saved",
            );
            effects.push(Effect::Send(Outgoing::turn(error, request_id)));
        }
        if matches!(&self.turn, TurnState::Saving { request_id: saving } if saving == request_id) {
            self.turn = TurnState::Idle;
            effects.extend(self.turn_over(request_id));
        }
        effects
    }

    /// `IDLE` for the turn, then the next waiting utterance's reply.
    fn turn_over(&mut self, request_id: &str) -> Vec<Effect> {
        let mut effects = vec![Effect::Send(Outgoing::turn(
            ServerEvent::state(ConversationState::Idle),
            request_id,
        ))];
        effects.extend(self.start_next_reply());
        effects
    }

    /// The child spoke while Blob was thinking or answering: stop the reply and keep only what
    /// was already sent as Blob's turn.
    fn barge_in(&mut self) -> Vec<Effect> {
        let Some(reply) = self.turn.take() else {
            return Vec::new();
        };
        let request_id = reply.utterance.request_id.clone();
        tracing::info!(%request_id, chunks = reply.chunks, "reply cancelled by barge-in");
        let cancelled = ServerEvent::ReplyCancelled(ReplyCancelled {
            request_id: request_id.clone(),
            sent_text: reply.sent.clone(),
        });
        vec![
            Effect::CancelReply,
            Effect::Send(Outgoing::turn(cancelled, &request_id)),
            self.save(&reply.utterance, reply.sent, reply.heard, true),
        ]
    }

    /// The exchange to store; the local history keeps it even if the store fails.
    fn save(
        &mut self,
        utterance: &Utterance,
        reply: String,
        heard: Option<usize>,
        interrupted: bool,
    ) -> Effect {
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
        self.setup.history.push(turn.clone());
        Effect::Persist(Job::Save {
            turn,
            pauses_ms: self.setup.pauses_ms.clone(),
            span: utterance.span.clone(),
        })
    }

    // === the client's requests ===

    /// `playback.progress`: the phone's speech of a reply was cut off after `chars_spoken`.
    pub fn playback(
        &mut self,
        progress: PlaybackProgress,
        answer_to: Option<String>,
    ) -> Vec<Effect> {
        let chars = usize::try_from(progress.chars_spoken).unwrap_or(usize::MAX);
        let turn_id = progress.request_id.as_str();
        if let Some(reply) = self.turn.reply_mut().filter(|r| r.utterance.request_id == turn_id) {
            reply.heard = Some(chars);
            let answer = ServerEvent::PlaybackProgress(progress);
            return vec![Effect::Send(Outgoing {
                event: answer,
                request_id: answer_to,
                thread_id: None,
            })];
        }
        if let Some(turn) = self.setup.history.iter_mut().rev().find(|t| t.request_id == turn_id) {
            turn.assistant_text = turn.assistant_text.chars().take(chars).collect();
            turn.interrupted = true;
            return vec![Effect::Persist(Job::Trim { progress, answer_to })];
        }
        let error = ServerEvent::error(ErrorCode::UnknownTurn, "no reply with that request_id");
        vec![Effect::Send(Outgoing { event: error, request_id: answer_to, thread_id: None })]
    }

    /// Enters or leaves the paused state (idempotent: the session's signals echo this socket's
    /// own changes).
    pub fn set_paused(&mut self, paused: bool) -> Vec<Effect> {
        if self.setup.paused == paused {
            return Vec::new();
        }
        self.setup.paused = paused;
        let session_id = self.setup.session_id.clone();
        if paused {
            // No speech or reply work while paused: end the speech stream, drop what waits.
            self.waiting.clear();
            self.speech = Speech::Silent;
            let mut effects = vec![Effect::CloseSpeech];
            effects.extend(self.barge_in());
            effects.push(Effect::Send(Outgoing::plain(ServerEvent::SessionPaused(
                SessionPaused { session_id },
            ))));
            effects
                .push(Effect::Send(Outgoing::plain(ServerEvent::state(ConversationState::Idle))));
            effects
        } else {
            let resumed = ServerEvent::SessionResumed(SessionResumed {
                session_id,
                resumed_turns_count: None,
                paused: None,
                replayed: None,
                reason: ResumeReason::Unpaused,
            });
            vec![Effect::OpenSpeech, Effect::Send(Outgoing::plain(resumed))]
        }
    }
}

#[cfg(test)]
#[path = "conversation_tests.rs"]
mod tests;
