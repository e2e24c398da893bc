#!/usr/bin/env bash
# A dataset larger than the machine's memory, streamed: the MNIST VAE on LARGE (written by
# cluster/bench/make_large.py: 40 M rows of 28x28 uint8, gzip, 1024-row chunks) with
# data.residency: auto (which must choose streamed) and data.shuffle: blocks, and beside it, in the
# same round, the same model on MNIST held replicated. REPS rounds; JSON lines to OUT; medians.
# Usage: bash cluster/bench/streamed_large.sh LARGE_H5 [REPS=3] [OUT=bench-large.jsonl]
# Env: AEDIST (binary), DATA (mnist.h5), NP (2), STEPS (2000).
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
LARGE=${1:?usage: streamed_large.sh LARGE_H5 [REPS] [OUT]}
REPS=${2:-3}
OUT=${3:-bench-large.jsonl}
AEDIST=${AEDIST:-$here/.build/release/aedist}
DATA=${DATA:?set DATA=/path/to/mnist.h5}
NP=${NP:-2}
STEPS=${STEPS:-2000}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
: > "$OUT"
run=$(mktemp -d)
trap 'rm -rf "$run"' EXIT
train() {  # label data residency
  rm -rf "$run/r"
  timeout 900 mpirun --oversubscribe --bind-to none -np "$NP" "$AEDIST" train --config "$here/configs/mnist-vae.yaml" \
    --set data.path="$2" --set data.residency="$3" --set data.shuffle=blocks --set data.scale=0.00392156862745098 \
    --set train.max_steps="$STEPS" --set train.log_every=100000 --set train.checkpoint_every=100000 \
    --run-dir "$run/r" --resume never --threads 1 > "$run/out" 2>&1
  grep '^aedist: data' "$run/out" | head -1 >&2
  tail -1 "$run/out" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); d["setting"]=sys.argv[1]; print(json.dumps(d))' "$1" >> "$OUT"
}
for rep in $(seq "$REPS"); do
  train "large auto" "$LARGE" auto
  train "mnist replicated" "$DATA" replicated
done
python3 - "$OUT" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
for s in sorted({r["setting"] for r in rows}):
    v = [r for r in rows if r["setting"] == s]
    print(f"{s:18} residency {v[0]['data_residency']:10} samples/s {st.median(r['samples_per_second'] for r in v):8.0f}"
          f"  max RSS per rank {st.median(r['max_rss_mib'] for r in v):6.1f} MiB  ({len(v)} runs)")
m = {s: st.median(r["samples_per_second"] for r in rows if r["setting"] == s) for s in {r["setting"] for r in rows}}
print(f"throughput large streamed / mnist replicated: {m['large auto'] / m['mnist replicated']:.3f}")
PY
