#!/usr/bin/env bash
# The one run command: fetches the built-in model when it is missing, then builds and
# starts InstaGen from the current directory (its data lands in ./instagen-data).
# Extra arguments go to `instagen`, e.g. `scripts/run.sh --config instagen.toml`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/fetch-model.sh" || echo "warning: could not fetch the built-in model; starting without it" >&2
exec cargo run --release --manifest-path "$here/../Cargo.toml" -- "$@" serve
