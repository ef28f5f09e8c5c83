#!/usr/bin/env bash
# Installs the system tools Portier or its tests need when they are missing (apt-get, as root),
# or prints exactly what to install. Usage: scripts/ensure-tools.sh COMMAND...
# Each command maps to the Debian package that provides it.
set -euo pipefail

package_for() {
  case "$1" in
    docker-registry) echo docker-registry ;;
    skopeo) echo skopeo ;;
    curl) echo curl ;;
    openssl) echo openssl ;;
    podman) echo podman ;;
    pebble) echo pebble ;;
    pebble-challtestsrv) echo pebble ;;
    nginx) echo nginx ;;
    wrk) echo wrk ;;
    ab) echo apache2-utils ;;
    htpasswd) echo apache2-utils ;;
    hyperfine) echo hyperfine ;;
    chromium) echo chromium ;;
    redis-server) echo redis-server ;;
    redis-cli) echo redis-tools ;;
    slapd | slapadd) echo slapd ;;
    ldapsearch | ldapadd | ldapwhoami) echo ldap-utils ;;
    postgres) echo postgresql ;;
    *) echo "$1" ;;
  esac
}

# slapd and slapadd live in /usr/sbin, which a non-root PATH may not hold; Debian's PostgreSQL server lives
# under /usr/lib/postgresql/N/bin, on no PATH.
found() {
  case "$1" in
    postgres) compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null ;;
    *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] ;;
  esac
}

missing=()
for tool in "$@"; do
  found "$tool" || missing+=("$(package_for "$tool")")
done
[ ${#missing[@]} -eq 0 ] && exit 0

# De-duplicate, keep order.
packages=$(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++' | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "portier: missing system packages: ${packages}" >&2
  echo "  install them with:  sudo apt-get install -y ${packages}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "portier: missing ${packages}and no apt-get here: install them with your package manager" >&2
  exit 1
fi
echo "portier: installing ${packages}(apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
# slapd's debconf questions (domain, admin password) are skipped: no system directory is made, and the tests
# never use one (they start their own slapd with a temp config).
echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections 2>/dev/null || true
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends ${packages} >/dev/null
