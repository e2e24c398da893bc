#!/usr/bin/env python3
"""numpy/OpenBLAS peer of `aedist bench gemm`: same shapes, same timing (median of 7 samples of
about 0.2 s each). Usage: gemm_numpy.py THREADS M,N,K,TA,TB [...]   (TA/TB: 0 or 1)
Prints one JSON line per shape. Threads are set through OPENBLAS_NUM_THREADS before numpy loads."""
import json, os, sys, time
threads = sys.argv[1]
os.environ["OPENBLAS_NUM_THREADS"] = threads
os.environ["OMP_NUM_THREADS"] = threads
import numpy as np

rng = np.random.default_rng(0)
for spec in sys.argv[2:]:
    m, n, k, ta, tb = (int(x) for x in spec.split(","))
    a = (rng.random((k, m) if ta else (m, k), dtype=np.float32) - 0.5)
    b = (rng.random((n, k) if tb else (k, n), dtype=np.float32) - 0.5)
    A = a.T if ta else a
    B = b.T if tb else b
    c = np.empty((m, n), dtype=np.float32)
    f = lambda: np.matmul(A, B, out=c)
    reps = 1
    while True:
        t = time.perf_counter()
        for _ in range(reps): f()
        dt = time.perf_counter() - t
        if dt >= 0.05:
            reps = max(1, int(reps * 0.2 / dt)); break
        reps *= 2
    rates = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(reps): f()
        dt = time.perf_counter() - t
        rates.append(2.0 * m * n * k * reps / dt / 1e9)
    rates.sort()
    print(json.dumps({"peer": "numpy", "numpy": np.__version__, "m": m, "n": n, "k": k, "transpose_a": bool(ta),
                      "transpose_b": bool(tb), "threads": int(threads), "gflops": rates[3],
                      "gflops_min": rates[0], "gflops_max": rates[-1]}), flush=True)
