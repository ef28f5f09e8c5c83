#!/usr/bin/env bash
# How fast can a Node process send a large download over TLS on this machine? Puts Portier's blob
# download next to three ceilings, all with curl on 127.0.0.1 and the same certificate:
#   direct      the registry over plain HTTP (sendfile)
#   tls-source  an HTTPS server writing the same number of bytes from memory (no upstream at all)
#   raw-pipe    a TLS listener copying a raw TCP connection to the registry (no HTTP parsing, no undici)
#   undici      the minimal undici forwarder of `npm run bench`
#   portier     Portier with TLS and a bcrypt cost-10 htpasswd file
#   portier-storage  the same Portier configuration with upstreams[].storage: blobs read from the registry's storage
# Alternates the targets in every round and prints medians and min–max in MB/s.
# Run: npm run bench:ceiling [-- rounds size_mib]   (defaults 5 rounds, 512 MiB). All on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-runtime.sh
rounds=${1:-5}
size_mib=${2:-512}
bash scripts/ensure-tools.sh docker-registry htpasswd openssl curl
[ -f dist/cli.js ] || npm run build --silent

source bench/lib/common.sh
bench_start ceiling

tsnode=(node --import=tsx)

start_registry
make_tls_and_users

# One random blob of size_mib, stored directly in the registry.
wait_for "http://127.0.0.1:$reg_port/v2/"
head -c $((size_mib * 1024 * 1024)) /dev/urandom >"$work/blob"
digest="sha256:$(sha256sum "$work/blob" | cut -d' ' -f1)"
location=$(curl -s -D - -o /dev/null -X POST "http://127.0.0.1:$reg_port/v2/bench/blob/blobs/uploads/" | tr -d '\r' | sed -n 's/^Location: //Ip')
curl -s -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$work/blob" "$location&digest=$digest"
rm "$work/blob"
path="/v2/bench/blob/blobs/$digest"

portier_port=$(free_port)
cat > "$work/portier.yaml" <<YAML
server: { listen: "127.0.0.1:$portier_port" }
tls: { certificates: [{ cert: $work/cert.pem, key: $work/key.pem }] }
upstreams: [{ url: "http://127.0.0.1:$reg_port" }]
auth: { mode: htpasswd, htpasswd: { path: $work/htpasswd } }
admin: { listen: "" }
YAML
node "${node_flags[@]}" dist/cli.js serve --config "$work/portier.yaml" >"$work/portier.log" 2>&1 &
pids+=($!)
storage_port=$(free_port)
cat > "$work/portier-storage.yaml" <<YAML
server: { listen: "127.0.0.1:$storage_port" }
tls: { certificates: [{ cert: $work/cert.pem, key: $work/key.pem }] }
upstreams: [{ url: "http://127.0.0.1:$reg_port", storage: "$work/registry/data" }]
auth: { mode: htpasswd, htpasswd: { path: $work/htpasswd } }
admin: { listen: "" }
YAML
node "${node_flags[@]}" dist/cli.js serve --config "$work/portier-storage.yaml" >"$work/portier-storage.log" 2>&1 &
pids+=($!)
undici_port=$(free_port)
FORWARDER_PORT=$undici_port FORWARDER_UPSTREAM="http://127.0.0.1:$reg_port" FORWARDER_CERT="$work/cert.pem" FORWARDER_KEY="$work/key.pem" \
  "${tsnode[@]}" bench/forwarders/undici.ts >"$work/undici.log" 2>&1 &
pids+=($!)
pipe_port=$(free_port)
"${tsnode[@]}" bench/ceiling/raw-pipe.ts "$work/cert.pem" "$work/key.pem" "$pipe_port" "$reg_port" "$path" >"$work/pipe.log" 2>&1 &
pids+=($!)
source_port=$(free_port)
"${tsnode[@]}" bench/ceiling/tls-source.ts "$work/cert.pem" "$work/key.pem" "$source_port" 64 "$size_mib" >"$work/source.log" 2>&1 &
pids+=($!)

declare -A url
url[direct]="http://127.0.0.1:$reg_port$path"
url[tls-source]="https://127.0.0.1:$source_port/"
url[raw-pipe]="https://127.0.0.1:$pipe_port/"
url[undici]="https://127.0.0.1:$undici_port$path"
url[portier]="https://127.0.0.1:$portier_port$path"
url[portier-storage]="https://127.0.0.1:$storage_port$path"
names=(direct tls-source raw-pipe undici portier portier-storage)
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }
for port in "$portier_port" "$storage_port" "$undici_port" "$pipe_port" "$source_port"; do wait_port "$port"; done
wait_for "https://127.0.0.1:$portier_port/v2/"
wait_for "https://127.0.0.1:$storage_port/v2/"

declare -A speeds
for round in $(seq 1 "$rounds"); do
  line="round $round of $rounds:"
  for name in "${names[@]}"; do
    creds=()
    case "$name" in portier*) creds=(-u bench:bench-password) ;; esac
    bytes_per_second=$(curl -sk "${creds[@]}" -o /dev/null -w '%{size_download} %{speed_download}' "${url[$name]}")
    read -r size speed <<<"$bytes_per_second"
    if [ "$size" -ne $((size_mib * 1024 * 1024)) ] && [ "$name" != raw-pipe ]; then echo "$name sent $size bytes, expected $((size_mib * 1024 * 1024))" >&2; exit 1; fi
    mbs=$(awk -v s="$speed" 'BEGIN{printf "%.0f", s/1e6}')
    speeds[$name]+="$mbs "
    line+=" $name $mbs"
  done
  echo "$line MB/s" >&2
done

direct=$(median <<<"${speeds[direct]}")
echo
echo "$size_mib MiB download with curl, $rounds alternating rounds, medians (min–max):"
echo
echo "| target | MB/s | ÷ direct |"
echo "|---|---:|---:|"
for name in "${names[@]}"; do
  m=$(median <<<"${speeds[$name]}")
  echo "| $name | $m ($(range <<<"${speeds[$name]}")) | $(awk -v a="$m" -v b="$direct" 'BEGIN{printf "%.2f×", a/b}') |"
done
