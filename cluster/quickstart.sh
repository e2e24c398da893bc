#!/usr/bin/env bash
# The default job: install what is missing, build (release), train the digits VAE on 2 ranks,
# write its report and say where the results are.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(bash cluster/setup.sh release)"
AEDIST="$bin" bash cluster/local.sh -n 2 -- --config configs/digits-vae.yaml "$@"
"$bin" report runs/digits-vae
cat <<MSG

Results in runs/digits-vae/:
  report/index.html        the run's report: loss curves, reconstructions, samples, latent map (open it in a browser)
  config.yaml              the resolved configuration
  metrics.jsonl            one JSON object per logged step and per epoch's evaluations
  events.out.tfevents.*    the same for TensorBoard: tensorboard --logdir runs/digits-vae
  summary.json             the run's last summary line
  checkpoints/             HDF5 checkpoints (inspect one: $bin inspect runs/digits-vae/checkpoints/<file>)
Evaluate the last one: $bin eval --checkpoint "\$(ls runs/digits-vae/checkpoints/*.h5 | tail -1)"
To type plain 'aedist' as README.md does: export PATH="$(dirname "$bin"):\$PATH"
MSG
