//! Configuration from the environment (see the README's table).

use std::net::SocketAddr;
use std::time::Duration;

use blob_kit::config::{ConfigError, EnvReader};
use secrecy::SecretString;

/// The Gemini API's public address.
pub const DEFAULT_GEMINI_API_BASE: &str = "https://generativelanguage.googleapis.com";
/// The model Blob uses unless told otherwise.
pub const DEFAULT_GEMINI_MODEL: &str = "gemini-3.1-flash-lite-preview";

/// Which provider writes Blob's replies.
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    /// `LLM_PROVIDER=gemini`: the Gemini REST API.
    Gemini(GeminiConfig),
    /// `LLM_PROVIDER=openai`: an OpenAI-compatible chat endpoint.
    OpenAi(crate::openai::OpenAiConfig),
    /// `LLM_PROVIDER=local`: a GGUF model run in-process.
    Local(crate::local::LocalConfig),
    /// `BYPASSLLM=true` (or `LLM_PROVIDER=bypass`): a fixed friendly reply, no model, no key.
    Bypass,
}

/// `LLM_FALLBACK_PROVIDER`: who answers while the main provider fails.
#[derive(Debug, Clone)]
pub enum Fallback {
    /// Unset or `none`.
    None,
    /// `bypass`: the fixed friendly reply.
    Bypass,
    /// `local`: the local model at `LOCAL_MODEL_PATH`.
    Local(crate::local::LocalConfig),
}

/// How Gemini is reached and authenticated (`GEMINI_BACKEND`).
#[derive(Debug, Clone)]
pub enum GeminiAuth {
    /// `ai_studio`: the Gemini API with `GOOGLE_API_KEY` in `x-goog-api-key`.
    ApiKey(SecretString),
    /// `vertex`: Vertex AI with an OAuth token from Application Default Credentials.
    Vertex {
        /// `VERTEX_PROJECT`.
        project: String,
        /// `VERTEX_LOCATION` (default `us-central1`).
        location: String,
        /// `GOOGLE_APPLICATION_CREDENTIALS`: a credentials file; unset uses the metadata server.
        credentials: Option<std::path::PathBuf>,
        /// `GCE_METADATA_HOST` (default `metadata.google.internal`), as an http URL.
        metadata_base: String,
    },
}

/// Settings of the Gemini provider.
#[derive(Debug, Clone)]
pub struct GeminiConfig {
    /// `GEMINI_API_BASE` (AI Studio) or `VERTEX_API_BASE` (Vertex, default
    /// `https://{location}-aiplatform.googleapis.com`).
    pub api_base: String,
    /// The backend and its credentials.
    pub auth: GeminiAuth,
    /// `GEMINI_MODEL`.
    pub model: String,
    /// `LLM_MAX_OUTPUT_TOKENS` (default 200): replies for a small child stay short.
    pub max_output_tokens: u32,
    /// `LLM_TEMPERATURE` (default 0.7).
    pub temperature: f32,
}

/// Everything the llm-service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LLM_GRPC_ADDR`.
    pub grpc_addr: SocketAddr,
    /// `GRPC_REFLECTION` (default: on when `grpc_addr` is loopback): server reflection.
    pub grpc_reflection: bool,
    /// `ADMIN_ADDR`: metrics and health (default `127.0.0.1:9102`).
    pub admin_addr: SocketAddr,
    /// The provider and its settings.
    pub provider: ProviderConfig,
    /// `LLM_TIMEOUT_SECONDS` (default 10): the longest a whole reply may take.
    pub timeout: Duration,
    /// `LLM_FIRST_TOKEN_TIMEOUT_SECONDS` (default 5): per attempt, the longest until the first text.
    pub first_token_timeout: Duration,
    /// `LLM_MAX_RETRIES` (default 2): retries on rate limits, outages and silence.
    pub max_retries: u32,
    /// `LLM_HISTORY_TURNS` (default 8): most earlier turns sent to the model.
    pub history_turns: usize,
    /// `LLM_HISTORY_TOKEN_BUDGET` (default 1500): most tokens of earlier turns.
    pub history_token_budget: usize,
    /// `LLM_FALLBACK_PROVIDER`: who answers while the provider fails.
    pub fallback: Fallback,
    /// `LLM_BREAKER_FAILURES` (default 5) and `LLM_BREAKER_COOLDOWN_SECONDS` (default 30).
    pub breaker: crate::breaker::BreakerPolicy,
    /// `REPLY_MAX_SENTENCES` (default 3) and `REPLY_MAX_WORDS` (default 50): the most a reply
    /// says, whatever the model writes.
    pub reply_budget: crate::shape::ReplyBudget,
}

impl Config {
    /// Reads and validates the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::from_env())
    }

    /// Reads and validates the given variables, reporting every problem at once.
    pub fn from_reader(mut env: EnvReader) -> Result<Self, ConfigError> {
        let grpc_addr = env.parse("LLM_GRPC_ADDR", SocketAddr::from(([127, 0, 0, 1], 50052)));
        let grpc_reflection = blob_kit::grpc::reflection_enabled(&mut env, &grpc_addr);
        let admin_addr = env.parse("ADMIN_ADDR", SocketAddr::from(([127, 0, 0, 1], 9102)));
        let bypass = env.flag("BYPASSLLM", false);
        let provider_name = env.string("LLM_PROVIDER", "gemini").to_ascii_lowercase();
        let api_key = env.secret("GOOGLE_API_KEY");
        let api_base = env.string("GEMINI_API_BASE", DEFAULT_GEMINI_API_BASE);
        let model = env.string("GEMINI_MODEL", DEFAULT_GEMINI_MODEL);
        let max_output_tokens = env.parse("LLM_MAX_OUTPUT_TOKENS", 200u32);
        let temperature = env.parse("LLM_TEMPERATURE", 0.7f32);
        let timeout = env.parse("LLM_TIMEOUT_SECONDS", 10u64);
        let first_token = env.parse("LLM_FIRST_TOKEN_TIMEOUT_SECONDS", 5.0f64);
        env.check(first_token > 0.0 && first_token <= 60.0, || {
            "LLM_FIRST_TOKEN_TIMEOUT_SECONDS must be between 0 and 60".to_owned()
        });
        let max_retries = env.parse("LLM_MAX_RETRIES", 2u32);
        let history_turns = env.parse("LLM_HISTORY_TURNS", 8usize);
        let history_token_budget = env.parse("LLM_HISTORY_TOKEN_BUDGET", 1500usize);
        let budget_defaults = crate::shape::ReplyBudget::default();
        let reply_budget = crate::shape::ReplyBudget {
            max_sentences: env.parse("REPLY_MAX_SENTENCES", budget_defaults.max_sentences),
            max_words: env.parse("REPLY_MAX_WORDS", budget_defaults.max_words),
        };
        env.check((1..=20).contains(&reply_budget.max_sentences), || {
            "REPLY_MAX_SENTENCES must be 1 to 20".into()
        });
        env.check((5..=500).contains(&reply_budget.max_words), || {
            "REPLY_MAX_WORDS must be 5 to 500".into()
        });
        let fallback = env.string("LLM_FALLBACK_PROVIDER", "").to_ascii_lowercase();
        env.check(["", "none", "bypass", "local"].contains(&fallback.as_str()), || {
            format!("LLM_FALLBACK_PROVIDER={fallback:?}: expected bypass, local (or unset)")
        });
        let local_model = env.optional("LOCAL_MODEL_PATH");
        let local_threads = env.parse("LOCAL_THREADS", 1u32);
        let local_context = env.parse("LOCAL_CONTEXT_TOKENS", 2048u32);
        env.check((1..=64).contains(&local_threads), || "LOCAL_THREADS must be 1 to 64".into());
        env.check(local_context >= 512, || "LOCAL_CONTEXT_TOKENS must be at least 512".into());
        let needs_local = provider_name == "local" || fallback == "local";
        let local = match &local_model {
            Some(path) => {
                let path = std::path::PathBuf::from(path);
                env.check(!needs_local || path.is_file(), || {
                    format!("LOCAL_MODEL_PATH={}: no such file (make model)", path.display())
                });
                Some(crate::local::LocalConfig {
                    model_path: path,
                    threads: local_threads,
                    context_tokens: local_context,
                    max_output_tokens,
                    temperature,
                })
            }
            None => {
                env.check(!needs_local, || {
                    "LOCAL_MODEL_PATH is required for the local provider".to_owned()
                });
                None
            }
        };
        let breaker_failures = env.parse("LLM_BREAKER_FAILURES", 5u32);
        let breaker_cooldown = env.parse("LLM_BREAKER_COOLDOWN_SECONDS", 30u64);
        env.check(breaker_failures >= 1, || "LLM_BREAKER_FAILURES must be at least 1".to_owned());
        env.check(max_retries <= 10, || "LLM_MAX_RETRIES must be at most 10".to_owned());
        env.check(timeout > 0, || "LLM_TIMEOUT_SECONDS must be at least 1".to_owned());
        env.check(api_base.starts_with("http://") || api_base.starts_with("https://"), || {
            format!("GEMINI_API_BASE={api_base:?}: expected an http(s) URL")
        });
        env.check((0.0..=2.0).contains(&temperature), || {
            "LLM_TEMPERATURE must be between 0 and 2".to_owned()
        });
        let backend = env.string("GEMINI_BACKEND", "ai_studio").to_ascii_lowercase();
        let provider = if bypass || provider_name == "bypass" {
            ProviderConfig::Bypass
        } else if provider_name == "openai" {
            let api_base = env.optional("OPENAI_API_BASE").unwrap_or_else(|| {
                env.problem("OPENAI_API_BASE is required for LLM_PROVIDER=openai");
                String::new()
            });
            env.check(
                api_base.is_empty()
                    || api_base.starts_with("http://")
                    || api_base.starts_with("https://"),
                || format!("OPENAI_API_BASE={api_base:?}: expected an http(s) URL"),
            );
            let model = env.optional("OPENAI_MODEL").unwrap_or_else(|| {
                env.problem("OPENAI_MODEL is required for LLM_PROVIDER=openai");
                String::new()
            });
            ProviderConfig::OpenAi(crate::openai::OpenAiConfig {
                api_base: api_base.trim_end_matches('/').to_owned(),
                api_key: env.secret("OPENAI_API_KEY"),
                model,
                max_output_tokens,
                temperature,
            })
        } else if provider_name == "local" {
            local.clone().map(ProviderConfig::Local).unwrap_or(ProviderConfig::Bypass)
        } else if provider_name == "gemini" && backend == "vertex" {
            let location = env.string("VERTEX_LOCATION", "us-central1");
            let project = env.optional("VERTEX_PROJECT").unwrap_or_else(|| {
                env.problem("VERTEX_PROJECT is required with GEMINI_BACKEND=vertex");
                String::new()
            });
            let vertex_base = env
                .optional("VERTEX_API_BASE")
                .unwrap_or_else(|| format!("https://{location}-aiplatform.googleapis.com"));
            let metadata_host = env.string("GCE_METADATA_HOST", "metadata.google.internal");
            ProviderConfig::Gemini(GeminiConfig {
                api_base: vertex_base.trim_end_matches('/').to_owned(),
                auth: GeminiAuth::Vertex {
                    project,
                    location,
                    credentials: env.optional("GOOGLE_APPLICATION_CREDENTIALS").map(Into::into),
                    metadata_base: format!("http://{metadata_host}"),
                },
                model,
                max_output_tokens,
                temperature,
            })
        } else if provider_name == "gemini" {
            env.check(backend == "ai_studio", || {
                format!("GEMINI_BACKEND={backend:?}: expected ai_studio or vertex")
            });
            match api_key {
                Some(api_key) => ProviderConfig::Gemini(GeminiConfig {
                    api_base: api_base.trim_end_matches('/').to_owned(),
                    auth: GeminiAuth::ApiKey(api_key),
                    model,
                    max_output_tokens,
                    temperature,
                }),
                None => {
                    env.problem(
                        "GOOGLE_API_KEY is required for LLM_PROVIDER=gemini (or set BYPASSLLM=true)",
                    );
                    ProviderConfig::Bypass
                }
            }
        } else {
            env.problem(format!(
                "LLM_PROVIDER={provider_name:?}: expected gemini, openai, local or bypass"
            ));
            ProviderConfig::Bypass
        };
        env.finish()?;
        Ok(Self {
            grpc_addr,
            grpc_reflection,
            admin_addr,
            provider,
            timeout: Duration::from_secs(timeout),
            first_token_timeout: Duration::from_secs_f64(first_token.clamp(0.001, 60.0)),
            max_retries,
            history_turns,
            history_token_budget,
            fallback: match (fallback.as_str(), local) {
                ("bypass", _) => Fallback::Bypass,
                ("local", Some(local)) => Fallback::Local(local),
                _ => Fallback::None,
            },
            breaker: crate::breaker::BreakerPolicy {
                failures: breaker_failures,
                cooldown: Duration::from_secs(breaker_cooldown),
            },
            reply_budget,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_without_a_key_is_refused() {
        let err =
            Config::from_reader(EnvReader::from_pairs([("LLM_PROVIDER", "gemini")])).unwrap_err();
        assert!(err.problems[0].contains("GOOGLE_API_KEY"), "{err}");
    }

    #[test]
    fn bypass_needs_no_key() {
        let config = Config::from_reader(EnvReader::from_pairs([("BYPASSLLM", "true")])).unwrap();
        assert!(matches!(config.provider, ProviderConfig::Bypass));
    }

    #[test]
    fn gemini_settings_are_read() {
        let config = Config::from_reader(EnvReader::from_pairs([
            ("GOOGLE_API_KEY", "k"),
            ("GEMINI_API_BASE", "http://127.0.0.1:9/"),
            ("GEMINI_MODEL", "m"),
        ]))
        .unwrap();
        let ProviderConfig::Gemini(gemini) = config.provider else { panic!("not gemini") };
        assert_eq!(gemini.api_base, "http://127.0.0.1:9");
        assert_eq!(gemini.model, "m");
    }

    #[test]
    fn vertex_needs_a_project_and_no_key() {
        let err =
            Config::from_reader(EnvReader::from_pairs([("GEMINI_BACKEND", "vertex")])).unwrap_err();
        assert!(err.problems[0].contains("VERTEX_PROJECT"), "{err}");
        let config = Config::from_reader(EnvReader::from_pairs([
            ("GEMINI_BACKEND", "vertex"),
            ("VERTEX_PROJECT", "blob-prod"),
            ("VERTEX_LOCATION", "europe-west4"),
        ]))
        .unwrap();
        let ProviderConfig::Gemini(gemini) = config.provider else { panic!("not gemini") };
        assert_eq!(gemini.api_base, "https://europe-west4-aiplatform.googleapis.com");
        assert!(matches!(gemini.auth, GeminiAuth::Vertex { .. }));
    }

    #[test]
    fn unknown_provider_and_bad_values_are_all_reported() {
        let err = Config::from_reader(EnvReader::from_pairs([
            ("LLM_PROVIDER", "gpt"),
            ("LLM_TIMEOUT_SECONDS", "0"),
            ("LLM_TEMPERATURE", "9"),
        ]))
        .unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
    }

    #[test]
    fn the_local_provider_needs_its_model_file() {
        let err =
            Config::from_reader(EnvReader::from_pairs([("LLM_PROVIDER", "local")])).unwrap_err();
        assert!(err.to_string().contains("LOCAL_MODEL_PATH is required"), "{err}");
        let err = Config::from_reader(EnvReader::from_pairs([
            ("LLM_PROVIDER", "local"),
            ("LOCAL_MODEL_PATH", "/no/such/model.gguf"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");
        let file = std::env::temp_dir().join(format!("blob-config-{}.gguf", std::process::id()));
        std::fs::write(&file, b"GGUF").unwrap();
        let path = file.display().to_string();
        let config = Config::from_reader(EnvReader::from_pairs([
            ("LLM_PROVIDER", "local"),
            ("LOCAL_MODEL_PATH", path.as_str()),
            ("LOCAL_THREADS", "2"),
        ]))
        .unwrap();
        let ProviderConfig::Local(local) = config.provider else { panic!("not local") };
        assert_eq!((local.threads, local.context_tokens), (2, 2048));
        let config = Config::from_reader(EnvReader::from_pairs([
            ("BYPASSLLM", "true"),
            ("LLM_FALLBACK_PROVIDER", "local"),
            ("LOCAL_MODEL_PATH", path.as_str()),
        ]))
        .unwrap();
        assert!(matches!(config.fallback, Fallback::Local(_)));
        std::fs::remove_file(file).unwrap();
    }
}
