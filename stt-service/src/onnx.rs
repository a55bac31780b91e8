//! ONNX Runtime, loaded once per process from its shared library (`ORT_DYLIB_PATH`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use anyhow::{Context as _, anyhow};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

static RUNTIME: OnceLock<Result<(PathBuf, Environment), String>> = OnceLock::new();

/// Loads the runtime library the first time; later calls reuse it (a process holds one).
pub fn init(library: &Path) -> anyhow::Result<&'static Environment> {
    let loaded = RUNTIME.get_or_init(|| {
        let environment = ort::init_from(library)
            .map_err(|err| format!("loading {}: {err}", library.display()))?
            .with_name("blob-stt")
            .build()
            .map_err(|err| format!("starting ONNX Runtime from {}: {err}", library.display()))?;
        Ok((library.to_owned(), environment))
    });
    match loaded {
        Ok((first, environment)) => {
            if first != library {
                tracing::warn!(
                    loaded = %first.display(),
                    requested = %library.display(),
                    "ONNX Runtime is already loaded from another file; keeping it"
                );
            }
            Ok(environment)
        }
        Err(message) => Err(anyhow!("{message}")),
    }
}

/// A single-threaded session for a small model: the service runs many of them side by side,
/// one per worker, so intra-op parallelism would only contend for the same cores.
pub fn session(environment: &Environment, model: &Path) -> anyhow::Result<Session> {
    let configure = || -> Result<_, ort::Error> {
        Ok(Session::builder(environment)?
            .with_optimization_level(GraphOptimizationLevel::Level3)?
            .with_intra_threads(1)?
            .with_inter_threads(1)?
            .with_intra_op_spinning(false)?)
    };
    let mut builder = configure().map_err(|err| anyhow!("configuring an ONNX session: {err}"))?;
    builder.commit_from_file(model).with_context(|| format!("loading {}", model.display()))
}

/// One model loaded into a few single-threaded sessions: calls on different sessions run in
/// parallel, one per worker.
pub struct SessionPool {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool").field("sessions", &self.sessions.len()).finish()
    }
}

impl SessionPool {
    /// Loads the runtime (once per process) and `model` into `count` sessions (at least one).
    pub fn load(runtime: &Path, model: &Path, count: usize) -> anyhow::Result<Self> {
        let environment = init(runtime)?;
        let sessions = (0..count.max(1))
            .map(|_| session(environment, model).map(Mutex::new))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { sessions, next: AtomicUsize::new(0) })
    }

    /// Any free session; if all are busy, waits on one in turn.
    pub fn acquire(&self) -> anyhow::Result<MutexGuard<'_, Session>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.sessions.len();
        (0..count)
            .find_map(|i| self.sessions[(start + i) % count].try_lock().ok())
            .map_or_else(|| self.sessions[start % count].lock(), Ok)
            .map_err(|_| anyhow!("an ONNX session panicked"))
    }
}
