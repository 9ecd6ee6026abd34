#!/usr/bin/env bash
# The standard benchmark suite (see docs/performance.md): builds the release binary and runs
# `obelisk bench --suite`, which starts a fresh in-process broker for every row and prints a
# markdown table (mode, durability, size, clients, batch, in flight, records/s, MB/s, p50, p99,
# and the command of each row).
#
# Usage: scripts/bench-suite.sh [--suite-duration 5s] [--json] [--quiet]
# The temporary data directories go under $TMPDIR (default /tmp): put it on the disk you want to
# measure, since fsync rows measure that disk.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)" >&2
exec target/release/obelisk bench --suite "$@"
