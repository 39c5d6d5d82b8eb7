#!/usr/bin/env bash
# Decode speed of the built-in engine through the whole InstaGen path (key, limits,
# metering): starts `instagen serve` in a scratch directory with the reference model on a
# `local` provider, streams RUNS greedy chat answers of up to TOKENS tokens, and prints
# time to first token and decode tokens/s (tokens after the first over the time after it).
# Usage: scripts/enginebench.sh [RUNS] [TOKENS]; BIN=path/to/instagen (default
# target/release/instagen); WEIGHTS=quantized|f32 (default quantized); the model is looked
# up in ./instagen-data/models/.
set -euo pipefail
runs="${1:-5}"
tokens="${2:-128}"
bin="$(realpath "${BIN:-target/release/instagen}")"
model="$(realpath ./instagen-data/models/SmolLM2-135M-Instruct.Q4_1.gguf)"
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > instagen.toml <<TOML
[server]
listen = "127.0.0.1:$port"
[log]
level = "warn"
[[providers]]
name = "cpu"
kind = "local"
path = "$model"
weights = "${WEIGHTS:-quantized}"
[[models]]
id = "smollm2-135m-instruct"
provider = "cpu"
input_usd_per_mtok = "0"
output_usd_per_mtok = "0"
TOML
"$bin" accounts create bench >/dev/null
key=$("$bin" keys create --account bench --name bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
"$bin" serve & server=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
echo "== built-in engine: $(nproc) cores, ${WEIGHTS:-quantized} weights, $runs runs of up to $tokens tokens, greedy"
python3 - "$port" "$key" "$runs" "$tokens" <<'PY'
import json, sys, time, urllib.request, statistics
port, key, runs, tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
body = {"model": "smollm2-135m-instruct", "stream": True, "temperature": 0, "max_tokens": tokens,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": "Write a long story about a lighthouse keeper."}]}
ttfts, rates = [], []
for i in range(runs):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps(body).encode(), headers={"Authorization": f"Bearer {key}",
        "Content-Type": "application/json"})
    start = time.perf_counter(); first = last = None; usage = None
    with urllib.request.urlopen(req) as resp:
        for line in resp:
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk.get("choices", []):
                if c.get("delta", {}).get("content"):
                    now = time.perf_counter()
                    first = first or now
                    last = now
    n = usage["completion_tokens"]
    ttfts.append((first - start) * 1000)
    rate = (n - 1) / (last - first) if last > first else float("nan")
    rates.append(rate)
    print(f"run {i+1}: prompt {usage['prompt_tokens']} tokens, {n} generated, "
          f"TTFT {ttfts[-1]:.0f} ms, decode {rate:.1f} tokens/s")
print(f"median: TTFT {statistics.median(ttfts):.0f} ms, decode {statistics.median(rates):.1f} tokens/s")
PY
echo "InstaGen's RSS: $(awk '/VmHWM/{print $2" "$3}' /proc/$server/status) peak, $(awk '/VmRSS/{print $2" "$3}' /proc/$server/status) now"
