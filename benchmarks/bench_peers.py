"""mixednn against the tools statisticians use instead (issue 15, deliverable 5).

Ten real regression data sets (the bundled ones that make sense for regression, plus data
that ship inside scikit-learn and statsmodels; nothing is downloaded).  Each data set has
a response (log-transformed where that is customary), a fixed-effect formula (intercept
and a few categorical or linear terms) and numeric network inputs.  Each is subsampled to
at most 1,000 rows and split 50/50, five times (``numpy.random.default_rng(seed)
.permutation``, seeds 0-4: the first half of the permuted rows trains, the second half,
up to 500 rows, tests).  On every split, side by side:

* ``choose``: the headline workflow, ``mixednn.hyper.choose_kernel(model)``: the model's own
  kernel and the ARD ``sin`` kernel below, both fitted by REML on all rows, the smaller BIC
  kept;
* ``ard_sin``: ``optimize_kernel`` on a one-layer ``sin`` network
  (``mixednn.hyper.SIN_NETWORK``; per-input scales and bias std by REML, ``screen=16``),
  then ``opt.fit()`` (REML t);
* ``ard_reml``: the previous headline, ``mixednn.hyper.optimize_kernel(model,
  input_scales="ard")`` on the ReLU kernel (per-input scales by REML), then ``opt.fit()``;
* ``ard_reml3``: the same with ``starts=3``;
* ``reml``: the fixed (unscaled) kernel, plain ``model.fit()`` (REML t);
* ``gcv``: the fixed kernel, ``model.fit(t_method="gcv")``;
* ``ols``: statsmodels OLS on the fixed effects plus the network inputs (linear);
* ``pygam``: ``LinearGAM`` with a spline per numeric input (a linear term where an input
  has fewer than 6 distinct values or is already a fixed effect), a factor term per
  categorical fixed effect and a linear term per numeric one; smoothing by pygam's
  default ``gridsearch`` (11 common penalties, GCV);
* ``gp``: scikit-learn ``GaussianProcessRegressor``, ``Constant * RBF(ARD) + White`` on
  the standardised network inputs together with the standardised non-constant columns
  of the fixed-effect design (one length scale per column, ``normalize_y``, one start of
  the optimiser); the fixed effects thus enter the kernel, not a separate mean;
* ``krr``: ``KernelRidge(kernel="rbf")`` on the same standardised columns (centred y),
  ``GridSearchCV`` over alpha and gamma (5 folds);
* ``mgcv``: R's ``mgcv::gam(..., method="REML")`` with ``s()`` per numeric input (same
  terms as pygam), through ``Rscript`` and a temporary CSV; skipped with a note when
  ``Rscript`` or mgcv is missing.

Every mixednn model starts from the analytic depth-3 ReLU NTK on standardised inputs (the setting
of ``bench_stopping.py`` and of the issue's numbers).  Metrics per method x data set x
split: held-out MSE, coverage of the 95% prediction interval for a new observation
(mixednn: ``get_prediction().summary_frame()``'s ``obs_ci_*``; OLS: the same from
statsmodels; pygam: ``prediction_intervals``; GP: predictive sd, which includes the
WhiteKernel noise, times 1.96; mgcv: ``se.fit`` and the residual scale, normal quantiles;
kernel ridge has none: NA) and wall time (fit plus prediction; for mgcv the time inside R,
without starting R).

Separately, the issue's bikeshare split (``default_rng(0).permutation``, 2,000 training
and 2,000 test rows, ``np.log1p(bikers) ~ workingday + C(season)``, network inputs hr,
temp, hum, windspeed, workingday), with one more mgcv model, ``s(hr, by =
factor(workingday))``, and the headline workflow once more with the ARD search on all
2,000 rows (``subsample=None``; by default ``optimize_kernel`` searches on 600 of them).
Its reference held-out MSEs: REML 0.669, GCV 0.384, ARD-then-REML
0.234, mgcv additive 0.332, mgcv by workingday 0.136.

Usage::

    python benchmarks/bench_peers.py                 # 10 data sets x 5 splits + the issue split
    python benchmarks/bench_peers.py --quick         # 2 data sets x 2 splits (smoke test)
    python benchmarks/bench_peers.py --issue-only    # only the issue's bikeshare split
    python benchmarks/bench_peers.py --only diamonds --splits 2 --no-r
    python benchmarks/bench_peers.py --threads 1     # one BLAS/torch thread (shared machines)
    python benchmarks/bench_peers.py --methods choose --merge old.csv   # rerun one method

Prints a table per data set (medians over splits), a summary (for each mixednn method:
median and worst over data sets of the method's MSE over the best peer's, median
coverage) and the issue split.  Raw rows go to ``benchmarks/results/bench_peers.csv``
(``--out``), the summary tables to ``benchmarks/results/bench_peers.md``
(``--markdown``).  No timed assertions; times are medians on the machine that ran it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

import mixednn as mn
from mixednn.hyper import choose_kernel, optimize_kernel

NET = mn.MLP(depth=3, activation="relu")
#: the headline workflow's network: one sin layer, its bias std estimated with the scales
SIN_NET = mn.MLP(depth=1, activation="sin", bias_std=1.0)
MIXEDNN_METHODS = ("choose", "ard_sin", "ard_reml", "ard_reml3", "reml", "gcv")
PEERS = ("ols", "pygam", "gp", "krr", "mgcv")
METHODS = MIXEDNN_METHODS + PEERS
MAX_ROWS = 1000
Z95 = 1.959963984540054
HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- data sets

@dataclass
class Spec:
    """One data set: ``df`` holds the response column ``y`` (already transformed) and the
    columns below; ``factors`` are categorical fixed effects, ``linear`` numeric ones,
    ``inputs`` the network inputs (numeric, possibly overlapping ``linear``)."""

    name: str
    response: str  # how y was made, for the tables
    df: pd.DataFrame
    factors: list[str] = field(default_factory=list)
    linear: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def fe_terms(self) -> list[str]:
        return [f"C({f})" for f in self.factors] + list(self.linear)

    @property
    def formula(self) -> str:
        return "y ~ " + (" + ".join(self.fe_terms) if self.fe_terms else "1")

    @property
    def ols_formula(self) -> str:
        extra = [z for z in self.inputs if z not in self.linear]
        return "y ~ " + " + ".join(self.fe_terms + extra)


def _clean(df: pd.DataFrame, spec_cols: list[str]) -> pd.DataFrame:
    return df[spec_cols].dropna().reset_index(drop=True)


def load_specs() -> list[Spec]:
    """The ten data sets (bundled with mixednn, scikit-learn and statsmodels)."""
    ds = mn.datasets.load
    out = []

    d = ds("bikeshare")
    d = d.assign(y=np.log1p(d["bikers"].astype(float)), season=d["season"].astype(str))
    cols = ["y", "season", "workingday", "hr", "temp", "hum", "windspeed"]
    out.append(Spec("bikeshare", "log1p(bikers)", _clean(d, cols), ["season"], ["workingday"],
                    ["hr", "temp", "hum", "windspeed", "workingday"], "mixednn (UCI)"))

    d = ds("auto")
    d = d.assign(y=np.log(d["mpg"]), origin=d["origin"].astype(str))
    cols = ["y", "origin", "cylinders", "displacement", "horsepower", "weight", "acceleration",
            "year"]
    out.append(Spec("auto", "log(mpg)", _clean(d, cols), ["origin"], [],
                    ["cylinders", "displacement", "horsepower", "weight", "acceleration", "year"],
                    "mixednn (ISLR Auto)"))

    d = ds("diamonds")
    d = d.assign(y=np.log(d["price"].astype(float)), cut=d["cut"].astype(str),
                 color=d["color"].astype(str), clarity=d["clarity"].astype(str))
    cols = ["y", "cut", "color", "clarity", "carat", "depth", "table"]
    out.append(Spec("diamonds", "log(price)", _clean(d, cols), ["cut", "color", "clarity"], [],
                    ["carat", "depth", "table"], "mixednn (ggplot2)"))

    d = ds("gapminder")
    d = d.assign(y=d["lifeExp"], log_gdp=np.log(d["gdpPercap"]), log_pop=np.log(d["pop"]))
    cols = ["y", "continent", "year", "log_gdp", "log_pop"]
    out.append(Spec("gapminder", "lifeExp", _clean(d, cols), ["continent"], [],
                    ["year", "log_gdp", "log_pop"], "mixednn (gapminder)"))

    d = ds("penguins")
    d = d.assign(y=d["body_mass_g"] / 1000.0)
    cols = ["y", "species", "sex", "bill_length_mm", "bill_depth_mm", "flipper_length_mm"]
    out.append(Spec("penguins", "body_mass_g / 1000", _clean(d, cols), ["species", "sex"], [],
                    ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"],
                    "mixednn (palmerpenguins)"))

    d = ds("wage_panel")
    d = d.assign(y=d["lwage"])
    cols = ["y", "black", "hisp", "married", "union", "educ", "exper", "hours"]
    out.append(Spec("wage_panel", "lwage", _clean(d, cols), [],
                    ["black", "hisp", "married", "union"], ["educ", "exper", "hours"],
                    "mixednn (Vella-Verbeek)"))

    from sklearn.datasets import load_diabetes

    d = load_diabetes(as_frame=True, scaled=False).frame
    d = d.assign(y=d["target"], sex=d["sex"].astype(int).astype(str))
    inputs = ["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    out.append(Spec("diabetes", "progression", _clean(d, ["y", "sex"] + inputs), ["sex"], [],
                    inputs, "scikit-learn load_diabetes"))

    import statsmodels.datasets as smd

    d = smd.grunfeld.load_pandas().data
    d = d.assign(y=np.log(d["invest"]), firm=d["firm"].astype(str),
                 log_value=np.log(d["value"]), log_capital=np.log(d["capital"]))
    cols = ["y", "firm", "log_value", "log_capital", "year"]
    out.append(Spec("grunfeld", "log(invest)", _clean(d, cols), ["firm"], [],
                    ["log_value", "log_capital", "year"], "statsmodels grunfeld"))

    d = smd.star98.load_pandas().data
    p = d["NABOVE"] / (d["NABOVE"] + d["NBELOW"])
    d = d.assign(y=np.log(p / (1 - p)))
    inputs = ["LOWINC", "PERASIAN", "PERBLACK", "PERHISP", "AVYRSEXP", "PTRATIO", "PCTAF"]
    out.append(Spec("star98", "logit(share above median)",
                    _clean(d, ["y", "PCTCHRT", "PCTYRRND"] + inputs), [], ["PCTCHRT", "PCTYRRND"],
                    inputs, "statsmodels star98"))

    d = smd.randhie.load_pandas().data
    d = d.assign(y=np.log1p(d["mdvis"]))
    inputs = ["lncoins", "lpi", "fmde", "physlm", "disea"]
    out.append(Spec("randhie", "log1p(mdvis)",
                    _clean(d, ["y", "idp", "hlthg", "hlthf", "hlthp"] + inputs), [],
                    ["idp", "hlthg", "hlthf", "hlthp"], inputs, "statsmodels randhie"))
    return out


def split(spec: Spec, seed: int, n_max: int = MAX_ROWS) -> tuple[pd.DataFrame, pd.DataFrame]:
    idx = np.random.default_rng(seed).permutation(len(spec.df))[:n_max]
    half = len(idx) // 2
    return spec.df.iloc[idx[:half]].reset_index(drop=True), spec.df.iloc[idx[half:]].reset_index(
        drop=True)


# ----------------------------------------------------------------------------- methods

@dataclass
class Out:
    mean: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    info: str = ""


def _caught(fn: Callable[[], Out]) -> tuple[Out, str]:
    """Run ``fn`` recording its warnings (category: first line, deduplicated)."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = fn()
    msgs = []
    for x in w:
        m = f"{x.category.__name__}: {str(x.message).splitlines()[0][:120]}"
        if m not in msgs:
            msgs.append(m)
    return out, " | ".join(msgs)


def _mixednn_out(res, te: pd.DataFrame, info: str = "") -> Out:
    fr = res.get_prediction(te).summary_frame(alpha=0.05)
    return Out(fr["mean"].to_numpy(float), fr["obs_ci_lower"].to_numpy(float),
               fr["obs_ci_upper"].to_numpy(float), f"t={res.t:.4g}" + (f"; {info}" if info else ""))


def _model(spec: Spec, tr: pd.DataFrame, formula: str | None = None):
    return mn.MixedLMNTK.from_formula(formula or spec.formula, data=tr, ntk=list(spec.inputs),
                                      network=NET)


def m_choose(spec, tr, te, seed, formula=None):
    """The headline workflow: ``mixednn.hyper.choose_kernel`` (the plain kernel against the
    ARD sin kernel, by BIC), then the chosen model's REML fit."""
    choice = choose_kernel(_model(spec, tr, formula))
    info = f"chosen {choice.chosen}"
    if choice.scales is not None:
        info += "; scales " + ", ".join(f"{k}={v:.3g}" for k, v in choice.scales.items())
    return _mixednn_out(choice.results, te, info)


def m_ard_sin(spec, tr, te, seed, formula=None, **options):
    """The headline workflow: a one-layer sin network, per-input scales and the bias std
    by REML with 16 screened starting points, then the REML fit."""
    options = {"bias_std": True, "screen": 16, **options}
    return m_ard_reml(spec, tr, te, seed, formula=formula, network=SIN_NET, **options)


def m_ard_reml(spec, tr, te, seed, formula=None, network=None, **options):
    model = mn.MixedLMNTK.from_formula(formula or spec.formula, data=tr, ntk=list(spec.inputs),
                                       network=network or NET)
    opt = optimize_kernel(model, input_scales="ard", **options)
    res = opt.fit()
    sc = ", ".join(f"{k}={v:.3g}" for k, v in opt.scales.items())
    return _mixednn_out(res, te, f"evals={opt.cost.get('evaluations')}; rows "
                              f"{opt.cost.get('rows')}; scales {sc}")


def m_ard_reml3(spec, tr, te, seed, formula=None, **options):
    """The headline workflow with ``starts=3`` (two extra seeded starts)."""
    return m_ard_reml(spec, tr, te, seed, formula=formula, starts=3, **options)


def m_reml(spec, tr, te, seed, formula=None):
    return _mixednn_out(_model(spec, tr, formula).fit(), te)


def m_gcv(spec, tr, te, seed, formula=None):
    return _mixednn_out(_model(spec, tr, formula).fit(t_method="gcv"), te)


def m_ols(spec, tr, te, seed, formula=None):
    import statsmodels.formula.api as smf

    fit = smf.ols(spec.ols_formula, data=tr).fit()
    fr = fit.get_prediction(te).summary_frame(alpha=0.05)
    return Out(fr["mean"].to_numpy(float), fr["obs_ci_lower"].to_numpy(float),
               fr["obs_ci_upper"].to_numpy(float))


def _smooth_inputs(spec: Spec, tr: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Network inputs that get a spline in the GAMs, and those that enter linearly
    (fewer than 6 distinct training values, or already a linear fixed effect)."""
    smooth, lin = [], []
    for z in spec.inputs:
        if z in spec.linear:
            continue
        (smooth if tr[z].nunique() >= 6 else lin).append(z)
    return smooth, lin


def _standardised_design(spec: Spec, tr: pd.DataFrame, te: pd.DataFrame):
    """[network inputs, fixed-effect design without intercept], standardised by the
    training rows; constant columns dropped."""
    import patsy

    parts_tr = [tr[spec.inputs].to_numpy(float)]
    parts_te = [te[spec.inputs].to_numpy(float)]
    if spec.fe_terms:
        extra = [t for t in spec.fe_terms if t not in spec.inputs]
        if extra:
            # treatment coding with an intercept (full rank), intercept column dropped
            dm = patsy.dmatrix(" + ".join(extra), tr)
            (dm_te,) = patsy.build_design_matrices([dm.design_info], te)
            parts_tr.append(np.asarray(dm)[:, 1:])
            parts_te.append(np.asarray(dm_te)[:, 1:])
    A, B = np.column_stack(parts_tr), np.column_stack(parts_te)
    mu, sd = A.mean(0), A.std(0)
    keep = sd > 0
    return (A[:, keep] - mu[keep]) / sd[keep], (B[:, keep] - mu[keep]) / sd[keep]


def m_pygam(spec, tr, te, seed, formula=None):
    from pygam import LinearGAM, f, l, s

    smooth, lin = _smooth_inputs(spec, tr)
    cols = smooth + lin + list(spec.linear) + list(spec.factors)

    def design(d):
        return np.column_stack([d[c].to_numpy(float) for c in smooth + lin + list(spec.linear)]
                               + [pd.Categorical(d[c], categories=sorted(spec.df[c].unique()))
                                  .codes.astype(float) for c in spec.factors])

    A, B = design(tr), design(te)
    terms = None
    for j, c in enumerate(cols):
        if c in smooth:
            term = s(j, n_splines=int(min(20, max(5, tr[c].nunique()))))
        elif c in spec.factors:
            term = f(j)
        else:
            term = l(j)
        terms = term if terms is None else terms + term
    gam = LinearGAM(terms).gridsearch(A, tr["y"].to_numpy(float), progress=False)
    mean = gam.predict(B)
    pi = gam.prediction_intervals(B, width=0.95)
    return Out(mean, pi[:, 0], pi[:, 1], f"lam={np.round(np.ravel(gam.lam)[0], 4)}")


def m_gp(spec, tr, te, seed, formula=None):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    A, B = _standardised_design(spec, tr, te)
    kern = (ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.ones(A.shape[1]), (1e-2, 1e3))
            + WhiteKernel(0.5, (1e-5, 1e1)))
    gp = GaussianProcessRegressor(kern, normalize_y=True, random_state=seed)
    gp.fit(A, tr["y"].to_numpy(float))
    mean, sd = gp.predict(B, return_std=True)  # sd includes the WhiteKernel noise
    return Out(mean, mean - Z95 * sd, mean + Z95 * sd)


def m_krr(spec, tr, te, seed, formula=None):
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.model_selection import GridSearchCV, KFold

    A, B = _standardised_design(spec, tr, te)
    y = tr["y"].to_numpy(float)
    ym = y.mean()
    grid = {"alpha": np.logspace(-3, 1, 5), "gamma": np.logspace(-2, 1, 7) / A.shape[1]}
    cv = GridSearchCV(KernelRidge(kernel="rbf"), grid, cv=KFold(5, shuffle=True, random_state=seed),
                      scoring="neg_mean_squared_error")
    cv.fit(A, y - ym)
    p = cv.best_params_
    return Out(cv.predict(B) + ym, info=f"alpha={p['alpha']:.3g}, gamma={p['gamma']:.3g}")


# ----------------------------------------------------------------------------- mgcv via Rscript

R_SCRIPT = r"""
suppressMessages(library(mgcv))
a <- commandArgs(TRUE)
d <- read.csv(a[1], stringsAsFactors = TRUE)
tr <- d[d$is_train == 1, ]
te <- d[d$is_train == 0, ]
t0 <- proc.time()[["elapsed"]]
fit <- gam(as.formula(a[2]), data = tr, method = "REML")
p <- predict(fit, newdata = te, se.fit = TRUE)
secs <- proc.time()[["elapsed"]] - t0
write.csv(data.frame(fit = as.numeric(p$fit), se = as.numeric(p$se.fit), sig2 = fit$sig2,
                     edf = sum(fit$edf), secs = secs), a[3], row.names = FALSE)
"""

_R_STATE: dict = {}


def r_available() -> tuple[bool, str]:
    if "ok" not in _R_STATE:
        rs = shutil.which("Rscript")
        if rs is None:
            _R_STATE.update(ok=False, note="Rscript not found: mgcv skipped")
        else:
            p = subprocess.run([rs, "-e", "suppressMessages(library(mgcv)); "
                                "cat(as.character(packageVersion('mgcv')))"],
                               capture_output=True, text=True)
            if p.returncode != 0:
                _R_STATE.update(ok=False, note="R package mgcv not installed: mgcv skipped")
            else:
                _R_STATE.update(ok=True, note=f"mgcv {p.stdout.strip()} via {rs}", rscript=rs)
    return _R_STATE["ok"], _R_STATE["note"]


def mgcv_formula(spec: Spec, tr: pd.DataFrame, by: dict[str, str] | None = None) -> str:
    smooth, lin = _smooth_inputs(spec, tr)
    by = by or {}
    terms = [f"factor({f})" for f in spec.factors] + list(spec.linear) + lin
    for z in smooth:
        k = int(min(10, tr[z].nunique()))
        terms.append(f"s({z}, k = {k}" + (f", by = factor({by[z]})" if z in by else "") + ")")
    return "y ~ " + " + ".join(terms)


def m_mgcv(spec, tr, te, seed, formula=None, r_formula=None):
    ok, note = r_available()
    if not ok:
        raise RuntimeError(note)
    r_formula = r_formula or mgcv_formula(spec, tr)
    cols = ["y"] + sorted(set(spec.factors) | set(spec.linear) | set(spec.inputs))
    d = pd.concat([tr[cols].assign(is_train=1), te[cols].assign(is_train=0)], ignore_index=True)
    for fct in spec.factors:  # strings, so that R reads them as factors
        d[fct] = "L" + d[fct].astype(str)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst, scr = (os.path.join(tmp, x) for x in ("data.csv", "pred.csv", "fit.R"))
        d.to_csv(src, index=False)
        with open(scr, "w") as fh:
            fh.write(R_SCRIPT)
        p = subprocess.run([_R_STATE["rscript"], scr, src, r_formula, dst], capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise RuntimeError("mgcv failed: " + p.stderr.strip().splitlines()[-1][:200])
        r = pd.read_csv(dst)
    sd = np.sqrt(r["se"].to_numpy() ** 2 + r["sig2"].to_numpy())
    mean = r["fit"].to_numpy(float)
    out = Out(mean, mean - Z95 * sd, mean + Z95 * sd, f"edf={r['edf'].iloc[0]:.1f}")
    out.r_seconds = float(r["secs"].iloc[0])
    return out


FUNCS = {"choose": m_choose, "ard_sin": m_ard_sin, "ard_reml": m_ard_reml, "ard_reml3": m_ard_reml3, "reml": m_reml, "gcv": m_gcv,
         "ols": m_ols, "pygam": m_pygam,
         "gp": m_gp, "krr": m_krr, "mgcv": m_mgcv}


# ----------------------------------------------------------------------------- running

def evaluate(name: str, method: str, fn: Callable[[], Out], y_test: np.ndarray, split_id,
             n_train: int) -> dict:
    row = {"dataset": name, "split": split_id, "method": method, "n_train": n_train,
           "n_test": len(y_test)}
    t0 = time.perf_counter()
    try:
        out, warn = _caught(fn)
    except Exception as exc:  # report and keep going
        row.update(error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                   seconds=time.perf_counter() - t0)
        return row
    secs = time.perf_counter() - t0
    secs = getattr(out, "r_seconds", secs)
    err = y_test - out.mean
    row.update(mse=float(np.mean(err ** 2)), seconds=secs, info=out.info, warnings=warn)
    if not np.all(np.isfinite(out.mean)):
        row["error"] = f"{int(np.sum(~np.isfinite(out.mean)))} non-finite predictions"
    if out.lower is not None:
        row["coverage"] = float(np.mean((y_test >= out.lower) & (y_test <= out.upper)))
        row["pi_width"] = float(np.median(out.upper - out.lower))
    return row


def run_dataset(spec: Spec, seeds, methods, log=print) -> list[dict]:
    rows = []
    for seed in seeds:
        tr, te = split(spec, seed)
        y = te["y"].to_numpy(float)
        for m in methods:
            r = evaluate(spec.name, m, lambda: FUNCS[m](spec, tr, te, seed), y, seed, len(tr))
            rows.append(r)
            if "error" in r:
                log(f"   {spec.name} split {seed} {m}: ERROR {r['error']}")
        ok = [r for r in rows[-len(methods):] if "mse" in r]
        log(f"  {spec.name} split {seed}: " + ", ".join(
            f"{r['method']} {r['mse']:.4g}" for r in ok), flush=True)
    return rows


def issue_case(methods, log=print) -> list[dict]:
    """The issue's bikeshare split: 2,000 training and 2,000 test rows of the full data."""
    df = mn.datasets.load("bikeshare")
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(df))
    d = df.assign(y=np.log1p(df["bikers"].astype(float)), season=df["season"].astype(str))
    tr = d.iloc[idx[:2000]].reset_index(drop=True)
    te = d.iloc[idx[2000:4000]].reset_index(drop=True)
    spec = Spec("bikeshare (issue split)", "log1p(bikers)", d, ["season"], ["workingday"],
                ["hr", "temp", "hum", "windspeed", "workingday"])
    formula = "np.log1p(bikers) ~ workingday + C(season)"  # the issue's formula, verbatim
    y = te["y"].to_numpy(float)
    rows = []
    for m in methods:
        if m in MIXEDNN_METHODS:
            fn = (lambda m=m: FUNCS[m](spec, tr, te, 0, formula=formula))
        else:
            fn = (lambda m=m: FUNCS[m](spec, tr, te, 0))
        rows.append(evaluate(spec.name, m, fn, y, "issue", len(tr)))
        log(f"  issue split {m}: " + (f"MSE {rows[-1]['mse']:.4f}, {rows[-1]['seconds']:.1f} s"
                                      if "mse" in rows[-1] else rows[-1].get("error", "")),
            flush=True)
    if "ard_reml" in methods:  # the ARD search on all 2,000 rows, as the issue measured it
        rows.append(evaluate(spec.name, "ard_reml_allrows",
                             lambda: m_ard_reml(spec, tr, te, 0, formula=formula, subsample=None),
                             y, "issue", len(tr)))
        log("  issue split ard_reml_allrows: " + (
            f"MSE {rows[-1]['mse']:.4f}, {rows[-1]['seconds']:.1f} s" if "mse" in rows[-1]
            else rows[-1].get("error", "")), flush=True)
    if "mgcv" in methods:
        rf = mgcv_formula(spec, tr, by={"hr": "workingday"})
        rows.append(evaluate(spec.name, "mgcv_by", lambda: m_mgcv(spec, tr, te, 0, r_formula=rf),
                             y, "issue", len(tr)))
        last = rows[-1]
        log(f"  issue split mgcv_by ({rf}): "
            + (f"MSE {last['mse']:.4f}" if "mse" in last else last.get("error", "")))
    return rows


# ----------------------------------------------------------------------------- reporting

def per_dataset(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    out = {}
    ok = df[df["split"] != "issue"]
    ok = ok[ok["error"].isna()] if "error" in ok else ok
    for name, g in ok.groupby("dataset", sort=False):
        t = g.groupby("method").agg(mse=("mse", "median"), mse_min=("mse", "min"),
                                    mse_max=("mse", "max"), coverage=("coverage", "median"),
                                    seconds=("seconds", "median"), splits=("mse", "size"))
        t = t.reindex([m for m in METHODS if m in t.index])
        best_peer = t.loc[[m for m in PEERS if m in t.index], "mse"].min()
        t.insert(1, "ratio_best_peer", t["mse"] / best_peer)
        out[name] = t
    return out


def summary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows = []
    for m in METHODS:
        r = pd.Series({d: t.loc[m, "ratio_best_peer"] for d, t in tables.items() if m in t.index})
        c = pd.Series({d: t.loc[m, "coverage"] for d, t in tables.items() if m in t.index})
        s = pd.Series({d: t.loc[m, "seconds"] for d, t in tables.items() if m in t.index})
        if r.empty:
            continue
        rows.append({"method": m, "datasets": len(r), "median_ratio": r.median(),
                     "worst_ratio": r.max(), "best_ratio": r.min(),
                     "worst_dataset": r.idxmax(), "wins_vs_best_peer": int((r < 1).sum()),
                     "median_coverage": c.median(), "coverage_range": f"{c.min():.3f}-{c.max():.3f}"
                     if c.notna().any() else "NA",
                     "median_seconds": s.median()})
    return pd.DataFrame(rows).set_index("method")


def ratio_matrix(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Median MSE of each mixednn method over each peer's, by data set."""
    rows = {}
    for d, t in tables.items():
        for m in MIXEDNN_METHODS:
            if m not in t.index:
                continue
            rows[(d, m)] = {p: t.loc[m, "mse"] / t.loc[p, "mse"] for p in PEERS if p in t.index}
    return pd.DataFrame(rows).T


def _markdown(df: pd.DataFrame, index_name: str | None = None) -> str:
    cols = [index_name or df.index.name or ""] + [str(c) for c in df.columns]

    def fmt(v):
        if isinstance(v, (int, np.integer)):
            return str(v)
        if isinstance(v, (float, np.floating)):
            if not np.isfinite(v):
                return "NA"
            if float(v).is_integer() and abs(v) < 1e6:
                return f"{v:.0f}"
            return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in df.iterrows():
        idx = " / ".join(map(str, idx)) if isinstance(idx, tuple) else str(idx)
        lines.append("| " + " | ".join([idx] + [fmt(v) for v in row.to_numpy()]) + " |")
    return "\n".join(lines)


def report(df: pd.DataFrame, header: str, markdown: str | None = None) -> None:
    """Print the tables of a results frame (one row per method x data set x split) and
    write them as markdown."""
    df = df.copy()
    df["split"] = df["split"].astype(str)
    for c in ("error", "coverage", "warnings", "info"):
        if c not in df:
            df[c] = np.nan
    fmt = lambda v: f"{v:.4g}"  # noqa: E731
    pd.set_option("display.width", 220)
    md = [header + "\n"]
    tables = per_dataset(df)
    for name, t in tables.items():
        print(f"\n== {name}: medians over {int(t['splits'].max())} splits "
              "(ratio_best_peer: median MSE over the best peer's median MSE)")
        print(t.to_string(float_format=fmt))
        md.append(f"### {name}\n\n" + _markdown(t) + "\n")
    if tables:
        summ = summary(tables)
        print("\n== Summary over data sets: median MSE / best peer's median MSE, by data set")
        print(summ.to_string(float_format=fmt))
        rm = ratio_matrix(tables)
        print("\n== mixednn's median MSE over each peer's, by data set")
        print(rm.to_string(float_format=fmt))
        print("\n   median over data sets:")
        print(rm.groupby(level=1).median().reindex(
            [m for m in MIXEDNN_METHODS if m in rm.index.get_level_values(1)]).to_string(
            float_format=fmt))
        md.append("### Summary\n\n" + _markdown(summ) + "\n")
        md.append("### mixednn over each peer\n\n" + _markdown(rm, "data set / method") + "\n")
    iss = df[df["split"] == "issue"]
    if len(iss):
        ref = {"reml": 0.669, "gcv": 0.384, "ard_reml": 0.234, "ard_reml_allrows": 0.234,
               "mgcv": 0.332, "mgcv_by": 0.136}
        it = iss.set_index("method")[["mse", "coverage", "seconds", "info", "error"]].copy()
        it.insert(1, "issue_reference", [ref.get(m, np.nan) for m in it.index])
        print("\n== The issue's bikeshare split (held-out MSE; reference: the issue's numbers)")
        print(it.to_string(float_format=fmt))
        md.append("### The issue's bikeshare split\n\n"
                  + _markdown(it.drop(columns=["info", "error"])) + "\n")
    errs = df[df["error"].notna()]
    if len(errs):
        print(f"\n== {len(errs)} failed fits")
        print(errs[["dataset", "split", "method", "error"]].to_string(index=False))
    warned = df[df["method"].isin(MIXEDNN_METHODS) & df["warnings"].fillna("").astype(bool)]
    if len(warned):
        print(f"\n== mixednn fits with warnings: {len(warned)}")
        print(warned[["dataset", "split", "method", "warnings"]].to_string(index=False,
                                                                          max_colwidth=150))
    if markdown:
        os.makedirs(os.path.dirname(os.path.abspath(markdown)), exist_ok=True)
        with open(markdown, "w") as fh:
            fh.write("\n".join(md))


def machine_note() -> str:
    import sklearn
    import statsmodels

    import pygam

    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count()
    src = os.path.dirname(os.path.dirname(os.path.abspath(mn.__file__)))
    try:
        rev = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", src, "status", "--porcelain", "--", "mixednn"],
                               capture_output=True, text=True).stdout.strip()
        rev = f" (git {rev}{', mixednn/ modified' if dirty else ''})"
    except (OSError, subprocess.CalledProcessError):
        rev = ""
    return (f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {platform.system()}, "
            f"{ncpu} cores, Python {platform.python_version()}, mixednn {mn.__version__}{rev}, "
            f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, statsmodels "
            f"{statsmodels.__version__}, pygam {pygam.__version__}, {r_available()[1]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 data sets x 2 splits, no issue split")
    ap.add_argument("--only", default=None, help="comma-separated data set names")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--no-r", action="store_true", help="skip mgcv")
    ap.add_argument("--no-issue", action="store_true", help="skip the issue's bikeshare split")
    ap.add_argument("--issue-only", action="store_true", help="only the issue's bikeshare split")
    ap.add_argument("--threads", type=int, default=None,
                    help="cap BLAS, torch and mixednn kernel threads (e.g. 1 on a shared machine)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bench_peers.csv"))
    ap.add_argument("--markdown", default=os.path.join(HERE, "results", "bench_peers.md"))
    ap.add_argument("--merge", default=None, metavar="CSV",
                    help="keep the rows of an earlier run's CSV for the methods not run now "
                         "(same data sets and splits: every split is seeded)")
    ap.add_argument("--report", default=None, metavar="CSV",
                    help="only print (and write as markdown) the tables of an earlier run's CSV")
    args = ap.parse_args()
    if args.report:
        report(pd.read_csv(args.report), f"Tables from {os.path.basename(args.report)}.",
               args.markdown)
        return
    t_start = time.perf_counter()
    if args.threads:
        from threadpoolctl import threadpool_limits

        import torch

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
        os.environ["MIXEDNN_NUM_THREADS"] = str(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # Rscript's child processes
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    if args.no_r:
        methods = [m for m in methods if m != "mgcv"]
    elif "mgcv" in methods:
        ok, note = r_available()
        print(f"mgcv: {note}")
        if not ok:
            methods.remove("mgcv")
    specs = load_specs()
    n_splits = args.splits
    if args.quick:
        specs = [s for s in specs if s.name in ("auto", "penguins")]
        n_splits = min(n_splits, 2)
    if args.only:
        keep = set(args.only.split(","))
        specs = [s for s in specs if s.name in keep]
    if args.issue_only:
        specs = []
    print(f"machine: {machine_note()}")
    print(f"threads: {args.threads or 'library defaults'}")
    print(f"network: {NET.depth}-layer {NET.activation} NTK (analytic); methods: {methods}")
    rows = []
    for spec in specs:
        t0 = time.perf_counter()
        print(f"\n== {spec.name}: {spec.response} ~ {' + '.join(spec.fe_terms) or '1'}; "
              f"network inputs {', '.join(spec.inputs)}; {len(spec.df)} rows "
              f"({spec.source})", flush=True)
        rows.extend(run_dataset(spec, range(n_splits), methods))
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    if not args.quick and not args.no_issue:
        t0 = time.perf_counter()
        print("\n== the issue's bikeshare split (2,000 train / 2,000 test rows)", flush=True)
        rows.extend(issue_case(methods))
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    df = pd.DataFrame(rows)
    if args.merge:
        old = pd.read_csv(args.merge)
        old = old[~old["method"].isin(methods + [m + "_allrows" for m in methods])]
        df = pd.concat([old, df], ignore_index=True)
    for c in ("error", "coverage", "warnings", "info"):
        if c not in df:
            df[c] = np.nan
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        df.to_csv(args.out, index=False)
    report(df, f"Run: {machine_note()}; threads: {args.threads or 'library defaults'}; "
              f"elapsed {time.perf_counter() - t_start:.0f} s.", args.markdown)
    print(f"\nelapsed {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
