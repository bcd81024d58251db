#!/usr/bin/env bash
# CI's crash loop: 20 kill -9 / restart cycles with a fresh seed each run (printed in the
# summary line; rerun with --seed=S to replay the same operation mix). Extra arguments go to
# crash_loop, e.g. `bazel test //tests/crash:crash_loop_test --test_arg=--cycles=5`.
set -euo pipefail
crash_loop=$1
server=$2
shift 2
exec "$crash_loop" --cycles=20 "$@" "$server"
