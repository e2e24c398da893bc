#!/usr/bin/env bash
# The default job: install what is missing, build (release), train the digits VAE on 2 ranks,
# and say where the results are.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(bash cluster/setup.sh release)"
AEDIST="$bin" bash cluster/local.sh -n 2 -- --config configs/digits-vae.yaml "$@"
cat <<MSG

Results in runs/digits-vae/:
  config.yaml     the resolved configuration
  metrics.jsonl   one JSON object per logged step and per epoch's test evaluation
  checkpoints/    HDF5 checkpoints (inspect one: $bin inspect runs/digits-vae/checkpoints/<file>)
Evaluate the last one: $bin eval --checkpoint "\$(ls runs/digits-vae/checkpoints/*.h5 | tail -1)"
To type plain 'aedist' as README.md does: export PATH="$(dirname "$bin"):\$PATH"
MSG
