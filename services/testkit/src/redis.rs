//! A private `redis-server` per test run: no persistence, a unix socket in a temp dir, never
//! the machine's shared instance.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::TempDir;

/// A running redis-server, stopped when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    dir: TempDir,
}

impl RedisServer {
    /// Starts one and waits until it answers PING.
    pub async fn start() -> Self {
        let dir = TempDir::new("blob-redis");
        let mut server = Self { child: None, dir };
        server.spawn().await;
        server
    }

    /// `unix:///…/redis.sock`.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("redis.sock")
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let socket = self.socket();
        crate::eventually("redis-server to answer PING", Duration::from_secs(10), || {
            let socket = socket.clone();
            async move { ping(&socket).await.then_some(()) }
        })
        .await;
    }

    /// Stops the server (a dead dependency), keeping its socket path.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts it again on the same socket (empty: nothing is persisted).
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }
}

async fn ping(socket: &std::path::Path) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(mut stream) = tokio::net::UnixStream::connect(socket).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).await.is_ok() && &reply == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
