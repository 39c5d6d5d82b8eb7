#!/usr/bin/env bash
# A/B bench: two builds of InstaGen in alternating rounds against one mock, so that a
# change is compared on the same minute of a VM whose speed drifts. Each round starts a
# fresh server of A and then of B (own SQLite store), warms it for 2 s and loads it for
# SECONDS with wrk; prints CPU µs per request (the server process's user + system time),
# requests/s and p99. Servers and the mock on core 1, wrk on core 0 (2 cores or more).
# Needs wrk (Debian: apt-get install wrk).
#
# Usage: scripts/ab.sh A_BIN_DIR B_BIN_DIR [ROUNDS=4] [SECONDS=8] [CONNECTIONS=64] [MODE=chat]
# MODE: chat, responses or messages (translated to the chat mock), or stream.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
bench_require "apt-get install wrk" wrk taskset
A=$1 B=$2 ROUNDS=${3:-4} SECS=${4:-8} CONNS=${5:-64} MODE=${6:-chat}
WORK=$(mktemp -d)
MOCK_PORT=$((32000 + RANDOM % 3000))
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
bench_loads "$WORK"
taskset -c 1 "$A/mock-upstream" --listen 127.0.0.1:$MOCK_PORT >/dev/null &

# round NAME BIN_DIR PORT: one fresh server of BIN_DIR under load; prints its line.
round() {
  local name=$1 bin=$2 port=$3 pid t0 t1 n p99
  mkdir -p "$WORK/$name"
  bench_config "$WORK/$name/instagen.toml" "$port" $MOCK_PORT "$WORK/$name"
  BIN=$bin
  KEY=$(bench_key "$WORK/$name/instagen.toml" bench)
  export KEY
  taskset -c 1 "$bin/instagen" --config "$WORK/$name/instagen.toml" serve >"$WORK/$name/log" 2>&1 &
  pid=$!
  bench_wait "$port"
  taskset -c 0 wrk -t1 -c"$CONNS" -d2s -s "$WORK/$MODE.lua" "http://127.0.0.1:$port" >/dev/null
  t0=$(awk '{print $14 + $15}' /proc/$pid/stat)
  taskset -c 0 wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$WORK/$MODE.lua" "http://127.0.0.1:$port" >"$WORK/wrk"
  t1=$(awk '{print $14 + $15}' /proc/$pid/stat)
  n=$(awk '/requests in/{print $1}' "$WORK/wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk")
  kill $pid
  wait $pid 2>/dev/null || true
  rm -rf "${WORK:?}/$name"
  awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$n" -v s="$SECS" -v name="$name" -v p="$p99" \
    'BEGIN { printf "%s  cpu %6.1f µs/request  rps %7.0f  p99 %s\n", name, t / hz * 1e6 / n, n / s, p }'
}
echo "A=$A B=$B, $MODE, c=$CONNS, ${SECS}s a round"
for _ in $(seq "$ROUNDS"); do
  round A "$A" $((MOCK_PORT + 10))
  round B "$B" $((MOCK_PORT + 20))
done
