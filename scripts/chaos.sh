#!/usr/bin/env bash
# replication (issue 17): the long runs of the cluster checker. Three `obelisk serve` processes on
# loopback.
# 1. tests/cluster: each round produces through the leader, kills the leader with SIGKILL,
#    produces on the new leader and restarts the dead node.
# 2. tests/cluster_ops: every node-to-node link through our fault-injecting proxy; each round
#    delays (up to 20 ms per chunk) and drops (0.5% of chunks reset their connection) on every
#    link, cuts one node off (the leader every other round) and heals, then kills the leader.
# At the end every acknowledged record must be on every replica exactly once, at its
# acknowledged offset, with no replica diverging. CI runs the same tests with 2 rounds.
# Usage: scripts/chaos.sh [rounds, default 50]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-50}"
echo "== tests/cluster (leader kills) with OBELISK_CHAOS_ROUNDS=$rounds"
start=$(date +%s)
OBELISK_CHAOS_ROUNDS="$rounds" cargo test --locked --test cluster \
  acknowledged_records_survive_leader_kills_on_every_replica -- --nocapture
echo "== $rounds rounds passed in $(( $(date +%s) - start )) s"
echo "== tests/cluster_ops (proxy faults + leader kills) with OBELISK_CHAOS_ROUNDS=$rounds"
start=$(date +%s)
OBELISK_CHAOS_ROUNDS="$rounds" cargo test --locked --test cluster_ops \
  acknowledged_records_survive_delays_drops_cut_off_nodes_and_leader_kills -- --nocapture
echo "== $rounds rounds passed in $(( $(date +%s) - start )) s"
