//! Shared plumbing for Blob's services: typed configuration from the environment, telemetry,
//! shutdown, gRPC health and serving, the one table that maps errors to HTTP and gRPC, and the
//! rules for names and grades.

pub mod admin;
pub mod config;
pub mod error;
pub mod grpc;
pub mod sentences;
pub mod shutdown;
pub mod telemetry;
pub mod validate;

pub use error::ErrorKind;
