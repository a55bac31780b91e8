#!/usr/bin/env bash
# Generates the benchmark's synthetic utterances (16 kHz mono WAV) with espeak-ng and sox:
# child-like sentences in several voices, speeds and pitches, some with a long pause in the
# middle and some over background noise. The texts are in refs.txt (committed); the audio
# depends on the espeak-ng version, so it is generated, not committed.
#   bench/stt/generate.sh [OUT_DIR]   (default bench/stt/audio)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/audio}
for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null || { echo "$tool is needed: apt-get install espeak-ng sox" >&2; exit 1; }
done
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# say FILE VOICE SPEED PITCH TEXT -> 16 kHz mono WAV
say() {
  espeak-ng -v "$2" -s "$3" -p "$4" -w "$tmp/raw.wav" "$5"
  sox "$tmp/raw.wav" -r 16000 -c 1 -b 16 "$1" pad 0.3 0.4
}

n=0
# refs.txt lines: file|voice|speed|pitch|kind|text, kind = plain, pause (a 1.2 s pause at the
# '/' in the text) or noise (pink noise under the speech).
while IFS='|' read -r file voice speed pitch kind text; do
  [ -z "$file" ] || [ "${file:0:1}" = "#" ] && continue
  case "$kind" in
    plain) say "$out/$file" "$voice" "$speed" "$pitch" "$text" ;;
    pause)
      first=${text%%/*}; second=${text#*/}
      say "$tmp/a.wav" "$voice" "$speed" "$pitch" "$first"
      say "$tmp/b.wav" "$voice" "$speed" "$pitch" "$second"
      sox -n -r 16000 -c 1 -b 16 "$tmp/gap.wav" trim 0 1.2
      sox "$tmp/a.wav" "$tmp/gap.wav" "$tmp/b.wav" "$out/$file"
      ;;
    noise)
      say "$tmp/clean.wav" "$voice" "$speed" "$pitch" "$text"
      length=$(soxi -D "$tmp/clean.wav")
      sox -n -r 16000 -c 1 -b 16 "$tmp/noise.wav" synth "$length" pinknoise vol 0.04
      sox -m "$tmp/clean.wav" "$tmp/noise.wav" -b 16 "$out/$file"
      ;;
    *) echo "unknown kind $kind for $file" >&2; exit 1 ;;
  esac
  n=$((n + 1))
done <"$here/refs.txt"
echo "generated $n utterances in $out"
