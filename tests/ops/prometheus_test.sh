#!/usr/bin/env bash
# The dashboard and the alerts against a real Prometheus: starts kvpack_server (small RAM tier,
# so blocks spill to disk and come back from it) and Debian's prometheus on loopback scraping it
# every second with deploy/prometheus/kvpack-alerts.yaml loaded, drives the server with
# kvpack_bench (puts and gets, decoded and encoded, two codec policies) and the kvpack CLI (a
# missing key, a bad request), then has check_expressions.py evaluate every dashboard and alert
# expression through Prometheus's HTTP API. Fails if any is invalid or returns no series.
#
#   prometheus_test.sh SERVER CLI BENCH DASHBOARD ALERTS CHECKER
set -euo pipefail
server_bin=$(realpath "$1"); cli_bin=$(realpath "$2"); bench_bin=$(realpath "$3")
dashboard=$(realpath "$4"); alerts=$(realpath "$5"); checker=$(realpath "$6")
prometheus_bin=$(command -v prometheus || echo /usr/bin/prometheus)
[ -x "$prometheus_bin" ] || { echo "FAIL: no prometheus binary (tools/setup.sh installs it)"; exit 1; }
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/prometheus-test-XXXXXX")
cd "$work"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for log in server.log prometheus.log; do [ -f $log ] && tail -20 $log | sed "s/^/  $log: /" >&2; done
  exit 1
}

"$server_bin" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 --data_dir=data \
  --ram_capacity=2MiB --disk_capacity=256MiB --worker_threads=2 >server.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "serving on port" server.log 2>/dev/null && break; sleep 0.1; done
grep -q "serving on port" server.log || fail "server did not start"
grpc_port=$(sed -n 's/.*serving on port \([0-9]*\) .*/\1/p' server.log)
metrics_port=$(sed -n 's/.*metrics on \([0-9]*\)).*/\1/p' server.log)
[ -n "$grpc_port" ] && [ -n "$metrics_port" ] || fail "no ports in: $(head -1 server.log)"
server="127.0.0.1:$grpc_port"

prom_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >prometheus.yml <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["$alerts"]
scrape_configs:
  - job_name: kvpack
    static_configs: [{targets: ["127.0.0.1:$metrics_port"]}]
YAML
"$prometheus_bin" --config.file=prometheus.yml --storage.tsdb.path=tsdb \
  --web.listen-address="127.0.0.1:$prom_port" >prometheus.log 2>&1 &
pids+=($!)
prom="http://127.0.0.1:$prom_port"
for _ in $(seq 100); do curl -sf --noproxy '*' "$prom/-/ready" >/dev/null 2>&1 && break; sleep 0.2; done
curl -sf --noproxy '*' "$prom/-/ready" >/dev/null || fail "prometheus did not become ready"

head -c 256 /dev/urandom >block.bin  # 1 layer x K,V x 1 token x 1 head x 64 dims, bf16
# About 20 s of small load, so that every rate over 30 s has samples at both ends.
end=$((SECONDS + 20)); round=0
while [ $SECONDS -lt $end ]; do
  round=$((round + 1))
  "$bench_bin" --server="$server" --namespace=ops --blocks=24 --concurrency=2 --codec=int8 --keep \
    >bench.log 2>&1 || fail "bench int8: $(tail -3 bench.log)"
  "$bench_bin" --server="$server" --namespace=ops --blocks=24 --concurrency=2 --codec=k8v4 \
    --want=encoded >bench.log 2>&1 || fail "bench k8v4: $(tail -3 bench.log)"
  # Errors the dashboard's error panel must show: a namespace nothing was put in (NOT_FOUND)
  # and an unknown codec (INVALID_ARGUMENT).
  "$cli_bin" --server="$server" --namespace=ops-never-used get --key=00ff --output=/dev/null \
    >/dev/null 2>&1 && fail "a block of an empty namespace was served"
  "$cli_bin" --server="$server" --namespace=ops put --key=0a --layers=1 --kv_heads=1 \
    --head_dim=64 --tokens=1 --dtype=bf16 --input=block.bin --codec=zip9 >/dev/null 2>&1 \
    && fail "an unknown codec was accepted"
  sleep 1
done
sleep 3  # one more scrape and rule evaluation after the load

/usr/bin/python3 "$checker" "$prom" "$dashboard" "$alerts" kvpack || fail "expressions"
echo "PASS: $round rounds of load"
