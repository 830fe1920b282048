"""Matrix-free exact fits (``matrix_free=True``) and the device path (``device=``).

For each n, in a fresh subprocess (so that the peak resident memory is this fit's): the
whole matrix-free fit (depth-2 ReLU NTK, d = 10; block Lanczos with the kernel
recomputed tile by tile for every product) and the means at 200 new rows, with the
wall time, the peak resident memory (``resource.getrusage``) against one n x n float64
matrix, the tile height, the Krylov dimension and the number of kernel passes.  Then
the device line: the same fit with ``device="cpu"`` (torch on the CPU: the code a GPU
runs) and, when ``torch.cuda.is_available()``, ``device="cuda"``, with their ratios
against the NumPy path.

    OMP_NUM_THREADS=1 python benchmarks/bench_matrix_free.py --sizes 5000 10000 20000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))  # this checkout


def simulate(n: int, d: int = 10, seed: int = 0, extra: int = 200):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n + extra, d))
    X = np.column_stack([np.ones(n + extra), rng.normal(size=n + extra)])
    y = X @ [1.0, 0.5] + np.sin(2 * Z[:, 0]) + Z[:, 1] * Z[:, 2] + 0.5 * rng.normal(size=n + extra)
    return y, X, Z


def one(n: int, device: str | None, matrix_free: bool | int) -> dict:
    """One fit in this process (the subprocess entry point)."""
    import mixednn as mn
    y, X, Z = simulate(n)
    t0 = time.perf_counter()
    m = mn.MixedLMNTK(y[:n], X[:n], Z[:n], network=mn.MLP(depth=2), matrix_free=matrix_free,
                      device=device)
    res = m.fit()
    t_fit = time.perf_counter() - t0
    t1 = time.perf_counter()
    mean = np.asarray(res.predict(exog=X[n:], ntk_inputs=Z[n:]), dtype=float)
    t_pred = time.perf_counter() - t1
    op = m.basis.kernel
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"n": n, "device": device or "numpy", "fit_s": t_fit, "predict_s": t_pred,
            "peak_bytes": peak, "nxn_bytes": 8 * n * n, "tile_rows": op.tile_rows,
            "dim": m.basis.dimension, "passes": op.products, "t": res.t, "llf": res.llf,
            "params": np.asarray(res.params).tolist(), "mean0": float(mean[0])}


def spawn(n: int, device: str | None, matrix_free: bool | int = True) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", str(n), "--device", str(device),
                          "--matrix-free", str(matrix_free)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[2000, 5000])
    ap.add_argument("--device-n", type=int, default=2000, help="n of the device comparison")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--device", default="None", help=argparse.SUPPRESS)
    ap.add_argument("--matrix-free", default="True", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one is not None:
        mf = a.matrix_free
        mf = True if mf == "True" else False if mf == "False" else int(mf)
        print(json.dumps(one(a.one, None if a.device == "None" else a.device, mf)))
        return
    print("matrix-free exact fit, depth-2 ReLU NTK, d = 10 (whole fit; means at 200 new rows)")
    print(f"{'n':>7} {'fit s':>8} {'pred s':>7} {'peak MB':>8} {'n^2 MB':>8} {'peak/n^2':>8} "
          f"{'b':>5} {'dim':>4} {'passes':>6} {'s/pass':>7}")
    rows = []
    for n in a.sizes:
        r = spawn(n, None)
        rows.append(r)
        print(f"{n:>7} {r['fit_s']:>8.1f} {r['predict_s']:>7.1f} {r['peak_bytes'] / 1e6:>8.0f} "
              f"{r['nxn_bytes'] / 1e6:>8.0f} {r['peak_bytes'] / r['nxn_bytes']:>8.3f} "
              f"{r['tile_rows']:>5} {r['dim']:>4} {r['passes']:>6} "
              f"{r['fit_s'] / max(r['passes'], 1):>7.2f}", flush=True)
    if len(rows) >= 2:  # a pass evaluates n^2 / 2 kernel entries: time per pass ~ n^2
        last = rows[-1]
        per_entry = last["fit_s"] / max(last["passes"], 1) / last["n"] ** 2
        est = per_entry * 50_000 ** 2 * last["passes"]
        print(f"n = 50,000 from n = {last['n']:,} (time per pass ~ n^2, same number of "
              f"passes): ~{est / 60:.0f} min, tile memory {128} MiB plus the Krylov basis "
              f"(50,000 x {last['dim']} x 8 B = {50_000 * last['dim'] * 8 / 1e6:.0f} MB)")
    print(f"\ndevice path at n = {a.device_n} (same fit; ratio = device time / NumPy time)")
    base = spawn(a.device_n, None)
    devices = ["cpu"]
    try:
        import torch
        if torch.cuda.is_available():
            devices += ["cuda"]
    except ImportError:
        devices = []
    print(f"{'device':>8} {'fit s':>8} {'ratio':>6} {'rel diff t':>11} {'rel diff llf':>12}")
    print(f"{'numpy':>8} {base['fit_s']:>8.2f} {1.0:>6.2f}")
    for dev in devices:
        for mf in (True, False):
            r = spawn(a.device_n, dev, mf)
            name = dev + ("" if mf else "+stored")
            print(f"{name:>8} {r['fit_s']:>8.2f} {r['fit_s'] / base['fit_s']:>6.2f} "
                  f"{abs(r['t'] - base['t']) / base['t']:>11.1e} "
                  f"{abs(r['llf'] - base['llf']) / abs(base['llf']):>12.1e}", flush=True)
    if "cuda" not in devices:
        print("(no CUDA device here: only torch on the CPU was compared)")


if __name__ == "__main__":
    main()
