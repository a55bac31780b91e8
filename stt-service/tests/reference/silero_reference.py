"""Reference Silero VAD probabilities for the stt-service's tests.

Runs `silero_vad.onnx` with the Python ONNX Runtime exactly as the silero-vad package's
`OnnxWrapper` feeds it at 16 kHz: chunks of 512 samples scaled to [-1, 1), each prefixed with the
last 64 samples of the previous input (zeros at first), the recurrent state [2, 1, 128] carried
from call to call. Prints JSON: per clip, one speech probability per chunk.

    python3 -m venv venv && venv/bin/pip install numpy==2.4.6 onnxruntime==1.31.1
    venv/bin/python silero_reference.py MODEL.onnx CLIP.wav... > silero_reference.json
"""

import json
import os
import sys
import wave

import numpy as np
import onnxruntime

CHUNK = 512
CONTEXT = 64


def probabilities(session, path):
    with wave.open(path) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    audio = pcm.astype(np.float32) / 32768.0
    state = np.zeros((2, 1, 128), dtype=np.float32)
    context = np.zeros((1, CONTEXT), dtype=np.float32)
    out = []
    for start in range(0, len(audio) - CHUNK + 1, CHUNK):
        x = np.concatenate([context, audio[None, start : start + CHUNK]], axis=1)
        prob, state = session.run(
            None, {"input": x, "state": state, "sr": np.array(16000, dtype=np.int64)}
        )
        context = x[:, -CONTEXT:]
        out.append(round(float(prob[0][0]), 6))
    return out


def main():
    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(sys.argv[1], sess_options=opts)
    result = {
        "model": "silero_vad.onnx (silero-vad 6.2.3)",
        "runtime": "onnxruntime " + onnxruntime.__version__,
        "clips": {os.path.basename(p): probabilities(session, p) for p in sys.argv[2:]},
    }
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
