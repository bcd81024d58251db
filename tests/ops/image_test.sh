#!/usr/bin/env bash
# The runtime image, run from its own filesystem: mounts the image built by
# deploy/docker/build_image.sh (buildah mount; `podman run` does not work in this sandbox) and,
# in a chroot of it as the image's user 10001, starts kvpack_server with the image's config
# file, drives it with the image's kvpack CLI (put, get, lookup, stats) and health probe, and
# scrapes /metrics. Also checks what the image is made of: the non-root user, the volume
# directory it owns, every binary's libraries resolved inside the image, and that the image's
# default config (all interfaces, no TLS, no tokens) is refused until waived.
# Needs root and buildah; tagged manual (CI does not build images). Run:
#   deploy/docker/build_image.sh && bazel test //tests/ops:image_test
#   (or tests/ops/image_test.sh [IMAGE] directly)
set -euo pipefail
image=${1:-localhost/kvpack:0.1.0}
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
fail() { echo "FAIL: $*" >&2; [ -n "${mnt:-}" ] && [ -f "$mnt/tmp/server.log" ] && sed 's/^/  server: /' "$mnt/tmp/server.log" >&2; exit 1; }
buildah inspect --type image "$image" >/dev/null 2>&1 || fail "no image $image: run deploy/docker/build_image.sh"

ctr=$(buildah from --quiet "$image")
mnt=$(buildah mount "$ctr")
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  umount "$mnt/proc" "$mnt/dev" 2>/dev/null || true
  buildah umount "$ctr" >/dev/null 2>&1 || true
  buildah rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
mount --bind /dev "$mnt/dev"
mount -t proc proc "$mnt/proc"
in_image() { chroot --userspec=10001:10001 "$mnt" "$@"; }

grep -q '^kvpack:x:10001:10001:' "$mnt/etc/passwd" || fail "no kvpack user 10001"
[ "$(stat -c %u "$mnt/var/lib/kvpack")" = 10001 ] || fail "/var/lib/kvpack not owned by 10001"
config=$(buildah inspect --type image --format '{{.OCIv1.Config.User}} {{.OCIv1.Config.Volumes}} {{.OCIv1.Config.ExposedPorts}}' "$image")
grep -q '^10001:10001 ' <<<"$config" || fail "image user: $config"
grep -q '/var/lib/kvpack' <<<"$config" || fail "image volume: $config"
grep -q '50051/tcp' <<<"$config" && grep -q '9464/tcp' <<<"$config" || fail "exposed ports: $config"
for bin in kvpack_server kvpack kvpack_token kvpack_health_probe; do
  missing=$(chroot "$mnt" ldd "/usr/local/bin/$bin" | grep 'not found' || true)
  [ -z "$missing" ] || fail "$bin: libraries missing in the image: $missing"
done

# The image's own config listens on every interface without TLS or tokens: refused.
if in_image /usr/local/bin/kvpack_server --config=/etc/kvpack/kvpack.yaml >"$mnt/tmp/refused.log" 2>&1; then
  fail "the image's default config started without TLS or a waiver"
fi
grep -q "TLS is off" "$mnt/tmp/refused.log" || fail "refusal: $(cat "$mnt/tmp/refused.log")"

# The server from the image: its config, loopback ports (the chroot shares this network).
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); metrics=$(free_port)
# chroot execs the server, so $! is the server itself (SIGTERM goes to it).
chroot --userspec=10001:10001 "$mnt" /usr/local/bin/kvpack_server --config=/etc/kvpack/kvpack.yaml \
  --ram_capacity=64MiB --listen=127.0.0.1:$port --metrics_listen=127.0.0.1:$metrics \
  >"$mnt/tmp/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "serving on port" "$mnt/tmp/server.log" && break; sleep 0.1; done
grep -q "serving on port $port .*data in /var/lib/kvpack" "$mnt/tmp/server.log" || fail "server did not start"
in_image /usr/local/bin/kvpack_health_probe --server=127.0.0.1:$port || fail "health probe"

head -c 8192 /dev/urandom >"$mnt/tmp/block.bin"
chmod 644 "$mnt/tmp/block.bin"
cli=(in_image /usr/local/bin/kvpack --server=127.0.0.1:$port --namespace=image)
shape=(--layers=2 --kv_heads=2 --head_dim=64 --tokens=8 --dtype=bf16)
"${cli[@]}" put --key=0011 "${shape[@]}" --input=/tmp/block.bin --codec=raw --durable || fail "put"
"${cli[@]}" get --key=0011 --output=/tmp/out.bin || fail "get"
cmp "$mnt/tmp/block.bin" "$mnt/tmp/out.bin" || fail "the block came back different"
# Outputs go to files before grep: `grep -q` closing a pipe early fails the writer (pipefail).
"${cli[@]}" lookup --keys=0011,0022 >"$mnt/tmp/lookup.txt" || fail "lookup"
grep -q "^prefix_length=1 of 2" "$mnt/tmp/lookup.txt" || fail "lookup: $(cat "$mnt/tmp/lookup.txt")"
"${cli[@]}" stats >"$mnt/tmp/stats.txt" || fail "stats"
grep -q "namespaces=image" "$mnt/tmp/stats.txt" || fail "stats: $(cat "$mnt/tmp/stats.txt")"
[ -n "$(ls -A "$mnt/var/lib/kvpack")" ] || fail "nothing written under the volume /var/lib/kvpack"
curl -sf --noproxy '*' -o "$mnt/tmp/metrics.txt" "http://127.0.0.1:$metrics/metrics" || fail "/metrics"
grep -q 'kvpack_build_info{' "$mnt/tmp/metrics.txt" || fail "/metrics has no kvpack_build_info"

kill -TERM "$pid"; wait "$pid" || fail "server exited non-zero on SIGTERM"; pid=""
grep -q "stopped cleanly" "$mnt/tmp/server.log" || fail "no clean stop"
echo "PASS: $image ($(buildah images --format '{{.Size}}' "$image"))"
