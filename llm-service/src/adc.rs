//! OAuth access tokens from Application Default Credentials, for Vertex AI: the service account
//! or user credentials file named by `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server
//! of the machine (GKE, Cloud Run, GCE). Tokens are cached until shortly before they expire.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::provider::ProviderError;

/// The scope Vertex AI calls need.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Tokens are renewed this long before they expire.
const EARLY: Duration = Duration::from_secs(60);

/// Where tokens come from.
#[derive(Debug, Clone)]
enum Source {
    ServiceAccount { email: String, key: String, token_uri: String },
    User { client_id: String, client_secret: String, refresh_token: String, token_uri: String },
    Metadata { base: String },
}

/// A cached token source; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct AccessTokens {
    http: reqwest::Client,
    source: Source,
    cached: Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct CredentialsFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: Option<String>,
    private_key: Option<String>,
    token_uri: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default = "default_expiry")]
    expires_in: u64,
}

fn default_expiry() -> u64 {
    3600
}

impl AccessTokens {
    /// Application Default Credentials: the file at `credentials` when given, else the
    /// metadata server at `metadata_base` (`http://metadata.google.internal` in the cloud).
    pub fn application_default(
        http: reqwest::Client,
        credentials: Option<&Path>,
        metadata_base: &str,
    ) -> anyhow::Result<Self> {
        let source = match credentials {
            Some(path) => {
                let raw = std::fs::read_to_string(path)
                    .with_context(|| format!("reading credentials {}", path.display()))?;
                let file: CredentialsFile = serde_json::from_str(&raw)
                    .with_context(|| format!("parsing credentials {}", path.display()))?;
                let token_uri =
                    file.token_uri.unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
                match file.kind.as_str() {
                    "service_account" => Source::ServiceAccount {
                        email: file.client_email.context("credentials lack client_email")?,
                        key: file.private_key.context("credentials lack private_key")?,
                        token_uri,
                    },
                    "authorized_user" => Source::User {
                        client_id: file.client_id.context("credentials lack client_id")?,
                        client_secret: file
                            .client_secret
                            .context("credentials lack client_secret")?,
                        refresh_token: file
                            .refresh_token
                            .context("credentials lack refresh_token")?,
                        token_uri,
                    },
                    other => anyhow::bail!("unsupported credentials type {other:?}"),
                }
            }
            None => Source::Metadata { base: metadata_base.trim_end_matches('/').to_owned() },
        };
        if let Source::ServiceAccount { key, .. } = &source {
            EncodingKey::from_rsa_pem(key.as_bytes())
                .context("credentials private_key is not an RSA PEM key")?;
        }
        Ok(Self { http, source, cached: Mutex::new(None) })
    }

    /// A valid access token, fetched when the cached one is missing or about to expire.
    pub async fn token(&self) -> Result<String, ProviderError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && Instant::now() + EARLY < *expires
        {
            return Ok(token.clone());
        }
        let fetched = self.fetch().await?;
        let expires = Instant::now() + Duration::from_secs(fetched.expires_in);
        *cached = Some((fetched.access_token.clone(), expires));
        Ok(fetched.access_token)
    }

    async fn fetch(&self) -> Result<TokenResponse, ProviderError> {
        let request = match &self.source {
            Source::ServiceAccount { email, key, token_uri } => {
                let now = jsonwebtoken::get_current_timestamp();
                let claims = serde_json::json!({
                    "iss": email, "scope": SCOPE, "aud": token_uri, "iat": now, "exp": now + 3600,
                });
                let key = EncodingKey::from_rsa_pem(key.as_bytes())
                    .map_err(|e| ProviderError::Rejected(format!("credentials key: {e}")))?;
                let assertion = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key)
                    .map_err(|e| ProviderError::Rejected(format!("signing the assertion: {e}")))?;
                self.http.post(token_uri).form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ])
            }
            Source::User { client_id, client_secret, refresh_token, token_uri } => {
                self.http.post(token_uri).form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", client_secret.as_str()),
                    ("refresh_token", refresh_token.as_str()),
                ])
            }
            Source::Metadata { base } => self
                .http
                .get(format!("{base}/computeMetadata/v1/instance/service-accounts/default/token"))
                .header("Metadata-Flavor", "Google"),
        };
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(ProviderError::Rejected(format!("token endpoint answered {status}")));
        }
        response.json().await.map_err(|e| ProviderError::Rejected(format!("token response: {e}")))
    }
}
