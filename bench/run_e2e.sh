#!/usr/bin/env bash
# End-to-end comparison on loopback: starts a kvpack server and a redis-server on free ports,
# runs the same workload (bench/workload.h: same block bytes, count and concurrency) through
# bench/kvpack_bench (codecs raw and int8; gets decoded on the server, and for int8 also fetched
# encoded and decoded on the client inside the timed get) and bench/redis_compare (SET/GET),
# at concurrency 1 and 8, and prints one table with kvpack/Redis throughput ratios.
#
#   bench/run_e2e.sh                       # 256 blocks of 32x8x128x16 bf16 (2 MiB each)
#   BLOCKS=512 CONCURRENCY="1 4 8" REPEAT=5 bench/run_e2e.sh
#
# Every configuration runs REPEAT times, the rounds interleaved so that a burst of load on a
# shared machine hits all systems alike; the table shows the median of each column.
#
# Environment: BLOCKS (default 256), CONCURRENCY (default "1 8"), REPEAT (default 3),
# KVPACK_SERVER_FLAGS (extra server flags), BAZEL (default bazel). Builds with -c opt first.
set -euo pipefail
cd "$(dirname "$0")/.."

BLOCKS=${BLOCKS:-256}
CONCURRENCY=${CONCURRENCY:-"1 8"}
REPEAT=${REPEAT:-3}
BAZEL=${BAZEL:-bazel}
KVPACK_SERVER_FLAGS=${KVPACK_SERVER_FLAGS:-}

"$BAZEL" build -c opt //service:kvpack_server //client:kvpack //bench:kvpack_bench \
  //bench:redis_compare >&2
BIN=$("$BAZEL" info -c opt bazel-bin 2>/dev/null)

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

WORK=$(mktemp -d)
KVPACK_PID=""
REDIS_PID=""
cleanup() {
  [ -n "$KVPACK_PID" ] && kill "$KVPACK_PID" 2>/dev/null && wait "$KVPACK_PID" 2>/dev/null
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

KVPACK_PORT=$(free_port)
METRICS_PORT=$(free_port)
REDIS_PORT=$(free_port)

# shellcheck disable=SC2086
"$BIN/service/kvpack_server" --listen="127.0.0.1:$KVPACK_PORT" \
  --metrics_listen="127.0.0.1:$METRICS_PORT" --data_dir="$WORK/kvpack" \
  --ram_capacity=4GiB $KVPACK_SERVER_FLAGS >"$WORK/kvpack.log" 2>&1 &
KVPACK_PID=$!
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --dir "$WORK" >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!

for _ in $(seq 1 100); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "redis-server did not start" >&2; exit 1; }
"$BIN/client/kvpack" --server="127.0.0.1:$KVPACK_PORT" --connect_timeout=10 stats >/dev/null || {
  echo "kvpack_server did not start:" >&2; cat "$WORK/kvpack.log" >&2; exit 1; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"\
     "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average"\
     "$(cut -d' ' -f1-3 /proc/loadavg) at start"
echo

# One row per run: system codec want streams put_gbps put_p50 put_p99 get_gbps get_p50 get_p99
ROWS="$WORK/rows"
: >"$ROWS"
record() {  # record SYSTEM CODEC WANT STREAMS < driver output
  local out put get
  out=$(cat)
  echo "$out" | sed 's/^/  /' >&2
  put=$(echo "$out" | awk '/^put:/ {print $2, $5, $8}')
  get=$(echo "$out" | awk '/^get:/ {print $2, $5, $8}')
  [ -n "$put" ] && [ -n "$get" ] || { echo "no put/get lines from $1" >&2; exit 1; }
  echo "$1 $2 $3 $4 $put $get" >>"$ROWS"
}

for round in $(seq 1 "$REPEAT"); do
  echo "round $round of $REPEAT" >&2
  for c in $CONCURRENCY; do
    "$BIN/bench/redis_compare" --redis="127.0.0.1:$REDIS_PORT" --blocks="$BLOCKS" \
      --concurrency="$c" | record redis - - "$c"
    for run in "raw decoded" "int8 decoded" "int8 encoded"; do
      set -- $run
      "$BIN/bench/kvpack_bench" --server="127.0.0.1:$KVPACK_PORT" --namespace=e2e \
        --blocks="$BLOCKS" --concurrency="$c" --codec="$1" --want="$2" |
        record kvpack "$1" "$2" "$c"
    done
  done
done

echo
echo "median of $REPEAT rounds; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
awk '
  function median(list,    n, v, i, j, t) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++) {  # insertion sort; n is small
      t = v[i] + 0
      for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]
      v[j + 1] = t
    }
    return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  {
    id = $1 " " $2 " " $3 " " $4
    if (!(id in seen)) { seen[id] = 1; order[++rows] = id }
    for (f = 5; f <= 10; f++) values[id, f] = values[id, f] " " $f
  }
  END {
    for (r = 1; r <= rows; r++)
      for (f = 5; f <= 10; f++) med[order[r], f] = median(values[order[r], f])
    printf "| system | codec | get | streams | put GB/s | put p50 ms | put p99 ms | get GB/s | get p50 ms | get p99 ms | put vs Redis | get vs Redis |\n"
    printf "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    for (r = 1; r <= rows; r++) {
      id = order[r]
      split(id, k, " ")
      redis = "redis - - " k[4]
      pr = (med[redis, 5] > 0) ? sprintf("%.2fx", med[id, 5] / med[redis, 5]) : "-"
      gr = (med[redis, 8] > 0) ? sprintf("%.2fx", med[id, 8] / med[redis, 8]) : "-"
      printf "| %s | %s | %s | %d | %.3f | %.2f | %.2f | %.3f | %.2f | %.2f | %s | %s |\n",
        k[1], k[2], k[3], k[4], med[id, 5], med[id, 6], med[id, 7], med[id, 8], med[id, 9],
        med[id, 10], pr, gr
    }
  }' "$ROWS"
