#!/usr/bin/env bash
# CPU codec speed of two builds (say, before and after a codec change), rounds interleaved,
# medians: kvpack_eval on the reference KV and turbo_benchmark on N(0,1) segments, one core.
#
#   bench/codec_cpu_ab.sh BEFORE_DIR AFTER_DIR
#   (each DIR holds a kvpack_eval and a turbo_benchmark, e.g. copies of bazel-bin/codec/ from
#    `bazel build -c opt //codec:kvpack_eval //codec:turbo_benchmark` at each commit)
#
# Environment: DATA (default ../shared/data), REPEAT (default 3), CODECS (kvpack_eval's
# --codecs), FILTER (turbo_benchmark's --benchmark_filter).
set -euo pipefail
[ $# -eq 2 ] || { sed -n 2,10p "$0"; exit 2; }
BEFORE=$1 AFTER=$2
DATA=${DATA:-$(cd "$(dirname "$0")/../../shared/data" && pwd)}
REPEAT=${REPEAT:-3}
CODECS=${CODECS:-'turbo_e3;turbo_p3;turbo_pc3;pc35v3;turbo_p4;turbo_pc4'}
FILTER=${FILTER:-'BM_(Encode|Decode)/(17|2[0-9])/0'}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

for r in $(seq "$REPEAT"); do
  for side in before after; do
    dir=$BEFORE; [ "$side" = after ] && dir=$AFTER
    "$dir/kvpack_eval" --dataset="$DATA/tinylm-dev-kv.safetensors" \
      --queries="$DATA/tinylm-dev-q.safetensors" --head_dim=128 --first_token=384 --count=384 \
      --calibrate_first=0 --calibrate_count=384 --timing_repeats=5 --codecs="$CODECS" 2>&1 |
      awk -v s=$side '!/^#/ && $1 != "codec" {
          split($1, n, ","); print "eval", s, n[1], $(NF-1), $NF }' >>"$OUT"
  done
done
for r in $(seq "$REPEAT"); do
  for side in before after; do
    dir=$BEFORE; [ "$side" = after ] && dir=$AFTER
    "$dir/turbo_benchmark" --benchmark_filter="$FILTER" --benchmark_min_time=0.3 2>/dev/null |
      awk -v s=$side '/^BM_/ { for (i = 1; i <= NF; ++i) if ($i ~ /^bytes_per_second=/) {
          v = $i; sub("bytes_per_second=", "", v); m = v ~ /G\/s$/ ? 1024 : 1; sub("[MG]/s", "", v)
          print "bench", s, $1, $(NF-1), v * m } }' >>"$OUT"
  done
done
python3 - "$OUT" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "eval":
        rows.setdefault(("eval", f[2], "encode GB/s"), {}).setdefault(f[1], []).append(float(f[3]))
        rows.setdefault(("eval", f[2], "decode GB/s"), {}).setdefault(f[1], []).append(float(f[4]))
    else:
        op = "encode MB/s" if f[2].startswith("BM_Encode") else "decode MB/s"
        rows.setdefault(("bench", f[3], op), {}).setdefault(f[1], []).append(float(f[4]))
print("| run | codec | what | before | after | after/before |")
print("|---|---|---|---:|---:|---:|")
for (run, codec, what), v in rows.items():
    b, a = statistics.median(v["before"]), statistics.median(v["after"])
    fmt = lambda x: f"{x:.0f}" if x >= 100 else f"{x:.2f}"
    print(f"| {run} | {codec} | {what} | {fmt(b)} | {fmt(a)} | {a / b:.2f}× |")
PY
