#!/usr/bin/env bash
# The whole test suite: formatting, lints, every Rust test, and the generated clients' tests.
# This is the README's test command; .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== nothing read from outside the clone"
# A clone must test on its own: fixtures live in tests/fixtures/, never in a sibling directory such
# as the project's shared spec, nor at an absolute path of the development machine. (The pattern
# is split so this line does not match itself.)
outside='\.\./'"shared"'|/'"work/"
where=(tests scripts clients benches fuzz build.rs .ci src Cargo.toml)
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  found="$(git grep -nIE "$outside" -- "${where[@]}" || true)"
else
  found="$(grep -rnIE --exclude-dir=target --exclude-dir=node_modules --exclude-dir=.venv "$outside" "${where[@]}" || true)"
fi
if [ -n "$found" ]; then
  printf '%s\n' "$found" >&2
  echo "error: the lines above read files outside the repository; copy what they need into tests/fixtures/" >&2
  exit 1
fi
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo build"
cargo build --all-targets --locked
# The client tests install their Python and npm packages, which the cross-language Rust test
# (tests/cross_language.rs) needs too, so they run first.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
echo "== client tests (Python, TypeScript)"
clients/run-tests.sh 2>&1 | tee "$log"
echo "== console browser tests (ui/tests: Chromium + playwright-core)"
ui/tests/run.sh 2>&1 | tee -a "$log"
echo "== cargo test"
# The cross-language test runs the Python client with the interpreter clients/setup.sh prepared.
export PYTHON="${PYTHON:-$PWD/clients/.venv/bin/python}"
cargo test --locked -- --test-threads=2 2>&1 | tee -a "$log"
# One closing line for the whole suite: cargo's per-binary results, pytest's and node's summaries.
awk '
  /^test result:/            { p += $4; f += $6 }
  / passed.* in [0-9.]+s/    { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  /^# pass [0-9]+$/          { p += $3 }
  /^# fail [0-9]+$/          { f += $3 }
  END { printf "all tests: %d passed, %d failed\n", p, f }
' "$log"
