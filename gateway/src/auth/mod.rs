//! Authentication: parents' Firebase ID tokens in, the backend's own short-lived JWT out.

pub mod backend;
pub mod dev;
pub mod firebase;

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// 401 `TOKEN_EXPIRED`: the token was valid but its time is up.
    #[error("token expired")]
    Expired,
    /// 401 `TOKEN_INVALID`: anything else wrong with the token.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// 503 `SERVICE_UNAVAILABLE`: the signing certificates could not be fetched.
    #[error("signing certificates unavailable: {0}")]
    CertificatesUnavailable(String),
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match err.kind() {
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::InvalidAudience => Self::Invalid("wrong audience".into()),
            ErrorKind::InvalidIssuer => Self::Invalid("wrong issuer".into()),
            ErrorKind::InvalidSignature => Self::Invalid("bad signature".into()),
            ErrorKind::ImmatureSignature => Self::Invalid("token not yet valid".into()),
            ErrorKind::MissingRequiredClaim(claim) => Self::Invalid(format!("missing {claim}")),
            ErrorKind::InvalidAlgorithm => Self::Invalid("algorithm not allowed".into()),
            other => Self::Invalid(format!("{other:?}")),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
