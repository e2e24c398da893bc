#!/usr/bin/env bash
# The MNIST convolutional VAE (configs/mnist-conv-vae.yaml) beside its PyTorch peer, one after the
# other on the same cores: test negative ELBO after EPOCHS epochs and training throughput.
# JSON lines to OUT.
# Usage: bash cluster/bench/compare_conv.sh /path/to/mnist.h5 [OUT=bench-conv.jsonl]
# Env: AEDIST (binary), PY (python with torch and h5py), THREADS (2), EPOCHS (10),
#      PEER (default cluster/bench/conv_vae_peer.py; any script taking --data --epochs --threads
#      and printing a JSON line with test_loss (or test_neg_elbo_per_image) and samples_per_second
#      (or epoch_samples_per_s)).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${1:?usage: compare_conv.sh /path/to/mnist.h5 [OUT]}
OUT=${2:-bench-conv.jsonl}
AEDIST=${AEDIST:-$here/.build/release/aedist}
PY=${PY:-python3}
PEER=${PEER:-$here/cluster/bench/conv_vae_peer.py}
THREADS=${THREADS:-2}
EPOCHS=${EPOCHS:-10}
run=$(mktemp -d)
trap 'rm -rf "$run"' EXIT
"$AEDIST" train --config "$here/configs/mnist-conv-vae.yaml" --set data.path="$DATA" --set train.epochs="$EPOCHS" \
  --set train.log_every=100000 --run-dir "$run/r" --resume never --threads "$THREADS" | tail -1 > "$run/summary.json"
last=$(ls "$run"/r/checkpoints/step-*.h5 | tail -1)
"$AEDIST" eval --checkpoint "$last" --threads "$THREADS" --json > "$run/eval.json"
python3 - "$run" >> "$OUT" <<'PY'
import json, sys
s, e = (json.load(open(f"{sys.argv[1]}/{n}.json")) for n in ("summary", "eval"))
print(json.dumps({"setting": "aedist conv vae", "test_loss": e["loss"], "recon": e["recon"], "kl": e["kl"],
                  "samples_per_second": s["samples_per_second"], "threads": s["threads_per_rank"]}))
PY
OMP_NUM_THREADS=$THREADS $PY "$PEER" --data "$DATA" --model convvae --epochs "$EPOCHS" --threads "$THREADS" \
  2>/dev/null | tail -1 | python3 -c '
import json, sys
d = json.loads(sys.stdin.read()); d["setting"] = "peer"
d.setdefault("test_loss", d.get("test_neg_elbo_per_image"))
d.setdefault("samples_per_second", d.get("epoch_samples_per_s"))
print(json.dumps(d))' >> "$OUT"
tail -2 "$OUT"
