"""Kernel decomposition and the spectral REML/ML profile (model.md section 2).

One decomposition ``K = U diag(lam) U^T`` turns ``V(t) = s2 exp(tK)`` into a
weighted least-squares problem in the rotated basis, with weights
``w_i(t) = exp(-t lam_i)``.  After it, every evaluation of the profiled
likelihood costs O(n p^2) and ``log det V(t) = n log s2 + t tr(K)`` needs no
eigenvalues at all.

Layout: :class:`EigenBasis` (and its tridiagonal variant) hold the
decomposition and rotate vectors in and out of the eigenbasis;
:class:`SpectralProfile` holds the rotated response and design and evaluates the
criteria; :meth:`SpectralProfile.maximize` is the one place where ``t`` is
estimated.  A low-rank basis (``K = Phi Phi^T``) plugs in through
``rest_gram``: the part of ``Y^T Y`` outside the span of the leading
eigenvectors, on which every weight is 1.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
from scipy.optimize import brentq, minimize_scalar

__all__ = ["EigenBasis", "TridiagonalBasis", "LowRankBasis", "decompose", "SpectralProfile",
           "ProfilePoint",
           "TimeEstimate", "BoundaryFitWarning", "InterpolationWarning", "KernelClippedWarning"]

LOG_2PI = math.log(2 * math.pi)


class BoundaryFitWarning(UserWarning):
    """The likelihood is maximised at t = 0: training adds nothing beyond initialisation."""


class InterpolationWarning(UserWarning):
    """t ran to the upper end of the search: the fit interpolates the data."""


class KernelClippedWarning(UserWarning):
    """Tiny negative kernel eigenvalues (rounding) were set to zero."""


# ----------------------------------------------------------------------------- bases

class EigenBasis:
    """Exact eigendecomposition ``K = U diag(eigenvalues) U^T``.

    Parameters
    ----------
    eigenvalues : ndarray, shape (n,)
        Eigenvalues (ascending), already clipped at zero.
    eigenvectors : ndarray, shape (n, n)
        Orthonormal eigenvectors as columns.
    trace : float
        ``tr(K)``, taken from the kernel's diagonal (exact, no eigenvalue sum).
    """

    kind = "eigh"

    def __init__(self, eigenvalues: np.ndarray, eigenvectors: np.ndarray, trace: float):
        self.eigenvalues = np.asarray(eigenvalues, dtype=float)
        self.eigenvectors = eigenvectors
        self.trace = float(trace)

    @property
    def n(self) -> int:
        return int(self.eigenvectors.shape[0])

    def rotate(self, M: np.ndarray) -> np.ndarray:
        """``U^T M``: coordinates of the columns of ``M`` in the eigenbasis."""
        return self.eigenvectors.T @ M

    def unrotate(self, C: np.ndarray) -> np.ndarray:
        """``U C``: back from eigen-coordinates to the data basis."""
        return self.eigenvectors @ C


class TridiagonalBasis(EigenBasis):
    """``K = Q T Q^T`` (Householder) and ``T = V diag(lam) V^T``, so ``U = Q V``.

    LAPACK's ``sytrd`` reduces K to tridiagonal form in place; ``stevd`` (divide and
    conquer, fast on the strongly deflating NTK spectra) then finds the eigenpairs of T.  The reflectors Q are applied only to the few
    vectors that need them (``ormtr``), which skips the O(n^3) back-transformation
    that a full ``eigh`` performs.  Same eigenvalues and rotations as
    :class:`EigenBasis`, about half the cost at large n.
    """

    kind = "tridiagonal"

    def __init__(self, reflectors: np.ndarray, tau: np.ndarray, eigenvalues: np.ndarray,
                 tri_vectors: np.ndarray, trace: float):
        self.eigenvalues = np.asarray(eigenvalues, dtype=float)
        # sytrd(lower) stores H(i) = I - tau v v^T with v below the subdiagonal: the
        # same layout as a QR factorisation of K[1:, :-1], so ormqr applies Q to C[1:].
        self.reflectors = reflectors
        self.tau = tau
        self.tri_vectors = tri_vectors
        self.trace = float(trace)
        self._ormqr = scipy.linalg.get_lapack_funcs("ormqr", (reflectors,))

    @property
    def n(self) -> int:
        return int(self.tri_vectors.shape[0])

    def _apply_q(self, M: np.ndarray, trans: str) -> np.ndarray:
        M = np.asarray(M, dtype=float)
        vec = M.ndim == 1
        C = np.array(M.reshape(M.shape[0], -1), dtype=float, order="F")
        if self.n > 1:
            lwork = max(1, C.shape[1]) * 64
            sub, _, info = self._ormqr("L", trans, self.reflectors, self.tau, C[1:],
                                       lwork=lwork, overwrite_c=0)
            if info != 0:
                raise np.linalg.LinAlgError(f"LAPACK ormqr failed (info={info})")
            C[1:] = sub
        return C.ravel() if vec else C

    def rotate(self, M: np.ndarray) -> np.ndarray:
        return self.tri_vectors.T @ self._apply_q(M, "T")

    def unrotate(self, C: np.ndarray) -> np.ndarray:
        return self._apply_q(self.tri_vectors @ C, "N")

    @property
    def eigenvectors(self) -> np.ndarray:  # dense U, built only on demand
        return self.unrotate(np.eye(self.n))


class LowRankBasis(EigenBasis):
    """Exact low-rank basis ``K = U_m diag(eigenvalues) U_m^T`` from features ``K = Phi Phi^T``.

    ``U_m`` (n x m, orthonormal columns) spans the features; on its orthogonal
    complement K is zero, so every weight there is 1 and the profile needs only
    :meth:`rest_gram` of the data (model.md section 2, low-rank kernels).

    Parameters
    ----------
    eigenvalues : ndarray, shape (m,)
        Ascending, non-negative.
    eigenvectors : ndarray, shape (n, m)
        Orthonormal columns.
    trace : float
        ``tr(K) = ||Phi||_F^2``.
    """

    kind = "low_rank"

    @classmethod
    def from_features(cls, Phi: np.ndarray) -> "LowRankBasis":
        """From an n x m feature matrix (``K = Phi Phi^T``) by a thin SVD, O(n m^2)."""
        Phi = np.asarray(Phi, dtype=float)
        U, s, _ = scipy.linalg.svd(Phi, full_matrices=False, check_finite=False)
        return cls((s ** 2)[::-1], np.ascontiguousarray(U[:, ::-1]), float(np.sum(Phi * Phi)))

    @property
    def rank(self) -> int:
        return int(self.eigenvectors.shape[1])

    def rest_gram(self, Y: np.ndarray) -> np.ndarray:
        """``Y^T Y - (U^T Y)^T (U^T Y)``, from the projection residual (no cancellation)."""
        Y = np.asarray(Y, dtype=float).reshape(self.n, -1)
        R = Y - self.eigenvectors @ (self.eigenvectors.T @ Y)
        return R.T @ R


def _clip_spectrum(lam: np.ndarray, check: bool, what: str) -> np.ndarray:
    lam = np.asarray(lam, dtype=float)
    top = max(float(np.max(np.abs(lam))), np.finfo(float).tiny)
    n = lam.shape[0]
    hard = math.sqrt(np.finfo(float).eps) * top  # beyond rounding: not PSD
    if check and lam.min() < -hard:
        k = int((lam < -hard).sum())
        raise ValueError(
            f"{what} is not positive semi-definite: {k} eigenvalue(s) below "
            f"-{hard:.3g} (smallest {lam.min():.4g}, largest {top:.4g}); a training operator "
            "must be PSD — check how the kernel was built (symmetrise it, or add a small ridge)")
    soft = max(n, 100) * np.finfo(float).eps * top
    if check and lam.min() < -soft:
        warnings.warn(
            f"{what}: {int((lam < 0).sum())} slightly negative eigenvalue(s) (smallest "
            f"{lam.min():.3g}) set to zero as rounding error", KernelClippedWarning, stacklevel=4)
    return np.maximum(lam, 0.0)


def _compact_reflectors(c: np.ndarray) -> np.ndarray:
    """``c[1:, :-1]`` as an F-contiguous array stored in ``c``'s own buffer.

    Column j of the block moves from offset ``j n + 1`` to ``j (n - 1)``, never to a
    higher address, so a forward pass of (overlap-safe) slice copies compacts it in
    place: the reflectors then cost no second n x n matrix.
    """
    n = c.shape[0]
    if n < 2:
        return np.zeros((0, 0), order="F")
    flat = c.reshape(-1, order="F")  # a view: c is F-contiguous
    m = n - 1
    for j in range(m):
        flat[j * m:(j + 1) * m] = flat[j * n + 1:j * n + n]
    return flat[: m * m].reshape((m, m), order="F")


def decompose(K: np.ndarray, *, method: str = "auto", check_psd: bool = True,
              overwrite: bool = False, what: str = "the kernel") -> EigenBasis:
    """Decompose a symmetric PSD kernel matrix.

    Parameters
    ----------
    K : ndarray, shape (n, n)
        Symmetric kernel.  With ``overwrite=True`` its storage is reused.
    method : {"auto", "eigh", "tridiagonal"}
        ``"eigh"``: LAPACK ``syevd``, the reference.  ``"tridiagonal"``: Householder
        reduction with the reflectors kept implicit (faster at large n, same
        numbers to rounding).  ``"auto"`` picks the tridiagonal route for n >= 3000 (and
        whenever memory is tight it is the leaner of the two: 3 n x n matrices at peak).
    check_psd : bool
        Raise if eigenvalues are negative beyond rounding (``sqrt(eps) * max|lam|``);
        tiny negative ones are set to zero with a :class:`KernelClippedWarning`.

    Returns
    -------
    EigenBasis
    """
    n = K.shape[0]
    trace = float(np.trace(K))
    if method == "auto":
        method = "tridiagonal" if n >= 3000 else "eigh"
    if method == "eigh":
        lam, U = scipy.linalg.eigh(K, overwrite_a=overwrite, check_finite=False, driver="evd")
        return EigenBasis(_clip_spectrum(lam, check_psd, what), U, trace)
    if method != "tridiagonal":
        raise ValueError(f"unknown decomposition method {method!r}; use 'auto', 'eigh' or 'tridiagonal'")
    # K is symmetric, so K.T is a Fortran-ordered view of the same numbers.
    A = K.T if (overwrite and K.flags.c_contiguous) else np.array(K, order="F", copy=not overwrite)
    sytrd, sytrd_lwork = scipy.linalg.get_lapack_funcs(("sytrd", "sytrd_lwork"), (A,))
    lwork = scipy.linalg.lapack._compute_lwork(sytrd_lwork, n, lower=1)
    c, d, e, tau, info = sytrd(A, lower=1, lwork=lwork, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"LAPACK sytrd failed (info={info})")
    reflectors = _compact_reflectors(c)
    del c, A
    lam, V = scipy.linalg.eigh_tridiagonal(d, e, lapack_driver="stevd", check_finite=False)
    return TridiagonalBasis(reflectors, tau, _clip_spectrum(lam, check_psd, what), V, trace)


# ---------------------------------------------------------------------------- profile

@dataclass
class ProfilePoint:
    """Profiled quantities at one training time."""

    t: float
    beta: np.ndarray
    rss: float
    scale: float
    llf: float
    xwx: np.ndarray  # X~^T W X~ (p x p), so that cov(beta) = scale * inv(xwx)
    logdet_xwx: float


@dataclass
class TimeEstimate:
    """Result of the one-dimensional search for t."""

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
    # which rule chose t ("reml", "ml", or a prediction-error criterion of
    # mixednn.stopping); for a criterion, its minimum and its values on ``grid``
    criterion: str = ""
    value: float = float("nan")
    grid_value: np.ndarray | None = field(default=None, repr=False)


class SpectralProfile:
    """REML and ML criteria as functions of t in the rotated basis.

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
    """

    def __init__(self, eigenvalues: np.ndarray, y_rot: np.ndarray, X_rot: np.ndarray,
                 trace: float, nobs: int, rest_gram: np.ndarray | None = None):
        self.lam = np.asarray(eigenvalues, dtype=float)
        self.y_rot = np.asarray(y_rot, dtype=float)
        self.X_rot = np.asarray(X_rot, dtype=float).reshape(self.lam.shape[0], -1)
        self.trace = float(trace)
        self.nobs = int(nobs)
        self.p = self.X_rot.shape[1]
        self._A = np.column_stack([self.X_rot, self.y_rot])
        self.rest_gram = rest_gram
        self._rest_root = None
        if rest_gram is not None:
            ev, evec = np.linalg.eigh(0.5 * (rest_gram + rest_gram.T))
            self._rest_root = (evec * np.sqrt(np.maximum(ev, 0.0))).T

    # -- core evaluation -------------------------------------------------------------
    def weights(self, t: float) -> np.ndarray:
        return np.exp(-t * self.lam)

    def point(self, t: float, reml: bool = True) -> ProfilePoint:
        """Profile at ``t`` by a QR of the weighted rotated data (accurate, O(n p^2))."""
        p, n = self.p, self.nobs
        A = np.sqrt(self.weights(t))[:, None] * self._A
        if self._rest_root is not None:
            A = np.vstack([A, self._rest_root])
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
        llf = -0.5 * (dof * (LOG_2PI + math.log(scale)) + dof + t * self.trace)
        if reml:
            llf -= 0.5 * logdet
        return ProfilePoint(t, beta, rss, scale, llf, Rx.T @ Rx, logdet)

    def loglike(self, t: float, reml: bool = True) -> float:
        """Profiled (s2 and beta out) log-likelihood at t (c = 0 convention)."""
        return self.point(t, reml).llf

    def score(self, t: float, reml: bool = True) -> float:
        """Analytic derivative d l / d t of the profiled criterion.

        By the envelope theorem only the explicit t-dependence counts:
        ``dRSS/dt = -sum lam_i w_i r~_i^2`` and
        ``d log det(X~^T W X~)/dt = -tr((X~^T W X~)^{-1} X~^T Lam W X~)``.
        At t = 0 (REML) this is ``1/2 [r0^T K r0 / s2 - tr((I - H) K)]`` of model.md.
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
        if reml:
            return -0.5 * ((n - p) * (LOG_2PI + math.log(scale)) + pt.rss / scale
                           + t * self.trace + pt.logdet_xwx)
        return -0.5 * (n * (LOG_2PI + math.log(scale)) + pt.rss / scale + t * self.trace)

    def loglike_grid(self, ts: np.ndarray, reml: bool = True) -> np.ndarray:
        """Profiled log-likelihood on many t at once (cross-products, vectorised)."""
        ts = np.asarray(ts, dtype=float)
        p, n = self.p, self.nobs
        q = p + 1
        A = self._A
        W = np.exp(-np.outer(ts, self.lam))
        k = A.shape[0]
        if k * q * q <= 20_000_000:
            C = (W @ (A[:, :, None] * A[:, None, :]).reshape(k, q * q)).reshape(-1, q, q)
        else:
            C = np.stack([(A * w[:, None]).T @ A for w in W])
        if self.rest_gram is not None:
            C = C + self.rest_gram
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
            val = -0.5 * (dof * (LOG_2PI + math.log(rss / dof)) + dof + ts[i] * self.trace)
            out[i] = val - 0.5 * logdet if reml else val
        return out

    # -- search ------------------------------------------------------------------------
    def search_bounds(self) -> tuple[float, float]:
        """Range of t searched on the log scale.

        From ``1e-8 / lam_max`` (nothing learned yet) to the time at which the
        smallest resolvable eigen-direction is learned (``50 / lam_min+``, where
        ``exp(-t lam) < 1e-21`` for every direction), at most
        18 decades.
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
        """Maximise the profiled criterion over t >= 0.

        A log-spaced grid locates the global maximum, a bounded Brent search on
        log t refines it, and the boundary t = 0 is compared explicitly.
        """
        lo, hi = self.search_bounds()
        m = int(np.ceil(np.log10(hi / lo) * points_per_decade)) + 1
        grid = np.logspace(np.log10(lo), np.log10(hi), m)
        vals = self.loglike_grid(grid, reml)
        vals = np.where(np.isfinite(vals), vals, -np.inf)
        l0 = self.loglike(0.0, reml)
        i = int(np.argmax(vals))
        a = math.log(grid[i - 1]) if i > 0 else math.log(lo) - 10 * math.log(10)
        b = math.log(grid[min(i + 1, m - 1)])

        def neg(u: float) -> float:
            v = self.loglike(math.exp(u), reml)
            return -v if np.isfinite(v) else np.inf

        converged = True
        message = ""
        t_hat, l_hat = float(grid[i]), float(vals[i])
        if np.isfinite(vals[i]):
            opt = minimize_scalar(neg, bounds=(a, b), method="bounded",
                                  options={"xatol": 1e-10, "maxiter": 500})
            if opt.success and -opt.fun >= l_hat:
                t_hat, l_hat = math.exp(opt.x), -float(opt.fun)
            converged = bool(opt.success)
            t_hat, l_hat = self._polish(t_hat, l_hat, a, b, reml)
        at_upper = i == m - 1
        boundary = l0 >= l_hat
        if boundary:
            t_hat, l_hat = 0.0, l0
            message = ("boundary fit: the likelihood is maximised at t = 0 (training captures "
                       "nothing beyond the initialisation)")
        elif at_upper:
            message = ("t ran to the upper end of the search: the fit interpolates the training "
                       "data (the kernel is too flexible, or the noise variance is near zero)")
        return TimeEstimate(t=t_hat, llf=l_hat, llf_zero=l0, boundary=boundary,
                            at_upper=at_upper and not boundary, converged=converged,
                            search_bounds=(lo, hi), grid=grid, grid_llf=vals, message=message)

    def _polish(self, t: float, l: float, a: float, b: float, reml: bool) -> tuple[float, float]:
        """Refine the maximiser as the root of the analytic score: Brent on l locates
        t only to ~sqrt(eps); the score's root is sharp to rounding."""
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
                    return math.exp(u_new), l_new
        except (ValueError, RuntimeError):
            pass
        return t, l

    def minimize_criterion(self, criterion: Any, reml: bool = True,
                           points_per_decade: int | None = None) -> TimeEstimate:
        """Minimise a prediction-error criterion of t over t >= 0 (the alternatives to REML).

        The same search as :meth:`maximize` (log-spaced grid over :meth:`search_bounds`,
        bounded Brent on log t between the grid neighbours of the best point, explicit
        comparison with t = 0), applied to ``criterion``: an object with ``name``,
        ``values(ts)`` (vectorised) and ``value(t)``, e.g. the GCV, Cp, leave-one-out and
        K-fold criteria of :mod:`mixednn.stopping`.

        Returns
        -------
        TimeEstimate
            ``criterion``, ``value`` and ``grid_value`` describe the minimised rule;
            ``llf``, ``llf_zero`` and ``grid_llf`` are the profiled REML (or ML)
            log-likelihood at the chosen t, at 0 and on the grid, for comparison.
        """
        lo, hi = self.search_bounds()
        ppd = points_per_decade or getattr(criterion, "points_per_decade", 12)
        m = int(np.ceil(np.log10(hi / lo) * ppd)) + 1
        grid = np.logspace(np.log10(lo), np.log10(hi), m)
        vals = np.asarray(criterion.values(grid), dtype=float)
        vals = np.where(np.isfinite(vals), vals, np.inf)
        v0 = float(criterion.value(0.0))
        i = int(np.argmin(vals))
        t_hat, v_hat = float(grid[i]), float(vals[i])
        converged = bool(np.isfinite(v_hat))
        if converged:
            a = math.log(grid[i - 1]) if i > 0 else math.log(lo) - 10 * math.log(10)
            b = math.log(grid[min(i + 1, m - 1)])
            f = lambda u: (lambda v: v if np.isfinite(v) else np.inf)(  # noqa: E731
                criterion.value(math.exp(u)))
            opt = minimize_scalar(f, bounds=(a, b), method="bounded",
                                  options={"xatol": 1e-6, "maxiter": 200})
            converged = bool(opt.success)
            if opt.success and opt.fun <= v_hat:
                t_hat, v_hat = math.exp(opt.x), float(opt.fun)
        at_upper = i == m - 1
        boundary = not (v_hat < v0)
        message = ""
        if boundary:
            t_hat, v_hat = 0.0, v0
            message = (f"boundary fit: {criterion.name} is minimised at t = 0 (training adds "
                       "nothing beyond the initialisation)")
        elif at_upper:
            message = (f"t ran to the upper end of the search: {criterion.name} chooses an "
                       "interpolating fit")
        return TimeEstimate(t=t_hat, llf=self.loglike(t_hat, reml), llf_zero=self.loglike(0.0, reml),
                            boundary=boundary, at_upper=at_upper and not boundary,
                            converged=converged, search_bounds=(lo, hi), grid=grid,
                            grid_llf=self.loglike_grid(grid, reml), message=message,
                            criterion=criterion.name, value=v_hat, grid_value=vals)

    # -- inference helpers ---------------------------------------------------------------
    def profile_interval(self, est: TimeEstimate, reml: bool = True,
                         alpha: float = 0.05) -> tuple[float, float]:
        """Profile-likelihood interval ``{t : 2 (l(t_hat) - l(t)) <= chi2_1(1 - alpha)}``."""
        from scipy.stats import chi2

        thr = est.llf - 0.5 * chi2.ppf(1 - alpha, 1)
        f = lambda u: self.loglike(math.exp(u), reml) - thr  # noqa: E731
        lo, hi = est.search_bounds
        # lower end
        if est.boundary or est.llf_zero >= thr:
            lower = 0.0
        else:
            a = math.log(lo) - 10 * math.log(10)
            b = math.log(est.t)
            lower = math.exp(brentq(f, a, b, xtol=1e-12)) if f(a) < 0 else 0.0
        # upper end: walk out in log t until below the threshold
        u0 = math.log(est.t) if est.t > 0 else math.log(lo)
        u = u0
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
