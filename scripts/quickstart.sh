#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs Portier on the embedded default
# (self-signed certificate, a local registry it starts itself). Extra arguments go to `portier serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-tools.sh docker-registry
source scripts/node-runtime.sh
bash scripts/node-deps.sh
# --max-semi-space-size=1 --liftoff-only --no-concurrent-recompilation: the V8 flags the image runs with too (Dockerfile ENTRYPOINT; BENCHMARKS.md says why).
exec node --max-semi-space-size=1 --liftoff-only --no-concurrent-recompilation dist/cli.js serve "$@"
