#!/usr/bin/env bash
# The test command (npm test, and CI): installs the tools the tests drive, builds, type-checks and lints, runs every tap test,
# and ends with one "N passed, N failed" line. Exit status is non-zero when any test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-tools.sh docker-registry skopeo podman curl openssl htpasswd pebble pebble-challtestsrv chromium redis-server slapd slapadd ldapsearch postgres || exit 1
# Node.js 24 first on PATH: tap runs on it, and the tests spawn the gateway with tap's own node (process.execPath).
source scripts/node-runtime.sh || exit 1
bash scripts/node-deps.sh || exit 1
# Tests and benchmarks are TypeScript too (strict, like src/); tap runs them without a type check.
npm run typecheck --silent || { echo "type errors in test/ or bench/ (npm run typecheck)" >&2; exit 1; }
# The linter (eslint.config.js: typescript-eslint with type information) over src/ and test/; a finding fails the run.
npx --no-install eslint src test || { echo "lint findings in src/ or test/ (npx eslint src test)" >&2; exit 1; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
npx --no-install tap "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}

# tap's last summary line looks like: # { total: 42, pass: 40, fail: 1, skip: 1 }
summary=$(grep -E '^# \{ total: [0-9]+' "$out" | tail -n 1)
pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary")
fail=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$summary")
skip=$(sed -nE 's/.*skip: ([0-9]+).*/\1/p' <<<"$summary")
pass=${pass:-0}
fail=${fail:-0}
if [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
if [ "$pass" -eq 0 ] && [ "$fail" -eq 0 ]; then
  echo "no tests ran" >&2
  exit 1
fi
echo
# CI keeps only the end of the output: repeat every failed assertion there, with its file and its diagnostics.
if [ "$fail" -gt 0 ]; then
  echo "failed assertions:"
  awk '
    /^# Subtest: / { file = substr($0, 12) }
    /^ *not ok / {
      diag = 0
      # a subtest or file line ("# time=") repeats its assertions; only a file line also says how the process ended
      assertion = ($0 !~ /# time=/)
      top = ($0 ~ /^not ok /)
      if (assertion && ++shown > 15) { next }
      print "  " file ": " $0
      if (assertion || top) { diag = 1; lines = 0; skipping = 0; base = -1 }
      next
    }
    diag && /^ *---$/ { next }
    diag && /^ *\.\.\.$/ { diag = 0; next }
    diag {
      indent = match($0, /[^ ]/) - 1
      if (base < 0) base = indent
      if (indent == base) {
        # where in the test file and its source: long, and not what failed; the comparison and the exit are
        key = $0; sub(/^ */, "", key); sub(/:.*/, "", key)
        skipping = (key == "stack" || key == "source" || key == "args" || key == "command" || key == "cwd" || key == "stdio" || key == "externalID")
      }
      if (!skipping && ++lines <= 24) print "    " $0
    }
  ' "$out"
fi
if [ -n "$skip" ]; then echo "${pass} passed, ${fail} failed, ${skip} skipped"; else echo "${pass} passed, ${fail} failed"; fi
exit "$status"
