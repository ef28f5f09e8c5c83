# Sourced (not run) by the project's scripts: makes `node` on PATH a supported Node.js (24 or newer).
# When the machine's own node is older (Debian's is 20, end-of-life since 2026-04-30), it installs the
# npm registry package node-linux-<arch> at the pinned version below into .tools/node24 (gitignored)
# once, and puts its bin/ first on PATH. Everything started afterwards — npm itself (its shebang is
# `/usr/bin/env node`), npm ci, the build, tap and each `node dist/cli.js` the tests spawn — runs on it.
# The Dockerfile's base image (node:24-bookworm-slim) is the same major version.

PORTIER_NODE_MIN_MAJOR=24
# Pinned exactly, so every machine and CI run tests on the same runtime; raise it together with the Dockerfile.
PORTIER_NODE_VERSION=24.22.3

portier_node_runtime() {
  local root major arch dir bin
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  major=0
  if command -v node >/dev/null 2>&1; then
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  fi
  [ "$major" -ge "$PORTIER_NODE_MIN_MAJOR" ] && return 0

  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) arch=x64 ;;
    Linux-aarch64 | Linux-arm64) arch=arm64 ;;
    *)
      echo "portier: Node.js ${PORTIER_NODE_MIN_MAJOR} or newer is required (found ${major}); install it for $(uname -s) $(uname -m)" >&2
      return 1
      ;;
  esac
  dir="$root/.tools/node${PORTIER_NODE_MIN_MAJOR}"
  bin="$dir/node_modules/node-linux-$arch/bin"
  if [ ! -x "$bin/node" ] || [ "$("$bin/node" -p process.versions.node 2>/dev/null)" != "$PORTIER_NODE_VERSION" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "portier: Node.js ${PORTIER_NODE_MIN_MAJOR} or newer is required and npm is missing to fetch it (apt-get install npm)" >&2
      return 1
    fi
    echo "portier: the machine's node is $(node --version 2>/dev/null || echo missing); installing Node.js ${PORTIER_NODE_VERSION} (npm package node-linux-${arch}) into .tools/" >&2
    mkdir -p "$dir"
    # Its own package.json keeps this install apart from the project's dependencies.
    [ -f "$dir/package.json" ] || echo '{"private": true}' >"$dir/package.json"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error --save-exact "node-linux-${arch}@${PORTIER_NODE_VERSION}" >&2 || {
      echo "portier: could not install Node.js ${PORTIER_NODE_VERSION} from the npm registry" >&2
      return 1
    }
  fi
  PATH="$bin:$PATH"
  export PATH
  hash -r
  # An npm that ran on the older node (`npm test` typed in a shell) exports its global prefix (/usr), and every
  # npm, npx or npm script started below would put <prefix>/bin, the older node, first on PATH again. Without
  # it npm derives the prefix from its own (new) node. The node path it exported is the older one too.
  unset npm_config_prefix
  if [ -n "${NODE:-}" ]; then export NODE="$bin/node"; fi
  if [ -n "${npm_node_execpath:-}" ]; then export npm_node_execpath="$bin/node"; fi
}

portier_node_runtime
