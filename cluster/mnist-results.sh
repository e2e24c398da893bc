#!/usr/bin/env bash
# Reproduces docs/results.md: trains the MNIST VAE and AE of configs/ (the PyTorch peer's models and
# hyper-parameters, 10 epochs), evaluates them on the 10,000 test images, and draws the README's
# pictures (reconstructions and samples of the VAE) into docs/images/.
#   bash cluster/mnist-results.sh /path/to/mnist.h5 [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: cluster/mnist-results.sh /path/to/mnist.h5 [THREADS]}
threads=${2:-2}
bin=${AEDIST:-.build/release/aedist}
[ -x "$bin" ] || bin="$(bash cluster/setup.sh release)"
out=runs/mnist-results
mkdir -p docs/images "$out"
for model in vae ae; do
  "$bin" train --config "configs/mnist-$model.yaml" --set "data.path=$data" --run-dir "$out/$model" \
    --resume never --threads "$threads" | tail -1 > "$out/$model-summary.json"
  last=$(ls "$out/$model"/checkpoints/step-*.h5 | tail -1)
  "$bin" eval --checkpoint "$last" --json > "$out/$model-eval.json"
done
vae=$(ls "$out/vae"/checkpoints/step-*.h5 | tail -1)
"$bin" eval --checkpoint "$vae" --importance-samples 100 --json > "$out/vae-eval-is.json"
"$bin" reconstruct --checkpoint "$vae" --count 12 --out docs/images/mnist-vae-reconstructions.png
"$bin" sample --checkpoint "$vae" --count 25 --seed 1 --out docs/images/mnist-vae-samples.png
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
load = lambda name: json.load(open(f"{out}/{name}"))
vs, ve, vi = load("vae-summary.json"), load("vae-eval.json"), load("vae-eval-is.json")
as_, ae = load("ae-summary.json"), load("ae-eval.json")
print(f"| VAE | negative ELBO {ve['loss']:.2f} nats (BCE {ve['recon']:.2f} + KL {ve['kl']:.2f}); NLL (K = 100) {vi['nll_is']:.2f} | 103.51 (84.46 + 19.04) | ≤ 104.0 | {vs['samples_per_second']:.0f} |")
print(f"| AE | mse per pixel {ae['mse_per_feature']:.6f}; BCE {ae['loss']:.2f} nats | 0.006201; 62.67 | ≤ 0.0064 | {as_['samples_per_second']:.0f} |")
PY
