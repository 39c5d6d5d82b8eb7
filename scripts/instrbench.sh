#!/usr/bin/env bash
# Instruction bench: InstaGen and the floor (`mock-upstream --proxy-to`) each run under
# callgrind while wrk sends plain chat (or streamed chat, mode `stream`), then (InstaGen
# only) Messages and Responses translated to the chat mock. Prints instructions per request
# for each thread group, so a change to the request path is measured in counts that do not
# depend on the VM's speed (callgrind repeats to ~1 %). Threads that ran SQLite (the
# store's writer) are shown apart: at this load its batches are small, so its share per
# request is far above a loaded server's. valgrind hides the CPU's SHA extensions, so the
# access key's HMAC is counted in sha2's portable code (~10 k instructions a request) where a
# native run on a CPU with SHA-NI spends a few hundred cycles: read InstaGen's figure with that.
# Needs valgrind and wrk (Debian: apt-get install valgrind wrk). Traffic stays on 127.0.0.1.
#
# Usage: BIN_DIR=target/release scripts/instrbench.sh [seconds per mode, default 15]
# MODES (default "chat messages responses"; "stream" is streamed chat; "messages-native"
# and "responses-native" pass the two through to upstreams serving them) picks InstaGen's
# loads, FLOOR_MODES (default "chat") the floor's.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15}
. scripts/bench-lib.sh
bench_require "apt-get install valgrind wrk" wrk valgrind callgrind_control callgrind_annotate
bench_bin
WORK=$(mktemp -d)
MOCK_PORT=$((25000 + RANDOM % 5000))
FLOOR_PORT=$((MOCK_PORT + 1))
GW_PORT=$((MOCK_PORT + 2))
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

bench_config "$WORK/instagen.toml" $GW_PORT $MOCK_PORT "$WORK"
# The token counter's tables load at start: otherwise the first stream wrk cuts loads them
# (~200 M instructions, seconds under valgrind), and a cut at the end of a measured window
# puts that load inside the count.
printf '[usage]\nwarm_tokenizer = true\n' >> "$WORK/instagen.toml"

bench_loads "$WORK"

bench_native "$WORK/instagen.toml" "$WORK" $MOCK_PORT

MOCK_THREADS=1 $BIN/mock-upstream --listen 127.0.0.1:$MOCK_PORT >/dev/null &
KEY=$(bench_key "$WORK/instagen.toml" bench)
export KEY

# start NAME PORT CMD... (sets PID): the server under callgrind, one output file a thread, counting
# only once zeroed (callgrind_control -z) after a warm-up.
start() {
  local name=$1 port=$2
  shift 2
  valgrind --tool=callgrind --separate-threads=yes --compress-strings=no --callgrind-out-file="$WORK/$name.%p" "$@" \
    >"$WORK/$name.log" 2>&1 &
  PID=$!
  bench_wait "$port" 600 && return 0
  echo "$name did not start"; cat "$WORK/$name.log"; exit 1
}

# settle PID: waits until the server is idle. The streams wrk cuts at the warm-up's end are
# billed from a count of their text, and the first count loads the token counter's tables:
# ~200 M instructions, seconds under valgrind, that must not fall in the measured window.
settle() {
  local pid=$1 before after
  for _ in $(seq 60); do
    before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    sleep 1
    after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    [ $((after - before)) -le 5 ] && return 0
  done
}

# measure NAME PORT PID MODE : "instructions per request" per thread group.
measure() {
  local name=$1 port=$2 pid=$3 mode=$4
  wrk -t1 -c4 -d3s -s "$WORK/$mode.lua" "http://127.0.0.1:$port" >/dev/null 2>&1 || true
  settle "$pid"
  callgrind_control -z "$pid" >/dev/null 2>&1
  wrk -t1 -c4 -d${DURATION}s -s "$WORK/$mode.lua" "http://127.0.0.1:$port" >"$WORK/wrk.out" 2>&1 || true
  sleep 1
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  local reqs writer=0 rest=0 ir file
  reqs=$(awk '/requests in/{print $1}' "$WORK/wrk.out")
  for file in "$WORK/$name.$pid"*; do
    ir=$(awk '/^summary:/{print $2}' "$file")
    [ -z "$ir" ] && continue
    # Threads that ran SQLite are the store's (its writer, on the blocking pool).
    if grep -q '^fn=.*sqlite3VdbeExec' "$file"; then
      writer=$((writer + ir))
    else
      rest=$((rest + ir))
    fi
  done
  # Each mode's dumps kept apart (KEEP=1 leaves them for callgrind_annotate).
  mkdir -p "$WORK/dumps/$name-$mode"
  mv "$WORK/$name.$pid"* "$WORK/dumps/$name-$mode/"
  awk -v n="$reqs" -v w="$writer" -v r="$rest" -v name="$name" -v mode="$mode" 'BEGIN{
    printf "%-8s %-10s %7d requests  %8.1f k instructions a request (+ store threads %.1f k)\n",
      name, mode, n, r / n / 1000, w / n / 1000 }'
}

start floor $FLOOR_PORT $BIN/mock-upstream --listen 127.0.0.1:$FLOOR_PORT --proxy-to 127.0.0.1:$MOCK_PORT
for mode in ${FLOOR_MODES:-chat}; do
  measure floor $FLOOR_PORT $PID $mode
done
kill $PID

start instagen $GW_PORT $BIN/instagen --config "$WORK/instagen.toml" serve
for mode in ${MODES:-chat messages responses}; do
  measure instagen $GW_PORT $PID $mode
done
