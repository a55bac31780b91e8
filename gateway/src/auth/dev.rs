//! Local sign-in without Firebase: a development issuer whose key ships in the repository.
//!
//! The key is public by design and only ever trusted for `demo-*` project ids
//! (`AUTH_PROVIDER=local`). Tokens it signs have Firebase's exact format, so the gateway checks
//! them with the same [`FirebaseVerifier`](super::firebase::FirebaseVerifier) as real ones.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest as _, Sha256};

use super::firebase::{CertSource, parse_certificates};
use super::now_unix;

/// The development key's id.
pub const KID: &str = "blob-local-dev-1";
/// The development issuer's private key (PKCS#8 PEM). Not a secret: see the module docs.
pub const PRIVATE_KEY_PEM: &str = include_str!("../../dev/dev-key.pem");
/// The development issuer's self-signed certificate.
pub const CERTIFICATE_PEM: &str = include_str!("../../dev/dev-cert.pem");

/// The certificate JSON the development issuer would publish: `{kid: PEM}`.
pub fn certificates() -> HashMap<String, String> {
    HashMap::from([(KID.to_owned(), CERTIFICATE_PEM.to_owned())])
}

/// The certificates as a verifier source.
pub fn cert_source() -> Result<CertSource, String> {
    parse_certificates(&certificates()).map(CertSource::Static)
}

/// A stable uid for a parent's email (the same email always gets the same account).
pub fn uid_for(email: &str) -> String {
    let digest = Sha256::digest(email.trim().to_ascii_lowercase().as_bytes());
    format!("local-{}", &hex::encode(digest)[..22])
}

/// A Firebase-format ID token for `email` in `project_id`, valid for an hour.
pub fn id_token(project_id: &str, email: &str, name: &str) -> anyhow::Result<String> {
    let now = now_unix();
    let claims = serde_json::json!({
        "iss": format!("https://securetoken.google.com/{project_id}"),
        "aud": project_id,
        "sub": uid_for(email),
        "user_id": uid_for(email),
        "iat": now,
        "exp": now + 3600,
        "auth_time": now,
        "email": email,
        "email_verified": true,
        "name": name,
        "firebase": {"sign_in_provider": "password", "identities": {"email": [email]}},
    });
    sign(&claims)
}

/// Signs arbitrary claims with the development key.
pub fn sign(claims: &serde_json::Value) -> anyhow::Result<String> {
    sign_with_kid(claims, KID)
}

/// Signs arbitrary claims with the development key under another `kid`.
pub fn sign_with_kid(claims: &serde_json::Value, kid: &str) -> anyhow::Result<String> {
    let key = EncodingKey::from_rsa_pem(PRIVATE_KEY_PEM.as_bytes())?;
    let header = Header { kid: Some(kid.to_owned()), ..Header::new(Algorithm::RS256) };
    Ok(jsonwebtoken::encode(&header, claims, &key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_stable_per_email() {
        assert_eq!(uid_for("Parent@Example.com"), uid_for("parent@example.com"));
        assert_ne!(uid_for("a@example.com"), uid_for("b@example.com"));
        assert!(uid_for("a@example.com").len() <= 128);
    }
}
