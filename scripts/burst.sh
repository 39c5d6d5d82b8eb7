#!/usr/bin/env bash
# Memory comes back: InstaGen's RSS at idle, then after a burst of large request bodies and
# big key lists, sampled for a minute. Passes when RSS is back within +20 % of idle.
# Usage: scripts/burst.sh [requests, default 64] [body MiB, default 8] [keys, default 1000]
# (BIN_DIR=… runs prebuilt binaries, as loadbench.sh and soak.sh do.)
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-64}
BODY_MIB=${2:-8}
KEYS=${3:-1000}
. scripts/bench-lib.sh
bench_bin
WORK=$(mktemp -d)
MOCK_PORT=$((30000 + RANDOM % 5000))
GW_PORT=$((MOCK_PORT + 1))
ADMIN="burst-admin-token-burst-admin-token-0123456789"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
bench_config "$WORK/instagen.toml" $GW_PORT $MOCK_PORT "$WORK" "$ADMIN"
$BIN/mock-upstream --listen 127.0.0.1:$MOCK_PORT >/dev/null &
KEY=$(bench_key "$WORK/instagen.toml" burst)
$BIN/instagen --config "$WORK/instagen.toml" serve 2>"$WORK/serve.log" &
GW=$!
bench_wait $GW_PORT
rss() { awk '/VmRSS/ {print $2}' /proc/$GW/status; }
parts() { awk '/RssAnon/ {a=$2} /RssFile/ {f=$2} END {printf "anonymous %d KiB, file %d KiB", a, f}' /proc/$GW/status; }
sleep 5
IDLE=$(rss)
echo "idle RSS: $IDLE KiB ($(parts))"
python3 - "$GW_PORT" "$KEY" "$ADMIN" "$REQUESTS" "$BODY_MIB" "$KEYS" <<'PY'
import concurrent.futures, http.client, json, os, sys
port, key, admin, n, mib, keys = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "x" * (mib << 20)}]}).encode()
def call(method, path, auth, payload=None):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=120)
    c.request(method, path, body=payload, headers={"Authorization": f"Bearer {auth}", "Content-Type": "application/json"})
    r = c.getresponse(); data = r.read(); c.close()
    return r.status, data
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    codes = list(pool.map(lambda _: call("POST", "/v1/chat/completions", key, body)[0], range(n)))
print(f"{n} bodies of {mib} MiB: statuses {sorted(set(codes))}")
status, data = call("GET", "/api/v1/accounts", admin)
account = json.loads(data)["data"][0]["id"]
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    list(pool.map(lambda i: call("POST", f"/api/v1/accounts/{account}/keys", admin, json.dumps({"name": f"k{i}", "description": "d" * 500}).encode()), range(keys)))
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    sizes = list(pool.map(lambda _: len(call("GET", f"/api/v1/accounts/{account}/keys?limit={os.environ.get('LIST_LIMIT', '100')}", admin)[1]), range(int(os.environ.get("LISTS", "40")))))
print(f"{keys} keys created, listed {len(sizes)} times ({max(sizes, default=0) >> 10} KiB a page)")
PY
PEAK=$(awk '/VmHWM/ {print $2}' /proc/$GW/status)
echo "peak RSS: $PEAK KiB"
for t in 5 10 20 30 45 60; do
  sleep $(( t - ${prev:-0} )); prev=$t
  echo "after ${t}s: $(rss) KiB ($(parts))"
done
END=$(rss)
awk -v i="$IDLE" -v e="$END" 'BEGIN { g = (e - i) * 100.0 / i; printf "RSS idle %d KiB, a minute after the burst %d KiB (%+.1f%%): %s\n", i, e, g, (g <= 20.0) ? "PASS" : "FAIL" }'
