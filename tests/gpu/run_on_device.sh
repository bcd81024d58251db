#!/usr/bin/env bash
# Builds kvpack's GPU tests and benchmarks on this machine (nvcc, no GPU needed): the codec
# cross-check test and benchmark, and those of the entropy-coded codecs (turbo_e*/turbo_p*/turbo_pc*
# encoded and decoded on the GPU against the CPU's bytes). Bundles them
# with the shared libraries the GPU machine lacks into .device-bundle/, and prints the exact
# command to run there (through the workplace's device tool, carrying .device-bundle).
#
# usage: tests/gpu/run_on_device.sh            build + bundle + print the device command
# On the GPU machine (repository root, .device-bundle carried):
#   bash tests/gpu/run_on_device.sh --device    runs the tests, then the benchmarks
#   bash tests/gpu/run_on_device.sh --profile   Nsight Compute summaries of the int8/turbo
#                                              kernels (one launch each; KERNELS=, TURBO=
#                                              choose) into $OUT/ncu.txt, their SASS into
#                                              $OUT/sass.txt
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

if [ "${1:-}" = "--device" ]; then
  export LD_LIBRARY_PATH=.device-bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  out=${OUT:-/tmp/kvpack-gpu-out}
  mkdir -p "$out"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv || true
  status=0
  .device-bundle/bin/memory_pool_test --gtest_brief=1 2>&1 | tee "$out/memory_pool_test.log" || status=1
  .device-bundle/bin/gpu_codec_test --gtest_brief=1 2>&1 | tee "$out/gpu_codec_test.log" || status=1
  .device-bundle/bin/gpu_calibrated_test --gtest_brief=1 2>&1 |
    tee "$out/gpu_calibrated_test.log" || status=1
  .device-bundle/bin/gpu_codec_benchmark "${@:2}" 2>&1 | tee "$out/gpu_codec_benchmark.log" || status=1
  # CALIBRATED_ARGS: gpu_calibrated_benchmark's (--reps=N --blocks=N --codecs=...).
  # shellcheck disable=SC2086
  .device-bundle/bin/gpu_calibrated_benchmark ${CALIBRATED_ARGS:-} 2>&1 |
    tee "$out/gpu_calibrated_benchmark.log" || status=1
  exit $status
fi

if [ "${1:-}" = "--profile" ]; then
  export LD_LIBRARY_PATH=.device-bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  out=${OUT:-/tmp/kvpack-gpu-out}
  mkdir -p "$out"
  : >"$out/ncu.txt"
  for k in ${KERNELS:-Int8EncodeKernel Int8DecodeKernel TurboEncodeKernel TurboDecodeKernel}; do
    codec=int8; case $k in Turbo*) codec=${TURBO:-turbo3};; Fp8*) codec=fp8_e4m3;; Raw*) codec=raw;; esac
    echo "==== $k ($codec)" >>"$out/ncu.txt"
    timeout 120 ncu --section SpeedOfLight --section Occupancy --section LaunchStats \
      --section ComputeWorkloadAnalysis --section InstructionStats --section WarpStateStats \
      --section MemoryWorkloadAnalysis -k "regex:$k" --launch-skip 2 -c 1 \
      .device-bundle/bin/gpu_codec_benchmark --reps=1 --codecs=$codec >>"$out/ncu.txt" 2>&1 || true
    echo "== $k"
    sed -n "/==== $k/,\$p" "$out/ncu.txt" |
      grep -E 'Memory Throughput|DRAM Throughput|Duration|Compute [(]SM[)] Throughput|Achieved Occupancy|Registers Per|Executed Ipc Active|Issue Slots Busy|Executed Instructions  |Stall' |
      head -16
  done
  # SASS of the bf16 kernels the benchmark runs (head_dim 128), for instruction-level reading.
  cuobjdump -sass .device-bundle/bin/gpu_codec_benchmark 2>/dev/null |
    awk '/Function : /{f=0} /Function : .*(Int8(En|De)codeKernelI13__nv_bfloat16|Turbo(En|De)codeKernelI13__nv_bfloat16Li[34]ELi8E)/{f=1} f{print}' \
    >"$out/sass.txt" || true
  grep -E 'Function :' "$out/sass.txt" || true
  exit 0
fi

# Optimized build; the output folder is asked of Bazel (the bazel-bin link follows whichever
# configuration was built last, possibly by someone else).
binaries=(memory_pool_test gpu_codec_test gpu_codec_benchmark gpu_calibrated_test
          gpu_calibrated_benchmark)
bazel build -c opt --jobs=2 "${binaries[@]/#/\/\/gpu:}"
bin=$(bazel info -c opt bazel-bin 2>/dev/null)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for b in "${binaries[@]}"; do
  cp "$bin/gpu/$b" "$tmp/$b"
  chmod u+w "$tmp/$b"
  strip -g "$tmp/$b"
done
/work/shared/tools/device-bundle "${binaries[@]/#/$tmp/}"
echo
echo "device command (carry [\".device-bundle\"], kind nvidia-h100-x1):"
echo "  bash tests/gpu/run_on_device.sh --device"
