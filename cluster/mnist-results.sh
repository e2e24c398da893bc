#!/usr/bin/env bash
# Reproduces docs/results.md: trains the MNIST VAE, AE and convolutional VAE of configs/ (10 epochs),
# evaluates them on the 10,000 test images, trains the same models in PyTorch beside them
# (cluster/bench/torch_peer.py, when PY has torch and h5py), and draws the README's pictures
# (reconstructions and samples of the VAE) into docs/images/.
#   bash cluster/mnist-results.sh /path/to/mnist.h5 [THREADS]
# Env: AEDIST (binary), PY (python with torch and h5py; python3), MODELS ("vae ae conv-vae").
# Writes one JSON line per run to runs/mnist-results/results.jsonl, then the table of docs/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: cluster/mnist-results.sh /path/to/mnist.h5 [THREADS]}
threads=${2:-2}
bin=${AEDIST:-.build/release/aedist}
[ -x "$bin" ] || bin="$(bash cluster/setup.sh release)"
PY=${PY:-python3}
out=runs/mnist-results
mkdir -p docs/images "$out"
: > "$out/results.jsonl"
peer=0
$PY -c 'import torch, h5py' 2>/dev/null && peer=1 || echo "mnist-results: $PY has no torch or h5py: the PyTorch peer is not run" >&2
for model in ${MODELS:-vae ae conv-vae}; do
  rm -rf "${out:?}/$model"   # this script's own runs: a rerun starts them afresh
  "$bin" train --config "configs/mnist-$model.yaml" --set "data.path=$data" --set train.log_every=100000 \
    --run-dir "$out/$model" --resume never --threads "$threads" | tail -1 > "$out/$model-summary.json"
  last=$(ls "$out/$model"/checkpoints/step-*.h5 | tail -1)
  "$bin" eval --checkpoint "$last" --threads "$threads" --json > "$out/$model-eval.json"
  extra=""
  if [ "$model" = vae ]; then
    "$bin" eval --checkpoint "$last" --threads "$threads" --importance-samples 100 --json > "$out/$model-eval-is.json"
    extra="$out/$model-eval-is.json"
    "$bin" reconstruct --checkpoint "$last" --count 12 --out docs/images/mnist-vae-reconstructions.png
    "$bin" sample --checkpoint "$last" --count 25 --seed 1 --out docs/images/mnist-vae-samples.png
  fi
  python3 - "$model" "$out/$model-summary.json" "$out/$model-eval.json" $extra >> "$out/results.jsonl" <<'PY'
import json, sys
s, e = (json.load(open(p)) for p in sys.argv[2:4])
line = {"run": "aedist", "model": sys.argv[1], "test_loss": e["loss"], "recon": e.get("recon", e["loss"]), "kl": e.get("kl"),
        "mse_per_pixel": e.get("mse_per_feature"), "samples_per_second": s["samples_per_second"],
        "threads": s["threads_per_rank"]}
if len(sys.argv) > 4:
    line["nll_is"] = json.load(open(sys.argv[4]))["nll_is"]
print(json.dumps(line))
PY
  if [ "$peer" = 1 ]; then
    OMP_NUM_THREADS=$threads $PY cluster/bench/torch_peer.py --data "$data" --model "${model/conv-vae/convvae}" \
      --epochs 10 --threads "$threads" | tail -1 | python3 -c '
import json, sys
d = json.loads(sys.stdin.read()); d["run"] = "torch"; d["model"] = sys.argv[1]; print(json.dumps(d))' "$model" >> "$out/results.jsonl"
  fi
done
python3 - "$out/results.jsonl" <<'PY'
import json, sys
rows = {(r["run"], r["model"]): r for r in map(json.loads, open(sys.argv[1]))}
print("| model | aedist (test set) | PyTorch (same run) | aedist samples/s | PyTorch samples/s |")
print("| --- | --- | --- | --- | --- |")
for model, name in (("vae", "VAE"), ("ae", "AE"), ("conv-vae", "conv VAE")):
    a, t = rows.get(("aedist", model)), rows.get(("torch", model))
    if a is None:
        continue
    def quality(r):
        if r is None:
            return "not run"
        if model == "ae":
            return f"MSE per pixel {r['mse_per_pixel']:.6f}; BCE {r['test_loss']:.2f} nats"
        text = f"negative ELBO {r['test_loss']:.2f} nats ({r['recon']:.2f} + KL {r['kl']:.2f})"
        return text + (f"; NLL (K = 100) {r['nll_is']:.2f}" if "nll_is" in r else "")
    speed = f"{t['samples_per_second']:.0f}" if t else ""
    print(f"| {name} | {quality(a)} | {quality(t)} | {a['samples_per_second']:.0f} | {speed} |")
PY
