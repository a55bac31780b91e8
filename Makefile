# Blob backend. `make run` starts the whole stack locally; `make test` runs every test.

.PHONY: run test build model lint fmt clean validate-deploy

run: ## Start the whole stack on embedded defaults (Ctrl-C stops it)
	scripts/run-stack.sh

test: ## Build the service binaries, then run every test
	cargo build --workspace --bins
	cargo test --workspace

build: ## Build everything
	cargo build --workspace --all-targets

model: ## Fetch and rebuild the whisper models into models/
	scripts/fetch-models.sh

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
