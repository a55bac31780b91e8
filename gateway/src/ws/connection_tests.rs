//! The connection over channels: a socket made of two channels and services that the test
//! drives by hand, so barge-in, pause and slow stores are checked in milliseconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use blob_proto::llm::v1 as llm;
use blob_voice_protocol::{AudioFrame, QueueState, ServerMessage};
use futures::channel::mpsc as socket_channel;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};

use super::*;
use crate::ws::downstream::SpeechStream;

const WAIT: Duration = Duration::from_secs(5);

type Events<T> = mpsc::Sender<Result<T, tonic::Status>>;

/// The services, answered by the test.
#[derive(Clone)]
struct Fake {
    speech: mpsc::UnboundedSender<(
        mpsc::Receiver<stt::TranscribeRequest>,
        Events<stt::TranscribeEvent>,
    )>,
    replies: mpsc::UnboundedSender<(llm::GenerateReplyRequest, Events<llm::ReplyEvent>)>,
    calls: mpsc::UnboundedSender<String>,
    store_fails: Arc<AtomicBool>,
    /// Held for writing by a test, it stalls every store call.
    store_gate: Arc<tokio::sync::RwLock<()>>,
}

impl Fake {
    async fn store(&self, call: String) -> Result<(), tonic::Status> {
        let _open = self.store_gate.read().await;
        let _ = self.calls.send(call);
        if self.store_fails.load(Ordering::SeqCst) {
            return Err(tonic::Status::unavailable("store down"));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Downstream for Fake {
    async fn open_speech(&self, _config: stt::StreamConfig) -> Result<SpeechStream, tonic::Status> {
        let (audio, audio_rx) = mpsc::channel(8);
        let (events, events_rx) = mpsc::channel(8);
        let _ = self.speech.send((audio_rx, events));
        Ok(SpeechStream { audio, events: ReceiverStream::new(events_rx).boxed() })
    }

    async fn reply(
        &self,
        request: llm::GenerateReplyRequest,
    ) -> Result<EventStream<llm::ReplyEvent>, tonic::Status> {
        let (events, events_rx) = mpsc::channel(8);
        let _ = self.replies.send((request, events));
        Ok(ReceiverStream::new(events_rx).boxed())
    }

    async fn append_turns(
        &self,
        request: session::AppendTurnsRequest,
    ) -> Result<(), tonic::Status> {
        let turn = &request.turns[0];
        self.store(format!("append {:?} interrupted={}", turn.assistant_text, turn.interrupted))
            .await
    }

    async fn trim_turn(&self, request: session::TrimTurnRequest) -> Result<(), tonic::Status> {
        self.store(format!("trim {}", request.assistant_chars)).await
    }

    async fn set_paused(&self, request: session::SetPausedRequest) -> Result<(), tonic::Status> {
        self.store(format!("paused {}", request.paused)).await
    }

    async fn record_events(
        &self,
        _request: session::RecordEventsRequest,
    ) -> Result<(), tonic::Status> {
        Ok(())
    }

    async fn suspend(&self, _request: session::SessionRef) -> Result<(), tonic::Status> {
        self.store("suspend".into()).await
    }

    async fn rewatch(
        &self,
        _session_id: &str,
        _user_id: &str,
    ) -> Result<(EventStream<session::SessionSignal>, session::Session), tonic::Status> {
        Err(tonic::Status::unavailable("no session-service in these tests"))
    }
}

/// A running connection and the test's ends of everything it talks to.
struct Harness {
    client: Option<mpsc::Sender<Message>>,
    server: socket_channel::UnboundedReceiver<Message>,
    audio: mpsc::Receiver<stt::TranscribeRequest>,
    recogniser: Events<stt::TranscribeEvent>,
    replies: mpsc::UnboundedReceiver<(llm::GenerateReplyRequest, Events<llm::ReplyEvent>)>,
    calls: mpsc::UnboundedReceiver<String>,
    store_fails: Arc<AtomicBool>,
    store_gate: Arc<tokio::sync::RwLock<()>>,
    _signals: mpsc::UnboundedSender<Result<session::SessionSignal, tonic::Status>>,
    task: JoinHandle<()>,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(WsSettings::default()).await
    }

    async fn start_with(settings: WsSettings) -> Self {
        let (speech, mut opened) = mpsc::unbounded_channel();
        let (replies, replies_rx) = mpsc::unbounded_channel();
        let (calls, calls_rx) = mpsc::unbounded_channel();
        let fake = Fake {
            speech,
            replies,
            calls,
            store_fails: Arc::default(),
            store_gate: Arc::default(),
        };
        let (store_fails, store_gate) = (fake.store_fails.clone(), fake.store_gate.clone());
        let (signals, signals_rx) = mpsc::unbounded_channel();
        let admitted = Admitted {
            user_id: "u".into(),
            session: session::Session {
                session_id: "s".into(),
                conversation_id: "c".into(),
                ..Default::default()
            },
            resumed: false,
            turns: Vec::new(),
            child: llm::ChildProfile { name: "Mia".into(), grade_level: 1 },
            epoch: 1,
            last_event_seq: 0,
            replay: Vec::new(),
            pauses_ms: Vec::new(),
            signals: UnboundedReceiverStream::new(signals_rx).boxed(),
        };
        let context = Context {
            downstream: fake,
            settings,
            tts: TtsHint { voice: "v".into(), speed: 1.0, language: "en".into() },
            metrics: GatewayMetrics::default(),
            shutdown: CancellationToken::new(),
        };
        let (client, reader) = mpsc::channel(16);
        let reader = ReceiverStream::new(reader).map(Ok::<_, std::convert::Infallible>);
        let (sink, server) = socket_channel::unbounded();
        let task = tokio::spawn(run(context, admitted, sink, reader));
        let (audio, recogniser) =
            tokio::time::timeout(WAIT, opened.recv()).await.unwrap().expect("a speech stream");
        let mut harness = Self {
            client: Some(client),
            server,
            audio,
            recogniser,
            replies: replies_rx,
            calls: calls_rx,
            store_fails,
            store_gate,
            _signals: signals,
            task,
        };
        assert_eq!(harness.next().await.event.action(), "session.created");
        harness
    }

    /// The next server message (a close frame fails the test).
    async fn next(&mut self) -> ServerMessage {
        match tokio::time::timeout(WAIT, self.server.next()).await.expect("a message in time") {
            Some(Message::Text(text)) => ServerMessage::parse(&text).expect("a typed message"),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The actions of the next `n` messages.
    async fn actions(&mut self, n: usize) -> Vec<String> {
        let mut actions = Vec::new();
        for _ in 0..n {
            let message = self.next().await;
            actions.push(match &message.event {
                ServerEvent::State(change) => format!("state {}", change.state),
                event => event.action().to_owned(),
            });
        }
        actions
    }

    async fn say(&self, utterance_id: u32, event: SttEvent) {
        let event = stt::TranscribeEvent { utterance_id, event: Some(event) };
        self.recogniser.send(Ok(event)).await.unwrap();
    }

    async fn heard(&self, utterance_id: u32, text: &str) {
        self.say(utterance_id, SttEvent::SpeechStarted(stt::SpeechStarted::default())).await;
        self.say(utterance_id, SttEvent::SpeechEnded(stt::SpeechEnded::default())).await;
        self.transcript(utterance_id, text).await;
    }

    /// A transcript alone, as when the recogniser finishes an utterance that ended earlier.
    async fn transcript(&self, utterance_id: u32, text: &str) {
        let transcript =
            stt::FinalTranscript { text: text.into(), confidence: 0.9, ..Default::default() };
        self.say(utterance_id, SttEvent::FinalTranscript(transcript)).await;
    }

    async fn client_sends(&self, message: Message) {
        self.client.as_ref().unwrap().send(message).await.unwrap();
    }

    async fn call(&mut self) -> String {
        tokio::time::timeout(WAIT, self.calls.recv()).await.expect("a store call").unwrap()
    }

    async fn reply_request(&mut self) -> (llm::GenerateReplyRequest, Events<llm::ReplyEvent>) {
        tokio::time::timeout(WAIT, self.replies.recv()).await.expect("a reply request").unwrap()
    }
}

fn sentence(index: u32, text: &str) -> Result<llm::ReplyEvent, tonic::Status> {
    Ok(llm::ReplyEvent {
        event: Some(llm::reply_event::Event::Sentence(llm::Sentence { index, text: text.into() })),
    })
}

fn request(action: &str) -> Message {
    Message::Text(
        format!(r#"{{"type":"request","action":"{action}","meta":{{"request_id":"q"}}}}"#).into(),
    )
}

#[tokio::test]
async fn the_child_speaking_over_blob_cancels_the_reply_and_stores_what_was_sent() {
    let mut h = Harness::start().await;
    h.heard(1, "Tell me a story.").await;
    let (request, reply) = h.reply_request().await;
    assert_eq!(request.user_text, "Tell me a story.");
    reply.send(sentence(0, "Once upon a time.")).await.unwrap();
    assert_eq!(
        h.actions(6).await,
        [
            "state LISTENING",
            "state TRANSCRIBING",
            "stt_result",
            "state THINKING",
            "state RESPONDING",
            "ai_response.chunk"
        ]
    );
    h.say(2, SttEvent::SpeechStarted(stt::SpeechStarted::default())).await;
    let cancelled = h.next().await;
    let ServerEvent::ReplyCancelled(cancelled) = cancelled.event else { panic!("{cancelled:?}") };
    assert_eq!(cancelled.sent_text, "Once upon a time.");
    assert_eq!(h.actions(1).await, ["state LISTENING"]);
    assert_eq!(h.call().await, "append \"Once upon a time.\" interrupted=true");
    // The reply's stream was dropped: the llm-service call is cancelled.
    tokio::time::timeout(WAIT, reply.closed()).await.expect("the reply was cancelled");
}

#[tokio::test]
async fn a_second_utterance_is_answered_after_the_first_reply() {
    let mut h = Harness::start().await;
    h.heard(1, "One.").await;
    let (_, first) = h.reply_request().await;
    // A second transcript while Blob thinks (no new speech since: no barge-in) waits its turn.
    h.transcript(2, "Two.").await;
    assert!(h.replies.try_recv().is_err(), "one reply at a time");
    first.send(sentence(0, "Uno.")).await.unwrap();
    first
        .send(Ok(llm::ReplyEvent {
            event: Some(llm::reply_event::Event::Final(llm::ReplyFinal {
                text: "Uno.".into(),
                ..Default::default()
            })),
        }))
        .await
        .unwrap();
    let (second, _reply) = h.reply_request().await;
    assert_eq!(second.user_text, "Two.");
    assert_eq!(second.history.len(), 2, "the first exchange comes with it");
    assert_eq!(h.call().await, "append \"Uno.\" interrupted=false");
}

#[tokio::test]
async fn pause_is_answered_once_stored_and_refused_when_the_store_is_down() {
    let mut h = Harness::start().await;
    h.client_sends(request("pause")).await;
    assert_eq!(h.call().await, "paused true");
    assert_eq!(h.actions(3).await, ["session.paused", "state IDLE", "pause"]);
    let frame = AudioFrame::encode(0, uuid::Uuid::nil(), &[0; 320]);
    h.client_sends(Message::Binary(frame.into())).await;
    let ack = h.next().await;
    let ServerEvent::AudioAck(ack) = ack.event else { panic!("{ack:?}") };
    assert_eq!(ack.queue_state, QueueState::Paused);

    h.store_fails.store(true, Ordering::SeqCst);
    h.client_sends(request("resume")).await;
    assert_eq!(h.call().await, "paused false");
    let refused = h.next().await;
    assert_eq!(refused.event.error_code(), Some(ErrorCode::StateUnavailable));
    assert_eq!(refused.meta.request_id.as_deref(), Some("q"));
}

#[tokio::test]
async fn what_the_client_sends_after_a_pause_is_read_once_the_pause_is_stored() {
    let mut h = Harness::start().await;
    // Sent together: the `turn.end` is read after the pause took effect (no speech stream).
    h.client_sends(request("pause")).await;
    h.client_sends(request("turn.end")).await;
    assert_eq!(h.call().await, "paused true");
    assert_eq!(h.actions(3).await, ["session.paused", "state IDLE", "pause"]);
    let answer = h.next().await;
    assert_eq!(answer.event, ServerEvent::TurnEnded(TurnEndAnswer { flushed: false }));
}

#[tokio::test]
async fn a_stalled_store_does_not_hold_up_audio_and_its_writes_finish_before_the_suspend() {
    let mut h = Harness::start().await;
    let gate = h.store_gate.clone();
    let held = gate.write().await;
    h.heard(1, "Hi.").await;
    let (_, reply) = h.reply_request().await;
    reply
        .send(Ok(llm::ReplyEvent {
            event: Some(llm::reply_event::Event::Final(llm::ReplyFinal {
                text: "Hello!".into(),
                ..Default::default()
            })),
        }))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !seen.contains(&"ai_response".to_owned()) {
        seen.extend(h.actions(1).await);
    }
    // The exchange is waiting on the store (IDLE waits for it); audio still flows and is
    // acknowledged.
    for sequence in 0..3 {
        let frame = AudioFrame::encode(sequence, uuid::Uuid::nil(), &[0; 320]);
        h.client_sends(Message::Binary(frame.into())).await;
        let ack = h.next().await;
        assert!(matches!(ack.event, ServerEvent::AudioAck(a) if a.sequence == sequence));
        assert!(h.audio.recv().await.is_some(), "the frame reached the recogniser");
    }
    // The app closes: the pending write is stored first, then the session is suspended.
    h.client.take();
    drop(held);
    assert_eq!(h.call().await, "append \"Hello!\" interrupted=false");
    assert_eq!(h.call().await, "suspend");
    tokio::time::timeout(WAIT, h.task).await.expect("the connection ended").unwrap();
}

#[tokio::test]
async fn malformed_requests_get_their_error_and_the_socket_stays() {
    let mut h =
        Harness::start_with(WsSettings { legacy_binary: false, ..WsSettings::default() }).await;
    h.client_sends(Message::Text("nope".into())).await;
    assert_eq!(h.next().await.event.error_code(), Some(ErrorCode::InvalidMessage));
    h.client_sends(request("dance")).await;
    assert_eq!(h.next().await.event.error_code(), Some(ErrorCode::UnknownAction));
    h.client_sends(Message::Binary(vec![0xB1, 0x03].into())).await;
    assert_eq!(h.next().await.event.error_code(), Some(ErrorCode::InvalidFrame));
    h.client_sends(request("turn.end")).await;
    let answer = h.next().await;
    assert_eq!(answer.event, ServerEvent::TurnEnded(TurnEndAnswer { flushed: true }));
    let flush = h.audio.recv().await.unwrap();
    assert!(matches!(flush.message, Some(stt::transcribe_request::Message::Flush(_))));
}
