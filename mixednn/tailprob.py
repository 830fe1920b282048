"""Tail-probability algorithms for a distribution known by its characteristic function.

This module owns the numerical algorithms that turn the characteristic function,
cumulant generating function (CGF) and cumulants of a real random variable ``S``
into ``P(S > x)``, and the :class:`TailProbability` record they return:

* :func:`imhof_sf` -- Imhof's (1961) integral, in doubling pieces with a rigorous
  truncation bound and QUADPACK's Fourier integrator for an oscillatory tail;
* :func:`davies_sf` -- Davies' (1973, 1980) trapezoidal inversion with aliasing
  bounded by Chernoff bounds;
* :func:`saddlepoint_sf` -- the Lugannani-Rice (1980) saddlepoint, as in Kuonen (1999);
* :func:`liu_sf` and :func:`satterthwaite_sf` -- moment matching by a (noncentral)
  chi-square (Liu, Tang & Zhang 2009; Satterthwaite 1946).

The algorithms see ``S`` only through the :class:`CharacteristicForm` protocol, which
:class:`mixednn.quadform.QuadraticForm` (a weighted sum of chi-squares with
structured weights) implements; choosing among them is its ``sf`` method's job.

References
----------
Imhof, J. P. (1961). Computing the distribution of quadratic forms in normal
variables. *Biometrika* 48, 419-426.

Davies, R. B. (1973). Numerical inversion of a characteristic function.
*Biometrika* 60, 415-417.

Davies, R. B. (1980). Algorithm AS 155: the distribution of a linear
combination of chi-square random variables. *Applied Statistics* 29, 323-333.

Lugannani, R. and Rice, S. (1980). Saddle point approximation for the
distribution of the sum of independent random variables. *Advances in Applied
Probability* 12, 475-490.

Kuonen, D. (1999). Saddlepoint approximations for distributions of quadratic
forms in normal variables. *Biometrika* 86, 929-935.

Liu, H., Tang, Y. and Zhang, H. H. (2009). A new chi-square approximation to
the distribution of non-negative definite quadratic forms in non-central normal
variables. *Computational Statistics & Data Analysis* 53, 853-856.

Satterthwaite, F. E. (1946). An approximate distribution of estimates of
variance components. *Biometrics Bulletin* 2, 110-114.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import numpy as np
import scipy.integrate
import scipy.special
import scipy.stats
from scipy.optimize import brentq

__all__ = [
    "TailProbability",
    "CharacteristicForm",
    "imhof_sf",
    "davies_sf",
    "saddlepoint_sf",
    "liu_sf",
    "satterthwaite_sf",
]

_LOG2 = math.log(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class TailProbability:
    """Result of a tail-probability computation.

    Attributes
    ----------
    pvalue : float
        ``P(S > x)``, clamped to ``[0, 1]``.
    method : str
        Method that produced ``pvalue``; for the ``"auto"`` strategy it says why
        a fallback was used, e.g. ``"saddlepoint (Imhof below 1e-08)"``.
    error_bound : float or None
        Absolute error bound (numerical integration error estimate plus the
        rigorous truncation / aliasing bounds) for ``"imhof"`` and ``"davies"``;
        ``None`` for the approximations, which have no computable bound.
    converged : bool
        False when an integrator reported failure, a term cap was hit, or the
        error bound exceeds the requested tolerance by a wide margin.
    note : str
        Free-text diagnostics (empty when there is nothing to say).
    """

    pvalue: float
    method: str
    error_bound: Optional[float]
    converged: bool
    note: str = ""

    def __float__(self) -> float:
        return float(self.pvalue)


class _SupportEdge(Exception):
    """The saddlepoint equation has no root in floating point (threshold at a support end)."""

    def __init__(self, side: int):
        super().__init__(side)
        self.side = side


def _clamp(p: float) -> float:
    if not np.isfinite(p):
        return float("nan")
    return float(min(1.0, max(0.0, p)))


class CharacteristicForm(Protocol):
    """What the algorithms need to know about ``S`` (a weighted sum of chi-squares).

    ``phase_logmod(u)`` gives ``theta0(u) = arg E exp(i u S / 2)`` (continuous in u)
    and ``log rho(u) = -log |E exp(i u S / 2)|``.  :class:`mixednn.quadform.QuadraticForm`
    is the implementation.
    """

    #: Length of the weight representation (sizes blocks of characteristic-function
    #: evaluations).
    n: int
    #: An upper bound on ``max |nu_j|``, the largest absolute weight.
    scale: float

    def phase_logmod(self, u) -> tuple[np.ndarray, np.ndarray]:
        """``(theta0(u), log rho(u))`` for any array of ``u`` (evaluated in blocks)."""
        ...

    def phase_logmod_block(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The same for a short 1-d array ``u``, in one block (the fast path for one point)."""
        ...

    def cgf(self, s: float) -> tuple[float, float, float]:
        """``K(s)``, ``K'(s)``, ``K''(s)``; NaN outside :meth:`cgf_domain`."""
        ...

    def cgf_domain(self) -> tuple[float, float]:
        """Open interval on which ``K`` is finite."""
        ...

    def cumulants4(self) -> np.ndarray:
        """The first four cumulants of ``S``."""
        ...

    def n_positive(self) -> int:
        """Number of weights above rounding level."""
        ...

    def n_negative(self) -> int:
        """Number of weights below minus rounding level."""
        ...


# ========================================================================= Imhof

def _tail_bound(form: CharacteristicForm, U: float) -> float:
    """Bound on ``(1/pi) int_U^inf du / (u rho(u))``, i.e. in probability units.

    ``kappa(u) = d log rho / d log u = 1/2 sum nu^2 u^2 / (1 + nu^2 u^2)`` is
    nondecreasing, so ``rho(u) >= rho(U) (u/U)^kappa(U)`` for ``u >= U`` and
    the tail is at most ``1 / (pi kappa(U) rho(U))``; ``kappa(U)`` is bounded
    below by the slope of ``log rho`` over ``[U/2, U]``.
    """
    _, lr = form.phase_logmod(np.array([0.5 * U, U]))
    kap = (lr[1] - lr[0]) / _LOG2
    if not kap > 0:
        return math.inf
    return math.exp(-lr[1]) / (math.pi * kap)


def _qawf_tail(phase: Callable[[float], tuple[float, float]], start: float, w: float,
               sgn: float, eps: float) -> tuple[float, float, list[str]]:
    """``int_start^inf sin(theta0(u) - sgn w u) / (u rho(u)) du`` by QUADPACK's QAWF.

    ``phase(u)`` returns ``(theta0(u), log rho(u))``.  Returns the integral, its
    error estimate and QUADPACK's complaints (empty when there are none).
    """
    def gs(u: float) -> float:
        th, lr = phase(u)
        return math.sin(th) * math.exp(-lr - math.log(u))

    def gc(u: float) -> float:
        th, lr = phase(u)
        return math.cos(th) * math.exp(-lr - math.log(u))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r1 = scipy.integrate.quad(gs, start, np.inf, weight="cos", wvar=w,
                                  epsabs=eps, limlst=200, limit=200, full_output=1)
        r2 = scipy.integrate.quad(gc, start, np.inf, weight="sin", wvar=w,
                                  epsabs=eps, limlst=200, limit=200, full_output=1)
    notes = [f"QAWF tail from {start:.3g}: {rr[3][:80]}" for rr in (r1, r2) if len(rr) > 3]
    return r1[0] - sgn * r2[0], r1[1] + r2[1], notes


def imhof_sf(form: CharacteristicForm, x: float, tol: float) -> TailProbability:
    r"""Imhof (1961): ``P(S > x) = 1/2 + (1/pi) int_0^inf sin(theta(u)) / (u rho(u)) du``.

    ``theta(u) = theta0(u) - x u / 2``.  The range is cut into doubling
    pieces integrated by ``scipy.integrate.quad`` until the truncation bound
    of :func:`_tail_bound` is below ``tol / 4``.  When ``x != 0`` and a piece
    would hold more than a few periods of ``sin(x u / 2)``, the remaining
    tail is done by QUADPACK's Fourier integrator (QAWF) on
    ``sin(theta0 - w u) = sin(theta0) cos(w u) - cos(theta0) sin(w u)``, whose
    amplitudes are smooth and decay algebraically.
    """
    omega = 0.5 * x
    sgn = 1.0 if omega >= 0 else -1.0
    w = abs(omega)
    ncyc = 4.0
    kap = form.cumulants4()
    bmax = form.scale      # >= max |nu| (the weights are a compression of b)
    sum_sq = max(kap[1] / 2.0, 1e-300)
    a1 = min(1.0 / bmax, 4.0 / math.sqrt(sum_sq))
    if w > 0:
        a1 = min(a1, 2.0 * math.pi * ncyc / w)

    def phase(u: float) -> tuple[float, float]:
        th, lr = form.phase_logmod_block(np.array([u]))
        return float(th[0]), float(lr[0])

    def integrand(u: float) -> float:
        th, lr = phase(u)
        return math.sin(th - omega * u) * math.exp(-lr - math.log(u))

    total = 0.0
    abserr = 0.0
    ok = True
    notes: list[str] = []
    eps_piece = math.pi * tol / 16.0
    a, bnd = 0.0, a1
    trunc = math.inf
    npieces = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = scipy.integrate.quad(integrand, a, bnd, epsabs=eps_piece, epsrel=0.0,
                                       limit=200, full_output=1)
        total += res[0]
        abserr += res[1]
        if len(res) > 3:
            ok = False
            notes.append(f"quad on [{a:.3g}, {bnd:.3g}]: {res[3][:80]}")
        npieces += 1
        trunc = _tail_bound(form, bnd)
        if trunc < tol / 4.0:
            break
        if w > 0 and w * bnd >= 2.0 * math.pi * ncyc:
            # oscillatory tail by QAWF
            value, err, qnotes = _qawf_tail(phase, bnd, w, sgn, eps_piece)
            total += value
            abserr += err
            if qnotes:
                ok = False
                notes.extend(qnotes)
            trunc = 0.0
            break
        if npieces >= 400 or not math.isfinite(bnd):
            ok = False
            notes.append(f"truncation bound {trunc:.2e} not reached")
            break
        a, bnd = bnd, 2.0 * bnd
    p = 0.5 + total / math.pi
    err = abserr / math.pi + (trunc if math.isfinite(trunc) else 1.0)
    converged = ok and err <= max(100.0 * tol, 1e-12)
    return TailProbability(_clamp(p), "imhof", float(err), bool(converged), "; ".join(notes))


# ======================================================================== Davies

def _chernoff_upper(form: CharacteristicForm, y: float) -> float:
    """Chernoff bound on ``P(S > y)``: ``min_s exp(K(s) - s y)`` over ``s > 0``."""
    if form.n_positive() == 0 and y >= 0:
        return 0.0
    if y <= form.cumulants4()[0]:
        return 1.0
    try:
        s = _solve_saddle(form, y)
    except _SupportEdge:
        return 0.0
    K = form.cgf(s)[0]
    return min(1.0, math.exp(min(K - s * y, 0.0)))


def _chernoff_lower(form: CharacteristicForm, y: float) -> float:
    """Chernoff bound on ``P(S < y)`` (``s < 0``)."""
    if form.n_negative() == 0 and y <= 0:
        return 0.0
    if y >= form.cumulants4()[0]:
        return 1.0
    try:
        s = _solve_saddle(form, y)
    except _SupportEdge:
        return 0.0
    K = form.cgf(s)[0]
    return min(1.0, math.exp(min(K - s * y, 0.0)))


def davies_sf(form: CharacteristicForm, x: float, tol: float,
              max_terms: int) -> TailProbability:
    """Davies (1973, 1980) trapezoidal inversion with error control.

    ``P(S > x) = 1/2 + sum_{k>=0} sin(theta(u_k)) / (pi (k + 1/2) rho(u_k))``
    with ``u_k = 2 (k + 1/2) Delta``.  Sampling at spacing ``Delta`` aliases
    the distribution with period ``L = 2 pi / Delta``; the error is at most
    ``P(S > x + L) + P(S < x - L)``, bounded here by Chernoff bounds.  The
    truncation error after ``N`` terms is bounded as in :func:`_tail_bound`.
    (AS 155's convergence factor is not used, so forms with very few
    terms may hit ``max_terms``; the result then says so.)
    """
    kap = form.cumulants4()
    sd = math.sqrt(max(kap[1], 1e-300))
    L = 8.0 * sd + abs(x - kap[0])
    alias = math.inf
    for _ in range(200):
        alias = _chernoff_upper(form, x + L) + _chernoff_lower(form, x - L)
        if alias < tol / 4.0:
            break
        L *= 1.5
    delta = 2.0 * math.pi / L
    # truncation point in u = 2 t
    U = 2.0 * delta
    trunc = _tail_bound(form, U)
    while trunc >= tol / 4.0 and U / (2.0 * delta) < max_terms:
        U *= 2.0
        trunc = _tail_bound(form, U)
    nterms = int(min(max_terms, math.ceil(U / (2.0 * delta) + 0.5)))
    notes = []
    if trunc >= tol / 4.0:
        notes.append(f"term cap {max_terms} reached")
    kk = np.arange(nterms) + 0.5
    total = 0.0
    chunk = max(1, 2_000_000 // max(form.n, 1))
    for start in range(0, nterms, chunk):
        kc = kk[start:start + chunk]
        u = 2.0 * kc * delta
        th, lr = form.phase_logmod(u)
        total += float(np.sum(np.sin(th - 0.5 * x * u) * np.exp(-lr) / kc))
    # actual truncation bound at the last sampled point
    trunc = _tail_bound(form, 2.0 * kk[-1] * delta)
    p = 0.5 + total / math.pi
    err = alias + trunc + nterms * 1e-16
    return TailProbability(_clamp(p), "davies", float(err),
                           bool(err <= max(100 * tol, 1e-12)), "; ".join(notes))


# =================================================================== saddlepoint

def _solve_saddle(form: CharacteristicForm, x: float) -> float:
    """Solve ``K'(s) = x`` in the domain of K (``K'`` is increasing)."""
    s_lo, s_hi = form.cgf_domain()
    mean = form.cumulants4()[0]
    sd = math.sqrt(max(form.cumulants4()[1], 1e-300))

    def f(s: float) -> float:
        return form.cgf(s)[1] - x

    if x == mean:
        return 0.0
    if x > mean:
        lo = 0.0
        if math.isfinite(s_hi):
            hi = None
            for k in range(1, 60):
                cand = s_hi * (1.0 - 2.0 ** (-k))
                v = f(cand)
                if np.isfinite(v) and v > 0:
                    hi = cand
                    break
                if np.isfinite(v):
                    lo = cand
            if hi is None:
                raise _SupportEdge(+1)
        else:
            hi = 1.0 / sd
            while f(hi) <= 0:
                lo = hi
                hi *= 2.0
                if hi > 1e300:
                    raise _SupportEdge(+1)
    else:
        hi = 0.0
        if math.isfinite(s_lo):
            lo = None
            for k in range(1, 60):
                cand = s_lo * (1.0 - 2.0 ** (-k))
                v = f(cand)
                if np.isfinite(v) and v < 0:
                    lo = cand
                    break
                if np.isfinite(v):
                    hi = cand
            if lo is None:
                raise _SupportEdge(-1)
        else:
            lo = -1.0 / sd
            while f(lo) >= 0:
                hi = lo
                lo *= 2.0
                if lo < -1e300:
                    raise _SupportEdge(-1)
    return brentq(f, lo, hi, xtol=1e-300, rtol=4.0 * np.finfo(float).eps, maxiter=500)


def saddlepoint_sf(form: CharacteristicForm, x: float) -> TailProbability:
    """Lugannani-Rice (1980) tail approximation, as in Kuonen (1999).

    ``P(S > x) ~ 1 - Phi(w) + phi(w) (1/v - 1/w)`` with
    ``w = sign(s) sqrt(2 (s x - K(s)))``, ``v = s sqrt(K''(s))`` and
    ``K'(s) = x``.  Relative error in the far tails is typically a few
    percent (it is exact up to the Stirling error of ``Gamma(k/2)`` for an
    equal-weights ``chi2_k``).  Near the mean (``|w| < 1e-4``) the formula is
    replaced by its one-term Edgeworth limit.
    """
    kap = form.cumulants4()
    try:
        s = _solve_saddle(form, x)
    except _SupportEdge as edge:
        # K' cannot reach x inside the floating-point domain: x is at (or
        # numerically beyond) an end of the support
        return TailProbability(1.0 if edge.side < 0 else 0.0, "saddlepoint", None, True,
                               "threshold at the edge of the support")
    K, _, K2 = form.cgf(s)
    arg = 2.0 * (s * x - K)
    wv = math.copysign(math.sqrt(max(arg, 0.0)), s)
    note = ""
    if abs(wv) < 1e-4 or s == 0.0:
        z = (x - kap[0]) / math.sqrt(kap[1])
        rho3 = kap[2] / kap[1] ** 1.5
        p = (scipy.special.ndtr(-z)
             + math.exp(-0.5 * z * z) / _SQRT_2PI * rho3 / 6.0 * (z * z - 1.0))
        note = "threshold at the mean: Edgeworth limit of Lugannani-Rice"
    else:
        v = s * math.sqrt(K2)
        if v == 0.0 or not math.isfinite(v):
            # |s| so large that K'' under/overflows: the threshold sits at the
            # edge of the support, with (essentially) all mass on one side
            p = 1.0 if s < 0 else 0.0
            note = "threshold at the edge of the support"
        else:
            p = (scipy.special.ndtr(-wv)
                 + math.exp(-0.5 * wv * wv) / _SQRT_2PI * (1.0 / v - 1.0 / wv))
    return TailProbability(_clamp(p), "saddlepoint", None, bool(np.isfinite(p)), note)


# =============================================================== moment matching

def liu_sf(form: CharacteristicForm, x: float) -> TailProbability:
    """Liu, Tang & Zhang (2009): noncentral chi-square matching skewness and kurtosis."""
    kap = form.cumulants4()
    c = kap / np.array([1.0, 2.0, 8.0, 48.0])    # c_r = sum nu^r
    c1, c2, c3, c4 = c
    s1 = c3 / c2 ** 1.5
    s2 = c4 / c2 ** 2
    mu_q, sd_q = c1, math.sqrt(2.0 * c2)
    if s1 * s1 > s2:
        a = 1.0 / (s1 - math.sqrt(s1 * s1 - s2))
        delta = s1 * a ** 3 - a * a
        df = a * a - 2.0 * delta
    else:
        a = 1.0 / s1
        delta = 0.0
        df = a * a
    mu_x, sd_x = df + delta, math.sqrt(2.0) * a
    t = (x - mu_q) / sd_q * sd_x + mu_x
    if delta > 0:
        p = scipy.stats.ncx2.sf(t, df, delta)
    else:
        p = scipy.stats.chi2.sf(t, df)
    return TailProbability(_clamp(float(p)), "liu", None, True,
                           f"df={df:.6g}, ncp={delta:.6g}")


def satterthwaite_sf(form: CharacteristicForm, x: float) -> TailProbability:
    """Satterthwaite (1946): ``S ~ a chi2_df`` matching mean and variance."""
    kap = form.cumulants4()
    a = kap[1] / (2.0 * kap[0])
    df = 2.0 * kap[0] ** 2 / kap[1]
    p = scipy.stats.chi2.sf(x / a, df)
    return TailProbability(_clamp(float(p)), "satterthwaite", None, True,
                           f"scale={a:.6g}, df={df:.6g}")
