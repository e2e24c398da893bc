#!/usr/bin/env bash
# aedist `bench gemm` next to numpy/OpenBLAS (cluster/bench/gemm_numpy.py) at the MNIST VAE's shapes (batch 128:
# forward X·Wᵀ, weight gradient doutᵀ·X with the micro-batch tree (chunk 16), input gradient dout·W)
# and 512/1024 square, on 1 and 2 threads, interleaved shape by shape. JSON lines to OUT, then a table.
# SET=conv: instead, the products of configs/mnist-conv-vae.yaml's convolutions at batch 128 (patches
# of conv1 28x28x1 -> 14x14x32 and conv2 14x14x32 -> 7x7x64, k4 s2; the transposed convolutions mirror
# them; a micro-batch's positions are one chunk of the weight gradient's tree).
# Usage: bash cluster/bench/compare_gemm.sh [OUT=bench-gemm.jsonl]   Env: AEDIST, PY (python3 with numpy), SET
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-bench-gemm.jsonl}
AEDIST=${AEDIST:-$here/.build/release/aedist}
PY=${PY:-python3}
THREADS=${THREADS:-"1 2"}
: > "$OUT"
# m,n,k,transposeA,transposeB,chunk  (name)
SHAPES="
128,512,784,0,1,0 fwd-784-512
128,256,512,0,1,0 fwd-512-256
128,40,256,0,1,0 fwd-256-40
128,256,20,0,1,0 fwd-20-256
128,512,256,0,1,0 fwd-256-512
128,784,512,0,1,0 fwd-512-784
512,784,128,1,0,16 dW-784-512
256,512,128,1,0,16 dW-512-256
40,256,128,1,0,16 dW-256-40
256,20,128,1,0,16 dW-20-256
512,256,128,1,0,16 dW-256-512
784,512,128,1,0,16 dW-512-784
128,512,256,0,0,0 dX-512-256
128,256,40,0,0,0 dX-256-40
128,20,256,0,0,0 dX-20-256
128,256,512,0,0,0 dX-256-512
128,512,784,0,0,0 dX-512-784
512,512,512,0,0,0 square-512
1024,1024,1024,0,0,0 square-1024
"
CONV_SHAPES="
25088,32,16,0,1,0 conv1-fwd
32,16,25088,1,0,3136 conv1-dW
6272,64,512,0,1,0 conv2-fwd
64,512,6272,1,0,784 conv2-dW
6272,512,64,0,0,0 conv2-dX
6272,512,64,0,0,0 convT1-fwd
64,512,6272,1,0,784 convT1-dW
6272,64,512,0,1,0 convT1-dX
25088,16,32,0,0,0 convT2-fwd
32,16,25088,1,0,3136 convT2-dW
"
# SET=narrow: the VAE's products with a 20- or 40-wide side (run it a few times: each is 1-3 MFLOP).
NARROW_SHAPES="
128,40,256,0,1,0 fwd-256-40
128,256,20,0,1,0 fwd-20-256
40,256,128,1,0,16 dW-256-40
256,20,128,1,0,16 dW-20-256
128,256,40,0,0,0 dX-256-40
128,20,256,0,0,0 dX-20-256
"
[ "${SET:-}" = conv ] && SHAPES=$CONV_SHAPES
[ "${SET:-}" = narrow ] && SHAPES=$NARROW_SHAPES
echo "$SHAPES" | while read -r spec name; do
  [ -z "$spec" ] && continue
  IFS=, read -r m n k ta tb ch <<< "$spec"
  flags=""; [ "$ta" = 1 ] && flags="$flags --transpose-a"; [ "$tb" = 1 ] && flags="$flags --transpose-b"
  for t in $THREADS; do
    $AEDIST bench gemm --m $m --n $n --k $k --threads $t --chunk $ch $flags --samples ${SAMPLES:-7} \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); d["name"]=sys.argv[1]; print(json.dumps(d))' "$name" >> "$OUT"
    $PY "$here/cluster/bench/gemm_numpy.py" $t "$m,$n,$k,$ta,$tb" \
      | python3 -c 'import json,sys; d=json.loads(sys.stdin.readline()); d["name"]=sys.argv[1]; print(json.dumps(d))' "$name" >> "$OUT"
  done
done
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ours = {(r["name"], r["threads"]): r for r in rows if r.get("benchmark") == "gemm"}
peer = {(r["name"], r["threads"]): r for r in rows if r.get("peer") == "numpy"}
print(f"{'shape':14s} {'thr':>3s} {'aedist GF/s':>12s} {'numpy GF/s':>11s} {'ratio':>6s}")
for key, o in ours.items():
    p = peer.get(key)
    if not p: continue
    print(f"{key[0]:14s} {key[1]:3d} {o['gflops']:12.1f} {p['gflops']:11.1f} {o['gflops']/p['gflops']:6.2f}")
PY
