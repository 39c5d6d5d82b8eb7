#!/usr/bin/env bash
# Writes link/symbol-order.txt: the functions a release server runs on its requests, then
# the ones it ran only to start, by their linker names. build.rs hands the file to LLD
# (`--symbol-ordering-file`) for release builds, so each set is laid out together: start-up
# touches fewer pages of the binary (an idle server's memory is mostly its text, mapped
# 64 KiB around every page fault) and a request runs on fewer pages and TLB entries.
# A name the linker no longer finds is skipped, so a stale list only loses its effect;
# regenerate it after a dependency or toolchain update (docs/performance.md, "Idle memory").
# Needs valgrind, curl and python3. Traffic stays on 127.0.0.1.
#
# Usage: BIN_DIR=target/release scripts/symbol-order.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
bench_require "apt-get install valgrind curl python3 binutils" valgrind callgrind_control curl python3 nm
bench_bin
WORK=$(mktemp -d)
MOCK_PORT=$((30000 + RANDOM % 5000))
GW_PORT=$((MOCK_PORT + 1))
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

bench_config "$WORK/instagen.toml" $GW_PORT $MOCK_PORT "$WORK"
$BIN/mock-upstream --listen 127.0.0.1:$MOCK_PORT >/dev/null &
KEY=$(bench_key "$WORK/instagen.toml" bench)

valgrind --tool=callgrind --demangle=no --compress-strings=no --callgrind-out-file="$WORK/cg.%p" \
  $BIN/instagen --config "$WORK/instagen.toml" serve >"$WORK/log" 2>&1 &
PID=$!
bench_wait $GW_PORT 600 || { echo "instagen did not start"; cat "$WORK/log"; exit 1; }
sleep 1
callgrind_control -d "$PID" >/dev/null # dump 1: start-up

post() {
  curl -s -o /dev/null "http://127.0.0.1:$GW_PORT$1" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -H 'anthropic-version: 2023-06-01' -d "$2"
}
for _ in $(seq 20); do
  post /v1/chat/completions '{"model":"bench","messages":[{"role":"user","content":"Say hello"}]}'
  post /v1/chat/completions '{"model":"bench","stream":true,"messages":[{"role":"user","content":"Say hello"}]}'
  post /v1/messages '{"model":"bench","max_tokens":64,"messages":[{"role":"user","content":"Say hello"}]}'
  post /v1/messages '{"model":"bench","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Say hello"}]}'
  post /v1/responses '{"model":"bench","input":"Say hello"}'
  post /v1/responses '{"model":"bench","input":"Say hello","stream":true}'
  curl -s -o /dev/null "http://127.0.0.1:$GW_PORT/v1/models" -H "Authorization: Bearer $KEY"
done
sleep 2
callgrind_control -d "$PID" >/dev/null # dump 2: requests (and the usage writer's batches)
kill "$PID"
wait "$PID" 2>/dev/null || true

nm --defined-only "$BIN/instagen" | awk '{print $3}' >"$WORK/defined"
python3 - "$WORK" >link/symbol-order.txt <<'PY'
import glob, re, sys
work = sys.argv[1]
defined = set(open(f"{work}/defined").read().split())

def functions(path):
    """Function names in a callgrind dump, in order of first appearance."""
    seen = {}
    for line in open(path, errors="replace"):
        if line.startswith(("fn=", "cfn=")):
            name = re.sub(r"'\d+$", "", line.split("=", 1)[1].strip())
            if name in defined:
                seen.setdefault(name, None)
    return list(seen)

dumps = sorted(glob.glob(f"{work}/cg.*.[0-9]*"), key=lambda p: int(p.rsplit(".", 1)[1]))
start, requests = functions(dumps[0]), functions(dumps[1])
order = requests + [f for f in start if f not in set(requests)]
print("\n".join(order))
PY
echo "link/symbol-order.txt: $(wc -l <link/symbol-order.txt) functions ($(wc -c <link/symbol-order.txt) bytes)"
