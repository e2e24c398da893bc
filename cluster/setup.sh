#!/usr/bin/env bash
# Installs what aedist needs that is missing (Debian/Ubuntu packages), then builds it.
#   bash cluster/setup.sh [release|debug]      (default: release)
# With AEDIST_PREFIX=DIR it also installs the binary as DIR/bin/aedist (put DIR/bin on PATH).
# On a cluster with environment modules, load MPI and HDF5 instead and skip the apt step:
#   AEDIST_SKIP_APT=1 bash cluster/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-release}
packages="libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools hdf5-plugin-lzf liblzf1 zlib1g-dev pkg-config"
if [ -z "${AEDIST_SKIP_APT:-}" ]; then
  missing=""
  for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "setup: installing$missing" >&2
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
  fi
fi
command -v swift >/dev/null || { echo "setup: the Swift toolchain (swift) is not on PATH" >&2; exit 1; }
echo "setup: building aedist ($mode)" >&2
mkdir -p .build
if ! swift build -c "$mode" --product aedist > .build/setup-build.log 2>&1; then
  grep -E 'error' .build/setup-build.log | head -20 >&2
  echo "setup: build failed; the whole log is .build/setup-build.log" >&2
  exit 1
fi
bin="$(swift build -c "$mode" --show-bin-path)/aedist"
[ -x "$bin" ] || { echo "setup: build failed (no $bin)" >&2; exit 1; }
if [ -n "${AEDIST_PREFIX:-}" ]; then
  install -D -m 755 "$bin" "$AEDIST_PREFIX/bin/aedist"
  echo "setup: installed $AEDIST_PREFIX/bin/aedist" >&2
  bin="$AEDIST_PREFIX/bin/aedist"
fi
echo "$bin"
