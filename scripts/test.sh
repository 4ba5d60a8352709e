#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine, then runs every test: the
# TypeScript suites (vitest, which start RabbitMQ themselves) and the Python SDK's (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
# `npm ci`: exactly what package-lock.json says, so every machine tests what was tested here. The
# lock is the one `npm install` writes on these machines (with buf's binaries for every platform).
npm ci --no-audit --no-fund --loglevel=error
# Debian's python, not a pyenv one first on PATH: only it has python3-grpcio. pytest's exit 5
# (no tests collected) fails the run, as it should.
/usr/bin/python3 -m pytest sdk/python -q -p no:cacheprovider
npm test
