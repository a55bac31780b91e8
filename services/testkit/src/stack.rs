//! The whole backend as real processes: redis-server, the four services, the certificate
//! server and the fake Gemini, on free loopback ports.

use std::time::Duration;

use crate::firebase::CertServer;
use crate::gemini::{self, FakeGemini};
use crate::otlp::OtlpReceiver;
use crate::paths;
use crate::process::{ServiceProcess, wait_for_port};
use crate::redis::RedisServer;
use crate::{TempDir, free_port};
use blob_proto::session::v1 as session;

/// The project id the stack's gateway expects.
pub const PROJECT_ID: &str = "blob-e2e";
/// The backend token secret the stack's gateway uses.
pub const JWT_SECRET: &str = "e2e-secret-e2e-secret-e2e-secret-0123456789";

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// `SESSION_RECONNECT_WINDOW_SECONDS`.
    pub reconnect_window_seconds: u64,
    /// The whisper model file name.
    pub model: &'static str,
    /// Extra variables per service: (service, name, value).
    pub extra_env: Vec<(&'static str, &'static str, String)>,
    /// Export every service's spans to a local OTLP receiver ([`Stack::traces`]).
    pub traces: bool,
    /// Redis keeps an append-only file, so [`RedisServer::restart`] keeps the data.
    pub redis_aof: bool,
    /// The session-service reaches Redis over TLS (`rediss://`, the test CA in
    /// `REDIS_TLS_CA_PATH`).
    pub redis_tls: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            reconnect_window_seconds: 300,
            model: "ggml-base-q8_0.bin",
            extra_env: Vec::new(),
            traces: false,
            redis_aof: false,
            redis_tls: false,
        }
    }
}

/// How a service was started: its name, port and environment.
type ServiceSpec = (String, u16, Vec<(String, String)>);

/// A running stack; everything stops when it is dropped.
pub struct Stack {
    /// The stack's own redis-server.
    pub redis: RedisServer,
    /// The Firebase-format certificate server.
    pub certs: CertServer,
    /// The fake Gemini.
    pub gemini: FakeGemini,
    /// The span receiver, when the stack was started with `traces`.
    pub traces: Option<OtlpReceiver>,
    /// Gateway HTTP port.
    pub gateway_port: u16,
    /// stt-service gRPC port.
    pub stt_port: u16,
    /// llm-service gRPC port.
    pub llm_port: u16,
    /// session-service gRPC port.
    pub session_port: u16,
    /// Admin (metrics and health) ports by service name.
    pub admin_ports: Vec<(&'static str, u16)>,
    processes: Vec<ServiceProcess>,
    /// How each service was started (name, port, environment), to start it again.
    specs: Vec<ServiceSpec>,
    gateway_env: Vec<(String, String)>,
    logs: TempDir,
}

impl Stack {
    /// Starts everything and waits until each service listens.
    pub async fn start(options: StackOptions) -> Self {
        let logs = TempDir::new("blob-stack");
        let redis = if options.redis_tls {
            RedisServer::start_with_tls().await
        } else if options.redis_aof {
            RedisServer::start_with_aof().await
        } else {
            RedisServer::start().await
        };
        let mut redis_env = vec![("REDIS_URL", redis.url())];
        if let Some(url) = redis.tls_url() {
            redis_env = vec![
                ("REDIS_URL", url),
                ("REDIS_TLS_CA_PATH", redis.ca_path().display().to_string()),
            ];
        }
        let certs = CertServer::start(PROJECT_ID).await;
        let gemini = FakeGemini::start().await;
        let traces = if options.traces { Some(OtlpReceiver::start().await) } else { None };
        let tracing_env: Vec<(String, String)> = match &traces {
            Some(receiver) => vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), receiver.endpoint()),
                ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
            ],
            None => Vec::new(),
        };
        let (gateway_port, stt_port, llm_port, session_port) =
            (free_port(), free_port(), free_port(), free_port());
        let admin_ports: Vec<(&'static str, u16)> =
            ["session-service", "stt-service", "llm-service", "gateway"]
                .into_iter()
                .map(|name| (name, free_port()))
                .collect();
        let admin = |service: &str| {
            let port = admin_ports.iter().find(|(name, _)| *name == service).map(|(_, p)| *p);
            ("ADMIN_ADDR", format!("127.0.0.1:{}", port.expect("an admin port per service")))
        };
        let model = paths::whisper_model(options.model);

        let extra = |service: &str| -> Vec<(String, String)> {
            options
                .extra_env
                .iter()
                .filter(|(s, _, _)| *s == service)
                .map(|(_, k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        };
        let env = |pairs: Vec<(&str, String)>, service: &str| -> Vec<(String, String)> {
            let mut all: Vec<(String, String)> =
                pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            all.extend(tracing_env.iter().cloned());
            all.extend(extra(service));
            all
        };

        let mut processes = Vec::new();
        let specs = [
            (
                "session-service",
                session_port,
                env(
                    [
                        vec![
                            ("SESSION_GRPC_ADDR", format!("127.0.0.1:{session_port}")),
                            admin("session-service"),
                            ("COLD_STORE", "embedded".to_owned()),
                            (
                                "EMBEDDED_STORE_PATH",
                                logs.path().join("state.sqlite3").display().to_string(),
                            ),
                            (
                                "SESSION_RECONNECT_WINDOW_SECONDS",
                                options.reconnect_window_seconds.to_string(),
                            ),
                        ],
                        redis_env,
                    ]
                    .concat(),
                    "session-service",
                ),
            ),
            (
                "stt-service",
                stt_port,
                env(
                    vec![
                        ("STT_GRPC_ADDR", format!("127.0.0.1:{stt_port}")),
                        admin("stt-service"),
                        ("WHISPER_MODEL_PATH", model.display().to_string()),
                        (
                            "VAD_MODEL_PATH",
                            paths::onnx_file(paths::SILERO_VAD_FILE).display().to_string(),
                        ),
                        (
                            "ORT_DYLIB_PATH",
                            paths::onnx_file(paths::ONNX_RUNTIME_FILE).display().to_string(),
                        ),
                        ("STT_WORKERS", "2".to_owned()),
                        (
                            "TURN_MODEL_PATH",
                            paths::onnx_file(paths::SMART_TURN_FILE).display().to_string(),
                        ),
                        // Most tests speak synthetic espeak clips, which Smart Turn rates as
                        // unfinished whatever they say: they end turns on the fixed silence.
                        // The turn-taking tests, on real speech, set TURN_MODE=smart.
                        ("TURN_MODE", "silence".to_owned()),
                    ],
                    "stt-service",
                ),
            ),
            (
                "llm-service",
                llm_port,
                env(
                    vec![
                        ("LLM_GRPC_ADDR", format!("127.0.0.1:{llm_port}")),
                        admin("llm-service"),
                        ("LLM_PROVIDER", "gemini".to_owned()),
                        ("GEMINI_API_BASE", gemini.base_url()),
                        ("GOOGLE_API_KEY", gemini::API_KEY.to_owned()),
                        ("GEMINI_MODEL", "gemini-e2e".to_owned()),
                    ],
                    "llm-service",
                ),
            ),
            (
                "gateway",
                gateway_port,
                env(
                    vec![
                        ("GATEWAY_HTTP_ADDR", format!("127.0.0.1:{gateway_port}")),
                        admin("gateway"),
                        ("SESSION_SERVICE_URL", format!("http://127.0.0.1:{session_port}")),
                        ("STT_SERVICE_URL", format!("http://127.0.0.1:{stt_port}")),
                        ("LLM_SERVICE_URL", format!("http://127.0.0.1:{llm_port}")),
                        ("AUTH_PROVIDER", "firebase".to_owned()),
                        ("FIREBASE_PROJECT_ID", PROJECT_ID.to_owned()),
                        ("FIREBASE_CERTS_URL", certs.url()),
                        ("BACKEND_JWT_SECRET", JWT_SECRET.to_owned()),
                    ],
                    "gateway",
                ),
            ),
        ];
        let gateway_env = specs[3].2.clone();
        let specs: Vec<ServiceSpec> =
            specs.into_iter().map(|(name, port, env)| (name.to_owned(), port, env)).collect();
        for (name, port, env) in &specs {
            let mut process = ServiceProcess::spawn(name, &paths::binary(name), env, logs.path());
            wait_for_port(&mut process, *port, Duration::from_secs(60)).await;
            processes.push(process);
        }
        Self {
            redis,
            certs,
            gemini,
            traces,
            gateway_port,
            stt_port,
            llm_port,
            session_port,
            admin_ports,
            processes,
            specs,
            gateway_env,
            logs,
        }
    }

    /// Restarts a service on the same port with the same settings: SIGTERM and its graceful
    /// drain (a rollout), or SIGKILL (a crash); returns once the new process listens.
    pub async fn restart(&mut self, name: &str, graceful: bool) {
        let (_, port, env) = self
            .specs
            .iter()
            .find(|(n, _, _)| n == name)
            .cloned()
            .unwrap_or_else(|| panic!("no service {name}"));
        let index = self
            .processes
            .iter()
            .position(|p| p.name() == name)
            .unwrap_or_else(|| panic!("no process {name}"));
        let mut old = self.processes.remove(index);
        if graceful {
            tokio::task::block_in_place(|| old.terminate(Duration::from_secs(30)));
        } else {
            old.kill();
        }
        let mut process = ServiceProcess::spawn(name, &paths::binary(name), &env, self.logs.path());
        wait_for_port(&mut process, port, Duration::from_secs(120)).await;
        self.processes.push(process);
    }

    /// Starts another gateway instance against the same services; returns its HTTP port.
    /// Its process is named `gateway-2` (then `gateway-3`, …).
    pub async fn start_another_gateway(&mut self) -> u16 {
        let port = free_port();
        let name = format!(
            "gateway-{}",
            self.processes.iter().filter(|p| p.name().starts_with("gateway")).count() + 1
        );
        let mut env = self.gateway_env.clone();
        for (key, value) in &mut env {
            if key == "GATEWAY_HTTP_ADDR" {
                *value = format!("127.0.0.1:{port}");
            }
            if key == "ADMIN_ADDR" {
                *value = format!("127.0.0.1:{}", free_port());
            }
        }
        let mut process =
            ServiceProcess::spawn(&name, &paths::binary("gateway"), &env, self.logs.path());
        wait_for_port(&mut process, port, Duration::from_secs(60)).await;
        self.processes.push(process);
        port
    }

    /// `http://127.0.0.1:<gateway>`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }

    /// `ws://127.0.0.1:<gateway>/ws/voice`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws/voice", self.gateway_port)
    }

    /// `http://127.0.0.1:<admin port>` of a service.
    pub fn admin_url(&self, service: &str) -> String {
        let port = self.admin_ports.iter().find(|(name, _)| *name == service).map(|(_, p)| *p);
        format!("http://127.0.0.1:{}", port.unwrap_or_else(|| panic!("no service {service}")))
    }

    /// gRPC clients of the stack's session-service (to look behind the gateway).
    pub async fn session_client(&self) -> SessionClients {
        let url = format!("http://127.0.0.1:{}", self.session_port);
        let channel = tonic::transport::Channel::from_shared(url)
            .expect("valid URL")
            .connect()
            .await
            .expect("connecting to the session-service");
        SessionClients::new(channel)
    }

    /// A service process by name.
    pub fn process(&mut self, name: &str) -> &mut ServiceProcess {
        self.processes
            .iter_mut()
            .find(|p| p.name() == name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    /// Every service's log, for failure reports.
    pub fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|p| format!("===== {} =====\n{}", p.name(), tail(&p.log(), 60)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// A client of each of the session-service's four gRPC services, over one channel.
#[derive(Clone)]
pub struct SessionClients {
    /// Users, children and family links.
    pub families: session::families_client::FamiliesClient<tonic::transport::Channel>,
    /// Sessions and conversations.
    pub sessions: session::sessions_client::SessionsClient<tonic::transport::Channel>,
    /// Lessons and progress.
    pub lessons: session::lessons_client::LessonsClient<tonic::transport::Channel>,
    /// Request budgets, idempotency keys and store health.
    pub guard: session::edge_guard_client::EdgeGuardClient<tonic::transport::Channel>,
}

impl SessionClients {
    /// The four clients over `channel`.
    pub fn new(channel: tonic::transport::Channel) -> Self {
        Self {
            families: session::families_client::FamiliesClient::new(channel.clone()),
            sessions: session::sessions_client::SessionsClient::new(channel.clone()),
            lessons: session::lessons_client::LessonsClient::new(channel.clone()),
            guard: session::edge_guard_client::EdgeGuardClient::new(channel),
        }
    }
}
