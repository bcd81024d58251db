#!/usr/bin/env bash
# What --auth_tokens adds to a small call: starts two kvpack_servers alike but for the token file
# (CPU codecs, 2 workers, no /metrics), makes a token with kvpack_token, and runs auth_latency
# against both (Lookup of one key, interleaved). Arguments after BIN_DIR go to auth_latency.
#
#   bench/auth_latency.sh "$(bazel info bazel-bin)" --calls=2000 --rounds=400
#   AA=1 bench/auth_latency.sh ...   # control: the second server has no token file either
#                                    # (the client still sends its token, which is ignored)
#
# BIN_DIR holds service/kvpack_server, service/kvpack_token and bench/auth_latency.
set -euo pipefail
BIN=$1; shift
W=$(mktemp -d "${TMPDIR:-/tmp}/auth-latency-XXXXXX")
cd "$W"
"$BIN/service/kvpack_token" new --rights=read,write --namespaces=auth-latency \
  --token_out=client.token >tokens 2>/dev/null
start() {  # name, extra server flags...; prints the port
  local name=$1; shift
  "$BIN/service/kvpack_server" --listen=127.0.0.1:0 --metrics_listen= --data_dir="$W/$name" \
    --device=cpu --worker_threads=2 "$@" >"$name.log" 2>&1 &
  echo $! >"$name.pid"
  for _ in $(seq 100); do grep -q "serving on port" "$name.log" && break; sleep 0.1; done
  sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$name.log"
}
trap 'kill $(cat "$W"/*.pid) 2>/dev/null || true; rm -rf "$W"' EXIT
open_port=$(start open)
if [ -n "${AA:-}" ]; then
  auth_port=$(start auth)
else
  auth_port=$(start auth --auth_tokens="$W/tokens")
fi
"$BIN/bench/auth_latency" --open_server=127.0.0.1:$open_port --auth_server=127.0.0.1:$auth_port \
  --token_file=client.token "$@"
