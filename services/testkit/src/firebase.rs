//! A local stand-in for Google's Firebase signing certificates: a freshly generated RSA key, its
//! self-signed X.509 certificate served as `{kid: PEM}` JSON with `Cache-Control: max-age`
//! (Google's format), and a minter of ID tokens in Firebase's exact claim layout.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::header;
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};

/// The key id the server publishes.
pub const KID: &str = "test-kid-1";

/// A running certificate server with its signing key.
pub struct CertServer {
    port: u16,
    project_id: String,
    key: EncodingKey,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CertServer {
    /// Generates a key and serves its certificate on a free port.
    pub async fn start(project_id: &str) -> Self {
        let private = tokio::task::spawn_blocking(|| {
            rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("generating RSA key")
        })
        .await
        .expect("key generation task");
        let pem = private.to_pkcs8_pem(LineEnding::LF).expect("encoding the key").to_string();
        let key_pair = rcgen::KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
            .expect("loading the key into rcgen");
        let cert = rcgen::CertificateParams::new(vec!["securetoken.test".to_owned()])
            .expect("certificate params")
            .self_signed(&key_pair)
            .expect("self-signing");
        let body = serde_json::json!({ KID: cert.pem() }).to_string();

        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&fetches);
        let app = Router::new().route(
            "/certs",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "application/json; charset=UTF-8"),
                            (header::CACHE_CONTROL, "public, max-age=3600, must-revalidate"),
                        ],
                        body,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            project_id: project_id.to_owned(),
            key: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("encoding key"),
            fetches,
            task,
        }
    }

    /// The certificate JSON URL (`FIREBASE_CERTS_URL`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/certs", self.port)
    }

    /// How many times the certificates were fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// A valid ID token for `uid`.
    pub fn id_token(&self, uid: &str, email: &str) -> String {
        self.sign(&self.claims(uid, email))
    }

    /// The claims of a valid ID token, to alter for negative tests.
    pub fn claims(&self, uid: &str, email: &str) -> serde_json::Value {
        let now = jsonwebtoken::get_current_timestamp();
        serde_json::json!({
            "iss": format!("https://securetoken.google.com/{}", self.project_id),
            "aud": self.project_id,
            "auth_time": now,
            "user_id": uid,
            "sub": uid,
            "iat": now,
            "exp": now + 3600,
            "email": email,
            "email_verified": true,
            "name": "Test Parent",
            "firebase": {"identities": {"email": [email]}, "sign_in_provider": "password"},
        })
    }

    /// Signs claims with the server's key and `kid`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = Header { kid: Some(KID.to_owned()), ..Header::new(Algorithm::RS256) };
        jsonwebtoken::encode(&header, claims, &self.key).expect("signing")
    }
}

impl Drop for CertServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
