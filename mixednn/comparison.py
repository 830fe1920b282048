"""Likelihood-ratio comparison of fitted models: R's ``anova`` for mixed models.

This module owns :func:`anova` (an R-style table, :class:`AnovaResults`),
:func:`compare_lr_test` (one nested comparison as a
:class:`mixednn.hypotheses.TestResult`) and :func:`ols_null` (a fit's no-network
null as statsmodels OLS), and the rules behind them: models must be fit to the same
rows and response; statsmodels ``OLS`` results are valid ``t = 0`` nulls; REML
criteria are compared only for the same fixed effects, otherwise the REML network
fits are refit by ML (with an :class:`mixednn.exceptions.MLRefitWarning`); nested
pairs get a chi-square test, network vs no network the boundary null of
:mod:`mixednn.lrnull`, and non-nested pairs AIC/BIC only (an
:class:`mixednn.hypotheses.InapplicableTest` says why).

The tests of ``t = 0`` on one model are :mod:`mixednn.inference`.
"""

from __future__ import annotations

import html
import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .exceptions import BoundaryFitWarning, InterpolationWarning, MLRefitWarning, warn_at_caller
from .hypotheses import InapplicableTest, TestResult
from .interfaces import FitResults
from .lrnull import mixture_sf, nesting_map, simulate_lr_null, simulated_pvalue
from .numerics import LOG_2PI

__all__ = ["AnovaResults", "anova", "grouped_anova", "compare_lr_test", "ols_null"]


@dataclass
class _Candidate:
    """One model in an anova table, reduced to what the comparison needs."""

    name: str
    description: str
    obj: Any                 # MixedLMNTKResults or statsmodels OLS results
    network: bool
    nobs: int
    response: np.ndarray     # y - offset
    exog: np.ndarray
    row_labels: Any
    reml: bool
    network_llf: float = math.nan       # the network model's likelihood maximum
    profile: Any = None                 # the network model's profile at that maximum
    weights: np.ndarray | None = None   # precision weights (None: all 1)

    @property
    def k_fe(self) -> int:
        return int(self.exog.shape[1])

    @property
    def npar(self) -> int:
        return self.k_fe + (2 if self.network else 1)

    def llf(self, reml: bool) -> float:
        if self.network:
            if self.reml != reml:  # pragma: no cover - refit handled by the caller
                raise RuntimeError("criterion mismatch")
            return float(self.network_llf)
        if not reml:
            return float(self.obj.llf)
        # REML log-likelihood of the OLS model (c = 0, the network model's t = 0 value);
        # of WLS: the whitened design, the weighted RSS (statsmodels' ssr) and the
        # Jacobian 1/2 sum log w, as the network model's (docs/model.md section 2.7)
        n, p = self.nobs, self.k_fe
        rss = float(self.obj.ssr)
        dof = n - p
        w = self.weights
        Xw = self.exog if w is None else np.sqrt(w)[:, None] * self.exog
        logdet = np.linalg.slogdet(Xw.T @ Xw)[1] if p else 0.0
        jac = 0.0 if w is None else float(np.sum(np.log(w)))
        return -0.5 * (dof * (LOG_2PI + math.log(rss / dof)) + dof + logdet - jac)


def _model_names(models: Sequence[Any], names: Sequence[str] | None) -> list[str]:
    """The table's row labels: ``names`` as strings, or ``model1, model2, ...``."""
    if names is None:
        names = [f"model{i + 1}" for i in range(len(models))]
    names = [str(s) for s in names]
    if len(names) != len(models) or len(set(names)) != len(names):
        raise ValueError("names must be unique, one per model")
    return names


def _rhs(names: Sequence[str]) -> str:
    names = [str(v) for v in names]
    if not names:
        return "0"
    return " + ".join(names) if len(names) <= 6 else f"{len(names)} columns ({names[0]}, ...)"


def _describe_ntk(res: FitResults) -> str:
    d = res.model.data
    lhs = d.formula if d.formula else f"{d.endog_name} ~ {_rhs(res.model.exog_names)}"
    net = res.model.kernel_source.description
    return f"{lhs} + NTK[{net}]"


def _candidate(obj: Any, name: str) -> _Candidate:
    if isinstance(obj, FitResults):
        choice = obj.time_choice
        if obj.free_modes and choice.check is None:
            raise ValueError(
                f"{name!r} was fit with free leading modes (data-chosen fixed effects); anova "
                "compares models without them: refit with fit(t_method='reml'), "
                "or use res.lr_test() / res.score_test() for t = 0 given the free modes")
        m = obj.model
        # a likelihood comparison needs the maximum of the criterion of the plain model
        # (recorded by the fit: t chosen by another rule, or the default rule fell back
        # to free modes)
        plain = obj.free_modes or not (choice.by_likelihood and (choice.rule == "reml") == obj.reml)
        llf = choice.plain_likelihood.llf if plain else obj.llf
        return _Candidate(name, _describe_ntk(obj), obj, True, int(m.nobs),
                          np.asarray(m.endog - m.offset, dtype=float), np.asarray(m.exog, float),
                          m.data.row_labels, obj.reml, float(llf),
                          m.profile if plain else obj.likelihood_profile,
                          _nontrivial(m.weights))
    model = getattr(obj, "model", None)
    if model is not None and type(model).__name__ in ("OLS", "WLS") and hasattr(obj, "llf"):
        X = np.asarray(model.exog, dtype=float)
        y = np.asarray(model.endog, dtype=float)
        w = getattr(model, "weights", None)  # WLS: the t = 0 null of a weighted network model
        desc = getattr(model, "formula", None) or \
            f"{getattr(model, 'endog_names', 'y')} ~ {_rhs(getattr(model, 'exog_names', []))}"
        labels = getattr(getattr(model, "data", None), "row_labels", None)
        return _Candidate(name, f"{desc} (no network, t = 0)", obj, False, int(y.shape[0]),
                          y, X, labels, False,
                          weights=_nontrivial(None if w is None or not np.ndim(w) else
                                              np.broadcast_to(w, y.shape)))
    raise TypeError(
        f"anova compares MixedLMNTKResults and statsmodels OLS/WLS results (the no-network "
        f"null, e.g. res.null_fit() or smf.ols(...).fit()); got {type(obj).__name__}")


def _nontrivial(weights: Any) -> np.ndarray | None:
    """Precision weights as an array, or None when there are none or all are 1."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=float)
    return None if np.all(w == 1) else w


def _check_same_data(cands: list[_Candidate]) -> None:
    ref = cands[0]
    for c in cands[1:]:
        if c.nobs != ref.nobs:
            raise ValueError(
                f"models were fit to different rows: {ref.name!r} has {ref.nobs} observations "
                f"and {c.name!r} has {c.nobs}; refit them on the same complete rows")
        if ref.row_labels is not None and c.row_labels is not None:
            a, b = pd.Index(ref.row_labels), pd.Index(c.row_labels)
            if not a.equals(b):
                raise ValueError(f"models were fit to different rows ({ref.name!r} and "
                                 f"{c.name!r} have different row labels)")
        if (ref.weights is None) != (c.weights is None) or (
                ref.weights is not None and not np.allclose(ref.weights, c.weights,
                                                            rtol=1e-12, atol=0)):
            raise ValueError(
                f"models were fit with different precision weights ({ref.name!r} and "
                f"{c.name!r}); likelihoods are comparable only for the same weights (for a "
                "weighted network model, compare it with res.null_fit(), a WLS)")
        scale = max(float(np.max(np.abs(ref.response))), 1e-300)
        if not np.allclose(ref.response, c.response, rtol=0, atol=1e-10 * scale):
            raise ValueError(
                f"models were fit to different responses ({ref.name!r} and {c.name!r}; for "
                "a network model the response is y - offset: compare it with the OLS "
                "of y - offset on the same design, res.null_fit())")


def _same_kernel(a: FitResults, b: FitResults) -> bool:
    ba, bb = a.model.basis, b.model.basis
    if not (ba.complete_spectrum and bb.complete_spectrum):
        # a Krylov basis holds Ritz values of its own data's space, not the spectrum: its
        # kernel matrix itself is compared (a dense basis keeps no kernel: not judged)
        ka, kb = getattr(ba, "kernel", None), getattr(bb, "kernel", None)
        return (ka is not None and kb is not None and ka.shape == kb.shape
                and a.model.kernel_source.description == b.model.kernel_source.description
                and np.allclose(ka, kb, rtol=1e-9, atol=1e-12 * max(float(np.abs(ka).max()),
                                                                     1e-300)))
    la, lb = a.model.profile.lam, b.model.profile.lam
    if la.shape != lb.shape or a.model.profile.trace != b.model.profile.trace:
        return False
    da = a.model.kernel_source.description
    db = b.model.kernel_source.description
    return da == db and np.allclose(la, lb, rtol=1e-9, atol=1e-12 * max(float(la.max()), 1e-300))


def _choose_criterion(cands: list[_Candidate], refit: bool | None, notes: list[str]) -> bool:
    """Whether the table compares REML criteria (``True``) or ML ones.

    REML fits that must be compared by ML are refit (in ``cands``), with an
    :class:`MLRefitWarning` for the caller of :func:`anova` and a line in ``notes``.
    """
    # REML criteria are comparable only for the same design matrix (a reparametrised
    # design shifts log det(X^T W X)); ML is invariant, so anything else is refit by ML
    x0 = cands[0].exog
    same_fe = all(c.exog.shape == x0.shape
                  and np.allclose(c.exog, x0, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(x0).max()
                                                                            if x0.size else 1.0))
                  for c in cands)
    net_reml = {c.reml for c in cands if c.network}
    any_reml = True in net_reml
    if refit is None:
        use_ml = not (same_fe and net_reml <= {True} and any_reml)
    elif refit:
        use_ml = True
    else:
        if any_reml and (not same_fe or False in net_reml):
            raise ValueError("REML log-likelihoods of models with different fixed effects (or "
                             "mixed REML/ML fits) are not comparable; use refit=None or True")
        use_ml = not any_reml
    if use_ml and any_reml:
        refitted = [c.name for c in cands if c.network and c.reml]
        msg = "refitting model(s) with ML (instead of REML): " + ", ".join(refitted)
        warn_at_caller(msg, MLRefitWarning)  # at anova's caller
        notes.append(msg)
        for c in cands:
            if c.network and c.reml:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", BoundaryFitWarning)
                    warnings.simplefilter("ignore", InterpolationWarning)
                    c.obj = c.obj.model.fit(reml=False, t_method="ml")
                c.reml = False
                c.network_llf = float(c.obj.llf)
                c.profile = c.obj.likelihood_profile
    return not use_ml


@dataclass(repr=False)
class AnovaResults:
    """R-style comparison table returned by :func:`anova`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per model (sorted by number of parameters): ``Df``, ``AIC``,
        ``BIC``, ``logLik``, ``deviance``, ``Chisq``, ``Chi Df``, ``Pr(>Chisq)``;
        each row from the second is compared with the row above it (NaN where
        no p-value is defined, with the reason in ``notes``).
    tests : dict
        ``{(smaller, larger): TestResult}`` for each consecutive pair.
    models : dict
        Model name -> description.
    notes : list of str
        Refits, criteria, how each p-value was obtained.
    criterion : str
        ``"REML"`` or ``"ML"``.
    """

    table: pd.DataFrame
    tests: dict
    models: dict
    notes: list
    criterion: str

    def __getitem__(self, key: Any) -> Any:
        return self.table[key]

    def _table_str(self) -> str:
        t = self.table.copy()
        fmt = {"AIC": "{:.2f}", "BIC": "{:.2f}", "logLik": "{:.3f}", "deviance": "{:.3f}",
               "Chisq": "{:.4f}", "Pr(>Chisq)": "{:.4g}"}
        for col, f in fmt.items():
            t[col] = [("" if pd.isna(v) else f.format(v)) for v in t[col]]
        for col in ("Df", "Chi Df"):
            t[col] = ["" if pd.isna(v) else f"{int(v)}" for v in t[col]]
        return t.to_string()

    def __str__(self) -> str:
        lines = ["Models:"] + [f"{k}: {v}" for k, v in self.models.items()]
        lines += [self._table_str()]
        lines += self.notes
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        models = "".join(f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>"
                         for k, v in self.models.items())
        notes = "".join(f"<li>{html.escape(s)}</li>" for s in self.notes)
        return (f"<div><b>Models</b><ul>{models}</ul>{self.table.to_html(na_rep='')}"
                f"<ul>{notes}</ul></div>")


def anova(*models: Any, names: Sequence[str] | None = None, null: str = "simulate",
          nsim: int = 10_000, seed: Any = None, refit: bool | None = None) -> AnovaResults:
    """Compare fitted models with likelihood-ratio tests (R's ``anova`` for mixed models).

    Parameters
    ----------
    *models : MixedLMNTKResults or statsmodels OLS results
        Models fit to the same rows and response.  A plain linear model
        (statsmodels ``OLS`` results, e.g. ``res.null_fit()`` or
        ``smf.ols(formula, df).fit()``) is the no-network model, ``t = 0``; for a
        network model with an offset f0 the comparable OLS is fit to ``y - f0``.
    names : sequence of str, optional
        Row labels (default ``model1, model2, ...`` in the order given).
    null : {"simulate", "mixture"}
        Null distribution for boundary comparisons (network vs no network,
        ``t = 0`` on the boundary): the exact simulated null (default) or the
        asymptotic 50:50 mixture ``0.5 chi2_d + 0.5 chi2_{d+1}`` (d = number of
        extra fixed effects).  Never a naive chi-square.
    nsim, seed
        Simulations for ``null="simulate"``.
    refit : bool, optional
        ``None`` (default): compare REML criteria when every model has the same
        fixed effects and every network model was fit by REML; otherwise refit the
        REML network models by ML, with an :class:`MLRefitWarning` ("refitting
        model(s) with ML (instead of REML)").  ``True`` always compares ML fits;
        ``False`` never refits (an error if REML fits with different fixed effects
        would have to be compared).

    Returns
    -------
    AnovaResults
        ``table`` sorted by the number of parameters (``Df``); each row from the
        second is compared with the row above.  Nested pairs get ``Chisq``,
        ``Chi Df`` and ``Pr(>Chisq)``: a boundary null for network vs no
        network, chi-square(Chi Df) for nested fixed effects under the same
        kernel.  Non-nested pairs (different architectures, non-nested designs)
        get AIC/BIC only.

    Raises
    ------
    ValueError
        Models fit to different rows or different responses; fewer than one model.

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(80, 2)); y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=80)
    >>> res = mn.MixedLMNTK(y, np.ones((80, 1)), Z, network=mn.MLP(depth=2)).fit()
    >>> tab = mn.anova(res.null_fit(), res, names=["ols", "ntk"], nsim=2000, seed=1)
    >>> list(tab.table.columns)
    ['Df', 'AIC', 'BIC', 'logLik', 'deviance', 'Chisq', 'Chi Df', 'Pr(>Chisq)']
    """
    if not models:
        raise ValueError("anova needs at least one model")
    if any(hasattr(m, "groups") and hasattr(m, "vcomp") for m in models):
        return grouped_anova(*models, names=names, refit=refit, null=null)
    if null not in ("simulate", "mixture"):
        raise ValueError(f"null must be 'simulate' or 'mixture', got {null!r}")
    names = _model_names(models, names)
    cands = [_candidate(m, s) for m, s in zip(models, names)]
    _check_same_data(cands)
    notes: list[str] = []
    reml = _choose_criterion(cands, refit, notes)
    crit = "REML" if reml else "ML"

    order = sorted(range(len(cands)), key=lambda i: cands[i].npar)  # stable
    cands = [cands[i] for i in order]
    rows = []
    tests: dict = {}
    for pos, c in enumerate(cands):
        ll = c.llf(reml)
        k = c.npar
        row = {"Df": k, "AIC": -2 * ll + 2 * k, "BIC": -2 * ll + k * math.log(c.nobs),
               "logLik": ll, "deviance": -2 * ll, "Chisq": np.nan, "Chi Df": np.nan,
               "Pr(>Chisq)": np.nan}
        if pos > 0:
            prev = cands[pos - 1]
            test = _pair_test(prev, c, reml, null, nsim, seed)
            tests[(prev.name, c.name)] = test
            if test.valid:
                row["Chisq"] = test.statistic
                row["Chi Df"] = test.df
                row["Pr(>Chisq)"] = test.pvalue
            notes.append(f"{c.name} vs {prev.name}: "
                         + (test.method if test.valid else f"no p-value: {test.reason}"))
        rows.append(row)
    table = pd.DataFrame(rows, index=[c.name for c in cands])
    table["Df"] = table["Df"].astype(int)
    notes.insert(0, f"Log-likelihoods: {crit}"
                 + (" (same fixed effects in every model)" if reml else ""))
    return AnovaResults(table, tests, {c.name: c.description for c in cands}, notes, crit)


def _pair_test(small: _Candidate, big: _Candidate, reml: bool, null: str, nsim: int,
               seed: Any) -> TestResult:
    """Likelihood-ratio test of ``small`` (H0) within ``big``, or an InapplicableTest."""
    title = f"LR test: {small.name} within {big.name}"
    h0 = f"{small.name} ({small.description})"
    if big.npar == small.npar:
        return InapplicableTest.because(title, h0, "same number of parameters (not nested)")
    A = nesting_map(big.exog, small.exog)
    if A is None:
        return InapplicableTest.because(title, h0, "the fixed effects are not nested; "
                                        "compare AIC/BIC")
    d = big.k_fe - small.k_fe
    stat = max(2.0 * (big.llf(reml) - small.llf(reml)), 0.0)
    if not small.network and not big.network:
        p = float(stats.chi2.sf(stat, d))
        return TestResult(stat, p, f"chi-square({d})", h0, f"chi2_{d}", name=title, df=d)
    if small.network and big.network:
        if not _same_kernel(small.obj, big.obj):
            return InapplicableTest.because(title, h0, "different networks/kernels (not "
                                            "nested); compare AIC/BIC")
        p = float(stats.chi2.sf(stat, d))
        return TestResult(stat, p, f"chi-square({d}), same kernel, nested fixed effects",
                          h0, f"chi2_{d}", name=title, df=d)
    if small.network and not big.network:
        return InapplicableTest.because(title, h0, "the smaller model has a network and the "
                                        "larger does not (not nested); compare AIC/BIC")
    # boundary: no network (t = 0) within a network model
    res = big.obj
    if null == "mixture":
        p = mixture_sf(stat, d)
        dist = f"0.5 chi2_{d} + 0.5 chi2_{d + 1}"
        return TestResult(stat, p, f"boundary (t = 0): asymptotic mixture {dist}", h0, dist,
                          name=title, df=d + 1)
    draws = simulate_lr_null(res, nsim, seed, reml=reml,
                             nested_exog=None if d == 0 else small.exog, profile=big.profile)
    p, se = simulated_pvalue(stat, draws)
    return TestResult(stat, p, f"boundary (t = 0): simulated exact null ({nsim:,} draws)", h0,
                      f"finite-sample null of the {'RLRT' if reml else 'LRT'} (simulated)",
                      name=title, df=d + 1,
                      details={"Monte Carlo s.e. of p": se,
                               "mixture p-value": mixture_sf(stat, d)})


def compare_lr_test(res: Any, other: Any, *, null: str = "simulate", nsim: int = 10_000,
                    seed: Any = None, refit: bool | None = None) -> TestResult:
    """Likelihood-ratio test between two nested models (either order).

    The same rules as :func:`anova` for two models: the smaller model (fewer
    parameters) is the null; ML refits when the fixed effects differ; the
    boundary null for network vs no network.  Returns an
    :class:`InapplicableTest` for non-nested models.

    Parameters
    ----------
    res, other : MixedLMNTKResults or statsmodels OLS results
    null, nsim, seed, refit
        As in :func:`anova`.

    Returns
    -------
    TestResult
    """
    tab = anova(res, other, names=["self", "other"], null=null, nsim=nsim, seed=seed,
                refit=refit)
    return next(iter(tab.tests.values()))


def ols_null(res: FitResults) -> Any:
    """The no-network null of a fitted model: statsmodels OLS of ``y - f0`` on ``X``
    (WLS with the model's weights when it has precision weights).

    Same rows, column names and row labels as the network model, so that
    :func:`anova` accepts the pair.  Its ML log-likelihood equals the network
    model's profiled ML criterion at ``t = 0``.

    Parameters
    ----------
    res : MixedLMNTKResults

    Returns
    -------
    statsmodels.regression.linear_model.RegressionResultsWrapper
    """
    import statsmodels.api as sm

    m = res.model
    if m.k_fe == 0:
        raise ValueError("the model has no fixed effects, so its t = 0 null has no OLS form; "
                         "use res.lr_test() or res.score_test() for H0: t = 0")
    d = m.data
    idx = d.row_labels if d.row_labels is not None else pd.RangeIndex(m.nobs)
    y = pd.Series(m.endog - m.offset, index=idx, name=d.endog_name)
    X = pd.DataFrame(m.exog, index=idx, columns=m.exog_names)
    if m.weights is not None:
        return sm.WLS(y, X, weights=m.weights).fit()
    return sm.OLS(y, X).fit()


# ----------------------------------------------------------------------------- group effects
def _grouped_parts(obj: Any, name: str) -> dict:
    """What a comparison with group-effect models reads from one fit."""
    if hasattr(obj, "groups") and hasattr(obj, "vcomp"):
        m = obj.model
        comps = {f"({' + '.join(b.effect_names)} | {b.term.group_name})"
                 for b in obj.groups.blocks}
        if obj.has_network:
            comps.add("network: " + m.kernel_source.description)
        return dict(obj=obj, kind="groups", comps=comps, npar=obj.df_modelwc, reml=obj.reml,
                    exog=np.asarray(m.exog, float), y=np.asarray(m.endog - m.offset, float),
                    labels=m.data.row_labels, desc=(m.data.formula or "") + (
                        " + NTK" if obj.has_network else ""))
    if isinstance(obj, FitResults):
        m = obj.model
        if not (obj.time_choice.by_likelihood and not obj.free_modes):
            raise ValueError(f"{name!r}: compare likelihood fits (fit() or fit(reml=False)), "
                             "not t chosen by another rule or free modes")
        return dict(obj=obj, kind="network", comps={"network: " + m.kernel_source.description},
                    npar=obj.k_fe + 2, reml=obj.reml, exog=np.asarray(m.exog, float),
                    y=np.asarray(m.endog - m.offset, float), labels=m.data.row_labels,
                    desc=_describe_ntk(obj))
    model = getattr(obj, "model", None)
    if model is not None and type(model).__name__ == "OLS" and hasattr(obj, "llf"):
        return dict(obj=obj, kind="ols", comps=set(), npar=int(model.exog.shape[1]) + 1,
                    reml=False, exog=np.asarray(model.exog, float),
                    y=np.asarray(model.endog, float), labels=None,
                    desc=str(getattr(model, "formula", "OLS")) + " (no random effects)")
    raise TypeError(f"anova compares MixedLMNTK fits (with or without group effects) and "
                    f"statsmodels OLS results; got {type(obj).__name__} for {name!r}")


def _ols_reml_llf(part: dict) -> float:
    X, y = part["exog"], part["y"]
    n, p = X.shape
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    rss = float(np.sum((y - X @ beta) ** 2))
    logdet = np.linalg.slogdet(X.T @ X)[1] if p else 0.0
    return -0.5 * ((n - p) * (LOG_2PI + math.log(rss / (n - p))) + (n - p) + logdet)


def grouped_anova(*models: Any, names: Sequence[str] | None = None,
                  refit: bool | None = None, null: str = "mixture") -> AnovaResults:
    """:func:`anova` for models with group random effects (``(1 | g)`` terms), beside
    network-only fits and OLS.

    REML criteria are compared when all models share the fixed effects and were fit by
    REML (as lme4's ``anova(refit = FALSE)``); otherwise every model is refit by ML
    (with an :class:`MLRefitWarning`).  A pair whose random parts are nested (the
    larger adds group terms or the network) and whose fixed effects agree gets the
    boundary-aware null of Self and Liang (1987) and Stram and Lee (1994): the 50:50
    mixture ``0.5 chi2_{d-1} + 0.5 chi2_d``, d the number of added parameters (one
    variance on its boundary, the others free).  Same random parts and nested fixed
    effects (ML): chi-square(d).  Non-nested pairs: AIC/BIC only.  Simulated nulls
    are on the larger fit: ``res.lr_test(nsim=...)`` (t = 0 with the groups present) and
    ``res.lr_test_groups(nsim=...)`` (the group variances = 0 with the network present);
    with ``null="simulate"`` the table says so in its notes.
    """
    names = _model_names(models, names)
    parts = [_grouped_parts(m, nm) for m, nm in zip(models, names)]
    ref = parts[0]
    for nm, p in zip(names[1:], parts[1:]):
        if p["y"].shape != ref["y"].shape or not np.allclose(p["y"], ref["y"], rtol=0,
                                                              atol=1e-10 * max(1.0, float(
                                                                  np.abs(ref["y"]).max()))):
            raise ValueError(f"models were fit to different rows or responses ({names[0]!r} "
                             f"and {nm!r}); refit them on the same complete rows")
    x0 = ref["exog"]
    same_fe = all(p["exog"].shape == x0.shape and np.allclose(p["exog"], x0, rtol=1e-12,
                                                                atol=1e-12) for p in parts)
    all_reml = all(p["reml"] for p in parts if p["kind"] != "ols")
    notes: list[str] = []
    if null == "simulate":
        notes.append("with group effects the table uses the asymptotic boundary mixtures; "
                     "simulated nulls: res.lr_test(nsim=) for t = 0, res.lr_test_groups(nsim=) "
                     "for the group variances")
    use_reml = same_fe and all_reml and refit is not True
    if not use_reml and refit is False and any(p["reml"] for p in parts):
        raise ValueError("REML log-likelihoods of models with different fixed effects are not "
                         "comparable; use refit=None or True")
    llfs = []
    for nm, p in zip(names, parts):
        if p["kind"] == "ols":
            llfs.append(_ols_reml_llf(p) if use_reml else float(p["obj"].llf))
            continue
        if not use_reml and p["reml"]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BoundaryFitWarning)
                warnings.simplefilter("ignore", InterpolationWarning)
                p["obj"] = (p["obj"].model.fit(reml=False) if p["kind"] == "groups"
                            else p["obj"].model.fit(reml=False, t_method="ml"))
            notes.append(f"{nm} refit by ML")
        llfs.append(float(p["obj"].llf))
    if any("refit by ML" in s for s in notes):
        warn_at_caller("refitting model(s) with ML (instead of REML): " + ", ".join(
            s.split()[0] for s in notes), MLRefitWarning)
    order = sorted(range(len(parts)), key=lambda i: parts[i]["npar"])
    n = ref["y"].shape[0]
    rows, tests = [], {}
    for rank, i in enumerate(order):
        p, llf = parts[i], llfs[i]
        row = {"Df": p["npar"], "AIC": -2 * llf + 2 * p["npar"],
               "BIC": -2 * llf + math.log(n) * p["npar"], "logLik": llf, "deviance": -2 * llf,
               "Chisq": np.nan, "Chi Df": np.nan, "Pr(>Chisq)": np.nan}
        if rank:
            j = order[rank - 1]
            q = parts[j]
            stat = max(2 * (llf - llfs[j]), 0.0)
            d = p["npar"] - q["npar"]
            row["Chisq"], row["Chi Df"] = stat, d
            if q["comps"] < p["comps"] and same_fe and d >= 1:
                pv = 0.5 * stats.chi2.sf(stat, d) + (0.5 * stats.chi2.sf(stat, d - 1)
                                                     if d > 1 else 0.5 * float(stat <= 0))
                how = f"boundary mixture 0.5 chi2_{d - 1} + 0.5 chi2_{d}"
            elif q["comps"] == p["comps"] and not use_reml and d >= 1:
                pv, how = float(stats.chi2.sf(stat, d)), f"chi2_{d}"
            else:
                pv, how = np.nan, "not nested: compare AIC/BIC"
            row["Pr(>Chisq)"] = pv
            tests[(names[j], names[i])] = TestResult(
                statistic=stat, pvalue=float(pv), method=how,
                null=f"{names[j]} (the smaller model)", dist_name=how,
                name=f"LR test {names[j]} vs {names[i]}", df=float(d))
            notes.append(f"{names[j]} vs {names[i]}: {how}")
        rows.append(row)
    table = pd.DataFrame(rows, index=[names[i] for i in order])
    return AnovaResults(table, tests, {names[i]: parts[i]["desc"] for i in order}, notes,
                        "REML" if use_reml else "ML")
