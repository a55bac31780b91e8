# syntax=docker/dockerfile:1.7
#
# One build for Blob's four services; one final image per service:
#
#   docker build --target gateway         -t blob/gateway:dev .
#   docker build --target stt-service     -t blob/stt-service:dev .
#   docker build --target llm-service     -t blob/llm-service:dev .
#   docker build --target session-service -t blob/session-service:dev .
#
# (`docker compose build` builds all four.) The stt-service image bakes in the whisper model, so
# run `make model` first: it writes models/ggml-base-q8_0.bin, which the build context must hold.
# BuildKit is required (the default builder of current Docker) for the cache mounts below.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# --- build: all four release binaries at once ------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build

# cmake and clang (with libclang for bindgen) build whisper.cpp inside whisper-rs-sys. Versions
# are those of the Debian release (not pinned: it only gets security fixes).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev \
 && rm -rf /var/lib/apt/lists/*

# Portable whisper.cpp. By default ggml compiles with -march=native, i.e. for exactly the CPU of
# the machine that builds the image; the binary could then die with SIGILL on an older or
# different node. GGML_NATIVE=OFF builds for a fixed baseline instead (on x86-64: SSE4.2, AVX,
# AVX2, BMI2, FMA and F16C, which every current server CPU has). whisper-rs-sys passes every
# GGML_*, WHISPER_* and CMAKE_* environment variable to cmake as a -D definition, so this one
# variable is all it takes (it reads no CMAKE_ARGS; such a variable would only reach cmake as a
# meaningless definition of its own).
ENV GGML_NATIVE=OFF \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

WORKDIR /src
# Only what the workspace needs to compile: the models and the docs stay out of this layer.
COPY Cargo.toml Cargo.lock ./
# Build settings: llama.cpp for the images' AVX2/FMA baseline.
COPY .cargo/ .cargo/
COPY proto/ proto/
COPY services/ services/
COPY gateway/ gateway/
COPY stt-service/ stt-service/
COPY llm-service/ llm-service/
COPY session-service/ session-service/
COPY clients/ clients/

# The registry and the target directory are BuildKit cache mounts: a rebuild after a source
# change recompiles only our own crates, not the dependencies (whisper.cpp included). A cache
# mount is not part of the image, so the binaries are copied out of it in the same step.
RUN --mount=type=cache,id=blob-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=blob-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=blob-target,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p gateway -p stt-service -p llm-service -p session-service --bins \
 && mkdir -p /out/state \
 && cp target/release/gateway target/release/stt-service \
       target/release/llm-service target/release/session-service /out/

# --- runtime: the common base of the four images ---------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# ca-certificates for outgoing TLS; libstdc++6 for whisper.cpp (already in the slim image; named
# so the dependency is explicit).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric non-root user, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 blob \
 && useradd --system --uid 10001 --gid blob --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin blob
USER 10001:10001
WORKDIR /

# Inside a container every service listens on all interfaces (the defaults are loopback, for one
# machine); the admin port serves /metrics, /health/live and /health/ready. JSON logs.
ENV LOG_FORMAT=json

# --- the four images ---------------------------------------------------------------------------
FROM runtime AS gateway
COPY --from=build /out/gateway /usr/local/bin/gateway
ENV GATEWAY_HTTP_ADDR=0.0.0.0:8080 \
    ADMIN_ADDR=0.0.0.0:9100
EXPOSE 8080 9100
ENTRYPOINT ["/usr/local/bin/gateway"]

FROM runtime AS stt-service
COPY --from=build /out/stt-service /usr/local/bin/stt-service
# The default whisper model, Silero VAD, Smart Turn and ONNX Runtime's library (`make model`).
COPY models/ggml-base-q8_0.bin models/silero_vad.onnx models/smart-turn-v3.2-cpu.onnx \
     models/libonnxruntime.so.1.31.1 /models/
ENV STT_GRPC_ADDR=0.0.0.0:50051 \
    ADMIN_ADDR=0.0.0.0:9101 \
    WHISPER_MODEL_PATH=/models/ggml-base-q8_0.bin \
    VAD_MODEL_PATH=/models/silero_vad.onnx \
    TURN_MODEL_PATH=/models/smart-turn-v3.2-cpu.onnx \
    ORT_DYLIB_PATH=/models/libonnxruntime.so.1.31.1
EXPOSE 50051 9101
ENTRYPOINT ["/usr/local/bin/stt-service"]

FROM runtime AS llm-service
COPY --from=build /out/llm-service /usr/local/bin/llm-service
ENV LLM_GRPC_ADDR=0.0.0.0:50052 \
    ADMIN_ADDR=0.0.0.0:9102
EXPOSE 50052 9102
ENTRYPOINT ["/usr/local/bin/llm-service"]

FROM runtime AS session-service
COPY --from=build /out/session-service /usr/local/bin/session-service
# The embedded cold store's directory, owned by the service user (a volume mounted here takes
# over that ownership).
COPY --from=build --chown=10001:10001 /out/state /var/lib/blob
ENV SESSION_GRPC_ADDR=0.0.0.0:50053 \
    ADMIN_ADDR=0.0.0.0:9103 \
    EMBEDDED_STORE_PATH=/var/lib/blob/state.sqlite3
EXPOSE 50053 9103
ENTRYPOINT ["/usr/local/bin/session-service"]
