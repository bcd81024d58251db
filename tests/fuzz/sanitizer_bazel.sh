#!/usr/bin/env bash
# Bazel in kvpack's sanitizer output base: use it for every clang, --config=clang-asan and
# --config=fuzz command, e.g.
#   tests/fuzz/sanitizer_bazel.sh test --config=clang-asan //codec/... //storage/...
#   tests/fuzz/sanitizer_bazel.sh build --config=fuzz //tests/fuzz:block_decode_fuzzer
# Those configs switch the C++ toolchain to clang; in the main output base that would rebuild
# everything for everyone each time someone switched. This one is its own, per checkout:
# $KVPACK_SANITIZER_OUTPUT_BASE if set, else ~/.cache/kvpack-sanitize/<hash of the checkout's
# path>. It makes no bazel-* links in the workspace; find outputs with
#   tests/fuzz/sanitizer_bazel.sh info --config=fuzz bazel-bin
set -euo pipefail
workspace=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "${KVPACK_SANITIZER_OUTPUT_BASE:-}" ]; then
  home=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
  hash=$(printf '%s' "$workspace" | md5sum | cut -c1-12)
  KVPACK_SANITIZER_OUTPUT_BASE="${XDG_CACHE_HOME:-${home:-/tmp}/.cache}/kvpack-sanitize/$hash"
fi
exec bazel --output_base="$KVPACK_SANITIZER_OUTPUT_BASE" "$@"
