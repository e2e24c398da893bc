#!/usr/bin/env bash
# The whole test suite: installs what is missing, then runs `swift test` (XCTest) and ends with
# one line "N passed, N failed[, N skipped]".
set -uo pipefail
cd "$(dirname "$0")/.."
bash cluster/setup.sh debug >/dev/null || exit 1
# h5py reads checkpoints in the interoperability test.
python3 -c 'import h5py, numpy' 2>/dev/null || pip install -q h5py numpy 2>&1 | tail -2 || true
mkdir -p .build
swift test --disable-swift-testing "$@" 2>&1 | tee .build/test.log
status=${PIPESTATUS[0]}
python3 - .build/test.log <<'PY'
import re, sys
runs = re.findall(r"Executed (\d+) tests?, with (?:(\d+) tests? skipped and )?(\d+) failures?", open(sys.argv[1], errors="replace").read())
if runs:
    executed, skipped, failed = (int(x or 0) for x in runs[-1])
    print(f"{executed - skipped - failed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
PY
exit "$status"
