#!/usr/bin/env bash
# Tests of the generated clients against a real `obelisk serve` (target/debug/obelisk, or $OBELISK_BIN):
#   1. installs the pinned Python packages and the npm lockfile's packages,
#   2. checks the checked-in generated code is fresh (clients/generate.sh --check),
#   3. pytest (clients/python/tests), 4. tsc type check + node --test (clients/typescript/test).
# Exits non-zero if any step fails; every step runs, and a summary is printed at the end.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python3}"
export PYTHON="$python"
failed=()

step() { echo; echo "=== $* ==="; }

# Pins: must match clients/python/pyproject.toml [project.optional-dependencies] dev (the generated
# stubs embed the grpcio-tools and protobuf versions that produced them).
step "install Python packages"
"$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  grpcio==1.85.3 grpcio-tools==1.85.1 grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 \
  protobuf==7.36.2 pytest==9.2.0 || { echo "pip install failed" >&2; exit 1; }

step "install Node packages (npm ci)"
(cd "$here/typescript" && npm ci --no-audit --no-fund --loglevel=error) || { echo "npm ci failed" >&2; exit 1; }

if [[ -z "${OBELISK_BIN:-}" && ! -x "$root/target/debug/obelisk" ]]; then
  step "build the broker (cargo build --bin obelisk)"
  (cd "$root" && cargo build --bin obelisk) || { echo "cargo build failed" >&2; exit 1; }
fi

step "generated code is up to date"
bash "$here/generate.sh" --check || failed+=("generated code is stale")

step "pytest (clients/python)"
(cd "$here/python" && "$python" -m pytest -q -p no:cacheprovider) || failed+=("pytest")

step "tsc + node --test (clients/typescript)"
(cd "$here/typescript" && npx tsc -p tsconfig.json && node --test --test-concurrency=1 test/) || failed+=("node --test")

echo
if ((${#failed[@]})); then
  echo "clients: FAILED: ${failed[*]}"
  exit 1
fi
echo "clients: all steps passed"
