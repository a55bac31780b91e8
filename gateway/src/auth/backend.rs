//! The backend's own token: HS256, signed with `BACKEND_JWT_SECRET`, lasting
//! `BACKEND_JWT_TTL_SECONDS`. The `children` claim is informative for the app; every permission
//! check reads the stored family links instead.
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

/// A child as listed in the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildClaim {
    /// The child's id.
    pub child_id: String,
    /// `view`, `interact` or `manage`.
    pub permission: String,
}

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
    /// Children linked at sign-in.
    #[serde(default)]
    pub children: Vec<ChildClaim>,
    /// `access` or `session`.
    pub token_use: String,
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
    pub fn issue_access(&self, sub: &str, email: &str, children: Vec<ChildClaim>) -> String {
        self.issue(sub, email, children, "access", None, self.ttl)
    }

    /// A token for the voice socket of one session, valid for `ttl`.
    pub fn issue_session(&self, sub: &str, session_id: &str, ttl: Duration) -> String {
        self.issue(sub, "", Vec::new(), "session", Some(session_id.to_owned()), ttl)
    }

    fn issue(
        &self,
        sub: &str,
        email: &str,
        children: Vec<ChildClaim>,
        token_use: &str,
        sid: Option<String>,
        ttl: Duration,
    ) -> String {
        let now = now_unix();
        let claims = BackendClaims {
            sub: sub.to_owned(),
            email: email.to_owned(),
            role: "parent".to_owned(),
            children,
            token_use: token_use.to_owned(),
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
        let token = t.issue_access("u1", "a@example.com", vec![]);
        let claims = t.verify_access(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.token_use.as_str()), ("u1", "access"));
    }

    #[test]
    fn session_tokens_are_not_access_tokens() {
        let t = tokens(60);
        let token = t.issue_session("u1", "s1", Duration::from_secs(60));
        assert_eq!(t.verify(&token).unwrap().sid.as_deref(), Some("s1"));
        assert!(matches!(t.verify_access(&token), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn expired_and_foreign_tokens_are_refused() {
        let t = tokens(60);
        let expired = t.issue_session("u1", "s1", Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1100));
        assert!(matches!(t.verify(&expired), Err(AuthError::Expired)));
        let other =
            BackendTokens::new(&SecretString::from("y".repeat(32)), Duration::from_secs(60));
        let foreign = other.issue_access("u1", "", vec![]);
        assert!(matches!(t.verify(&foreign), Err(AuthError::Invalid(_))));
    }
}
