//! Shared plumbing for Blob's services: typed configuration from the environment, telemetry,
//! shutdown, gRPC health and serving, and the one table that maps errors to HTTP and gRPC.

pub mod admin;
pub mod config;
pub mod error;
pub mod grpc;
pub mod sentences;
pub mod shutdown;
pub mod telemetry;

pub use error::ErrorKind;
