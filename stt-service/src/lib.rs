//! Speech-to-text for Blob. Each voice connection is one gRPC stream: its audio is cut into
//! utterances by [`vad::Segmenter`], and each utterance is transcribed by the shared
//! [`engine::Engine`] (whisper.cpp) off the async runtime.

pub mod config;
pub mod engine;
pub mod metrics;
pub mod onnx;
pub mod quality;
pub mod service;
pub mod silero;
pub mod smart_turn;
pub mod startup;
pub mod stream;
pub mod turn;
pub mod vad;

pub use config::Config;
pub use startup::Application;
