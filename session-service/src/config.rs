//! Configuration from the environment (see the README's table).

use std::net::SocketAddr;
use std::time::Duration;

use blob_kit::config::{ConfigError, EnvReader};

/// Everything the session-service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SESSION_GRPC_ADDR`: where the gRPC server listens (port 0 picks a free port).
    pub grpc_addr: SocketAddr,
    /// `ADMIN_ADDR`: metrics and health (default `127.0.0.1:9103`).
    pub admin_addr: SocketAddr,
    /// `REDIS_URL`: the hot store.
    pub redis_url: String,
    /// Time-to-live settings for hot keys.
    pub ttl: Ttls,
}

/// How long each kind of hot key lives without activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttls {
    /// `SESSION_TTL_SECONDS` (default 1 h): `session:{id}` and `child_session:{child_id}`.
    pub session: Duration,
    /// `SESSION_RECONNECT_WINDOW_SECONDS` (default 5 min): `suspended:{id}`.
    pub reconnect_window: Duration,
    /// `CONVERSATION_TTL_SECONDS` (default 24 h): `conversation:{id}`.
    pub conversation: Duration,
}

impl Default for Ttls {
    fn default() -> Self {
        Self {
            session: Duration::from_secs(3600),
            reconnect_window: Duration::from_secs(300),
            conversation: Duration::from_secs(86_400),
        }
    }
}

impl Config {
    /// Reads and validates the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::from_env())
    }

    /// Reads and validates the given variables, reporting every problem at once.
    pub fn from_reader(mut env: EnvReader) -> Result<Self, ConfigError> {
        let defaults = Ttls::default();
        let grpc_addr = env.parse("SESSION_GRPC_ADDR", SocketAddr::from(([127, 0, 0, 1], 50053)));
        let admin_addr = env.parse("ADMIN_ADDR", SocketAddr::from(([127, 0, 0, 1], 9103)));
        let redis_url = env.string("REDIS_URL", "redis://127.0.0.1:6379");
        let session = env.parse("SESSION_TTL_SECONDS", defaults.session.as_secs());
        let window =
            env.parse("SESSION_RECONNECT_WINDOW_SECONDS", defaults.reconnect_window.as_secs());
        let conversation = env.parse("CONVERSATION_TTL_SECONDS", defaults.conversation.as_secs());
        env.check(redis_url.starts_with("redis://") || redis_url.starts_with("unix://"), || {
            format!("REDIS_URL={redis_url:?}: expected redis://host:port or unix:///path")
        });
        for (name, value) in [
            ("SESSION_TTL_SECONDS", session),
            ("SESSION_RECONNECT_WINDOW_SECONDS", window),
            ("CONVERSATION_TTL_SECONDS", conversation),
        ] {
            env.check(value > 0, || format!("{name}: must be at least 1 second"));
        }
        env.check(conversation >= session, || {
            "CONVERSATION_TTL_SECONDS must not be shorter than SESSION_TTL_SECONDS".to_owned()
        });
        env.finish()?;
        Ok(Self {
            grpc_addr,
            admin_addr,
            redis_url,
            ttl: Ttls {
                session: Duration::from_secs(session),
                reconnect_window: Duration::from_secs(window),
                conversation: Duration::from_secs(conversation),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_locally() {
        let config = Config::from_reader(EnvReader::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(config.grpc_addr.port(), 50053);
        assert_eq!(config.ttl, Ttls::default());
    }

    #[test]
    fn every_problem_is_listed() {
        let env = EnvReader::from_pairs([
            ("REDIS_URL", "http://nope"),
            ("SESSION_TTL_SECONDS", "0"),
            ("SESSION_RECONNECT_WINDOW_SECONDS", "soon"),
        ]);
        let err = Config::from_reader(env).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
    }
}
