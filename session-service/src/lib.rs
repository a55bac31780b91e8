//! Blob's state service. Hot state (sessions, suspensions, conversations) lives in Redis with
//! time-to-live keys and atomic Lua transitions; cold state (users, children, family links,
//! archived sessions) lives behind the [`cold::ColdStore`] trait.

pub mod cold;
pub mod config;
pub mod convert;
pub mod hot;
pub mod metrics;
pub mod record;
pub mod service;
pub mod signals;
pub mod startup;
pub mod timestamp;

pub use config::Config;
pub use startup::Application;
