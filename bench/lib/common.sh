# Shared by the shell benchmarks (bench/*.sh): a temp dir and process list cleaned up on exit, free
# loopback ports, a registry with temp storage, a certificate and a bcrypt cost-10 users file, medians.
# Usage: source bench/lib/common.sh; bench_start NAME   (from the project root)

# The V8 flags the image runs Portier with (Dockerfile ENTRYPOINT): node "${node_flags[@]}" dist/cli.js serve …
node_flags=(--max-semi-space-size=1 --liftoff-only --no-concurrent-recompilation)

# Creates $work and stops every pid added to $pids (and removes $work) when the script exits.
bench_start() {
  work=$(mktemp -d "/tmp/portier-bench-$1.XXXXXX")
  pids=()
  trap bench_cleanup EXIT INT TERM
}
bench_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.5
  rm -rf "$work"
}

# Waits up to 10 s until URL answers (any status; TLS not verified), else stops the script.
wait_for() { for _ in $(seq 1 100); do curl -sk -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# Starts docker-registry on a free port with storage in $work/registry; sets reg_port.
start_registry() {
  reg_port=$(free_port)
  mkdir -p "$work/registry"
  cat >"$work/registry/config.yml" <<YAML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $work/registry/data } }
http: { addr: 127.0.0.1:$reg_port, secret: bench }
YAML
  docker-registry serve "$work/registry/config.yml" >"$work/registry.log" 2>&1 &
  pids+=($!)
}

# $work/cert.pem + key.pem for 127.0.0.1 and localhost; $work/htpasswd with bench:bench-password at bcrypt cost 10.
make_tls_and_users() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  htpasswd -B -C 10 -b -c "$work/htpasswd" bench bench-password 2>/dev/null
}

# Median and min–max of the space-separated numbers on stdin.
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
range() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk 'NR==1{min=$1} {max=$1} END {printf "%s–%s", min, max}'; }
