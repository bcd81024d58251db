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
  # As Debian's -slim images: no manuals, documentation (but the copyright files) or
  # translations; no apt lists or caches left behind.
  mmdebstrap --quiet --variant=minbase --include=ca-certificates \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log' \
    bookworm "$tmp/rootfs.tar"
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  tar -C "$mnt" -xf "$tmp/rootfs.tar"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  buildah commit --quiet --format=docker "$ctr" "$base" >/dev/null
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
# the path its package ships (/lib or /usr/lib: Debian 12 merges them), so ask for each form
# in one dpkg query, and check that every library was found.
libs=$(ldd "$context"/bin/* | awk '/=> \//{print $3}' | sort -u)
candidates=$(for lib in $libs; do
  for path in "$lib" "$(readlink -f "$lib")"; do printf '%s\n' "$path" "${path#/usr}" "/usr$path"; done
done | sort -u)
owners=$(dpkg -S $candidates 2>/dev/null || true)
for lib in $libs; do
  grep -q -F "/$(basename "$lib")" <<<"$owners" || grep -q -F "/$(basename "$(readlink -f "$lib")")" <<<"$owners" \
    || { echo "build_image: no Debian package owns $lib" >&2; exit 1; }
done
packages=$(cut -d: -f1 <<<"$owners" | sort -u | tr '\n' ' ')
echo "build_image: runtime packages: $packages"
# Docker's image format: OCI's has no HEALTHCHECK.
buildah bud --quiet --isolation=chroot --format=docker --layers=false --build-arg BASE="$base" \
  --build-arg RUNTIME_PACKAGES="$packages" -t "$image" -f "$context/Dockerfile" "$context" >/dev/null
buildah rmi --prune >/dev/null 2>&1 || true  # the previous build's image, now untagged
echo "build_image: built $image"
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -F "${image%:*}" || true
