//! The end-to-end harness: the four real service binaries as processes on free ports, each run
//! with its own `redis-server`, a local Firebase-format certificate server and token minter, a
//! local server speaking the Gemini REST wire format, and clients for the REST API and the
//! voice socket.

pub mod audio;
pub mod client;
pub mod firebase;
pub mod gemini;
pub mod paths;
pub mod process;
pub mod redis;
pub mod stack;

use std::future::Future;
use std::time::Duration;

/// Retries `check` until it returns `Some` or `deadline` passes (then panics with `what`).
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free TCP port on loopback (bound and released; the window for a clash is tiny).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}

/// A directory under the system temp dir, removed when dropped.
#[derive(Debug)]
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// Makes a new, empty directory.
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
