//! Configuration from the environment (see the README's table).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use blob_kit::config::{ConfigError, EnvReader};

use crate::turn::TurnConfig;
use crate::vad::SegmenterConfig;

/// Everything the stt-service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `STT_GRPC_ADDR`.
    pub grpc_addr: SocketAddr,
    /// `GRPC_REFLECTION` (default: on when `grpc_addr` is loopback): server reflection.
    pub grpc_reflection: bool,
    /// `ADMIN_ADDR`: metrics and health (default `127.0.0.1:9101`).
    pub admin_addr: SocketAddr,
    /// `WHISPER_MODEL_PATH`: a whisper.cpp ggml model file.
    pub model_path: PathBuf,
    /// `STT_LANGUAGE` (default `en`; `auto` detects).
    pub language: String,
    /// `STT_WORKERS` (default: the number of cores): transcriptions run at once.
    pub workers: usize,
    /// `STT_QUEUE_DEPTH` (default: `STT_WORKERS`): utterances that may wait for a worker; when
    /// it is full, streams get `RESOURCE_EXHAUSTED`.
    pub queue_depth: usize,
    /// `STT_MAX_STREAMS` (default 200): speech streams open at once; more are refused with
    /// `RESOURCE_EXHAUSTED` (the gateway closes that socket with 1013, to try again).
    pub max_streams: usize,
    /// `STT_THREADS` (default 1): threads per transcription.
    pub threads: usize,
    /// `STT_MIN_SECONDS` (default 1.0): shorter speech is rejected as `too_short`.
    pub min_speech: Duration,
    /// `STT_CONFIDENCE_THRESHOLD` (default 0.6): lower confidence is rejected.
    pub confidence_threshold: f32,
    /// Voice activity detection and endpointing.
    pub segmenter: SegmenterConfig,
    /// `VAD_MODE` (default `silero`): the neural detector with the energy gate on onsets, or
    /// `energy` for the gate alone (no model files needed).
    pub vad: VadMode,
    /// `TURN_MODE` (default `smart` with `VAD_MODE=silero`, else `silence`): how a turn ends.
    pub turn: TurnMode,
}

/// How the end of a turn is decided.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnMode {
    /// After `VAD_SILENCE_MS` of silence.
    Silence,
    /// Smart Turn at a short pause, with a backstop silence.
    Smart {
        /// `TURN_MODEL_PATH` (default `models/smart-turn-v3.2-cpu.onnx`).
        model: PathBuf,
        /// `ORT_DYLIB_PATH`.
        runtime: PathBuf,
        /// The pauses and threshold.
        config: TurnConfig,
    },
}

/// Which voice activity detector runs.
#[derive(Debug, Clone, PartialEq)]
pub enum VadMode {
    /// The RMS energy gate alone.
    Energy,
    /// Silero VAD through ONNX Runtime.
    Silero {
        /// `VAD_MODEL_PATH` (default `models/silero_vad.onnx`).
        model: PathBuf,
        /// `ORT_DYLIB_PATH` (default `models/libonnxruntime.so.1.31.1`).
        runtime: PathBuf,
    },
}

impl Config {
    /// Reads and validates the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::from_env())
    }

    /// Reads and validates the given variables, reporting every problem at once.
    pub fn from_reader(mut env: EnvReader) -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let grpc_addr = env.parse("STT_GRPC_ADDR", SocketAddr::from(([127, 0, 0, 1], 50051)));
        let grpc_reflection = blob_kit::grpc::reflection_enabled(&mut env, &grpc_addr);
        let admin_addr = env.parse("ADMIN_ADDR", SocketAddr::from(([127, 0, 0, 1], 9101)));
        let model_path =
            PathBuf::from(env.string("WHISPER_MODEL_PATH", "models/ggml-base-q8_0.bin"));
        let language = env.string("STT_LANGUAGE", "en");
        let workers = env.parse("STT_WORKERS", cores);
        let queue_depth = env.parse("STT_QUEUE_DEPTH", workers);
        let threads = env.parse("STT_THREADS", 1usize);
        let max_streams = env.parse("STT_MAX_STREAMS", 200usize);
        env.check(max_streams >= 1, || "STT_MAX_STREAMS must be at least 1".into());
        let min_seconds = env.parse("STT_MIN_SECONDS", 1.0f64);
        let confidence_threshold = env.parse("STT_CONFIDENCE_THRESHOLD", 0.6f32);
        let defaults = SegmenterConfig::default();
        let energy_threshold = env.parse("VAD_ENERGY_THRESHOLD", defaults.energy_threshold);
        let speech_threshold = env.parse("VAD_THRESHOLD", defaults.speech_threshold);
        let vad_mode = env.string("VAD_MODE", "silero");
        let vad_model = PathBuf::from(env.string("VAD_MODEL_PATH", "models/silero_vad.onnx"));
        let runtime =
            PathBuf::from(env.string("ORT_DYLIB_PATH", "models/libonnxruntime.so.1.31.1"));
        let silence_ms = env.parse("VAD_SILENCE_MS", defaults.silence_ms);
        let max_utterance_seconds =
            env.parse("STT_MAX_UTTERANCE_SECONDS", defaults.max_utterance_ms / 1000);
        let turn_mode =
            env.string("TURN_MODE", if vad_mode == "silero" { "smart" } else { "silence" });
        let turn_model =
            PathBuf::from(env.string("TURN_MODEL_PATH", "models/smart-turn-v3.2-cpu.onnx"));
        let turn_defaults = TurnConfig::default();
        let turn = TurnConfig {
            pause_ms: env.parse("TURN_PAUSE_MS", turn_defaults.pause_ms),
            max_silence_ms: env.parse("TURN_MAX_SILENCE_MS", turn_defaults.max_silence_ms),
            threshold: env.parse("TURN_THRESHOLD", turn_defaults.threshold),
            adapt: env.parse("TURN_ADAPT", turn_defaults.adapt),
            speculate: env.parse("TURN_SPECULATE", turn_defaults.speculate),
        };

        env.check(model_path.is_file(), || {
            format!("WHISPER_MODEL_PATH={}: no such file (run `make model`)", model_path.display())
        });
        env.check(workers >= 1, || "STT_WORKERS must be at least 1".to_owned());
        env.check(threads >= 1, || "STT_THREADS must be at least 1".to_owned());
        env.check((0.0..=30.0).contains(&min_seconds), || {
            "STT_MIN_SECONDS must be between 0 and 30".to_owned()
        });
        env.check((0.0..=1.0).contains(&confidence_threshold), || {
            "STT_CONFIDENCE_THRESHOLD must be between 0 and 1".to_owned()
        });
        env.check(energy_threshold >= 0.0, || "VAD_ENERGY_THRESHOLD must not be negative".into());
        env.check((0.2..=0.95).contains(&speech_threshold), || {
            "VAD_THRESHOLD must be between 0.2 and 0.95".to_owned()
        });
        env.check(["silero", "energy"].contains(&vad_mode.as_str()), || {
            format!("VAD_MODE={vad_mode:?}: expected silero or energy")
        });
        env.check(["smart", "silence"].contains(&turn_mode.as_str()), || {
            format!("TURN_MODE={turn_mode:?}: expected smart or silence")
        });
        let mut needed = Vec::new();
        if vad_mode == "silero" {
            needed.push(("VAD_MODEL_PATH", &vad_model));
        }
        if turn_mode == "smart" {
            needed.push(("TURN_MODEL_PATH", &turn_model));
        }
        if !needed.is_empty() {
            needed.push(("ORT_DYLIB_PATH", &runtime));
        }
        for (name, path) in needed {
            env.check(path.is_file(), || {
                format!("{name}={}: no such file (run `make model`)", path.display())
            });
        }
        env.check((100..=2000).contains(&turn.pause_ms), || {
            "TURN_PAUSE_MS must be between 100 and 2000".to_owned()
        });
        env.check((3 * turn.pause_ms..=10_000).contains(&turn.max_silence_ms), || {
            "TURN_MAX_SILENCE_MS must be between three times TURN_PAUSE_MS and 10000".to_owned()
        });
        env.check((0.05..=0.99).contains(&turn.threshold), || {
            "TURN_THRESHOLD must be between 0.05 and 0.99".to_owned()
        });
        env.check((100..=10_000).contains(&silence_ms), || {
            "VAD_SILENCE_MS must be between 100 and 10000".to_owned()
        });
        env.check((1..=30).contains(&max_utterance_seconds), || {
            "STT_MAX_UTTERANCE_SECONDS must be between 1 and 30 (whisper's window)".to_owned()
        });
        env.check(language == "auto" || whisper_rs::get_lang_id(&language).is_some(), || {
            format!("STT_LANGUAGE={language:?}: not a whisper language code")
        });
        env.finish()?;
        Ok(Self {
            grpc_addr,
            grpc_reflection,
            admin_addr,
            model_path,
            language,
            workers,
            queue_depth,
            max_streams,
            threads,
            min_speech: Duration::from_secs_f64(min_seconds),
            confidence_threshold,
            turn: if turn_mode == "smart" {
                TurnMode::Smart { model: turn_model, runtime: runtime.clone(), config: turn }
            } else {
                TurnMode::Silence
            },
            vad: if vad_mode == "energy" {
                VadMode::Energy
            } else {
                VadMode::Silero { model: vad_model, runtime }
            },
            segmenter: SegmenterConfig {
                energy_threshold,
                speech_threshold,
                silence_ms,
                max_utterance_ms: max_utterance_seconds * 1000,
                ..defaults
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_and_bad_numbers_are_all_reported() {
        let err = Config::from_reader(EnvReader::from_pairs([
            ("WHISPER_MODEL_PATH", "/nonexistent/model.bin"),
            ("STT_CONFIDENCE_THRESHOLD", "2"),
            ("VAD_SILENCE_MS", "fast"),
            ("STT_LANGUAGE", "klingon"),
            ("VAD_MODEL_PATH", "/nonexistent/silero.onnx"),
            ("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so"),
            ("TURN_MODEL_PATH", "/nonexistent/smart-turn.onnx"),
            ("TURN_PAUSE_MS", "50"),
            ("TURN_MODE", "smart"),
            ("TURN_THRESHOLD", "2"),
        ]))
        .unwrap_err();
        assert_eq!(err.problems.len(), 9, "{err}");
        assert!(err.problems.iter().any(|p| p.contains("make model")));
    }
}
