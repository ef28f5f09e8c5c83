#!/usr/bin/env bash
# Installs npm dependencies when node_modules is missing or older than the lock file, then builds dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "portier: Node.js 20 or newer is required (found $(node --version))" >&2
  exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# One build command for everything: the server (tsc) and the web UI bundle (vite, into dist/ui/static).
npm run build --silent
chmod +x dist/cli.js
