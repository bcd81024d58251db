#!/usr/bin/env bash
# End-to-end comparison on loopback: starts a kvpack server and a redis-server on free ports,
# runs the same workload (bench/workload.h: 2 MiB blocks, BLOCKS of them, each put to a new
# key and then got back, from STREAMS concurrent streams) through
#   kvpack           bench/kvpack_bench, codecs raw and int8; gets decoded on the server, and
#                    for int8 also fetched encoded and decoded on the client inside the timed get;
#   redis_compare    bench/redis_compare: SET/GET of the same block bytes through hiredis, timed
#                    by the same code as kvpack_bench (bench/workload.h), every GET verified;
#   redis-benchmark  Redis's own tool, one 2 MiB value per request, STREAMS connections, no
#                    pipelining (-d 2097152 -n BLOCKS -c STREAMS -P 1):
#                      SET  `-t set -r 1000000000` in db 1: BLOCKS new keys, as every put of
#                           the other two drivers stores a new key (db 1 is then emptied with
#                           FLUSHDB ASYNC, as redis_compare deletes its keys);
#                      GET  `-t get -r BLOCKS` in db 0, over keys key:0..BLOCKS-1 written once
#                           (untimed) before the first round, so every GET hits a 2 MiB value;
# at concurrency 1 and 8, and prints one table with kvpack/Redis throughput ratios.
#
# The Redis baseline: Redis is measured by both clients, in the same rounds, because a client
# can under-measure it. Each kvpack ratio is taken against the BETTER of the two Redis medians
# in that column at the same stream count: put against the faster SET (redis_compare or
# redis-benchmark), get against the faster GET. The Redis rows show their own ratio to that
# baseline; the lines under the table say which client set it.
# Both servers reuse the memory of deleted blocks. kvpack_server keeps freed blocks on its
# heap (mallopt in service/main.cc); redis-server gets the same from jemalloc through
# REDIS_MALLOC_CONF: no purging of freed pages (dirty/muzzy decay off) and freed extents
# reused for any smaller request (lg_extent_max_active_fit). As shipped, Redis hands freed
# pages back to the kernel, or leaves coalesced free extents unused, and faults fresh pages
# in for each new 2 MiB value, which on a VM made its SETs up to 10x slower (RESULTS.md,
# fair-baseline run).
#
#   bench/run_e2e.sh                       # 256 blocks of 32x8x128x16 bf16 (2 MiB each)
#   BLOCKS=512 CONCURRENCY="1 4 8" REPEAT=5 bench/run_e2e.sh
#
# Every configuration runs REPEAT times, the rounds interleaved (within a round, per stream
# count: redis_compare, redis-benchmark, then the kvpack runs) so that a burst of load on a
# shared machine hits all systems alike; the table shows the median of each column. A first
# round that is not counted lets both servers fault in the memory their blocks take.
#
# Environment: BLOCKS (default 256), CONCURRENCY (default "1 8"), REPEAT (default 3),
# KVPACK_RUNS (the kvpack rows, see below), BIN_DIR (prebuilt binaries instead of a build),
# KVPACK_SERVER_FLAGS (extra server flags), REDIS_MALLOC_CONF (redis-server's jemalloc
# options, default "dirty_decay_ms:-1,muzzy_decay_ms:-1,lg_extent_max_active_fit:63"; empty
# = Redis as shipped), BAZEL (default bazel). Builds with -c opt first.
# Needs redis-server, redis-cli and redis-benchmark (Debian redis-server and redis-tools,
# which tools/setup.sh installs).
set -euo pipefail
cd "$(dirname "$0")/.."

BLOCKS=${BLOCKS:-256}
CONCURRENCY=${CONCURRENCY:-"1 8"}
REPEAT=${REPEAT:-3}
BAZEL=${BAZEL:-bazel}
KVPACK_SERVER_FLAGS=${KVPACK_SERVER_FLAGS:-}
REDIS_MALLOC_CONF=${REDIS_MALLOC_CONF-dirty_decay_ms:-1,muzzy_decay_ms:-1,lg_extent_max_active_fit:63}
# Raw bytes of the workload's block (32 layers x 2 x 16 tokens x 8 heads x 128 dims, bf16):
# redis-benchmark's value size (kvpack_bench and redis_compare use that layout by default).
VALUE_BYTES=2097152

for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "$tool not found (tools/setup.sh installs it)" >&2; exit 1; }
done

# BIN_DIR: prebuilt binaries (kvpack_server, kvpack, kvpack_bench, redis_compare in one
# folder, as on a GPU machine that cannot build); otherwise they are built here.
if [ -n "${BIN_DIR:-}" ]; then
  SERVER_BIN=$BIN_DIR/kvpack_server CLI_BIN=$BIN_DIR/kvpack
  BENCH_BIN=$BIN_DIR/kvpack_bench REDIS_COMPARE_BIN=$BIN_DIR/redis_compare
else
  "$BAZEL" build -c opt //service:kvpack_server //client:kvpack //bench:kvpack_bench \
    //bench:redis_compare >&2
  BIN=$("$BAZEL" info -c opt bazel-bin 2>/dev/null)
  SERVER_BIN=$BIN/service/kvpack_server CLI_BIN=$BIN/client/kvpack
  BENCH_BIN=$BIN/bench/kvpack_bench REDIS_COMPARE_BIN=$BIN/bench/redis_compare
fi
# The kvpack runs, ';'-separated: "CODEC WANT [kvpack_bench flags]", e.g.
# "turbo3 encoded --gpu_decode" (decoded on this machine's GPU inside the timed get).
KVPACK_RUNS=${KVPACK_RUNS:-"raw decoded;int8 decoded;int8 encoded"}

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
"$SERVER_BIN" --listen="127.0.0.1:$KVPACK_PORT" \
  --metrics_listen="127.0.0.1:$METRICS_PORT" --data_dir="$WORK/kvpack" \
  --ram_capacity=4GiB $KVPACK_SERVER_FLAGS >"$WORK/kvpack.log" 2>&1 &
KVPACK_PID=$!
MALLOC_CONF=$REDIS_MALLOC_CONF redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
  --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!

for _ in $(seq 1 100); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "redis-server did not start" >&2; exit 1; }
"$CLI_BIN" --server="127.0.0.1:$KVPACK_PORT" --connect_timeout=10 stats >/dev/null || {
  echo "kvpack_server did not start:" >&2; cat "$WORK/kvpack.log" >&2; exit 1; }

# redis-benchmark's keyspace: key:000000000000 .. key:<BLOCKS-1>, 12 digits as its -r writes
# them, each a VALUE_BYTES value, written through redis-cli's mass-insert mode.
python3 - "$BLOCKS" "$VALUE_BYTES" <<'PY' | redis-cli -p "$REDIS_PORT" --pipe >"$WORK/fill.log"
import sys
blocks, size = int(sys.argv[1]), int(sys.argv[2])
value = b"x" * size
out = sys.stdout.buffer
for i in range(blocks):
    key = b"key:%012d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n" % (len(key), key, size) + value + b"\r\n")
PY
[ "$(redis-cli -p "$REDIS_PORT" dbsize)" -ge "$BLOCKS" ] || {
  echo "filling redis-benchmark's keyspace failed:" >&2; cat "$WORK/fill.log" >&2; exit 1; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"\
     "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average"\
     "$(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "redis-server $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'),"\
     "MALLOC_CONF=\"$REDIS_MALLOC_CONF\"; $BLOCKS blocks of 2 MiB per run"
echo

# redis-benchmark's SET and GET runs as the drivers' "put:" and "get:" lines. Its CSV has
# "SET","rps","avg","min","p50","p95","p99","max" with latencies in ms;
# GB/s = requests/s x VALUE_BYTES / 1e9.
redis_benchmark() {  # redis_benchmark STREAMS
  local base=(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -d "$VALUE_BYTES" -n "$BLOCKS"
              -c "$1" -P 1 --csv)
  {
    "${base[@]}" -t set --dbnum 1 -r 1000000000
    redis-cli -p "$REDIS_PORT" -n 1 flushdb async >/dev/null
    "${base[@]}" -t get -r "$BLOCKS"
  } | awk -F, -v bytes="$VALUE_BYTES" '
      { gsub(/"/, "") }
      $1 == "SET" || $1 == "GET" {
        printf "%s: %.3f GB/s  p50 %.3f ms  p99 %.3f ms  (%s requests/s)\n",
          ($1 == "SET") ? "put" : "get", $2 * bytes / 1e9, $5, $7, $2
      }'
}

# One row per run: system codec want streams put_gbps put_p50 put_p99 get_gbps get_p50 get_p99
ROWS="$WORK/rows"
: >"$ROWS"
record() {  # record SYSTEM CODEC WANT STREAMS < driver output; ROUND 0 is not counted
  local out put get
  out=$(cat)
  echo "$out" | sed 's/^/  /' >&2
  [ "$ROUND" -gt 0 ] || return 0
  put=$(echo "$out" | awk '/^put:/ {print $2, $5, $8}')
  get=$(echo "$out" | awk '/^get:/ {print $2, $5, $8}')
  [ -n "$put" ] && [ -n "$get" ] || { echo "no put/get lines from $1" >&2; exit 1; }
  echo "$1 $2 $3 $4 $put $get" >>"$ROWS"
}

# The warm-up round checks every block that comes back (both drivers compare bytes); the
# counted rounds do not, as redis-benchmark does not: no client pays for a check the others
# skip.
for ROUND in $(seq 0 "$REPEAT"); do
  if [ "$ROUND" -eq 0 ]; then echo "warm-up round (not counted; every block verified)" >&2
  else echo "round $ROUND of $REPEAT" >&2; fi
  VERIFY=$([ "$ROUND" -eq 0 ] && echo true || echo false)
  for c in $CONCURRENCY; do
    "$REDIS_COMPARE_BIN" --redis="127.0.0.1:$REDIS_PORT" --blocks="$BLOCKS" \
      --concurrency="$c" --verify="$VERIFY" | record redis_compare - - "$c"
    redis_benchmark "$c" | record redis-benchmark - - "$c"
    IFS=';' read -r -a runs <<<"$KVPACK_RUNS"
    for run in "${runs[@]}"; do
      set -- $run
      want=$2
      [[ " ${*:3} " == *" --gpu_decode "* ]] && want="$2+gpu"
      "$BENCH_BIN" --server="127.0.0.1:$KVPACK_PORT" --namespace=e2e \
        --blocks="$BLOCKS" --concurrency="$c" --codec="$1" --want="$2" --verify="$VERIFY" \
        "${@:3}" | record kvpack "$1" "$want" "$c"
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
  function label(name) {
    return name == "kvpack" ? "kvpack" : "Redis (" name ")"
  }
  {
    id = $1 " " $2 " " $3 " " $4
    if (!(id in seen)) { seen[id] = 1; order[++rows] = id }
    if (!($4 in seen_streams)) { seen_streams[$4] = 1; streams[++nstreams] = $4 }
    for (f = 5; f <= 10; f++) values[id, f] = values[id, f] " " $f
  }
  END {
    for (r = 1; r <= rows; r++)
      for (f = 5; f <= 10; f++) med[order[r], f] = median(values[order[r], f])
    # The baseline of each throughput column: the better of the two Redis medians.
    for (s = 1; s <= nstreams; s++) {
      c = streams[s]
      for (f = 5; f <= 8; f += 3) {
        a = med["redis_compare - - " c, f] + 0
        b = med["redis-benchmark - - " c, f] + 0
        best[c, f] = (a >= b) ? a : b
        best_by[c, f] = (a >= b) ? "redis_compare" : "redis-benchmark"
      }
    }
    printf "| system | codec | get | streams | put GB/s | put p50 ms | put p99 ms | get GB/s | get p50 ms | get p99 ms | put vs best Redis | get vs best Redis |\n"
    printf "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    for (r = 1; r <= rows; r++) {
      id = order[r]
      split(id, k, " ")
      pr = (best[k[4], 5] > 0) ? sprintf("%.2fx", med[id, 5] / best[k[4], 5]) : "-"
      gr = (best[k[4], 8] > 0) ? sprintf("%.2fx", med[id, 8] / best[k[4], 8]) : "-"
      printf "| %s | %s | %s | %d | %.3f | %.2f | %.2f | %.3f | %.2f | %.2f | %s | %s |\n",
        label(k[1]), k[2], k[3], k[4], med[id, 5], med[id, 6], med[id, 7], med[id, 8],
        med[id, 9], med[id, 10], pr, gr
    }
    printf "\nRedis baseline (the better of redis_compare and redis-benchmark, per column):\n"
    for (s = 1; s <= nstreams; s++) {
      c = streams[s]
      printf "  %d stream%s: put %.3f GB/s (%s SET), get %.3f GB/s (%s GET)\n", c,
        (c == 1) ? "" : "s", best[c, 5], best_by[c, 5], best[c, 8], best_by[c, 8]
    }
  }' "$ROWS"
