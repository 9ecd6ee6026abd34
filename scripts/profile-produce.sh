#!/usr/bin/env bash
# Server-side cost of one unary Produce of one 100-byte record (`interval` durability), against
# the legacy listener's frame: runs `obelisk serve` under callgrind (instructions) or perf stat
# (context switches = thread wake-ups), or plain while summing its threads' voluntary context
# switches from /proc (`wakeups`: a thread blocking, not counting preemptions), drives it with `obelisk bench --server` from a second
# process, and reports the cost per request as the difference between two runs of N1 and N2
# requests, so start-up and shut-down cancel out.
#
#   scripts/profile-produce.sh [BIN] [grpc-unary|legacy] [callgrind|perf|wakeups] [N1] [N2]
#
# BIN defaults to target/release/obelisk (build it with `cargo build --release`). BATCH=100 sends
# that many records per request (legacy: frames written at once), DURABILITY=fsync the other mode;
# the figure is then per record. SERVE_FLAGS adds flags to `obelisk serve` (e.g.
# SERVE_FLAGS="--fsync-writer task" for the blocking-pool writer).
set -euo pipefail
BIN=${1:-target/release/obelisk}
TRANSPORT=${2:-grpc-unary}
TOOL=${3:-callgrind}
N1=${4:-1000}
N2=${5:-3000}
BATCH=${BATCH:-1}
DURABILITY=${DURABILITY:-interval}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/obelisk-profile.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One run of $1 requests; prints the run's total (instructions or context switches).
measure() {
  local n=$1 grpc tcp pid out
  grpc=$(port)
  tcp=$(port)
  rm -rf "$WORK/data"
  out="$WORK/out.$n"
  local serve=("$BIN" serve --data-dir "$WORK/data" --grpc-addr "127.0.0.1:$grpc"
    --tcp-addr "127.0.0.1:$tcp" --http-addr off --durability "$DURABILITY" ${SERVE_FLAGS:-})
  case $TOOL in
    callgrind) valgrind --tool=callgrind --callgrind-out-file="$out" "${serve[@]}" \
      >"$WORK/serve.log" 2>&1 & ;;
    perf) perf stat -x, -e context-switches,task-clock -o "$out" "${serve[@]}" \
      >"$WORK/serve.log" 2>&1 & ;;
    wakeups) "${serve[@]}" >"$WORK/serve.log" 2>&1 & ;;
    *) echo "unknown tool $TOOL" >&2; exit 2 ;;
  esac
  pid=$!
  # Up once recovery is over and the real listeners serve (the port answers earlier).
  for _ in $(seq 1200); do
    if grep -q "gRPC listening" "$WORK/serve.log" 2>/dev/null; then break; fi
    sleep 0.1
  done
  sleep 1
  "$BIN" bench --server "http://127.0.0.1:$grpc" --legacy-addr "127.0.0.1:$tcp" --mode produce \
    --transport "$TRANSPORT" --batch-size "$BATCH" --in-flight 1 --message-size 100 --producers 1 \
    --topics 1 --partitions 4 --count "$n" --quiet >"$WORK/bench.$n.log" 2>&1 \
    || { cat "$WORK/bench.$n.log" "$WORK/serve.log" >&2; exit 1; }
  if [ "$TOOL" = wakeups ]; then
    cat /proc/"$pid"/task/*/status | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}' >"$out"
  fi
  # The server itself (perf's child; valgrind runs in the server's own process) shuts down
  # cleanly on SIGINT.
  kill -INT "$(pgrep -P "$pid" -f "serve --data-dir" || echo "$pid")"
  wait "$pid" || true
  case $TOOL in
    callgrind) awk '/^summary:/ {print $2}' "$out" ;;
    perf) awk -F, '$3 == "context-switches" {print $1}' "$out" ;;
    wakeups) cat "$out" ;;
  esac
}

a=$(measure "$N1")
b=$(measure "$N2")
echo "$TRANSPORT $TOOL (batch $BATCH, $DURABILITY): $N1 records $a, $N2 records $b, per record $(( (b - a) / (N2 - N1) ))"
