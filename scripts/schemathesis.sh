#!/usr/bin/env bash
# Fuzzes the management API against its own OpenAPI document with schemathesis
# (PyPI) for a bounded number of cases per operation, as an operator, and fails on any
# 5xx and on any answer the document does not describe: its status code, its body's
# schema or its content type. Usage: scripts/schemathesis.sh [path to instagen binary] [examples per operation]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/instagen}
EXAMPLES=${2:-25}
command -v schemathesis >/dev/null || { echo "schemathesis is required (pip install schemathesis)"; exit 1; }
[ -x "$BIN" ] || cargo build -q --bin instagen

WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADMIN="schemathesis-admin-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat > "$WORK/instagen.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
data_dir = "$WORK/data"
[store]
url = "sqlite://$WORK/data/instagen.db"
[accounts]
open_signup = true
admin_token = "$ADMIN"
[log]
level = "warn"
TOML
"$BIN" --config "$WORK/instagen.toml" serve > "$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
# Give the walk something real to find: an account with a key.
curl -sf -X POST "http://127.0.0.1:$PORT/api/v1/accounts" -H "Authorization: Bearer $ADMIN" \
  -H 'content-type: application/json' -d '{"name":"fuzz"}' >/dev/null

schemathesis run "http://127.0.0.1:$PORT/api/openapi.json" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples "$EXAMPLES" \
  --seed 1 \
  -H "Authorization: Bearer $ADMIN"
if grep -q "panicked" "$WORK/server.log"; then
  echo "the server panicked during fuzzing:"; grep -A3 panicked "$WORK/server.log"; exit 1
fi
