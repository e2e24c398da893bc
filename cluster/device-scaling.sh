#!/usr/bin/env bash
# Weak scaling of `aedist bench step` on a many-core machine, next to the PyTorch peer
# (cluster/bench/torch_peer.py, the same model: DDP/gloo at the same rank counts, then one process at
# the same thread counts). No Swift there: build here with
#   swift build -c release --static-swift-stdlib --product aedist
# and carry .build/release/aedist over (it links libmpi.so.40 and libhdf5_serial.so.103 dynamically).
# MNIST VAE, per-rank batch 128, 1 thread per rank, np = 1, 2, 4, 8; then 1 rank x 2..16 threads.
# Writes JSON lines to $OUT/aedist-scaling.jsonl (and the peer's to $OUT/torch-scaling.jsonl), a log to stdout.
# Usage: OUT=/some/dir bash cluster/device-scaling.sh   Env: AEDIST (binary), DATA (mnist.h5), STEPS (150),
#        NPS ("1 2 4 8"), THREADS ("2 4 8 16"), REPS (1: repetitions, medians reported),
#        REDUCTIONS ("tree"; "tree library" also measures train.exact_reduction: false),
#        KERNELS ("auto"; e.g. "auto avx2" also runs the np sweep on the AVX2 micro-kernels),
#        OVERLAPS ("on"; "on off" also measures the blocking reduction after backward),
#        SHARDS ("on"; "on off" also measures every rank running the whole optimizer update),
#        PEER=0 to skip the PyTorch run, PY (a python with torch and h5py: python3), BIND (--bind-to core).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-.}
mkdir -p "$OUT"
AEDIST=${AEDIST:-$here/.build/release/aedist}
DATA=${DATA:?set DATA=/path/to/mnist.h5}
PY=${PY:-python3}
STEPS=${STEPS:-150}
NPS=${NPS:-"1 2 4 8"}
THREADS=${THREADS-"2 4 8 16"}   # empty: no thread sweep
BIND=${BIND:---bind-to core}
out="$OUT/aedist-scaling.jsonl"
: > "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
{ lscpu | grep -E 'Model name|^CPU\(s\)|Flags' | cut -c1-200; which mpirun; mpirun --version | head -1; ldd "$AEDIST" | grep -E 'mpi|hdf5|not found'; } 2>&1
A="$AEDIST bench step --config $here/configs/mnist-vae.yaml --set data.path=$DATA --set data.test=null --steps $STEPS --warmup 15"
record() {   # tag every JSON line of stdin with the setting and append it to $out
  python3 -c 'import json,sys
for l in sys.stdin:
    l=l.strip()
    if l.startswith("{"):
        d=json.loads(l); d["setting"]=sys.argv[1]; d["machine"]=sys.argv[2]; print(json.dumps(d), flush=True)' "$1" "$(hostname)" | tee -a "$out"
}
{ grep -o -w -E 'avx2|fma|avx512f|avx512bw|avx512vl' /proc/cpuinfo | sort | uniq -c; } 2>&1
for rep in $(seq "${REPS:-1}"); do
  for kernels in ${KERNELS:-auto}; do
    for red in ${REDUCTIONS:-tree}; do
      for ov in ${OVERLAPS:-on}; do
        for sh in ${SHARDS:-on}; do
          for np in $NPS; do
            AEDIST_KERNELS=$kernels timeout 300 mpirun $BIND -x AEDIST_KERNELS -np "$np" $A --threads 1 --per-rank-batch 128 \
              --reduction "$red" --overlap "$ov" --shard-update "$sh" \
              | record "aedist np=$np x 1 thread, per-rank batch 128, $red, overlap $ov, shard $sh, kernels $kernels"
          done
        done
      done
    done
  done
  for t in $THREADS; do
    timeout 300 $A --threads "$t" | record "aedist 1 x $t threads, batch 128, tree"
  done
done
# Peak RSS per rank at np=2 (GNU time, when installed).
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f '{"setting": "aedist rss np=2", "rank_peak_rss_kib": %M}' -o "$OUT/aedist-rss.json" \
    mpirun $BIND -np 2 $A --threads 1 --per-rank-batch 128 > /dev/null 2>&1 || true
fi
python3 - "$out" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
settings = {}
for r in rows: settings.setdefault(r["setting"], []).append(r)
med = lambda rs, k: statistics.median(r[k] for r in rs)
base = {}
for name, rs in settings.items():
    if rs[0]["world_size"] == 1 and rs[0]["threads_per_rank"] == 1: base[name.split(", ", 1)[1]] = med(rs, "samples_per_second")
for name, rs in settings.items():
    r0, sps = rs[0], med(rs, "samples_per_second")
    eff = ""
    key = name.split(", ", 1)[1] if ", " in name else None
    if r0["threads_per_rank"] == 1 and key in base:
        eff = f"  weak-scaling efficiency {sps / (base[key] * r0['world_size']):.0%}"
    print(f"{name:94s} [{r0.get('kernels', '?')}] {sps:9.0f} samples/s (median of {len(rs)}, {min(r['samples_per_second'] for r in rs):.0f}-{max(r['samples_per_second'] for r in rs):.0f})"
          f"  step {med(rs, 'ms_per_step'):.2f} ms (compute {med(rs, 'ms_compute'):.2f}, wait {med(rs, 'ms_wait'):.2f}, allreduce {med(rs, 'ms_allreduce'):.2f}, exposed {med(rs, 'ms_exposed_communication'):.2f}){eff}")
PY
if [ "${PEER:-1}" = 1 ] && $PY -c 'import torch, h5py' 2>/dev/null; then
  peer="$PY $here/cluster/bench/torch_peer.py --data $DATA --model vae --steps $STEPS --warmup 15"
  for np in $NPS; do
    OMP_NUM_THREADS=1 timeout 600 $peer --threads 1 --ddp "$np" --port $((29800 + np)) | tail -1 | tee -a "$OUT/torch-scaling.jsonl"
  done
  for t in $THREADS; do
    OMP_NUM_THREADS=$t timeout 600 $peer --threads "$t" | tail -1 | tee -a "$OUT/torch-scaling.jsonl"
  done
fi
echo done
