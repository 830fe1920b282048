"""Tail probabilities of weighted chi-square sums, from explicit weights or a kernel spectrum.

This module owns the function front ends of :class:`mixednn.quadform.QuadraticForm`
for the score test's null distributions (model.md section 3):

* explicit weights: :func:`weighted_chi2_sf` (``P(sum_j w_j chi2_1,j > q)``) and
  :func:`ratio_qf_sf` (the ratio ``Q = e^T M K M e / e^T M e`` from the
  eigenvalues ``nu`` of ``M K M``);
* structured, from the kernel eigenvalues ``lam`` and the rotated design
  ``Xr = U^T X`` in O(n p^2) per evaluation, with no second eigendecomposition:
  :func:`projected_ratio_sf` (the exact score-test p-value),
  :func:`plugin_score_sf` (its large-sample plug-in) and
  :func:`projected_cumulants`.

Each returns a :class:`mixednn.tailprob.TailProbability` (the cumulants an array);
the algorithms (``method``) and their references are in :mod:`mixednn.tailprob`.
"""

from __future__ import annotations

import numpy as np

from .quadform import QuadraticForm
from .tailprob import TailProbability

__all__ = [
    "weighted_chi2_sf",
    "ratio_qf_sf",
    "projected_ratio_sf",
    "plugin_score_sf",
    "projected_cumulants",
]


def weighted_chi2_sf(q: float, weights, *, method: str = "auto",
                     tol: float = 1e-9) -> TailProbability:
    """``P(sum_j w_j chi2_1,j > q)`` for real weights.

    Parameters
    ----------
    q : float
        Threshold.
    weights : array_like
        Real weights (any sign for ``imhof``, ``davies``, ``saddlepoint``;
        nonnegative for ``liu`` and ``satterthwaite``).  Zero weights are dropped.
    method : {"auto", "imhof", "davies", "saddlepoint", "liu", "satterthwaite"}
        ``"auto"`` (default) runs Imhof (1961) and falls back to the
        Lugannani-Rice saddlepoint (Kuonen 1999) when Imhof's value is below
        1e-8 (absolute accuracy no longer gives relative accuracy there) or
        the integration fails; ``.method`` then says so.
    tol : float
        Absolute accuracy target for Imhof/Davies.

    Returns
    -------
    TailProbability

    References
    ----------
    Imhof (1961); Davies (1980); Kuonen (1999); Liu, Tang & Zhang (2009);
    Satterthwaite (1946).  See :mod:`mixednn.tailprob`.

    Examples
    --------
    >>> round(weighted_chi2_sf(3.841458820694124, [1.0]).pvalue, 8)
    0.05
    """
    return QuadraticForm.from_weights(weights).sf(q, method, tol)


def ratio_qf_sf(Q: float, nu, *, method: str = "auto", tol: float = 1e-9) -> TailProbability:
    """Exact null tail ``P(Q_ratio > Q)`` of a ratio of quadratic forms.

    For ``Q_ratio = e^T M K M e / e^T M e`` with Gaussian ``e``,
    ``P(Q_ratio > Q) = P(sum_j (nu_j - Q) chi2_1,j > 0)``, ``nu`` the nonzero
    eigenvalues of ``M K M`` (model.md section 3).

    Parameters
    ----------
    Q : float
        Observed ratio.
    nu : array_like
        The ``n - p`` eigenvalues ``nu_j``.
    method, tol
        As in :func:`weighted_chi2_sf` (``liu``/``satterthwaite`` only apply when
        all ``nu_j >= Q``).

    Returns
    -------
    TailProbability
    """
    nu = np.asarray(nu, dtype=float).ravel()
    return QuadraticForm(nu - float(Q), None).sf(0.0, method, tol)


def projected_ratio_sf(Q: float, lam, Xr=None, *, method: str = "auto",
                       tol: float = 1e-9) -> TailProbability:
    """Exact score-test p-value ``P(Q_ratio > Q)`` from the kernel spectrum, O(n p^2).

    Computes ``P(sum_j (nu_j - Q) chi2_1,j > 0)`` with ``nu`` the eigenvalues of
    ``M diag(lam) M`` on ``range(M)``, ``M = I - Xr (Xr^T Xr)^{-1} Xr^T``,
    without forming them: the characteristic function is
    ``det(D) det(Qx^T D^{-1} Qx)`` with ``D = I - i u (diag(lam) - Q I)``
    (:mod:`mixednn.quadform`).

    Parameters
    ----------
    Q : float
        Observed ratio ``r0^T K r0 / r0^T r0``.
    lam : array_like, shape (n,)
        Eigenvalues of ``K``.
    Xr : array_like, shape (n, p), optional
        Rotated design ``U^T X`` (full column rank); None or ``p = 0`` means no
        fixed effects (then the weights are ``lam - Q``).
    method : {"auto", "imhof", "davies", "saddlepoint"}
        ``"liu"``/``"satterthwaite"`` raise ``ValueError`` unless every weight is
        nonnegative (the weights ``nu_j - Q`` normally have mixed signs).
    tol : float
        Absolute accuracy target.

    Returns
    -------
    TailProbability
    """
    return QuadraticForm.projected(lam, Xr, shift=Q).sf(0.0, method, tol)


def plugin_score_sf(stat: float, lam, Xr=None, *, method: str = "auto",
                    tol: float = 1e-9) -> TailProbability:
    """Large-sample plug-in p-value ``P(sum_j nu_j chi2_1,j > stat)``, O(n p^2).

    ``nu`` are the eigenvalues of ``M diag(lam) M`` on ``range(M)``.  With the
    variance held at its null estimate the score statistic ``Q (n - p)`` is
    referred to this distribution (as in kernel association tests).

    Parameters
    ----------
    stat : float
        Threshold (e.g. ``Q * (n - p)``).
    lam, Xr
        As in :func:`projected_ratio_sf`.
    method : {"auto", "imhof", "davies", "saddlepoint", "liu", "satterthwaite"}
        ``"liu"`` and ``"satterthwaite"`` use :func:`projected_cumulants`; they
        need ``lam >= 0`` (up to rounding).
    tol : float
        Absolute accuracy target.

    Returns
    -------
    TailProbability
    """
    return QuadraticForm.projected(lam, Xr, shift=0.0).sf(stat, method, tol)


def projected_cumulants(q: float, lam, Xr=None, k: int = 4) -> np.ndarray:
    """First ``k`` cumulants of ``sum_j (nu_j - q) chi2_1,j``, O(n p^2 k).

    ``kappa_r = 2^{r-1} (r-1)! tr((M B M)^r)`` with ``B = diag(lam) - q I``;
    ``tr((M B M)^r) = tr((B M)^r)`` is obtained from the power series of
    ``log det(I - t A^T B A)`` (:meth:`QuadraticForm.cumulants`).

    Parameters
    ----------
    q : float
        Shift (0 for the plug-in statistic's weights).
    lam : array_like, shape (n,)
        Eigenvalues of ``K``.
    Xr : array_like, shape (n, p), optional
        Rotated design.
    k : int
        Number of cumulants.

    Returns
    -------
    ndarray, shape (k,)
    """
    return QuadraticForm.projected(lam, Xr, shift=q).cumulants(k)
