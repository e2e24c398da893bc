#!/usr/bin/env bash
# Peak memory per rank and training throughput of the MNIST VAE in each data.residency, with
# PyTorch DDP's peak memory per process (PEER, default cluster/bench/torch_peer.py: the same model
# in PyTorch) measured beside it, interleaved: REPS rounds, each running every setting once.
# JSON lines to OUT; then medians and ratios (python3).
# Usage: bash cluster/bench/compare_residency.sh [REPS=3] [OUT=bench-residency.jsonl]
# Env: AEDIST (binary), PY (python with torch), DATA (mnist.h5), PEER, STEPS (trained steps, 200),
#      NPS (rank counts, "2 4 8"; oversubscribed on a small machine: memory is per rank, and only
#      the np = 2 throughput is meaningful on 2 cores), SHUFFLE (blocks).
set -u
REPS=${1:-3}
OUT=${2:-bench-residency.jsonl}
source "$(dirname "$0")/common.sh"
STEPS=${STEPS:-200}
SHUFFLE=${SHUFFLE:-blocks}
run=$(mktemp -d)
trap 'rm -rf "$run"' EXIT
train() {  # np residency shuffle
  rm -rf "$run/r"
  timeout 600 mpirun --oversubscribe --bind-to none -np "$1" "$AEDIST" train --config "$here/configs/mnist-vae.yaml" \
    --set data.path="$DATA" --set train.max_steps="$STEPS" --set data.residency="$2" --set data.shuffle="$3" \
    --set train.log_every=100000 --set train.checkpoint_every=100000 --run-dir "$run/r" --resume never \
    --threads 1 2>/dev/null | tail -1 | tag "aedist np=$1 $2 $3"
}
for rep in $(seq "$REPS"); do
  for np in ${NPS:-2 4 8}; do
    for residency in replicated sharded streamed; do train "$np" "$residency" "$SHUFFLE"; done
    [ "$np" = 2 ] && train 2 streamed rows
    kib=$( { OMP_NUM_THREADS=1 /usr/bin/time -f "%M" $PY "$PEER" --data "$DATA" --model vae --threads 1 --ddp "$np" \
             --global-batch --steps "$STEPS" --warmup 10 --port $((29700 + rep * 10 + np)) > "$run/peer.out"; } 2>&1 | tail -1)
    sps=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    l=l.strip()
    if l.startswith("{"): d=json.loads(l)
print(d.get("samples_per_second", d.get("samples_per_s", 0)))' "$run/peer.out" 2>/dev/null || echo 0)
    echo "{\"peer\": \"torch ddp\", \"max_rss_mib\": $(python3 -c "print($kib/1024)"), \"samples_per_second\": $sps}" | tag "torch np=$np"
  done
done
python3 - "$OUT" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows: by.setdefault(r["setting"], []).append(r)
def med(k, s): v = [r[k] for r in by.get(s, []) if r.get(k)]; return st.median(v) if v else float("nan")
print(f"{'setting':36} {'max RSS MiB':>12} {'samples/s':>10} runs")
for s in by: print(f"{s:36} {med('max_rss_mib', s):12.1f} {med('samples_per_second', s):10.0f} {len(by[s])}")
shuffle = [s for s in by if s.startswith("aedist np=2 replicated")][0].split()[-1]
rep = med("samples_per_second", f"aedist np=2 replicated {shuffle}")
for s in [f"aedist np=2 streamed {shuffle}", "aedist np=2 sharded " + shuffle, "aedist np=2 streamed rows"]:
    if s in by: print(f"throughput {s} / replicated: {med('samples_per_second', s) / rep:.3f}")
PY
