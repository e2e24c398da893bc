#!/usr/bin/env bash
# Training throughput of aedist `bench step` and its PyTorch peer (PEER, default
# cluster/bench/torch_peer.py: the same models in PyTorch), the
# MNIST VAE at batch 128, interleaved in one run on one machine: REPS rounds, each running every
# setting of both once. JSON lines to OUT; then medians and ratios (python3).
# Usage: bash cluster/bench/compare_step.sh [REPS=5] [OUT=bench-step.jsonl]
# Env: AEDIST (binary), PY (python with torch), DATA (mnist.h5), STEPS (timed steps, 100),
#      CONFIG and MODEL (the run and the peer's --model: configs/mnist-vae.yaml and vae by default;
#      configs/mnist-conv-vae.yaml and convvae for the convolutional VAE),
#      OVERLAPS (the np = 2 settings with train.overlap_reduction on and off: "on off"),
#      SHARED (the np = 2 settings with train.shared_memory true and false: "true false").
set -u
REPS=${1:-5}
OUT=${2:-bench-step.jsonl}
source "$(dirname "$0")/common.sh"
STEPS=${STEPS:-100}
CONFIG=${CONFIG:-$here/configs/mnist-vae.yaml}
MODEL=${MODEL:-vae}
A="bench step --config $CONFIG --set data.path=$DATA --steps $STEPS --warmup 10"
for rep in $(seq "$REPS"); do
  $AEDIST $A --threads 1 | tag "aedist 1x1"
  OMP_NUM_THREADS=1 $PY "$PEER" --data "$DATA" --model $MODEL --threads 1 --steps $STEPS --warmup 10 | tail -1 | tag "torch 1x1"
  $AEDIST $A --threads 2 | tag "aedist 1x2"
  OMP_NUM_THREADS=2 $PY "$PEER" --data "$DATA" --model $MODEL --threads 2 --steps $STEPS --warmup 10 | tail -1 | tag "torch 1x2"
  for ov in ${OVERLAPS:-on off}; do
    for sm in ${SHARED:-true false}; do
      B="$A --threads 1 --overlap $ov --set train.shared_memory=$sm"
      mpirun --bind-to core -np 2 $AEDIST $B | tag "aedist 2x1 global128 overlap $ov shm $sm"
      mpirun --bind-to core -np 2 $AEDIST $B --per-rank-batch 128 | tag "aedist 2x1 per-rank128 overlap $ov shm $sm"
    done
  done
  if [ "${DDP:-1}" = 1 ]; then
    OMP_NUM_THREADS=1 $PY "$PEER" --data "$DATA" --model $MODEL --threads 1 --ddp 2 --global-batch --steps $STEPS --warmup 10 --port $((29650+rep)) | tail -1 | tag "torch 2x1 global128"
  fi
done
python3 - "$OUT" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["setting"], []).append(r.get("samples_per_second") or r.get("samples_per_s"))
med = {k: st.median(v) for k, v in by.items()}
for k, v in sorted(by.items()):
    print(f"{k:46s} median {med[k]:8.0f} samples/s  runs {[round(x) for x in v]}")
best_torch = max(med.get("torch 1x2", 0), med.get("torch 1x1", 0))
for k in med:
    if k.startswith("aedist") and best_torch:
        print(f"{k:46s} / best torch 2-core setting ({best_torch:.0f}): {med[k] / best_torch:.2f}x")
if "aedist 1x2" in med:
    for k in med:
        if k.startswith("aedist 2x1 global128"):
            print(f"{k:46s} / aedist 1x2 ({med['aedist 1x2']:.0f}): {med[k] / med['aedist 1x2']:.2f}x")
PY
