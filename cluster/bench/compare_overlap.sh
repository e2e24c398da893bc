#!/usr/bin/env bash
# The gradient reduction overlapped with backward against the blocking one after it
# (train.overlap_reduction; `bench step --overlap on|off`), MNIST VAE, NP ranks x 1 thread, per-rank
# batch 128, interleaved: REPS rounds of (on, off). JSON lines to OUT; then medians and ranges of
# samples/s, the step, backward (with the progress calls in it) and the exposed communication.
# Usage: bash cluster/bench/compare_overlap.sh [REPS=5] [OUT=bench-overlap.jsonl]
# Env: AEDIST (binary), DATA (mnist.h5), NP (2), STEPS (150), BIND (--bind-to none).
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
REPS=${1:-5}
OUT=${2:-bench-overlap.jsonl}
AEDIST=${AEDIST:-$here/.build/release/aedist}
DATA=${DATA:?set DATA=/path/to/mnist.h5}
NP=${NP:-2}
STEPS=${STEPS:-150}
BIND=${BIND:---bind-to none}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
: > "$OUT"
A="bench step --config $here/configs/mnist-vae.yaml --set data.path=$DATA --steps $STEPS --warmup 15 --threads 1 --per-rank-batch 128"
for rep in $(seq "$REPS"); do
  for overlap in on off; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    mpirun --oversubscribe $BIND -np "$NP" $AEDIST $A --overlap $overlap | python3 -c 'import json,sys
for l in sys.stdin:
    if l.startswith("{"): d=json.loads(l); d["load_before"]=float(sys.argv[1]); print(json.dumps(d))' "$load" >> "$OUT"
  done
done
python3 - "$OUT" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
fields = [("samples_per_second", "samples/s", 0), ("ms_per_step", "step ms", 2), ("ms_backward", "backward ms", 2),
          ("ms_progress", "progress ms", 2), ("ms_exposed_communication", "exposed ms", 2),
          ("exposed_communication_share", "exposed share", 3)]
for overlap in (True, False):
    rs = [r for r in rows if r["overlap"] == overlap]
    if not rs: continue
    print(f"overlap {'on ' if overlap else 'off'} ({len(rs)} runs, np={rs[0]['world_size']}):")
    for key, name, digits in fields:
        v = [r[key] for r in rs]
        print(f"  {name:14s} median {round(st.median(v), digits):>9}  [{round(min(v), digits)}–{round(max(v), digits)}]")
on = [r["samples_per_second"] for r in rows if r["overlap"]]
off = [r["samples_per_second"] for r in rows if not r["overlap"]]
if on and off: print(f"samples/s on / off: {st.median(on) / st.median(off):.3f}")
PY
