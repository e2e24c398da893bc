#!/usr/bin/env bash
# Ranks on one node: weak scaling of `aedist bench step` (the MNIST VAE, per-rank batch 128, 1 thread
# per rank) at np = 1, 2, 4 with the gradients reduced in shared memory and by MPI messages
# (train.shared_memory true/false), PyTorch DDP (gloo, cluster/bench/torch_peer.py) beside, and each
# rank's peak RSS of a `train` run at np = 8 with sharded data, both ways and the peer's. Interleaved:
# REPS rounds, each running every setting once. np above the core count oversubscribes the cores, so
# efficiency divides by min(np, cores) times np = 1. JSON lines to OUT; then medians.
# Usage: bash cluster/bench/compare_ranks.sh [REPS=3] [OUT=bench-ranks.jsonl]
# Env: AEDIST (binary), PY (python with torch), DATA (mnist.h5), STEPS (150), NPS ("1 2 4"), RSS_NP (8)
set -u
REPS=${1:-3}
OUT=${2:-bench-ranks.jsonl}
source "$(dirname "$0")/common.sh"
STEPS=${STEPS:-150}
RSS_NP=${RSS_NP:-8}
CORES=$(nproc)
run=$(mktemp -d)
trap 'rm -rf "$run"' EXIT
step() {  # np shared_memory
  timeout 600 mpirun --oversubscribe --bind-to none -np "$1" "$AEDIST" bench step --config "$here/configs/mnist-vae.yaml" \
    --set data.path="$DATA" --set train.shared_memory="$2" --steps "$STEPS" --warmup 10 --threads 1 \
    --per-rank-batch 128 2>/dev/null | tail -1 | tag "aedist step np=$1 shared_memory=$2"
}
memory() {  # np shared_memory
  rm -rf "$run/r"
  timeout 600 mpirun --oversubscribe --bind-to none -np "$1" "$AEDIST" train --config "$here/configs/mnist-vae.yaml" \
    --set data.path="$DATA" --set train.max_steps=200 --set data.residency=sharded --set data.shuffle=blocks \
    --set train.shared_memory="$2" --set train.log_every=100000 --set train.checkpoint_every=100000 \
    --run-dir "$run/r" --resume never --threads 1 2>/dev/null | tail -1 | sed "s#$run/r#RUN#g" | tag "aedist train np=$1 sharded shared_memory=$2"
}
peer() {  # np port [label]: per-process batch 128 and the largest process's peak RSS
  kib=$( { OMP_NUM_THREADS=1 /usr/bin/time -f "%M" $PY "$PEER" --data "$DATA" --model vae --threads 1 --ddp "$1" \
           --steps "$STEPS" --warmup 10 --port "$2" > "$run/peer.out"; } 2>&1 | tail -1)
  python3 - "$run/peer.out" "$kib" <<'PY' | tag "torch ddp np=$1${3:+ $3}"
import json, sys
d = {}
for l in open(sys.argv[1]):
    l = l.strip()
    if l.startswith("{"): d = json.loads(l)
print(json.dumps({"samples_per_second": d.get("samples_per_second", d.get("samples_per_s", 0)),
                  "max_rss_mib": int(sys.argv[2]) / 1024}))
PY
}
for rep in $(seq "$REPS"); do
  for np in ${NPS:-1 2 4}; do
    for sm in true false; do step "$np" "$sm"; done
    peer "$np" $((29800 + rep * 10 + np))
  done
  for sm in true false; do memory "$RSS_NP" "$sm"; done
  peer "$RSS_NP" $((29900 + rep * 10)) memory
done
python3 - "$OUT" "$CORES" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
cores = int(sys.argv[2])
by = {}
for r in rows: by.setdefault(r["setting"], []).append(r)
def med(s, k): return st.median(r[k] for r in by[s])
print("weak scaling, per-rank batch 128, 1 thread per rank (samples/s, median; efficiency against min(np, cores) x np=1)")
for kind in ["aedist step np={} shared_memory=true", "aedist step np={} shared_memory=false", "torch ddp np={}"]:
    one = kind.format(1)
    if one not in by: continue
    base = med(one, "samples_per_second")
    for s in sorted(k for k in by if k.startswith(kind.split("np=")[0]) and k.endswith(kind.split("{}")[1])):
        np_ = int(s.split("np=")[1].split()[0])
        v = med(s, "samples_per_second")
        print(f"  {s:44s} {v:9.0f}  efficiency {v / (min(np_, cores) * base):5.2f}  runs {[round(r['samples_per_second']) for r in by[s]]}")
for s in by:
    if s.startswith("aedist step np=") and "shared_memory=true" in s:
        other = s.replace("true", "false")
        if other in by: print(f"shared memory / messages, {s.split()[2]}: {med(s, 'samples_per_second') / med(other, 'samples_per_second'):.3f}")
print("peak RSS per rank (MiB, median per rank over rounds)")
for s in by:
    if s.startswith("aedist train"):
        per = [st.median(r["rss_mib_per_rank"][i] for r in by[s]) for i in range(len(by[s][0]["rss_mib_per_rank"]))]
        print(f"  {s:44s} rank 0 {per[0]:6.1f}, ranks 1.. {min(per[1:]):6.1f}-{max(per[1:]):6.1f}")
for s in by:
    if s.startswith("torch ddp"): print(f"  {s:44s} largest process {med(s, 'max_rss_mib'):6.1f}")
PY
