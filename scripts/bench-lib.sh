# Shared by the bench scripts (loadbench, instrbench, soak, burst); sourced, not run:
# the binaries, InstaGen's config in front of mock-upstream, an account's key, readiness.

# bench_require HINT TOOL...: exits unless every TOOL is on PATH, saying how to get it.
bench_require() {
  local hint=$1 tool
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$tool is required ($hint)"; exit 1; }
  done
}

# Sets BIN: BIN_DIR=… runs prebuilt binaries (e.g. an older build, for a before/after
# comparison); otherwise a release build of both.
bench_bin() {
  if [ -n "${BIN_DIR:-}" ]; then
    BIN=$BIN_DIR
  else
    cargo build --release -q -p instagen -p mock-upstream
    BIN=${CARGO_TARGET_DIR:-target}/release
  fi
}

# bench_config FILE GW_PORT MOCK_PORT WORK [ADMIN_TOKEN]: SQLite in WORK/data, one model
# `bench` on the mock, warnings only in the log.
bench_config() {
  local admin=""
  [ -n "${5:-}" ] && admin=$'[accounts]\nadmin_token = "'"$5"'"'
  cat > "$1" <<TOML
[server]
listen = "127.0.0.1:$2"
data_dir = "$4/data"
[store]
url = "sqlite://$4/data/instagen.db"
[log]
level = "warn"
$admin
[[providers]]
name = "mock"
kind = "openai"
base_url = "http://127.0.0.1:$3/v1"
[[models]]
id = "bench"
provider = "mock"
upstream_model = "mock-model"
input_usd_per_mtok = "0.20"
output_usd_per_mtok = "0.30"
TOML
}

# bench_native CONFIG DIR MOCK_PORT: Messages and Responses passed through natively, on the
# same mock: an Anthropic provider (model `bench-anthropic`) and an OpenAI one serving
# `/v1/responses` itself (`bench-responses`), and their loads in DIR, `messages-native` and
# `responses-native`.
bench_native() {
  cat >> "$1" <<TOML
[[providers]]
name = "mock-anthropic"
kind = "anthropic"
base_url = "http://127.0.0.1:$3/v1"
[[providers]]
name = "mock-responses"
kind = "openai"
responses = "native"
base_url = "http://127.0.0.1:$3/v1"
[[models]]
id = "bench-anthropic"
provider = "mock-anthropic"
upstream_model = "mock-model"
input_usd_per_mtok = "0.20"
output_usd_per_mtok = "0.30"
[[models]]
id = "bench-responses"
provider = "mock-responses"
upstream_model = "mock-model"
input_usd_per_mtok = "0.20"
output_usd_per_mtok = "0.30"
TOML
  local prompt="Say hello in five words"
  bench_lua "$2" messages-native /v1/messages \
    '{"model":"bench-anthropic","max_tokens":64,"messages":[{"role":"user","content":"'"$prompt"'"}]}'
  bench_lua "$2" responses-native /v1/responses '{"model":"bench-responses","input":"'"$prompt"'"}'
}

# bench_key CONFIG ACCOUNT: creates the account and prints a new key's secret.
bench_key() {
  $BIN/instagen --config "$1" accounts create "$2" >/dev/null
  $BIN/instagen --config "$1" keys create --account "$2" --name "$2" --json |
    python3 -c 'import sys, json; print(json.load(sys.stdin)["secret"])'
}

# bench_wait PORT [TRIES]: until /healthz answers at all (every 0.1 s): the floor passes
# it on to the mock, which has no such route.
bench_wait() {
  for _ in $(seq "${2:-100}"); do
    curl -s -o /dev/null "http://127.0.0.1:$1/healthz" && return 0
    sleep 0.1
  done
  return 1
}

# bench_loads DIR [CHAT_NAME=chat]: the benches' wrk scripts, one a load, in DIR: chat
# (as CHAT_NAME), responses and messages (one short prompt each) and stream (streamed chat).
bench_loads() {
  local prompt="Say hello in five words"
  bench_lua "$1" "${2:-chat}" /v1/chat/completions \
    '{"model":"bench","messages":[{"role":"user","content":"'"$prompt"'"}]}'
  bench_lua "$1" responses /v1/responses '{"model":"bench","input":"'"$prompt"'"}'
  bench_lua "$1" messages /v1/messages \
    '{"model":"bench","max_tokens":64,"messages":[{"role":"user","content":"'"$prompt"'"}]}'
  bench_lua "$1" stream /v1/chat/completions \
    '{"model":"bench","stream":true,"messages":[{"role":"user","content":"'"$prompt"'"}]}'
}

# bench_lua DIR NAME PATH BODY: a wrk script POSTing BODY to PATH with $KEY.
bench_lua() {
  cat > "$1/$2.lua" <<LUA
wrk.method = "POST"
wrk.path = "$3"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.body = '$4'
LUA
}
