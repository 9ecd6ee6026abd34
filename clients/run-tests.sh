#!/usr/bin/env bash
# Tests of the generated clients against a real `obelisk serve` (target/debug/obelisk, or $OBELISK_BIN):
#   1. installs what is needed (clients/setup.sh: Debian packages if missing, the pinned Python
#      packages in clients/.venv, the npm lockfile's packages),
#   2. checks the checked-in generated code is fresh (clients/generate.sh --check),
#   3. pytest (clients/python/tests), 4. tsc type check + node --test (clients/typescript/test).
# Exits non-zero if any step fails; every step runs, and a summary is printed at the end.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
failed=()

step() { echo; echo "=== $* ==="; }

step "install what the client tests need (clients/setup.sh)"
bash "$here/setup.sh" || { echo "clients/setup.sh failed" >&2; exit 1; }
python="${PYTHON:-$here/.venv/bin/python}"
export PYTHON="$python"

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
