#!/usr/bin/env bash
# Installs npm dependencies when node_modules is missing or older than the lock file, then builds dist/.
# Callers that go on using node (quickstart, test) source scripts/node-runtime.sh themselves too.
set -euo pipefail
cd "$(dirname "$0")/.."
# Node.js 24 first on PATH (fetched into .tools/ when the machine's node is older), so npm ci and the build run on it.
source scripts/node-runtime.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# One build command for everything: the server (tsc) and the web UI bundle (vite, into dist/ui/static).
npm run build --silent
chmod +x dist/cli.js
