#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs Portier on the embedded default
# (self-signed certificate, a local registry it starts itself). Extra arguments go to `portier serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-tools.sh docker-registry
source scripts/node-runtime.sh
bash scripts/node-deps.sh
exec node dist/cli.js serve "$@"
