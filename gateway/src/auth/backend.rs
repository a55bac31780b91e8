//! The backend's own token: HS256, signed with `BACKEND_JWT_SECRET`, lasting
//! `BACKEND_JWT_TTL_SECONDS`. It names the user, never their children: every permission check
//! reads the stored family links, and the token's size does not grow with the family.
//!
//! Two uses: an `access` token for the REST API and the voice socket, and a `session` token
//! (`POST /api/v1/sessions`) good only for the voice socket of its one session.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use super::{AuthError, now_unix};

const ISSUER: &str = "blob-gateway";
const AUDIENCE: &str = "blob-app";

/// What a backend token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendClaims {
    /// The user's uid.
    pub sub: String,
    /// The user's email.
    #[serde(default)]
    pub email: String,
    /// `parent`.
    pub role: String,
    /// `access` or `session`.
    pub token_use: String,
    /// The user's token generation when it was issued: signing out raises the user's, and
    /// tokens of an older generation are refused.
    #[serde(default)]
    pub tgen: u64,
    /// The session a `session` token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// `blob-gateway`.
    pub iss: String,
    /// `blob-app`.
    pub aud: String,
}

/// Issues and checks backend tokens.
pub struct BackendTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for BackendTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTokens").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl BackendTokens {
    /// Tokens signed with `secret`, valid for `ttl`.
    pub fn new(secret: &SecretString, ttl: Duration) -> Self {
        let secret = secret.expose_secret().as_bytes();
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    /// The access token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// An access token for the user.
    pub fn issue_access(&self, sub: &str, email: &str, generation: u64) -> String {
        self.issue(sub, email, "access", None, self.ttl, generation)
    }

    /// A token for the voice socket of one session, valid for `ttl`.
    pub fn issue_session(
        &self,
        sub: &str,
        session_id: &str,
        ttl: Duration,
        generation: u64,
    ) -> String {
        self.issue(sub, "", "session", Some(session_id.to_owned()), ttl, generation)
    }

    fn issue(
        &self,
        sub: &str,
        email: &str,
        token_use: &str,
        sid: Option<String>,
        ttl: Duration,
        generation: u64,
    ) -> String {
        let now = now_unix();
        let claims = BackendClaims {
            sub: sub.to_owned(),
            email: email.to_owned(),
            role: "parent".to_owned(),
            token_use: token_use.to_owned(),
            tgen: generation,
            sid,
            iat: now,
            exp: now + ttl.as_secs(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with a byte secret cannot fail")
    }

    /// The claims of a valid token of either use.
    pub fn verify(&self, token: &str) -> Result<BackendClaims, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.leeway = 0;
        let claims =
            jsonwebtoken::decode::<BackendClaims>(token, &self.decoding, &validation)?.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("missing sub".into()));
        }
        Ok(claims)
    }

    /// The claims of a valid access token (REST API).
    pub fn verify_access(&self, token: &str) -> Result<BackendClaims, AuthError> {
        let claims = self.verify(token)?;
        if claims.token_use != "access" {
            return Err(AuthError::Invalid("not an access token".into()));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ttl: u64) -> BackendTokens {
        BackendTokens::new(&SecretString::from("x".repeat(32)), Duration::from_secs(ttl))
    }

    #[test]
    fn access_tokens_round_trip() {
        let t = tokens(60);
        let token = t.issue_access("u1", "a@example.com", 0);
        let claims = t.verify_access(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.token_use.as_str()), ("u1", "access"));
    }

    #[test]
    fn session_tokens_are_not_access_tokens() {
        let t = tokens(60);
        let token = t.issue_session("u1", "s1", Duration::from_secs(60), 0);
        assert_eq!(t.verify(&token).unwrap().sid.as_deref(), Some("s1"));
        assert!(matches!(t.verify_access(&token), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn expired_and_foreign_tokens_are_refused() {
        let t = tokens(60);
        let expired = t.issue_session("u1", "s1", Duration::ZERO, 0);
        std::thread::sleep(Duration::from_millis(1100));
        assert!(matches!(t.verify(&expired), Err(AuthError::Expired)));
        let other =
            BackendTokens::new(&SecretString::from("y".repeat(32)), Duration::from_secs(60));
        let foreign = other.issue_access("u1", "", 0);
        assert!(matches!(t.verify(&foreign), Err(AuthError::Invalid(_))));
    }
}
