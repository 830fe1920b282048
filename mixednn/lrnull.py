"""Null distributions of the likelihood ratio for ``H0: t = 0`` (model.md section 3).

``t = 0`` lies on the boundary of the parameter space, so the (restricted)
likelihood ratio has no chi-square null.  This module owns

* the exact finite-sample null, which is pivotal: :func:`simulate_lr_null` draws
  responses in the fit's rotated basis (no nuisance parameters) and re-profiles
  t for every draw with :class:`NullSimulator`, vectorised over draws
  (Crainiceanu & Ruppert 2004);
* the asymptotic 50:50 mixture of chi-squares (:func:`mixture_sf`, Self & Liang
  1987) and the Monte Carlo p-value of a simulated null (:func:`simulated_pvalue`);
* the pieces these need: the out-of-span remainder of a low-rank basis
  (:func:`rest_x_root`, :func:`n_zero_rest`), drawn exactly here and restored in
  the score test's spectrum by :func:`mixednn.inference.full_spectrum`, and the
  map between nested fixed-effects designs (:func:`nesting_map`).

The tests that use them are :func:`mixednn.inference.lr_test` and the boundary
comparisons of :func:`mixednn.comparison.anova`.

References
----------
Crainiceanu, C. M. and Ruppert, D. (2004). Likelihood ratio tests in linear
mixed models with one variance component. *JRSS B* 66, 165-185.

Self, S. G. and Liang, K.-Y. (1987). Asymptotic properties of maximum likelihood
estimators and likelihood ratio tests under nonstandard conditions. *JASA* 82,
605-610.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from .interfaces import FitResults
from .numerics import LOG_2PI
from .profile import SpectralProfile, check_complete_spectrum

__all__ = ["NullSimulator", "simulate_lr_null", "mixture_sf", "simulated_pvalue",
           "rest_x_root", "n_zero_rest", "nesting_map"]


# ========================================================== low-rank remainder, nesting

def rest_x_root(prof: SpectralProfile) -> np.ndarray:
    """``R`` (r x p) with ``R^T R`` the design's Gram outside the leading eigenvectors.

    ``r`` is the numerical rank of that Gram (0 rows for a full basis).
    """
    p = prof.p
    if prof.rest_gram is None or p == 0:
        return np.zeros((0, p))
    G = 0.5 * (prof.rest_gram[:p, :p] + prof.rest_gram[:p, :p].T)
    ev, evec = np.linalg.eigh(G)
    # rounding is judged against the whole design's Gram, not the remainder's own (which
    # is all rounding when the basis is complete, e.g. Nystrom with m = n landmarks), and
    # the remainder has at most n - m directions
    scale = max(float(ev.max()), float(np.sum(prof.X_rot ** 2)), 0.0)
    keep = ev > scale * p * 1e-13
    keep &= np.arange(p) >= p - n_zero_rest(prof)
    return (evec[:, keep] * np.sqrt(ev[keep])).T


def n_zero_rest(prof: SpectralProfile) -> int:
    """Number of zero eigenvalues outside the stored basis (n - m for a low-rank basis)."""
    return prof.nobs - prof.lam.shape[0]


def nesting_map(X1: np.ndarray, X0: np.ndarray, tol: float = 1e-8) -> np.ndarray | None:
    """``A`` with ``X0 = X1 A`` when ``col(X0)`` lies in ``col(X1)``, else None."""
    n = X1.shape[0]
    X0 = X0.reshape(n, -1)
    if X0.shape[1] == 0:
        return np.zeros((X1.shape[1], 0))
    if X1.shape[1] == 0:
        return None
    A, *_ = np.linalg.lstsq(X1, X0, rcond=None)
    resid = X0 - X1 @ A
    scale = np.linalg.norm(X0, axis=0)
    if np.all(np.linalg.norm(resid, axis=0) <= tol * np.maximum(scale, 1e-300)):
        return A
    return None


# =================================================================== simulated null

class NullSimulator:
    """Batched profiled (RE)ML criteria for many responses in one rotated basis.

    A response is represented by its rotated coordinates ``y~`` (k values, the
    stored eigenvectors) and, for a low-rank basis, its out-of-span summaries
    ``X_perp^T y_perp`` (p values) and ``y_perp^T y_perp`` (weight 1 for every t).
    All criteria are evaluated for a block of responses at once: on a common
    grid of t by matrix products, at one t per response by elementwise products.
    """

    def __init__(self, prof: SpectralProfile, reml: bool):
        self.prof = prof
        self.reml = bool(reml)
        self.lam = prof.lam
        self.X = prof.X_rot
        self.p = prof.p
        self.n = prof.nobs
        self.k = self.lam.shape[0]
        self.trace = prof.trace
        self.dof = self.n - self.p if reml else self.n
        p = self.p
        self.XX = (self.X[:, :, None] * self.X[:, None, :]).reshape(self.k, p * p)
        if prof.rest_gram is not None:
            self.rest_xx = 0.5 * (prof.rest_gram[:p, :p] + prof.rest_gram[:p, :p].T)
        else:
            self.rest_xx = np.zeros((p, p))
        self.R = rest_x_root(prof)  # r x p
        self.n_chi = n_zero_rest(prof) - self.R.shape[0]
        if self.n_chi < 0:  # pragma: no cover - rank bound
            raise ValueError("inconsistent low-rank remainder")

    # -- draws -------------------------------------------------------------------------
    def draw(self, nsim: int, rng: np.random.Generator):
        """Responses from H0 with beta = 0, s2 = 1 (the criteria are invariant to both)."""
        Y = rng.standard_normal((self.k, nsim))
        if n_zero_rest(self.prof) > 0:
            z = rng.standard_normal((self.R.shape[0], nsim))
            rxy = self.R.T @ z
            ryy = np.sum(z * z, axis=0)
            if self.n_chi > 0:
                ryy = ryy + rng.chisquare(self.n_chi, nsim)
        else:
            rxy = np.zeros((self.p, nsim))
            ryy = np.zeros(nsim)
        return Y, rxy, ryy

    def observed(self):
        """The fitted data in the same representation (for checks)."""
        prof = self.prof
        Y = prof.y_rot[:, None]
        if prof.rest_gram is not None:
            return Y, prof.rest_gram[:self.p, self.p][:, None], np.array([prof.rest_gram[-1, -1]])
        return Y, np.zeros((self.p, 1)), np.zeros(1)

    # -- criteria ----------------------------------------------------------------------
    @staticmethod
    def _chol(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Batched Cholesky factors and a mask of the positive definite matrices."""
        try:
            return np.linalg.cholesky(G), np.ones(G.shape[:-2], dtype=bool)
        except np.linalg.LinAlgError:
            flat = G.reshape(-1, *G.shape[-2:])
            L = np.zeros_like(flat)
            ok = np.zeros(flat.shape[0], dtype=bool)
            for i, g in enumerate(flat):
                try:
                    L[i] = np.linalg.cholesky(g)
                    ok[i] = True
                except np.linalg.LinAlgError:
                    L[i] = np.eye(g.shape[0])
            return L.reshape(G.shape), ok.reshape(G.shape[:-2])

    def _finish(self, t, rss, logdet, ok) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = -0.5 * (self.dof * (LOG_2PI + np.log(rss / self.dof)) + self.dof
                          + t * self.trace)
        if self.reml:
            out = out - 0.5 * logdet
        return np.where((rss > 0) & ok, out, -np.inf)

    def grid_llf(self, ts: np.ndarray, Y: np.ndarray, Y2: np.ndarray, rxy: np.ndarray,
                 ryy: np.ndarray) -> np.ndarray:
        """Criterion on a common grid ``ts`` (T,) for every response: (T, B)."""
        p = self.p
        W = np.exp(-np.outer(ts, self.lam))                       # T x k
        c = W @ Y2 + ryy                                          # T x B
        if not p:
            return self._finish(ts[:, None], c, 0.0, True)
        G = (W @ self.XX).reshape(-1, p, p) + self.rest_xx         # T x p x p
        L, ok = self._chol(G)
        Linv = np.linalg.inv(L)                                   # T x p x p
        WX = (W[:, None, :] * self.X.T[None, :, :]).reshape(-1, self.k)  # (T p) x k
        bb = (WX @ Y).reshape(-1, p, Y.shape[1])                  # T x p x B
        b = [bb[:, j] + rxy[j] for j in range(p)]                 # p arrays T x B
        rss = c
        for i in range(p):                                        # z = L^{-1} b, row by row
            zi = Linv[:, i, 0, None] * b[0]
            for j in range(1, i + 1):
                zi = zi + Linv[:, i, j, None] * b[j]
            rss = rss - zi * zi
        logdet = 2.0 * np.sum(np.log(np.abs(np.diagonal(L, axis1=-2, axis2=-1))), axis=-1)
        return self._finish(ts[:, None], rss, logdet[:, None], ok[:, None])

    def point_llf(self, t: np.ndarray, Y: np.ndarray, Y2: np.ndarray, rxy: np.ndarray,
                  ryy: np.ndarray) -> np.ndarray:
        """Criterion at one ``t`` per response: t (B,), Y (k, B) -> (B,)."""
        p = self.p
        W = np.exp(-self.lam[:, None] * t[None, :])               # k x B
        c = np.einsum("kb,kb->b", W, Y2) + ryy
        if not p:
            return self._finish(t, c, 0.0, True)
        G = (self.XX.T @ W).T.reshape(-1, p, p) + self.rest_xx     # B x p x p
        L, ok = self._chol(G)
        b = (self.X.T @ (W * Y)).T + rxy.T                        # B x p
        z = np.linalg.solve(L, b[..., None])[..., 0]
        rss = c - np.sum(z * z, axis=-1)
        logdet = 2.0 * np.sum(np.log(np.abs(np.diagonal(L, axis1=-2, axis2=-1))), axis=-1)
        return self._finish(t, rss, logdet, ok)

    def zero_llf(self, Y, Y2, rxy, ryy, A: np.ndarray | None = None) -> np.ndarray:
        """Criterion at t = 0, optionally for the nested design ``X0 = X A`` (ML only)."""
        c = Y2.sum(axis=0) + ryy
        G = self.X.T @ self.X + self.rest_xx
        b = (self.X.T @ Y).T + rxy.T                              # B x p
        if A is None:
            if not self.p:
                return self._finish(0.0, c, 0.0, True)
            L = np.linalg.cholesky(G)
            z = np.linalg.solve(L, b.T).T
            logdet = 2.0 * float(np.sum(np.log(np.diag(L))))
            return self._finish(0.0, c - np.sum(z * z, axis=1), logdet, True)
        if A.shape[1]:
            L0 = np.linalg.cholesky(A.T @ G @ A)
            z = np.linalg.solve(L0, (b @ A).T).T
            rss = c - np.sum(z * z, axis=1)
        else:
            rss = c
        return -0.5 * self.n * (LOG_2PI + np.log(rss / self.n) + 1.0)

    # -- maximisation ----------------------------------------------------------------
    def grid(self, points_per_decade: int = 3) -> np.ndarray:
        lo, hi = self.prof.search_bounds()
        top = float(self.lam.max())
        lo = max(lo, 1e-6 / top)
        m = int(np.ceil(np.log10(hi / lo) * points_per_decade)) + 1
        return np.concatenate([[0.0], np.logspace(np.log10(lo), np.log10(hi), m)])

    def maximize(self, Y, rxy, ryy, ts: np.ndarray | None = None, levels: int = 2,
                 sub: int = 4, polish: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Maximum of the criterion over t >= 0 for each response: (llf_max, t_hat).

        A coarse common log-t grid (with t = 0), evaluated for all responses by
        matrix products, brackets each maximum.  ``levels`` zoom levels then
        evaluate ``2 sub`` points around each bracketed maximum, again by matrix
        products for all responses that share a bracket; ``polish`` successive
        parabolic steps (one evaluation per response each) give the maximum to
        about 1e-10 in the criterion.  Maxima at the last grid point
        (interpolation) are not refined.
        """
        ts = self.grid() if ts is None else ts
        Y2 = Y * Y
        F = self.grid_llf(ts, Y, Y2, rxy, ryy)                    # T x B
        F = np.where(np.isfinite(F), F, -np.inf)
        i = np.argmax(F, axis=0)
        B = Y.shape[1]
        best = F[i, np.arange(B)]
        t_hat = ts[i].copy()
        T = ts.shape[0]
        act = np.flatnonzero((i >= 1) & (i < T - 1))
        if act.size == 0 or T < 3:
            return best, t_hat
        u = np.log(np.maximum(ts, np.finfo(float).tiny))
        h = float(u[2] - u[1])
        u[0] = u[1] - h  # t = 0 stands in as the left neighbour of the first grid point
        ia = i[act]
        cu = u[ia]                                                # centre (log t)
        cf = best[act]
        lf = F[ia - 1, act]
        rf = F[ia + 1, act]
        key = ia.astype(np.int64)
        offs = np.concatenate([np.arange(-sub, 0), np.arange(1, sub + 1)]) / (sub + 1.0)
        for _ in range(levels):
            vals = np.empty((act.size, 2 * sub + 3))
            vals[:, 0], vals[:, sub + 1], vals[:, -1] = lf, cf, rf
            groups, inv = np.unique(key, return_inverse=True)
            order = np.argsort(inv, kind="stable")
            bounds = np.searchsorted(inv[order], np.arange(groups.size + 1))
            for g in range(groups.size):
                rows = order[bounds[g]:bounds[g + 1]]
                cols = act[rows]
                tsub = np.exp(cu[rows[0]] + h * offs)
                Fg = self.grid_llf(tsub, Y[:, cols], Y2[:, cols], rxy[:, cols], ryy[cols])
                Fg = np.where(np.isfinite(Fg), Fg, -np.inf).T     # Bg x 2 sub
                vals[rows, 1:sub + 1] = Fg[:, :sub]
                vals[rows, sub + 2:-1] = Fg[:, sub:]
            j = 1 + np.argmax(vals[:, 1:-1], axis=1)              # 1 .. 2 sub + 1
            r = np.arange(act.size)
            lf, cf, rf = vals[r, j - 1], vals[r, j], vals[r, j + 1]
            h = h / (sub + 1.0)
            cu = cu + (j - (sub + 1)) * h
            key = key * (2 * sub + 1) + (j - 1)
        # successive parabolic steps, starting from (cu - h, cu, cu + h)
        xa, xb, xc = cu - h, cu, cu + h
        fa, fb, fc = lf, cf, rf
        cols = (Y[:, act], Y2[:, act], rxy[:, act], ryy[act])
        for _ in range(polish):
            d1, d2 = xb - xa, xb - xc
            num = d1 * d1 * (fb - fc) - d2 * d2 * (fb - fa)
            den = d1 * (fb - fc) - d2 * (fb - fa)
            with np.errstate(divide="ignore", invalid="ignore"):
                x = xb - 0.5 * num / den
            ok = np.isfinite(x) & (x > xa) & (x < xc) & np.isfinite(fa) & np.isfinite(fc)
            x = np.where(ok, x, xb)
            fx = self.point_llf(np.exp(x), *cols)
            fx = np.where(ok & np.isfinite(fx), fx, -np.inf)
            up, left = fx > fb, x < xb
            xa, xc, fa, fc = (np.where(up, np.where(left, xa, xb), np.where(left, x, xa)),
                              np.where(up, np.where(left, xb, xc), np.where(left, xc, x)),
                              np.where(up, np.where(left, fa, fb), np.where(left, fx, fa)),
                              np.where(up, np.where(left, fb, fc), np.where(left, fc, fx)))
            xb, fb = np.where(up, x, xb), np.where(up, fx, fb)
        best[act] = fb
        t_hat[act] = np.exp(xb)
        return best, t_hat


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _chunk_size(k: int, p: int) -> int:
    return int(max(256, min(20_000, 6_000_000 // max(k * (1 + p // 4), 1))))


def simulate_lr_null(res: FitResults, nsim: int = 10_000, seed: Any = None, *,
                     reml: bool | None = None, nested_exog: np.ndarray | None = None,
                     profile: SpectralProfile | None = None) -> np.ndarray:
    """Draws from the exact finite-sample null of the (restricted) likelihood ratio.

    Under ``H0: t = 0`` the (RE)ML criterion depends on y only through
    ``(I - H) y / s``, so responses are drawn as ``y~ ~ N(0, I)`` in the fit's
    rotated basis (no nuisance parameters) and t is re-profiled for every draw:
    a common log-t grid evaluated for all draws by matrix products, then a
    vectorised parabolic refinement (model.md section 3).

    Parameters
    ----------
    res : MixedLMNTKResults
        The fitted network model (its decomposition of K is reused).
    nsim : int
        Number of simulated statistics.
    seed : int, numpy.random.Generator or None
        Seed for reproducibility.
    reml : bool, optional
        Criterion (default: the fit's).
    nested_exog : ndarray, shape (n, p0), optional
        ML only: the null's fixed-effects design, nested in the model's
        (``col(X0)`` in ``col(X)``), for the LRT of "no network and fewer fixed
        effects" (``2 [max_t l_ML(X, t) - l_ML(X0, 0)]``).
    profile : SpectralProfile, optional
        The rotated data to simulate in (default: the fit's likelihood profile).

    Returns
    -------
    ndarray, shape (nsim,)
        Simulated statistics (>= 0).
    """
    if isinstance(nsim, bool) or not isinstance(nsim, (int, np.integer)):
        raise ValueError(f"nsim must be a positive integer, got {nsim!r}")
    nsim = int(nsim)
    if nsim < 1:
        raise ValueError(f"nsim must be a positive integer, got {nsim}")
    reml = res.reml if reml is None else bool(reml)
    prof = res.likelihood_profile if profile is None else profile
    check_complete_spectrum(prof, "the simulated null of the likelihood ratio (lr_test("
                            "method='simulate'); method='mixture' needs no spectrum)")
    sim = NullSimulator(prof, reml)
    A = None
    if nested_exog is not None:
        if reml:
            raise ValueError("REML likelihoods with different fixed effects are not comparable; "
                             "use reml=False with nested_exog")
        A = nesting_map(res.model.exog, np.asarray(nested_exog, dtype=float))
        if A is None:
            raise ValueError("nested_exog is not nested in the model's fixed-effects design")
    rng = _rng(seed)
    ts = sim.grid()
    out = np.empty(nsim)
    step = _chunk_size(sim.k, sim.p)
    for s in range(0, nsim, step):
        bsz = min(step, nsim - s)
        Y, rxy, ryy = sim.draw(bsz, rng)
        lmax, _ = sim.maximize(Y, rxy, ryy, ts)
        l0 = sim.zero_llf(Y, Y * Y, rxy, ryy, A)
        st = 2.0 * (lmax - l0)
        # rounding-level positives are boundary maxima (the fit reports exactly 0 there)
        out[s:s + bsz] = np.where(st > 1e-11 * np.maximum(1.0, np.abs(l0)), st, 0.0)
    return out


# ============================================================== p-values

def mixture_sf(stat: float, df0: int = 0) -> float:
    """``P(0.5 chi2_df0 + 0.5 chi2_{df0+1} >= stat)`` (chi2_0 a point mass at 0)."""
    if stat <= 0:
        return 1.0
    lo = float(stats.chi2.sf(stat, df0)) if df0 > 0 else 0.0
    return 0.5 * lo + 0.5 * float(stats.chi2.sf(stat, df0 + 1))


def simulated_pvalue(stat: float, null: np.ndarray) -> tuple[float, float]:
    """``(1 + #{T* >= T}) / (nsim + 1)`` and its Monte Carlo standard error."""
    tol = 1e-8 * max(1.0, abs(stat))
    k = int(np.sum(null >= stat - tol))
    nsim = null.shape[0]
    p = (1 + k) / (nsim + 1)
    return p, math.sqrt(p * (1 - p) / nsim)
