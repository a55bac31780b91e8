//! Configuration from the environment (see the README's table).

use std::net::SocketAddr;
use std::time::Duration;

use blob_kit::config::{ConfigError, EnvReader};

/// Everything the session-service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SESSION_GRPC_ADDR`: where the gRPC server listens (port 0 picks a free port).
    pub grpc_addr: SocketAddr,
    /// `GRPC_REFLECTION` (default: on when `grpc_addr` is loopback): server reflection.
    pub grpc_reflection: bool,
    /// `ADMIN_ADDR`: metrics and health (default `127.0.0.1:9103`).
    pub admin_addr: SocketAddr,
    /// `REDIS_URL`: the hot store (`redis://`, `rediss://` for TLS, or `unix://`).
    pub redis_url: String,
    /// `REDIS_TLS_CA_PATH`: with `rediss://`, a PEM file of the certificate authority that
    /// signed the server's certificate (a private CA, as managed Redis services use); unset,
    /// the system's trusted roots.
    pub redis_tls_ca_path: Option<std::path::PathBuf>,
    /// Time-to-live settings for hot keys.
    pub ttl: Ttls,
    /// Where cold state lives.
    pub cold: ColdConfig,
}

/// `COLD_STORE`: which durable store holds users, children, progress and archived sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColdConfig {
    /// `embedded` (default): one SQLite file at `EMBEDDED_STORE_PATH`.
    Embedded {
        /// `EMBEDDED_STORE_PATH` (default `data/blob-state.sqlite3`).
        path: std::path::PathBuf,
    },
    /// `firestore`: Cloud Firestore (or its emulator when `FIRESTORE_EMULATOR_HOST` is set).
    Firestore {
        /// `FIRESTORE_PROJECT_ID`, else `GOOGLE_CLOUD_PROJECT`.
        project_id: String,
        /// `FIRESTORE_DATABASE_ID` (default `(default)`).
        database_id: String,
        /// `FIRESTORE_TIMEOUT_SECONDS` (default 5): the longest one request waits.
        timeout: Duration,
    },
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
        let grpc_reflection = blob_kit::grpc::reflection_enabled(&mut env, &grpc_addr);
        let admin_addr = env.parse("ADMIN_ADDR", SocketAddr::from(([127, 0, 0, 1], 9103)));
        let redis_url = env.string("REDIS_URL", "redis://127.0.0.1:6379");
        let session = env.parse("SESSION_TTL_SECONDS", defaults.session.as_secs());
        let window =
            env.parse("SESSION_RECONNECT_WINDOW_SECONDS", defaults.reconnect_window.as_secs());
        let conversation = env.parse("CONVERSATION_TTL_SECONDS", defaults.conversation.as_secs());
        let cold = match env.string("COLD_STORE", "embedded").as_str() {
            "embedded" => ColdConfig::Embedded {
                path: env.string("EMBEDDED_STORE_PATH", "data/blob-state.sqlite3").into(),
            },
            "firestore" => {
                let fallback = env.string("GOOGLE_CLOUD_PROJECT", "");
                let project_id = env.string("FIRESTORE_PROJECT_ID", &fallback);
                env.check(!project_id.is_empty(), || {
                    "COLD_STORE=firestore needs FIRESTORE_PROJECT_ID (or GOOGLE_CLOUD_PROJECT)"
                        .to_owned()
                });
                let timeout = env.parse("FIRESTORE_TIMEOUT_SECONDS", 5u64);
                env.check(timeout > 0, || "FIRESTORE_TIMEOUT_SECONDS: must be at least 1".into());
                ColdConfig::Firestore {
                    project_id,
                    database_id: env.string("FIRESTORE_DATABASE_ID", "(default)"),
                    timeout: Duration::from_secs(timeout),
                }
            }
            other => {
                env.check(false, || {
                    format!("COLD_STORE={other:?}: expected embedded or firestore")
                });
                ColdConfig::Embedded { path: Default::default() }
            }
        };
        env.check(
            ["redis://", "rediss://", "unix://"].iter().any(|scheme| redis_url.starts_with(scheme)),
            || {
                format!(
                    "REDIS_URL={redis_url:?}: expected redis://host:port, rediss://host:port (TLS) or unix:///path"
                )
            },
        );
        let redis_tls_ca_path = env.optional("REDIS_TLS_CA_PATH").map(std::path::PathBuf::from);
        env.check(redis_tls_ca_path.is_none() || redis_url.starts_with("rediss://"), || {
            "REDIS_TLS_CA_PATH is only for a rediss:// REDIS_URL".into()
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
            grpc_reflection,
            admin_addr,
            redis_url,
            redis_tls_ca_path,
            cold,
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
        assert_eq!(config.cold, ColdConfig::Embedded { path: "data/blob-state.sqlite3".into() });
    }

    #[test]
    fn firestore_needs_a_project() {
        let env = EnvReader::from_pairs([("COLD_STORE", "firestore")]);
        let err = Config::from_reader(env).unwrap_err();
        assert!(err.to_string().contains("FIRESTORE_PROJECT_ID"), "{err}");
        let env = EnvReader::from_pairs([
            ("COLD_STORE", "firestore"),
            ("GOOGLE_CLOUD_PROJECT", "blob-prod"),
        ]);
        let config = Config::from_reader(env).unwrap();
        assert!(matches!(
            config.cold,
            ColdConfig::Firestore { ref project_id, ref database_id, .. }
                if project_id == "blob-prod" && database_id == "(default)"
        ));
        let env = EnvReader::from_pairs([("COLD_STORE", "postgres")]);
        assert!(Config::from_reader(env).is_err());
    }

    #[test]
    fn redis_is_reached_over_tls_with_rediss() {
        let env = EnvReader::from_pairs([
            ("REDIS_URL", "rediss://redis.internal:6380"),
            ("REDIS_TLS_CA_PATH", "/etc/blob/redis-ca.pem"),
        ]);
        let config = Config::from_reader(env).unwrap();
        assert_eq!(config.redis_tls_ca_path, Some("/etc/blob/redis-ca.pem".into()));
        let env = EnvReader::from_pairs([
            ("REDIS_URL", "redis://redis.internal:6379"),
            ("REDIS_TLS_CA_PATH", "/etc/blob/redis-ca.pem"),
        ]);
        let err = Config::from_reader(env).unwrap_err();
        assert!(err.to_string().contains("only for a rediss://"), "{err}");
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
