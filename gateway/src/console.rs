//! The browser console at `/console`: try Blob with a microphone (`CONSOLE_ENABLED`, on by
//! default in local mode only). Plain HTML, CSS and JavaScript compiled into the binary; it uses
//! only the public REST API and voice socket, like the phone app.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::envelope::{ApiError, not_found};
use crate::state::AppState;

const PAGE: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");
const WORKLET: &str = include_str!("../console/capture-worklet.js");
/// The voice protocol's names (`VOICE`), generated from the protocol crate.
static PROTOCOL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(blob_voice_protocol::catalogue::javascript);

/// Same-origin only; no inline script; the microphone for this page.
const POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                      style-src 'self'; script-src 'self'; frame-ancestors 'none'";

/// `GET /console`.
pub async fn page(State(state): State<AppState>) -> Result<Response, ApiError> {
    serve(&state, "text/html; charset=utf-8", PAGE).await
}

/// `GET /console/{file}`: the page's scripts (its own and the protocol's names), style and
/// audio worklet.
pub async fn asset(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let (kind, body) = match file.as_str() {
        "console.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "capture-worklet.js" => ("text/javascript; charset=utf-8", WORKLET),
        "protocol.js" => ("text/javascript; charset=utf-8", PROTOCOL.as_str()),
        "console.css" => ("text/css; charset=utf-8", STYLE),
        _ => return Err(not_found().await),
    };
    serve(&state, kind, body).await
}

async fn serve(
    state: &AppState,
    kind: &'static str,
    body: &'static str,
) -> Result<Response, ApiError> {
    if !state.config.console_enabled {
        return Err(not_found().await);
    }
    Ok((
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}
