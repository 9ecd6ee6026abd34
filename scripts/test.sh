#!/usr/bin/env bash
# The whole test suite: formatting, lints, every Rust test, and the generated clients' tests.
# This is the README's test command; .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo build"
cargo build --all-targets --locked
# The client tests install their Python and npm packages, which the cross-language Rust test
# (tests/cross_language.rs) needs too, so they run first.
echo "== client tests (Python, TypeScript)"
clients/run-tests.sh
echo "== cargo test"
cargo test --locked -- --test-threads=2
echo "== all tests passed"
