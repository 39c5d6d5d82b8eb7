#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time (not part of every CI run).
# Usage: scripts/fuzz.sh [seconds per target, default 60] [target …]
# Targets: request_body (inspection + rewriting), sse (split-invariance), anthropic
# (request/answer/stream translation), multipart (parse + rebuild), query_params (dates,
# ranges, buckets and paging of the management API). A crash is saved under
# fuzz/artifacts/<target>/; reproduce it with `cargo fuzz run <target> <file>`, fix it,
# and keep the input as a regression test beside the code it broke.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request_body sse anthropic multipart query_params)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz needs nightly-only flags (-Zsanitizer); the stable toolchain accepts them
# with RUSTC_BOOTSTRAP, so no second toolchain is needed.
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  echo "== fuzzing $t for ${secs}s"
  cargo fuzz run "$t" -- -max_total_time="$secs" -print_final_stats=1 2>&1 |
    grep -E "^Done|stat::number_of_executed_units|ERROR|SUMMARY|crash-" || true
  if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
    echo "$t: crashes found in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
echo "fuzz: no crashes"
