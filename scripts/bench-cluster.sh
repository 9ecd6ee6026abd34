#!/usr/bin/env bash
# replication (issue 17): the cluster benchmarks, on real `obelisk serve` processes on loopback
# (every node shares this machine's cores and disk: say so beside the figures).
#
# 1. Replicated produce vs single node, in the same run: `obelisk bench --mode produce` with 4
#    producers, batches of 100 records of 100 B, fsync, against one single node and then
#    against the leader of a 3-node cluster (every partition on all 3 nodes).
# 2. Failover: 20 times, kill -9 of the leader, then `obelisk produce --acks` to a surviving
#    node (which forwards to the leader) until one is acknowledged; the time from the kill to
#    that ack, p50 and p99 (the 20 figures are printed too). The killed node is restarted and
#    caught up before the next kill.
#
# Usage: scripts/bench-cluster.sh [bench duration, default 10s] [kills, default 20]
# BUILD=debug uses the debug binary (no release build).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10s}"
kills="${2:-20}"
if [[ "${BUILD:-release}" == debug ]]; then
  cargo build --quiet
  bin=target/debug/obelisk
else
  cargo build --release --quiet
  bin=target/release/obelisk
fi
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# serve NAME GRPC_PORT [ARGS...]: starts a node in the background; its pid in pid_NAME.
serve() {
  local name=$1 grpc=$2
  shift 2
  mkdir -p "$work/$name"
  OBELISK_LOG_LEVEL=warn "$bin" serve --data-dir "$work/$name/data" \
    --grpc-addr "127.0.0.1:$grpc" --tcp-addr off --http-addr off "$@" \
    >"$work/$name/out.log" 2>&1 &
  eval "pid_$name=$!"
  pids+=("$!")
}

wait_grpc() {
  for _ in $(seq 1 200); do
    "$bin" cluster status --server "http://127.0.0.1:$1" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "node on :$1 did not start" >&2
  return 1
}

leader_port() {
  # The leader's gRPC port, as node $1 sees it (empty while none is known).
  "$bin" cluster status --json --server "http://127.0.0.1:$1" 2>/dev/null | python3 -c '
import json, sys
m = json.load(sys.stdin)
for n in m["nodes"]:
    if n["node_id"] == m.get("leader") and ":" in n.get("grpc_addr", ""):
        print(n["grpc_addr"].rsplit(":", 1)[1])' || true
}

bench() {
  "$bin" bench --server "http://127.0.0.1:$1" --mode produce --producers 4 --batch-size 100 \
    --message-size 100 --transport grpc-unary --duration "$duration" --json --quiet \
    | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["produce"]["records_per_sec"]))'
}

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores shared by every node, $bin, fsync"
single=$(port)
serve single "$single"
wait_grpc "$single"
single_rate=$(bench "$single")
kill -9 "$pid_single"
echo "single node:           $single_rate records/s"

g=() r=()
for i in 1 2 3; do g[i]=$(port); r[i]=$(port); done
peers="1=127.0.0.1:${r[1]},2=127.0.0.1:${r[2]},3=127.0.0.1:${r[3]}"
for i in 1 2 3; do serve "n$i" "${g[i]}" --node-id "$i" --peers "$peers"; done
for i in 1 2 3; do wait_grpc "${g[i]}"; done
lp=""
until [[ -n "$lp" ]]; do lp=$(leader_port "${g[1]}" || true); sleep 0.1; done
cluster_rate=$(bench "$lp")
echo "3-node cluster leader: $cluster_rate records/s ($(( 100 * cluster_rate / single_rate ))% of single node)"

"$bin" topics create failover --partitions 1 --server "http://127.0.0.1:$lp" >/dev/null
times=()
for k in $(seq 1 "$kills"); do
  lp=""
  until [[ -n "$lp" ]]; do lp=$(leader_port "${g[1]}" || true); [[ -n "$lp" ]] || lp=$(leader_port "${g[2]}" || true); sleep 0.05; done
  for i in 1 2 3; do [[ "${g[i]}" == "$lp" ]] && victim=$i; done
  other=$(( victim % 3 + 1 ))
  start=$(date +%s%N)
  eval "kill -9 \$pid_n$victim"
  until "$bin" produce failover --value "kill-$k" --acks --server "http://127.0.0.1:${g[other]}" \
    >/dev/null 2>&1; do :; done
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  times+=("$ms")
  serve "n$victim" "${g[victim]}" --node-id "$victim" --peers "$peers"
  wait_grpc "${g[victim]}"
  sleep 1 # let it catch up before the next kill
done
echo "failover after kill -9 of the leader, ms (${#times[@]} kills): ${times[*]}"
printf '%s\n' "${times[@]}" | sort -n | python3 -c '
import sys
v = [int(x) for x in sys.stdin]
p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print(f"failover p50 {p(0.5)} ms, p99 {p(0.99)} ms, max {v[-1]} ms")'
