#!/usr/bin/env bash
# shard_scaling.sh BIN_DIR [sharded_bench flags]: put/get GB/s through the sharded client
# against one kvpack server, then against three, all on this host (loopback), plus the same
# workload through the Python package against one server (the binding's cost).
#   BIN_DIR holds kvpack_server, sharded_bench and libkvpack.so (bazel-bin/{service,bench,
#   client} copied together, or a device bundle's bin/); python/ is taken from the repo root.
# Each server gets --worker_threads=$WORKERS (default: cores / 3) so 1 and 3 shards are
# compared at the same total CPU; set WORKERS=0 for the server's default (one per core).
set -euo pipefail
bin=$(readlink -f "$1"); shift
root=$(cd "$(dirname "$0")/.." && pwd)
cores=$(nproc)
workers=${WORKERS:-$(( cores / 3 > 0 ? cores / 3 : 1 ))}
work=$(mktemp -d /tmp/kvpack-shards-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
start() {  # start N: appends N servers' targets to $targets
  targets=""
  for i in $(seq 1 "$1"); do
    log="$work/s$RANDOM.log"
    extra=(); [ "$workers" -gt 0 ] && extra=(--worker_threads="$workers")
    "$bin/kvpack_server" --listen=127.0.0.1:0 --metrics_listen= --data_dir="$work/d$RANDOM" \
      --disk_capacity=0 --ram_capacity=8GiB "${extra[@]}" 2>"$log" &
    pids+=($!)
    for _ in $(seq 1 200); do grep -q "serving on port" "$log" && break; sleep 0.05; done
    port=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$log")
    targets="${targets:+$targets,}127.0.0.1:$port"
  done
}
stop() { for p in "${pids[@]}"; do kill "$p"; done; wait 2>/dev/null || true; pids=(); }
echo "== $(nproc) cores, $workers worker threads per server"
# Each set of servers first takes one unreported run, so that no measured run pays for the
# servers' first touch of their memory.
warm() { "$bin/sharded_bench" --targets="$targets" "$@" >/dev/null; }
start 1
warm "$@"
echo "== 1 shard (C++)";   "$bin/sharded_bench" --targets="$targets" "$@"
if [ -f "$bin/libkvpack.so" ] && /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  echo "== 1 shard (Python)"
  KVPACK_LIBRARY="$bin/libkvpack.so" PYTHONPATH="$root/python" \
    /usr/bin/python3 "$root/bench/python_bench.py" --targets="$targets" "$@"
fi
stop
start 3
warm "$@"
echo "== 3 shards (C++)";  "$bin/sharded_bench" --targets="$targets" "$@"
stop
