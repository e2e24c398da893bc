#!/usr/bin/env python3
"""Writes a dataset larger than one node's memory for the streamed benchmark: ROWS rows of 28x28
uint8 built from MNIST digits (each row a train digit shifted by a few pixels, so chunks do not
repeat), chunked 1024 rows high and gzip-compressed as h5py users write them, plus a 10,000-row
test split. Not committed: about 40 M rows (31 GB of pixels) by default.

Usage: python3 make_large.py MNIST_H5 OUT_H5 [ROWS=40000000]
"""
import sys, time
import h5py, numpy as np

src, out = sys.argv[1], sys.argv[2]
rows = int(sys.argv[3]) if len(sys.argv) > 3 else 40_000_000
with h5py.File(src, "r") as f:
    base = f["train/images"][()].reshape(-1, 28, 28).astype(np.uint8)
    test = f["test/images"][()].reshape(-1, 28, 28).astype(np.uint8)
rng = np.random.default_rng(0)
slab = 64 * 1024
start = time.time()
with h5py.File(out + ".tmp", "w") as g:
    d = g.create_dataset("train/images", shape=(rows, 28, 28), dtype="u1",
                         chunks=(1024, 28, 28), compression="gzip", compression_opts=1)
    for at in range(0, rows, slab):
        n = min(slab, rows - at)
        x = base[rng.integers(0, len(base), n)]
        x = np.roll(x, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(1, 2))
        d[at:at + n] = x
        if (at // slab) % 64 == 0:
            print(f"{at + n} of {rows} rows, {time.time() - start:.0f} s", flush=True)
    g.create_dataset("test/images", data=test, chunks=(1024, 28, 28), compression="gzip", compression_opts=1)
import os
os.replace(out + ".tmp", out)
print(f"wrote {out}: {rows} x 784 uint8 in {time.time() - start:.0f} s")
