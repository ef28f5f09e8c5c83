#!/usr/bin/env bash
# What metrics and the access log cost on small requests: two Portier processes in front of one
# registry, identical but for observability: A with metrics on and one JSON access-log line per
# request (written to a file), B with metrics.enabled: false and log.level: warn. Both TLS with a
# bcrypt cost-10 htpasswd (cached after the first check). Alternates A B A B … and prints medians of
# req/s, p50 and the CPU time Portier spent per request (the steadier figure on a shared machine).
# Run: npm run bench:observe [-- rounds seconds]   (defaults 5 rounds of 8 s). All on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-runtime.sh
rounds=${1:-5}
seconds=${2:-8}
bash scripts/ensure-tools.sh docker-registry wrk ab htpasswd openssl curl
[ -f dist/cli.js ] || npm run build --silent

source bench/lib/common.sh
bench_start observe
start_registry
make_tls_and_users
auth="Authorization: Basic $(printf 'bench:bench-password' | base64)"

declare -A port pid
start_portier() { # name extra-yaml
  local name=$1 extra=$2
  port[$name]=$(free_port)
  cat > "$work/$name.yaml" <<YAML
server: { listen: "127.0.0.1:${port[$name]}" }
tls: { certificates: [{ cert: $work/cert.pem, key: $work/key.pem }] }
upstreams: [{ url: "http://127.0.0.1:$reg_port" }]
auth: { mode: htpasswd, htpasswd: { path: $work/htpasswd } }
$extra
YAML
  node "${node_flags[@]}" dist/cli.js serve --config "$work/$name.yaml" >"$work/$name.log" 2>&1 &
  pids+=($!)
  pid[$name]=$!
}
start_portier on 'admin: { listen: "127.0.0.1:0" }
metrics: { enabled: true }
log: { level: info }'
start_portier off 'admin: { listen: "" }
metrics: { enabled: false }
log: { level: warn }'

wait_for "https://127.0.0.1:${port[on]}/v2/"
wait_for "https://127.0.0.1:${port[off]}/v2/"
wait_for "http://127.0.0.1:$reg_port/v2/"

# A small image for HEAD manifest: one config blob and a manifest, stored directly.
config='{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
config_digest="sha256:$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)"
location=$(curl -s -D - -o /dev/null -X POST "http://127.0.0.1:$reg_port/v2/bench/app/blobs/uploads/" | tr -d '\r' | sed -n 's/^Location: //Ip')
case "$location" in http*) ;; *) location="http://127.0.0.1:$reg_port$location" ;; esac
printf '%s' "$config" | curl -s -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary @- "$location&digest=$config_digest"
manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$config_digest\",\"size\":${#config}},\"layers\":[]}"
printf '%s' "$manifest" | curl -s -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @- "http://127.0.0.1:$reg_port/v2/bench/app/manifests/v1"
accept='Accept: application/vnd.oci.image.manifest.v1+json'

# CPU (user + system) Portier spent per request, in ms: less noisy than req/s on a shared 2-core machine.
ticks() { awk '{print $14 + $15}' "/proc/${pid[$1]}/stat"; }
per_request_ms() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.3f", t * 1000 / hz / n}'; }
declare -A get_rps head_rps get_p50 get_cpu head_cpu
for name in on off; do get_rps[$name]=''; head_rps[$name]=''; get_p50[$name]=''; get_cpu[$name]=''; head_cpu[$name]=''; done
# One unmeasured round first: Node's JIT needs a few thousand requests before Portier runs optimized code.
for name in on off; do
  wrk -t2 -c32 -d"${seconds}s" -H "$auth" "https://127.0.0.1:${port[$name]}/v2/" >/dev/null
  ab -k -i -q -t "$seconds" -n 10000000 -c 32 -H "$accept" -H "$auth" "https://127.0.0.1:${port[$name]}/v2/bench/app/manifests/v1" >/dev/null 2>&1
done
for round in $(seq 1 "$rounds"); do
  for name in on off; do
    before=$(ticks "$name")
    out=$(wrk -t2 -c32 -d"${seconds}s" --latency -H "$auth" "https://127.0.0.1:${port[$name]}/v2/")
    requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$out")
    get_cpu[$name]+="$(per_request_ms $(($(ticks "$name") - before)) "$requests") "
    get_rps[$name]+="$(sed -n 's/^Requests\/sec: *//p' <<<"$out") "
    get_p50[$name]+="$(awk '$1=="50%"{v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out") "
    before=$(ticks "$name")
    out=$(ab -k -i -q -t "$seconds" -n 10000000 -c 32 -H "$accept" -H "$auth" "https://127.0.0.1:${port[$name]}/v2/bench/app/manifests/v1" 2>&1)
    requests=$(sed -n 's/^Complete requests: *//p' <<<"$out")
    head_cpu[$name]+="$(per_request_ms $(($(ticks "$name") - before)) "$requests") "
    head_rps[$name]+="$(sed -n 's/^Requests per second: *\([0-9.]*\).*/\1/p' <<<"$out") "
  done
  echo "round $round of $rounds: GET /v2/ req/s, on: $(awk '{print $NF}' <<<"${get_rps[on]}"), off: $(awk '{print $NF}' <<<"${get_rps[off]}"); CPU ms/request on: $(awk '{print $NF}' <<<"${get_cpu[on]}"), off: $(awk '{print $NF}' <<<"${get_cpu[off]}")" >&2
done

requests=$(grep -c '"msg":"request"' "$work/on.log" || true)
echo
echo "Small requests through Portier (TLS, htpasswd cost 10, 32 connections), $rounds alternating rounds of ${seconds}s, medians:"
echo
echo "| | metrics + access log (A) | both off (B) | A / B |"
echo "|---|---|---|---|"
for metric in get head; do
  if [ $metric = get ]; then label='GET /v2/ (wrk), req/s'; a=$(median <<<"${get_rps[on]}"); b=$(median <<<"${get_rps[off]}"); ra=$(range <<<"${get_rps[on]}"); rb=$(range <<<"${get_rps[off]}")
  else label='HEAD manifest (ab -k), req/s'; a=$(median <<<"${head_rps[on]}"); b=$(median <<<"${head_rps[off]}"); ra=$(range <<<"${head_rps[on]}"); rb=$(range <<<"${head_rps[off]}"); fi
  echo "| $label | $a ($ra) | $b ($rb) | $(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", a/b}') |"
done
echo "| GET /v2/ p50 latency, ms | $(median <<<"${get_p50[on]}") | $(median <<<"${get_p50[off]}") | |"
for metric in get head; do
  if [ $metric = get ]; then label='GET /v2/, Portier CPU per request, ms'; a=$(median <<<"${get_cpu[on]}"); b=$(median <<<"${get_cpu[off]}"); ra=$(range <<<"${get_cpu[on]}"); rb=$(range <<<"${get_cpu[off]}")
  else label='HEAD manifest, Portier CPU per request, ms'; a=$(median <<<"${head_cpu[on]}"); b=$(median <<<"${head_cpu[off]}"); ra=$(range <<<"${head_cpu[on]}"); rb=$(range <<<"${head_cpu[off]}"); fi
  echo "| $label | $a ($ra) | $b ($rb) | $(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", a/b}') |"
done
echo
echo "A wrote $requests access-log lines (warm-up included); its /metrics had $(curl -s "http://127.0.0.1:$(sed -n 's/.*"admin_listen":"[^"]*:\([0-9]*\)".*/\1/p' "$work/on.log" | head -1)/metrics" | grep -c '^portier_') portier_ samples."
