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
    aof: bool,
    /// Also listening with TLS on this loopback port, with a certificate for `localhost`
    /// signed by the test CA in `ca.pem`.
    tls_port: Option<u16>,
}

impl RedisServer {
    /// Starts one and waits until it answers PING.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// Starts one that keeps an append-only file (fsync on every write), as compose and the
    /// Kubernetes StatefulSet run it: a restart keeps everything.
    pub async fn start_with_aof() -> Self {
        Self::start_with(true).await
    }

    /// Starts one that also takes TLS connections ([`RedisServer::tls_url`]), its certificate
    /// signed by a certificate authority made for it ([`RedisServer::ca_path`]).
    pub async fn start_with_tls() -> Self {
        let dir = TempDir::new("blob-redis");
        write_tls_files(dir.path());
        let mut server = Self { child: None, dir, aof: false, tls_port: Some(crate::free_port()) };
        server.spawn().await;
        server
    }

    async fn start_with(aof: bool) -> Self {
        let dir = TempDir::new("blob-redis");
        let mut server = Self { child: None, dir, aof, tls_port: None };
        server.spawn().await;
        server
    }

    /// `rediss://localhost:{port}`, when started with TLS.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|port| format!("rediss://localhost:{port}"))
    }

    /// The PEM file of the certificate authority that signed the TLS certificate.
    pub fn ca_path(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
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
            .args(["--unixsocketperm", "700", "--save", ""])
            .args(if self.aof {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "everysec"]
            })
            .arg("--dir")
            .arg(self.dir.path())
            .args(self.tls_port.map_or_else(Vec::new, |port| {
                let file = |name: &str| self.dir.path().join(name).display().to_string();
                vec![
                    "--tls-port".to_owned(),
                    port.to_string(),
                    "--bind".to_owned(),
                    "127.0.0.1".to_owned(),
                    "--tls-cert-file".to_owned(),
                    file("server.pem"),
                    "--tls-key-file".to_owned(),
                    file("server.key"),
                    "--tls-ca-cert-file".to_owned(),
                    file("ca.pem"),
                    "--tls-auth-clients".to_owned(),
                    "no".to_owned(),
                ]
            }))
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

    /// Runs `redis-cli` against this server; its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("redis-cli runs (apt-get install redis-server)");
        assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The keys matching `pattern` (`SCAN`, so never blocking the server), sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .cli(&["--scan", "--pattern", pattern])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }

    /// Every key whose name or value (whatever its type) contains `needle`.
    pub fn keys_holding(&self, needle: &str) -> Vec<String> {
        self.keys("*")
            .into_iter()
            .filter(|key| {
                let value = match self.cli(&["TYPE", key]).trim() {
                    "string" => self.cli(&["GET", key]),
                    "list" => self.cli(&["LRANGE", key, "0", "-1"]),
                    "set" => self.cli(&["SMEMBERS", key]),
                    "zset" => self.cli(&["ZRANGE", key, "0", "-1"]),
                    "hash" => self.cli(&["HGETALL", key]),
                    "stream" => self.cli(&["XRANGE", key, "-", "+"]),
                    _ => String::new(),
                };
                key.contains(needle) || value.contains(needle)
            })
            .collect()
    }

    /// Stops the server (a dead dependency), keeping its socket path.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts it again on the same socket: empty, or with everything when it keeps an
    /// append-only file.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }
}

/// A certificate authority (`ca.pem`) and a server certificate for `localhost` and 127.0.0.1
/// signed by it (`server.pem`, `server.key`), written into `dir`.
fn write_tls_files(dir: &std::path::Path) {
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Blob test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("self-signing the CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("a server key");
    let server =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params")
            .signed_by(&server_key, &issuer)
            .expect("signing the server certificate");
    for (name, pem) in [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", server.pem()),
        ("server.key", server_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), pem).expect("writing a TLS file");
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
