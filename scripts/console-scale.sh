#!/usr/bin/env bash
# The console's scale scenario: a data directory with TOPICS topics (default 1,000) and one
# partition of RECORDS records (default 10 million), then every request the console's pages make,
# timed, with the size of each answer. Every answer must stay bounded (under 1 MiB): the pages are
# paged and nothing loads a whole partition. The small variant runs in CI as the Rust tests
# tests/http/console.rs (1,000 topics; a 20,000-record partition).
#
#   scripts/console-scale.sh [RECORDS] [TOPICS]      (OBELISK_BIN: the binary; default: release)
set -euo pipefail
cd "$(dirname "$0")/.."
records="${1:-10000000}"
topics="${2:-1000}"
if [[ -z "${OBELISK_BIN:-}" ]]; then
  cargo build --release --bin obelisk
  OBELISK_BIN=target/release/obelisk
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir="$(mktemp -d)"
grpc="127.0.0.1:$(free_port)"
http="127.0.0.1:$(free_port)"
"$OBELISK_BIN" serve --data-dir "$dir/data" --grpc-addr "$grpc" --tcp-addr off --http-addr "$http" \
  --durability interval >"$dir/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 300); do
  curl -sf "http://$http/health/ready" >/dev/null && break
  sleep 0.1
done

echo "== $topics topics"
start=$(date +%s)
for i in $(seq -w 1 "$topics"); do
  curl -sf -o /dev/null "http://$http/topics" -d "{\"name\":\"scale-$i\",\"partitions\":1}"
done
echo "   created in $(( $(date +%s) - start )) s"
echo "== one partition of $records records (obelisk bench over gRPC)"
"$OBELISK_BIN" bench --server "$grpc" --mode produce --topics 1 --partitions 1 --count "$records" \
  --batch-size 1000 --in-flight 4 --keep-topics --quiet | tail -n 3
big="$(curl -sf "http://$http/topics?prefix=bench-&limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["topics"][0]["name"])')"
mid=$(( records / 2 ))
ts="$(curl -sf "http://$http/topics/$big/messages?partition=0&offset=$mid&limit=1" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"][0]["timestamp_ns"])')"

echo "== the console's requests (seconds, bytes)"
fail=0
check() {
  local what="$1" path="$2"
  local out
  out="$(curl -s -o /dev/null -w '%{http_code} %{time_total} %{size_download}' "http://$http$path")"
  read -r code secs size <<<"$out"
  printf '%-34s %s %8ss %9s bytes\n' "$what" "$code" "$secs" "$size"
  if [[ "$code" != 200 || "$size" -gt 1048576 ]]; then fail=1; fi
}
check "overview page: /stats/overview" "/stats/overview"
check "overview page: /health" "/health"
check "overview page: /stats/history" "/stats/history"
check "topics page 1 (50)" "/topics?offset=0&limit=50"
check "topics last page" "/topics?offset=$(( topics - 50 ))&limit=50"
check "topics by prefix" "/topics?prefix=scale-09&limit=50"
check "topic page: describe" "/topics/$big"
check "browser: first page (50)" "/topics/$big/messages?partition=0&offset=0&limit=50&max_bytes=1048576"
check "browser: middle page (500)" "/topics/$big/messages?partition=0&offset=$mid&limit=500&max_bytes=1048576"
check "browser: last page (50)" "/topics/$big/messages?partition=0&offset=$(( records - 50 ))&limit=50&max_bytes=1048576"
check "browser: seek by time" "/topics/$big/offsets?timestamp_ns=$ts"
check "console files: /ui/" "/ui/"
echo "   data dir: $(du -sh "$dir/data" | cut -f1)"
if ((fail)); then echo "FAILED: an answer was not 200 or over 1 MiB" >&2; exit 1; fi
echo "all answers 200 and under 1 MiB"
