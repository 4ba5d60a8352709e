#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine, then runs every test: the
# TypeScript suites (vitest, which start RabbitMQ themselves) and the Python SDK's (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
# Not `npm ci`: it refuses a lock file that lacks buf's binaries for other platforms, which the
# registry these machines reach does not serve; `npm install` takes the lock file as it is.
npm install --no-audit --no-fund --loglevel=error
# Debian's python, not a pyenv one first on PATH: only it has python3-grpcio. pytest's exit 5
# (no tests collected) fails the run, as it should.
/usr/bin/python3 -m pytest sdk/python -q -p no:cacheprovider
npm test
