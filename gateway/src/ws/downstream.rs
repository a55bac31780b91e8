//! What a voice connection needs from the services behind the gateway, as one trait: the
//! production implementation calls the stt-, llm- and session-service over gRPC; the unit tests
//! of the connection implement it with channels.

use blob_proto::llm::v1 as llm;
use blob_proto::session::v1 as session;
use blob_proto::stt::v1 as stt;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::state::AppState;

/// A server stream from a service.
pub type EventStream<T> = BoxStream<'static, Result<T, Status>>;

/// Audio chunks buffered towards the stt-service.
pub const AUDIO_QUEUE: usize = 64;

/// An open speech-recognition stream: requests up, events down.
pub struct SpeechStream {
    /// Audio, utterance context and flush requests (bounded by [`AUDIO_QUEUE`]).
    pub audio: mpsc::Sender<stt::TranscribeRequest>,
    /// What the recogniser hears.
    pub events: EventStream<stt::TranscribeEvent>,
}

/// The calls a voice connection makes.
#[tonic::async_trait]
pub trait Downstream: Clone + Send + Sync + 'static {
    /// Opens a recognition stream configured by `config`.
    async fn open_speech(&self, config: stt::StreamConfig) -> Result<SpeechStream, Status>;
    /// Asks for Blob's reply, streamed.
    async fn reply(
        &self,
        request: llm::GenerateReplyRequest,
    ) -> Result<EventStream<llm::ReplyEvent>, Status>;
    /// Stores exchanges.
    async fn append_turns(&self, request: session::AppendTurnsRequest) -> Result<(), Status>;
    /// Trims a stored reply to what the child heard.
    async fn trim_turn(&self, request: session::TrimTurnRequest) -> Result<(), Status>;
    /// Pauses or resumes the session.
    async fn set_paused(&self, request: session::SetPausedRequest) -> Result<(), Status>;
    /// Keeps numbered messages for replay.
    async fn record_events(&self, request: session::RecordEventsRequest) -> Result<(), Status>;
    /// Suspends the session when its socket goes away.
    async fn suspend(&self, request: session::SessionRef) -> Result<(), Status>;
    /// Subscribes to the session's signals again (after the stream broke), then reads the
    /// session as it is now (`NOT_FOUND` once it ended).
    async fn rewatch(
        &self,
        session_id: &str,
        user_id: &str,
    ) -> Result<(EventStream<session::SessionSignal>, session::Session), Status>;
}

/// The services over gRPC, each unary call with the configured deadline.
#[derive(Clone)]
pub struct Services {
    state: AppState,
}

impl Services {
    /// The clients in `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl Downstream for Services {
    async fn open_speech(&self, config: stt::StreamConfig) -> Result<SpeechStream, Status> {
        let (audio, rx) = mpsc::channel(AUDIO_QUEUE);
        let config = stt::TranscribeRequest {
            message: Some(stt::transcribe_request::Message::Config(config)),
        };
        audio.try_send(config).expect("a new channel has room");
        let events = self.state.stt.clone().transcribe(ReceiverStream::new(rx)).await?;
        Ok(SpeechStream { audio, events: events.into_inner().boxed() })
    }

    async fn reply(
        &self,
        request: llm::GenerateReplyRequest,
    ) -> Result<EventStream<llm::ReplyEvent>, Status> {
        Ok(self.state.llm.clone().generate_reply(request).await?.into_inner().boxed())
    }

    async fn append_turns(&self, request: session::AppendTurnsRequest) -> Result<(), Status> {
        self.state.sessions.clone().append_turns(self.state.request(request)).await.map(drop)
    }

    async fn trim_turn(&self, request: session::TrimTurnRequest) -> Result<(), Status> {
        self.state.sessions.clone().trim_turn(self.state.request(request)).await.map(drop)
    }

    async fn set_paused(&self, request: session::SetPausedRequest) -> Result<(), Status> {
        self.state.sessions.clone().set_paused(self.state.request(request)).await.map(drop)
    }

    async fn record_events(&self, request: session::RecordEventsRequest) -> Result<(), Status> {
        self.state.sessions.clone().record_events(self.state.request(request)).await.map(drop)
    }

    async fn suspend(&self, request: session::SessionRef) -> Result<(), Status> {
        self.state.sessions.clone().suspend_session(self.state.request(request)).await.map(drop)
    }

    async fn rewatch(
        &self,
        session_id: &str,
        user_id: &str,
    ) -> Result<(EventStream<session::SessionSignal>, session::Session), Status> {
        let mut sessions = self.state.sessions.clone();
        // Watch first: nothing that happens after the read below can be missed.
        let signals = sessions
            .watch_session(session::WatchSessionRequest {
                session_id: session_id.to_owned(),
                user_id: user_id.to_owned(),
            })
            .await?
            .into_inner()
            .boxed();
        let now = sessions
            .get_session(
                self.state
                    .request(session::GetSessionRequest { session_id: session_id.to_owned() }),
            )
            .await?
            .into_inner();
        Ok((signals, now))
    }
}
