"""The profiled likelihood of the network beside group random effects.

With group effects ``b ~ N(0, s2 Lambda(theta) Lambda(theta)^T)`` (lme4's relative
covariance factor, :mod:`mixednn.bars`) the model is

    y = X beta + f0 + Z b + u + e,   Var(y) = s2 H,   H = exp(tK) + Z Lambda Lambda^T Z^T.

One eigendecomposition ``K = U diag(lam) U^T`` serves every ``(t, theta)``: in the
rotated coordinates (``y~ = U^T (y - f0)``, ``X~ = U^T X``, ``R = U^T Z``, computed
once) ``H~ = D + R Lambda Lambda^T R^T`` with ``D = diag(exp(t lam))``, so by Woodbury

    H~^{-1} = W - W R Lambda A^{-1} Lambda^T R^T W,   W = D^{-1},
    A = Lambda^T G Lambda + I,   G = R^T W R,
    log det H = t tr(K) + log det A.

Per new ``t`` the q x q product ``G`` costs O(n q^2); per ``theta`` a q x q Cholesky
O(q^3).  Without a network (``lam = 0``, no rotation) this is exactly lme4's
penalised least squares and its profiled REML/ML criterion (Bates et al. 2015,
equations 34 and 41).  Gradients in ``(t, theta)`` are analytic (``gradient``):

    d llf / d phi = -1/2 [ tr(P_rho dH) - d_f (y^T P dH P y) / rss ]

with ``P`` the GLS projection, ``P_rho`` its REML (``H^{-1} - H^{-1} X (X^T H^{-1}
X)^{-1} X^T H^{-1}``) or ML (``H^{-1}``) version, ``dH/dt = K exp(tK)`` and
``dH/dtheta_k = Z (E_k Lambda^T + Lambda E_k^T) Z^T``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from .bars import GroupStructure
from .numerics import LOG_2PI

__all__ = ["GroupedProfile", "GroupPoint", "TimeProducts"]


@dataclass(frozen=True)
class GroupPoint:
    """Profiled quantities at one ``(t, theta)`` (frozen).

    Attributes
    ----------
    t, theta
        Where.
    beta : ndarray (p,)
        GLS fixed effects.
    rss : float
        ``r^T H^{-1} r`` (lme4's penalised residual sum of squares).
    scale : float
        s2 (``rss / (n - p)`` for REML, ``rss / n`` for ML).
    llf : float
        Profiled REML or ML log-likelihood (constant c = 0, as lme4).
    xhx : ndarray (p, p)
        ``X^T H^{-1} X``: ``cov(beta) = scale * inv(xhx)``.
    b : ndarray (q,)
        Conditional modes of the group effects (lme4's ``ranef``, level-major).
    net_target : ndarray (n,)
        ``U^T (y - f0 - X beta - Z b)``: what the network is trained on (rotated).
    logdet_a : float
        ``log det A``.
    """

    t: float
    theta: np.ndarray
    beta: np.ndarray
    rss: float
    scale: float
    llf: float
    xhx: np.ndarray
    b: np.ndarray
    net_target: np.ndarray
    logdet_a: float


class _Lambda:
    """``Lambda(theta)`` as an operator: a diagonal (random intercepts and single slopes
    only: products by scaling, no q^3) or a dense q x q matrix."""

    def __init__(self, structure: GroupStructure, theta: np.ndarray, diagonal: bool):
        if diagonal:
            rows, _, which = structure.lambda_pattern
            self.d = np.empty(structure.q)
            self.d[rows] = theta[which]
            self.M = None
        else:
            self.d = None
            self.M = structure.lambda_matrix(theta)

    def t_left(self, B: np.ndarray) -> np.ndarray:
        """``Lambda^T B``."""
        if self.M is None:
            return self.d[:, None] * B if B.ndim == 2 else self.d * B
        return self.M.T @ B

    def left(self, B: np.ndarray) -> np.ndarray:
        """``Lambda B``."""
        if self.M is None:
            return self.d[:, None] * B if B.ndim == 2 else self.d * B
        return self.M @ B

    def right(self, B: np.ndarray) -> np.ndarray:
        """``B Lambda``."""
        return B * self.d[None, :] if self.M is None else B @ self.M

    def sandwich(self, G: np.ndarray) -> np.ndarray:
        """``Lambda^T G Lambda``."""
        return self.d[:, None] * G * self.d[None, :] if self.M is None else self.M.T @ G @ self.M


@dataclass(frozen=True)
class TimeProducts:
    """Products that depend on t only, cached between theta evaluations: ``w =
    exp(-t lam)``, ``G = R^T W R``, ``R^T W X~``, ``R^T W y~``, ``X~^T W X~``,
    ``X~^T W y~``, ``y~^T W y~`` (the t-derivative's product: :meth:`GroupedProfile.g_lam`)."""

    w: np.ndarray
    G: np.ndarray
    rwx: np.ndarray
    rwy: np.ndarray
    xwx: np.ndarray
    xwy: np.ndarray
    ywy: float


class GroupedProfile:
    """REML/ML of ``(t, theta)`` for the network beside group effects.

    Parameters
    ----------
    eigenvalues : ndarray (n,) or None
        Eigenvalues of K; ``None`` for no network (lme4's linear mixed model).
    y_rot, X_rot : ndarray
        ``U^T (y - f0)`` and ``U^T X`` (unrotated without a network).
    Z_rot : ndarray (n, q)
        ``U^T Z`` (``Z`` itself without a network).
    trace : float
        ``tr(K)`` (0 without a network).
    structure : GroupStructure
        The bar terms: ``Lambda(theta)`` and its derivatives.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from mixednn.bars import GroupStructure, split_bars
    >>> df = pd.DataFrame({"g": np.repeat(list("abcde"), 4)})
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(rng.normal(size=5), 4) + rng.normal(size=20)
    >>> gs = GroupStructure.from_frame(split_bars("y ~ (1 | g)")[1], df)
    >>> prof = GroupedProfile(None, y, np.ones((20, 1)), gs.Z.toarray(), 0.0, gs)
    >>> bool(np.isfinite(prof.loglike(0.0, np.array([1.0]))))
    True
    """

    def __init__(self, eigenvalues: np.ndarray | None, y_rot: np.ndarray, X_rot: np.ndarray,
                 Z_rot: np.ndarray, trace: float, structure: GroupStructure):
        self.y = np.asarray(y_rot, dtype=float)
        self.nobs = int(self.y.shape[0])
        self.X = np.asarray(X_rot, dtype=float).reshape(self.nobs, -1)
        self.R = np.asarray(Z_rot, dtype=float)
        self.p = int(self.X.shape[1])
        self.q = int(self.R.shape[1])
        self.has_network = eigenvalues is not None
        self.lam = (np.zeros(self.nobs) if eigenvalues is None
                    else np.asarray(eigenvalues, dtype=float))
        self.trace = float(trace)
        self.structure = structure
        self.pattern = structure.lambda_pattern
        self.diagonal = all(b.k == 1 for b in structure.blocks)
        self._cache: dict[float, TimeProducts] = {}
        self._lam_cache: dict[float, np.ndarray] = {}

    def with_response(self, y_rot: np.ndarray) -> "GroupedProfile":
        """The same model for another (rotated) response: simulations of the null."""
        return GroupedProfile(self.lam if self.has_network else None, y_rot, self.X, self.R,
                              self.trace, self.structure)

    def with_network_fixed_at_zero(self) -> "GroupedProfile":
        """The t = 0 model (groups only) in the same rotated coordinates: rotation leaves
        ``I + R Lambda Lambda^T R^T`` and so the likelihood unchanged."""
        return GroupedProfile(None, self.y, self.X, self.R, 0.0, self.structure)

    # ------------------------------------------------------------------ per-t products
    def at_t(self, t: float) -> TimeProducts:
        """The products that depend on t only (cached for the last t)."""
        t = float(t) if self.has_network else 0.0
        if t in self._cache:
            return self._cache[t]
        w = np.exp(-t * self.lam) if self.has_network else np.ones(self.nobs)
        SR = np.sqrt(w)[:, None] * self.R
        G = SR.T @ SR
        WR = w[:, None] * self.R
        out = TimeProducts(w, 0.5 * (G + G.T), WR.T @ self.X, WR.T @ self.y,
                   self.X.T @ (w[:, None] * self.X), self.X.T @ (w * self.y),
                   float(self.y @ (w * self.y)))
        if len(self._cache) >= 8:  # a few recent times: finite differences revisit them
            self._cache.pop(next(iter(self._cache)))
        self._cache[t] = out
        return out

    def g_lam(self, t: float) -> np.ndarray:
        """``R^T diag(lam w) R`` (the t-derivative's q x q product), cached like ``at_t``."""
        t = float(t)
        if t not in self._lam_cache:
            w = self.at_t(t).w
            SR = np.sqrt(self.lam * w)[:, None] * self.R
            if len(self._lam_cache) >= 8:
                self._lam_cache.pop(next(iter(self._lam_cache)))
            self._lam_cache[t] = SR.T @ SR
        return self._lam_cache[t]

    # ------------------------------------------------------------------ evaluation
    def _solve(self, t: float, theta: np.ndarray, reml: bool) -> dict[str, Any]:
        c = self.at_t(t)
        Lam = _Lambda(self.structure, theta, self.diagonal)
        A = Lam.sandwich(c.G)
        A[np.diag_indices_from(A)] += 1.0        # Lambda^T G Lambda + I
        L = np.linalg.cholesky(0.5 * (A + A.T))
        logdet_a = 2.0 * float(np.log(np.diag(L)).sum())
        rzx = scipy.linalg.solve_triangular(L, Lam.t_left(c.rwx), lower=True)   # q x p
        rzy = scipy.linalg.solve_triangular(L, Lam.t_left(c.rwy), lower=True)   # q
        xhx = c.xwx - rzx.T @ rzx
        xhy = c.xwy - rzx.T @ rzy
        yhy = c.ywy - float(rzy @ rzy)
        p, n = self.p, self.nobs
        if p:
            xhx = 0.5 * (xhx + xhx.T)
            Cx = np.linalg.cholesky(xhx)
            beta = scipy.linalg.cho_solve((Cx, True), xhy)
            logdet_x = 2.0 * float(np.log(np.diag(Cx)).sum())
        else:
            Cx, beta, logdet_x = None, np.empty(0), 0.0
        rss = yhy - float(xhy @ beta)
        dof = n - p if reml else n
        scale = rss / dof
        llf = -0.5 * (dof * (LOG_2PI + math.log(scale)) + dof + t * self.trace + logdet_a)
        if reml:
            llf -= 0.5 * logdet_x
        return dict(c=c, Lam=Lam, L=L, logdet_a=logdet_a, xhx=xhx, Cx=Cx, beta=beta, rss=rss,
                    scale=scale, llf=llf, rzx=rzx, rzy=rzy)

    def loglike(self, t: float, theta: np.ndarray, reml: bool = True) -> float:
        """Profiled REML (or ML) log-likelihood at ``(t, theta)``; -inf where undefined."""
        try:
            s = self._solve(float(t), np.asarray(theta, dtype=float), reml)
        except (np.linalg.LinAlgError, ValueError):
            return -np.inf
        return s["llf"] if s["rss"] > 0 else -np.inf

    def point(self, t: float, theta: np.ndarray, reml: bool = True) -> GroupPoint:
        """Everything at ``(t, theta)``: beta, s2, llf, conditional modes, network target."""
        theta = np.asarray(theta, dtype=float)
        s = self._solve(float(t), theta, reml)
        c, Lam, L = s["c"], s["Lam"], s["L"]
        r = self.y - self.X @ s["beta"]
        # b = Lambda A^{-1} Lambda^T R^T W r
        rwr = c.rwy - c.rwx @ s["beta"]
        u = scipy.linalg.cho_solve((L, True), Lam.t_left(rwr))
        b = Lam.left(u)
        target = r - self.R @ b
        return GroupPoint(float(t), theta.copy(), s["beta"], float(s["rss"]), float(s["scale"]),
                          float(s["llf"]), s["xhx"], b, target, float(s["logdet_a"]))

    def gradient(self, t: float, theta: np.ndarray, reml: bool = True
                 ) -> tuple[float, np.ndarray]:
        """The log-likelihood and its analytic gradient in ``(t, theta)`` (t first)."""
        theta = np.asarray(theta, dtype=float)
        s = self._solve(float(t), theta, reml)
        c, Lam, L = s["c"], s["Lam"], s["L"]
        n, p = self.nobs, self.p
        dof = n - p if reml else n
        beta = s["beta"]
        # M = Lambda A^{-1} Lambda^T, so H~^{-1} = W - W R M R^T W
        Linv = scipy.linalg.solve_triangular(L, np.eye(self.q), lower=True)
        Ainv = Linv.T @ Linv
        M = Lam.left(Lam.left(Ainv).T)          # Lambda A^{-1} Lambda^T
        G = c.G
        # R^T H^{-1} R, R^T H^{-1} X, R^T H^{-1} r
        GM = G @ M
        RHR = G - GM @ G
        RHX = c.rwx - GM @ c.rwx
        rwr = c.rwy - c.rwx @ beta
        v = rwr - GM @ rwr                          # R^T H^{-1} r
        if p:
            xhx_inv = scipy.linalg.cho_solve((s["Cx"], True), np.eye(p))
        else:
            xhx_inv = np.zeros((0, 0))
        Mrho = RHR - (RHX @ xhx_inv @ RHX.T if reml and p else 0.0)   # R^T P_rho R
        rss = s["rss"]
        grad = np.zeros(1 + theta.size)
        # theta: tr(P_rho dH) = 2 sum_{E_k} (Mrho Lambda)_{rc}; quad = 2 v^T E_k Lambda^T v
        MrhoLam = Lam.right(Mrho)
        Ltv = Lam.t_left(v)
        rows, cols, which = self.pattern
        k = theta.size
        tr_term = 2.0 * np.bincount(which, MrhoLam[rows, cols], minlength=k)
        quad_th = 2.0 * np.bincount(which, v[rows] * Ltv[cols], minlength=k)
        grad[1:] = -0.5 * (tr_term - dof * quad_th / rss)
        if self.has_network:
            lam, w = self.lam, c.w
            # tr(H~^{-1} diag(lam d)) = sum lam - tr(M G_lam)
            tr_h = float(lam.sum()) - float(np.sum(M * self.g_lam(t)))
            Py_full = w * (self.y - self.X @ beta) - w * (self.R @ (M @ rwr))
            quad = float(np.sum(lam / w * Py_full ** 2))
            tr_x = 0.0
            if reml and p:
                HX = w[:, None] * self.X - (w[:, None] * self.R) @ (M @ c.rwx)   # H~^{-1} X~
                tr_x = float(np.sum((HX.T @ ((lam / w)[:, None] * HX)) * xhx_inv))
            # d log det H / dt uses tr(K) exactly (the clipped spectrum's sum otherwise)
            tr_h += self.trace - float(lam.sum())
            grad[0] = -0.5 * (tr_h - tr_x - dof * quad / rss)
        return float(s["llf"]), grad
