//! Where the harness finds the service binaries and the speech models.

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// The directory holding the built binaries (`target/debug` next to the running test).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test> → target/<profile>
    exe.parent().and_then(Path::parent).expect("target profile dir").to_path_buf()
}

/// The path of a service binary; panics with the fix when it was not built.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the services first (`cargo build --workspace --bins`, which `make test` does)",
        path.display()
    );
    path
}

/// A whisper model: `WHISPER_MODEL_PATH` if set, else `models/<file>` in the workspace, else
/// the shared models directory beside the workspace.
pub fn whisper_model(file: &str) -> PathBuf {
    if let Ok(path) = std::env::var("WHISPER_MODEL_PATH") {
        return PathBuf::from(path);
    }
    let root = workspace_root();
    let candidates = [root.join("models").join(file), root.join("../shared/models").join(file)];
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("whisper model {file} not found in {candidates:?}: run `make model`")
    })
}

/// The local reply model's file name (`make model-llm`).
pub const LOCAL_LLM_FILE: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";

/// The local reply model: `LOCAL_MODEL_PATH` if set, else `models/` in the workspace, else the
/// shared models directory; `None` when it is nowhere.
pub fn local_llm_model() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("LOCAL_MODEL_PATH") {
        return Some(PathBuf::from(path));
    }
    let root = workspace_root();
    [root.join("models").join(LOCAL_LLM_FILE), root.join("../shared/models").join(LOCAL_LLM_FILE)]
        .into_iter()
        .find(|p| p.is_file())
}

/// The Silero VAD model (`make model`).
pub const SILERO_VAD_FILE: &str = "silero_vad.onnx";
/// The Smart Turn end-of-turn model (`make model`).
pub const SMART_TURN_FILE: &str = "smart-turn-v3.2-cpu.onnx";
/// ONNX Runtime's shared library (`make model`).
pub const ONNX_RUNTIME_FILE: &str = "libonnxruntime.so.1.31.1";

/// One of the ONNX files `make model` puts in `models/` (see the constants above); panics with
/// the fix when it is missing.
pub fn onnx_file(file: &str) -> PathBuf {
    let path = workspace_root().join("models").join(file);
    assert!(path.is_file(), "{} is missing: run `make model`", path.display());
    path
}

/// A speech clip from the test audio sets (`test-audio/utt1.wav`, or a `speech/` clip).
pub fn speech_clip(relative: &str) -> PathBuf {
    let root = workspace_root();
    let candidates = [
        root.join("models").join(relative),
        root.join("../shared/models").join(relative),
        root.join("../shared").join(relative),
    ];
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("speech clip {relative} not found in {candidates:?}: run `make model`")
    })
}
