#!/usr/bin/env bash
# The test command: installs what the tests need (Python SDKs and schemathesis in a
# project-local .venv, the npm packages under tests/, Chromium for the console, the coding
# agents, the reference model), starts PostgreSQL and Redis when they are stopped, runs the
# whole suite (then the API suite again on PostgreSQL, then schemathesis), and ends with one
# line: `tests: N passed, N failed, N skipped`, every skip listed with its reason.
# `.ci/run` calls it after the style gates. Installing needs network and (for Chromium) root;
# what cannot be installed is reported, and the tests that need it are skipped — never
# counted as passed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Local services (used by the PostgreSQL/Redis suites as they land); start them if stopped.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || echo "warning: could not start PostgreSQL"
fi
if command -v redis-server >/dev/null && ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || echo "warning: could not start Redis"
fi

# The official OpenAI and Anthropic Python SDKs drive the server in tests/api/python_sdk.rs
# and tests/api/agent_sdks.rs (the Responses helpers need openai 2);
# schemathesis fuzzes the management API against its OpenAPI document.
# They go into a project-local virtualenv (.venv), put first on PATH for the tests.
if [ ! -x .venv/bin/python3 ] && ! python3 -m venv .venv >/dev/null 2>&1; then
  echo "warning: python3 -m venv is unavailable; using the machine's Python"
  rm -rf .venv
fi
[ -x .venv/bin/python3 ] && export PATH="$PWD/.venv/bin:$PATH"
if ! python3 -c "import sys, openai, anthropic; sys.exit(int(openai.__version__.split('.')[0]) < 2)" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --upgrade "openai>=2" "anthropic>=0.70" ||
    echo "warning: could not install the Python SDKs; their tests will fail under CI and be skipped elsewhere"
fi
# The official openai npm package drives the server in tests/api/node_sdk.rs.
if command -v npm >/dev/null && [ ! -f tests/sdk/node/node_modules/openai/package.json ]; then
  npm ci --prefix tests/sdk/node --no-audit --no-fund --loglevel=error
fi
# axe-core audits the console's accessibility in tests/api/console.rs.
if command -v npm >/dev/null && [ ! -f tests/console/node_modules/axe-core/axe.min.js ]; then
  npm ci --prefix tests/console --no-audit --no-fund --loglevel=error ||
    echo "warning: could not install axe-core; the console tests will fail under CI"
fi
# The real coding agents (Codex CLI, Claude Code) drive the server in
# tests/api/coding_agents.rs; ~800 MiB of native binaries, so bounded in time.
if command -v npm >/dev/null && [ ! -f tests/agents/node_modules/@openai/codex/package.json ]; then
  timeout 900 npm ci --prefix tests/agents --no-audit --no-fund --loglevel=error ||
    echo "warning: could not install the coding agents; tests/api/coding_agents.rs will be skipped"
fi
# Headless Chromium and its WebDriver drive the console in tests/api/console.rs.
if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null; then
    (apt-get update -qq || true) >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null ||
      echo "warning: could not install chromium; the console browser test will be skipped"
  fi
fi
# The built-in engine's tests load the real reference model (tests/api/local_engine.rs).
bash scripts/fetch-model.sh || echo "warning: could not fetch the reference model; the local engine tests will be skipped"
if ! command -v schemathesis >/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check "schemathesis==4.32.5" ||
    echo "warning: could not install schemathesis"
fi

echo "== tests"
log=$(mktemp)
# Tests that need a service which is not there record themselves here (tests/api/services.rs).
skipped_file=target/tmp/skipped.txt
rm -f "$skipped_file"
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The API suite once more with the store on PostgreSQL (a fresh database per test), into
# the same log so the summary below counts it.
if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 2>/dev/null; then
  echo "== API tests on PostgreSQL (INSTAGEN_TEST_POSTGRES)"
  INSTAGEN_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432 cargo test --locked --test api 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  # The last tests' databases outlive them: drop those whose test process has exited
  # (named instagen_test_<pid>_<random>; tests/api/helpers.rs sweeps the same way).
  psql -h 127.0.0.1 -U postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'instagen\_test\_%'" 2>/dev/null |
    while read -r db; do
      pid=${db#instagen_test_}; pid=${pid%%_*}
      [ -d "/proc/$pid" ] || psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1
    done
else
  why="pg_isready is not installed"
  command -v pg_isready >/dev/null && why="pg_isready -h 127.0.0.1 found no server accepting connections"
  echo "== API tests on PostgreSQL: skipped ($why)"
fi
echo "== schemathesis against /api/openapi.json (bounded; a 5xx, or a status, body or content type the document does not give, fails)"
bash scripts/schemathesis.sh target/debug/instagen 25
fuzz=$?
set -e
if [ "$fuzz" -ne 0 ]; then echo "schemathesis: FAILED"; status=1; else echo "schemathesis: passed"; fi
# One closing line for the whole run (cargo prints one per test binary). A test that
# skipped itself for a missing service returned early, so cargo counted it as passed:
# count it as skipped instead, and say why.
runtime_skips=0
if grep -qE '^test .* \.\.\. ignored' "$log"; then
  echo "== skipped (#[ignore]d: run with --ignored; each says why in its code):"
  grep -E '^test .* \.\.\. ignored' "$log" | sed -E 's/^test (.*) \.\.\. ignored.*/  \1/'
fi
if [ -f "$skipped_file" ]; then
  runtime_skips=$(wc -l < "$skipped_file")
  echo "== skipped for missing services:"
  sed 's/^/  /' "$skipped_file"
fi
awk -v rs="$runtime_skips" '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1); if ($i ~ /^ignored/) s += $(i-1) } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p - rs, f, s + rs }' "$log"
exit "$status"
