#!/usr/bin/env bash
# Runs the whole stack on this machine with embedded defaults: its own redis-server (unless
# REDIS_URL is given), the whisper model, local sign-in, and the bypass reply when there is no
# GOOGLE_API_KEY. Ctrl-C stops everything.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
run_dir="$root/.run"
mkdir -p "$run_dir/logs"
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

cargo build --workspace --bins

model="${WHISPER_MODEL_PATH:-}"
if [ -z "$model" ]; then
  for candidate in "$root/models/ggml-base-q8_0.bin" "$root/../shared/models/ggml-base-q8_0.bin"; do
    if [ -f "$candidate" ]; then model="$candidate"; break; fi
  done
fi
if [ -z "$model" ] || [ ! -f "$model" ]; then
  echo "No whisper model found: run 'make model' (or set WHISPER_MODEL_PATH)." >&2
  exit 1
fi

pids=()
stopped=false
stop() {
  $stopped && return
  stopped=true
  echo
  echo "Stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "Stopped."
}
trap 'stop; exit 130' INT TERM
trap stop EXIT

if [ -z "${REDIS_URL:-}" ]; then
  rm -f "$run_dir/redis.sock"
  redis-server --port 0 --unixsocket "$run_dir/redis.sock" --unixsocketperm 700 \
    --save '' --appendonly no --dir "$run_dir" >"$run_dir/logs/redis.log" 2>&1 &
  pids+=($!)
  export REDIS_URL="unix://$run_dir/redis.sock"
  for _ in $(seq 100); do [ -S "$run_dir/redis.sock" ] && break; sleep 0.05; done
fi

export AUTH_PROVIDER="${AUTH_PROVIDER:-local}"
export WHISPER_MODEL_PATH="$model"
# Without a Gemini key: the local model when `make model-llm` has fetched it, else the fixed reply.
local_llm="${LOCAL_MODEL_PATH:-$root/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}"
if [ -z "${GOOGLE_API_KEY:-}" ] && [ -z "${LLM_PROVIDER:-}" ]; then
  if [ -f "$local_llm" ]; then
    # Two threads: the first sentence in about 0.7 s on this class of machine.
    export LLM_PROVIDER=local LOCAL_MODEL_PATH="$local_llm" LOCAL_THREADS="${LOCAL_THREADS:-2}"
  else
    export BYPASSLLM="${BYPASSLLM:-true}"
  fi
fi

# Users, children and archived sessions: one SQLite file kept between runs.
export COLD_STORE="${COLD_STORE:-embedded}"
export EMBEDDED_STORE_PATH="${EMBEDDED_STORE_PATH:-$run_dir/state.sqlite3}"

for service in session-service stt-service llm-service gateway; do
  "$bin/$service" >"$run_dir/logs/$service.log" 2>&1 &
  pids+=($!)
done

gateway_addr="${GATEWAY_HTTP_ADDR:-127.0.0.1:8080}"
for _ in $(seq 200); do
  if curl -fsS "http://$gateway_addr/health" >/dev/null 2>&1; then break; fi
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "A service exited during start-up; its log:" >&2
      tail -n 20 "$run_dir"/logs/*.log >&2
      exit 1
    fi
  done
  sleep 0.1
done

llm_mode="Gemini (${GEMINI_MODEL:-gemini-3.1-flash-lite-preview})"
[ "${LLM_PROVIDER:-}" = "local" ] && llm_mode="local model ${LOCAL_MODEL_PATH:-} (set GOOGLE_API_KEY for Gemini)"
[ "${BYPASSLLM:-false}" = "true" ] && llm_mode="bypass (fixed reply; run make model-llm for a local model, or set GOOGLE_API_KEY for Gemini)"
speech="$root/models/test-audio/utt1.wav"
[ -f "$speech" ] || speech="$root/../shared/models/test-audio/utt1.wav"
cat <<INFO

Blob is running.
  REST API      http://$gateway_addr/api/v1   (health: http://$gateway_addr/health)
  Voice socket  ws://$gateway_addr/ws/voice
  Console       http://$gateway_addr/console   (talk to Blob with the microphone)
  gRPC          stt-service 127.0.0.1:50051, llm-service 127.0.0.1:50052, session-service 127.0.0.1:50053
  Sign-in       $AUTH_PROVIDER      Replies: $llm_mode
  Redis         $REDIS_URL
  Cold store    $COLD_STORE ${EMBEDDED_STORE_PATH}
  Logs          $run_dir/logs/

Try a turn (in another terminal, from $root):
  $bin/blob login --email parent@example.com --gateway http://$gateway_addr
  $bin/blob talk --wav $speech --child Mia
  $bin/blob talk --wav $speech --child Mia     # again: the same conversation continues

Press Ctrl-C to stop.
INFO

# Stop everything as soon as any one process exits.
wait -n "${pids[@]}" || true
echo "A process exited unexpectedly; see $run_dir/logs/." >&2
exit 1
