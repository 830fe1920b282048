"""Exact fits without the full eigendecomposition: the Krylov basis (``decomposition="lanczos"``).

Every quantity the REML/ML fit needs is a function of ``exp(-tK)`` applied to the few
columns ``B = [y - f0, X]``, plus ``log det V = n log s2 + t tr(K)``, which needs no
eigenvalue at all (``docs/model.md`` section 2.1).  Block Lanczos on K started from B
gives an orthonormal basis ``Q`` of the block Krylov space
``span{B, K B, K^2 B, ...}`` and the projection ``T = Q^T K Q``; with
``T = S diag(theta) S^T``,

    exp(-tK) B  ~  Q exp(-tT) Q^T B = (Q S) diag(exp(-t theta)) (Q S)^T B

for every t of the search from one basis (the Lanczos approximation of a matrix
function, exact when the space is K-invariant).  Since the space contains B itself,
``Y = [y - f0, X]`` lies entirely inside ``span(Q)``, so the rotated data
``S^T Q^T Y`` carry all of ``Y^T Y``: there is no "rest" outside the basis, and the
REML/ML profile is :class:`~mixednn.profile.SpectralProfile` on the Ritz values
``theta`` (:class:`KrylovProfile`) with the exact ``tr K`` from the kernel's diagonal.
The BLUP ``(I - exp(-tK)) r`` and the mean at new rows ``k*^T phi_t(K) r`` are functions
of K applied to ``r`` in ``span(B)`` as well, so they come from the same basis.

How many steps
--------------
The number of block steps is not fixed: after each step (each few steps once the
space is large) the profile of the Ritz pairs is compared with the previous one, on
the log grid of the search (12 points per decade over the profile's search range,
:meth:`~mixednn.profile.SpectralProfile.search_bounds`), for REML and ML: the profiled
log-likelihood, the residual sum of squares ``RSS(t)`` and ``beta(t)``
(:func:`profile_change`); and, at the REML and ML maxima of that grid, the vectors
``phi_t(K) [y - f0, X]`` that the BLUP and the predictions at new rows multiply
(:func:`filter_change`: a vector converges more slowly than the quadratic forms of
the likelihood).  The space is converged when, at every grid point within
:data:`LIKELIHOOD_MARGIN` log-likelihood units of the maximum, all of them changed by
less than :data:`KRYLOV_TOL` (1e-10) relative, at two consecutive checks.  Grid
points further below the maximum take
many more steps to settle (``exp(-tK)`` at large t resolves the small eigenvalues,
which Lanczos finds last) and cannot hold the maximum: there the Lanczos values
approximate the likelihood from above (Gauss quadrature of the completely monotone
``exp(-t x)``; observed on every kernel tried, to rounding), so a point that is far
below the maximum before convergence is below it after.  The margin covers the
estimate, its Brent and score-root refinements, the Wald curvature and profile
intervals down to ``alpha`` of about 1e-23.  Measured on n = 500 (ReLU NTK depth 1
and 2, Gaussian kernels with slowly and fast decaying spectra): 32-56 Krylov vectors
(8-14 block steps of 4 columns), with ``t``, ``beta``, ``s2`` and the log-likelihood
equal to the dense ``eigh`` route to 1e-13 relative; at n = 1000-4000 (depth-2 ReLU
NTK, ``benchmarks/bench_fit.py``) 52 vectors, estimates to 1e-14 and predictions with
intervals at new rows to 1e-12.

Reorthogonalisation is full (two passes of classical Gram-Schmidt against every
previous vector, "twice is enough"); a block whose new directions fall below
rounding (``K``-invariant space, a low-rank kernel) is deflated and, once empty,
ends the iteration with the exact answer.  If the criterion is not met within
``max_dim`` vectors, :func:`lanczos_basis` says so (``converged`` False) and the
model falls back to the dense decomposition.

What needs the full spectrum
----------------------------
The Ritz values are not the eigenvalues of K.  Whatever sums over every
eigen-direction -- the effective degrees of freedom ``tr(I - exp(-tK))``, GCV's and
Cp's trace, leave-one-out and K-fold residuals, free modes, the exact null of the
score test, the simulated likelihood-ratio null, the spectrum plots, the training
path -- is either computed from the eigenvalues of K on demand
(:meth:`KrylovBasis.kernel_eigenvalues`, :meth:`KrylovBasis.residual_eigenvalues`:
LAPACK without eigenvectors, about half the cost of a full ``eigh``), approximated
with the approximation named (:class:`ResidualSpectrum`: the score test's
``method="leading"``), or refused with an error that names ``decomposition=``
(:func:`mixednn.profile.check_complete_spectrum`).

Beyond memory, and on a device
------------------------------
The basis needs K only through products with thin blocks, its diagonal and (for the
score test's moments) ``||K||_F^2``.  ``K`` may therefore be a
:class:`~mixednn.kernels.operator.KernelOperator` instead of a matrix
(``MixedLMNTK(..., matrix_free=True)``): every product evaluates the kernel's upper
triangle tile by tile from the network inputs, memory O(n b) for a tile of b rows, and
nothing n x n is stored; with ``device="cuda"`` the tiles
(:func:`mixednn.kernels.torch_ntk.ntk_torch`) and the products run on a torch device in
float64.  The estimates equal the stored-kernel route's to rounding
(``tests/test_matrix_free.py``).  A matrix-free product costs a kernel evaluation of
n^2 / 2 entries instead of an n^2 matrix product: measured (depth-2 ReLU NTK, one
thread, ``benchmarks/bench_matrix_free.py``) 17 passes, 0.66 s each at n = 2000 and 3.2 s
at n = 5000; peak resident memory 349 MB at n = 5000 (one stored kernel: 200 MB).  What
needs every eigenvalue assembles the matrix from the tiles on demand
(:func:`dense_kernel`, refused with the memory it needs when it does not fit).

Prediction intervals at new rows need ``k*^T g_t(K) k*`` with
``g_t(x) = (1 - exp(-tx)) / x^2`` (``docs/model.md`` eq. (11)), and ``k*`` is not in the
Krylov space of the fit: :class:`KrylovCrossRotation` runs a block Lanczos
quadrature started from the cross-kernel rows themselves, to the same relative
tolerance.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Callable

import numpy as np
import scipy.linalg

from .kernels.operator import KernelOperator
from .numerics import LOG_2PI, check_kernel_memory, flow_filter
from .profile import SpectralProfile, log_grid
from .spectral import CrossRotation, DenseCrossRotation, EigenBasis, clip_spectrum

__all__ = ["BlockLanczos", "KrylovProfile", "KrylovBasis", "KrylovCrossRotation",
           "ResidualSpectrum", "lanczos_basis", "profile_change", "filter_change",
           "likelihood_times", "filtered_norms", "kernel_trace", "dense_kernel",
           "KRYLOV_TOL", "LIKELIHOOD_MARGIN", "LANCZOS_AUTO_MIN_N"]

#: Relative change of the REML/ML quantities below which the Krylov space is converged.
KRYLOV_TOL = 1e-10
#: Grid points more than this many log-likelihood units below the maximum are left out
#: of the convergence check (they cannot hold the maximum; module notes).
LIKELIHOOD_MARGIN = 50.0
#: ``decomposition="auto"`` uses the Krylov basis from this many rows on.  Measured with
#: ``benchmarks/bench_fit.py`` (depth-2 ReLU NTK, d = 10, one thread, ratios to a bare
#: ``numpy.linalg.eigh`` of the same kernel): the whole fit (kernel, decomposition, REML,
#: score test) costs 0.9 / 0.23 / 0.09 by the Krylov route at n = 1000 / 2000 / 4000,
#: against 2.1 / 1.2 / 0.66 by the dense default fit (eigh below 3000 rows, tridiagonal
#: from 3000, each with the prediction check).  The Krylov route wins from about 1000
#: rows, but below this size the dense fit takes seconds and keeps what reads the whole
#: spectrum in the default fit (the prediction check, the stopping diagnostic, the
#: exact score test, the effective df in the summary); from here on the dense route
#: takes tens of seconds and more (13-26 s for the bare eigh at n = 4000).
LANCZOS_AUTO_MIN_N = 3000


# ================================================================================ engine

class BlockLanczos:
    """Block Lanczos on a symmetric operator, with full reorthogonalisation.

    Parameters
    ----------
    apply : callable
        ``apply(V) -> A V`` for an n x b block V (A symmetric).
    start : ndarray, shape (n, b)
        The starting block; its span is the first block of the basis (columns that are
        linearly dependent to rounding are deflated).
    drop_tol : float
        A new direction whose norm after orthogonalisation is below
        ``drop_tol * ||A||`` (estimated from the products seen) is deflated.

    Notes
    -----
    The basis ``Q`` (n x dim, orthonormal to rounding) and the projection
    ``T = Q^T A Q`` are built one block at a time; ``T`` is filled from the products
    themselves (the Rayleigh quotient, exact to rounding also across non-adjacent
    blocks).  :meth:`step` multiplies the pending block, orthogonalises the product
    twice against every previous vector, and splits off the next block by a pivoted QR.
    """

    def __init__(self, apply: Callable[[np.ndarray], np.ndarray], start: np.ndarray, *,
                 drop_tol: float = 1e3 * np.finfo(float).eps):
        start = np.asarray(start, dtype=float)
        if start.ndim == 1:
            start = start[:, None]
        self.apply = apply
        self.n = int(start.shape[0])
        self.drop_tol = float(drop_tol)
        cap = min(self.n, max(4 * start.shape[1], 64))
        self._Q = np.zeros((self.n, cap), order="F")
        self._T = np.zeros((cap, cap))
        self.dim = 0               # vectors whose products are in T
        self.scale = 0.0           # running estimate of ||A||
        self.coupling = np.zeros((0, 0))  # next block's coefficients: A Q_last = ... + Q_next C
        self.steps = 0
        norm = float(np.linalg.norm(start)) if start.size else 0.0
        block, _ = self._split(start, norm)
        self._pending = block.shape[1]
        self._Q[:, :self._pending] = block
        self.exhausted = self._pending == 0

    # -- storage ----------------------------------------------------------------------
    def _reserve(self, size: int) -> None:
        cap = self._Q.shape[1]
        if size <= cap:
            return
        new = min(self.n, max(size, 2 * cap))
        Q = np.zeros((self.n, new), order="F")
        Q[:, :cap] = self._Q
        T = np.zeros((new, new))
        T[:cap, :cap] = self._T
        self._Q, self._T = Q, T

    @property
    def basis(self) -> np.ndarray:
        """``Q`` (n x dim): the vectors whose products are in :attr:`projected`."""
        return self._Q[:, :self.dim]

    @property
    def projected(self) -> np.ndarray:
        """``T = Q^T A Q`` (dim x dim, symmetric)."""
        return self._T[:self.dim, :self.dim]

    # -- one step ------------------------------------------------------------------------
    def _split(self, W: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """Orthonormal basis of the significant part of ``range(W)`` (pivoted QR) and the
        coefficients C with ``W ~ basis @ C``."""
        if W.shape[1] == 0 or not scale > 0:
            return np.zeros((self.n, 0)), np.zeros((0, W.shape[1]))
        Qn, R, piv = scipy.linalg.qr(W, mode="economic", pivoting=True, check_finite=False)
        d = np.abs(np.diag(R))
        r = int(np.sum(d > self.drop_tol * scale))
        C = np.zeros((r, W.shape[1]))
        C[:, piv] = R[:r]
        return np.asarray(Qn[:, :r]), C

    def step(self) -> bool:
        """Multiply the pending block and orthogonalise the product: one block step.

        Returns
        -------
        bool
            False when there was nothing to multiply: the space is A-invariant
            (:attr:`exhausted`) and the basis gives exact results.
        """
        b = self._pending
        if b == 0:
            self.exhausted = True
            return False
        s, e = self.dim, self.dim + b
        V = self._Q[:, s:e]
        W = np.asarray(self.apply(V), dtype=float)
        self.scale = max(self.scale, float(np.max(np.linalg.norm(W, axis=0))))
        Qe = self._Q[:, :e]
        C = Qe.T @ W                      # Rayleigh quotient: column block of T
        self._T[:e, s:e] = C
        self._T[s:e, :s] = C[:s].T
        self._T[s:e, s:e] = 0.5 * (C[s:] + C[s:].T)
        W -= Qe @ C
        W -= Qe @ (Qe.T @ W)             # twice is enough
        new, coef = self._split(W, self.scale)
        if new.shape[1]:
            # a direction that survived only just (norm near drop_tol) carries the rounding
            # of the two passes relative to its own size: one more pass restores it
            new -= Qe @ (Qe.T @ new)
            new, R2 = np.linalg.qr(new)
            coef = R2 @ coef
        self.dim = e
        self.steps += 1
        self.coupling = coef
        r = new.shape[1]
        self._reserve(e + r)
        self._Q[:, e:e + r] = new
        self._pending = r
        if r == 0 or e == self.n:
            self._pending = 0
            self.exhausted = True
        return True

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and their vectors in the basis (``T = S diag S^T``)."""
        if self.dim == 0:
            return np.zeros(0), np.zeros((0, 0))
        theta, S = scipy.linalg.eigh(self.projected, check_finite=False, driver="evd")
        return theta, S

    def residual_norms(self, S: np.ndarray) -> np.ndarray:
        """``||A (Q s) - theta Q s||`` for the Ritz vectors (columns of S): the norm of
        the next block's coefficients on the last block's rows of s."""
        b = self.coupling.shape[1]
        if self.exhausted or self.coupling.size == 0:
            return np.zeros(S.shape[1])
        return np.linalg.norm(self.coupling @ S[self.dim - b:self.dim], axis=0)


# ================================================================================ profile

class KrylovProfile(SpectralProfile):
    """The REML/ML profile on the Ritz pairs of a Krylov space (``docs/model.md`` section 2).

    The likelihood, ``beta``, ``s2`` and the covariance of ``beta`` are those of
    :class:`~mixednn.profile.SpectralProfile` on the Ritz values ``theta`` and the
    rotated data ``S^T Q^T [y - f0, X]`` (which hold all of ``Y^T Y``), with the exact
    ``tr K``; ``nobs`` is n.  ``lam`` are *not* the eigenvalues of K:
    :attr:`complete_spectrum` is False, and every consumer that sums over the
    eigen-directions refuses it (:func:`mixednn.profile.check_complete_spectrum`).
    """

    complete_spectrum = False

    @property
    def dimension(self) -> int:
        """Dimension of the Krylov space (number of Ritz values)."""
        return int(self.lam.shape[0])


def _grid_quantities(prof: SpectralProfile, ts: np.ndarray
                     ) -> tuple[dict[bool, np.ndarray], np.ndarray, np.ndarray]:
    """REML and ML log-likelihoods, RSS and beta on a grid: the QR evaluation of
    :meth:`~mixednn.profile.SpectralProfile.point` (no cancellation), batched over t."""
    p, n = prof.p, prof.nobs
    A = np.sqrt(np.exp(-np.outer(ts, prof.lam)))[:, :, None] * prof.data_block[None]
    R = np.linalg.qr(A, mode="r")
    if R.shape[1] < p + 1:  # a space smaller than the data block
        R = np.concatenate([R, np.zeros((R.shape[0], p + 1 - R.shape[1], p + 1))], axis=1)
    rss = R[:, p, p] ** 2
    with np.errstate(all="ignore"):
        if p:
            d = np.abs(np.diagonal(R[:, :p, :p], axis1=1, axis2=2))
            ok = (d.min(axis=1) > 1e-300) & np.all(np.isfinite(d), axis=1)
            logdet = np.where(ok, 2 * np.log(np.where(ok[:, None], d, 1.0)).sum(axis=1), -np.inf)
            Rx = np.where(ok[:, None, None], R[:, :p, :p], np.eye(p))
            beta = np.linalg.solve(Rx, R[:, :p, p:p + 1])[..., 0]
            beta[~ok] = np.nan
        else:
            ok = np.ones(ts.shape[0], dtype=bool)
            logdet = np.zeros(ts.shape[0])
            beta = np.zeros((ts.shape[0], 0))
        ll = {}
        for reml in (True, False):
            dof = n - p if reml else n
            val = -0.5 * (dof * (LOG_2PI + np.log(rss / dof)) + dof + ts * prof.trace
                          - prof.sum_log_weights)
            if reml:
                val = val - 0.5 * logdet
            ll[reml] = np.where(ok & (rss > 0), val, -np.inf)
    return ll, rss, beta


def profile_change(new: SpectralProfile, old: SpectralProfile,
                   margin: float = LIKELIHOOD_MARGIN) -> float:
    """Largest relative change of the REML/ML profile between two Krylov spaces.

    On the search grid of ``new`` (12 points per decade), at the points where either
    profile's REML or ML log-likelihood is within ``margin`` of its maximum: the
    log-likelihoods, ``RSS(t)`` and ``beta(t)`` (max-norm, relative to ``max |beta|``).

    Returns
    -------
    float
        ``inf`` when a compared value is not finite in one profile only.
    """
    ts = log_grid(new.search_bounds(), 12)
    ll_n, rss_n, b_n = _grid_quantities(new, ts)
    ll_o, rss_o, b_o = _grid_quantities(old, ts)
    sel = np.zeros(ts.shape[0], dtype=bool)
    for reml in (True, False):
        for ll in (ll_n[reml], ll_o[reml]):
            ok = np.isfinite(ll)
            if ok.any():
                sel |= ok & (ll >= ll[ok].max() - margin)
    if not sel.any():
        return math.inf
    worst = 0.0
    with np.errstate(all="ignore"):
        pairs = [(ll_n[True], ll_o[True]), (ll_n[False], ll_o[False]), (rss_n, rss_o)]
        for a, b in pairs:
            a, b = a[sel], b[sel]
            fa, fb = np.isfinite(a), np.isfinite(b)
            if np.any(fa != fb):
                return math.inf
            if fa.any():
                worst = max(worst, float(np.max(np.abs(a[fa] - b[fa])
                                                / np.maximum(np.abs(a[fa]), 1e-300))))
        if b_n.shape[1]:
            a, b = b_n[sel], b_o[sel]
            ok = np.all(np.isfinite(a), axis=1) & np.all(np.isfinite(b), axis=1)
            if ok.any():
                size = np.maximum(np.max(np.abs(a[ok]), axis=1), 1e-300)
                worst = max(worst, float(np.max(np.max(np.abs(a[ok] - b[ok]), axis=1) / size)))
    return worst


def _ritz_profile(engine: BlockLanczos, B: np.ndarray, trace: float, check_psd: bool,
                  what: str) -> tuple[KrylovProfile, np.ndarray, np.ndarray]:
    theta, S = engine.ritz()
    theta = clip_spectrum(theta, check_psd, what, n=engine.n)
    Yr = S.T @ (engine.basis.T @ B)
    prof = KrylovProfile(theta, Yr[:, 0], Yr[:, 1:], trace, engine.n)
    return prof, S, Yr


def likelihood_times(prof: SpectralProfile) -> np.ndarray:
    """The REML and ML maxima of a profile on its search grid (the grid points)."""
    ts = log_grid(prof.search_bounds(), 12)
    ll, _, _ = _grid_quantities(prof, ts)
    out = []
    for reml in (True, False):
        v = ll[reml]
        if np.isfinite(v).any():
            out.append(float(ts[int(np.argmax(np.where(np.isfinite(v), v, -np.inf)))]))
    return np.unique(out)


def filter_change(new: tuple, old: tuple, ts: np.ndarray) -> float:
    """Largest relative change of ``phi_t(K) [y - f0, X]`` between two Krylov spaces.

    ``new`` and ``old`` are ``(Q, S, theta, Yr)``: basis, Ritz vectors, Ritz values and
    rotated data, so that ``phi_t(K) Y ~ Q S diag(phi_t(theta)) Yr`` with
    ``phi_t(x) = (1 - exp(-tx)) / x``.  Predictions at new rows are ``k*^T`` times these
    vectors (the BLUP is K times them), and a vector converges more slowly than the
    quadratic forms of the likelihood (measured at n = 4000: 44 Krylov vectors give the
    likelihood to 1e-15 but ``phi_t(K) r`` to 2e-8; 52 give 5e-11).

    Returns
    -------
    float
        The largest, over ``ts`` and the columns, of ``||new - old|| / ||new||``.
    """
    worst = 0.0
    for t in ts:
        F = [Q @ (S @ (flow_filter(t, theta)[:, None] * Yr)) for Q, S, theta, Yr in (new, old)]
        size = np.maximum(np.linalg.norm(F[0], axis=0), 1e-300)
        worst = max(worst, float(np.max(np.linalg.norm(F[0] - F[1], axis=0) / size)))
    return worst


def kernel_trace(K: "np.ndarray | KernelOperator") -> float:
    """``tr K`` of a stored kernel or of a :class:`~mixednn.kernels.operator.KernelOperator`."""
    return K.trace() if isinstance(K, KernelOperator) else float(np.trace(K))


def dense_kernel(K: "np.ndarray | KernelOperator") -> np.ndarray:
    """The n x n matrix (assembled from the tiles of an operator, on demand: for what needs
    every eigenvalue; refused with the option named when it does not fit in memory)."""
    if not isinstance(K, KernelOperator):
        return K
    check_kernel_memory(K.n, n_matrices=2)
    return K.dense()


def _next_check(dim: int, block: int) -> int:
    """Dimension of the next convergence check: every block step up to 256 vectors, then
    every 10% (the eigendecomposition of T, O(dim^3), stays a small part of the work)."""
    return dim + max(block, dim // 10 if dim > 256 else block)


def lanczos_basis(K: np.ndarray, B: np.ndarray, trace: float | None = None, *,
                  tol: float = KRYLOV_TOL, margin: float = LIKELIHOOD_MARGIN,
                  max_dim: int | None = None, check_psd: bool = True,
                  what: str = "the kernel") -> "KrylovBasis":
    """The Krylov basis of a fit: block Lanczos on K from ``B = [y - f0, X]``.

    Parameters
    ----------
    K : ndarray, shape (n, n), or KernelOperator
        Symmetric PSD kernel (kept by the basis: new rows, and what needs the full
        spectrum, use it; never modified), or a
        :class:`~mixednn.kernels.operator.KernelOperator` that applies it tile by tile
        without storing it (``matrix_free=True``, ``device=``; module notes).
    B : ndarray, shape (n, 1 + p)
        ``[y - f0, X]`` (whitened with precision weights): the response first.
    trace : float, optional
        ``tr K`` (default: from the diagonal of K, or the operator's ``trace()``).
    tol, margin : float
        The convergence criterion (module notes): relative change of the REML/ML
        log-likelihood, RSS and beta below ``tol`` at the grid points within ``margin``
        of the maximum (:func:`profile_change`), and of the vectors
        ``phi_t(K) [y - f0, X]`` behind the BLUP and the predictions at the REML and ML
        grid maxima (:func:`filter_change`), at two consecutive checks.
    max_dim : int, optional
        Largest Krylov dimension tried (default: n for n <= 2000, else
        ``max(500, n // 8)``, beyond which the dense decomposition is cheaper).
    check_psd : bool
        Raise if a Ritz value is negative beyond rounding (as
        :func:`mixednn.spectral.decompose`; Ritz values lie within K's spectrum, so only
        the part of the spectrum the space explores is checked).

    Returns
    -------
    KrylovBasis
        ``converged`` False when ``max_dim`` was reached first.

    Notes
    -----
    Cost: one n x (1 + p) product with K per block step plus O(n dim (1 + p)) for the
    reorthogonalisation, and an eigendecomposition of the small ``T`` per check.
    """
    if not isinstance(K, KernelOperator):
        K = np.asarray(K)
    n = K.shape[0]
    B = np.asarray(B, dtype=float).reshape(n, -1)
    trace = kernel_trace(K) if trace is None else float(trace)
    if max_dim is None:
        max_dim = n if n <= 2000 else max(500, n // 8)
    max_dim = int(min(max_dim, n))
    engine = BlockLanczos(K.__matmul__, B)
    block = max(engine._pending, 1)
    prev: KrylovProfile | None = None
    prev_ritz: tuple = ()
    agreed, history = 0, []
    check_at = block
    converged = False
    while engine.step():
        if engine.exhausted or engine.dim >= check_at or engine.dim >= max_dim:
            prof, S, Yr = _ritz_profile(engine, B, trace, check_psd, what)
            Q = engine.basis
            ritz = (Q, S, prof.lam, Yr)
            change = math.inf
            if prev is not None:
                change = profile_change(prof, prev, margin)
                if change < tol:  # the vectors only once the likelihood has settled
                    # the previous basis is the first columns of this one
                    old = (Q[:, :prev_ritz[1].shape[0]],) + prev_ritz[1:]
                    change = max(change, filter_change(ritz, old, likelihood_times(prof)))
            history.append((engine.dim, change))
            agreed = agreed + 1 if change < tol else 0
            prev, prev_ritz = prof, (None,) + ritz[1:]
            check_at = _next_check(engine.dim, block)
            if agreed >= 2:
                converged = True
                break
        if engine.exhausted:
            converged = True
            break
        if engine.dim >= max_dim:
            break
    if prev is None or history[-1][0] != engine.dim:
        prev, S, Yr = _ritz_profile(engine, B, trace, check_psd, what)
        converged = converged or engine.exhausted
    return KrylovBasis(K, np.array(engine.basis), S, prev.lam, Yr, trace,
                       steps=engine.steps, converged=converged, invariant=engine.exhausted,
                       history=history)


# ================================================================================ the basis

class KrylovBasis(EigenBasis):
    """The Ritz pairs of K in the block Krylov space of ``[y - f0, X]`` (module notes).

    ``rotate(M) = S^T Q^T M`` and ``unrotate(C) = Q S C``: exact for the training data,
    whose span the space contains, and the Lanczos approximation of every function of
    K applied to them.  The kernel matrix is kept: new rows need their own quadrature
    (:class:`KrylovCrossRotation`) and what sums over every eigen-direction is
    computed from it on demand.

    Parameters
    ----------
    kernel : ndarray (n, n)
    vectors : ndarray (n, k)
        Orthonormal basis ``Q`` of the Krylov space.
    ritz_vectors : ndarray (k, k)
        ``S``: the eigenvectors of ``T = Q^T K Q``.
    eigenvalues : ndarray (k,)
        The Ritz values ``theta`` (ascending, clipped at 0).
    rotated_data : ndarray (k, 1 + p)
        ``S^T Q^T [y - f0, X]``.
    trace : float
        ``tr K``.
    steps : int
        Block Lanczos steps taken.
    converged : bool
        The REML/ML criterion was met (or the space became K-invariant).
    invariant : bool
        The space is K-invariant: every result is exact.
    history : list of (int, float)
        Dimension and relative change at each check.
    """

    kind = "lanczos"
    complete_spectrum = False

    def __init__(self, kernel: "np.ndarray | KernelOperator", vectors: np.ndarray,
                 ritz_vectors: np.ndarray,
                 eigenvalues: np.ndarray, rotated_data: np.ndarray, trace: float, *,
                 steps: int, converged: bool, invariant: bool, history: list):
        self.kernel = kernel
        self.vectors = vectors
        self.ritz_vectors = ritz_vectors
        self.eigenvalues = np.asarray(eigenvalues, dtype=float)
        self.rotated_data = rotated_data
        self.trace = float(trace)
        self.steps = int(steps)
        self.converged = bool(converged)
        self.invariant = bool(invariant)
        self.history = list(history)

    @property
    def n(self) -> int:
        return int(self.kernel.shape[0])

    @property
    def dimension(self) -> int:
        """Dimension of the Krylov space."""
        return int(self.vectors.shape[1])

    @property
    def design(self) -> np.ndarray:
        """The (whitened) fixed-effects design the space was started from, n x p: in the
        space, so ``Q S`` times its rotated coordinates (no copy of the rows is kept)."""
        return self.unrotate(self.rotated_data[:, 1:])

    def rotate(self, M: np.ndarray) -> np.ndarray:
        """``S^T Q^T M``: coordinates in the Ritz basis (exact for M in the space)."""
        return self.ritz_vectors.T @ (self.vectors.T @ M)

    def unrotate(self, C: np.ndarray) -> np.ndarray:
        """``Q S C``."""
        return self.vectors @ (self.ritz_vectors @ C)

    def spectral_profile(self, sum_log_weights: float = 0.0) -> KrylovProfile:
        """The REML/ML profile of the Ritz pairs (``sum_log_weights``: of precision
        weights, :class:`~mixednn.profile.SpectralProfile`)."""
        Yr = self.rotated_data
        return KrylovProfile(self.eigenvalues, Yr[:, 0], Yr[:, 1:], self.trace, self.n,
                             sum_log_weights=sum_log_weights)

    def summary_line(self) -> str:
        """One line for the summary: the space and what it does not compute."""
        state = ("K-invariant (exact)" if self.invariant else
                 "REML/ML converged to 1e-10" if self.converged else "NOT converged")
        tiles = (f", {self.kernel.describe()}" if isinstance(self.kernel, KernelOperator)
                 else "")
        return (f"Krylov basis (block Lanczos from [y - f0, X]): dimension {self.dimension} of "
                f"n = {self.n:,}, {self.steps} block steps, {state}{tiles}; the prediction "
                "check and the stopping diagnostic need the spectrum and were not run")

    # -- what needs every eigen-direction ------------------------------------------------
    def _refuse(self, what: str) -> None:
        raise ValueError(
            f"{what} needs every eigenvector of K; this fit used decomposition='lanczos' (a "
            f"Krylov space of dimension {self.dimension} of n = {self.n}), which does not "
            "compute them: fit with decomposition='eigh' or 'tridiagonal'")

    @property
    def eigenvectors(self) -> np.ndarray:
        self._refuse("the eigenvector matrix")

    @cached_property
    def dense_eigenvectors(self) -> np.ndarray:
        self._refuse("this computation (leave-one-out, K-fold, free modes)")

    def map_in_sample(self, fn: Callable[[CrossRotation, np.ndarray], Any],
                      X: np.ndarray) -> list:
        self._refuse("in-sample prediction intervals (diag(exp(-tK)) at every training row)")

    def cross_rotation(self, kernel: Any = None, inputs: Any = None,
                       route: str = "auto") -> CrossRotation:
        """New rows from their cross-kernel (rows x n): means through the Ritz basis,
        variances by their own Krylov quadrature (:class:`KrylovCrossRotation`)."""
        if kernel is None:
            raise ValueError("a Krylov basis needs the cross-kernel of the new rows")
        return KrylovCrossRotation(self, kernel)

    @cached_property
    def _eigenvalues_of_kernel(self) -> np.ndarray:
        lam = scipy.linalg.eigh(dense_kernel(self.kernel), eigvals_only=True,
                                check_finite=False, driver="evd")
        return clip_spectrum(lam, False, "the kernel")

    def kernel_eigenvalues(self) -> np.ndarray:
        """Every eigenvalue of K (ascending), computed once on first use.

        LAPACK's symmetric eigensolver without eigenvectors (a Householder reduction and
        the tridiagonal eigenvalues: about half the cost of a full ``eigh``); for what
        sums over every direction, such as the effective degrees of freedom."""
        return self._eigenvalues_of_kernel

    @cached_property
    def _residual_eigenvalues(self) -> np.ndarray:
        return ResidualSpectrum(self.kernel, self.design).exact()

    def residual_eigenvalues(self) -> np.ndarray:
        """The n - p eigenvalues of ``(I - H) K (I - H)`` on ``range(I - H)``
        (descending), computed once on first use (eigenvalues only, as
        :meth:`kernel_eigenvalues`): the exact null of the score test."""
        return self._residual_eigenvalues

    def residual_spectrum(self, seed: int = 0) -> "ResidualSpectrum":
        """The spectrum of ``(I - H) K (I - H)`` for the score test's approximate null:
        exact traces and leading eigenvalues (:class:`ResidualSpectrum`)."""
        return ResidualSpectrum(self.kernel, self.design, seed=seed)


# ================================================================================ new rows

def filtered_norms(K: np.ndarray, rows: np.ndarray, fn: Callable[[np.ndarray], np.ndarray],
                   *, tol: float = KRYLOV_TOL, block: int = 32,
                   max_dim: int | None = None) -> np.ndarray:
    """``diag(R^T f(K) R)`` for the columns of R, by block Lanczos quadrature.

    For each chunk of ``block`` columns, block Lanczos on K from the chunk gives
    ``R_c^T f(K) R_c ~ C^T E_1^T f(T) E_1 C`` (``R_c = Q_1 C``); steps are added until
    every diagonal entry changes by less than ``tol`` relative between two consecutive
    steps (exact once the space is K-invariant).

    Parameters
    ----------
    K : ndarray (n, n)
    rows : ndarray (n, r)
        The vectors (e.g. the cross-kernel of new rows, transposed).
    fn : callable
        ``fn(theta) -> f(theta)`` on Ritz values.
    tol : float
    block : int
        Columns per chunk.
    max_dim : int, optional
        Largest Krylov dimension per chunk (default n).

    Returns
    -------
    ndarray (r,)
    """
    R = np.asarray(rows, dtype=float)
    n, r = R.shape
    out = np.empty(r)
    max_dim = n if max_dim is None else int(max_dim)
    for a in range(0, r, block):
        Rc = R[:, a:a + block]
        engine = BlockLanczos(K.__matmul__, Rc)
        coef = None
        prev, agreed = None, 0
        vals = np.zeros(Rc.shape[1])
        while engine.step():
            if coef is None:
                coef = engine.basis.T @ Rc  # Q^T R_c: the chunk in the first block
            theta, S = engine.ritz()
            Z = S[:coef.shape[0]].T @ coef
            vals = np.einsum("ij,i,ij->j", Z, fn(theta), Z)
            if prev is not None:
                change = np.abs(vals - prev) / np.maximum(np.abs(vals), 1e-300)
                agreed = agreed + 1 if np.all(change < tol) else 0
                if agreed >= 2:
                    break
            prev = vals
            if engine.exhausted or engine.dim >= max_dim:
                break
        out[a:a + Rc.shape[1]] = vals
    return out


class KrylovCrossRotation(DenseCrossRotation):
    """New rows of a Krylov fit, from their cross-kernel ``K*`` (rows x n).

    ``matrix()`` is ``S^T Q^T k*`` and ``apply(c)`` is ``k*^T Q S c``: the mean, and the
    fixed-effects term ``(phi_t(K) X)^T k*`` of the variance, are functions of K applied
    to the training data (in the space).  The network's variance
    ``s2 k*^T g_t(K) k*`` (``docs/model.md`` eq. (11)) is not: :meth:`network_variance`
    computes it by a Lanczos quadrature started from the rows themselves
    (:func:`filtered_norms`), one block Lanczos run per 32 new rows (some 10-20 products
    of K with 32 columns each): intervals at many new rows cost more than by a dense
    basis, means do not.
    """

    route = "krylov"

    def network_variance(self, t: float) -> np.ndarray:
        """``k*^T g_t(K) k*`` per row, ``g_t(x) = (1 - exp(-tx)) / x^2`` (0 on rounding
        zeros, as the dense route)."""
        K = self.basis.kernel
        top = float(self.basis.eigenvalues.max()) if self.basis.eigenvalues.size else 0.0
        zero = top * self.basis.n * np.finfo(float).eps

        def g(theta: np.ndarray) -> np.ndarray:
            out = np.zeros_like(theta)
            nz = theta > zero
            out[nz] = -np.expm1(-t * theta[nz]) / theta[nz] ** 2
            return out

        return filtered_norms(K, self.kernel.T, g)


# ================================================================================ score test

class ResidualSpectrum:
    """The spectrum of ``(I - H) K (I - H)`` on ``range(I - H)``: the score test's null.

    The null of the score test of ``t = 0`` is ``sum_j (nu_j - q) chi2_1,j`` with
    ``nu_j`` the n - p eigenvalues of ``M K M``, ``M = I - H`` (``docs/model.md``
    section 3).  Without the full spectrum this object offers

    * the exact moments ``sum nu = tr K - tr(Qx^T K Qx)`` and
      ``sum nu^2 = ||K||_F^2 - 2 ||K Qx||_F^2 + ||Qx^T K Qx||_F^2`` (``Qx`` an orthonormal
      basis of ``range(X)``), O(n^2 p);
    * the leading eigenvalues (:meth:`leading`: block Lanczos on ``M K M`` from a seeded
      random block, Ritz values whose residual is below 1e-8 of the largest);
    * :meth:`representation`: the leading L eigenvalues exactly and the other
      ``N = n - p - L`` replaced by two atoms with integer multiplicities that match
      their number, sum and sum of squares exactly (for ``L = 0`` the null has the exact
      mean and variance);
    * :meth:`exact`: all of them (LAPACK without eigenvectors).
    """

    def __init__(self, kernel: "np.ndarray | KernelOperator", design: np.ndarray | None, *,
                 seed: int = 0, block: int = 16):
        self.kernel = kernel
        n = kernel.shape[0]
        X = np.zeros((n, 0)) if design is None else np.asarray(design, dtype=float).reshape(n, -1)
        self.Qx = np.linalg.qr(X)[0] if X.shape[1] else np.zeros((n, 0))
        self.n = n
        self.p = int(self.Qx.shape[1])
        self.count = n - self.p
        KQ = kernel @ self.Qx
        QKQ = self.Qx.T @ KQ
        self.sum1 = float(kernel_trace(kernel) - np.trace(QKQ))
        # ||K||_F^2 without an n x n temporary (an operator: one pass over its tiles)
        frob = kernel.frobenius_squared() if isinstance(kernel, KernelOperator) else \
            float(np.einsum("ij,ij->", kernel, kernel))
        self.sum2 = float(frob - 2 * np.sum(KQ * KQ) + np.sum(QKQ * QKQ))
        self.seed = seed
        self.block = int(block)
        self._engine: BlockLanczos | None = None
        self._leading = np.zeros(0)

    def _project(self, V: np.ndarray) -> np.ndarray:
        return V - self.Qx @ (self.Qx.T @ V) if self.p else V

    def _apply(self, V: np.ndarray) -> np.ndarray:
        return self._project(self.kernel @ V)  # V is in range(M) already

    def leading(self, L: int, rtol: float = 1e-8) -> np.ndarray:
        """The ``L`` largest eigenvalues (descending), to ``rtol`` of the largest."""
        L = int(min(L, self.count))
        if L <= self._leading.shape[0]:
            return self._leading[:L]
        if self._engine is None:
            rng = np.random.default_rng(self.seed)
            start = self._project(rng.standard_normal((self.n, min(self.block, self.count))))
            self._engine = BlockLanczos(self._apply, start)
        eng = self._engine
        budget = min(self.count, 6 * L + 64)  # beyond it: the Ritz values as they are
        while True:
            if not eng.step() and eng.dim == 0:
                break
            if eng.dim >= budget:
                break
            if eng.dim >= min(2 * L, self.count) or eng.exhausted:
                theta, S = eng.ritz()
                res = eng.residual_norms(S)
                top = max(float(theta.max()), np.finfo(float).tiny)
                desc = np.argsort(theta)[::-1][:L]
                if eng.exhausted or np.all(res[desc] <= rtol * top):
                    self._leading = np.maximum(theta[desc], 0.0)
                    return self._leading
            if eng.exhausted:
                break
        theta, _ = eng.ritz()
        self._leading = np.maximum(np.sort(theta)[::-1][:L], 0.0)
        return self._leading

    def representation(self, L: int) -> tuple[np.ndarray, np.ndarray]:
        """Weights and integer multiplicities standing for the n - p eigenvalues: the
        ``L`` leading ones, then two atoms matching the rest's count, sum and sum of
        squares (module notes of :class:`ResidualSpectrum`)."""
        lead = self.leading(L) if L else np.zeros(0)
        N = self.count - lead.shape[0]
        R1 = max(self.sum1 - float(lead.sum()), 0.0)
        R2 = max(self.sum2 - float(lead @ lead), 0.0)
        w, c = list(lead), [1.0] * lead.shape[0]
        if N > 0 and R1 > 0 and R2 > 0:
            mu = R1 / N
            var = max(R2 / N - mu * mu, 0.0)
            d = int(min(N, max(1, math.floor(R1 * R1 / R2))))  # R1^2 / R2 is in [1, N]
            if d >= N or var == 0.0:
                w.append(mu)
                c.append(float(N))
            else:
                pi = d / N
                w.append(mu + math.sqrt(var * (1 - pi) / pi))
                w.append(max(mu - math.sqrt(var * pi / (1 - pi)), 0.0))
                c += [float(d), float(N - d)]
        elif N > 0:
            w.append(0.0)
            c.append(float(N))
        return np.array(w), np.array(c)

    def exact(self) -> np.ndarray:
        """All n - p eigenvalues (descending): ``M K M`` formed once, LAPACK eigenvalues
        only; the p zeros of ``range(X)`` are dropped."""
        K, Qx = dense_kernel(self.kernel), self.Qx
        if self.p:
            KQ = K @ Qx
            A = K - Qx @ KQ.T - KQ @ Qx.T + Qx @ (Qx.T @ KQ) @ Qx.T
        else:
            A = np.array(K, dtype=float)
        nu = scipy.linalg.eigh(0.5 * (A + A.T), eigvals_only=True, overwrite_a=True,
                               check_finite=False, driver="evd")
        return np.maximum(np.sort(nu)[::-1][:self.count], 0.0)
