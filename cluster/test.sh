#!/usr/bin/env bash
# The whole test suite: installs what is missing, then runs `swift test` (XCTest) and ends with
# one line "N passed, N failed[, N skipped]".
set -uo pipefail
cd "$(dirname "$0")/.."
bash cluster/setup.sh debug >/dev/null || exit 1
# Tools some tests read aedist's files with: h5py (checkpoints), the tensorboard package (event
# files), a headless chromium (the report). Tests that need one fail when it is missing here.
python3 -c 'import h5py, numpy, tensorboard' 2>/dev/null || pip install -q h5py numpy tensorboard 2>&1 | tail -2 || true
if ! command -v chromium-headless-shell >/dev/null && ! command -v chromium >/dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium-headless-shell >/dev/null 2>&1 ||
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium-headless-shell >/dev/null; } || true
fi
export AEDIST_REQUIRE_TEST_TOOLS=1
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
