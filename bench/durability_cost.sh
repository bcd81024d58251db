#!/usr/bin/env bash
# What the durability contract costs: put throughput of two kvpack_server binaries (say, the
# build before and after a storage change) on the same workload, rounds interleaved, medians.
#
#   bench/durability_cost.sh BEFORE_SERVER AFTER_SERVER KVPACK_CLI KVPACK_BENCH
#   (KVPACK_CLI: bazel-bin/client/kvpack, KVPACK_BENCH: bazel-bin/bench/kvpack_bench)
#
# Workloads (2 MiB raw blocks, codec raw, `kvpack_bench`, --concurrency 1 and 8):
#   ram      non-durable puts into a RAM tier that holds them all (no disk write)
#   spill    non-durable puts into a 64 MiB RAM tier (almost every block spills to RocksDB)
#   disk     non-durable puts with --ram_capacity=0 (acknowledged TIER_DISK)
#   durable  durable puts (--durable: acknowledged once synced to disk)
# Environment: BLOCKS (default 256), REPEAT (default 3), CONCURRENCY (default "1 8").
set -euo pipefail
[ $# -eq 4 ] || { sed -n 2,13p "$0"; exit 2; }
BEFORE=$1 AFTER=$2 CLI=$3 BENCH=$4
BLOCKS=${BLOCKS:-256}
REPEAT=${REPEAT:-3}
CONCURRENCY=${CONCURRENCY:-"1 8"}
WORK=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run SERVER WORKLOAD CONCURRENCY -> prints the put GB/s
run() {
  local server=$1 workload=$2 conc=$3 ram=4GiB durable=false port
  case $workload in
    spill) ram=64MiB ;;
    disk) ram=0 ;;
    durable) durable=true ;;
  esac
  port=$(free_port)
  rm -rf "$WORK/data"
  "$server" --listen=127.0.0.1:$port --metrics_listen= --data_dir="$WORK/data" \
    --ram_capacity=$ram --disk_capacity=16GiB --codec=raw 2>"$WORK/server.log" &
  PID=$!
  for _ in $(seq 100); do
    "$CLI" --server=127.0.0.1:$port stats >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$BENCH" --server=127.0.0.1:$port --namespace=bench --blocks=$BLOCKS \
    --concurrency=$conc --codec=raw --durable=$durable --keep >"$WORK/bench.txt"
  kill $PID; wait $PID 2>/dev/null || true; PID=""
  awk '/^put/ { for (i = 1; i <= NF; ++i) if ($(i+1) == "GB/s") { print $i; exit } }' \
    "$WORK/bench.txt"
}

declare -A results
for round in $(seq "$REPEAT"); do
  for workload in ram spill disk durable; do
    for conc in $CONCURRENCY; do
      for which in before after; do
        server=$BEFORE; [ $which = after ] && server=$AFTER
        results[$workload,$conc,$which]+="$(run "$server" $workload $conc) "
      done
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
printf "%-8s %4s %12s %12s %7s   (put GB/s, median of %d; rounds)\n" workload conc before after ratio "$REPEAT"
for workload in ram spill disk durable; do
  for conc in $CONCURRENCY; do
    b=$(echo "${results[$workload,$conc,before]}" | median)
    a=$(echo "${results[$workload,$conc,after]}" | median)
    printf "%-8s %4s %12s %12s %7.2f   [%s| %s]\n" $workload $conc "$b" "$a" \
      "$(awk -v a="$a" -v b="$b" 'BEGIN { print (b > 0 ? a / b : 0) }')" \
      "${results[$workload,$conc,before]}" "${results[$workload,$conc,after]}"
  done
done
