#!/usr/bin/env bash
# Installs what kvpack needs, builds the server and runs it in the foreground with its
# defaults (gRPC on 127.0.0.1:50051, /metrics on 127.0.0.1:9464, data in ./kvpack-data).
# Flags are passed through: tools/serve.sh --codec=k8v4 --ram_capacity=4GiB
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bazel build //service:kvpack_server //client:kvpack
exec bazel-bin/service/kvpack_server "$@"
