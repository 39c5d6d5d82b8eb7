#!/usr/bin/env bash
# Soak: steady load for a while (default 600 s) against InstaGen in front of mock-upstream,
# sampling InstaGen's RSS, open file descriptors and alive async tasks every 30 s.
# Passes when RSS ends within +5 % of its value after warm-up and fds/tasks do not grow.
# Usage: scripts/soak.sh [seconds, default 600] [connections, default 32]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-600}
CONNS=${2:-32}
. scripts/bench-lib.sh
bench_require "apt-get install wrk" wrk
bench_bin
WORK=$(mktemp -d)
MOCK_PORT=$((25000 + RANDOM % 5000))
GW_PORT=$((MOCK_PORT + 1))
ADMIN="soak-admin-token-soak-admin-token-0123456789"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
bench_config "$WORK/instagen.toml" $GW_PORT $MOCK_PORT "$WORK" "$ADMIN"
$BIN/mock-upstream --listen 127.0.0.1:$MOCK_PORT --chunk-delay-ms 2 >/dev/null &
KEY=$(bench_key "$WORK/instagen.toml" soak)
$BIN/instagen --config "$WORK/instagen.toml" serve 2>"$WORK/serve.log" &
GW=$!
bench_wait $GW_PORT
# Half plain, half streaming requests.
cat > "$WORK/mix.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local stream = (n % 2 == 0) and "true" or "false"
  return wrk.format("POST", "/v1/chat/completions", nil,
    '{"model":"bench","stream":' .. stream .. ',"messages":[{"role":"user","content":"soak test"}]}')
end
LUA
wrk -t2 -c"$CONNS" -d"${DURATION}s" -s "$WORK/mix.lua" -H "Authorization: Bearer $KEY" \
  -H "Content-Type: application/json" "http://127.0.0.1:$GW_PORT" > "$WORK/wrk.txt" &
WRK=$!
sample() {
  local rss anon file fds tasks
  rss=$(awk '/VmRSS/ {print $2}' /proc/$GW/status)
  anon=$(awk '/RssAnon/ {print $2}' /proc/$GW/status)
  file=$(awk '/RssFile/ {f=$2} /RssShmem/ {s=$2} END {print f + s}' /proc/$GW/status)
  fds=$(ls /proc/$GW/fd | wc -l)
  tasks=$(curl -sf -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$GW_PORT/metrics" | awk '/^instagen_tasks_alive/ {print $2}')
  echo "$1 $rss $fds $tasks $anon $file"
}
echo "t_s rss_kib fds tasks anon_kib file_and_shm_kib"
START=$(date +%s)
: > "$WORK/samples"
while kill -0 $WRK 2>/dev/null; do
  sleep 30
  kill -0 $WRK 2>/dev/null || break
  sample $(( $(date +%s) - START )) | tee -a "$WORK/samples"
done
cat "$WORK/wrk.txt" | grep -E "Requests/sec|Latency|requests in"
# Baseline after warm-up: the second sample (60 s), when buffers and pools are sized.
# Also reported: the second half alone (from the sample nearest half-time), which shows
# whether growth has stopped once the store's page caches are full.
awk -v half=$((DURATION / 2)) 'NR==2 {b=$2; fb=$3; tb=$4; ab=$5} !m && $1 >= half {m=$2} {l=$2; fl=$3; tl=$4; al=$5} END {
  if (!b) { print "soak: too short to judge (two samples, 60 s or more, are needed)"; exit 1 }
  growth = (l - b) * 100.0 / b;
  printf "RSS after warm-up %d KiB, at end %d KiB (%+.1f%%); anonymous %d -> %d KiB; fds %d -> %d; tasks %d -> %d\n", b, l, growth, ab, al, fb, fl, tb, tl;
  if (m) printf "second half: RSS %d -> %d KiB (%+.1f%%)\n", m, l, (l - m) * 100.0 / m;
  ok = (growth <= 5.0) ? "PASS" : "FAIL";
  print "soak: " ok
}' "$WORK/samples"
