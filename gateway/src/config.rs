//! Configuration from the environment (see the README's table).

use std::net::SocketAddr;
use std::time::Duration;

use blob_kit::config::{ConfigError, EnvReader};
use secrecy::{ExposeSecret as _, SecretString};

pub use crate::server::ConnectionLimits;

/// Google's public certificates for Firebase ID tokens.
pub const GOOGLE_CERTS_URL: &str =
    "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com";
/// The project id local mode uses unless told otherwise.
pub const LOCAL_PROJECT_ID: &str = "demo-blob";

/// Where parents' ID tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthProvider {
    /// Firebase Auth: certificates from `FIREBASE_CERTS_URL`.
    Firebase,
    /// A local issuer with a development key; only for `demo-*` projects.
    Local,
}

/// The text-to-speech hint sent with every reply.
#[derive(Debug, Clone, PartialEq)]
pub struct TtsHint {
    /// `TTS_VOICE` (default `en-IN-NeerjaNeural`).
    pub voice: String,
    /// `TTS_SPEED` (default 1.0).
    pub speed: f32,
    /// `TTS_LANGUAGE` (default `en-IN`).
    pub language: String,
}

/// Everything the gateway needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `GATEWAY_HTTP_ADDR`: REST and WebSocket listener.
    pub http_addr: SocketAddr,
    /// `ADMIN_ADDR`: metrics and health (default `127.0.0.1:9100`).
    pub admin_addr: SocketAddr,
    /// `SESSION_SERVICE_URL`.
    pub session_service_url: String,
    /// `STT_SERVICE_URL`.
    pub stt_service_url: String,
    /// `LLM_SERVICE_URL`.
    pub llm_service_url: String,
    /// `AUTH_PROVIDER`.
    pub auth_provider: AuthProvider,
    /// `CONSOLE_ENABLED` (default: on in local mode only): the browser console at `/console`.
    pub console_enabled: bool,
    /// `FIREBASE_PROJECT_ID`.
    pub firebase_project_id: String,
    /// `FIREBASE_CERTS_URL`.
    pub firebase_certs_url: String,
    /// `FIREBASE_AUTH_EMULATOR_HOST` set: accept the Auth emulator's unsigned tokens
    /// (only with a `demo-*` project).
    pub firebase_auth_emulator: bool,
    /// `FIREBASE_REQUIRE_VERIFIED_EMAIL` (default true): refuse accounts whose email the
    /// provider has not verified.
    pub require_verified_email: bool,
    /// `FIREBASE_ALLOW_ANONYMOUS` (default false): accept anonymous Firebase accounts.
    pub allow_anonymous: bool,
    /// `BACKEND_JWT_SECRET` (at least 32 bytes; local mode makes a random one when unset).
    pub jwt_secret: SecretString,
    /// `BACKEND_JWT_TTL_SECONDS` (default 3600).
    pub jwt_ttl: Duration,
    /// `PUBLIC_WS_URL`: the voice socket's address as phones reach it.
    pub public_ws_url: String,
    /// `TTS_VOICE`, `TTS_SPEED`, `TTS_LANGUAGE`.
    pub tts: TtsHint,
    /// `DOWNSTREAM_TIMEOUT_SECONDS` (default 5): deadline of each unary call to a service.
    pub downstream_timeout: Duration,
    /// Voice socket limits and timers.
    pub ws: WsSettings,
    /// REST abuse limits and browser access.
    pub http: HttpSettings,
    /// Limits on the connections themselves, below HTTP.
    pub connections: ConnectionLimits,
}

/// Limits of the REST API.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// `RATE_LIMIT_PER_MINUTE` (default 120; 0 turns it off): REST requests per user per minute.
    pub rate_limit_per_minute: u32,
    /// `IDEMPOTENCY_TTL_SECONDS` (default 3600): how long a POST's first response is replayed.
    pub idempotency_ttl: Duration,
    /// `REQUEST_TIMEOUT_SECONDS` (default 15): the longest one REST request may take.
    pub request_timeout: Duration,
    /// `CORS_ALLOWED_ORIGINS` (default none): comma-separated origins allowed to call the API
    /// from a browser, or `*`.
    pub cors_allowed_origins: Vec<String>,
    /// `RATE_LIMIT_PER_ADDRESS_PER_MINUTE` (default 30; 0 turns it off): calls per client
    /// address a minute to sign-in, token exchange, refresh and `/health/services`.
    pub rate_limit_per_address_per_minute: u32,
    /// `CLIENT_ADDRESS_HEADER` (default none): the header whose last entry is the client's
    /// address, set by the trusted proxy in front (`x-forwarded-for`); none: the peer address.
    pub client_address_header: Option<String>,
}

/// Voice socket limits and timers.
#[derive(Debug, Clone, PartialEq)]
pub struct WsSettings {
    /// `WS_HEARTBEAT_INTERVAL_SECONDS` (default 30; fractions allowed): server `ping` period.
    pub heartbeat_interval: Duration,
    /// `WS_MAX_MISSED_PONGS` (default 2): pings in a row with no sign of life before closing.
    pub max_missed_pongs: u32,
    /// `WS_MAX_MESSAGES_PER_SECOND` (default 25): JSON messages (and bad frames) per second.
    pub max_messages_per_second: u32,
    /// `WS_OUTBOUND_QUEUE` (default 256): messages buffered towards a slow client.
    pub outbound_queue: usize,
    /// `LEGACY_BINARY_SUPPORT` (default true, as in the proof of concept): binary messages
    /// without the v4 header are PCM.
    pub legacy_binary: bool,
    /// `WS_MAX_AUDIO_SPEED` (default 1.5): audio a socket may send per second of real time.
    pub max_audio_speed: f64,
    /// `WS_AUDIO_BURST_SECONDS` (default 30): audio a socket may send at once.
    pub audio_burst_seconds: f64,
    /// `WS_MAX_SOCKETS` (default 1000): voice sockets one gateway serves at once (each holds
    /// a speech stream); beyond it a socket is closed with 1013 (try again later).
    pub max_sockets: usize,
    /// `WS_MAX_SOCKETS_PER_USER` (default 8): sessions one account may hold voice sockets
    /// for on one gateway (a reconnect to the same session does not count twice); beyond it
    /// 4429.
    pub max_sockets_per_user: usize,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(30),
            max_missed_pongs: 2,
            max_messages_per_second: 25,
            outbound_queue: 256,
            legacy_binary: true,
            max_audio_speed: 1.5,
            audio_burst_seconds: 30.0,
            max_sockets: 1000,
            max_sockets_per_user: 8,
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
        let http_addr = env.parse("GATEWAY_HTTP_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)));
        let admin_addr = env.parse("ADMIN_ADDR", SocketAddr::from(([127, 0, 0, 1], 9100)));
        let session_service_url = env.string("SESSION_SERVICE_URL", "http://127.0.0.1:50053");
        let stt_service_url = env.string("STT_SERVICE_URL", "http://127.0.0.1:50051");
        let llm_service_url = env.string("LLM_SERVICE_URL", "http://127.0.0.1:50052");
        for (name, url) in [
            ("SESSION_SERVICE_URL", &session_service_url),
            ("STT_SERVICE_URL", &stt_service_url),
            ("LLM_SERVICE_URL", &llm_service_url),
        ] {
            env.check(url.starts_with("http://") || url.starts_with("https://"), || {
                format!("{name}={url:?}: expected http://host:port")
            });
        }
        let auth_provider =
            match env.string("AUTH_PROVIDER", "firebase").to_ascii_lowercase().as_str() {
                "firebase" => AuthProvider::Firebase,
                "local" => AuthProvider::Local,
                other => {
                    env.problem(format!("AUTH_PROVIDER={other:?}: expected firebase or local"));
                    AuthProvider::Firebase
                }
            };
        let local = auth_provider == AuthProvider::Local;
        // Local sign-in hands a token to anyone who asks: on a network address, only when told
        // so by a variable that names the danger.
        let insecure_on_network = env.flag("INSECURE_LOCAL_SIGN_IN_ON_NETWORK", false);
        env.check(!local || http_addr.ip().is_loopback() || insecure_on_network, || {
            format!(
                "AUTH_PROVIDER=local lets anyone sign in: GATEWAY_HTTP_ADDR={http_addr} is not loopback; \
                 listen on 127.0.0.1, or set INSECURE_LOCAL_SIGN_IN_ON_NETWORK=true where only you can reach it"
            )
        });
        let console_enabled = env.parse("CONSOLE_ENABLED", local);
        let firebase_project_id = match env.optional("FIREBASE_PROJECT_ID") {
            Some(id) => id,
            None if local => LOCAL_PROJECT_ID.to_owned(),
            None => {
                env.problem("FIREBASE_PROJECT_ID is required with AUTH_PROVIDER=firebase");
                String::new()
            }
        };
        env.check(!local || firebase_project_id.starts_with("demo-"), || {
            format!(
                "AUTH_PROVIDER=local accepts only a demo-* FIREBASE_PROJECT_ID, got {firebase_project_id:?}"
            )
        });
        let firebase_certs_url = env.string("FIREBASE_CERTS_URL", GOOGLE_CERTS_URL);
        let firebase_auth_emulator =
            env.optional("FIREBASE_AUTH_EMULATOR_HOST").is_some_and(|h| !h.is_empty());
        env.check(!firebase_auth_emulator || firebase_project_id.starts_with("demo-"), || {
            format!(
                "FIREBASE_AUTH_EMULATOR_HOST accepts unsigned tokens, so it needs a demo-* FIREBASE_PROJECT_ID, got {firebase_project_id:?}"
            )
        });
        let require_verified_email = env.flag("FIREBASE_REQUIRE_VERIFIED_EMAIL", true);
        let allow_anonymous = env.flag("FIREBASE_ALLOW_ANONYMOUS", false);
        let jwt_secret = match env.secret("BACKEND_JWT_SECRET") {
            Some(secret) => {
                env.check(local || secret.expose_secret().len() >= 32, || {
                    "BACKEND_JWT_SECRET must be at least 32 bytes".to_owned()
                });
                if let Err(why) = strong_secret(secret.expose_secret()) {
                    env.problem(format!("BACKEND_JWT_SECRET {why}: use `openssl rand -base64 48`"));
                }
                secret
            }
            None if local => SecretString::from(random_secret()),
            None => {
                env.problem("BACKEND_JWT_SECRET is required with AUTH_PROVIDER=firebase");
                SecretString::from(String::new())
            }
        };
        let jwt_ttl = env.parse("BACKEND_JWT_TTL_SECONDS", 3600u64);
        env.check((60..=86_400).contains(&jwt_ttl), || {
            "BACKEND_JWT_TTL_SECONDS must be between 60 and 86400 (a day at most)".to_owned()
        });
        let public_ws_url =
            env.optional("PUBLIC_WS_URL").unwrap_or_else(|| format!("ws://{http_addr}/ws/voice"));
        env.check(
            public_ws_url.starts_with("ws://") || public_ws_url.starts_with("wss://"),
            || format!("PUBLIC_WS_URL={public_ws_url:?}: expected ws:// or wss://"),
        );
        let tts = TtsHint {
            voice: env.string("TTS_VOICE", "en-IN-NeerjaNeural"),
            speed: env.parse("TTS_SPEED", 1.0f32),
            language: env.string("TTS_LANGUAGE", "en-IN"),
        };
        env.check((0.25..=4.0).contains(&tts.speed), || {
            "TTS_SPEED must be between 0.25 and 4".into()
        });
        let defaults = WsSettings::default();
        let heartbeat =
            env.parse("WS_HEARTBEAT_INTERVAL_SECONDS", defaults.heartbeat_interval.as_secs_f64());
        env.check((0.1..=3600.0).contains(&heartbeat), || {
            "WS_HEARTBEAT_INTERVAL_SECONDS must be between 0.1 and 3600".to_owned()
        });
        let ws = WsSettings {
            heartbeat_interval: Duration::from_secs_f64(heartbeat.clamp(0.1, 3600.0)),
            max_missed_pongs: env.parse("WS_MAX_MISSED_PONGS", defaults.max_missed_pongs),
            max_messages_per_second: env
                .parse("WS_MAX_MESSAGES_PER_SECOND", defaults.max_messages_per_second),
            outbound_queue: env.parse("WS_OUTBOUND_QUEUE", defaults.outbound_queue),
            legacy_binary: env.flag("LEGACY_BINARY_SUPPORT", defaults.legacy_binary),
            max_audio_speed: env.parse("WS_MAX_AUDIO_SPEED", defaults.max_audio_speed),
            audio_burst_seconds: env.parse("WS_AUDIO_BURST_SECONDS", defaults.audio_burst_seconds),
            max_sockets: env.parse("WS_MAX_SOCKETS", defaults.max_sockets),
            max_sockets_per_user: env
                .parse("WS_MAX_SOCKETS_PER_USER", defaults.max_sockets_per_user),
        };
        env.check(ws.max_sockets >= 1, || "WS_MAX_SOCKETS must be at least 1".into());
        env.check(ws.max_sockets_per_user >= 1, || {
            "WS_MAX_SOCKETS_PER_USER must be at least 1".into()
        });
        let connection_defaults = ConnectionLimits::default();
        let connections = ConnectionLimits {
            max_connections: env.parse("HTTP_MAX_CONNECTIONS", connection_defaults.max_connections),
            header_read_timeout: Duration::from_secs_f64(
                env.parse(
                    "HTTP_HEADER_READ_TIMEOUT_SECONDS",
                    connection_defaults.header_read_timeout.as_secs_f64(),
                )
                .clamp(0.1, 3600.0),
            ),
            idle_timeout: Duration::from_secs_f64(
                env.parse(
                    "HTTP_IDLE_TIMEOUT_SECONDS",
                    connection_defaults.idle_timeout.as_secs_f64(),
                )
                .clamp(0.1, 86_400.0),
            ),
        };
        env.check(connections.max_connections > ws.max_sockets, || {
            "HTTP_MAX_CONNECTIONS must be above WS_MAX_SOCKETS (REST calls need connections too)"
                .into()
        });
        // A silent voice socket is closed by the heartbeat, with its close code, before the
        // idle timeout cuts the connection without one.
        let heartbeat_close = ws.heartbeat_interval * (ws.max_missed_pongs + 1);
        env.check(connections.idle_timeout > heartbeat_close, || {
            format!(
                "HTTP_IDLE_TIMEOUT_SECONDS must be above WS_HEARTBEAT_INTERVAL_SECONDS × (WS_MAX_MISSED_PONGS + 1) = {} s",
                heartbeat_close.as_secs_f64()
            )
        });
        env.check((1.0..=100.0).contains(&ws.max_audio_speed), || {
            "WS_MAX_AUDIO_SPEED must be between 1 and 100".into()
        });
        env.check((1.0..=600.0).contains(&ws.audio_burst_seconds), || {
            "WS_AUDIO_BURST_SECONDS must be between 1 and 600".into()
        });
        env.check(ws.max_missed_pongs >= 1, || "WS_MAX_MISSED_PONGS must be at least 1".into());
        env.check(ws.max_messages_per_second >= 1, || {
            "WS_MAX_MESSAGES_PER_SECOND must be at least 1".into()
        });
        env.check(ws.outbound_queue >= 16, || "WS_OUTBOUND_QUEUE must be at least 16".into());
        let downstream_timeout = env.parse("DOWNSTREAM_TIMEOUT_SECONDS", 5u64);
        env.check(downstream_timeout > 0, || {
            "DOWNSTREAM_TIMEOUT_SECONDS must be at least 1".into()
        });
        let rate_limit_per_minute = env.parse("RATE_LIMIT_PER_MINUTE", 120u32);
        let idempotency_ttl = env.parse("IDEMPOTENCY_TTL_SECONDS", 3600u64);
        env.check(idempotency_ttl >= 60, || "IDEMPOTENCY_TTL_SECONDS must be at least 60".into());
        let request_timeout = env.parse("REQUEST_TIMEOUT_SECONDS", 15u64);
        env.check(request_timeout > 0, || "REQUEST_TIMEOUT_SECONDS must be at least 1".into());
        let cors_allowed_origins: Vec<String> = env
            .string("CORS_ALLOWED_ORIGINS", "")
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        for origin in &cors_allowed_origins {
            env.check(
                origin == "*"
                    || ((origin.starts_with("http://") || origin.starts_with("https://"))
                        && axum::http::HeaderValue::from_str(origin).is_ok()),
                || format!("CORS_ALLOWED_ORIGINS: {origin:?} is not * or an http(s) origin"),
            );
        }
        let http = HttpSettings {
            rate_limit_per_minute,
            idempotency_ttl: Duration::from_secs(idempotency_ttl),
            request_timeout: Duration::from_secs(request_timeout),
            cors_allowed_origins,
            rate_limit_per_address_per_minute: env
                .parse("RATE_LIMIT_PER_ADDRESS_PER_MINUTE", 30u32),
            client_address_header: env
                .optional("CLIENT_ADDRESS_HEADER")
                .map(|h| h.trim().to_ascii_lowercase()),
        };
        env.check(
            http.client_address_header
                .as_deref()
                .is_none_or(|h| axum::http::HeaderName::from_bytes(h.as_bytes()).is_ok()),
            || "CLIENT_ADDRESS_HEADER must be a header name".into(),
        );
        env.finish()?;
        Ok(Self {
            http,
            http_addr,
            admin_addr,
            session_service_url,
            stt_service_url,
            llm_service_url,
            auth_provider,
            console_enabled,
            firebase_project_id,
            firebase_certs_url,
            firebase_auth_emulator,
            require_verified_email,
            allow_anonymous,
            jwt_secret,
            jwt_ttl: Duration::from_secs(jwt_ttl),
            public_ws_url,
            tts,
            downstream_timeout: Duration::from_secs(downstream_timeout),
            ws,
            connections,
        })
    }
}

/// Words that mark a value copied from an example rather than generated.
const PLACEHOLDER_WORDS: [&str; 8] =
    ["replace", "change", "example", "placeholder", "your", "todo", "password", "default"];

/// Refuses a placeholder or a low-entropy secret: one that repeats a shorter run, or whose
/// characters' empirical entropy (length × the Shannon entropy of their frequencies) is under
/// 100 bits (a random 32-character hex string has about 118, 48 random bytes in base64 over 300).
fn strong_secret(secret: &str) -> Result<(), &'static str> {
    let lower = secret.to_ascii_lowercase();
    if PLACEHOLDER_WORDS.iter().any(|word| lower.contains(word)) {
        return Err("looks like a placeholder");
    }
    let bytes = secret.as_bytes();
    let repeats = (1..=bytes.len() / 2).any(|period| {
        bytes.len().is_multiple_of(period) && bytes.chunks(period).all(|c| c == &bytes[..period])
    });
    if repeats {
        return Err("repeats itself");
    }
    let mut counts = std::collections::HashMap::new();
    for byte in secret.bytes() {
        *counts.entry(byte).or_insert(0usize) += 1;
    }
    let n = secret.len() as f64;
    let bits: f64 = counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -(c as f64) * p.log2()
        })
        .sum();
    if bits < 100.0 {
        return Err("is too predictable (under 100 bits of entropy)");
    }
    Ok(())
}

fn random_secret() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_SECRET: &str = "Vq8-3kLz_PfW1xRn0TgYh7sJcB5mEa2d";

    #[test]
    fn firebase_mode_needs_a_project_and_a_long_secret() {
        let err = Config::from_reader(EnvReader::from_pairs([("BACKEND_JWT_SECRET", "short")]))
            .unwrap_err();
        // No project, too short, and too predictable.
        assert_eq!(err.problems.len(), 3, "{err}");
    }

    #[test]
    fn placeholder_and_low_entropy_secrets_are_refused() {
        for weak in [
            "replace-with-at-least-32-random-bytes-base64",
            "change-me-change-me-change-me-change-me",
            &"x".repeat(64),
            &"ab".repeat(32),
            "0123456789abcdef0123456789abcdef",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
        ] {
            assert!(strong_secret(weak).is_err(), "{weak}");
            let env = EnvReader::from_pairs([
                ("FIREBASE_PROJECT_ID", "blob-prod"),
                ("BACKEND_JWT_SECRET", weak),
            ]);
            let err = Config::from_reader(env).unwrap_err();
            assert!(err.to_string().contains("BACKEND_JWT_SECRET"), "{err}");
        }
        for strong in
            [random_secret().as_str(), "kQ3v9Zr1+XcP0aLw7sT2mN8bYe4uHj6dGf5iOq1RzC0=", TEST_SECRET]
        {
            assert_eq!(strong_secret(strong), Ok(()), "{strong}");
        }
    }

    #[test]
    fn local_sign_in_listens_on_loopback_unless_the_danger_is_named() {
        let on = |addr: &str, allow: Option<&str>| {
            let mut pairs =
                vec![("AUTH_PROVIDER", "local".to_owned()), ("GATEWAY_HTTP_ADDR", addr.to_owned())];
            if let Some(allow) = allow {
                pairs.push(("INSECURE_LOCAL_SIGN_IN_ON_NETWORK", allow.to_owned()));
            }
            Config::from_reader(EnvReader::from_pairs(pairs))
        };
        assert!(on("127.0.0.1:8080", None).is_ok());
        assert!(on("[::1]:8080", None).is_ok());
        let err = on("0.0.0.0:8080", None).unwrap_err();
        assert!(err.to_string().contains("INSECURE_LOCAL_SIGN_IN_ON_NETWORK"), "{err}");
        assert!(on("0.0.0.0:8080", Some("false")).is_err());
        assert!(on("0.0.0.0:8080", Some("true")).is_ok());
    }

    #[test]
    fn local_mode_refuses_a_real_project() {
        let err = Config::from_reader(EnvReader::from_pairs([
            ("AUTH_PROVIDER", "local"),
            ("FIREBASE_PROJECT_ID", "blob-prod"),
        ]))
        .unwrap_err();
        assert!(err.problems[0].contains("demo-"), "{err}");
    }

    #[test]
    fn the_auth_emulator_needs_a_demo_project() {
        let env = EnvReader::from_pairs([
            ("AUTH_PROVIDER", "firebase"),
            ("FIREBASE_PROJECT_ID", "blob-prod"),
            ("BACKEND_JWT_SECRET", TEST_SECRET),
            ("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099"),
        ]);
        let err = Config::from_reader(env).unwrap_err();
        assert!(err.to_string().contains("FIREBASE_AUTH_EMULATOR_HOST"), "{err}");
        let env = EnvReader::from_pairs([
            ("AUTH_PROVIDER", "firebase"),
            ("FIREBASE_PROJECT_ID", "demo-blob"),
            ("BACKEND_JWT_SECRET", TEST_SECRET),
            ("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099"),
        ]);
        assert!(Config::from_reader(env).unwrap().firebase_auth_emulator);
    }

    #[test]
    fn local_mode_works_with_no_settings() {
        let config =
            Config::from_reader(EnvReader::from_pairs([("AUTH_PROVIDER", "local")])).unwrap();
        assert_eq!(config.firebase_project_id, LOCAL_PROJECT_ID);
        assert_eq!(config.jwt_secret.expose_secret().len(), 64);
        assert_eq!(config.public_ws_url, "ws://127.0.0.1:8080/ws/voice");
    }
}
