"""Gaussian quadratic forms with structured weights: the :class:`QuadraticForm` object.

The score test of ``H0: t = 0`` needs ``P(Q > q)`` for the ratio statistic
``Q = r0^T K r0 / r0^T r0``, which equals ``P(sum_j (nu_j - q) chi2_1,j > 0)``
with ``nu_j`` the ``n - p`` eigenvalues of ``M K M`` on ``range(M)``,
``M = I - H`` the residual projector.  This module owns :class:`QuadraticForm`,
the distribution of such a sum ``S = sum_j nu_j chi2_1,j`` held in structured form
-- the kernel eigenvalues ``lam`` and the rotated design ``Xr = U^T X`` -- with
its characteristic function, cumulant generating function, cumulants and exact
bounds on its spectrum, all at O(n p^2) per evaluation and with no second
eigendecomposition, and the choice among the tail-probability algorithms
(:meth:`QuadraticForm.sf`, the ``"auto"`` strategy).  The algorithms themselves
are in :mod:`mixednn.tailprob`; function front ends for explicit weights and
kernel spectra are in :mod:`mixednn.chi2sums`.

Structured characteristic function
----------------------------------
Let ``B = diag(b)`` (``b = lam - q``), ``Qx`` an orthonormal basis of
``range(Xr)`` and ``A`` one of its orthogonal complement (so ``A A^T = M``).
The weights are the eigenvalues ``nu'`` of ``A^T B A``.  For any diagonal
invertible ``D``, Jacobi's complementary-minor identity (equivalently
Sylvester's determinant identity applied to ``I - c B M = D (I + c D^{-1} B P)``
with ``P = Qx Qx^T``) gives::

    det(A^T D A) = det(D) * det(Qx^T D^{-1} Qx).                     (*)

With ``D = I - i u B`` this is ``det(I - i u A^T B A)``, the reciprocal square
of the characteristic function at ``u / 2``.  ``C(u) = Qx^T D^{-1} Qx`` is a
``p x p`` complex symmetric matrix whose Hermitian part
``H = Qx^T diag(1 / (1 + u^2 b^2)) Qx`` is positive definite, so writing
``C = H + i S`` and letting ``mu_k`` be the (real) eigenvalues of the pencil
``(S, H)``::

    arg det C(u) = sum_k arctan(mu_k),
    log |det C(u)| = log det H + 1/2 sum_k log(1 + mu_k^2).

This is the continuous branch of the phase: no unwrapping is needed.  At real
argument ``D = I - 2 s B`` identity (*) gives the cumulant generating function
``K(s) = -1/2 log det(I - 2 s A^T B A)`` and its derivatives, and the power
series of ``log det C`` gives the cumulants.  The Haynsworth inertia additivity
formula applied to the same block structure gives
``#{nu' > tau} = #{b_i > tau} - #{eigenvalues of Qx^T (B - tau)^{-1} Qx > 0}``,
an exact eigenvalue count used to locate ``min nu'`` and ``max nu'`` by
bisection (the domain of ``K``).

References
----------
Haynsworth, E. V. (1968). Determination of the inertia of a partitioned
Hermitian matrix. *Linear Algebra and its Applications* 1, 73-81.

Imhof (1961), Davies (1973, 1980), Lugannani & Rice (1980), Kuonen (1999),
Liu, Tang & Zhang (2009) and Satterthwaite (1946): see :mod:`mixednn.tailprob`.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .tailprob import (TailProbability, davies_sf, imhof_sf, liu_sf, saddlepoint_sf,
                       satterthwaite_sf)

__all__ = ["QuadraticForm", "METHODS"]

#: Methods accepted by the ``method`` arguments.
METHODS = ("auto", "imhof", "davies", "saddlepoint", "liu", "satterthwaite")

#: Below this Imhof p-value the "auto" strategy switches to the saddlepoint.
AUTO_SWITCH = 1e-8


def _orthonormal_basis(Xr: Optional[np.ndarray], n: int) -> np.ndarray:
    """Orthonormal basis ``Qx`` (n x p) of ``range(Xr)``; raises if rank deficient."""
    if Xr is None:
        return np.zeros((n, 0))
    Xr = np.asarray(Xr, dtype=float)
    if Xr.ndim == 1:
        Xr = Xr[:, None]
    if Xr.ndim != 2 or Xr.shape[0] != n:
        raise ValueError(f"Xr must have shape (n, p) with n = {n}, got {Xr.shape}")
    p = Xr.shape[1]
    if p == 0:
        return np.zeros((n, 0))
    if p >= n:
        raise ValueError(f"need p < n for a residual projection, got n = {n}, p = {p}")
    if not np.all(np.isfinite(Xr)):
        raise ValueError("Xr contains non-finite values")
    Qx, R = np.linalg.qr(Xr, mode="reduced")
    d = np.abs(np.diag(R))
    colnorm = np.linalg.norm(Xr, axis=0)
    if np.any(d <= 1e-10 * max(float(colnorm.max()), 1e-300)):
        raise ValueError("Xr is not of full column rank")
    return Qx


class QuadraticForm:
    r"""Distribution of ``S = sum_j nu_j chi2_1,j`` with structured weights.

    The weights ``nu`` are the eigenvalues of ``A^T diag(b) A``, where ``A`` is
    an orthonormal basis of the orthogonal complement of ``range(basis)``
    (``basis`` = ``Qx``, ``n x p`` with orthonormal columns).  With ``p = 0``
    (``basis=None``) the weights are ``b`` itself.  The weights are never
    formed; every evaluation costs O(n p^2) through identity (*) of the module
    docstring.

    Parameters
    ----------
    b : array_like, shape (n,)
        Diagonal of ``B``.
    basis : ndarray, shape (n, p), optional
        Orthonormal columns spanning the removed (fixed-effect) directions.
    counts : array_like of int, shape (n,), optional
        Multiplicity of each entry of ``b`` (default 1): an entry with count ``h``
        stands for ``h`` coordinates with that diagonal value, all of them outside
        ``range(basis)``, so its row of ``basis`` must be zero.  A low-rank kernel's
        n - m zero eigenvalues are one entry, so every evaluation costs O(m p^2)
        instead of O(n p^2).

    Notes
    -----
    Use :meth:`from_weights` for an explicit weight vector and
    :meth:`projected` for ``b = lam - shift`` with the span of a rotated
    design ``Xr`` removed.
    """

    def __init__(self, b: np.ndarray, basis: Optional[np.ndarray] = None,
                 counts: Optional[np.ndarray] = None):
        b = np.asarray(b, dtype=float).ravel()
        if not np.all(np.isfinite(b)):
            raise ValueError("weights/eigenvalues must be finite")
        n = b.shape[0]
        h = np.ones(n) if counts is None else np.asarray(counts, dtype=float).ravel()
        if h.shape != (n,) or np.any(h < 1) or np.any(h != np.round(h)):
            raise ValueError("counts must be positive integers, one per weight")
        if basis is None:
            basis = np.zeros((n, 0))
        basis = np.asarray(basis, dtype=float)
        if basis.ndim != 2 or basis.shape[0] != n:
            raise ValueError("basis must have shape (n, p)")
        self.p = basis.shape[1]
        if self.p and np.any(np.abs(basis[h > 1]).sum(axis=1) > 0):
            raise ValueError("entries with counts > 1 must lie outside range(basis) "
                             "(zero rows of basis)")
        if self.p == 0:
            keep = b != 0.0          # zero weights do not contribute
            b, h = b[keep], h[keep]
            n = b.shape[0]
        self.b = b
        self.h = h
        self.n = n
        self.Qx = basis if self.p else np.zeros((n, 0))
        self.scale = float(np.max(np.abs(b))) if n else 0.0
        # Outer products Qx_i Qx_i^T stacked as rows: C(u) = w(u) @ QQ is one
        # matrix-vector product.  Only when it fits comfortably in memory.
        if self.p and n * self.p * self.p <= 8_000_000:
            self._QQ = (self.Qx[:, :, None] * self.Qx[:, None, :]).reshape(n, self.p * self.p)
        else:
            self._QQ = None
        self._range: Optional[tuple[float, float]] = None
        self._cum: Optional[np.ndarray] = None

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_weights(cls, weights) -> "QuadraticForm":
        """``S = sum_j w_j chi2_1,j`` for explicit real weights ``w``."""
        return cls(np.asarray(weights, dtype=float).ravel(), None)

    @classmethod
    def projected(cls, lam, Xr=None, shift: float = 0.0,
                  counts=None) -> "QuadraticForm":
        """Weights = eigenvalues of ``M diag(lam - shift) M`` on ``range(M)``.

        Parameters
        ----------
        lam : array_like, shape (n,)
            Kernel eigenvalues (``K = U diag(lam) U^T``).
        Xr : array_like, shape (n, p), optional
            Rotated design ``U^T X`` (full column rank); None or ``p = 0`` for
            no fixed effects.
        shift : float
            ``q`` in ``b = lam - q``.
        counts : array_like of int, optional
            Multiplicities (see the class); rows of ``Xr`` with a count above 1 must
            be zero.
        """
        lam = np.asarray(lam, dtype=float).ravel()
        Qx = _orthonormal_basis(Xr, lam.shape[0])
        return cls(lam - float(shift), Qx, counts)

    @property
    def n_terms(self) -> int:
        """Number of chi-square terms, ``n - p`` (zero weights included when p > 0)."""
        return int(round(self.h.sum())) - self.p

    # ------------------------------------------------------------------ small matrices
    def _gram(self, w: np.ndarray) -> np.ndarray:
        """``Qx^T diag(w) Qx`` for each row of ``w`` (shape (m, n) -> (m, p, p))."""
        p = self.p
        if self._QQ is not None:
            return (w @ self._QQ).reshape(w.shape[0], p, p)
        return np.einsum("ij,mi,ik->mjk", self.Qx, w, self.Qx, optimize=True)

    # ------------------------------------------------------------------ characteristic function
    def phase_logmod(self, u) -> tuple[np.ndarray, np.ndarray]:
        """Phase and log-modulus of ``det(I - i u A^T B A)^{-1/2}``.

        Parameters
        ----------
        u : array_like
            Real arguments (Imhof's scaling: the characteristic function of
            ``S`` at ``t = u / 2``).

        Returns
        -------
        theta0 : ndarray
            ``arg E exp(i u S / 2) = 1/2 sum_j arctan(u nu_j)`` (continuous in u).
        logrho : ndarray
            ``log rho(u) = 1/4 sum_j log(1 + u^2 nu_j^2)``, so that
            ``|E exp(i u S / 2)| = exp(-logrho)``.
        """
        u = np.atleast_1d(np.asarray(u, dtype=float))
        shape = u.shape
        u = u.ravel()
        theta = np.empty(u.shape[0])
        logrho = np.empty(u.shape[0])
        chunk = max(1, 4_000_000 // max(self.n, 1))
        for start in range(0, u.shape[0], chunk):
            sl = slice(start, start + chunk)
            th, lr = self.phase_logmod_block(u[sl])
            theta[sl] = th
            logrho[sl] = lr
        return theta.reshape(shape), logrho.reshape(shape)

    def phase_logmod_block(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`phase_logmod` for a short 1-d array ``u``, in one block (no chunking).

        The fast path for one point at a time (Imhof's integrand); memory is
        O(len(u) n), so long arrays go through :meth:`phase_logmod`.
        """
        ub = u[:, None] * self.b[None, :]
        theta = 0.5 * (np.arctan(ub) @ self.h)
        ub2 = ub * ub
        logrho = 0.25 * (np.log1p(ub2) @ self.h)
        if self.p == 0:
            return theta, logrho
        den = 1.0 + ub2
        H = self._gram(1.0 / den)
        S = self._gram(ub / den)
        atan_mu, logdetC = self._small_phase(H, S)
        theta -= 0.5 * atan_mu
        logrho += 0.5 * logdetC
        return theta, logrho

    @staticmethod
    def _small_phase(H: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``sum arctan(mu)`` and ``log|det(H + iS)|`` for a batch of small matrices.

        ``H`` symmetric positive definite, ``S`` symmetric; ``mu`` are the
        eigenvalues of the pencil ``(S, H)``.  A Jacobi scaling precedes the
        Cholesky factorisation; rows where it fails (``H`` numerically
        singular, which needs astronomically large ``u``) fall back to the
        complex eigenvalues of ``H + iS``, whose real parts are positive so that
        principal logarithms are on the continuous branch.
        """
        m, p, _ = H.shape
        dh = np.sqrt(np.einsum("mii->mi", H))
        sc = 1.0 / dh
        Hs = H * sc[:, :, None] * sc[:, None, :]
        Ss = S * sc[:, :, None] * sc[:, None, :]
        logdet_scale = 2.0 * np.log(dh).sum(axis=1)
        try:
            L = np.linalg.cholesky(Hs)
            ok = np.ones(m, dtype=bool)
        except np.linalg.LinAlgError:
            L = np.empty_like(Hs)
            ok = np.zeros(m, dtype=bool)
            for j in range(m):
                try:
                    L[j] = np.linalg.cholesky(Hs[j])
                    ok[j] = True
                except np.linalg.LinAlgError:
                    pass
        atan_mu = np.empty(m)
        logdet = np.empty(m)
        if ok.any():
            Lok = L[ok]
            Li = np.linalg.inv(Lok)
            T = Li @ Ss[ok] @ np.swapaxes(Li, 1, 2)
            T = 0.5 * (T + np.swapaxes(T, 1, 2))
            mu = np.linalg.eigvalsh(T)
            atan_mu[ok] = np.arctan(mu).sum(axis=1)
            logdet[ok] = (2.0 * np.log(np.einsum("mii->mi", Lok)).sum(axis=1)
                          + 0.5 * np.log1p(mu * mu).sum(axis=1))
        if not ok.all():
            bad = ~ok
            ev = np.linalg.eigvals(Hs[bad] + 1j * Ss[bad])
            lg = np.log(ev)
            atan_mu[bad] = lg.imag.sum(axis=1)
            logdet[bad] = lg.real.sum(axis=1)
        return atan_mu, logdet + logdet_scale

    def cf(self, t) -> np.ndarray:
        """Characteristic function ``E exp(i t S)`` (complex, vectorised)."""
        t = np.asarray(t, dtype=float)
        th, lr = self.phase_logmod(2.0 * t)
        return np.exp(-lr + 1j * th)

    # ------------------------------------------------------------------ CGF
    def cgf(self, s: float) -> tuple[float, float, float]:
        """Cumulant generating function and its first two derivatives.

        ``K(s) = -1/2 log det(I - 2 s A^T B A)`` on its domain
        ``1 - 2 s nu_j > 0`` for all j (see :meth:`cgf_domain`); evaluated
        through identity (*) with ``D = I - 2 s B`` (signed determinants, so
        that values of ``s`` beyond a pole of ``D`` but inside the domain are
        fine).

        Returns
        -------
        K, K1, K2 : float
            ``K(s)``, ``K'(s)``, ``K''(s)``; NaN outside the domain.
        """
        s = float(s)
        s_lo, s_hi = self.cgf_domain()
        if not s_lo < s < s_hi:
            return float("nan"), float("nan"), float("nan")
        e = 1.0 - 2.0 * s * self.b
        if np.any(e == 0.0):
            return float("nan"), float("nan"), float("nan")
        d = 1.0 / e
        h = self.h
        sign0 = -1.0 if (int(round(h[e < 0].sum())) % 2) else 1.0
        L0 = np.log(np.abs(e)) @ h
        bd = self.b * d
        L1 = -2.0 * (bd @ h)
        L2 = -4.0 * ((bd * bd) @ h)
        if self.p:
            C = self._gram(d[None, :])[0]
            C1 = self._gram((2.0 * bd * d)[None, :])[0]
            C2 = self._gram((8.0 * bd * bd * d)[None, :])[0]
            sgn, ld = np.linalg.slogdet(C)
            if sgn == 0:
                return float("nan"), float("nan"), float("nan")
            sign0 *= sgn
            L0 += ld
            X1 = np.linalg.solve(C, C1)
            X2 = np.linalg.solve(C, C2)
            L1 += np.trace(X1)
            L2 += np.trace(X2) - np.sum(X1 * X1.T)
        if sign0 < 0:
            return float("nan"), float("nan"), float("nan")
        return -0.5 * L0, -0.5 * L1, -0.5 * L2

    def cumulants(self, k: int = 4) -> np.ndarray:
        """First ``k`` cumulants of ``S``: ``kappa_r = 2^{r-1} (r-1)! tr((A^T B A)^r)``.

        The traces come from the power series in ``t = 2s`` of
        ``log det(I - t A^T B A) = sum_i log(1 - t b_i) + log det(I + sum_j t^j G_j)``
        with ``G_j = Qx^T B^j Qx``: ``tr((A^T B A)^r) = sum_i b_i^r - r l_r``,
        ``l_r`` the ``t^r`` coefficient of the log-determinant.  Cost
        O(n p^2 k + k^2 p^3).

        Notes
        -----
        When the removed directions carry most of ``sum b^r`` (e.g. an
        intercept aligned with the top kernel eigenvector) the subtraction
        loses relative accuracy of about ``eps * sum|b|^r / tr((A^T B A)^r)``.
        """
        k = int(k)
        if k < 1:
            raise ValueError("k must be >= 1")
        b = self.b
        powsums = np.array([(b ** r) @ self.h for r in range(1, k + 1)])
        traces = powsums.copy()
        if self.p:
            p = self.p
            G = [np.eye(p)] + [self._gram((b ** j)[None, :])[0] for j in range(1, k + 1)]
            # E(t) = sum_{j>=1} t^j G_j as coefficient list (index = degree)
            E = [np.zeros((p, p))] + G[1:]
            ell = np.zeros(k + 1)
            Pm = [c.copy() for c in E]          # E^1
            for m in range(1, k + 1):
                coef = (1.0 if m % 2 else -1.0) / m
                for r in range(m, k + 1):
                    ell[r] += coef * np.trace(Pm[r])
                if m < k:                       # Pm <- Pm * E, truncated at degree k
                    new = [np.zeros((p, p)) for _ in range(k + 1)]
                    for i in range(m, k + 1):
                        for j in range(1, k + 1 - i):
                            new[i + j] += Pm[i] @ E[j]
                    Pm = new
            traces = traces - np.arange(1, k + 1) * ell[1:]
        r = np.arange(1, k + 1)
        fac = np.array([2.0 ** (ri - 1) * math.factorial(ri - 1) for ri in r])
        return fac * traces

    def cumulants4(self) -> np.ndarray:
        """The first four cumulants (:meth:`cumulants`), computed once and cached."""
        if self._cum is None:
            self._cum = self.cumulants(4)
        return self._cum

    # ------------------------------------------------------------------ spectrum bounds
    def _count(self, tau: float, above: bool) -> int:
        """Exact count of ``#{nu_j > tau}`` (``above``) or ``#{nu_j < tau}``.

        Haynsworth inertia additivity:
        ``In(A^T E A) = In(E) - In(Qx^T E^{-1} Qx)`` for ``E = B - tau I``.
        """
        e = self.b - tau
        bump = 0
        while np.any(e == 0.0) and bump < 8:   # nudge off a pole of E^{-1}
            tau = tau + (1e-15 * max(abs(tau), self.scale, 1e-300)) * (1 if above else -1)
            e = self.b - tau
            bump += 1
        c = int(round(self.h[e > 0].sum() if above else self.h[e < 0].sum()))
        if self.p:
            ev = np.linalg.eigvalsh(self._gram((1.0 / e)[None, :])[0])
            c -= int(np.count_nonzero(ev > 0) if above else np.count_nonzero(ev < 0))
        return c

    def _zero_tol(self) -> float:
        return 1e-13 * self.scale

    def n_positive(self) -> int:
        """Number of weights above ``+1e-13 max|b|`` (exact count, no eigenvalues)."""
        if self.n_terms <= 0 or self.scale == 0:
            return 0
        return self._count(self._zero_tol(), True)

    def n_negative(self) -> int:
        """Number of weights below ``-1e-13 max|b|``."""
        if self.n_terms <= 0 or self.scale == 0:
            return 0
        return self._count(-self._zero_tol(), False)

    def eig_range(self) -> tuple[float, float]:
        """``(min nu, max nu)`` without forming the weights.

        Cauchy interlacing brackets ``max nu`` in ``[b_(p+1), b_(1)]`` (descending
        order) and ``min nu`` symmetrically; bisection on the exact counts of
        :meth:`_count` refines to machine precision (about 110 counts, each
        O(n p^2)).
        """
        if self._range is not None:
            return self._range
        if self.n_terms <= 0:
            self._range = (0.0, 0.0)
            return self._range
        if self.p == 0:
            self._range = (float(self.b.min()), float(self.b.max()))
            return self._range
        order = np.argsort(self.b, kind="stable")
        bs, cum = self.b[order], np.cumsum(self.h[order])
        total = cum[-1]
        p = self.p

        def kth(k: float) -> float:
            # the k-th smallest of the weights with multiplicities (k = 1, 2, ...)
            return float(bs[int(np.searchsorted(cum, k))])

        def bisect(lo: float, hi: float, pred) -> float:
            # pred(lo) True, pred(hi) False; returns boundary
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                if mid <= lo or mid >= hi:
                    break
                if pred(mid):
                    lo = mid
                else:
                    hi = mid
            return 0.5 * (lo + hi)

        span = max(self.scale, 1e-300)
        lo_max, hi_max = kth(total - p), float(bs[-1])
        if hi_max - lo_max <= 0:
            numax = hi_max
        else:
            numax = bisect(lo_max - 1e-14 * span, hi_max + 1e-14 * span,
                           lambda tau: self._count(tau, True) >= 1)
        lo_min, hi_min = float(bs[0]), kth(p + 1)
        if hi_min - lo_min <= 0:
            numin = lo_min
        else:
            # predicate "no eigenvalue below tau" is True at lo, False at hi
            numin = bisect(lo_min - 1e-14 * span, hi_min + 1e-14 * span,
                           lambda tau: self._count(tau, False) == 0)
        self._range = (float(numin), float(numax))
        return self._range

    def cgf_domain(self) -> tuple[float, float]:
        """Open interval ``(s_lo, s_hi)`` on which ``K(s)`` is finite."""
        numin, numax = self.eig_range()
        tol = self._zero_tol()
        s_hi = 0.5 / numax if numax > tol else math.inf
        s_lo = 0.5 / numin if numin < -tol else -math.inf
        return s_lo, s_hi

    # ------------------------------------------------------------------ dispatcher
    def sf(self, x: float, method: str = "auto", tol: float = 1e-9,
           *, max_terms: int = 2_000_000) -> TailProbability:
        """``P(S > x)``.

        Settles the exact cases (degenerate ``S``, one-signed support) itself and
        hands the rest to an algorithm of :mod:`mixednn.tailprob`.

        Parameters
        ----------
        x : float
            Threshold.
        method : {"auto", "imhof", "davies", "saddlepoint", "liu", "satterthwaite"}
            ``"auto"``: Imhof; if its value is below ``AUTO_SWITCH`` (1e-8) or
            the integration fails, the Lugannani-Rice saddlepoint.
        tol : float
            Absolute accuracy target of the numerical inversions.
        max_terms : int
            Cap on the number of characteristic-function evaluations in
            Davies' trapezoidal sum.

        Returns
        -------
        TailProbability
        """
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
        x = float(x)
        if np.isnan(x):
            raise ValueError("threshold is NaN")
        if not tol > 0:
            raise ValueError("tol must be positive")
        triv = self._trivial(x)
        if method in ("liu", "satterthwaite"):
            # tolerate rounding-level negative weights (e.g. kernel eigenvalues of -1e-14)
            if self.n_terms > 0 and self.scale > 0 and self._count(-1e-10 * self.scale, False) > 0:
                raise ValueError(
                    f"method {method!r} needs nonnegative weights (a nonnegative definite "
                    "quadratic form); use 'imhof', 'davies' or 'saddlepoint' for weights "
                    "of mixed sign")
            if triv is not None:
                return TailProbability(triv, method, 0.0, True, "degenerate/trivial case")
            return liu_sf(self, x) if method == "liu" else satterthwaite_sf(self, x)
        if triv is not None:
            return TailProbability(triv, method if method != "auto" else "exact",
                                   0.0, True, "degenerate/trivial case")
        if method == "imhof":
            return imhof_sf(self, x, tol)
        if method == "davies":
            return davies_sf(self, x, tol, max_terms)
        if method == "saddlepoint":
            return saddlepoint_sf(self, x)
        # auto
        res = imhof_sf(self, x, tol)
        reason = None
        if not res.converged:
            reason = "Imhof did not converge"
        elif res.pvalue < AUTO_SWITCH:
            reason = f"Imhof below {AUTO_SWITCH:g}"
        if reason is None:
            return res
        try:
            sp = saddlepoint_sf(self, x)
        except Exception as exc:  # pragma: no cover - defensive
            return TailProbability(res.pvalue, res.method, res.error_bound, res.converged,
                                   f"{res.note}; saddlepoint failed: {exc}".strip("; "))
        note = f"Imhof gave {res.pvalue:.3e} (error bound {res.error_bound:.1e})"
        return TailProbability(sp.pvalue, f"saddlepoint ({reason})", None, sp.converged,
                               "; ".join(s for s in (note, sp.note) if s))

    def _trivial(self, x: float) -> Optional[float]:
        """Exact answers: degenerate S, infinite thresholds, one-signed support."""
        if x == math.inf:
            return 0.0
        if x == -math.inf:
            return 1.0
        if self.n_terms <= 0 or self.scale == 0.0:
            return 1.0 if x < 0 else 0.0
        npos = self.n_positive()
        nneg = self.n_negative()
        if npos == 0 and nneg == 0:
            return 1.0 if x < 0 else 0.0
        if npos == 0 and x >= 0:
            return 0.0
        if nneg == 0 and (x < 0 or (x == 0 and npos > 0)):
            return 1.0
        return None
