//! End-to-end tests: the real service binaries, real Redis, real gRPC, the real whisper model.

mod api;
mod auth;
mod cli;
mod cold_store;
mod connections;
mod contract;
mod faults;
mod hardening;
mod health;
mod limits;
mod operations;
mod promise;
mod seed;
mod shutdown;
mod turns;
mod voice;
