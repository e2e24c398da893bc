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
        # A convolution's kernel carries its layer kind, stride, padding and image shapes.
        layers = {name[:-len(".weight")]: {k: v for k, v in f["model"][name].attrs.items()}
                  for name in f["model"] if name.endswith(".weight") and "layer" in f["model"][name].attrs}
        attrs = {k: f.attrs[k] for k in ("model_kind", "activation", "output")}
        config = f.attrs["config"]
        # data.normalize: model input = (x * scale - shift) * factor, per feature
        norm = {k: f["normalization"][k][()].astype(np.float64) for k in ("shift", "factor")} if "normalization" in f else None
    scale_line = [l for l in config.splitlines() if l.strip().startswith("scale:")][0]
    scale = scale_line.split(":", 1)[1].strip()
    params["layers"] = layers
    return params, attrs, scale, norm


def layer_count(params, prefix):
    return len({k.split(".")[1] for k in params if k.startswith(prefix) and k.split(".")[1].isdigit()})



def conv2d(x, w, b, stride, padding, out_shape):
    """PyTorch's Conv2d on channels-last images x [N, H, W, C], w [out, in, kh, kw]."""
    k = w.shape[2]
    oh, ow = out_shape[0], out_shape[1]
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out = np.zeros((x.shape[0], oh, ow, w.shape[0])) + b
    for ky in range(k):
        for kx in range(k):
            out += xp[:, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride, :] @ w[:, :, ky, kx].T
    return out


def conv_transpose2d(x, w, b, stride, padding, out_shape):
    """PyTorch's ConvTranspose2d on channels-last x [N, H, W, C], w [in, out, kh, kw]; the output is
    cut to out_shape (PyTorch's output_padding: pixels no kernel reaches get the bias)."""
    n, ih, iw, _ = x.shape
    k = w.shape[2]
    h, wd = out_shape[0], out_shape[1]
    full = np.zeros((n, h + 2 * padding + k + stride, wd + 2 * padding + k + stride, w.shape[1]))
    for ky in range(k):
        for kx in range(k):
            full[:, ky:ky + stride * ih:stride, kx:kx + stride * iw:stride, :] += x @ w[:, :, ky, kx]
    return full[:, padding:padding + h, padding:padding + wd, :] + b


def layer(params, h, name):
    """One layer: dense on flattened values, a convolution on images shaped by its kernel's attributes."""
    conv = params["layers"].get(name)
    w, b = params[name + ".weight"], params[name + ".bias"]
    if conv is None:
        return h.reshape(len(h), -1) @ w.T + b
    h = h.reshape(len(h), *conv["input_shape"])   # channels last, as the data's [N, H, W, C] rows
    run = conv2d if conv["layer"] == "conv2d" else conv_transpose2d
    return run(h, w, b, int(conv["stride"][0]), int(conv["padding"][0]), conv["output_shape"])


def dense(params, h, name):
    return layer(params, h, name).reshape(len(h), -1)


def hidden_layers(params, attrs, h, prefix):
    """The activated hidden layers PREFIX.0, PREFIX.1, ... in order."""
    act = ACTIVATIONS[attrs["activation"]]
    for i in range(layer_count(params, prefix + ".")):
        h = act(layer(params, h, f"{prefix}.{i}"))
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
