#!/usr/bin/env bash
# replication (issue 17): the long run of the cluster checker. Three `obelisk serve` processes on
# loopback; each round produces through the leader, kills the leader with SIGKILL, produces on
# the new leader and restarts the dead node; at the end every acknowledged record must be on
# every replica exactly once, at its acknowledged offset, with no replica diverging.
# CI runs the same test with 2 rounds. Usage: scripts/chaos.sh [rounds, default 50]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-50}"
echo "== tests/cluster with OBELISK_CHAOS_ROUNDS=$rounds"
start=$(date +%s)
OBELISK_CHAOS_ROUNDS="$rounds" cargo test --locked --test cluster \
  acknowledged_records_survive_leader_kills_on_every_replica -- --nocapture
echo "== $rounds rounds passed in $(( $(date +%s) - start )) s"
