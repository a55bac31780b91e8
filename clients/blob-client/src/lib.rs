//! A client for Blob, speaking the contract the phone app speaks: the REST API
//! (`docs/openapi.json`, served at `/openapi.json`) and the voice socket (`docs/ws-messages.md`).
//!
//! [`Client`] signs in and calls the REST API; [`Voice`] is one voice socket: v4 audio frames up,
//! every server message down as a typed [`Event`]. The `blob` command line, the load and latency
//! benchmarks and the end-to-end tests all use it.

pub mod api;
pub mod audio;
pub mod event;
pub mod voice;

pub use api::{ApiError, Child, Client, Error, OpenedSession, SignedIn};
pub use blob_voice_protocol as protocol;
pub use event::{Event, Message};
pub use voice::{Pace, Received, Voice};
