#!/usr/bin/env bash
# The server on a GPU: builds (here, no GPU needed) end-to-end tests, kvpack_server and the
# bench/kvpack_bench driver, bundles them into .device-bundle-server/ (a device run carries at
# most 64 MiB), and on the GPU machine runs
#   1. the end-to-end tests against a server started with --device=cuda:0 (TESTS, default
#      //tests:put_get_test and //tests/gpu:client_gpu_decode_test — blocks fetched encoded
#      and decoded on the client's GPU),
#   2. `kvpack_bench` against servers started with --device=cpu, --device=cuda:0 and
#      --device=auto, same workload, printing GB/s, p50/p99 and where blocks were encoded.
#
# usage (repository root):
#   tests/gpu/server_on_device.sh                 build + bundle here, print the device command
#   bash tests/gpu/server_on_device.sh --device   on the GPU machine, .device-bundle-server carried
# Environment for --device: BLOCKS (default 512), CONCURRENCY (default 8),
# CODECS (default "int8 k8v4 turbo3"), DEVICES (default "cpu cuda:0 auto"; empty = tests only).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
bundle=.device-bundle-server
read -r -a tests <<<"${TESTS:-//tests:put_get_test //tests/gpu:client_gpu_decode_test}"

if [ "${1:-}" != "--device" ]; then
  bazel build -c opt //service:kvpack_server //bench:kvpack_bench "${tests[@]}"
  bin=$(bazel info -c opt bazel-bin 2>/dev/null)
  paths=()
  for t in "${tests[@]}"; do paths+=("$bin/$(sed 's#^//##; s#:#/#' <<<"$t")"); done
  ../shared/tools/device-bundle -o "$bundle" "$bin/service/kvpack_server" \
    "$bin/bench/kvpack_bench" "${paths[@]}"
  chmod -R u+w "$bundle"
  strip -g "$bundle"/bin/*
  du -sh "$bundle"
  echo "device run: carry [\"$bundle\"], command: bash tests/gpu/server_on_device.sh --device"
  exit 0
fi

export LD_LIBRARY_PATH=$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
out=${OUT:-/tmp/kvpack-server-out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
echo "cpu cores: $(nproc)"
status=0

echo "== end-to-end tests, server on cuda:0"
for t in "${tests[@]}"; do
  t=${t##*:}
  KVPACK_TEST_DEVICE=cuda:0 TEST_TMPDIR=$(mktemp -d) "$bundle/bin/$t" --gtest_brief=1 \
    >"$out/$t.log" 2>&1 && echo "$t: $(grep -E '^\[  PASSED  \]' "$out/$t.log")" \
    || { echo "$t: FAILED"; tail -30 "$out/$t.log"; status=1; }
done

BLOCKS=${BLOCKS:-512}
CONCURRENCY=${CONCURRENCY:-8}
CODECS=${CODECS:-"int8 k8v4 turbo3"}
metrics() {
  python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$1/metrics').read().decode())"
}
for device in ${DEVICES-cpu cuda:0 auto}; do
  data=$(mktemp -d)
  MALLOC_ARENA_MAX=4 "$bundle/bin/kvpack_server" --device=$device --listen=127.0.0.1:50151 \
    --metrics_listen=127.0.0.1:9565 --data_dir="$data" --ram_capacity=16GiB \
    >"$out/server_${device/:/}.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q "serving on port" "$out/server_${device/:/}.log" && break; sleep 0.1; done
  head -2 "$out/server_${device/:/}.log"
  for codec in $CODECS; do
    for want in decoded encoded; do
      echo "== device=$device codec=$codec want=$want"
      "$bundle/bin/kvpack_bench" --server=127.0.0.1:50151 --blocks="$BLOCKS" \
        --concurrency="$CONCURRENCY" --codec="$codec" --want=$want | grep -E "^(put|get|compression)"
    done
  done
  metrics 9565 | grep -E '^kvpack_codec_((en|de)code_seconds_(count|sum)|measured_bytes_per_second|preferred_device)' || true
  kill -TERM $pid; wait $pid || status=1
  rm -rf "$data"
done
exit $status
