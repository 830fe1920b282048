"""Build time of the analytic NTK against neural-tangents' reference times.

Times ``MLP(depth=2, activation="relu").ntk(X)`` (the n x n Gram matrix,
``Z2=None``) for ``X`` of shape ``(n, 10)``, float64, n = 1,000, 2,000 and
4,000, and compares with the jitted ``neural_tangents.stax`` kernel_fn of the
same architecture on this 2-core machine (0.09 s at n = 2,000, 0.55 s at
n = 4,000); then ``ntk`` and ``kernels`` (NNGP + NTK) for the other
activations at n = 1,000.

Each configuration is run once to warm up and then ``--repeats`` times; the
minimum and median wall-clock times are printed (the minimum is the least
disturbed by other processes), with the process CPU time of the fastest run.

Usage::

    python benchmarks/bench_kernel.py [--repeats 7] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REFERENCE = {2000: 0.09, 4000: 0.55}  # neural-tangents stax, jitted, seconds


def timeit(fn, repeats: int) -> tuple[float, float, float]:
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    i = int(np.argmin(walls))
    return walls[i], float(np.median(walls)), cpus[i]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None,
                    help="worker threads (default: all cores; sets MIXEDNN_NUM_THREADS)")
    args = ap.parse_args()
    if args.threads:
        os.environ["MIXEDNN_NUM_THREADS"] = str(args.threads)

    from mixednn.kernels.analytic import MLP

    rng = np.random.default_rng(0)
    print(f"cores available: {len(os.sched_getaffinity(0))}, "
          f"threads: {os.environ.get('MIXEDNN_NUM_THREADS', 'all')}")
    print(f"{'kernel':34s} {'n':>5s} {'min s':>8s} {'median s':>9s} {'cpu s':>7s} {'vs NT':>7s}")
    m = MLP(depth=2, activation="relu")
    for n in (1000, 2000, 4000):
        X = rng.normal(size=(n, 10))
        for label, fn in (("relu depth 2 ntk", lambda: m.ntk(X)),
                          ("relu depth 2 kernels (nngp+ntk)", lambda: m.kernels(X))):
            best, med, cpu = timeit(fn, args.repeats)
            ref = REFERENCE.get(n)
            ratio = f"{best / ref:6.2f}x" if ref else "      -"
            print(f"{label:34s} {n:5d} {best:8.3f} {med:9.3f} {cpu:7.3f} {ratio}")
    X = rng.normal(size=(1000, 10))
    for act, bias in (("relu", 0.1), ("erf", 0.0), ("gelu", 0.0), ("tanh", 0.0),
                      ("sigmoid", 0.0), ("softplus", 0.0)):
        mm = MLP(depth=2, activation=act, bias_std=bias)
        best, med, cpu = timeit(lambda: mm.ntk(X), max(1, args.repeats // 2))
        label = f"{act} depth 2 ntk" + (f" (b_std={bias:g})" if bias else "")
        print(f"{label:34s} {1000:5d} {best:8.3f} {med:9.3f} {cpu:7.3f}       -")
    mq = MLP(depth=2, activation="tanh", quadrature_nodes=32)
    best, med, cpu = timeit(lambda: mq.ntk(X), 1)
    print(f"{'tanh depth 2 ntk, 2-D GH (32x96)':34s} {1000:5d} {best:8.3f} {med:9.3f} {cpu:7.3f}"
          "       -")
    print("vs NT: minimum time / neural-tangents reference (0.09 s at n=2000, 0.55 s at n=4000); "
          "< 1 is faster")


if __name__ == "__main__":
    main()
