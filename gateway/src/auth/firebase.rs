//! Firebase ID token verification, as Firebase documents it: RS256 only, `kid` naming one of the
//! issuer's current X.509 certificates, `aud` = project id, `iss` =
//! `https://securetoken.google.com/<project>`, non-empty `sub` of at most 128 characters, and
//! `exp`, `iat`, `auth_time` checked with a small clock skew.
//!
//! The certificates come from a [`CertSource`]: Google's endpoint (cached for the response's
//! `Cache-Control: max-age`) in production, or a fixed set in local mode, so both modes run the
//! very same checks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use super::{AuthError, now_unix};

/// Allowed clock difference between us and the issuer.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Used when the certificate response has no usable `max-age`.
const DEFAULT_CERT_TTL: Duration = Duration::from_secs(3600);
/// An unknown `kid` refetches the certificates at most this often.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Who the verified token says the user is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirebaseIdentity {
    /// The Firebase uid (`sub`).
    pub uid: String,
    /// `email`, when the account has one.
    pub email: String,
    /// `name`, when the account has one.
    pub display_name: String,
    /// `email_verified`: the provider checked that the email is theirs.
    pub email_verified: bool,
    /// `firebase.sign_in_provider`: `password`, `google.com`, `anonymous`…
    pub sign_in_provider: String,
}

/// The claims of an unsigned emulator token, checked by hand.
#[derive(Debug, Deserialize)]
struct EmulatorClaims {
    aud: String,
    iss: String,
    exp: u64,
    #[serde(flatten)]
    claims: Claims,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    auth_time: Option<u64>,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email_verified: bool,
    #[serde(default)]
    firebase: FirebaseClaim,
}

#[derive(Debug, Default, Deserialize)]
struct FirebaseClaim {
    #[serde(default)]
    sign_in_provider: String,
}

/// Where the issuer's certificates come from.
pub enum CertSource {
    /// A fixed set of `kid` → key (local mode).
    Static(HashMap<String, DecodingKey>),
    /// A certificate JSON endpoint (`{kid: PEM}`), cached per `Cache-Control: max-age`.
    Remote(RemoteCerts),
}

/// Cached certificates from an HTTP endpoint.
pub struct RemoteCerts {
    http: reqwest::Client,
    url: String,
    cache: RwLock<Option<Cached>>,
    /// Serialises refetches so a burst of requests makes one fetch.
    fetching: Mutex<Option<Instant>>,
}

struct Cached {
    keys: Arc<HashMap<String, DecodingKey>>,
    expires_at: Instant,
}

impl RemoteCerts {
    /// Certificates from `url`, fetched on first use.
    pub fn new(http: reqwest::Client, url: impl Into<String>) -> Self {
        Self { http, url: url.into(), cache: RwLock::new(None), fetching: Mutex::new(None) }
    }

    async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, AuthError> {
        if let Some(key) = self.cached_key(kid).await {
            return Ok(Some(key));
        }
        let mut last_fetch = self.fetching.lock().await;
        // Another request may have refreshed the cache while we waited for the lock.
        if let Some(key) = self.cached_key(kid).await {
            return Ok(Some(key));
        }
        // Fresh certificates without this kid: refetch only if we haven't just done so, so a
        // stream of forged kids cannot turn into a stream of fetches.
        let fresh = self.cache.read().await.as_ref().is_some_and(|c| c.expires_at > Instant::now());
        if fresh && last_fetch.is_some_and(|at| at.elapsed() < MIN_REFETCH_INTERVAL) {
            return Ok(None);
        }
        let (keys, ttl) = self.fetch().await?;
        *last_fetch = Some(Instant::now());
        let key = keys.get(kid).cloned();
        *self.cache.write().await =
            Some(Cached { keys: Arc::new(keys), expires_at: Instant::now() + ttl });
        Ok(key)
    }

    async fn cached_key(&self, kid: &str) -> Option<DecodingKey> {
        let cache = self.cache.read().await;
        cache
            .as_ref()
            .filter(|cached| cached.expires_at > Instant::now())
            .and_then(|cached| cached.keys.get(kid).cloned())
    }

    async fn fetch(&self) -> Result<(HashMap<String, DecodingKey>, Duration), AuthError> {
        let unavailable = |e: String| AuthError::CertificatesUnavailable(e);
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "certificate endpoint answered {}",
                response.status()
            )));
        }
        let ttl = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(DEFAULT_CERT_TTL);
        let pems: HashMap<String, String> =
            response.json().await.map_err(|e| unavailable(e.without_url().to_string()))?;
        let keys = parse_certificates(&pems).map_err(unavailable)?;
        tracing::info!(keys = keys.len(), ttl_s = ttl.as_secs(), "fetched signing certificates");
        Ok((keys, ttl))
    }
}

/// Turns `{kid: PEM certificate}` into verification keys.
pub fn parse_certificates(
    pems: &HashMap<String, String>,
) -> Result<HashMap<String, DecodingKey>, String> {
    pems.iter()
        .map(|(kid, pem)| {
            DecodingKey::from_rsa_pem(pem.as_bytes())
                .map(|key| (kid.clone(), key))
                .map_err(|e| format!("certificate {kid}: {e}"))
        })
        .collect()
}

/// The `max-age` of a `Cache-Control` header value.
pub fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let value = directive.trim().strip_prefix("max-age=")?;
        value.trim().parse().ok().map(Duration::from_secs)
    })
}

/// Verifies Firebase ID tokens for one project.
pub struct FirebaseVerifier {
    project_id: String,
    source: CertSource,
    /// Accept the Firebase Auth emulator's unsigned (`alg: none`) tokens.
    emulator: bool,
}

impl FirebaseVerifier {
    /// A verifier for `project_id` with certificates from `source`.
    pub fn new(project_id: impl Into<String>, source: CertSource) -> Self {
        Self { project_id: project_id.into(), source, emulator: false }
    }

    /// Also accepts the Firebase Auth emulator's unsigned tokens (`alg: none`), with every claim
    /// still checked. Only for `demo-*` projects (the configuration refuses anything else).
    pub fn accepting_emulator_tokens(mut self) -> Self {
        self.emulator = self.project_id.starts_with("demo-");
        self
    }

    /// The token's identity, or why it is not acceptable.
    pub async fn verify(&self, token: &str) -> Result<FirebaseIdentity, AuthError> {
        if self.emulator
            && let Some(claims) = unsigned_claims(token)?
        {
            let issuer = format!("https://securetoken.google.com/{}", self.project_id);
            if claims.aud != self.project_id || claims.iss != issuer {
                return Err(AuthError::Invalid("wrong audience or issuer".into()));
            }
            if claims.exp + CLOCK_SKEW.as_secs() < now_unix() {
                return Err(AuthError::Expired);
            }
            return identity(claims.claims);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("malformed token".into()))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid(format!("algorithm {:?} not allowed", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| AuthError::Invalid("missing kid".into()))?;
        let key = match &self.source {
            CertSource::Static(keys) => keys.get(&kid).cloned(),
            CertSource::Remote(remote) => remote.key(&kid).await?,
        }
        .ok_or_else(|| AuthError::Invalid("unknown kid".into()))?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.project_id]);
        validation.set_issuer(&[format!("https://securetoken.google.com/{}", self.project_id)]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "aud", "iss"]);
        validation.leeway = CLOCK_SKEW.as_secs();
        identity(jsonwebtoken::decode::<Claims>(token, &key, &validation)?.claims)
    }
}

/// The claims of an unsigned (`alg: none`) token, or `None` for any other token.
fn unsigned_claims(token: &str) -> Result<Option<EmulatorClaims>, AuthError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    let Some(header) =
        b64.decode(header).ok().and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
    else {
        return Ok(None);
    };
    if header["alg"] != "none" {
        return Ok(None);
    }
    if !signature.is_empty() {
        return Err(AuthError::Invalid("an unsigned token carries a signature".into()));
    }
    let payload = b64.decode(payload).map_err(|_| AuthError::Invalid("malformed token".into()))?;
    serde_json::from_slice(&payload)
        .map(Some)
        .map_err(|e| AuthError::Invalid(format!("malformed claims: {e}")))
}

/// The checks every token's claims pass, signed or not.
fn identity(claims: Claims) -> Result<FirebaseIdentity, AuthError> {
    if claims.sub.is_empty() || claims.sub.chars().count() > 128 {
        return Err(AuthError::Invalid("sub must be 1-128 characters".into()));
    }
    let latest = now_unix() + CLOCK_SKEW.as_secs();
    if claims.iat > latest {
        return Err(AuthError::Invalid("issued in the future".into()));
    }
    match claims.auth_time {
        Some(auth_time) if auth_time <= latest => {}
        Some(_) => return Err(AuthError::Invalid("authenticated in the future".into())),
        None => return Err(AuthError::Invalid("missing auth_time".into())),
    }
    Ok(FirebaseIdentity {
        uid: claims.sub,
        email: claims.email,
        display_name: claims.name,
        email_verified: claims.email_verified,
        sign_in_provider: claims.firebase.sign_in_provider,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::dev;

    fn verifier() -> FirebaseVerifier {
        FirebaseVerifier::new("demo-test", dev::cert_source().unwrap())
    }

    fn claims(overrides: serde_json::Value) -> serde_json::Value {
        let now = now_unix();
        let mut claims = serde_json::json!({
            "iss": "https://securetoken.google.com/demo-test",
            "aud": "demo-test",
            "sub": "uid-1",
            "iat": now,
            "exp": now + 3600,
            "auth_time": now,
            "email": "p@example.com",
        });
        for (k, v) in overrides.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    #[tokio::test]
    async fn a_good_token_verifies() {
        let token = dev::sign(&claims(serde_json::json!({}))).unwrap();
        let identity = verifier().verify(&token).await.unwrap();
        assert_eq!(identity.uid, "uid-1");
        assert_eq!(identity.email, "p@example.com");
    }

    #[tokio::test]
    async fn each_bad_claim_is_refused() {
        let now = now_unix();
        let cases = [
            (
                serde_json::json!({"exp": now - 3600, "iat": now - 7200, "auth_time": now - 7200}),
                "expired",
            ),
            (serde_json::json!({"aud": "other"}), "audience"),
            (serde_json::json!({"iss": "https://securetoken.google.com/other"}), "issuer"),
            (serde_json::json!({"sub": ""}), "sub"),
            (serde_json::json!({"sub": "x".repeat(129)}), "sub"),
            (serde_json::json!({"iat": now + 3600}), "future"),
            (serde_json::json!({"auth_time": now + 3600}), "future"),
            (serde_json::json!({"auth_time": null}), "auth_time"),
        ];
        for (overrides, why) in cases {
            let token = dev::sign(&claims(overrides.clone())).unwrap();
            let err = verifier().verify(&token).await.unwrap_err();
            match (why, &err) {
                ("expired", AuthError::Expired) => {}
                (_, AuthError::Invalid(_)) if why != "expired" => {}
                _ => panic!("{overrides}: {err:?}"),
            }
        }
    }

    #[tokio::test]
    async fn other_algorithms_and_unknown_keys_are_refused() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = b64.encode(claims(serde_json::json!({})).to_string());
        let none = format!("{}.{body}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#));
        assert!(matches!(verifier().verify(&none).await, Err(AuthError::Invalid(_))));

        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header { kid: Some(dev::KID.into()), ..Default::default() },
            &claims(serde_json::json!({})),
            &jsonwebtoken::EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(matches!(verifier().verify(&hs).await, Err(AuthError::Invalid(_))));

        let unknown = dev::sign_with_kid(&claims(serde_json::json!({})), "other-kid").unwrap();
        assert!(matches!(verifier().verify(&unknown).await, Err(AuthError::Invalid(_))));
        assert!(matches!(verifier().verify("garbage").await, Err(AuthError::Invalid(_))));
    }

    fn unsigned(claims: &serde_json::Value) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(claims.to_string())
        )
    }

    #[tokio::test]
    async fn emulator_tokens_are_accepted_only_in_emulator_mode_and_still_checked() {
        let emulator = verifier().accepting_emulator_tokens();
        let good = unsigned(&claims(serde_json::json!({})));
        assert_eq!(emulator.verify(&good).await.unwrap().uid, "uid-1");
        assert!(matches!(verifier().verify(&good).await, Err(AuthError::Invalid(_))));
        let wrong_aud = unsigned(&claims(serde_json::json!({"aud": "other"})));
        assert!(matches!(emulator.verify(&wrong_aud).await, Err(AuthError::Invalid(_))));
        let now = now_unix();
        let expired = unsigned(&claims(serde_json::json!({"exp": now - 3600})));
        assert!(matches!(emulator.verify(&expired).await, Err(AuthError::Expired)));
        let no_sub = unsigned(&claims(serde_json::json!({"sub": ""})));
        assert!(matches!(emulator.verify(&no_sub).await, Err(AuthError::Invalid(_))));
        // Signed tokens still verify as usual in emulator mode.
        let signed = dev::sign_with_kid(&claims(serde_json::json!({})), dev::KID).unwrap();
        assert_eq!(emulator.verify(&signed).await.unwrap().uid, "uid-1");
        // A production project never accepts them, whatever the setting.
        let production = FirebaseVerifier::new("blob-prod", dev::cert_source().unwrap())
            .accepting_emulator_tokens();
        let prod_claims = claims(serde_json::json!({
            "aud": "blob-prod", "iss": "https://securetoken.google.com/blob-prod"
        }));
        assert!(production.verify(&unsigned(&prod_claims)).await.is_err());
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=19302, must-revalidate"),
            Some(Duration::from_secs(19302))
        );
        assert_eq!(max_age("no-cache"), None);
    }
}
