"""An exact (non-Nystrom) fit at n = 20,000 by the Krylov route (issue 14's target:
whole fit <= 60 s, peak memory <= 2 n x n float64 matrices).

Run ``/usr/bin/time -v python benchmarks/bench_large.py [--n 20000]``: prints the whole fit's
time (kernel build, block Lanczos, REML, score test) and the Krylov dimension; the peak
resident memory is ``/usr/bin/time``'s "Maximum resident set size", to be read against one
n x n matrix (8 n^2 bytes; 3.2 GB at n = 20,000).  A bare ``eigh`` at this size is not run
(it takes many minutes).  Measured 2026-12-01 on the 2-core machine: 20.1 s wall, peak RSS
3.73 GB = 1.17 n x n matrices.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import mixednn as mn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    n = ap.parse_args().n
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(n, 10))
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    y = X @ [1.0, 0.5, -0.3] + np.sin(Z[:, 0]) + 0.5 * rng.normal(size=n)
    t0 = time.perf_counter()
    model = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=2), decomposition="lanczos")
    res = model.fit()
    elapsed = time.perf_counter() - t0
    print(f"n = {n}: whole fit {elapsed:.1f} s (Krylov route); t = {res.t:.5g}, "
          f"llf = {res.llf:.4f}; one n x n matrix = {8 * n * n / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
