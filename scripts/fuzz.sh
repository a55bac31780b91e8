#!/usr/bin/env bash
# Runs each fuzz target of fuzz/ (the voice socket's frame parser and client messages) under
# libFuzzer for FUZZ_SECONDS (default 30) each, starting from the committed corpus in
# fuzz/corpus/. New inputs go to a scratch directory, so the committed corpus only changes
# when someone merges them in (FUZZ_MERGE=1). A failing input is kept in fuzz/artifacts/ and
# the run fails.
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). Without them
# it says so and exits 0, unless BLOB_REQUIRE_FUZZ=1 (CI), where that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
missing=""
cargo +nightly --version >/dev/null 2>&1 || missing="a nightly toolchain"
cargo fuzz --version >/dev/null 2>&1 || missing="${missing:+$missing and }cargo-fuzz (cargo install cargo-fuzz --locked)"
if [ -n "$missing" ]; then
  if [ "${BLOB_REQUIRE_FUZZ:-0}" = 1 ]; then
    echo "fuzz: needs $missing" >&2
    exit 1
  fi
  echo "fuzz: SKIPPED, needs $missing (the corpus is still replayed by cargo test)"
  exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in frame client_json; do
  mkdir -p "$scratch/$target"
  echo "fuzz: $target for ${seconds}s from $(ls "fuzz/corpus/$target" | wc -l) corpus inputs"
  # The target's own build (nightly, address sanitizer, coverage) lives in fuzz/target.
  rc=0
  (cd fuzz && cargo +nightly fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=33000 -rss_limit_mb=2048 -print_final_stats=1) \
    >"$scratch/$target.log" 2>&1 || rc=$?
  grep -E '^(stat::number_of_executed_units|stat::new_units_added)|ERROR|SUMMARY|panicked|Test unit written' \
    "$scratch/$target.log" || true
  if [ "$rc" -ne 0 ]; then
    tail -40 "$scratch/$target.log" >&2
    echo "fuzz: $target FAILED (the input is in fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" "$scratch/$target" -- -merge=1) \
      >/dev/null 2>&1
    echo "fuzz: $target corpus now $(ls "fuzz/corpus/$target" | wc -l) inputs"
  fi
done
