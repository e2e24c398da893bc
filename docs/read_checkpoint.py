#!/usr/bin/env python3
"""Runs an aedist checkpoint's encoder and decoder with h5py and numpy alone (docs/checkpoints.md).

    python3 docs/read_checkpoint.py CHECKPOINT.h5 DATA.h5 DATASET OUT.npz

writes the codes of every row of DATASET (VAE: mean and logvar) and the decoder's outputs
(probabilities for Bernoulli output, means for Gaussian) to OUT.npz. The test suite compares them
with `aedist encode` and `aedist reconstruct`.
"""
import sys
import h5py
import numpy as np

ACTIVATIONS = {
    "relu": lambda h: np.maximum(h, 0),
    "leaky_relu": lambda h: np.where(h > 0, h, 0.01 * h),
    "tanh": np.tanh,
    "sigmoid": lambda h: 1 / (1 + np.exp(-h)),
    "linear": lambda h: h,
}


def load(path):
    with h5py.File(path, "r") as f:
        params = {name: f["model"][name][()].astype(np.float64) for name in f["model"]}
        attrs = {k: f.attrs[k] for k in ("model_kind", "activation", "output")}
        config = f.attrs["config"]
        # data.normalize: model input = (x * scale - shift) * factor, per feature
        norm = {k: f["normalization"][k][()].astype(np.float64) for k in ("shift", "factor")} if "normalization" in f else None
    scale_line = [l for l in config.splitlines() if l.strip().startswith("scale:")][0]
    scale = scale_line.split(":", 1)[1].strip()
    return params, attrs, scale, norm


def layer_count(params, prefix):
    return len({k.split(".")[1] for k in params if k.startswith(prefix) and k.split(".")[1].isdigit()})


def dense(params, h, name):
    return h @ params[name + ".weight"].T + params[name + ".bias"]


def hidden_layers(params, attrs, h, prefix):
    """The activated hidden layers PREFIX.0, PREFIX.1, ... in order."""
    act = ACTIVATIONS[attrs["activation"]]
    for i in range(layer_count(params, prefix + ".")):
        h = act(dense(params, h, f"{prefix}.{i}"))
    return h


def encode(params, attrs, x):
    h = hidden_layers(params, attrs, x, "encoder")
    if attrs["model_kind"] == "vae":
        return dense(params, h, "encoder.mu"), dense(params, h, "encoder.logvar")
    return dense(params, h, "encoder.code"), None


def decode(params, attrs, z):
    out = dense(params, hidden_layers(params, attrs, z, "decoder"), "decoder.out")
    return 1 / (1 + np.exp(-out)) if attrs["output"] == "bernoulli" else out


def main():
    checkpoint, data, dataset, out = sys.argv[1:5]
    params, attrs, scale, norm = load(checkpoint)
    with h5py.File(data, "r") as f:
        raw = f[dataset][()]
    factor = (1 / 255 if raw.dtype.itemsize == 1 else 1.0) if scale == "auto" else float(scale)
    x = raw.reshape(len(raw), -1).astype(np.float64) * factor   # [N, d1, ..., dk] -> [N, d1*...*dk], as aedist
    if norm is not None:
        x = (x - norm["shift"]) * norm["factor"]
    code, logvar = encode(params, attrs, x)
    output = decode(params, attrs, code)
    if norm is not None:
        output = output / norm["factor"] + norm["shift"]   # back in (scaled) data units
    np.savez(out, code=code, logvar=logvar if logvar is not None else np.zeros(0), output=output)


if __name__ == "__main__":
    main()
