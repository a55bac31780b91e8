//! The end-to-end harness: the four real service binaries as processes on free ports, each run
//! with its own `redis-server`, a local Firebase-format certificate server and token minter, a
//! local server speaking the Gemini REST wire format, and clients for the REST API and the
//! voice socket.

pub mod audio;
pub mod client;
pub mod firebase;
pub mod firestore;
pub mod gemini;
pub mod otlp;
pub mod paths;
pub mod process;
pub mod redis;
pub mod seed;
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

/// A free TCP port on loopback for a child process to listen on.
///
/// Ports come from a block below Linux's ephemeral range (32768+), so no outgoing connection
/// can be handed one meanwhile; the block is chosen by process id and walked with a counter, so
/// two stacks of one test run never get the same port, and each candidate is checked free.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const BLOCK: u16 = 200;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 60) as u16 * BLOCK;
    for _ in 0..BLOCK {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % BLOCK;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {base}..{}", base + BLOCK)
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
