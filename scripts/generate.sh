#!/usr/bin/env bash
# Regenerates the TypeScript protocol code from proto/ (never edit src/protocol/gen by hand).
# With --check, generates into a scratch folder and fails if the committed code differs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"

if [ "${1:-}" = "--check" ]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  buf generate --template "{\"version\":\"v2\",\"plugins\":[{\"local\":\"protoc-gen-es\",\"out\":\"$scratch\",\"opt\":[\"target=ts\",\"import_extension=ts\"]}]}"
  if ! diff -r "$scratch" src/protocol/gen >/dev/null; then
    echo "src/protocol/gen is stale: run scripts/generate.sh and commit the result" >&2
    diff -r "$scratch" src/protocol/gen >&2 || true
    exit 1
  fi
  exit 0
fi

rm -rf src/protocol/gen
buf generate
