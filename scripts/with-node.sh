#!/usr/bin/env bash
# Runs a command with a supported Node.js first on PATH (scripts/node-runtime.sh), for npm scripts such as
# `npm start` that would otherwise run on whatever node started npm. Usage: scripts/with-node.sh COMMAND [ARG...]
set -euo pipefail
source "$(dirname "$0")/node-runtime.sh"
exec "$@"
