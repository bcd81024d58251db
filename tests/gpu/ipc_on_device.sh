#!/usr/bin/env bash
# The CUDA IPC device path on one GPU: builds (here, no GPU needed) kvpack_server,
# //tests/gpu:ipc_test and //tests/gpu:ipc_benchmark, bundles them into .device-bundle-ipc/,
# and on the GPU machine starts a kvpack_server process on cuda:0, runs the test (this
# process is the client) and the benchmark against it, and prints the server's device-channel
# metrics.
#
# usage (repository root):
#   tests/gpu/ipc_on_device.sh                 build + bundle here, print the device command
#   bash tests/gpu/ipc_on_device.sh --device   on the GPU machine, .device-bundle-ipc carried
# Environment for --device: CODECS (benchmark, default "raw;int8;turbo3"), BATCH (default 8),
# LANES (the server's --device_lanes, default 8), TIER (its --device_tier, default 0 = none; the
# test then also checks the device tier's answers), CALL_MIB (the benchmark's --call_mib),
# INFLIGHT (the benchmark's --inflight), GRPC=0 (the benchmark skips the gRPC columns), BENCH=0 skips the benchmark. The server runs
# with --device_stage_log: each benchmark row's channel prints where its time went.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
bundle=.device-bundle-ipc

if [ "${1:-}" != "--device" ]; then
  bazel build -c opt //service:kvpack_server //tests/gpu:ipc_test //tests/gpu:ipc_benchmark \
    //gpu:pinned_staging_test
  bin=$(bazel info -c opt bazel-bin 2>/dev/null)
  rm -rf "$bundle"
  ../shared/tools/device-bundle -o "$bundle" "$bin/service/kvpack_server" \
    "$bin/tests/gpu/ipc_test" "$bin/tests/gpu/ipc_benchmark" "$bin/gpu/pinned_staging_test"
  chmod -R u+w "$bundle"
  strip -g "$bundle"/bin/*
  du -sh "$bundle"
  echo "device run: carry [\"$bundle\"], command: bash tests/gpu/ipc_on_device.sh --device"
  exit 0
fi

export LD_LIBRARY_PATH=$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
out=${OUT:-/tmp/kvpack-ipc-out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
data=$(mktemp -d)
"$bundle/bin/kvpack_server" --device=cuda:0 --listen=127.0.0.1:50151 \
  --metrics_listen=127.0.0.1:9565 --data_dir="$data" --ram_capacity=16GiB \
  --device_channel_idle_seconds=3 --device_channels=8 --nccl=on --device_lanes="${LANES:-8}" \
  --device_tier="${TIER:-0}" --device_stage_log >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT  # the port is free again on return
for _ in $(seq 100); do
  grep -q "serving on port" "$out/server.log" 2>/dev/null && break
  sleep 0.2
done
export KVPACK_TEST_TARGET=127.0.0.1:50151
if [ "${TIER:-0}" != 0 ]; then export KVPACK_TEST_DEVICE_TIER=1; fi
status=0
echo "== ipc_test (client process) against kvpack_server --device=cuda:0"
timeout 300 "$bundle/bin/ipc_test" --gtest_brief=1 >"$out/ipc_test.log" 2>&1 \
  && grep -E '^\[  PASSED  \]' "$out/ipc_test.log" \
  || { echo "ipc_test: FAILED"; tail -60 "$out/ipc_test.log"; status=1; }
echo "== pinned_staging_test"
timeout 60 "$bundle/bin/pinned_staging_test" --gtest_brief=1 2>&1 | tail -3 || status=1
if [ "${BENCH:-1}" != 0 ]; then
  echo "== ipc_benchmark"
  timeout 240 "$bundle/bin/ipc_benchmark" --target=127.0.0.1:50151 \
    --codecs="${CODECS:-raw;int8;turbo3}" --batch="${BATCH:-8}" --call_mib="${CALL_MIB:-0}" \
    --inflight="${INFLIGHT:-1}" \
    --grpc="$([ "${GRPC:-1}" = 0 ] && echo false || echo true)" 2>&1 | tee "$out/ipc_benchmark.log" \
    || status=1
fi
sleep 4  # past --device_channel_idle_seconds: channels of clients that vanished are closed
python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9565/metrics').read().decode())" \
  >"$out/metrics.txt" 2>&1 || true
grep -E '^kvpack_device_' "$out/metrics.txt" || true
echo "== stage times per channel (one line per benchmark row, put and get together)"
grep "device channel" "$out/server.log" | sed 's/^kvpack_server: device channel [0-9a-f]* closed: //' || true
kill -0 $server 2>/dev/null && echo "server still running" || { echo "server DIED"; status=1; }
tail -5 "$out/server.log"
exit $status
