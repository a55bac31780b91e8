//! Blob's edge: the REST API under `/api/v1`, the voice WebSocket at `/ws/voice`, and
//! authentication. State lives in the session-service; speech goes to the stt-service and
//! replies come from the llm-service, all over gRPC.

pub mod auth;
pub mod config;
pub mod console;
pub mod envelope;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod startup;
pub mod state;
pub mod ws;

pub use config::Config;
pub use startup::Application;
