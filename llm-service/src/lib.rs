//! Blob's replies. A [`provider::ReplyProvider`] turns a child's words (with the conversation so
//! far) into a stream of text; the gRPC service streams it on as deltas and one final event.

pub mod adc;
pub mod breaker;
pub mod bypass;
pub mod concern;
pub mod config;
pub mod filter;
pub mod gemini;
pub mod local;
pub mod metrics;
pub mod openai;
pub mod persona;
pub mod provider;
pub mod sentences;
pub mod service;
pub mod shape;
pub mod sse;
pub mod startup;

pub use config::Config;
pub use startup::Application;
