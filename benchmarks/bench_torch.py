"""Finite torch networks (issue 4): speed against a published reference, and the
kernel build at n = 2000.

Part 1 -- the reference's own example.  A published implementation of this method,
on 480 training + 120 test rows, 10 inputs and a depth-2 width-500 ReLU MLP with
256,501 parameters (``torch.nn.Linear`` layers, default initialisation) on one CPU
thread, took 7.4 s for the train and test empirical NTKs, 3.9 s for its test of
t = 0 and 3.2 s for the NTK loss path at 88 time points (a dense matrix exponential
each): 14.5 s together.  Here, on the same sizes, one thread: the train kernel and
the test cross-kernel, the REML fit (decomposition + search), the exact score test
(``res.score_test()``) and the NTK train *and* test loss path at every epoch up to
three times the REML stopping epoch.  Target: at least 10 x faster.

Part 2 -- n = 2000 with a 3-hidden-layer width-512 ReLU MLP (``torch.nn.Linear``,
531,457 parameters): kernel build time and peak extra resident memory (Linux peak
RSS, reset through ``/proc/self/clear_refs``), with the default memory limit and a
tight one, and the generic ``torch.func`` Jacobian route on a subset for scale.

Prints ratios; asserts nothing about time.

Usage::

    python benchmarks/bench_torch.py              # both parts, one thread
    python benchmarks/bench_torch.py --threads 4  # more threads (not the reference setting)
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _set_threads(k: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(k)


if __name__ == "__main__":  # before numpy / torch are imported
    _pre = argparse.ArgumentParser(add_help=False)
    _pre.add_argument("--threads", type=int, default=1)
    _set_threads(_pre.parse_known_args()[0].threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import mixednn as mn  # noqa: E402
from mixednn.kernels.empirical import empirical_ntk, finite_network_source  # noqa: E402
from mixednn.training import max_stable_lr, ntk_loss_path  # noqa: E402

REFERENCE = {"kernels": 7.4, "score test": 3.9, "loss path (88 points)": 3.2}


def simulate(n: int, d: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, d))
    f = np.sin(Z[:, 0]) + 0.5 * Z[:, 1] ** 2 + np.tanh(Z[:, 2] * Z[:, 3]) + np.cos(Z[:, 4]) \
        + 0.3 * Z[:, 5]
    y = 1.0 + f + 0.5 * rng.normal(size=n)
    return y, Z


def mlp(d: int, width: int, hidden: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    fan = d
    for _ in range(hidden):
        layers += [torch.nn.Linear(fan, width), torch.nn.ReLU()]
        fan = width
    layers.append(torch.nn.Linear(fan, 1))
    return torch.nn.Sequential(*layers)


def clock(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


class PeakRSS:
    """Peak resident memory above the level at entry (Linux; None elsewhere)."""

    def __enter__(self):
        self.ok = True
        try:  # hand freed heap memory back first, so that reuse shows up as growth
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.base = self._read("VmRSS")
        except OSError:
            self.ok = False
        return self

    @staticmethod
    def _read(key: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        raise OSError(key)

    def __exit__(self, *exc):
        self.peak = self._read("VmHWM") - self.base if self.ok else None
        return False


def _mib(b):
    return "n/a" if b is None else f"{b / 2**20:,.0f} MiB"


def part1() -> None:
    print("Part 1: reference example (480 train + 120 test rows, d = 10, depth-2 width-500 "
          f"ReLU MLP), {torch.get_num_threads()} torch thread(s)")
    y, Z = simulate(600)
    net = mlp(10, 500, 2)
    P = sum(p.numel() for p in net.parameters())
    assert P == 256_501, P
    X = np.ones((600, 1))
    tr, te = slice(0, 480), slice(480, 600)
    # warm-up (imports, first-call costs), not timed
    mn.MixedLMNTK(y[:40], X[:40], Z[:40], network=mlp(10, 500, 2)).fit()

    t_all0 = time.perf_counter()
    model, t_model = clock(lambda: mn.MixedLMNTK(y[tr], X[tr], Z[tr], network=net))  # f0 = init
    res, t_fit = clock(model.fit)  # train kernel + decomposition + REML search
    t_kernel = model.kernel_source.build_info["seconds"]
    Zte = model.input_scaling.apply(Z[te])
    _, t_cross = clock(lambda: model.kernel_source.cross(Zte, model.scaled_inputs))
    if hasattr(res, "score_test"):
        st, t_score = clock(res.score_test)
        score_note = f"exact score test of t = 0: p = {getattr(st, 'pvalue', float('nan')):.3g}"
    else:
        st, t_score, score_note = None, float("nan"), "res.score_test() not available"
    lr = max_stable_lr(res) / 10
    stop = round(res.epochs(lr))
    epochs = 3 * stop
    path, t_path = clock(lambda: ntk_loss_path(res, lr, steps=epochs,
                                               test_data=(y[te], X[te], Z[te])))
    ours = {"model setup (checks, f0 = network at init)": t_model,
            "train NTK (480 x 480)": t_kernel, "test cross NTK (120 x 480)": t_cross,
            "decomposition + REML search": t_fit - t_kernel, "score test": t_score,
            f"loss path ({len(path):,} epochs, train + test)": t_path}
    total = sum(v for v in ours.values() if np.isfinite(v))
    ref_total = sum(REFERENCE.values())
    route = model.kernel_source.build_info.get("method")
    print(f"  network: {P:,} parameters; kernel route: {route}")
    print(f"  t_hat = {res.t:.4g}; lr = {lr:.4g} (max stable / 10) -> REML stop at epoch {stop:,}; "
          f"path to epoch {epochs:,}")
    for k, v in ours.items():
        print(f"  {k:<45s} {v:8.3f} s")
    print(f"  ({score_note})")
    print(f"  {'total':<45s} {total:8.3f} s   reference {ref_total:.1f} s   "
          f"speed-up {ref_total / total:6.1f} x   (target >= 10 x)")
    kern = t_model + t_kernel + t_cross
    print(f"  kernels (with setup): {kern:.3f} s vs 7.4 s ({7.4 / kern:.0f} x); "
          f"loss path alone: {t_path:.3f} s for {len(path):,} epochs vs 3.2 s for 88 points")
    wall = time.perf_counter() - t_all0
    print(f"  wall time of the whole timed block: {wall:.3f} s")


def part2(full: bool) -> None:
    n = 2000
    print(f"\nPart 2: n = {n}, 3-hidden-layer width-512 ReLU MLP (torch.nn.Linear)")
    _, Z = simulate(n)
    net = mlp(10, 512, 3)
    P = sum(p.numel() for p in net.parameters())
    print(f"  {P:,} parameters; a dense n x n float64 kernel is {_mib(n * n * 8)}; the full "
          f"Jacobian would be {_mib(n * P * 8)}")
    empirical_ntk(net, Z[:50])  # warm-up
    for limit in (None, 64 * 2**20):
        src = finite_network_source(net, max_memory=limit)
        with PeakRSS() as mem:
            K, t = clock(lambda: src.gram(Z))
        info = src.build_info
        extra = None if mem.peak is None else mem.peak - K.nbytes
        print(f"  route {info['method']:<8s} max_memory {_mib(info['max_memory']):>9s}: "
              f"{t:6.2f} s, peak extra RSS beyond K {_mib(extra):>8s} "
              f"(estimate {_mib(info['estimated_peak_bytes'])}), {info['block_evaluations']} "
              f"block(s) of <= {info['block_rows']} rows, panels of {info['panel_rows']}")
        del K
    m = n if full else 200
    src = finite_network_source(net, method="jacobian", max_memory=2**30)
    with PeakRSS() as mem:
        K, t = clock(lambda: src.gram(Z[:m]))
    extra = None if mem.peak is None else mem.peak - K.nbytes
    scale = (n / m) ** 2
    note = "" if m == n else \
        f" (x{scale:.0f} for n = {n}: about {t * scale:,.0f} s; --full runs it)"
    print(f"  route jacobian (torch.func) on {m} rows: {t:6.2f} s, peak extra RSS "
          f"{_mib(extra)}{note}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--full", action="store_true", help="the Jacobian route on all 2000 rows")
    ap.add_argument("--part", type=int, choices=(1, 2))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.part in (None, 1):
        part1()
    if args.part in (None, 2):
        part2(args.full)


if __name__ == "__main__":
    main(sys.argv[1:])
