"""The likelihood layer: REML/ML profiles of ``V(t) = s2 exp(tK)`` and the one 1-D search.

After one decomposition ``K = U diag(lam) U^T`` (:mod:`mixednn.spectral`) the model is a
weighted least-squares problem in the rotated basis with weights ``w_i(t) =
exp(-t lam_i)``, and ``log det V(t) = n log s2 + t tr(K)`` needs no eigenvalues
(``docs/model.md`` section 2).  Every evaluation of the profiled likelihood then
costs O(n p^2).

Layout
------
* :class:`CovarianceModel` -- the seam between the bases and the likelihood: what a
  covariance model must offer to be fitted by REML/ML (``docs/model.md`` section 8).
  :class:`SpectralProfile` is its fast special case (one variance component,
  diagonal in the NTK eigenbasis); :class:`DenseCovariance` is the general,
  brute-force reference (any ``V(theta)`` given as a dense matrix), used to check
  the fast route and the place where models with several components start.
* :func:`search_log_t` -- the one search over ``t >= 0`` (log grid, bounded Brent on
  log t, explicit comparison with t = 0), used both to maximise the likelihood and to
  minimise the prediction-error criteria of :mod:`mixednn.stopping`.
* :class:`TimeEstimate` -- the frozen outcome of one search.

Which rule chooses t is decided in one place only, :func:`mixednn.timechoice.choose_t`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import scipy.linalg
from scipy.optimize import brentq, minimize_scalar

from .numerics import LOG_2PI

__all__ = ["CovarianceModel", "SpectralProfile", "DenseCovariance", "ProfilePoint",
           "TimeEstimate", "SearchOutcome", "search_log_t", "log_grid", "profile_frame",
           "check_complete_spectrum"]


# ----------------------------------------------------------------------------- records

@dataclass(frozen=True)
class ProfilePoint:
    """Profiled quantities at one training time."""

    t: float
    beta: np.ndarray
    rss: float
    scale: float
    llf: float
    xwx: np.ndarray  # X~^T W X~ (p x p), so that cov(beta) = scale * inv(xwx)
    logdet_xwx: float


@dataclass(frozen=True)
class TimeEstimate:
    """Outcome of one search for t (frozen).

    Attributes
    ----------
    t : float
        The chosen time.
    llf, llf_zero : float
        Profiled REML (or ML) log-likelihood at ``t`` and at 0.
    boundary : bool
        The optimum is at ``t = 0``.
    at_upper : bool
        The optimum is at the upper end of the search (interpolation).
    converged : bool
        The 1-D refinement converged.
    search_bounds : (float, float)
        The range of t searched on the log scale.
    grid, grid_llf : ndarray
        The search grid and the log-likelihood on it.
    message : str
        Why the estimate is at a boundary, if it is.
    criterion : str
        The rule minimised or maximised (``"reml"``, ``"ml"``, ``"gcv"``, ...).
    value, grid_value
        For a prediction-error rule, its minimum and its values on ``grid``.
    """

    t: float
    llf: float
    llf_zero: float
    boundary: bool
    at_upper: bool
    converged: bool
    search_bounds: tuple[float, float]
    grid: np.ndarray = field(repr=False)
    grid_llf: np.ndarray = field(repr=False)
    message: str = ""
    criterion: str = ""
    value: float = float("nan")
    grid_value: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SearchOutcome:
    """What :func:`search_log_t` found (in the minimisation convention)."""

    t: float
    value: float
    value_zero: float
    boundary: bool
    at_upper: bool
    converged: bool
    grid: np.ndarray
    grid_values: np.ndarray


def log_grid(bounds: tuple[float, float], points_per_decade: int) -> np.ndarray:
    """Log-spaced grid over ``bounds`` with ``points_per_decade`` points per decade."""
    lo, hi = bounds
    m = int(np.ceil(np.log10(hi / lo) * points_per_decade)) + 1
    return np.logspace(np.log10(lo), np.log10(hi), m)


def search_log_t(value: Callable[[float], float], values: Callable[[np.ndarray], np.ndarray],
                 bounds: tuple[float, float], points_per_decade: int, *, xatol: float,
                 maxiter: int, zero_wins_ties: bool, tie_tolerance: float = 0.0,
                 polish: Callable[[float, float, float, float], tuple[float, float]] | None = None
                 ) -> SearchOutcome:
    """Minimise a function of the training time over ``t >= 0``.

    A log-spaced grid over ``bounds`` locates the global minimum, a bounded Brent
    search on ``log t`` between the grid neighbours of the best point refines it
    (optionally ``polish(t, v, a, b)`` sharpens it further), and the boundary ``t = 0``
    is compared explicitly.

    Parameters
    ----------
    value, values : callable
        The objective at one t and, vectorised, on many (non-finite values are treated
        as +inf).
    bounds : (float, float)
        Smallest and largest positive t searched.
    points_per_decade : int
        Grid density.
    xatol, maxiter : float, int
        Brent tolerance on log t and iteration cap.
    zero_wins_ties : bool
        Whether ``t = 0`` wins when its value equals the interior minimum (the
        likelihood convention: no training unless it strictly helps).
    tie_tolerance : float
        With ``zero_wins_ties``, an interior minimum less than this below the value at
        ``t = 0`` counts as a tie (a gain within rounding is no gain).
    polish : callable, optional
        ``polish(t, v, a, b) -> (t, v)`` on the refined optimum (a, b in log t).

    Returns
    -------
    SearchOutcome
    """
    lo, hi = bounds
    grid = log_grid(bounds, points_per_decade)
    m = grid.shape[0]
    vals = np.asarray(values(grid), dtype=float)
    vals = np.where(np.isfinite(vals), vals, np.inf)
    v0 = float(value(0.0))
    i = int(np.argmin(vals))
    t_hat, v_hat = float(grid[i]), float(vals[i])
    converged = bool(np.isfinite(v_hat))
    if converged:
        a = math.log(grid[i - 1]) if i > 0 else math.log(lo) - 10 * math.log(10)
        b = math.log(grid[min(i + 1, m - 1)])

        def f(u: float) -> float:
            v = value(math.exp(u))
            return v if np.isfinite(v) else np.inf

        # a non-finite value (+inf above) makes Brent's parabolic step inf - inf; it then
        # falls back to a golden-section step, but numpy would warn about the NaN
        with np.errstate(invalid="ignore", over="ignore"):
            opt = minimize_scalar(f, bounds=(a, b), method="bounded",
                                  options={"xatol": xatol, "maxiter": maxiter})
        converged = bool(opt.success)
        # the grid only locates the minimum: its vectorised values (cross-products) can be
        # off by rounding that the accurate value(t) is not, and v_hat is compared with
        # value(0) below -- a spurious grid dip must not beat t = 0 (it did when y had a
        # large mean: t changed when a constant was added to y)
        v_hat = float(f(math.log(t_hat)))
        if opt.success and opt.fun <= v_hat:
            t_hat, v_hat = math.exp(opt.x), float(opt.fun)
        if polish is not None:
            t_hat, v_hat = polish(t_hat, v_hat, a, b)
    at_upper = i == m - 1
    boundary = (v0 <= v_hat + tie_tolerance) if zero_wins_ties else not (v_hat < v0)
    if boundary:
        t_hat, v_hat = 0.0, v0
    return SearchOutcome(t_hat, v_hat, v0, bool(boundary), bool(at_upper and not boundary),
                         converged, grid, vals)


def profile_frame(profile: "SpectralProfile", reml: bool, t_hat: float, llf_hat: float,
                  bounds: tuple[float, float], interval: tuple[float, float] | None = None,
                  grid: Any = None, num: int = 41) -> pd.DataFrame:
    """The profile log-likelihood on a grid of t, as a table.

    Parameters
    ----------
    profile : SpectralProfile
    reml : bool
    t_hat, llf_hat : float
        The estimate and its log-likelihood (for ``deviance_change``).
    bounds : (float, float)
        The search range of t (limits the default grid).
    interval : (float, float), optional
        The profile interval of t; the default grid spans it, widened tenfold each side.
    grid : array-like, optional
        Values of t >= 0.  By default ``num`` log-spaced points plus 0 and ``t_hat``.
    num : int

    Returns
    -------
    pandas.DataFrame
        Columns ``t``, ``llf``, ``deviance_change`` (``2 [l(t_hat) - l(t)]``).
    """
    if grid is None:
        lo, hi = interval if interval is not None else (math.nan, math.nan)
        lo_b, hi_b = bounds
        a = max(lo / 10, lo_b) if lo > 0 else max(t_hat / 1e3, lo_b) if t_hat > 0 else lo_b
        b = min(hi * 10, hi_b) if np.isfinite(hi) else hi_b
        grid = np.concatenate([[0.0], np.logspace(np.log10(a), np.log10(b), num)])
        if t_hat > 0:
            grid = np.sort(np.append(grid, t_hat))
    grid = np.asarray(grid, dtype=float)
    if np.any(grid < 0):
        raise ValueError("profile grid values must be >= 0")
    llf = np.array([profile.loglike(float(t), reml) for t in grid])
    return pd.DataFrame({"t": grid, "llf": llf, "deviance_change": 2 * (llf_hat - llf)})


def check_complete_spectrum(profile: Any, what: str) -> None:
    """Refuse a computation that sums over every eigen-direction of K on a profile
    that does not hold them all (a Krylov basis, ``decomposition="lanczos"``).

    Parameters
    ----------
    profile : SpectralProfile
    what : str
        The computation, as the user asked for it (``"t_method='gcv'"``).

    Raises
    ------
    ValueError
        Naming ``decomposition=`` and the alternatives.
    """
    if getattr(profile, "complete_spectrum", True):
        return
    raise ValueError(
        f"{what} needs every eigenvalue (or eigenvector) of K; this fit used "
        f"decomposition='lanczos', a Krylov space of dimension {profile.lam.shape[0]} of "
        f"n = {profile.nobs} that gives the likelihood, beta, s2 and predictions exactly "
        "but not the spectrum: fit the model with decomposition='eigh' or 'tridiagonal' "
        "(or 'auto', which falls back to them for the rules that need it)")


# ----------------------------------------------------------------------------- the seam

@runtime_checkable
class CovarianceModel(Protocol):
    """A covariance model ``Var(y) = s2 V(theta)`` that REML/ML can fit (the seam).

    The fixed effects are profiled out by GLS and ``s2`` in closed form, so a
    covariance model needs only its profiled criterion as a function of its own
    parameters ``theta`` (for the spectral model, ``theta = (t,)``).  Models with group
    random effects (``V = exp(tK) + Z Lambda(theta) Z^T``) or several networks
    (``V = exp(sum_j t_j K_j)``) implement the same three members
    (``docs/model.md`` section 8).
    """

    nobs: int
    p: int

    def loglike_theta(self, theta: np.ndarray, reml: bool = True) -> float:
        """Profiled (beta and s2 out) REML or ML log-likelihood at ``theta``."""

    def point_theta(self, theta: np.ndarray, reml: bool = True) -> ProfilePoint:
        """beta, RSS, s2, the log-likelihood and ``X^T V^{-1} X`` at ``theta``."""


class SpectralProfile:
    """REML and ML criteria as functions of t in the rotated basis (the fast covariance model).

    Parameters
    ----------
    eigenvalues : ndarray, shape (k,)
    y_rot : ndarray, shape (k,)
        ``U^T (y - f0)``.
    X_rot : ndarray, shape (k, p)
        ``U^T X``.
    trace : float
        ``tr(K)``.
    nobs : int
        n.  Larger than k for a low-rank basis.
    rest_gram : ndarray, shape (p+1, p+1), optional
        ``Y^T Y - Y_rot^T Y_rot`` with ``Y = [X, y - f0]``: the part outside the
        leading eigenvectors (weight 1 for all t).  ``None`` for a full basis.
    sum_log_weights : float
        ``sum_i log w_i`` of precision weights (``Var(e_i) = s2 / w_i``; 0 without).
        The rotated data are then those of the whitened problem ``W^{1/2} y``, and
        every log-likelihood adds ``+1/2 sum_i log w_i``, the Jacobian of
        ``y -> W^{1/2} y``, so that it is the likelihood of y itself, as in lme4 and
        statsmodels' WLS (``docs/model.md`` section 2.7).
    """

    #: class default: profiles pickled before weights existed have no attribute
    sum_log_weights: float = 0.0
    #: False when ``lam`` are not the spectrum of K but Ritz values of a Krylov space
    #: (:class:`mixednn.krylov.KrylovProfile`): the likelihood is right, sums over
    #: every eigen-direction are not (:func:`check_complete_spectrum`)
    complete_spectrum: bool = True

    def __init__(self, eigenvalues: np.ndarray, y_rot: np.ndarray, X_rot: np.ndarray,
                 trace: float, nobs: int, rest_gram: np.ndarray | None = None,
                 sum_log_weights: float = 0.0):
        self.lam = np.asarray(eigenvalues, dtype=float)
        self.y_rot = np.asarray(y_rot, dtype=float)
        self.X_rot = np.asarray(X_rot, dtype=float).reshape(self.lam.shape[0], -1)
        self.trace = float(trace)
        self.nobs = int(nobs)
        self.p = self.X_rot.shape[1]
        if sum_log_weights:
            self.sum_log_weights = float(sum_log_weights)
        #: ``[X~, y~]``: the rotated data as one k x (p + 1) block
        self.data_block = np.column_stack([self.X_rot, self.y_rot])
        self.rest_gram = rest_gram
        #: a square root of ``rest_gram`` (rows appended to the weighted data), or None
        self.rest_root = None
        if rest_gram is not None:
            ev, evec = np.linalg.eigh(0.5 * (rest_gram + rest_gram.T))
            self.rest_root = (evec * np.sqrt(np.maximum(ev, 0.0))).T

    @property
    def n_outside(self) -> int:
        """Directions outside the stored eigenvalues on which ``K = 0`` (low-rank bases)."""
        return self.nobs - self.lam.shape[0] if self.rest_gram is not None else 0

    # -- core evaluation -------------------------------------------------------------
    def weights(self, t: float) -> np.ndarray:
        """``exp(-t lam_i)``."""
        return np.exp(-t * self.lam)

    def point(self, t: float, reml: bool = True) -> ProfilePoint:
        """Profile at ``t`` by a QR of the weighted rotated data (accurate, O(n p^2))."""
        p, n = self.p, self.nobs
        A = np.sqrt(self.weights(t))[:, None] * self.data_block
        if self.rest_root is not None:
            A = np.vstack([A, self.rest_root])
        R = np.linalg.qr(A, mode="r")
        if R.shape[0] < p + 1:
            R = np.vstack([R, np.zeros((p + 1 - R.shape[0], p + 1))])
        rss = float(R[p, p] ** 2)
        Rx = R[:p, :p]
        diag = np.abs(np.diag(Rx))
        if p and (diag.min() <= 1e-300 or not np.all(np.isfinite(diag))):
            return ProfilePoint(t, np.full(p, np.nan), rss, np.nan, -np.inf, Rx.T @ Rx, -np.inf)
        logdet = float(2 * np.log(diag).sum()) if p else 0.0
        beta = scipy.linalg.solve_triangular(Rx, R[:p, p]) if p else np.empty(0)
        dof = n - p if reml else n
        scale = rss / dof
        if not scale > 0:
            return ProfilePoint(t, beta, rss, scale, np.inf, Rx.T @ Rx, logdet)
        llf = -0.5 * (dof * (LOG_2PI + math.log(scale)) + dof + t * self.trace
                      - self.sum_log_weights)
        if reml:
            llf -= 0.5 * logdet
        return ProfilePoint(t, beta, rss, scale, llf, Rx.T @ Rx, logdet)

    def point_theta(self, theta: np.ndarray, reml: bool = True) -> ProfilePoint:
        return self.point(float(np.ravel(theta)[0]), reml)

    def loglike(self, t: float, reml: bool = True) -> float:
        """Profiled (s2 and beta out) log-likelihood at t (c = 0 convention)."""
        return self.point(t, reml).llf

    def loglike_theta(self, theta: np.ndarray, reml: bool = True) -> float:
        return self.loglike(float(np.ravel(theta)[0]), reml)

    def score(self, t: float, reml: bool = True) -> float:
        """Analytic derivative d l / d t of the profiled criterion.

        By the envelope theorem only the explicit t-dependence counts:
        ``dRSS/dt = -sum lam_i w_i r~_i^2`` and
        ``d log det(X~^T W X~)/dt = -tr((X~^T W X~)^{-1} X~^T Lam W X~)``.
        At t = 0 (REML) this is ``1/2 [r0^T K r0 / s2 - tr((I - H) K)]``
        (``docs/model.md`` eq. (8), section 2.3; the score test of section 3).
        """
        pt = self.point(t, reml)
        if not np.isfinite(pt.llf):
            return float("nan")
        lw = self.lam * self.weights(t)
        r = self.y_rot - self.X_rot @ pt.beta if self.p else self.y_rot
        drss = -float(np.sum(lw * r * r))
        dof = self.nobs - self.p if reml else self.nobs
        g = dof * drss / pt.rss + self.trace
        if reml and self.p:
            M = (self.X_rot * lw[:, None]).T @ self.X_rot
            g -= float(np.trace(np.linalg.solve(pt.xwx, M)))
        return -0.5 * g

    def loglike_full(self, t: float, scale: float, reml: bool = True) -> float:
        """Log-likelihood at (t, s2) with only beta profiled (REML: integrated) out."""
        pt = self.point(t, reml)
        n, p = self.nobs, self.p
        c = self.sum_log_weights
        if reml:
            return -0.5 * ((n - p) * (LOG_2PI + math.log(scale)) + pt.rss / scale
                           + t * self.trace + pt.logdet_xwx - c)
        return -0.5 * (n * (LOG_2PI + math.log(scale)) + pt.rss / scale + t * self.trace - c)

    def weighted_gram(self, ts: np.ndarray, squared: bool = False) -> np.ndarray:
        """``[X~, y~]^T W [X~, y~]`` (plus ``rest_gram``) on many t: shape (T, p+1, p+1).

        ``squared=True`` uses the weights ``W^2``.  One matrix product for all t.
        """
        ts = np.asarray(ts, dtype=float)
        A = self.data_block
        q = A.shape[1]
        W = np.exp(-np.outer(ts, self.lam))
        if squared:
            W = W * W
        k = A.shape[0]
        if k * q * q <= 20_000_000:
            C = (W @ (A[:, :, None] * A[:, None, :]).reshape(k, q * q)).reshape(-1, q, q)
        else:
            C = np.stack([(A * w[:, None]).T @ A for w in W])
        if self.rest_gram is not None:
            C = C + self.rest_gram
        return C

    def loglike_grid(self, ts: np.ndarray, reml: bool = True) -> np.ndarray:
        """Profiled log-likelihood on many t at once (cross-products, vectorised)."""
        ts = np.asarray(ts, dtype=float)
        p, n = self.p, self.nobs
        C = self.weighted_gram(ts)
        out = np.empty(ts.shape[0])
        dof = n - p if reml else n
        for i, Ci in enumerate(C):
            if p:
                try:
                    L = np.linalg.cholesky(Ci[:p, :p])
                except np.linalg.LinAlgError:
                    out[i] = self.loglike(ts[i], reml)
                    continue
                z = scipy.linalg.solve_triangular(L, Ci[:p, p], lower=True)
                rss = Ci[p, p] - z @ z
                logdet = 2 * np.log(np.diag(L)).sum()
            else:
                rss, logdet = Ci[0, 0], 0.0
            if not rss > 0 or not np.isfinite(logdet):
                out[i] = self.loglike(ts[i], reml)
                continue
            val = -0.5 * (dof * (LOG_2PI + math.log(rss / dof)) + dof + ts[i] * self.trace
                          - self.sum_log_weights)
            out[i] = val - 0.5 * logdet if reml else val
        return out

    # -- search ------------------------------------------------------------------------
    def search_bounds(self) -> tuple[float, float]:
        """Range of t searched on the log scale.

        From ``1e-8 / lam_max`` (nothing learned yet) to the time at which the
        smallest resolvable eigen-direction is learned (``50 / lam_min+``, where
        ``exp(-t lam) < 1e-21`` for every direction), at most 18 decades.
        """
        lam = self.lam
        top = float(lam.max()) if lam.size else 0.0
        if not top > 0:
            raise ValueError("the kernel is zero on the training rows: no network effect to fit")
        pos = lam[lam > top * max(lam.size, 1) * np.finfo(float).eps]
        lo = 1e-8 / top
        hi = 50.0 / float(pos.min())
        hi = min(hi, lo * 1e18)
        return lo, hi

    def maximize(self, reml: bool = True, points_per_decade: int = 12) -> TimeEstimate:
        """Maximise the profiled criterion over t >= 0 (:func:`search_log_t`, then a root
        of the analytic score).  A maximum less than ``1e-10 |l(0)|`` above ``l(0)`` is the
        boundary t = 0 (its gain is rounding)."""
        bounds = self.search_bounds()
        # a gain over t = 0 within rounding of the criterion is no gain: the boundary
        tol = 1e-10 * max(1.0, abs(self.loglike(0.0, reml)))
        out = search_log_t(lambda t: -self.loglike(t, reml),
                           lambda ts: -self.loglike_grid(ts, reml), bounds, points_per_decade,
                           xatol=1e-10, maxiter=500, zero_wins_ties=True, tie_tolerance=tol,
                           polish=lambda t, v, a, b: self._polish(t, v, a, b, reml))
        message = ""
        if out.boundary:
            message = ("boundary fit: the likelihood is maximised at t = 0 (training captures "
                       "nothing beyond the initialisation)")
        elif out.at_upper:
            message = ("t ran to the upper end of the search: the fit interpolates the training "
                       "data (the kernel is too flexible, or the noise variance is near zero)")
        crit = "reml" if reml else "ml"
        return TimeEstimate(t=out.t, llf=-out.value, llf_zero=-out.value_zero,
                            boundary=out.boundary, at_upper=out.at_upper,
                            converged=out.converged or not np.isfinite(out.grid_values).any(),
                            search_bounds=bounds, grid=out.grid, grid_llf=-out.grid_values,
                            message=message, criterion=crit, value=out.value)

    def _polish(self, t: float, v: float, a: float, b: float, reml: bool) -> tuple[float, float]:
        """Refine the maximiser as the root of the analytic score: Brent on l locates
        t only to ~sqrt(eps); the score's root is sharp to rounding."""
        l = -v
        g = lambda u: self.score(math.exp(u), reml)  # noqa: E731
        u = math.log(t)
        h = 1e-4
        lo, hi = max(a, u - h), min(b, u + h)
        try:
            glo, ghi = g(lo), g(hi)
            if not (np.isfinite(glo) and np.isfinite(ghi)) or glo * ghi > 0:
                glo, ghi, lo, hi = g(a), g(b), a, b
            if np.isfinite(glo) and np.isfinite(ghi) and glo > 0 > ghi:
                u_new = brentq(g, lo, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=200)
                l_new = self.loglike(math.exp(u_new), reml)
                if l_new >= l - 1e-12 * abs(l):
                    return math.exp(u_new), -l_new
        except (ValueError, RuntimeError):
            pass
        return t, v

    def minimize_criterion(self, criterion: Any, reml: bool = True,
                           points_per_decade: int | None = None) -> TimeEstimate:
        """Minimise a prediction-error criterion of t over t >= 0 (the alternatives to REML).

        The same search as :meth:`maximize` (:func:`search_log_t`) applied to
        ``criterion``: an object with ``name``, ``values(ts)`` (vectorised) and
        ``value(t)``, e.g. the GCV, Cp, leave-one-out and K-fold criteria of
        :mod:`mixednn.stopping`.

        Returns
        -------
        TimeEstimate
            ``criterion``, ``value`` and ``grid_value`` describe the minimised rule;
            ``llf``, ``llf_zero`` and ``grid_llf`` are the profiled REML (or ML)
            log-likelihood at the chosen t, at 0 and on the grid, for comparison.
        """
        bounds = self.search_bounds()
        ppd = points_per_decade or getattr(criterion, "points_per_decade", 12)
        coarse_to_fine = getattr(criterion, "coarse_to_fine", False) and ppd > 1
        if coarse_to_fine:
            # an expensive criterion (K-fold: O(n^3 / k) per t) is evaluated once per t:
            # the coarse grid, the fine grid and the Brent search share their values
            cache: dict[float, float] = {}

            def value(t: float) -> float:
                if t not in cache:
                    cache[t] = float(criterion.value(t))
                return cache[t]

            def values(ts: np.ndarray) -> np.ndarray:
                return np.array([value(float(t)) for t in ts])
        else:
            value = lambda t: float(criterion.value(t))  # noqa: E731
            values = criterion.values

        def search(b: tuple[float, float], per_decade: int, xatol: float = 1e-6,
                   maxiter: int = 200) -> SearchOutcome:
            return search_log_t(value, values, b, per_decade, xatol=xatol, maxiter=maxiter,
                                zero_wins_ties=False)

        out = None
        if coarse_to_fine:
            # located first -- by a cheaper criterion's minimum on two points per decade
            # (``criterion.locator``), else by this one's on one point per decade -- then
            # searched at full density within +-1.5 decades of that point.  A minimum on
            # the window's edge (or, located by a proxy, at t = 0) repeats the full search
            locator = getattr(criterion, "locator", None)
            coarse = log_grid(bounds, 2 if locator is not None else 1)
            vals = np.asarray(locator.values(coarse) if locator is not None
                              else values(coarse), dtype=float)
            vals = np.where(np.isfinite(vals), vals, np.inf)
            i = int(np.argmin(vals))
            v_zero = locator.value(0.0) if locator is not None else value(0.0)
            if vals[i] < v_zero and i < coarse.size - 1:
                lo, hi = bounds
                win = (max(lo, coarse[i] / 10 ** 1.5), min(hi, coarse[i] * 10 ** 1.5))
                fine = search(win, ppd)
                inner = fine.grid.size > 2 and 0 < int(np.argmin(fine.grid_values)) \
                    < fine.grid.size - 1
                if inner or (fine.boundary and locator is None):
                    out = fine
        if out is None:
            out = search(bounds, ppd)
        message = ""
        if out.boundary:
            message = (f"boundary fit: {criterion.name} is minimised at t = 0 (training adds "
                       "nothing beyond the initialisation)")
        elif out.at_upper:
            message = (f"t ran to the upper end of the search: {criterion.name} chooses an "
                       "interpolating fit")
        return TimeEstimate(t=out.t, llf=self.loglike(out.t, reml),
                            llf_zero=self.loglike(0.0, reml), boundary=out.boundary,
                            at_upper=out.at_upper, converged=out.converged,
                            search_bounds=bounds, grid=out.grid,
                            grid_llf=self.loglike_grid(out.grid, reml), message=message,
                            criterion=criterion.name, value=out.value,
                            grid_value=out.grid_values)

    # -- inference helpers ---------------------------------------------------------------
    def profile_interval(self, est: TimeEstimate, reml: bool = True,
                         alpha: float = 0.05) -> tuple[float, float]:
        """Profile-likelihood interval ``{t : 2 (l(t_hat) - l(t)) <= chi2_1(1 - alpha)}``."""
        from scipy.stats import chi2

        thr = est.llf - 0.5 * chi2.ppf(1 - alpha, 1)
        f = lambda u: self.loglike(math.exp(u), reml) - thr  # noqa: E731
        lo, hi = est.search_bounds
        if est.boundary or est.llf_zero >= thr:
            lower = 0.0
        else:
            a = math.log(lo) - 10 * math.log(10)
            b = math.log(est.t)
            lower = math.exp(brentq(f, a, b, xtol=1e-12)) if f(a) < 0 else 0.0
        # upper end: walk out in log t until below the threshold
        u = math.log(est.t) if est.t > 0 else math.log(lo)
        step = math.log(10) / 4
        upper = math.inf
        for _ in range(400):
            v = f(u + step)
            if not np.isfinite(v) or v < 0:
                upper = math.exp(brentq(f, u, u + step, xtol=1e-12)) if np.isfinite(v) else math.exp(u)
                break
            u += step
            if u > math.log(hi) + 10:
                break
        return lower, upper

    def wald_cov_log(self, est: TimeEstimate, reml: bool = True) -> np.ndarray:
        """Covariance of (log t, log s2) from the observed information (central differences).

        Returns a 2 x 2 matrix of NaN at the boundary t = 0, where log t has no
        information matrix.
        """
        if est.boundary or est.t <= 0:
            return np.full((2, 2), np.nan)
        pt = self.point(est.t, reml)
        th = np.array([math.log(est.t), math.log(pt.scale)])
        f = lambda v: self.loglike_full(math.exp(v[0]), math.exp(v[1]), reml)  # noqa: E731
        h = np.array([1e-3, 1e-3])
        H = np.empty((2, 2))
        f0 = f(th)
        for a in range(2):
            ea = np.zeros(2)
            ea[a] = h[a]
            H[a, a] = (f(th + ea) - 2 * f0 + f(th - ea)) / h[a] ** 2
            for b in range(a + 1, 2):
                eb = np.zeros(2)
                eb[b] = h[b]
                H[a, b] = H[b, a] = (f(th + ea + eb) - f(th + ea - eb) - f(th - ea + eb)
                                     + f(th - ea - eb)) / (4 * h[a] * h[b])
        try:
            cov = np.linalg.inv(-H)
        except np.linalg.LinAlgError:
            return np.full((2, 2), np.nan)
        if not (cov[0, 0] > 0 and cov[1, 1] > 0):
            return np.full((2, 2), np.nan)
        return cov


class DenseCovariance:
    """The general covariance model ``Var(y) = s2 V(theta)`` with V a dense matrix (reference).

    O(n^3) per evaluation by a Cholesky factor of ``V(theta)``; meant for checks on small
    n and as the starting point of models with several variance components
    (``docs/model.md`` section 8).  With ``V(t) = expm(tK)`` it reproduces
    :class:`SpectralProfile` to rounding.

    Parameters
    ----------
    y : ndarray (n,)
        Response minus offset.
    X : ndarray (n, p)
        Fixed-effects design.
    V : callable
        ``V(theta) -> ndarray (n, n)``, symmetric positive definite.

    Examples
    --------
    >>> import numpy as np, scipy.linalg
    >>> from mixednn.profile import DenseCovariance, SpectralProfile
    >>> rng = np.random.default_rng(0); A = rng.normal(size=(6, 3)); K = A @ A.T
    >>> y = rng.normal(size=6); X = np.ones((6, 1))
    >>> dense = DenseCovariance(y, X, lambda th: scipy.linalg.expm(th[0] * K))
    >>> lam, U = np.linalg.eigh(K)
    >>> fast = SpectralProfile(lam, U.T @ y, U.T @ X, np.trace(K), 6)
    >>> bool(np.isclose(dense.loglike_theta([0.3]), fast.loglike(0.3)))
    True
    """

    def __init__(self, y: np.ndarray, X: np.ndarray, V: Callable[[np.ndarray], np.ndarray]):
        self.y = np.asarray(y, dtype=float)
        self.X = np.asarray(X, dtype=float).reshape(self.y.shape[0], -1)
        self.V = V
        self.nobs = int(self.y.shape[0])
        self.p = int(self.X.shape[1])

    def point_theta(self, theta: np.ndarray, reml: bool = True) -> ProfilePoint:
        th = np.atleast_1d(np.asarray(theta, dtype=float))
        V = np.asarray(self.V(th), dtype=float)
        L = np.linalg.cholesky(V)
        Xw = scipy.linalg.solve_triangular(L, self.X, lower=True)
        yw = scipy.linalg.solve_triangular(L, self.y, lower=True)
        xwx = Xw.T @ Xw
        beta = np.linalg.solve(xwx, Xw.T @ yw) if self.p else np.empty(0)
        r = yw - Xw @ beta
        rss = float(r @ r)
        n, p = self.nobs, self.p
        dof = n - p if reml else n
        scale = rss / dof
        logdet_v = 2 * float(np.log(np.diag(L)).sum())
        logdet_x = float(np.linalg.slogdet(xwx)[1]) if p else 0.0
        llf = -0.5 * (dof * (LOG_2PI + math.log(scale)) + dof + logdet_v)
        if reml:
            llf -= 0.5 * logdet_x
        return ProfilePoint(float(th[0]), beta, rss, scale, llf, xwx, logdet_x)

    def loglike_theta(self, theta: np.ndarray, reml: bool = True) -> float:
        return self.point_theta(theta, reml).llf
