#!/usr/bin/env bash
# Builds the kvpack runtime image with buildah (no daemon, no registry):
#   1. a Debian 12 base image made locally with mmdebstrap (minbase), imported once as
#      localhost/kvpack-base:bookworm (kept; rebuilt only with REBUILD_BASE=1);
#   2. the Bazel binaries, stripped, staged with the Dockerfile, and the Debian packages that
#      hold the shared libraries they link (ldd + dpkg -S, mapped to their runtime packages);
#   3. `buildah bud --isolation=chroot` (RUN steps in a chroot; no container runtime needed).
# Prints the image's size. Needs root, buildah, mmdebstrap and Debian's package mirror.
#   deploy/docker/build_image.sh [IMAGE_NAME]        (default localhost/kvpack:0.1.0)
set -euo pipefail
cd "$(dirname "$0")/../.."
image=${1:-localhost/kvpack:0.1.0}
base=localhost/kvpack-base:bookworm
export BUILDAH_ISOLATION=chroot STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}

if [ -n "${REBUILD_BASE:-}" ] || ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  echo "build_image: making $base with mmdebstrap"
  tmp=$(mktemp -d)
  mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$tmp/rootfs.tar"
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  tar -C "$mnt" -xf "$tmp/rootfs.tar"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  buildah commit --quiet "$ctr" "$base" >/dev/null
  buildah rm "$ctr" >/dev/null
  rm -rf "$tmp"
fi

targets=(//service:kvpack_server //client:kvpack //service:kvpack_token //service:kvpack_health_probe)
bazel build "${targets[@]}"
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/bin"
for t in "${targets[@]}"; do
  bin="bazel-bin/$(sed 's|^//||; s|:|/|' <<<"$t")"
  install -m 0755 "$bin" "$context/bin/"
  strip --strip-debug "$context/bin/$(basename "$bin")"
done
cp deploy/docker/Dockerfile deploy/docker/kvpack.yaml "$context/"

# The runtime packages: the package owning each linked library. dpkg records a library under
# the path its package ships (/lib or /usr/lib: Debian 12 merges them), so try both.
owner() {
  local path real
  for path in "$1" "$(readlink -f "$1")"; do
    for real in "$path" "${path#/usr}" "/usr$path"; do
      dpkg -S "$real" 2>/dev/null | cut -d: -f1 && return 0
    done
  done
  echo "build_image: no package owns $1" >&2; return 1
}
packages=$(for lib in $(ldd "$context"/bin/* | awk '/=> \//{print $3}' | sort -u); do owner "$lib"; done \
  | sort -u | tr '\n' ' ')
echo "build_image: runtime packages: $packages"
buildah bud --quiet --isolation=chroot --layers=false --build-arg BASE="$base" \
  --build-arg RUNTIME_PACKAGES="$packages" -t "$image" -f "$context/Dockerfile" "$context" >/dev/null
echo "build_image: built $image"
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -F "${image%:*}" || true
