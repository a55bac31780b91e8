//! `GET /ws/voice`: the upgrade, admission, and the connection over the real services.

use std::collections::HashMap;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures::StreamExt as _;
use tracing::Instrument as _;

use blob_voice_protocol::CloseCode;

use super::admission::admit;
use super::connection::{self, Context};
use super::downstream::Services;
use crate::state::AppState;

/// Largest WebSocket message accepted (a frame of 1 s of audio is 32 KiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

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
    // Taken before the upgrade, so a full gateway refuses at once.
    let slot = state.capacity.try_socket();
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
                match slot {
                    Some(slot) => {
                        handle(state, params, socket).await;
                        drop(slot);
                    }
                    None => {
                        tracing::warn!("voice socket refused: WS_MAX_SOCKETS reached");
                        close(&state, socket, CloseCode::TryAgainLater, "server at capacity").await;
                    }
                }
                drop(live);
            }
            .instrument(span)
        })
}

async fn handle(state: AppState, params: HashMap<String, String>, socket: WebSocket) {
    match admit(&state, &params).await {
        Ok((admitted, place)) => {
            tracing::Span::current().record("user_id", admitted.user_id.as_str());
            let context = Context {
                downstream: Services::new(state.clone()),
                settings: state.config.ws.clone(),
                tts: (&state.config.tts).into(),
                metrics: state.metrics.clone(),
                shutdown: state.shutdown.clone(),
            };
            let (sink, reader) = socket.split();
            connection::run(context, admitted, sink, reader).await;
            drop(place);
        }
        Err((code, reason)) => {
            tracing::info!(%code, reason, "voice socket refused");
            close(&state, socket, code, reason).await;
        }
    }
}

/// Refuses a socket at admission (counted with the other server closes).
async fn close(state: &AppState, mut socket: WebSocket, code: CloseCode, reason: &'static str) {
    let labels = vec![("code", code.code().to_string())];
    state.metrics.ws_closes.get_or_create(&labels).inc();
    let frame = CloseFrame { code: code.code(), reason: Utf8Bytes::from_static(reason) };
    let _ = socket.send(Message::Close(Some(frame))).await;
}
