//! One voice socket: audio up as v4 frames, typed messages down.

use std::time::Duration;

use blob_voice_protocol::{AudioFrame, ClientMessage, ClientRequest, ParseError};
use futures::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::api::{Client, Error};
use crate::audio::pcm_bytes;
use crate::event::{Event, Message};

/// What [`Voice::next`] got.
#[derive(Debug, Clone)]
pub enum Received {
    /// A server message (pings are answered, and replayed duplicates skipped, before this).
    Message(Box<Message>),
    /// The socket closed, with the server's close code if it sent one.
    Closed(Option<u16>),
    /// A message of an action this client does not know (a newer server): skip it.
    Unknown {
        /// Its action.
        action: String,
        /// The message as sent.
        raw: serde_json::Value,
    },
}

/// How [`Voice::send_audio`] paces its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// One frame per frame length, like a microphone.
    RealTime,
    /// As fast as the socket takes them.
    Fast,
}

/// One connected voice socket.
pub struct Voice {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    thread: uuid::Uuid,
    sequence: u32,
    last_seq: Option<u64>,
}

impl std::fmt::Debug for Voice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Voice")
            .field("thread", &self.thread)
            .field("sequence", &self.sequence)
            .field("last_seq", &self.last_seq)
            .finish()
    }
}

impl Voice {
    /// Connects to a session's voice socket; `last_seq` (the highest `meta.seq` processed on an
    /// earlier socket) asks for the messages missed since.
    pub async fn connect(
        client: &Client,
        session_id: &str,
        last_seq: Option<u64>,
    ) -> Result<Self, Error> {
        let mut voice = Self::connect_url(&client.voice_url(session_id, last_seq)?).await?;
        voice.last_seq = last_seq;
        Ok(voice)
    }

    /// Connects to a full voice socket URL (query included).
    pub async fn connect_url(url: &str) -> Result<Self, Error> {
        // Frames are small and paced: send each at once rather than waiting for an ACK (Nagle).
        let (socket, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .map_err(Box::new)?;
        Ok(Self { socket, thread: uuid::Uuid::new_v4(), sequence: 0, last_seq: None })
    }

    /// The highest `meta.seq` received: reconnect with it to miss nothing.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Sends PCM as the next v4 frame of this socket's thread.
    pub async fn send_pcm(&mut self, samples: &[i16]) -> Result<(), Error> {
        let frame = AudioFrame::encode(self.sequence, self.thread, &pcm_bytes(samples));
        self.sequence = self.sequence.wrapping_add(1);
        self.send_frame(Frame::Binary(frame.into())).await
    }

    /// Sends `samples` in frames of `frame_ms`, paced as asked, handing every message that
    /// arrives meanwhile to `on_message`. Stops early if the socket closes (returning the code).
    pub async fn send_audio(
        &mut self,
        samples: &[i16],
        frame_ms: usize,
        pace: Pace,
        mut on_message: impl FnMut(&Message),
    ) -> Result<Option<Option<u16>>, Error> {
        let started = tokio::time::Instant::now();
        for (i, frame) in samples.chunks(frame_ms.max(1) * 16).enumerate() {
            self.send_pcm(frame).await?;
            let due = started + Duration::from_millis(((i + 1) * frame_ms) as u64);
            loop {
                let wait = match pace {
                    Pace::RealTime => due.saturating_duration_since(tokio::time::Instant::now()),
                    Pace::Fast => Duration::ZERO,
                };
                match self.next(wait).await? {
                    Some(Received::Message(message)) => on_message(&message),
                    Some(Received::Closed(code)) => return Ok(Some(code)),
                    Some(Received::Unknown { .. }) => {}
                    None => break,
                }
            }
        }
        Ok(None)
    }

    /// Says the child is done speaking (`turn.end`): the turn ends now rather than at the
    /// end-of-turn silence.
    pub async fn end_turn(&mut self) -> Result<(), Error> {
        self.request(ClientRequest::TurnEnd).await
    }

    /// Sends a JSON request (`ping`, `pause`, `resume`, `playback.progress`, `turn.end`) with a
    /// fresh `meta.request_id`.
    pub async fn request(&mut self, request: ClientRequest) -> Result<(), Error> {
        let text = ClientMessage::new(request).to_json();
        self.send_frame(Frame::Text(text.into())).await
    }

    /// Pauses the session: no recognition or reply until [`Voice::resume`].
    pub async fn pause(&mut self) -> Result<(), Error> {
        self.request(ClientRequest::Pause).await
    }

    /// Resumes a paused session.
    pub async fn resume(&mut self) -> Result<(), Error> {
        self.request(ClientRequest::Resume).await
    }

    /// The next server message within `deadline` (`None` when nothing came). Answers the
    /// server's pings and skips replayed messages already seen.
    pub async fn next(&mut self, deadline: Duration) -> Result<Option<Received>, Error> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let Ok(frame) = tokio::time::timeout_at(until, self.socket.next()).await else {
                return Ok(None);
            };
            let text = match frame {
                Some(Ok(Frame::Text(text))) => text,
                Some(Ok(Frame::Close(close))) => {
                    return Ok(Some(Received::Closed(close.map(|c| u16::from(c.code)))));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok(Some(Received::Closed(None))),
            };
            let raw: serde_json::Value = serde_json::from_str(&text).map_err(|err| {
                Error::Protocol(format!("a text message that is not JSON: {err}"))
            })?;
            let message = match Message::parse(raw.clone()) {
                Ok(message) => message,
                Err(ParseError::UnknownAction { action }) => {
                    return Ok(Some(Received::Unknown { action, raw }));
                }
                Err(err) => return Err(Error::Protocol(format!("{err}: {raw}"))),
            };
            if let Some(seq) = message.seq {
                if self.last_seq.is_some_and(|last| seq <= last) {
                    continue;
                }
                self.last_seq = Some(seq);
            }
            if matches!(message.event, Event::Ping(_)) {
                self.request(ClientRequest::Pong).await?;
            }
            return Ok(Some(Received::Message(Box::new(message))));
        }
    }

    /// Waits for a message that satisfies `wanted`, handing the others to `on_other`; `None`
    /// when the deadline passes, `Err` with the close code when the socket closes first.
    pub async fn wait_for(
        &mut self,
        deadline: Duration,
        wanted: impl Fn(&Event) -> bool,
        mut on_other: impl FnMut(&Message),
    ) -> Result<Option<Message>, Error> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                None => return Ok(None),
                Some(Received::Closed(code)) => {
                    return Err(Error::Protocol(format!("socket closed ({code:?})")));
                }
                Some(Received::Message(message)) if wanted(&message.event) => {
                    return Ok(Some(*message));
                }
                Some(Received::Message(message)) => on_other(&message),
                Some(Received::Unknown { .. }) => {}
            }
        }
    }

    /// Closes the socket normally (the session ends only by `POST …/end`; a closed socket
    /// leaves it suspended, to continue later).
    pub async fn close(mut self) -> Result<(), Error> {
        self.socket.close(None).await.map_err(Box::new)?;
        // Drain to the server's close.
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_secs(5), self.socket.next()).await
        {}
        Ok(())
    }

    async fn send_frame(&mut self, frame: Frame) -> Result<(), Error> {
        self.socket.send(frame).await.map_err(|err| Error::Socket(Box::new(err)))
    }
}
