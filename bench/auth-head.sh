#!/usr/bin/env bash
# Authenticated HEAD manifest, 32 keep-alive connections (ab -k -i; wrk cannot do HEAD):
# registry:2 direct (plain HTTP, no auth) vs nginx (distribution's recipe: TLS + auth_basic) vs Portier
# (TLS + htpasswd), the same bcrypt cost-10 file and certificate, alternating rounds; prints medians.
# Run: bash bench/auth-head.sh [rounds] [seconds per run]   (defaults 3 and 8). All on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-8}
bash scripts/ensure-tools.sh docker-registry nginx ab htpasswd openssl curl
[ -f dist/cli.js ] || npm run build --silent

work=$(mktemp -d /tmp/portier-bench-auth.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  sleep 0.5
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
reg_port=$(free_port); nginx_port=$(free_port); portier_port=$(free_port)

# registry:2
mkdir -p "$work/registry"
cat > "$work/registry/config.yml" <<YAML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $work/registry/data } }
http: { addr: 127.0.0.1:$reg_port, secret: bench }
YAML
docker-registry serve "$work/registry/config.yml" >"$work/registry.log" 2>&1 &
pids+=($!)

# One certificate and one bcrypt cost-10 htpasswd file for both proxies.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
htpasswd -B -C 10 -b -c "$work/htpasswd" bench bench-password 2>/dev/null
auth="Authorization: Basic $(printf 'bench:bench-password' | base64)"
# nginx's workers run as an unprivileged user: let them read the users file (bench data only).
chmod 755 "$work"
chmod 644 "$work/htpasswd"

# nginx as in distribution's "Authenticate proxy with nginx" recipe, one worker.
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  upstream docker-registry { server 127.0.0.1:$reg_port; keepalive 32; }
  map \$upstream_http_docker_distribution_api_version \$docker_distribution_api_version { '' 'registry/2.0'; }
  server {
    listen 127.0.0.1:$nginx_port ssl;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    client_max_body_size 0;
    chunked_transfer_encoding on;
    location /v2/ {
      auth_basic "Registry realm";
      auth_basic_user_file $work/htpasswd;
      add_header 'Docker-Distribution-Api-Version' \$docker_distribution_api_version always;
      proxy_pass http://docker-registry;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_read_timeout 900;
    }
  }
}
NGINX
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx"

# Portier with the same certificate and users; request log at warn like nginx's access_log off.
cat > "$work/portier.yaml" <<YAML
server: { listen: "127.0.0.1:$portier_port" }
tls: { certificates: [{ cert: $work/cert.pem, key: $work/key.pem }] }
upstreams: [{ url: "http://127.0.0.1:$reg_port" }]
auth: { mode: htpasswd, htpasswd: { path: $work/htpasswd } }
log: { level: warn }
YAML
node dist/cli.js serve --config "$work/portier.yaml" >"$work/portier.log" 2>&1 &
pids+=($!)

for i in $(seq 1 100); do
  curl -sk -o /dev/null "https://127.0.0.1:$portier_port/v2/" && curl -s -o /dev/null "http://127.0.0.1:$reg_port/v2/" && break
  sleep 0.1
done

# A small image: one config blob and a manifest.
config='{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
config_digest="sha256:$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)"
location=$(curl -s -D - -o /dev/null -X POST "http://127.0.0.1:$reg_port/v2/bench/app/blobs/uploads/" | tr -d '\r' | sed -n 's/^Location: //Ip')
case "$location" in http*) ;; *) location="http://127.0.0.1:$reg_port$location" ;; esac
printf '%s' "$config" | curl -s -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary @- "$location&digest=$config_digest"
manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$config_digest\",\"size\":${#config}},\"layers\":[]}"
printf '%s' "$manifest" | curl -s -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @- "http://127.0.0.1:$reg_port/v2/bench/app/manifests/v1"

accept='Accept: application/vnd.oci.image.manifest.v1+json'
declare -A rps p50
measure() { # name url [auth header]
  local name=$1 url=$2 out
  if [ $# -ge 3 ]; then out=$(ab -k -i -q -t "$seconds" -n 10000000 -c 32 -H "$accept" -H "$3" "$url" 2>&1)
  else out=$(ab -k -i -q -t "$seconds" -n 10000000 -c 32 -H "$accept" "$url" 2>&1); fi
  local failed non2xx
  failed=$(sed -n 's/^Failed requests: *//p' <<<"$out")
  non2xx=$(sed -n 's/^Non-2xx responses: *//p' <<<"$out")
  if [ "${failed:-0}" != 0 ] || [ -n "$non2xx" ]; then echo "$name: failed=$failed non-2xx=$non2xx" >&2; fi
  rps[$name]+="$(sed -n 's/^Requests per second: *\([0-9.]*\).*/\1/p' <<<"$out") "
  p50[$name]+="$(sed -n 's/^ *50% *\([0-9]*\).*/\1/p' <<<"$out") "
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

path=/v2/bench/app/manifests/v1
# Every target must answer the request being measured with 200, or its figure means nothing.
check() { # name url [auth header]
  local status
  if [ $# -ge 3 ]; then status=$(curl -sk -o /dev/null -w '%{http_code}' -I -H "$accept" -H "$3" "$2")
  else status=$(curl -sk -o /dev/null -w '%{http_code}' -I -H "$accept" "$2"); fi
  if [ "$status" != 200 ]; then echo "$1 answers $status, not 200: $2" >&2; tail -5 "$work/nginx/error.log" >&2 || true; exit 1; fi
}
check direct "http://127.0.0.1:$reg_port$path"
check nginx "https://127.0.0.1:$nginx_port$path" "$auth"
check portier "https://127.0.0.1:$portier_port$path" "$auth"

for round in $(seq 1 "$rounds"); do
  measure direct "http://127.0.0.1:$reg_port$path"
  measure nginx "https://127.0.0.1:$nginx_port$path" "$auth"
  measure portier "https://127.0.0.1:$portier_port$path" "$auth"
done

echo "HEAD manifest, ab -k -i -c 32, ${seconds}s x $rounds rounds, bcrypt cost 10 (medians)"
for name in direct nginx portier; do
  printf '%-8s %10s req/s   p50 %s ms   (runs: %s)\n' "$name" "$(median <<<"${rps[$name]}")" "$(median <<<"${p50[$name]}")" "${rps[$name]}"
done
d=$(median <<<"${rps[direct]}"); n=$(median <<<"${rps[nginx]}"); p=$(median <<<"${rps[portier]}")
awk -v d="$d" -v n="$n" -v p="$p" 'BEGIN { printf "portier = %.2fx direct (no auth, plain HTTP), %.1fx nginx\n", p/d, p/n }'
