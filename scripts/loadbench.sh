#!/usr/bin/env bash
# Load bench: mock-upstream alone, then InstaGen in front of it (auth, metering, journal and
# usage writes all on), non-streaming and streaming, at concurrency 1/64/256.
# Prints RPS, p50/p99 latency, InstaGen CPU µs per request and RSS (idle and peak).
# Needs `wrk` (Debian: apt-get install wrk). Traffic stays on 127.0.0.1.
#
# Usage: scripts/loadbench.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)"; exit 1; }

# BIN_DIR=… runs prebuilt binaries (e.g. an older build, for a before/after comparison).
if [ -n "${BIN_DIR:-}" ]; then
  BIN=$BIN_DIR
else
  cargo build --release -q -p instagen -p mock-upstream
  BIN=${CARGO_TARGET_DIR:-target}/release
fi
WORK=$(mktemp -d)
MOCK_PORT=$((20000 + RANDOM % 5000))
GW_PORT=$((MOCK_PORT + 1))
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

cat > "$WORK/instagen.toml" <<TOML
[server]
listen = "127.0.0.1:$GW_PORT"
data_dir = "$WORK/data"
[store]
url = "sqlite://$WORK/data/instagen.db"
[log]
level = "warn"
[[providers]]
name = "mock"
kind = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
[[models]]
id = "bench"
provider = "mock"
upstream_model = "mock-model"
input_usd_per_mtok = "0.20"
output_usd_per_mtok = "0.30"
TOML

MOCK_THREADS=1 $BIN/mock-upstream --listen 127.0.0.1:$MOCK_PORT >/dev/null &
$BIN/instagen --config "$WORK/instagen.toml" accounts create bench >/dev/null
KEY=$($BIN/instagen --config "$WORK/instagen.toml" keys create --account bench --name load --json | sed 's/.*"secret":"\([^"]*\)".*/\1/')
$BIN/instagen --config "$WORK/instagen.toml" serve &
GW_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW_PORT/healthz" >/dev/null && break; sleep 0.1; done
sleep 1
IDLE_RSS=$(awk '/VmRSS/{print $2}' /proc/$GW_PID/status)

cat > "$WORK/plain.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
wrk.body = '{"model":"bench","messages":[{"role":"user","content":"Say hello in five words"}]}'
LUA
sed 's/"messages"/"stream":true,"messages"/' "$WORK/plain.lua" > "$WORK/stream.lua"

cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
HZ=$(getconf CLK_TCK)

# run TARGET_PORT MODE CONC -> prints "rps p50 p99 requests"
run() {
  local port=$1 mode=$2 conc=$3 threads=2
  [ "$conc" -eq 1 ] && threads=1
  KEY=$KEY wrk -t$threads -c$conc -d${DURATION}s --latency -s "$WORK/$mode.lua" \
    "http://127.0.0.1:$port/v1/chat/completions" > "$WORK/out" 2>&1 || true
  local rps p50 p99 reqs errs
  rps=$(awk '/Requests\/sec/{print $2}' "$WORK/out")
  p50=$(awk '$1=="50%"{print $2}' "$WORK/out")
  p99=$(awk '$1=="99%"{print $2}' "$WORK/out")
  reqs=$(awk '/requests in/{print $1}' "$WORK/out")
  errs=$(awk '/Non-2xx/{print $4}' "$WORK/out")
  echo "$rps $p50 $p99 $reqs ${errs:-0}"
}

printf "\nmachine: %s cores, %s; %ss per run; wrk, mock-upstream and InstaGen share the machine\n" \
  "$(nproc)" "$(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | xargs)" "$DURATION"
printf "InstaGen idle RSS: %s KiB\n\n" "$IDLE_RSS"
printf "%-7s %-5s | %-28s | %-28s | %-12s %-10s\n" mode conc "mock alone: rps p50 p99" "InstaGen: rps p50 p99" "CPU µs/req" "peak RSS"
for mode in plain stream; do
  for conc in 1 64 256; do
    read -r m_rps m_p50 m_p99 _ _ < <(run $MOCK_PORT $mode $conc)
    before=$(cpu_ticks $GW_PID)
    read -r g_rps g_p50 g_p99 g_reqs g_errs < <(run $GW_PORT $mode $conc)
    after=$(cpu_ticks $GW_PID)
    cpu_us=$(awk -v a=$after -v b=$before -v hz=$HZ -v n=$g_reqs 'BEGIN{ if (n>0) printf "%.1f", (a-b)/hz*1e6/n; else print "n/a" }')
    peak=$(awk '/VmHWM/{print $2}' /proc/$GW_PID/status)
    printf "%-7s %-5s | %-9s %-8s %-9s | %-9s %-8s %-9s | %-12s %-10s %s\n" $mode $conc \
      "$m_rps" "$m_p50" "$m_p99" "$g_rps" "$g_p50" "$g_p99" "$cpu_us" "${peak}KiB" \
      "$([ "${g_errs:-0}" != 0 ] && echo "non-2xx: $g_errs")"
  done
done

sleep 1
STORED=$($BIN/instagen --config "$WORK/instagen.toml" usage summary --account bench --json | grep -o '"requests":[0-9]*' | head -1 | cut -d: -f2)
printf "\nusage records stored: %s\n" "$STORED"
