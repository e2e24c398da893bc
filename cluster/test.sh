#!/usr/bin/env bash
# The whole test suite: installs what is missing, then runs `swift test`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash cluster/setup.sh debug >/dev/null
# h5py reads checkpoints in the interoperability test.
python3 -c 'import h5py, numpy' 2>/dev/null || pip install -q h5py numpy 2>&1 | tail -2 || true
swift test "$@"
