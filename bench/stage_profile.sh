#!/usr/bin/env bash
# Where a kvpack_server spends its CPU per block, by stage (bench/stage_profile.py says which
# frames make each stage), for puts and for gets of one codec, measured with perf while
# kvpack_bench runs one phase at a time on this machine.
#
#   bench/stage_profile.sh SERVER_BIN BENCH_BIN [CODEC] [WANT] [BLOCKS]
#
# Needs perf (linux-perf) and permission to profile (kernel.perf_event_paranoid <= 1, or root).
# Prints one table per phase: CPU microseconds per block by stage. The server runs --device=cpu.
set -euo pipefail
server_bin=$(realpath "$1")
bench_bin=$(realpath "$2")
codec=${3:-raw}
want=${4:-decoded}
blocks=${5:-512}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$server_bin" --listen=127.0.0.1:$port --metrics_listen= --data_dir="$work/data" \
  --ram_capacity=4GiB --device=cpu >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  grep -q "serving on port" "$work/server.log" 2>/dev/null && break
  sleep 0.1
done
bench=("$bench_bin" --server=127.0.0.1:$port --namespace=profile --blocks="$blocks"
       --codec="$codec" --want="$want" --verify=false)
"${bench[@]}" >/dev/null  # warm-up: the server's heap reaches its working size

for phase in put get; do
  perf record -q -F 2000 --call-graph dwarf,16384 -p "$server_pid" -o "$work/$phase.data" &
  perf_pid=$!
  sleep 0.5
  "${bench[@]}" --phases="$phase" --run_id=4242 | grep "^$phase:" | sed 's/^/    /'
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
  [ -n "${KEEP_PERF:-}" ] && cp "$work/$phase.data" "$KEEP_PERF.$phase.data"
  perf script -i "$work/$phase.data" -F comm,tid,period,ip,sym 2>/dev/null |
    python3 "$here/stage_profile.py" --blocks="$blocks" --label="$phase ($codec, $want):" --top="${TOP:-0}"
done
