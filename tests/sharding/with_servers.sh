#!/usr/bin/env bash
# with_servers.sh SERVER_BIN N CMD [ARGS...]: starts N kvpack servers on loopback (free
# ports, a fresh data directory each, CPU codecs), runs CMD with KVPACK_TARGETS set to their
# comma-separated "127.0.0.1:PORT" list (and KVPACK_SERVER_BIN to SERVER_BIN), stops the
# servers, and exits with CMD's status.
set -euo pipefail
server_bin=$1
count=$2
shift 2
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/kvpack-servers-XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
targets=()
for i in $(seq 1 "$count"); do
  # The log exists before the server starts: the background child opens its redirection
  # only after the fork, and reading a log not yet created would end this script early.
  log="$work/server$i.log"
  : >"$log"
  "$server_bin" --listen=127.0.0.1:0 --metrics_listen= --data_dir="$work/data$i" \
    --device=cpu --worker_threads=2 --shutdown_announce_seconds=0 2>>"$log" &
  pids+=($!)
  port=""
  for _ in $(seq 1 200); do
    port=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && break
    sleep 0.05
  done
  if [ -z "$port" ]; then
    echo "with_servers: server $i did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
  targets+=("127.0.0.1:$port")
done
KVPACK_TARGETS=$(IFS=,; echo "${targets[*]}")
export KVPACK_TARGETS KVPACK_SERVER_BIN="$server_bin"
"$@"
