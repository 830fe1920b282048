"""Free leading modes: the k leading NTK eigen-directions as unpenalised fixed effects.

An extension beyond the method paper (``docs/model.md`` section 6.3), motivated by real data on which the
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
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .profile import SpectralProfile, check_complete_spectrum
from .smoother import SmootherData
from .stopping import LeaveOneOut

__all__ = ["FreeModes", "free_mode_split", "max_free_modes", "free_mode_smoother",
           "select_free_modes", "K_RULES"]

#: Rules for ``free_modes="auto"``.
K_RULES = ("gcv", "loo", "aic", "bic")


@dataclass(frozen=True)
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


def free_mode_split(model: Any, k: int) -> FreeModes:
    """Make the ``k`` leading eigen-directions of the model's kernel free.

    Parameters
    ----------
    model : MixedLMNTK or SmootherData
        Anything with the plain ``profile`` and ``nobs``.
    k : int
        0 <= k; at most the number of positive eigenvalues minus one, and at most
        ``n - p - 2`` (REML needs residual degrees of freedom).

    Returns
    -------
    FreeModes
    """
    prof = model.profile
    check_complete_spectrum(prof, "free_modes=")
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
                              prof.trace - tr_free, model.nobs - k, rest_gram=prof.rest_gram,
                              sum_log_weights=prof.sum_log_weights)
    y0 = prof.y_rot.copy()
    X0 = prof.X_rot.copy()
    y0[free] = 0.0
    X0[free] = 0.0
    aug_ml = SpectralProfile(lam, y0, X0, prof.trace, model.nobs, rest_gram=prof.rest_gram,
                             sum_log_weights=prof.sum_log_weights)
    return FreeModes(k, free, rest, reduced, aug_ml)


def max_free_modes(model: Any) -> int:
    """Largest admissible number of free modes for this model."""
    prof = model.profile
    return max(0, min(_n_positive(prof.lam) - 1, model.nobs - prof.p - 2))


def _default_candidates(model: Any) -> np.ndarray:
    kmax = min(max_free_modes(model), model.nobs // 2)
    if kmax <= 0:
        return np.array([0])
    grid = np.unique(np.round(np.geomspace(1, kmax, 24)).astype(int))
    return np.concatenate([[0], grid])


def free_mode_smoother(data: SmootherData, fm: FreeModes) -> SmootherData:
    """The smoother of the remaining spectrum: the free rows are fitted exactly
    (``M_t = 0`` there, complement ``"absorbed"``)."""
    comp = "identity" if fm.profile.rest_gram is not None else ("absorbed" if fm.k else "none")
    if comp == "identity" and fm.k:
        raise NotImplementedError("free modes with a low-rank kernel basis are not supported")
    return data.restricted(fm.profile, fm.rest, comp)


def select_free_modes(model: Any, candidates: Sequence[int] | None = None,
                      k_rule: str = "gcv") -> tuple[int, pd.DataFrame]:
    """Choose the number of free leading modes.

    For each candidate k: t by REML on the remaining spectrum, and at that t
    the GCV and (with ``k_rule="loo"``) the exact leave-one-out error of the fitted
    values; also the augmented model's ML fit with its AIC and BIC (``p + k + 2``
    parameters).

    Parameters
    ----------
    model : MixedLMNTK or SmootherData
        The model, or the smoother data of its full decomposition.
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
    data = model if isinstance(model, SmootherData) else SmootherData.from_model(model)
    model = data
    cands = _default_candidates(model) if candidates is None else \
        np.unique(np.asarray(list(candidates), dtype=int))
    if cands.size == 0:
        raise ValueError("no candidate numbers of free modes")
    n = model.nobs
    p = model.profile.p
    rows = []
    for k in cands:
        fm = free_mode_split(model, int(k))
        est = fm.profile.maximize(True)
        sub = free_mode_smoother(data, fm)
        pr = sub.parts(est.t)
        trM = pr["trM"]
        gcv = n * pr["e2"] / trM ** 2 if trM >= 1 else math.inf
        loo = LeaveOneOut(sub).value(est.t) if k_rule == "loo" else math.nan
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
