"""Size and power of the tests of H0: t = 0, and the speed of the simulated RLRT (issue 3).

For n = 30, 100, 500 with 1 and 5 covariates (plus an intercept) and the analytic
depth-2 ReLU NTK of two standardised inputs, data are simulated under H0 (``y = X beta
+ s e``, arbitrary beta and s, in the data basis, then rotated with the fit's
eigenvectors) and under alternatives ``Var(y) = s2 exp(tK)`` whose signal share
``tr(G)/tr(V)`` ranges over a grid.  Rejection rates at alpha = 0.05 and 0.01 are
reported for

* ``exact``: the score test's exact ratio-of-quadratic-forms null (the default of
  ``res.score_test()``);
* ``satt`` / ``liu``: moment matching with the exact null moments of Q;
* ``plugin`` / ``plug-satt``: the large-sample plug-in reference (s2 held fixed), exact
  (Imhof) and Satterthwaite;
* ``rlrt-sim`` / ``rlrt-mix``: the restricted likelihood ratio with its simulated exact
  null (10,000 draws) and with the 50:50 chi2_0 : chi2_1 mixture.

Each test rejects when its p-value is <= alpha; as every p-value is a decreasing
function of its statistic, that is computed once per configuration as a critical value
(a root of the same p-value functions ``res.score_test`` uses), and checked against
the API (``score_test``/``lr_test`` on refits) for the first replicates.

Usage::

    python benchmarks/bench_tests.py                 # 4,000 null replicates per cell
    python benchmarks/bench_tests.py --reps 2000 --power-reps 500
    python benchmarks/bench_tests.py --quick         # a smoke run (seconds)
    python benchmarks/bench_tests.py --markdown docs/tests.md   # rewrite the tables there

Prints ratios to targets (the exact test's size within Monte Carlo error of alpha at
n = 30; the simulated RLRT under 2 s for n = 1,000, nsim = 10,000 after the fit); it
asserts nothing about time.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
from scipy import stats
from scipy.optimize import brentq

import mixednn as mn
from mixednn.chi2sums import projected_ratio_sf
from mixednn.inference import liu_from_cumulants, ratio_cumulants
from mixednn.lrnull import NullSimulator, simulate_lr_null
from mixednn.quadform import QuadraticForm
from mixednn.exceptions import BoundaryFitWarning

ALPHAS = (0.05, 0.01)
METHODS = ("exact", "satt", "liu", "plugin", "plug-satt", "rlrt-sim", "rlrt-mix")


def make_design(n: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 2))
    X = np.column_stack([np.ones(n), rng.normal(size=(n, k))])
    y0 = X @ rng.normal(size=k + 1) + rng.normal(size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mn.MixedLMNTK(y0, X, Z, network=mn.MLP(depth=2))
        res = model.fit()
    return model, res


class Criticals:
    """Critical values of every method for one design (lam, X_rot)."""

    def __init__(self, res, nsim: int, seed: int):
        prof = res.model.profile
        self.prof = prof
        lam, Xr = prof.lam, prof.X_rot
        self.m = m = prof.nobs - prof.p
        qf = QuadraticForm.projected(lam, Xr)
        kap = qf.cumulants(4)
        numin, numax = qf.eig_range()
        mean_q = kap[0] / m
        self.kq = ratio_cumulants(lam, Xr, m, mean_q)
        self.crit = {}
        for a in ALPHAS:
            c = {}
            c["exact"] = brentq(lambda q: projected_ratio_sf(q, lam, Xr).pvalue - a,
                                numin + 1e-12, numax - 1e-12, xtol=1e-13, rtol=1e-13)
            sa = self.kq[1] / (2 * self.kq[0])
            sdf = 2 * self.kq[0] ** 2 / self.kq[1]
            c["satt"] = sa * stats.chi2.isf(a, sdf)
            c["liu"] = brentq(lambda q: liu_from_cumulants(q, self.kq)[0] - a, numin, numax,
                              xtol=1e-13, rtol=1e-13)
            hi = kap[0] + 60 * math.sqrt(kap[1])
            c["plugin"] = brentq(lambda s: qf.sf(s, "davies").pvalue - a, kap[0] * 0.5, hi,
                                 xtol=1e-10, rtol=1e-13) / m
            pa = kap[1] / (2 * kap[0])
            pdf = 2 * kap[0] ** 2 / kap[1]
            c["plug-satt"] = pa * stats.chi2.isf(a, pdf) / m
            c["rlrt-mix"] = stats.chi2.isf(2 * a, 1)
            self.crit[a] = c
        self.null = np.sort(simulate_lr_null(res, nsim, seed=seed))

    def rlrt_sim_pvalues(self, stat: np.ndarray) -> np.ndarray:
        nsim = self.null.shape[0]
        k = nsim - np.searchsorted(self.null, stat - 1e-8 * np.maximum(1.0, stat), "left")
        return (1 + k) / (nsim + 1)

    def reject(self, Q: np.ndarray, rlrt: np.ndarray, a: float) -> dict:
        c = self.crit[a]
        out = {k: float(np.mean(Q >= c[k])) for k in ("exact", "satt", "liu", "plugin",
                                                     "plug-satt")}
        out["rlrt-sim"] = float(np.mean(self.rlrt_sim_pvalues(rlrt) <= a))
        out["rlrt-mix"] = float(np.mean(rlrt > c["rlrt-mix"]))
        return out


def statistics(prof, Yr: np.ndarray):
    """Q and the RLRT of every column of the rotated responses ``Yr`` (n x R)."""
    Xr, lam = prof.X_rot, prof.lam
    B = np.linalg.lstsq(Xr, Yr, rcond=None)[0]
    R = Yr - Xr @ B
    Q = (lam @ (R * R)) / np.sum(R * R, axis=0)
    sim = NullSimulator(prof, True)
    z = np.zeros((prof.p, Yr.shape[1]))
    z0 = np.zeros(Yr.shape[1])
    out = np.empty(Yr.shape[1])
    step = 4000
    for s in range(0, Yr.shape[1], step):
        Y = Yr[:, s:s + step]
        lmax, _ = sim.maximize(Y, z[:, s:s + step], z0[s:s + step])
        l0 = sim.zero_llf(Y, Y * Y, z[:, s:s + step], z0[s:s + step])
        out[s:s + step] = np.maximum(2 * (lmax - l0), 0.0)
    return Q, out


def api_check(model, res, crit: Criticals, Y: np.ndarray, nchk: int) -> int:
    """Refit the first replicates through the public API; count disagreements."""
    bad = 0
    K = model.kernel_matrix()
    X = model.exog
    for b in range(nchk):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BoundaryFitWarning)
            r = mn.MixedLMNTK(Y[:, b], X, kernel=K).fit()
        st = r.score_test()
        for a in ALPHAS:
            if abs(st.pvalue - a) > 1e-9 and (st.pvalue <= a) != (st.statistic >= crit.crit[a]["exact"]):
                bad += 1
        Qb, rl = statistics(r.model.profile, r.model.profile.y_rot[:, None])
        if abs(rl[0] - max(2 * (r.estimate.llf - r.estimate.llf_zero), 0.0)) > 1e-6:
            bad += 1
    return bad


def size_table(ns, ks, reps, nsim, seed, nchk):
    rows = []
    for n in ns:
        for k in ks:
            t0 = time.perf_counter()
            model, res = make_design(n, k, seed + 7 * n + k)
            crit = Criticals(res, nsim, seed + 1)
            rng = np.random.default_rng(seed + 1000 * n + k)
            beta = rng.normal(size=k + 1) * 3
            Y = (model.exog @ beta)[:, None] + 2.5 * rng.normal(size=(n, reps))
            Yr = model.basis.rotate(Y)
            Q, rl = statistics(model.profile, Yr)
            bad = api_check(model, res, crit, Y, nchk)
            rej = {a: crit.reject(Q, rl, a) for a in ALPHAS}
            rows.append({"n": n, "k": k, "rej": rej, "bad": bad,
                         "zero": float(np.mean(crit.null == 0)),
                         "sec": time.perf_counter() - t0})
            print(f"  size n={n:4d} covariates={k}: done in {rows[-1]['sec']:.1f} s "
                  f"(API disagreements: {bad})", flush=True)
    return rows


def share_to_t(lam: np.ndarray, n: int, share: float) -> float:
    """t with tr(G)/tr(V) = sum(e^{t lam} - 1) / sum(e^{t lam}) = share (n - len(lam) zeros)."""
    top = float(lam.max())

    def f(logt):
        x = np.exp(logt) * lam
        mx = x.max()
        num = np.sum(np.exp(x - mx) - np.exp(-mx))
        den = np.sum(np.exp(x - mx)) + (n - lam.shape[0]) * np.exp(-mx)
        return num / den - share

    return float(np.exp(brentq(f, math.log(1e-10 / top), math.log(200.0 / top), xtol=1e-12)))


def power_table(ns, shares, reps, nsim, seed):
    rows = []
    for n in ns:
        model, res = make_design(n, 1, seed + 7 * n + 1)
        crit = Criticals(res, nsim, seed + 1)
        prof = model.profile
        rng = np.random.default_rng(seed + 99 * n)
        for sh in shares:
            t = share_to_t(prof.lam, n, sh)
            Yr = prof.X_rot @ np.array([1.0, -1.0])[:, None] + \
                np.exp(0.5 * t * prof.lam)[:, None] * rng.normal(size=(n, reps))
            Q, rl = statistics(prof, Yr)
            rows.append({"n": n, "share": sh, "t": t, "rej": crit.reject(Q, rl, 0.05)})
        print(f"  power n={n:4d}: done", flush=True)
    return rows


def fmt_size(rows, reps) -> str:
    se = {a: math.sqrt(a * (1 - a) / reps) for a in ALPHAS}
    head = "| n | covariates | " + " | ".join(
        f"{m} {int(a * 100)}%" for a in ALPHAS for m in METHODS) + " | RLRT null P(0) |"
    sep = "|" + "---|" * (2 + len(METHODS) * len(ALPHAS) + 1)
    lines = [head, sep]
    for r in rows:
        cells = []
        for a in ALPHAS:
            for m in METHODS:
                v = r["rej"][a][m]
                flag = "" if abs(v - a) <= 2 * se[a] else "*"
                cells.append(f"{v:.4f}{flag}")
        lines.append(f"| {r['n']} | {r['k']} | " + " | ".join(cells) + f" | {r['zero']:.3f} |")
    lines.append("")
    lines.append(f"{reps:,} null replicates per row; Monte Carlo s.e. {se[0.05]:.4f} at 5% and "
                 f"{se[0.01]:.4f} at 1%; `*` marks a rate more than 2 s.e. from alpha. "
                 "`RLRT null P(0)`: simulated probability that the RLRT is 0 (0.5 asymptotically).")
    return "\n".join(lines)


def fmt_power(rows, reps) -> str:
    head = "| n | signal share tr(G)/tr(V) | t | " + " | ".join(METHODS) + " |"
    sep = "|" + "---|" * (3 + len(METHODS))
    lines = [head, sep]
    for r in rows:
        lines.append(f"| {r['n']} | {r['share']:.2f} | {r['t']:.3g} | "
                     + " | ".join(f"{r['rej'][m]:.3f}" for m in METHODS) + " |")
    lines.append("")
    lines.append(f"Rejection rates at alpha = 0.05, {reps:,} replicates per row, one covariate.")
    return "\n".join(lines)


def speed(nsim: int, seed: int) -> str:
    model, res = make_design(1000, 1, seed)
    t0 = time.perf_counter()
    res.lr_test(nsim=nsim, seed=seed)
    t_lr = time.perf_counter() - t0
    t0 = time.perf_counter()
    st = res.score_test()
    t_sc = time.perf_counter() - t0
    return (f"n = 1,000: res.lr_test(nsim={nsim:,}) {t_lr:.2f} s (target 2 s, ratio "
            f"{t_lr / 2:.2f}); res.score_test() {t_sc:.3f} s ({st.method})\n"
            + low_rank_speed(seed))


def low_rank_speed(seed: int, n: int = 50_000, m: int = 300) -> str:
    """Exact score null of a low-rank fit: the n - m zero eigenvalues as one term with
    multiplicity (the package) against the same form with them repeated (the baseline),
    in the same run."""
    from mixednn.inference import full_spectrum

    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = 0.02 * Z[:, 0] + rng.normal(size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=2), low_rank=m).fit()
    t0 = time.perf_counter()
    st = res.score_test("exact")
    t_new = time.perf_counter() - t0
    lam, Xa, cnt = full_spectrum(res.model.profile)
    reps = cnt.astype(int)
    t0 = time.perf_counter()
    base = QuadraticForm.projected(np.repeat(lam, reps), np.repeat(Xa, reps, axis=0),
                                   shift=st.statistic).sf(0.0, "auto", 1e-9)
    t_old = time.perf_counter() - t0
    return (f"low rank, n = {n:,}, m = {m}: exact score test {t_new:.3f} s vs {t_old:.3f} s "
            f"with the zero eigenvalues repeated (ratio {t_new / t_old:.2f}); p-values "
            f"{st.pvalue:.6g} and {base.pvalue:.6g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=4000, help="null replicates per cell")
    ap.add_argument("--power-reps", type=int, default=1000)
    ap.add_argument("--nsim", type=int, default=10_000, help="RLRT null simulations")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--markdown", default=None, help="write the tables into this file "
                    "between the '<!-- bench_tests:begin -->' and ':end -->' markers")
    args = ap.parse_args()
    ns = (30, 100, 500)
    ks = (1, 5)
    shares = (0.02, 0.05, 0.1, 0.2, 0.4)
    reps, preps, nsim, nchk = args.reps, args.power_reps, args.nsim, 5
    if args.quick:
        ns, reps, preps, nsim, nchk = (30, 100), 300, 200, 2000, 2
    t0 = time.perf_counter()
    print("Empirical size (H0: t = 0 true)")
    size = size_table(ns, ks, reps, nsim, args.seed, nchk)
    print("Power (alternatives Var(y) = s2 exp(tK))")
    power = power_table(ns, shares, preps, nsim, args.seed)
    sp = speed(nsim if not args.quick else 10_000, args.seed)
    s_tab, p_tab = fmt_size(size, reps), fmt_power(power, preps)
    print()
    print(s_tab)
    print()
    print(p_tab)
    print()
    print(sp)
    r30 = [r for r in size if r["n"] == 30]
    for r in r30:
        for a in ALPHAS:
            se = math.sqrt(a * (1 - a) / reps)
            z = (r["rej"][a]["exact"] - a) / se
            print(f"target: exact size at n = 30, {r['k']} covariate(s), alpha = {a}: "
                  f"{r['rej'][a]['exact']:.4f}, |z| = {abs(z):.2f} (ratio to 2 s.e.: "
                  f"{abs(z) / 2:.2f})")
    print(f"API disagreements (should be 0): {sum(r['bad'] for r in size)}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    if args.markdown:
        path = args.markdown
        text = open(path).read()
        b, e = "<!-- bench_tests:begin -->", "<!-- bench_tests:end -->"
        if b not in text or e not in text:
            raise SystemExit(f"{path} has no {b} ... {e} markers")
        block = (f"{b}\n### Size\n\n{s_tab}\n\n### Power\n\n{p_tab}\n\n### Speed\n\n{sp}\n{e}")
        text = text[:text.index(b)] + block + text[text.index(e) + len(e):]
        with open(path, "w") as fh:
            fh.write(text)
        print(f"tables written to {path}")


if __name__ == "__main__":
    main()
