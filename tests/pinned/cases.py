"""The fixed set of fits whose outputs are pinned in ``pinned_outputs.json``.

Shared by the generator (``make_pinned.py``) and the test
(``tests/test_pinned_outputs.py``), so both run exactly the same fits.  Only the
public API of mixednn is used: ``mn.MixedLMNTK.from_formula``, ``mn.MLP``,
``mn.CSVSource``, ``fit()`` and the public attributes and methods of its results.

Two seeded data frames (n = 150):

* ``"strong"``: a clear nonlinear signal; the default rule rejects REML's time and
  moves to GCV (a large excess, bootstrap p at its minimum, far from the threshold).
* ``"weak"``: a faint signal; the default rule keeps REML's time and the score test
  and the simulated RLRT have p-values well inside (0, 1), so the simulated null
  draws themselves are pinned (not just "every draw below the statistic").
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

import mixednn as mn

FORMULA = "y ~ w + C(g)"
NTK = "~ x1 + x2 + x3"
N = 150
LR_NSIM = 200
LR_SEED = 1
CSV_CHUNKSIZE = 40

#: (seed, signal amplitude, noise sd) of each simulated frame
FRAMES = {"strong": (3, 0.8, 0.4), "weak": (2, 0.15, 0.5)}


def make_frame(name: str) -> pd.DataFrame:
    """A seeded frame: fixed effects w and C(g), network inputs x1, x2, x3."""
    seed, amp, noise = FRAMES[name]
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=N), "x2": rng.normal(size=N),
                       "x3": rng.uniform(-2, 2, size=N), "w": rng.normal(size=N),
                       "g": rng.choice(["a", "b", "c"], size=N)})
    signal = np.sin(1.5 * df.x1) + 0.5 * df.x2 * df.x3
    df["y"] = (0.5 + 0.3 * df.w + 0.4 * (df.g == "b") + amp * signal
               + noise * rng.normal(size=N))
    return df


def make_newdata() -> pd.DataFrame:
    """Five new rows (every level of g present; inputs partly outside the training range)."""
    rng = np.random.default_rng(99)
    return pd.DataFrame({"x1": [-1.5, -0.3, 0.0, 0.8, 2.5], "x2": rng.normal(size=5),
                         "x3": [1.9, -1.0, 0.2, -0.5, 2.2], "w": rng.normal(size=5),
                         "g": ["a", "b", "c", "a", "c"], "y": np.zeros(5)},
                        index=[1001, 1002, 1003, 1004, 1005])


def torch_module():
    """A small seeded torch network, 3 -> 48 -> 1 (tanh), float64: 241 parameters > n,
    so its empirical NTK is a dense n x n kernel."""
    import torch

    torch.manual_seed(20240611)
    return torch.nn.Sequential(torch.nn.Linear(3, 48), torch.nn.Tanh(),
                               torch.nn.Linear(48, 1)).double()


@dataclass(frozen=True)
class Case:
    """One pinned fit.

    kind : the behaviour it pins (the test function it belongs to).
    frame : "strong" or "weak".
    model : keyword arguments of ``from_formula`` (a callable for fresh objects).
    fit : keyword arguments of ``fit()``.
    csv : fit from a chunked CSV (``mn.CSVSource``) instead of the frame.
    """

    kind: str
    frame: str
    model: Callable[[], dict]
    fit: dict = field(default_factory=dict)
    csv: bool = False


def _kw(**kw: Any) -> Callable[[], dict]:
    return lambda: dict(kw)


#: The checked rule, which was the default of fit() when these numbers were pinned.
AUTO = {"t_method": "auto"}

CASES: dict[str, Case] = {
    # a. dense eigendecomposition
    "eigh_auto": Case("dense_eigh", "strong", _kw(decomposition="eigh"), AUTO),
    "eigh_reml": Case("dense_eigh", "strong", _kw(decomposition="eigh"), {"t_method": "reml"}),
    "eigh_ml_auto": Case("dense_eigh", "strong", _kw(decomposition="eigh"),
                         {"reml": False, **AUTO}),
    "eigh_auto_weak": Case("dense_eigh", "weak", _kw(decomposition="eigh"), AUTO),
    "eigh_ml_rule_weak": Case("dense_eigh", "weak", _kw(decomposition="eigh"),
                              {"reml": False, "t_method": "ml"}),
    # b. tridiagonal decomposition
    "tridiagonal_auto": Case("tridiagonal", "strong", _kw(decomposition="tridiagonal"), AUTO),
    "tridiagonal_reml": Case("tridiagonal", "strong", _kw(decomposition="tridiagonal"),
                             {"t_method": "reml"}),
    "tridiagonal_auto_weak": Case("tridiagonal", "weak", _kw(decomposition="tridiagonal"),
                                  AUTO),
    # c. Nystrom features (landmarks kmeans++, seed 0)
    "nystrom30_auto": Case("nystrom", "strong", _kw(low_rank=30), AUTO),
    "nystrom30_reml": Case("nystrom", "strong", _kw(low_rank=30), {"t_method": "reml"}),
    "nystrom30_uniform_reml_weak": Case("nystrom", "weak", _kw(low_rank=30, landmarks="uniform"),
                                        {"t_method": "reml"}),
    "nystrom_full_reml": Case("nystrom", "strong", _kw(low_rank=N), {"t_method": "reml"}),
    # d. exact Jacobian features of a finite network (96 parameters < n)
    "exact_jacobian_auto": Case("exact_jacobian", "strong",
                                lambda: dict(network=mn.MLP(depth=2, width=8), low_rank="exact"),
                                AUTO),
    "exact_jacobian_reml": Case("exact_jacobian", "strong",
                                lambda: dict(network=mn.MLP(depth=2, width=8), low_rank="exact"),
                                {"t_method": "reml"}),
    "exact_jacobian_auto_weak": Case("exact_jacobian", "weak",
                                     lambda: dict(network=mn.MLP(depth=2, width=8),
                                                  low_rank="exact"), AUTO),
    # e. free leading modes
    "free_modes_2": Case("free_modes", "strong", _kw(decomposition="eigh"), {"free_modes": 2}),
    "free_modes_auto": Case("free_modes", "strong", _kw(decomposition="eigh"),
                            {"free_modes": "auto"}),
    "free_modes_1_weak": Case("free_modes", "weak", _kw(decomposition="eigh"), {"free_modes": 1}),
    # f. streamed CSV, Nystrom features
    "csv_nystrom30_auto": Case("streamed_csv", "strong", _kw(low_rank=30), AUTO, csv=True),
    "csv_nystrom30_reml": Case("streamed_csv", "strong", _kw(low_rank=30), {"t_method": "reml"},
                               csv=True),
    "csv_nystrom30_uniform_reml_weak": Case("streamed_csv", "weak",
                                            _kw(low_rank=30, landmarks="uniform"),
                                            {"t_method": "reml"}, csv=True),
    # g. finite torch networks, dense empirical kernel (parameters > n), offset = init
    "finite_mlp16_auto": Case("finite_network", "strong",
                              lambda: dict(network=mn.MLP(depth=2, width=16)), AUTO),
    "torch_module_auto": Case("finite_network", "strong", lambda: dict(network=torch_module()),
                              AUTO),
    "torch_module_reml": Case("finite_network", "strong", lambda: dict(network=torch_module()),
                              {"t_method": "reml"}),
    "finite_mlp16_auto_weak": Case("finite_network", "weak",
                                   lambda: dict(network=mn.MLP(depth=2, width=16)), AUTO),
    # h. named rules
    "rule_gcv": Case("named_rule", "strong", _kw(decomposition="eigh"), {"t_method": "gcv"}),
    "rule_loo": Case("named_rule", "strong", _kw(decomposition="eigh"), {"t_method": "loo"}),
    "rule_gcv_nystrom30": Case("named_rule", "strong", _kw(low_rank=30), {"t_method": "gcv"}),
    "rule_gcv_weak": Case("named_rule", "weak", _kw(decomposition="eigh"), {"t_method": "gcv"}),
}


def cases_of(kind: str) -> list[str]:
    return [name for name, c in CASES.items() if c.kind == kind]


def build_model(name: str, workdir: str | os.PathLike | None = None):
    """The case's model; a CSV case writes its frame to ``workdir``."""
    case = CASES[name]
    df = make_frame(case.frame)
    data: Any = df
    if case.csv:
        if workdir is None:
            raise ValueError(f"case {name!r} needs a directory for its CSV file")
        path = os.path.join(os.fspath(workdir), f"{name}.csv")
        df.to_csv(path, index=False)
        data = mn.CSVSource(path, chunksize=CSV_CHUNKSIZE)
    return mn.MixedLMNTK.from_formula(FORMULA, data, ntk=NTK, **case.model())


def fit_case(name: str, workdir: str | os.PathLike | None = None):
    """Fit a case; returns the results object."""
    return build_model(name, workdir).fit(**CASES[name].fit)


def _floats(x: Any) -> list[float]:
    return [float(v) for v in np.asarray(x, dtype=float).ravel()]


def _raised(exc: BaseException) -> dict:
    return {"raises": type(exc).__name__, "message": str(exc)}


def collect(res: Any, skip: frozenset[str] = frozenset()) -> dict:
    """The pinned quantities of a fit, as JSON-ready values.

    A test that raises is recorded as ``{"raises": ..., "message": ...}``; quantities
    named in ``skip`` are not computed (the test skips what raised when pinned).
    """
    out: dict[str, Any] = {
        "t": float(res.t),
        "t_method": str(res.t_method),
        "method": str(res.method),
        "nobs": int(res.nobs),
        "params": {str(k): float(v) for k, v in res.params.items()},
        "bse": {str(k): float(v) for k, v in res.bse.items()},
        "llf": float(res.llf),
        "scale": float(res.scale),
    }
    # free leading modes made fixed effects (0 for the plain model, whose results may not
    # carry the attribute at all)
    out["free_modes"] = int(getattr(res, "free_modes", None) or 0)
    newdata = make_newdata()
    for interval in ("confidence", "prediction"):
        key = f"predict_{interval}"
        if key in skip:
            continue
        try:
            frame = res.predict(newdata, interval=interval)
            out[key] = {col: _floats(frame[col]) for col in ("mean", "lower", "upper")}
        except Exception as exc:  # noqa: BLE001 - recorded, not invented
            out[key] = _raised(exc)
    if "score_test" not in skip:
        try:
            st = res.score_test()
            out["score_test"] = {"statistic": float(st.statistic), "pvalue": float(st.pvalue),
                                 "method": str(st.method)}
        except Exception as exc:  # noqa: BLE001
            out["score_test"] = _raised(exc)
    if "lr_test" not in skip:
        try:
            lt = res.lr_test(nsim=LR_NSIM, seed=LR_SEED)
            out["lr_test"] = {"statistic": float(lt.statistic), "pvalue": float(lt.pvalue)}
        except Exception as exc:  # noqa: BLE001
            out["lr_test"] = _raised(exc)
    return out


def run_case(name: str, workdir: str | os.PathLike | None = None,
             skip: frozenset[str] = frozenset()) -> dict:
    """Fit and collect, with warnings silenced: the pinned numbers are the subject, not the
    warnings.  The package's warnings (boundary, interpolation, clipped kernel, ML refit)
    are all UserWarnings; they are filtered by that base class so that this module does
    not depend on which module defines them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit_case(name, workdir)
        return collect(res, skip)
