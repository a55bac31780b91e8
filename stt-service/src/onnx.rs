//! ONNX Runtime, loaded once per process from its shared library (`ORT_DYLIB_PATH`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
