"""Alternative rules for the training time t: GCV, Cp/SURE, leave-one-out and K-fold CV.

REML (``docs/model.md`` section 2) estimates t as a variance component.  The rules
here instead choose t to minimise an estimate of prediction error of the fitted
values, all from the model's one decomposition ``K = U diag(lam) U^T``.

The smoother (the hat matrix ``H_t = I - M_t`` of the fitted values, and what the
rules read from the decomposition) is :mod:`mixednn.smoother` (:class:`SmootherData`,
:func:`~mixednn.smoother.hat_matrix`); this module owns the rules, how t is chosen by
name, and the stopping diagnostic.

The rules (each minimised over t >= 0 by :meth:`SpectralProfile.minimize_criterion`)
----------------------------------------------------------------------------------
* ``"gcv"``: ``n ||M_t y||^2 / tr(M_t)^2`` (Craven & Wahba 1979).
* ``"cp"``: Mallows' Cp / Stein's unbiased risk estimate,
  ``||M_t y||^2 / n + 2 s2 tr(H_t) / n - s2``; ``s2`` is fixed across t (by default
  ``||M y||^2 / tr M`` at the GCV time; ``sigma2="reml"`` takes the REML estimate).
* ``"loo"``: exact leave-one-out, ``mean_i ((M_t y)_i / (M_t)_ii)^2``.  This is the
  error of predicting ``y_i`` from the other rows *under the model at this t*
  (beta re-estimated by GLS without row i, the network part the BLUP given the
  others), i.e. the Craven-Wahba leaving-out-one identity, verified in the tests
  against explicit refits.  It is not the same as retraining the network by
  gradient flow on n - 1 rows: that uses ``exp(-t K_{-i,-i})``, which is not a
  submatrix of ``exp(-tK)`` and has no closed form in the one decomposition.
* ``"kfold"``: K-fold CV with the same exact refits, fold residuals
  ``(M_t)_{FF}^{-1} (M_t y)_F``; O(n^3 / K) per t, so the default grid is coarser.

Diagnostic
----------
:func:`diagnose` flags fits where REML is not to be trusted blindly: rules that
disagree by more than a factor of 2.5 in t, or leading eigen-directions whose
standardised spectral losses ``w_i r~_i^2 / s2`` are far from their expectation 1
(the decorrelation of ``docs/model.md`` section 2.3 fails where it matters most).

References
----------
Craven & Wahba (1979). Smoothing noisy data with spline functions. Numer. Math. 31.
Mallows (1973). Some comments on Cp. Technometrics 15.
Stein (1981). Estimation of the mean of a multivariate normal distribution. Ann. Stat. 9.
Wahba (1990). Spline Models for Observational Data, ch. 4. SIAM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
from scipy import stats
from scipy.linalg.blas import dsyrk as _syrk

from .profile import TimeEstimate, check_complete_spectrum
from .smoother import SmootherData

__all__ = ["T_METHODS", "GCV", "Cp", "LeaveOneOut", "KFold", "make_criterion", "choose_time",
           "check_rule", "compare_rules", "diagnose", "StoppingDiagnostic", "leaves_residual_df",
           "residual_df_ok", "LIKELIHOOD_RULES"]

#: The rules accepted by ``fit(t_method=...)``.
T_METHODS = ("reml", "ml", "gcv", "cp", "loo", "kfold")
#: The rules that maximise a likelihood (the others minimise a prediction error).
LIKELIHOOD_RULES = ("reml", "ml")


# ------------------------------------------------------------------------ criteria

class _Criterion:
    name = ""
    points_per_decade = 12

    def __init__(self, data: SmootherData):
        self.data = data

    def value(self, t: float) -> float:
        raise NotImplementedError

    def values(self, ts: np.ndarray) -> np.ndarray:
        return np.array([self.value(float(t)) for t in np.asarray(ts, dtype=float)])

    def confirmed(self, ts: np.ndarray, vals: np.ndarray, tries: int = 12) -> np.ndarray:
        """Grid values whose minimum is re-evaluated by the accurate ``value``: the fast
        grid formulas lose their digits where the fit nearly interpolates (``e2`` and
        ``tr M`` become rounding noise, e.g. ``e2 = 0`` with ``tr M = 3``), and a spurious
        grid minimum there would win the search.  The smallest grid value is replaced by
        the accurate one until it is confirmed."""
        vals = np.array(vals, dtype=float)
        ts = np.asarray(ts, dtype=float)
        for _ in range(tries):
            finite = np.isfinite(vals)
            if not finite.any():
                break
            i = int(np.argmin(np.where(finite, vals, np.inf)))
            exact = self.value(float(ts[i]))
            if exact == vals[i] or (np.isfinite(exact) and abs(exact - vals[i])
                                    <= 1e-6 * max(abs(exact), 1e-300)):
                break
            vals[i] = exact
        return vals

    def __call__(self, t: float) -> float:
        return self.value(t)


class GCV(_Criterion):
    """Generalised cross-validation ``n ||M_t y||^2 / tr(M_t)^2`` (Craven & Wahba 1979).

    Undefined (``inf``) once fewer than one residual degree of freedom is left,
    ``tr M_t < 1``: the fit interpolates.

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> from mixednn.smoother import SmootherData
    >>> from mixednn.stopping import GCV
    >>> rng = np.random.default_rng(0); Z = rng.normal(size=(60, 2))
    >>> y = np.sin(Z[:, 0]) + 0.3 * rng.normal(size=60)
    >>> m = mn.MixedLMNTK(y, np.ones((60, 1)), Z, network=mn.MLP(depth=1))
    >>> GCV(SmootherData.from_model(m)).value(0.0) > 0
    True
    """

    name = "gcv"

    def value(self, t: float) -> float:
        pr = self.data.parts(t)
        if not pr["trM"] >= 1.0:
            return math.inf
        return self.data.nobs * pr["e2"] / pr["trM"] ** 2

    def values(self, ts: np.ndarray) -> np.ndarray:
        e2, trM = self.data.grid_parts(ts)
        with np.errstate(all="ignore"):
            vals = np.where(trM >= 1.0, self.data.nobs * e2 / trM ** 2, np.inf)
        return self.confirmed(ts, vals)


class Cp(_Criterion):
    """Mallows' Cp / SURE: ``||M_t y||^2 / n + 2 s2 tr(H_t) / n - s2`` with s2 fixed.

    Parameters
    ----------
    data : SmootherData
    sigma2 : float
        The noise variance, held fixed across t.
    """

    name = "cp"

    def __init__(self, data: SmootherData, sigma2: float):
        super().__init__(data)
        if not (np.isfinite(sigma2) and sigma2 > 0):
            raise ValueError(f"Cp needs a positive noise variance sigma2, got {sigma2!r}")
        self.sigma2 = float(sigma2)

    def value(self, t: float) -> float:
        pr = self.data.parts(t)
        n = self.data.nobs
        df = n - pr["trM"]
        return pr["e2"] / n + 2 * self.sigma2 * df / n - self.sigma2

    def values(self, ts: np.ndarray) -> np.ndarray:
        e2, trM = self.data.grid_parts(ts)
        n = self.data.nobs
        return self.confirmed(ts, e2 / n + 2 * self.sigma2 * (n - trM) / n - self.sigma2)


class LeaveOneOut(_Criterion):
    """Exact leave-one-out mean squared error ``mean_i ((M_t y)_i / (M_t)_ii)^2``.

    O(n m) per t from the eigenvectors (no refits).  See the module notes for what
    "leave one out" means here.
    """

    name = "loo"

    def residuals(self, t: float) -> np.ndarray:
        """The n leave-one-out prediction errors ``y_i - y_hat_{(-i)}`` at t."""
        diagM, e, _ = self.data.data_basis(t)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(diagM > 1e-12, e / diagM, np.inf)

    def value(self, t: float) -> float:
        res = self.residuals(t)
        return float(np.mean(res ** 2)) if np.all(np.isfinite(res)) else math.inf

    def values(self, ts: np.ndarray, chunk: int = 16) -> np.ndarray:
        """The criterion on many t: batched products ``U @ [w r~, W X~ L^{-T}]`` per chunk of t."""
        data = self.data
        ts = np.asarray(ts, dtype=float)
        if data.complement == "identity":
            return super().values(ts)
        prof = data.profile
        U = data.eigenvector_matrix()
        p = prof.p
        Xr, yr = prof.X_rot, prof.y_rot
        out = np.empty(ts.shape[0])
        for c0 in range(0, ts.shape[0], chunk):
            tc = ts[c0:c0 + chunk]
            W = np.exp(-np.outer(tc, prof.lam))
            W /= np.maximum(W.max(axis=1, keepdims=True), 1e-300)
            W[W < 1e-250] = 0.0
            try:
                if p:
                    XX = np.einsum("ti,ij,ik->tjk", W, Xr, Xr)
                    L = np.linalg.cholesky(XX)
                    beta = np.linalg.solve(XX, np.einsum("ti,ij,i->tj", W, Xr, yr)[:, :, None])[:, :, 0]
                    r = yr[None, :] - beta @ Xr.T
                    # G_t = W X~ L^{-T}, so that G G^T = W X~ (X~^T W X~)^{-1} X~^T W
                    Linv = np.linalg.inv(L)
                    G = np.einsum("ti,ij,tkj->tik", W, Xr, Linv)
                else:
                    r = np.broadcast_to(yr, W.shape)
                    G = np.empty((tc.shape[0], W.shape[1], 0))
            except np.linalg.LinAlgError:
                out[c0:c0 + chunk] = [self.value(float(t)) for t in tc]
                continue
            C = np.concatenate([(W * r)[:, :, None], G], axis=2)  # t x m x (p+1)
            D = U @ C.transpose(1, 0, 2).reshape(U.shape[1], -1)
            D = D.reshape(U.shape[0], tc.shape[0], p + 1)
            dE = data.squared_eigenvectors() @ W.T  # n x t
            diagM = dE - np.einsum("ntk,ntk->nt", D[:, :, 1:], D[:, :, 1:])
            with np.errstate(all="ignore"):
                res = np.where(diagM > 1e-12, D[:, :, 0] / diagM, np.inf)
                vals = np.mean(res ** 2, axis=0)
            out[c0:c0 + chunk] = np.where(np.all(np.isfinite(res), axis=0), vals, np.inf)
        return out


class KFold(_Criterion):
    """K-fold cross-validation with exact refits at each t: fold residuals ``M_FF^{-1} (M y)_F``.

    Parameters
    ----------
    data : SmootherData
    folds : int or sequence of int arrays
        Number of folds (random, balanced, from ``seed``) or explicit row-index folds.
    seed : int
        Seed of the random fold assignment.
    """

    name = "kfold"
    points_per_decade = 4
    #: each t costs O(n^3 / k): the search locates the minimum first (with ``locator``),
    #: then searches at full density near it
    coarse_to_fine = True

    def __init__(self, data: SmootherData, folds: Any = 10, seed: int = 0):
        super().__init__(data)
        n = data.nobs
        if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
            k = int(folds)
            if not 2 <= k <= n:
                raise ValueError(f"folds must be between 2 and n = {n}, got {k}")
            perm = np.random.default_rng(seed).permutation(n)
            self.folds = [np.sort(perm[i::k]) for i in range(k)]
        else:
            fl = [np.asarray(f, dtype=int).ravel() for f in folds]
            allidx = np.concatenate(fl) if fl else np.empty(0, int)
            if len(fl) < 2 or np.unique(allidx).size != allidx.size or allidx.size != n \
                    or allidx.min() < 0 or allidx.max() >= n:
                raise ValueError("explicit folds must be at least two disjoint index arrays "
                                 f"covering every row 0..{n - 1} exactly once")
            self.folds = fl
        #: leave-one-out on the same data (O(n^2) per t) locates the window of the K-fold
        #: search: both estimate the same prediction error, K-fold with smaller training sets
        self.locator = LeaveOneOut(data)

    def residuals(self, t: float) -> np.ndarray:
        """Held-out prediction errors of every row (from its fold's refit) at t."""
        data = self.data
        pr = data.parts(t, normalize=True)
        if pr["r"] is None:
            return np.full(data.nobs, np.inf)
        U = data.eigenvector_matrix()
        _, e, EXR = data.data_basis(t, pr)
        # M_FF = (U_F W^{1/2})(U_F W^{1/2})^T - ...: a rank-k update (syrk, half the flops of
        # a general product), over the modes whose weight is not exactly zero
        sw = np.sqrt(pr["w"])
        keep = np.flatnonzero(sw)
        every = keep.size == sw.size
        swk = sw if every else sw[keep]
        out = np.empty(data.nobs)
        for F in self.folds:
            A = U[F] if every else U[np.ix_(F, keep)]  # a copy: the fold's rows, kept modes
            A *= swk
            # A.T is Fortran-ordered: syrk reads it in place; only the lower triangle is
            # formed, and only the lower triangle is read by the Cholesky factorisation
            MFF = _syrk(1.0, A.T, trans=1, lower=1) if keep.size else np.zeros((F.size,) * 2)
            MFF -= EXR[F] @ EXR[F].T
            if data.complement == "identity":
                UF = U[F]
                MFF += np.eye(F.size) - UF @ UF.T
            try:
                c = scipy.linalg.cho_factor(MFF, lower=True, check_finite=False)
                out[F] = scipy.linalg.cho_solve(c, e[F], check_finite=False)
            except (np.linalg.LinAlgError, ValueError):
                out[F] = np.inf
        return out

    def value(self, t: float) -> float:
        res = self.residuals(t)
        return float(np.mean(res ** 2)) if np.all(np.isfinite(res)) else math.inf


def make_criterion(data: SmootherData, name: str, *, sigma2: Any = "gcv", folds: Any = 10,
                   seed: int = 0, reml: bool = True) -> _Criterion:
    """Build the criterion object of a rule.

    Parameters
    ----------
    data : SmootherData
    name : {"gcv", "cp", "loo", "kfold"}
    sigma2 : {"gcv", "reml"} or float
        Cp only: the fixed noise variance.  ``"gcv"``: ``||M y||^2 / tr M`` at the GCV
        time (Wahba 1990, eq. 4.3.2); ``"reml"``: the REML (or ML) estimate at its t.
    folds, seed
        K-fold only (see :class:`KFold`).
    reml : bool
        Which likelihood ``sigma2="reml"`` refers to.
    """
    if name == "gcv":
        return GCV(data)
    if name == "loo":
        return LeaveOneOut(data)
    if name == "kfold":
        return KFold(data, folds=folds, seed=seed)
    if name == "cp":
        if isinstance(sigma2, str):
            if sigma2 == "gcv":
                est = data.profile.minimize_criterion(GCV(data), reml)
                pr = data.parts(est.t)
                s2 = pr["e2"] / pr["trM"]
            elif sigma2 == "reml":
                est = data.profile.maximize(reml)
                s2 = data.profile.point(est.t, reml).scale
            else:
                raise ValueError(f"sigma2 must be 'gcv', 'reml' or a positive number, got {sigma2!r}")
        else:
            s2 = float(sigma2)
        return Cp(data, s2)
    raise ValueError(f"unknown criterion {name!r}; use one of {T_METHODS}")


# ------------------------------------------------------------------------ choosing t

def check_rule(t_method: Any) -> str:
    """The rule name, lower-cased, or a ValueError listing the valid ones."""
    if not isinstance(t_method, str) or t_method.lower() not in T_METHODS:
        valid = ", ".join(repr(m) for m in ("auto",) + T_METHODS)
        raise ValueError(f"t_method must be one of {valid}; got {t_method!r}")
    return t_method.lower()


def choose_time(data: SmootherData, t_method: str = "reml", reml: bool = True,
                **options: Any) -> TimeEstimate:
    """Estimate t by the named rule.

    Parameters
    ----------
    data : SmootherData
        From :meth:`SmootherData.from_model` (or the free-modes reduction).
    t_method : {"reml", "ml", "gcv", "cp", "loo", "kfold"}
    reml : bool
        For a prediction-error rule: which likelihood to report at the chosen t.
    **options
        ``sigma2`` (Cp), ``folds`` and ``seed`` (K-fold), ``points_per_decade``.

    Returns
    -------
    TimeEstimate
        With ``criterion`` set to ``t_method``.
    """
    t_method = check_rule(t_method)
    ppd = options.pop("points_per_decade", None)
    bad = set(options) - {"sigma2", "folds", "seed"}
    if bad:
        raise TypeError(f"unknown option(s) for the t rules: {sorted(bad)}; "
                        "valid: sigma2 (cp), folds and seed (kfold), points_per_decade")
    if t_method in LIKELIHOOD_RULES:
        return data.profile.maximize(t_method == "reml", **({"points_per_decade": ppd} if ppd else {}))
    check_complete_spectrum(data.profile, f"t_method={t_method!r}")
    crit = make_criterion(data, t_method, reml=reml, **options)
    return data.profile.minimize_criterion(crit, reml, points_per_decade=ppd)


def leaves_residual_df(data: SmootherData, est: TimeEstimate) -> bool:
    """False when the fit at ``est.t`` leaves fewer than ``max(2, n/100)`` residual
    degrees of freedom ``tr(I - H_t)`` (near interpolation)."""
    return residual_df_ok(data, data.parts(est.t)["trM"])


def residual_df_ok(data: SmootherData, trM: float) -> bool:
    """False when ``tr M_t = trM`` leaves fewer than ``max(2, n/100)`` residual df, or
    when it cannot be computed (NaN: the fixed effects are not identified at that t)."""
    return bool(np.isfinite(trM) and trM >= max(2.0, 0.01 * data.nobs))


# ------------------------------------------------------------------------ comparing rules

def compare_rules(model: Any, rules: tuple[str, ...] = ("reml", "ml", "gcv", "cp", "loo"),
                  reml: bool = True, **options: Any) -> pd.DataFrame:
    """t chosen by each rule, with the fit's effective df and the REML log-likelihood there.

    Returns
    -------
    pandas.DataFrame
        Index: rule; columns ``t``, ``t_over_reml``, ``df`` (``tr H_t``), ``llf_reml``,
        ``boundary``, ``at_upper``.
    """
    data = SmootherData.from_model(model)
    rows = {}
    t_reml = None
    for r in rules:
        opt = {k: v for k, v in options.items()
               if (k == "sigma2" and r == "cp") or (k in ("folds", "seed") and r == "kfold")}
        est = choose_time(data, r, reml, **opt)
        if r == "reml":
            t_reml = est.t
        rows[r] = {"t": est.t, "df": data.trace_hat(est.t),
                   "llf_reml": model.profile.loglike(est.t, True),
                   "boundary": est.boundary, "at_upper": est.at_upper}
    out = pd.DataFrame.from_dict(rows, orient="index")
    if t_reml is None:
        t_reml = model.profile.maximize(True).t
    out.insert(1, "t_over_reml", out["t"] / t_reml if t_reml > 0 else np.nan)
    return out


# ------------------------------------------------------------------------ diagnostic

@dataclass
class StoppingDiagnostic:
    """Does the REML time deserve trust on these data?

    Attributes
    ----------
    t_reml, t_gcv : float
        REML and GCV times of the plain kernel.
    ratio : float
        ``max / min`` of the two (``inf`` if exactly one is 0).
    gcv_excess : float
        ``GCV(t_reml) / GCV(t_gcv) - 1``: GCV's estimate of the prediction error that
        REML's time costs (0 when they agree).
    leading_modes : int
        Number of leading eigen-directions checked.
    leading_energy : float
        Mean standardised spectral loss ``w_i r~_i^2 / s2`` over them (1 expected).
    leading_pvalue : float
        Two-sided chi-square p-value of their sum.
    disagree, decorrelation_fails : bool
    """

    t_reml: float
    t_gcv: float
    ratio: float
    gcv_excess: float
    leading_modes: int
    leading_energy: float
    leading_pvalue: float
    disagree: bool
    decorrelation_fails: bool
    t_chosen: float | None = None

    @property
    def flagged(self) -> bool:
        return self.disagree or self.decorrelation_fails

    @property
    def message(self) -> str | None:
        """One line for the summary, or ``None`` when nothing is flagged."""
        if not self.flagged:
            return None
        parts = []
        if self.disagree:
            parts.append(f"REML and GCV disagree on t by a factor {self.ratio:.3g} "
                         f"(REML {self.t_reml:.3g}, GCV {self.t_gcv:.3g}; GCV error "
                         f"{100 * self.gcv_excess:.0f}% higher at REML's t)")
        if self.decorrelation_fails:
            parts.append(f"the {self.leading_modes} leading NTK directions do not follow "
                         f"Var = s2 exp(t lam) (mean standardised loss {self.leading_energy:.3g}, "
                         f"p = {self.leading_pvalue:.2g})")
        return ("Stopping diagnostic: " + "; ".join(parts)
                + ". Compare fit(t_method='gcv' or 'loo') and fit(free_modes='auto').")


def diagnose(model: Any, t: float | None = None, reml: bool = True, *,
             factor: float = 2.5, min_excess: float = 0.05, leading: int | None = None,
             alpha: float = 1e-3) -> StoppingDiagnostic:
    """Check the REML time: agreement with GCV, and decorrelation in the leading modes.

    Parameters
    ----------
    model : MixedLMNTK or SmootherData
        The model, or the rotated smoother data of its (possibly restricted) spectrum.
    t : float, optional
        The time to check the leading modes at (default: the REML time).
    reml : bool
        REML (default) or ML for the spectral check's s2.
    factor, min_excess : float
        Rules disagree when ``max(t) / min(t) > factor`` and the disagreement matters:
        GCV at REML's t exceeds its minimum by more than ``min_excess`` (relative).
        The defaults separated, on the settings of ``benchmarks/bench_stopping.py``,
        the simulations where REML's held-out error is more than 5% above the oracle's
        from those where it is within 5% (they were chosen there; see docs/stopping.md).
    leading : int, optional
        Number of leading directions checked; default ``max(5, min(20, n // 50))``.
    alpha : float
        Level of the two-sided chi-square check of the leading standardised losses.

    Returns
    -------
    StoppingDiagnostic

    Notes
    -----
    Under the model the rotated REML residuals satisfy ``E[w_i r~_i^2] ~ s2`` (the
    leverage of the few fixed effects aside), so over the ``L`` leading directions
    ``sum_i w_i r~_i^2 / s2`` is roughly chi-square with L degrees of freedom.  Real
    signals that do not grow like ``exp(t lam)`` along the leading directions make it
    far too small (the likelihood holds t down to avoid the implied variance there),
    which is when free leading modes (:mod:`mixednn.freemodes`) help.
    """
    data = model if isinstance(model, SmootherData) else SmootherData.rotated(model)
    prof = data.profile
    check_complete_spectrum(prof, "the stopping diagnostic")
    t_r = prof.maximize(True).t
    gcv = GCV(data)
    t_g = prof.minimize_criterion(gcv, reml).t
    lo, hi = sorted([t_r, t_g])
    ratio = math.inf if lo == 0 and hi > 0 else (1.0 if hi == 0 else hi / lo)
    g_min = gcv.value(t_g)
    excess = gcv.value(t_r) / g_min - 1 if g_min > 0 and np.isfinite(g_min) else math.nan
    t_chk = t_r if t is None else float(t)
    pt = prof.point(t_chk, reml)
    n_dir = prof.lam.shape[0]
    L = leading if leading is not None else max(5, min(20, model.nobs // 50))
    L = int(min(L, n_dir))
    idx = np.argsort(prof.lam)[::-1][:L]
    r = prof.y_rot - prof.X_rot @ pt.beta if prof.p else prof.y_rot
    w = np.exp(-t_chk * prof.lam)
    energy = w[idx] * r[idx] ** 2 / pt.scale
    s = float(np.sum(energy))
    p = float(min(1.0, 2 * min(stats.chi2.cdf(s, L), stats.chi2.sf(s, L))))
    return StoppingDiagnostic(t_reml=t_r, t_gcv=t_g, ratio=ratio, gcv_excess=excess,
                              leading_modes=L, leading_energy=s / L, leading_pvalue=p,
                              disagree=bool(ratio > factor and excess > min_excess),
                              decorrelation_fails=p < alpha, t_chosen=t)
