"""How good is each rule for the training time t?  Held-out error against the oracle (issue 6).

For every setting (simulations and real data, each with a held-out split) the model is
fit once (analytic depth-3 ReLU NTK, standardised inputs); every rule then chooses t
from the same decomposition.  The *oracle* is the t that minimises the held-out MSE of
the plain kernel's predictions (a fine log grid, refined).  For each rule the table
gives

* ``mse_ratio``: held-out MSE at the rule's t over the oracle's held-out MSE
  (free-modes rules are compared with the oracle of the *plain* kernel, so they can
  fall below 1);
* ``t_ratio``: the rule's t over the oracle t (for free modes: t on the remaining
  spectrum);
* the practitioner's baseline ``torch_es``: the real finite network (same depth, ReLU,
  standard PyTorch initialisation, Adam) trained on 80% of the training rows with
  early stopping on the other 20%, its held-out MSE over the oracle's.

Usage::

    python benchmarks/bench_stopping.py                 # reduced suite (minutes)
    python benchmarks/bench_stopping.py --full          # full suite (n up to 4000, more seeds)
    python benchmarks/bench_stopping.py --only bikeshare --rules reml,gcv,free_gcv
    python benchmarks/bench_stopping.py --out results.csv --markdown table.md

Prints one row per (setting, rule) and a summary: median and worst ``mse_ratio`` per
rule, and whether the default rule meets the issue's targets (median <= 1.05, worst
<= 1.2, bikeshare within 5% of the plain kernel's oracle).  No timed assertions.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

import mixednn as mn
from mixednn.numerics import flow_filter
from mixednn.stopping import diagnose

#: "auto" is the package's default rule, ``fit()`` (mixednn.autotime)
RULES = ("auto", "reml", "ml", "gcv", "cp", "loo", "kfold", "free_gcv", "free_loo", "free_bic")
#: With --ard: the kernel's per-input scales and bias_std chosen by REML (mixednn.hyper,
#: on a subsample of the training rows), then t by these rules; still compared with the
#: oracle of the *plain* kernel.
ARD_RULES = ("ard_reml", "ard_gcv", "ard_free_gcv")
KFOLD_MAX_N = 2000  # K-fold costs O(n^3 / K) per t: skipped above this n
NET = mn.MLP(depth=3, activation="relu")


# ----------------------------------------------------------------------------- settings

@dataclass
class Setting:
    name: str
    group: str
    y: np.ndarray
    X: np.ndarray
    Z: np.ndarray
    y_test: np.ndarray
    X_test: np.ndarray
    Z_test: np.ndarray


def simulate(n: int, signal: str, shape: str, seed: int, n_test: int = 2000) -> Setting:
    """The paper's kind of simulation: 10 Gaussian covariates, a sum of nonlinear effects,
    noise sd 0.5.  ``signal``: weak (signal sd ~0.35) or strong (~1.4); ``shape``: smooth
    (sines, quadratics, products) or sharp (steps and kinks)."""
    rng = np.random.default_rng(seed)
    d = 10

    def f(Z):
        if shape == "smooth":
            g = (np.sin(Z[:, 0]) + 0.5 * Z[:, 1] ** 2 - 0.5 + 0.5 * Z[:, 2] * Z[:, 3]
                 + np.tanh(Z[:, 4]) + 0.3 * np.cos(2 * Z[:, 5]))
        else:
            g = (np.sign(Z[:, 0]) + (Z[:, 1] > 0.5) * 1.0 - 0.3 + np.abs(Z[:, 2])
                 - 0.8 + 0.8 * (Z[:, 3] * Z[:, 4] > 0) - 0.4 + np.floor(Z[:, 5]) * 0.3)
        return g

    Z = rng.normal(size=(n, d))
    Zt = rng.normal(size=(n_test, d))
    scale = {"weak": 0.25, "strong": 1.0}[signal]
    sd = np.std(f(rng.normal(size=(20000, d))))
    y = scale * f(Z) / sd + 0.5 * rng.normal(size=n)
    yt = scale * f(Zt) / sd + 0.5 * rng.normal(size=n_test)
    one = np.ones((n, 1))
    return Setting(f"sim {signal}/{shape} n={n} s={seed}", "simulation", y, one, Z, yt,
                   np.ones((n_test, 1)), Zt)


def _split(df: pd.DataFrame, n_train: int | None, n_test: int | None, seed: int):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(df))
    if n_train is None:
        n_train = int(round(0.75 * len(df)))
    tr = df.iloc[idx[:n_train]]
    rest = df.iloc[idx[n_train:]]
    te = rest if n_test is None else rest.iloc[:n_test]
    return tr, te


def _design(df: pd.DataFrame, fe: Callable[[pd.DataFrame], np.ndarray], cols: list[str],
            transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None):
    Zdf = df[cols].astype(float)
    if transform is not None:
        Zdf = transform(Zdf)
    return fe(df), Zdf.to_numpy(dtype=float)


def real_settings(seed: int, full: bool) -> list[Setting]:
    out = []
    ds = mn.datasets.load

    # bikeshare: the setting (log1p(bikers), 2000 training rows)
    df = ds("bikeshare")
    tr, te = _split(df, 2000, 3000, seed)
    cols = ["hr", "temp", "hum", "windspeed", "workingday"]
    one = lambda d: np.ones((len(d), 1))  # noqa: E731
    X, Z = _design(tr, one, cols)
    Xt, Zt = _design(te, one, cols)
    out.append(Setting(f"bikeshare s={seed}", "bikeshare", np.log1p(tr["bikers"].to_numpy(float)),
                       X, Z, np.log1p(te["bikers"].to_numpy(float)), Xt, Zt))

    # auto: log mpg on the car's characteristics (300 train / 92 test)
    df = ds("auto")
    tr, te = _split(df, 300, None, seed)
    cols = ["cylinders", "displacement", "horsepower", "weight", "acceleration", "year", "origin"]
    X, Z = _design(tr, one, cols)
    Xt, Zt = _design(te, one, cols)
    out.append(Setting(f"auto s={seed}", "auto", np.log(tr["mpg"].to_numpy(float)), X, Z,
                       np.log(te["mpg"].to_numpy(float)), Xt, Zt))

    # gapminder: life expectancy, continent as fixed effects, NTK on year, log gdp, log pop
    df = ds("gapminder")
    tr, te = _split(df, 1200, None, seed)
    conts = sorted(df["continent"].unique())

    def fe_cont(d):
        return np.column_stack([np.ones(len(d))] + [(d["continent"] == c).to_numpy(float)
                                                     for c in conts[1:]])

    logt = lambda Zd: Zd.assign(gdpPercap=np.log(Zd["gdpPercap"]), pop=np.log(Zd["pop"]))  # noqa: E731
    cols = ["year", "gdpPercap", "pop"]
    X, Z = _design(tr, fe_cont, cols, logt)
    Xt, Zt = _design(te, fe_cont, cols, logt)
    out.append(Setting(f"gapminder s={seed}", "gapminder", tr["lifeExp"].to_numpy(float), X, Z,
                       te["lifeExp"].to_numpy(float), Xt, Zt))

    # diamonds subsample: log price, cut/color/clarity as fixed effects, NTK on size and shape
    df = ds("diamonds")
    tr, te = _split(df, 2000 if full else 1000, 3000, seed)
    levels = {c: sorted(df[c].astype(str).unique()) for c in ("cut", "color", "clarity")}

    def fe_dia(d):
        cols_ = [np.ones(len(d))]
        for c, lv in levels.items():
            s = d[c].astype(str)
            cols_ += [(s == v).to_numpy(float) for v in lv[1:]]
        return np.column_stack(cols_)

    cols = ["carat", "depth", "table", "x", "y", "z"]
    X, Z = _design(tr, fe_dia, cols)
    Xt, Zt = _design(te, fe_dia, cols)
    out.append(Setting(f"diamonds s={seed}", "diamonds", np.log(tr["price"].to_numpy(float)), X, Z,
                       np.log(te["price"].to_numpy(float)), Xt, Zt))
    return out


# ----------------------------------------------------------------------------- evaluation

class HeldOut:
    """Held-out MSE of the plain kernel's predictions at any t, from one cross-kernel."""

    def __init__(self, model: mn.MixedLMNTK, s: Setting):
        self.model = model
        self.prof = model.profile
        Zs = model.input_scaling.apply(s.Z_test)
        self.Kx = NET.ntk(Zs, model.scaled_inputs)
        self.krot = model.basis.rotate(self.Kx.T)
        self.s = s

    def mse(self, t: float) -> float:
        prof = self.prof
        beta = prof.point(t, True).beta
        r = prof.y_rot - prof.X_rot @ beta
        pred = self.s.X_test @ beta + self.krot.T @ (flow_filter(t, prof.lam) * r)
        return float(np.mean((self.s.y_test - pred) ** 2))

    def oracle(self) -> tuple[float, float]:
        lo, hi = self.prof.search_bounds()
        grid = np.logspace(math.log10(lo), math.log10(min(hi, lo * 1e14)), 113)
        vals = np.array([self.mse(t) for t in grid])
        i = int(np.argmin(vals))
        a = math.log(grid[max(i - 1, 0)])
        b = math.log(grid[min(i + 1, grid.size - 1)])
        opt = minimize_scalar(lambda u: self.mse(math.exp(u)), bounds=(a, b), method="bounded",
                              options={"xatol": 1e-4})
        if opt.fun < vals[i]:
            return math.exp(opt.x), float(opt.fun)
        return float(grid[i]), float(vals[i])

    def mse_results(self, res) -> float:
        pred = res.predict(exog=self.s.X_test, kernel=self.Kx).to_numpy()
        return float(np.mean((self.s.y_test - pred) ** 2))


def fit_rule(model: mn.MixedLMNTK, rule: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if rule.startswith("free_"):
            return model.fit(free_modes="auto", t_options={"k_rule": rule[5:]})
        if rule == "ml":
            return model.fit(reml=True, t_method="ml")
        if rule == "auto":
            return model.fit()  # the default
        return model.fit(t_method=rule)


def torch_baseline(s: Setting, seed: int, width: int = 128, max_epochs: int = 1500,
                   patience: int = 100, lr: float = 1e-3) -> float:
    """Real network, 20% of the training rows held out for early stopping (Adam, full batch).

    Inputs: the standardised network inputs and the non-constant fixed-effect columns.
    Returns the held-out MSE of the network with the best validation loss.
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    keep = [j for j in range(s.X.shape[1]) if np.std(s.X[:, j]) > 0]
    A = np.column_stack([s.Z, s.X[:, keep]])
    At = np.column_stack([s.Z_test, s.X_test[:, keep]])
    mu, sd = A.mean(0), A.std(0)
    sd[sd == 0] = 1
    A, At = (A - mu) / sd, (At - mu) / sd
    ym, ys = s.y.mean(), s.y.std()
    n = A.shape[0]
    perm = rng.permutation(n)
    nv = max(1, int(round(0.2 * n)))
    va, trn = perm[:nv], perm[nv:]
    T = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    xtr, ytr = T(A[trn]), T((s.y[trn] - ym) / ys)
    xva, yva = T(A[va]), T((s.y[va] - ym) / ys)
    layers = []
    d_in = A.shape[1]
    for _ in range(NET.depth):
        layers += [torch.nn.Linear(d_in, width), torch.nn.ReLU()]
        d_in = width
    layers.append(torch.nn.Linear(d_in, 1))
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    best, best_state, since = math.inf, None, 0
    for _ in range(max_epochs):
        opt.zero_grad()
        loss = torch.mean((net(xtr).squeeze(-1) - ytr) ** 2)
        loss.backward()
        opt.step()
        with torch.no_grad():
            v = float(torch.mean((net(xva).squeeze(-1) - yva) ** 2))
        if v < best - 1e-7:
            best, since = v, 0
            best_state = {k: p.detach().clone() for k, p in net.state_dict().items()}
        else:
            since += 1
            if since > patience:
                break
    net.load_state_dict(best_state)
    with torch.no_grad():
        pred = net(T(At)).squeeze(-1).numpy().astype(float) * ys + ym
    return float(np.mean((s.y_test - pred) ** 2))


def run_ard(model: mn.MixedLMNTK, s: Setting, ho: "HeldOut", mse_or: float, t_or: float,
            subsample: int = 1000) -> list[dict]:
    """Kernel hyperparameters by REML (ARD scales and bias_std), then three t rules."""
    from mixednn.hyper import optimize_kernel

    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = optimize_kernel(model, input_scales="ard", bias_std=True, subsample=subsample,
                              maxiter=40)
    t_opt = time.perf_counter() - t1
    Kx = opt.network.ntk(model.input_scaling.apply(s.Z_test), model.scaled_inputs)
    rows = []
    for rule in ARD_RULES:
        t2 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if rule == "ard_free_gcv":
                res = opt.model.fit(free_modes="auto")
            else:
                res = opt.model.fit(t_method=rule[4:])
        pred = res.predict(exog=s.X_test, kernel=Kx).to_numpy()
        mse = float(np.mean((s.y_test - pred) ** 2))
        rows.append({"setting": s.name, "group": s.group, "n": len(s.y), "rule": rule,
                     "t": res.t, "t_oracle": t_or, "t_ratio": np.nan, "mse": mse,
                     "mse_oracle": mse_or, "mse_ratio": mse / mse_or,
                     "k": getattr(res, "free_modes", 0),
                     "seconds": time.perf_counter() - t2 + t_opt, "setup_s": t_opt})
    return rows


def run_setting(s: Setting, rules: tuple[str, ...], torch_seeds: int,
                ard: bool = False) -> list[dict]:
    t0 = time.perf_counter()
    model = mn.MixedLMNTK(s.y, s.X, s.Z, network=NET)
    model.profile  # kernel + decomposition
    ho = HeldOut(model, s)
    t_or, mse_or = ho.oracle()
    t_setup = time.perf_counter() - t0
    flagged = bool(diagnose(model).flagged)  # the summary's stopping diagnostic
    rows = []
    for rule in rules:
        if rule == "kfold" and len(s.y) > KFOLD_MAX_N:
            continue
        t1 = time.perf_counter()
        try:
            res = fit_rule(model, rule)
        except (ValueError, NotImplementedError) as exc:  # report, keep going
            rows.append({"setting": s.name, "group": s.group, "n": len(s.y), "rule": rule,
                         "error": str(exc)[:80]})
            continue
        secs = time.perf_counter() - t1
        mse = ho.mse_results(res)
        rows.append({"setting": s.name, "group": s.group, "n": len(s.y), "rule": rule,
                     "t": res.t, "t_oracle": t_or, "t_ratio": res.t / t_or if t_or > 0 else np.nan,
                     "mse": mse, "mse_oracle": mse_or, "mse_ratio": mse / mse_or,
                     "k": getattr(res, "free_modes", 0), "seconds": secs, "setup_s": t_setup,
                     "flagged": flagged,
                     # what the default rule did: "reml", "gcv" or "free_modes"
                     "chose": res.auto_check.rule if res.auto_check is not None else res.t_method})
    if ard:
        rows.extend(run_ard(model, s, ho, mse_or, t_or))
    for j in range(torch_seeds):
        t1 = time.perf_counter()
        mse = torch_baseline(s, seed=j)
        rows.append({"setting": s.name, "group": s.group, "n": len(s.y), "rule": "torch_es",
                     "t": np.nan, "t_oracle": t_or, "t_ratio": np.nan, "mse": mse,
                     "mse_oracle": mse_or, "mse_ratio": mse / mse_or, "k": 0,
                     "seconds": time.perf_counter() - t1, "setup_s": 0.0})
    return rows


def suite(full: bool) -> list[Setting]:
    out = []
    ns = (200, 480, 1000, 2000, 4000) if full else (200, 480, 1000)
    seeds = (0, 1, 2) if full else (0,)
    for n in ns:
        for sig in ("weak", "strong"):
            for shape in ("smooth", "sharp"):
                for sd in seeds:
                    out.append(simulate(n, sig, shape, seed=1000 * sd + n))
    if not full:  # the ends of the n range, one configuration each
        out.append(simulate(2000, "weak", "smooth", seed=2000))
        out.append(simulate(4000, "strong", "smooth", seed=4000))
    for sd in ((0, 1, 2) if full else (0,)):
        out.extend(real_settings(sd, full))
    if not full:  # the bikeshare setting on two more splits
        out.extend(s for sd in (1, 2) for s in real_settings(sd, full) if s.group == "bikeshare")
    return out


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    ok = df.dropna(subset=["mse_ratio"])
    g = ok.groupby("rule")["mse_ratio"]
    summ = pd.DataFrame({"settings": g.size(), "median": g.median(), "mean": g.mean(),
                         "worst": g.max(),
                         "share_within_5pct": g.apply(lambda v: float(np.mean(v <= 1.05))),
                         "median_t_ratio": ok.groupby("rule")["t_ratio"].median()})
    return summ.reindex([r for r in (*RULES, *ARD_RULES, "torch_es") if r in summ.index])


def hyper_report(subsamples: tuple[int, ...] = (300, 600, 1000)) -> None:
    """Kernel hyperparameters by likelihood on the bikeshare setting: architectures by
    REML and AIC, and the cost and effect of ARD scales fitted on subsamples."""
    from mixednn.hyper import compare_kernels, optimize_kernel

    s = [x for x in real_settings(0, False) if x.group == "bikeshare"][0]
    model = mn.MixedLMNTK(s.y, s.X, s.Z, network=NET)
    t0 = time.perf_counter()
    tab = compare_kernels(model, depths=(1, 2, 3, 4), activations=("relu", "erf", "gelu"))
    print(f"\n== Architectures on bikeshare (n = {len(s.y)}), by REML and AIC "
          f"({time.perf_counter() - t0:.0f} s)")
    print(tab[["depth", "activation", "t", "llf", "llf_ml", "aic", "aic_ml", "edf", "delta_aic"]]
          .to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    ho = HeldOut(model, s)
    t_or, mse_or = ho.oracle()
    print(f"\n== ARD input scales by REML (bias_std ratio), plain-kernel oracle MSE {mse_or:.4f}")
    names = ["hr", "temp", "hum", "windspeed", "workingday"]
    for sub in subsamples:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = optimize_kernel(model, input_scales="ard", bias_std=True, subsample=sub,
                                  maxiter=40)
            res = opt.fit(t_method="reml")
            free = opt.model.fit(free_modes="auto")
            gcv = opt.model.fit(t_method="gcv")
        Kx = opt.network.ntk(model.input_scaling.apply(s.Z_test), model.scaled_inputs)
        mse = {k: float(np.mean((s.y_test - r.predict(exog=s.X_test, kernel=Kx).to_numpy()) ** 2))
               for k, r in (("reml", res), ("gcv", gcv), ("free_gcv", free))}
        c = opt.cost
        print(f"subsample {sub}: {c['evaluations']} evaluations in {c['seconds']:.1f} s "
              f"(kernel {c['kernel']:.1f}, decomposition {c['decomposition']:.1f}, t search "
              f"{c['search']:.1f}, gradient {c['gradient']:.1f}); REML llf (all rows) "
              f"{res.llf:.1f} vs plain {model.fit(t_method='reml').llf:.1f}")
        print("   scales: " + ", ".join(f"{nm}={v:.3g}" for nm, v in zip(names, opt.scales))
              + f"; bias_std {opt.bias_std:.3g}")
        print("   held-out MSE / plain oracle: " + ", ".join(f"{k} {v / mse_or:.3f}"
                                                           for k, v in mse.items()))


def _markdown(df: pd.DataFrame) -> str:
    """A pipe table without the optional ``tabulate`` dependency."""
    cols = [df.index.name or ""] + [str(c) for c in df.columns]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [fmt(v) for v in row.to_numpy()]) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="full suite (n up to 4000, 3 seeds)")
    ap.add_argument("--only", default=None, help="run settings whose name contains this")
    ap.add_argument("--rules", default=",".join(RULES))
    ap.add_argument("--torch-seeds", type=int, default=1)
    ap.add_argument("--hyper", action="store_true",
                    help="only the kernel-hyperparameter report (architectures, ARD cost)")
    ap.add_argument("--no-ard", action="store_true",
                    help="skip the ARD-kernel rules (run on the real-data settings by default)")
    ap.add_argument("--out", default=None, help="CSV of all rows")
    ap.add_argument("--markdown", default=None, help="write the summary tables as markdown")
    args = ap.parse_args()
    if args.hyper:
        hyper_report()
        return
    rules = tuple(r for r in args.rules.split(",") if r)
    settings = suite(args.full)
    if args.only:
        settings = [s for s in settings if args.only in s.name]
    rows = []
    pd.set_option("display.width", 200)
    for s in settings:
        part = run_setting(s, rules, args.torch_seeds,
                           ard=not args.no_ard and s.group != "simulation")
        rows.extend(part)
        p = pd.DataFrame(part)
        cols = [c for c in ("rule", "k", "t", "t_ratio", "mse_ratio", "seconds") if c in p]
        print(f"\n== {s.name} (n={len(s.y)}, test={len(s.y_test)}); oracle t = "
              f"{p['t_oracle'].iloc[0]:.4g}, oracle MSE = {p['mse_oracle'].iloc[0]:.4g}")
        print(p[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        sys.stdout.flush()
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, index=False)
    summ = summarise(df)
    print("\n== Summary over all settings: held-out MSE at the rule's t / oracle MSE")
    print(summ.to_string(float_format=lambda v: f"{v:.3f}"))
    by_group = df.dropna(subset=["mse_ratio"]).pivot_table(index="group", columns="rule",
                                                           values="mse_ratio", aggfunc="median")
    by_group = by_group[[r for r in (*RULES, *ARD_RULES, "torch_es") if r in by_group.columns]]
    print("\n== Median MSE ratio by group")
    print(by_group.to_string(float_format=lambda v: f"{v:.3f}"))
    rm = df[df.rule == "reml"].dropna(subset=["mse_ratio"])
    if len(rm) and "flagged" in rm:
        bad = rm[rm.mse_ratio > 1.05]
        good = rm[rm.mse_ratio <= 1.05]
        print(f"\nstopping diagnostic: flags {int(bad.flagged.sum())} of {len(bad)} settings where "
              f"REML is > 5% above the oracle, and {int(good.flagged.sum())} of {len(good)} where "
              "it is within 5%")
    au = df[df.rule == "auto"]
    if len(au) and "chose" in au:
        print(f"\ndefault rule (auto), of {len(au)} settings: GCV chose t in "
              f"{int((au.chose == 'gcv').sum())}, REML with free modes in "
              f"{int((au.chose == 'free_modes').sum())}, REML's t kept in the others")
    for rule in [r for r in ("auto", "reml", "gcv", "free_gcv", "ard_free_gcv") if r in summ.index]:
        med, worst = summ.loc[rule, "median"], summ.loc[rule, "worst"]
        bike = df[(df.group == "bikeshare") & (df.rule == rule)]["mse_ratio"]
        print(f"\ntargets for {rule}: median {med:.3f} (<= 1.05: {med <= 1.05}), worst {worst:.3f} "
              f"(<= 1.2: {worst <= 1.2})"
              + (f", bikeshare {bike.max():.3f} (<= 1.05: {bike.max() <= 1.05})" if len(bike) else ""))
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(_markdown(summ) + "\n\n" + _markdown(by_group) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
