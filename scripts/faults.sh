#!/usr/bin/env bash
# The long variants of the fault tests (CI runs the same tests with fewer rounds): kill -9 during
# topic creation and deletion, random flipped bytes against the built binary, and the storage
# recovery seeds. Usage: scripts/faults.sh [rounds, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-60}"
echo "== tests/faults with OBELISK_FAULT_ROUNDS=$rounds"
OBELISK_FAULT_ROUNDS="$rounds" cargo test --locked --test faults -- --test-threads=1
echo "== tests/faults_connections"
cargo test --locked --test faults_connections -- --test-threads=1
echo "== storage recovery seeds"
cargo test --locked --lib storage::tests::recovery
