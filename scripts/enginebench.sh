#!/usr/bin/env bash
# Decode speed of the built-in engine through the whole InstaGen path (key, limits,
# metering), side by side with llama.cpp's server on the same file: starts `instagen serve`
# in a scratch directory with the reference model on a `local` provider, then (unless
# REFERENCE=none) llama-cpp-python's OpenAI-compatible server, one after the other, and
# streams RUNS greedy chat answers of up to TOKENS tokens from each with the same client
# and prompt. Prints time to first token and decode tokens/s (tokens after the first over
# the time after it), and InstaGen's figures as ratios to llama.cpp's. Then the same
# prompts once more through llama-cpp-python's library in-process (no HTTP server, no
# tokens streamed over a socket): llama.cpp's engine alone, a stricter reference, since
# its server's rate is bimodal on 2 cores (its Python HTTP loop competes with the compute
# threads).
# Usage: scripts/enginebench.sh [RUNS] [TOKENS]; BIN=path/to/instagen (default
# target/release/instagen); WEIGHTS=quantized|f32 (default quantized); THREADS (default
# 2, both engines); the model is looked up in ./instagen-data/models/ (scripts/fetch-model.sh).
# The reference, llama-cpp-python[server] from PyPI, is built once into target/bench-venv
# (a C++ build of llama.cpp: ~10 minutes on 2 cores), portable as our release build is:
# GGML_NATIVE=OFF, which compiles ggml for AVX2/FMA/F16C rather than this machine's CPU.
set -euo pipefail
runs="${1:-5}"
tokens="${2:-128}"
threads="${THREADS:-2}"
bin="$(realpath "${BIN:-target/release/instagen}")"
model="$(realpath ./instagen-data/models/SmolLM2-135M-Instruct.Q4_1.gguf)"
reference="${REFERENCE:-llama.cpp}"
venv="$(realpath -m target/bench-venv)"
llama_version="0.3.36"
if [ "$reference" != none ] && ! "$venv/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
  echo "building the reference: llama-cpp-python[server]==$llama_version into $venv …"
  python3 -m venv "$venv"
  CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$venv/bin/pip" install --quiet "llama-cpp-python[server]==$llama_version"
fi
work=$(mktemp -d)
server=
trap 'if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
cd "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 600); do curl -sf "http://127.0.0.1:$1$2" >/dev/null && return 0; sleep 0.1; done; echo "server on $1 did not start" >&2; exit 1; }

# The prompt every engine gets (run i's system message starts with "(i) "), read by both
# clients below.
export BENCH_SYSTEM="You are a helpful assistant."
export BENCH_USER="Write a long story about a lighthouse keeper."

# The client: the same request to either server; prints one line per run and a last
# "RESULT ttft_ms rate" line.
client() {
  python3 - "$1" "$2" "$runs" "$tokens" <<'PY'
import json, os, sys, time, urllib.request, statistics
port, key, runs, tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
body = {"model": "smollm2-135m-instruct", "stream": True, "temperature": 0, "max_tokens": tokens,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": os.environ["BENCH_SYSTEM"]},
                     {"role": "user", "content": os.environ["BENCH_USER"]}]}
ttfts, rates = [], []
# Run 0 warms up and is not counted. Each run's prompt starts differently, so neither
# server can reuse an earlier prompt's KV cache (llama.cpp's server keeps the last prompt's;
# InstaGen keeps nothing between requests): every TTFT is a whole prefill.
for i in range(runs + 1):
    body["messages"][0]["content"] = f"({i}) {os.environ['BENCH_SYSTEM']}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps(body).encode(), headers={"Authorization": f"Bearer {key}",
        "Content-Type": "application/json"})
    start = time.perf_counter(); first = last = None; usage = None; chunks = 0
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
                    chunks += 1
    # llama.cpp's server sends no usage in streams: one content chunk is one token there.
    n = usage["completion_tokens"] if usage else chunks
    ttft = (first - start) * 1000
    rate = (n - 1) / (last - first) if last > first else float("nan")
    if i == 0:
        continue
    ttfts.append(ttft)
    rates.append(rate)
    print(f"  run {i}: {n} tokens, TTFT {ttft:.0f} ms, decode {rate:.1f} tokens/s")
print(f"RESULT {statistics.median(ttfts):.1f} {statistics.median(rates):.2f}")
PY
}

port=$(free_port)
cat > instagen.toml <<TOML
[server]
listen = "127.0.0.1:$port"
[log]
level = "warn"
[[providers]]
name = "cpu"
kind = "local"
path = "$model"
threads = $threads
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
wait_up "$port" /healthz
echo "== $(nproc) cores, $threads threads, SmolLM2-135M Q4_1, $runs runs of up to $tokens tokens, greedy, streamed"
echo "InstaGen (${WEIGHTS:-quantized} weights):"
ours=$(client "$port" "$key" | tee >(cat >&2) | awk '/^RESULT/{print $2, $3}')
echo "  InstaGen's RSS: $(awk '/VmHWM/{print $2" "$3}' /proc/$server/status) peak, $(awk '/VmRSS/{print $2" "$3}' /proc/$server/status) now"
kill "$server"; wait "$server" 2>/dev/null || true; server=
set -- $ours
echo "InstaGen: TTFT $1 ms, decode $2 tokens/s (medians)"
[ "$reference" = none ] && exit 0

port=$(free_port)
"$venv/bin/python" -m llama_cpp.server --model "$model" --model_alias smollm2-135m-instruct \
  --n_threads "$threads" --n_threads_batch "$threads" --n_ctx 2048 --host 127.0.0.1 --port "$port" \
  >"$work/llama.log" 2>&1 & server=$!
wait_up "$port" /v1/models
echo "llama.cpp (llama-cpp-python $llama_version server):"
theirs=$(client "$port" none | tee >(cat >&2) | awk '/^RESULT/{print $2, $3}')
echo "  llama.cpp's RSS: $(awk '/VmHWM/{print $2" "$3}' /proc/$server/status) peak"
kill "$server"; wait "$server" 2>/dev/null || true; server=
echo "llama.cpp's library in-process (no server):"
library=$("$venv/bin/python" - "$model" "$threads" "$runs" "$tokens" <<'PY' | tee >(cat >&2) | awk '/^RESULT/{print $2, $3}'
import os, statistics, sys, time
from llama_cpp import Llama
model, threads, runs, tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=2048, verbose=False)
ttfts, rates = [], []
for i in range(runs + 1):
    messages = [{"role": "system", "content": f"({i}) {os.environ['BENCH_SYSTEM']}"},
                {"role": "user", "content": os.environ["BENCH_USER"]}]
    start = time.perf_counter(); first = last = None; n = 0
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=tokens, temperature=0, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            now = time.perf_counter(); first = first or now; last = now; n += 1
    if i == 0:
        continue
    ttfts.append((first - start) * 1000)
    rates.append((n - 1) / (last - first))
    print(f"  run {i}: {n} tokens, TTFT {ttfts[-1]:.0f} ms, decode {rates[-1]:.1f} tokens/s")
print(f"RESULT {statistics.median(ttfts):.1f} {statistics.median(rates):.2f}")
PY
)
set -- $ours $theirs $library
echo "llama.cpp: TTFT $3 ms, decode $4 tokens/s (medians); in-process: TTFT $5 ms, decode $6 tokens/s"
python3 -c "import sys; o_t,o_r,t_t,t_r,l_t,l_r=map(float,sys.argv[1:]); print(f'InstaGen / llama.cpp server: TTFT {o_t/t_t:.2f}x (goal <= 1.25x), decode rate {o_r/t_r:.2f}x (goal >= 0.8x)'); print(f'InstaGen / llama.cpp in-process: TTFT {o_t/l_t:.2f}x, decode rate {o_r/l_r:.2f}x')" "$@"
