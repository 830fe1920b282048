"""Free leading modes: the k leading NTK eigen-directions as unpenalised fixed effects.

An extension beyond the paper (``docs/model.md``), motivated by real data on which the
REML time is far too short (``docs/stopping.md``).

The model
---------
Under ``V(t) = s2 exp(tK)`` the prior variance along the eigen-direction ``u_j`` grows
like ``exp(t lam_j)``.  Real signals along the few leading directions are large but
do not grow with ``lam_j`` at that rate, so the likelihood holds t down; yet those
directions are learned almost at once and barely affect the predictions.  With
``k`` free modes the model is

    y = X beta + U_k gamma + u + e,    Var(u + e) = s2 exp(tK),

``gamma`` unpenalised.  In the rotated basis this only augments ``X~`` with the unit
vectors of the k leading rows, so those rows are fitted exactly and

* REML integrates ``gamma`` out: the k rows drop from the likelihood, and the
  ``-t lam_j`` of ``log det(X_aug^T W X_aug)`` cancels their ``t lam_j`` in
  ``log det V``.  REML is REML on the remaining spectrum (n - k rows, ``tr K`` minus
  the k leading eigenvalues, ``n - k - p`` residual degrees of freedom); the same
  holds whatever variance the free rows are given.
* ML keeps the free rows' ``log(s2 exp(t lam_j))`` with zero residual.

Gradient-flow interpretation: along the free directions the network is trained to
convergence, ``t_j = inf`` (filter ``1 - exp(-t_j lam_j) = 1``), while the others stop
at the common t.  Predictions extend the free directions to new points through the
cross-kernel, with the j-th eigenfunction ``psi_j(z*) = k*^T u_j / lam_j`` (the
Nystrom extension, equal to ``u_j`` on the training rows); this is
``docs/model.md`` eq. (3) with ``phi(lam_j) = 1 / lam_j`` on the free modes.

Choosing k
----------
The rule is chosen by what it does to predictions, measured
(``benchmarks/bench_stopping.py``).  Likelihood-based information criteria
across k fail here, for structural reasons: REML likelihoods with different fixed
effects are not comparable; the ML of the augmented model keeps the free rows'
variance ``s2 exp(t lam_j)`` with zero residual, which drives the ML time to 0 as
soon as a few modes are free; and an ML that gives the free rows noise variance
only gains ``t lam_j / 2`` per freed mode whatever the data, so its AIC falls
without end.  Both are available (``k_rule="aic"`` / ``"bic"``, augmented
model) for comparison.  The default ``k_rule="gcv"`` minimises GCV of the
fitted values over k, each at its REML time on the remaining spectrum: a
prediction-error estimate (the variance-free form of the conditional AIC of
Vaida & Blanchard 2005) from the same decomposition.  ``"loo"`` uses the exact
leave-one-out error.

References
----------
Vaida & Blanchard (2005). Conditional Akaike information for mixed-effects models.
Biometrika 92.
Williams & Seeger (2001). Using the Nystrom method to speed up kernel machines. NeurIPS.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from .results import MixedLMNTKResults, _phi, interval_frame
from .spectral import EigenBasis, SpectralProfile
from .stopping import LeaveOneOut, SmootherData, _warn, _warn_near_interpolation, choose_time

if TYPE_CHECKING:  # pragma: no cover
    from .model import MixedLMNTK

__all__ = ["FreeModes", "free_mode_split", "select_free_modes", "fit_free_modes",
           "FreeModesResults", "K_RULES"]

#: Rules for ``free_modes="auto"``.
K_RULES = ("gcv", "loo", "aic", "bic")


@dataclass
class FreeModes:
    """The split of the spectrum into k free leading modes and the rest.

    Attributes
    ----------
    k : int
    free, rest : ndarray of int
        Indices (into the model's ascending eigenvalues) of the free and the other modes.
    profile : SpectralProfile
        REML/ML-on-the-rest profile (the rows of the free modes dropped): its REML is
        the REML of the augmented model.
    profile_ml : SpectralProfile
        The augmented model's ML profile (free rows with zero residual, their
        eigenvalues kept in ``V``).
    """

    k: int
    free: np.ndarray
    rest: np.ndarray
    profile: SpectralProfile
    profile_ml: SpectralProfile


def _n_positive(lam: np.ndarray) -> int:
    top = float(lam.max()) if lam.size else 0.0
    return int(np.sum(lam > top * max(lam.size, 1) * np.finfo(float).eps)) if top > 0 else 0


def free_mode_split(model: "MixedLMNTK", k: int) -> FreeModes:
    """Make the ``k`` leading eigen-directions of the model's kernel free.

    Parameters
    ----------
    model : MixedLMNTK
    k : int
        0 <= k; at most the number of positive eigenvalues minus one, and at most
        ``n - p - 2`` (REML needs residual degrees of freedom).

    Returns
    -------
    FreeModes
    """
    prof = model.profile
    lam = prof.lam
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"free_modes must be a non-negative integer or 'auto', got {k!r}")
    k = int(k)
    kmax = max_free_modes(model)
    if k > kmax:
        raise ValueError(
            f"free_modes={k} is too many: at most {kmax} (positive eigenvalues minus one, and "
            f"n - p - 2 = {model.nobs - prof.p - 2}) so that REML keeps a spectrum to fit t on")
    order = np.argsort(lam, kind="stable")
    free = np.sort(order[lam.size - k:]) if k else np.empty(0, dtype=int)
    mask = np.ones(lam.size, dtype=bool)
    mask[free] = False
    rest = np.flatnonzero(mask)
    tr_free = float(lam[free].sum())
    reduced = SpectralProfile(lam[rest], prof.y_rot[rest], prof.X_rot[rest],
                              prof.trace - tr_free, model.nobs - k, rest_gram=prof.rest_gram)
    y0 = prof.y_rot.copy()
    X0 = prof.X_rot.copy()
    y0[free] = 0.0
    X0[free] = 0.0
    aug_ml = SpectralProfile(lam, y0, X0, prof.trace, model.nobs, rest_gram=prof.rest_gram)
    return FreeModes(k, free, rest, reduced, aug_ml)


def max_free_modes(model: "MixedLMNTK") -> int:
    """Largest admissible number of free modes for this model."""
    prof = model.profile
    return max(0, min(_n_positive(prof.lam) - 1, model.nobs - prof.p - 2))


def _default_candidates(model: "MixedLMNTK") -> np.ndarray:
    kmax = min(max_free_modes(model), model.nobs // 2)
    if kmax <= 0:
        return np.array([0])
    grid = np.unique(np.round(np.geomspace(1, kmax, 24)).astype(int))
    return np.concatenate([[0], grid])


_U_CACHE: "weakref.WeakKeyDictionary[Any, np.ndarray]" = weakref.WeakKeyDictionary()


def _eigenvectors(model: "MixedLMNTK") -> np.ndarray:
    """Dense U of the model's basis, built once (a tridiagonal basis forms it on demand)."""
    basis = model.basis
    U = _U_CACHE.get(basis)
    if U is None:
        U = np.asarray(basis.eigenvectors)
        _U_CACHE[basis] = U
    return U


def _smoother(model: "MixedLMNTK", fm: FreeModes) -> SmootherData:
    comp = "identity" if fm.profile.rest_gram is not None else ("absorbed" if fm.k else "none")
    if comp == "identity" and fm.k:
        raise NotImplementedError("free modes with a low-rank kernel basis are not supported")
    return SmootherData(fm.profile, model.nobs, comp,
                        lambda: _eigenvectors(model)[:, fm.rest],
                        model.endog - model.offset, model.exog)


def select_free_modes(model: "MixedLMNTK", candidates: Sequence[int] | None = None,
                      k_rule: str = "gcv") -> tuple[int, pd.DataFrame]:
    """Choose the number of free leading modes.

    For each candidate k: t by REML on the remaining spectrum, and at that t
    the GCV and (with ``k_rule="loo"``) the exact leave-one-out error of the fitted
    values; also the augmented model's ML fit with its AIC and BIC (``p + k + 2``
    parameters).

    Parameters
    ----------
    model : MixedLMNTK
    candidates : sequence of int, optional
        Values of k to compare (default: 0 and about 24 values geometrically spaced up
        to ``min(n/2, max_free_modes)``).
    k_rule : {"gcv", "loo", "aic", "bic"}
        Which column is minimised.  See the module notes on why the likelihood-based
        criteria are not the default.

    Returns
    -------
    k : int
        The chosen number of free modes.
    table : pandas.DataFrame
        One row per candidate: ``t``, ``llf`` (REML on the rest), ``df`` (trace of
        the hat matrix, free modes included), ``gcv``, ``loo`` (NaN unless computed),
        ``t_ml``, ``llf_ml``, ``aic_ml``, ``bic_ml``.

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> from mixednn.freemodes import select_free_modes
    >>> rng = np.random.default_rng(0); Z = rng.normal(size=(80, 2))
    >>> y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=80)
    >>> m = mn.MixedLMNTK(y, np.ones((80, 1)), Z, network=mn.MLP(depth=2))
    >>> k, table = select_free_modes(m, candidates=[0, 1, 2, 5])
    >>> k in (0, 1, 2, 5)
    True
    """
    if k_rule not in K_RULES:
        raise ValueError(f"k_rule must be one of {K_RULES}, got {k_rule!r}")
    cands = _default_candidates(model) if candidates is None else \
        np.unique(np.asarray(list(candidates), dtype=int))
    if cands.size == 0:
        raise ValueError("no candidate numbers of free modes")
    n = model.nobs
    p = model.k_fe
    rows = []
    for k in cands:
        fm = free_mode_split(model, int(k))
        est = fm.profile.maximize(True)
        data = _smoother(model, fm)
        pr = data.parts(est.t)
        trM = pr["trM"]
        gcv = n * pr["e2"] / trM ** 2 if trM >= 1 else math.inf
        loo = LeaveOneOut(data).value(est.t) if k_rule == "loo" else math.nan
        em = fm.profile_ml.maximize(False)
        npar = p + int(k) + 2
        rows.append({"k": int(k), "t": est.t, "llf": est.llf, "df": n - trM, "gcv": gcv,
                     "loo": loo, "t_ml": em.t, "llf_ml": em.llf,
                     "aic_ml": -2 * em.llf + 2 * npar, "bic_ml": -2 * em.llf + math.log(n) * npar})
    table = pd.DataFrame(rows).set_index("k")
    col = {"gcv": "gcv", "loo": "loo", "aic": "aic_ml", "bic": "bic_ml"}[k_rule]
    vals = table[col].to_numpy(dtype=float)
    if not np.any(np.isfinite(vals)):
        return 0, table
    return int(table.index[int(np.nanargmin(np.where(np.isfinite(vals), vals, np.nan)))]), table


# --------------------------------------------------------------------------- fitting

class _FreeModesView:
    """The fitted model as the results see it: the rest of the spectrum as ``profile``
    and ``basis``; every other attribute is the original model's."""

    def __init__(self, model: "MixedLMNTK", fm: FreeModes):
        self.base_model = model
        self.free_modes = fm
        self.profile = fm.profile
        U = _eigenvectors(model)
        self._U_full = U
        self.basis = EigenBasis(fm.profile.lam, U[:, fm.rest], fm.profile.trace)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base_model, name)

    def __repr__(self) -> str:
        return f"<free-modes view (k={self.free_modes.k}) of {self.base_model!r}>"


def fit_free_modes(model: "MixedLMNTK", reml: bool = True, t_method: str = "reml",
                   free_modes: Any = "auto", t_options: dict | None = None,
                   stacklevel: int = 2) -> "FreeModesResults":
    """Fit with free leading modes; what ``MixedLMNTK.fit(free_modes=...)`` calls.

    Parameters
    ----------
    model : MixedLMNTK
    reml : bool
    t_method : str
        Rule for t on the remaining spectrum (see :func:`mixednn.stopping.choose_time`).
    free_modes : int or "auto"
    t_options : dict, optional
        Options of the t rule, plus ``k_rule`` and ``k_candidates`` for ``"auto"``.

    Returns
    -------
    FreeModesResults
    """
    opts = dict(t_options or {})
    k_rule = opts.pop("k_rule", "gcv")
    cands = opts.pop("k_candidates", None)
    if model.profile.rest_gram is not None:
        raise NotImplementedError("free modes need a full eigendecomposition of K; this model "
                                  "has a low-rank basis")
    if not reml or t_method == "ml":
        raise NotImplementedError(
            "free modes are fitted by REML on the remaining spectrum: the ML of the augmented "
            "model keeps the free rows' variance s2 exp(t lam_j) with zero residual, which drives "
            "the ML time to 0 (see mixednn.freemodes); use reml=True with t_method='reml', "
            "'gcv', 'cp', 'loo' or 'kfold'")
    table = None
    if isinstance(free_modes, str):
        if free_modes != "auto":
            raise ValueError(f"free_modes must be a non-negative integer or 'auto', got {free_modes!r}")
        k, table = select_free_modes(model, cands, k_rule=k_rule)
    else:
        k = free_modes
    fm = free_mode_split(model, k)
    data = _smoother(model, fm)
    est = choose_time(data, t_method, True, **opts)
    _warn(est, stacklevel + 1)
    _warn_near_interpolation(data, est, stacklevel + 1)
    view = _FreeModesView(model, fm)
    res = FreeModesResults(view, est, reml)
    res.t_method = t_method
    res.free_modes_table = table
    res.k_rule = k_rule if table is not None else None
    plain_t = model.profile.maximize(True).t
    res._t_reml = plain_t
    return res


class FreeModesResults(MixedLMNTKResults):
    """Results of a fit with ``k`` free leading modes (see :mod:`mixednn.freemodes`).

    As :class:`MixedLMNTKResults`; ``model`` is a view whose ``profile`` and ``basis``
    are the remaining spectrum (``model.base_model`` is the model that was fit).
    Extra attributes: ``free_modes`` (k), ``free_coef`` (gamma: the fitted signal
    along each free direction, leading first), ``free_modes_table`` (the comparison
    across k when ``free_modes="auto"``), ``k_rule``.
    """

    def __init__(self, model: _FreeModesView, estimate, reml: bool):
        super().__init__(model, estimate, reml)
        fm = model.free_modes
        self.free_modes = fm.k
        self.df_resid = self.nobs - self.k_fe - fm.k
        self.free_modes_table = None
        self.k_rule = None

    @cached_property
    def free_coef(self) -> np.ndarray:
        """gamma: ``y~_j - x~_j^T beta`` along the free directions (descending eigenvalue)."""
        fm = self.model.free_modes
        base = self.model.base_model.profile
        g = base.y_rot[fm.free] - base.X_rot[fm.free] @ self.params.to_numpy() if self.k_fe \
            else base.y_rot[fm.free].copy()
        order = np.argsort(base.lam[fm.free])[::-1]
        return g[order]

    def _gamma(self) -> np.ndarray:
        fm = self.model.free_modes
        base = self.model.base_model.profile
        beta = self.params.to_numpy()
        return base.y_rot[fm.free] - (base.X_rot[fm.free] @ beta if beta.size else 0.0)

    @cached_property
    def edf(self) -> float:
        """Effective df of the network: ``k + sum_rest (1 - exp(-t lam_i))``."""
        return float(self.free_modes + np.sum(-np.expm1(-self.t * self.model.profile.lam)))

    @property
    def df_modelwc(self) -> int:
        """Estimated parameters: fixed effects, free-mode coefficients, s2 and t."""
        return self.k_fe + self.free_modes + 2

    @property
    def reference_lr(self) -> float:
        return self.nobs / float(self.model.base_model.profile.lam.max())

    @cached_property
    def signal_share(self) -> float:
        """``tr(G) / tr(V)`` on the remaining spectrum (the free modes have no prior)."""
        x = self.t * self.model.profile.lam
        mx = x.max()
        return float(np.sum(np.exp(x - mx) - math.exp(-mx)) / np.sum(np.exp(x - mx)))

    @cached_property
    def random_effects(self) -> pd.Series:
        """Network part: the rest trained for time t plus the free modes trained to
        convergence, ``U_rest (1 - w) r~_rest + U_free gamma``."""
        view = self.model
        U = view._U_full
        fm = view.free_modes
        u = view.basis.unrotate((1 - self.weights) * self._resid_rot)
        if fm.k:
            u = u + U[:, fm.free] @ self._gamma()
        return pd.Series(u, index=view.data.row_labels, name="random_effects")

    def predict(self, newdata: pd.DataFrame | None = None, *, exog: Any = None,
                ntk_inputs: Any = None, kernel: Any = None, offset: Any = None,
                interval: str | None = None, alpha: float = 0.05) -> pd.Series | pd.DataFrame:
        """Predictions with the free modes extended through the cross-kernel.

        As :meth:`MixedLMNTKResults.predict`.  The free directions contribute
        ``sum_j gamma_j k*^T u_j / lam_j``; in intervals their coefficients carry the
        noise variance s2 each (a flat prior leaves only the noise) and share the
        uncertainty of beta.
        """
        if interval not in (None, "confidence", "prediction"):
            raise ValueError(f"interval must be None, 'confidence' or 'prediction', got {interval!r}")
        view = self.model
        fm = view.free_modes
        base = view.base_model.profile
        U = view._U_full
        lam_all = base.lam
        beta = self.params.to_numpy()
        in_sample = newdata is None and exog is None and ntk_inputs is None and kernel is None
        if in_sample:
            index = view.data.row_labels
            Xn = view.exog
            kt = lam_all[:, None] * U.T  # U^T k_i for training row i
            off = view.offset
        else:
            Xn, Kx, off, index = self._new_design(newdata, exog, ntk_inputs, kernel, offset)
            kt = U.T @ Kx.T
        kt_rest = kt[fm.rest]
        psi = kt[fm.free] / lam_all[fm.free][:, None]
        lam = view.profile.lam
        phi = _phi(self.t, lam)
        mean = off + (Xn @ beta if beta.size else 0.0) + kt_rest.T @ (phi * self._resid_rot)
        if fm.k:
            mean = mean + psi.T @ self._gamma()
        if in_sample:
            mean = self.fittedvalues.to_numpy() if interval is None else mean
        if interval is None:
            return pd.Series(mean, index=index, name="predicted")
        tol = lam_all.max() * max(lam_all.size, 1) * np.finfo(float).eps
        g = np.zeros_like(lam)
        nz = lam > tol
        g[nz] = -np.expm1(-self.t * lam[nz]) / lam[nz] ** 2
        var = self.scale * (g @ kt_rest ** 2 + np.sum(psi ** 2, axis=0))
        if beta.size:
            L = Xn - kt_rest.T @ (phi[:, None] * view.profile.X_rot)
            if fm.k:
                L = L - psi.T @ base.X_rot[fm.free]
            var = var + np.einsum("ij,jk,ik->i", L, self.cov_params_fe.to_numpy(), L)
        return interval_frame(mean, var, self.scale if interval == "prediction" else 0.0,
                              alpha, index)

    def __repr__(self) -> str:
        return (f"<FreeModesResults {self.method}: k={self.free_modes}, t={self.t:.4g}, "
                f"scale={self.scale:.4g}, llf={self.llf:.4f}, nobs={self.nobs}>")
