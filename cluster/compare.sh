#!/usr/bin/env bash
# The model-family comparison (docs/family.md): PCA, autoencoder, denoising autoencoder, sparse
# autoencoder and VAE with the same code size on one data set. Writes, under --out:
#   table.md     test reconstruction error of each (mse per feature, the common unit), each model's
#                own test loss, and the VAE's negative ELBO (and importance-sampled NLL)
#   compare.png  a row of test originals, then one row of reconstructions per model (same order)
#   pca.h5, ae/, dae/, sparse/, vae/   the PCA file and the run directories
#
# Usage: bash cluster/compare.sh [--data PATH] [--scale auto|X] [--latent K] [--encoder '[256]']
#                                [--epochs E] [--np N] [--threads T] [--out DIR] [--count N]
#                                [--sparsity-target RHO] [--sparsity-weight BETA] [--l1 LAMBDA]   (the sparse AE)
# Examples:
#   bash cluster/compare.sh --data data/digits.h5 --scale 0.0625 --latent 8 --encoder '[64]' --epochs 40
#   bash cluster/compare.sh --data /path/to/mnist.h5 --latent 16 --epochs 10 --np 2
# The binary is $AEDIST (default .build/release/aedist; built here with `swift build -c release`
# when missing). With --np N > 1 every command runs under `mpirun --bind-to none -np N`.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=data/digits.h5; SCALE=0.0625; LATENT=8; ENCODER='[64]'; EPOCHS=40; NP=1; THREADS=""; OUT=runs/compare; COUNT=12
BATCH=64; LR=0.002; NOISE=masking; LEVEL=0.3; L1=0; TARGET=0.05; SPARSITY_WEIGHT=0.5; IS=100
while [[ $# -gt 0 ]]; do
  case "$1" in
    --data) DATA=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --latent) LATENT=$2; shift 2 ;;
    --encoder) ENCODER=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --np) NP=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --count) COUNT=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --lr) LR=$2; shift 2 ;;
    --l1) L1=$2; shift 2 ;;
    --sparsity-target) TARGET=$2; shift 2 ;;
    --sparsity-weight) SPARSITY_WEIGHT=$2; shift 2 ;;
    --importance-samples) IS=$2; shift 2 ;;
    -h|--help) sed -n 2,20p "$0"; exit 0 ;;
    *) echo "compare.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

BIN=${AEDIST:-.build/release/aedist}
if [[ ! -x "$BIN" ]]; then swift build -c release --product aedist >&2; fi
[[ -f "$DATA" ]] || { echo "compare.sh: data file '$DATA' not found" >&2; exit 2; }
mkdir -p "$OUT"

run() {
  local extra=()
  if [[ -n "$THREADS" ]]; then extra=(--threads "$THREADS"); fi
  if [[ "$NP" -gt 1 ]]; then
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --bind-to none -np "$NP" "$BIN" "$@" "${extra[@]}"
  else
    "$BIN" "$@" "${extra[@]}"
  fi
}
json_field() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); v=d.get(sys.argv[1]); print("" if v is None else v)' "$1"; }

echo "== pca (K = $LATENT)" >&2
run pca --data "$DATA" --components "$LATENT" --scale "$SCALE" --out "$OUT/pca.h5" >&2

common=(--set "data.path=$DATA" --set "data.scale=$SCALE" --set "model.latent=$LATENT" --set "model.encoder=$ENCODER"
        --set "train.epochs=$EPOCHS" --set "train.batch_size=$BATCH" --set "train.lr=$LR" --set "train.log_every=100000"
        --set "train.checkpoint_every=100000" --set "train.keep_checkpoints=1" --resume never)
declare -A CHECKPOINT
train() {   # name, then --set arguments
  local name=$1; shift
  echo "== $name" >&2
  local summary
  summary=$(run train "${common[@]}" --set "run_dir=$OUT/$name" "$@" | tail -1)
  CHECKPOINT[$name]=$(echo "$summary" | json_field checkpoint)
}
train ae     --set model.kind=ae
train dae    --set model.kind=ae --set "model.denoise.noise=$NOISE" --set "model.denoise.level=$LEVEL"
train sparse --set model.kind=ae --set "model.sparsity={l1: $L1, target: $TARGET, kl_weight: $SPARSITY_WEIGHT}"
train vae    --set model.kind=vae

{
  echo "| model | test mse per feature | test loss (own units) | negative ELBO | NLL (IS, K = $IS) |"
  echo "| --- | --- | --- | --- | --- |"
  for name in pca ae dae sparse vae; do
    if [[ $name == pca ]]; then path=$OUT/pca.h5; else path=${CHECKPOINT[$name]}; fi
    extra=()
    if [[ $name == vae ]]; then extra=(--importance-samples "$IS"); fi
    line=$(run eval --checkpoint "$path" --json "${extra[@]}" | tail -1)
    mse=$(echo "$line" | json_field mse_per_feature); loss=$(echo "$line" | json_field loss)
    nll=$(echo "$line" | json_field nll_is)
    elbo=""; if [[ $name == vae ]]; then elbo=$(printf '%.4f' "$loss"); nll=$(printf '%.4f' "$nll"); fi
    printf '| %s | %.6f | %.4f | %s | %s |\n' "$name" "$mse" "$loss" "$elbo" "$nll"
  done
} | tee "$OUT/table.md"

run reconstruct --checkpoint "$OUT/pca.h5" --checkpoint "${CHECKPOINT[ae]}" --checkpoint "${CHECKPOINT[dae]}" \
    --checkpoint "${CHECKPOINT[sparse]}" --checkpoint "${CHECKPOINT[vae]}" --data "$DATA" --split test \
    --count "$COUNT" --out "$OUT/compare.png" >&2
echo "rows of $OUT/compare.png: originals, pca, ae, dae, sparse, vae" >&2
