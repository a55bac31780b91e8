"""The other side of `make bench-stt`: the original engine, faster-whisper (CTranslate2) int8
`base`, over the same list, with the same output as stt-service's bench_stt example.

    python baseline.py MODEL_DIR LIST
"""
import json
import os
import resource
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from faster_whisper import WhisperModel  # noqa: E402


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    model_dir, listing = sys.argv[1], sys.argv[2]
    started = time.perf_counter()
    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=1,
                         num_workers=1, local_files_only=True)
    load_s = time.perf_counter() - started
    cpu_before = cpu_seconds()
    audio_total = wall_total = 0.0
    with open(listing) as lines:
        for line in lines:
            line = line.strip()
            if not line:
                continue
            path, _, reference = line.partition("|")
            started = time.perf_counter()
            segments, info = model.transcribe(path, language="en", beam_size=1)
            text = " ".join(s.text.strip() for s in segments)
            wall_s = time.perf_counter() - started
            audio_total += info.duration
            wall_total += wall_s
            print(json.dumps({"file": path, "reference": reference, "hypothesis": text,
                              "audio_s": info.duration, "wall_s": wall_s}), flush=True)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"engine": "faster-whisper int8 (original)", "load_s": load_s,
                      "audio_s": audio_total, "cpu_s": cpu_seconds() - cpu_before,
                      "wall_s": wall_total, "peak_rss_mib": peak_mib}))


if __name__ == "__main__":
    main()
