"""Size of the tests of H0: t = 0 when the kernel hyperparameters are estimated (issue 15).

Under H0 the kernel does not enter the likelihood, so its hyperparameters (ARD input
scales, bias_std) exist only under the alternative (Davies' problem): a test that uses
the kernel chosen by maximising the likelihood on the same data is not a test with a
fixed kernel.  This simulation measures the empirical size at n = 100 of

* ``score, start kernel``: ``ko.score_test()`` (``KernelOptimization``), the exact score
  test with the starting kernel, fixed before the data chose the hyperparameters;
* ``score, plain model``: ``model.fit().score_test()`` without any optimisation -- the
  same test; the script checks that statistic and p-value agree exactly;
* ``score, chosen kernel``: ``ko.fit().score_test()``, the naive exact score test with
  the REML-chosen kernel treated as if it had been fixed in advance;
* ``RLRT, start kernel`` / ``RLRT, chosen kernel``: ``res.lr_test(nsim=999)`` (simulated
  exact null for a *fixed* kernel) on the starting and on the chosen kernel's fit;
* ``max RLRT, bootstrap``: the maximised statistic ``T = 2 [l_R(chosen kernel, t_hat) -
  l_R(0)]`` calibrated by a parametric bootstrap that re-runs ``optimize_kernel`` on each
  simulated null response ``y* = X b_ols + s_ols e*`` (B = 39 draws; the statistic is
  invariant to ``y -> a y + X b``, so this is a Monte Carlo test with exact level
  2/40 = 0.05).  The decision at alpha = 0.05 is computed sequentially (Besag & Clifford
  1991): drawing stops as soon as 2 bootstrap statistics reach ``T`` (then the p-value
  ``(1 + #{T* >= T}) / 40`` exceeds 0.05 whatever the remaining draws), and ``T = 0``
  (the search stayed at a boundary fit) needs no draws (p = 1).  This is the same
  decision as the full 39-draw test at a fraction of the cost.  alpha = 0.01 is not
  attainable with 39 draws (smallest p-value 1/40).

Data per replicate (X and Z redrawn each time): ``y = X beta + e``, ``X = [1, x]``,
``x ~ N(0, 1)``, ``beta = (1, 0.5)``, ``e ~ N(0, 1)``; network inputs Z: 3 independent
standard normal columns (independent of y); network ``mn.MLP(depth=2, bias_std=0.5)``;
``optimize_kernel(model, input_scales="ard", bias_std=True, maxiter=...)`` (REML, all
rows).  Replicate r uses ``numpy.random.default_rng([seed, r])`` (data) and
``default_rng([seed, r, 1])`` (bootstrap), so results do not depend on ``--jobs``.

Usage::

    python benchmarks/bench_size_hyper.py                # R = 500, B = 39, 2 processes
    python benchmarks/bench_size_hyper.py --quick        # R = 60 (a smoke run)
    python benchmarks/bench_size_hyper.py --no-boot      # skip the bootstrap
    python benchmarks/bench_size_hyper.py --out sizes.csv

Rejection is "p-value <= alpha"; the Monte Carlo standard error of a rate is
``sqrt(alpha (1 - alpha) / R)`` (at the nominal level), and ``*`` marks a rate more
than 2 s.e. from alpha.  Asserts nothing except the exact agreement of the two
start-kernel score tests.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch: BLAS threads
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # oversubscribe a small shared box
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
import multiprocessing as mp  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import mixednn as mn  # noqa: E402
from mixednn.hyper import optimize_kernel  # noqa: E402

N = 100
BETA = (1.0, 0.5)
ALPHAS = (0.05, 0.01)
ZERO = 1e-9  # statistics below this are boundary fits (T = 0)

TESTS = [  # (column, label)
    ("score_start", "score, start kernel (`ko.score_test()`)"),
    ("score_plain", "score, plain model (`m.fit().score_test()`)"),
    ("score_chosen", "score, REML-chosen kernel (naive)"),
    ("rlrt_start", "RLRT sim., start kernel"),
    ("rlrt_chosen", "RLRT sim., REML-chosen kernel (naive)"),
    ("boot", "max RLRT, bootstrap re-optimising (B = 39)"),
]


def simulate_data(rng: np.random.Generator, n: int = N):
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    Z = rng.normal(size=(n, 3))
    y = X @ np.asarray(BETA) + rng.normal(size=n)
    return y, X, Z


def make_model(y, X, Z):
    return mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=2, bias_std=0.5))


def optimize(model, maxiter: int):
    return optimize_kernel(model, input_scales="ard", bias_std=True, maxiter=maxiter)


def _rss(y, X):
    b = np.linalg.lstsq(X, y, rcond=None)[0]
    r = y - X @ b
    return float(r @ r), b


def bootstrap_decision(T: float, X, Z, y, llf0_const: float, B: int, alpha: float,
                       maxiter: int, rng: np.random.Generator) -> tuple[bool, int, int]:
    """Sequential Monte Carlo test of the maximised RLRT ``T``: (reject at alpha, draws
    made, exceedances).  ``l_R(0) = llf0_const - (n - p)/2 log RSS`` (same X)."""
    n, p = X.shape
    h = int(math.floor(alpha * (B + 1)))  # reject iff #{T* >= T} <= h - 1
    if h < 1 or T <= ZERO:  # unattainable level, or T = 0: p = 1
        return False, 0, 0
    rss, b = _rss(y, X)
    s = math.sqrt(rss / (n - p))
    exceed = 0
    for draw in range(1, B + 1):
        ys = X @ b + s * rng.normal(size=n)
        ko = optimize(make_model(ys, X, Z), maxiter)
        rss_s, _ = _rss(ys, X)
        Ts = max(2.0 * (ko.llf - (llf0_const - 0.5 * (n - p) * math.log(rss_s))), 0.0)
        if Ts >= T - ZERO:
            exceed += 1
            if exceed >= h:
                return False, draw, exceed
    return True, B, exceed


def one_replicate(args) -> dict:
    r, seed, maxiter, B, nsim, boot = args
    warnings.simplefilter("ignore")  # boundary-fit warnings: most null fits have t = 0
    rng = np.random.default_rng([seed, r])
    y, X, Z = simulate_data(rng)
    n, p = X.shape
    out: dict = {"rep": r}
    t0 = time.perf_counter()
    m = make_model(y, X, Z)
    ko = optimize(m, maxiter)
    t1 = time.perf_counter()
    a = ko.score_test()
    t2 = time.perf_counter()
    res = ko.fit()
    b = res.score_test()
    t3 = time.perf_counter()
    r0 = m.fit()
    c = r0.score_test()
    out["exact_agreement"] = bool(a.statistic == c.statistic and a.pvalue == c.pvalue)
    lr_start = r0.lr_test(nsim=nsim, seed=int(rng.integers(2**31)))
    lr_chosen = res.lr_test(nsim=nsim, seed=int(rng.integers(2**31)))
    t4 = time.perf_counter()
    T = max(2.0 * (res.estimate.llf - res.estimate.llf_zero), 0.0)
    out.update({
        "score_start": a.pvalue, "score_plain": c.pvalue, "score_chosen": b.pvalue,
        "Q_start": a.statistic, "Q_chosen": b.statistic,
        "rlrt_start": lr_start.pvalue, "rlrt_chosen": lr_chosen.pvalue,
        "T_start": lr_start.statistic, "T_max": T,
        "llf_gap": res.estimate.llf - ko.llf,  # 0: ko.llf is the all-rows REML
        "t_hat_start": r0.t, "t_hat_chosen": res.t,
        "evaluations": ko.cost["evaluations"],
        "sec_optimize": t1 - t0, "sec_score_start": t2 - t1, "sec_fit_score_chosen": t3 - t2,
        "sec_plain_and_rlrt": t4 - t3,
    })
    if boot:
        rss, _ = _rss(y, X)
        llf0_const = res.estimate.llf_zero + 0.5 * (n - p) * math.log(rss)
        brng = np.random.default_rng([seed, r, 1])
        rej, draws, exc = bootstrap_decision(T, X, Z, y, llf0_const, B, 0.05, maxiter, brng)
        out.update({"boot_reject_05": rej, "boot_draws": draws, "boot_exceed": exc,
                    "sec_boot": time.perf_counter() - t4})
    return out


def summarise(df: pd.DataFrame, boot: bool) -> pd.DataFrame:
    R = len(df)
    rows = []
    for col, label in TESTS:
        row = {"test": label}
        for a in ALPHAS:
            se = math.sqrt(a * (1 - a) / R)
            if col == "boot":
                if not boot:
                    rate = float("nan")
                elif a == 0.05:
                    rate = float(df["boot_reject_05"].mean())
                else:
                    rate = float("nan")  # not attainable with B = 39
            else:
                rate = float((df[col] <= a).mean())
            flag = "*" if np.isfinite(rate) and abs(rate - a) > 2 * se else ""
            row[f"{a:g}"] = rate
            row[f"{a:g} flag"] = flag
            row[f"s.e. {a:g}"] = se
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(tab: pd.DataFrame) -> str:
    lines = ["| test | size at 5% | size at 1% |", "|---|---|---|"]
    for _, row in tab.iterrows():
        cells = []
        for a in ALPHAS:
            v = row[f"{a:g}"]
            cells.append("n/a" if not np.isfinite(v) else f"{v:.3f}{row[f'{a:g} flag']}")
        lines.append(f"| {row['test']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=500, help="replications R (default 500)")
    ap.add_argument("--quick", action="store_true", help="R = 60")
    ap.add_argument("--seed", type=int, default=20240515)
    ap.add_argument("--maxiter", type=int, default=50, help="optimize_kernel maxiter (default 50)")
    ap.add_argument("--boot", type=int, default=39, help="bootstrap draws B (default 39)")
    ap.add_argument("--no-boot", action="store_true", help="skip the bootstrap-calibrated test")
    ap.add_argument("--nsim", type=int, default=999, help="lr_test simulations (default 999)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="worker processes (default min(2, cpus))")
    ap.add_argument("--out", default=None, help="CSV of the per-replicate results")
    args = ap.parse_args()
    R = 60 if args.quick else args.reps
    boot = not args.no_boot
    tasks = [(r, args.seed, args.maxiter, args.boot, args.nsim, boot) for r in range(R)]
    t0 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as ex:
            rows = list(ex.map(one_replicate, tasks, chunksize=4))
    else:
        rows = [one_replicate(t) for t in tasks]
    wall = time.perf_counter() - t0
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, index=False)

    assert df["exact_agreement"].all(), "ko.score_test() differs from the plain model's"
    tab = summarise(df, boot)
    print(f"\nSize of the tests of t = 0 with estimated kernel hyperparameters "
          f"({datetime.date.today().isoformat()})")
    print(f"n = {N}, R = {R} replications, seed {args.seed}, optimize_kernel(input_scales='ard', "
          f"bias_std=True, maxiter={args.maxiter}), lr_test nsim = {args.nsim}"
          + (f", bootstrap B = {args.boot}" if boot else ""))
    print(f"Monte Carlo s.e.: {math.sqrt(0.05 * 0.95 / R):.4f} at 5%, "
          f"{math.sqrt(0.01 * 0.99 / R):.4f} at 1%; * = more than 2 s.e. from alpha\n")
    print(markdown(tab))
    print(f"\nstart-kernel score test == plain-model score test (statistic and p-value, "
          f"exactly): {int(df['exact_agreement'].sum())}/{R}")
    print(f"ko.llf == REML of ko.fit() (all rows): max |gap| {df['llf_gap'].abs().max():.2e}")
    bnd = df["T_max"] <= ZERO
    print(f"boundary: start-kernel t_hat = 0 in {np.mean(df['t_hat_start'] <= 0):.3f} of "
          f"replications; maximised RLRT = 0 in {bnd.mean():.3f} (the search cannot move "
          f"from a t = 0 fit: there the likelihood does not depend on the kernel)")
    moved = df["T_max"] > df["T_start"] + 1e-6
    print(f"search moved the kernel (T_max > T_start) in {moved.mean():.3f}; median "
          f"T_max / T_start there {np.median(df.loc[moved, 'T_max'] / df.loc[moved, 'T_start']):.2f}"
          if moved.any() else "search never moved the kernel")
    sec = {c: df[c].mean() for c in df.columns if c.startswith("sec_")}
    print("mean seconds per replication: " + ", ".join(f"{k[4:]} {v:.3f}" for k, v in sec.items())
          + f"; mean optimize_kernel evaluations {df['evaluations'].mean():.1f}")
    if boot:
        print(f"bootstrap: mean draws per replication {df['boot_draws'].mean():.1f} "
              f"(max {df['boot_draws'].max()}), {int(df['boot_draws'].sum())} re-optimisations")
    print(f"wall time {wall:.0f} s with {args.jobs} process(es)")


if __name__ == "__main__":
    main()
