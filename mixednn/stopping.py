"""Alternative rules for the training time t: GCV, Cp/SURE, leave-one-out and K-fold CV.

REML (``docs/model.md`` section 2) estimates t as a variance component.  The rules
here instead choose t to minimise an estimate of prediction error of the fitted
values, all from the model's one decomposition ``K = U diag(lam) U^T``.

The smoother
------------
With ``E_t = exp(-tK)``, ``W = diag(exp(-t lam))`` and the fixed effects estimated by
GLS under ``V(t) = s2 exp(tK)``, ``beta(t) = (X^T E_t X)^{-1} X^T E_t y``, the fitted
values ``X beta(t) + (I - E_t)(y - X beta(t))`` are ``H_t y`` with the full hat matrix

    H_t = I - M_t,     M_t = E_t - E_t X (X^T E_t X)^{-1} X^T E_t,

since the residual is ``y - y_hat = E_t (y - X beta(t)) = M_t y``.  (Without fixed
effects, ``H_t = S_t = I - exp(-tK)``, the network smoother.)  ``M_t`` is, up to
``s2``, the REML projection ``P = V^{-1} - V^{-1} X (X^T V^{-1} X)^{-1} X^T V^{-1}``.
In the rotated basis ``tr M_t = sum_i w_i - sum_i w_i h_i`` with ``h_i`` the
leverages of the weighted least-squares problem ``sqrt(W) X~``, so GCV and Cp cost
O(n p^2) per t, like the likelihood.

The rules (each minimised over t >= 0 by :meth:`SpectralProfile.minimize_criterion`)
----------------------------------------------------------------------------------
* ``"gcv"``: ``n ||M_t y||^2 / tr(M_t)^2`` (Craven & Wahba 1979).
* ``"cp"``: Mallows' Cp / Stein's unbiased risk estimate,
  ``||M_t y||^2 / n + 2 s2 tr(H_t) / n - s2``; ``s2`` is fixed across t (by default
  ``||M y||^2 / tr M`` at the GCV time; ``sigma2="reml"`` takes the REML estimate).
* ``"loo"``: exact leave-one-out, ``mean_i ((M_t y)_i / (M_t)_ii)^2``.  This is the
  error of predicting ``y_i`` from the other rows *under the model at this t*
  (beta re-estimated by GLS without row i, the network part the BLUP given the
  others), i.e. the Craven-Wahba leaving-out-one identity, verified in the tests
  against explicit refits.  It is not the same as retraining the network by
  gradient flow on n - 1 rows: that uses ``exp(-t K_{-i,-i})``, which is not a
  submatrix of ``exp(-tK)`` and has no closed form in the one decomposition.
* ``"kfold"``: K-fold CV with the same exact refits, fold residuals
  ``(M_t)_{FF}^{-1} (M_t y)_F``; O(n^3 / K) per t, so the default grid is coarser.

Diagnostic
----------
:func:`diagnose` flags fits where REML is not to be trusted blindly: rules that
disagree by more than a factor of 3 in t, or leading eigen-directions whose
standardised spectral losses ``w_i r~_i^2 / s2`` are far from their expectation 1
(the decorrelation of ``docs/model.md`` fails where it matters most).

References
----------
Craven & Wahba (1979). Smoothing noisy data with spline functions. Numer. Math. 31.
Mallows (1973). Some comments on Cp. Technometrics 15.
Stein (1981). Estimation of the mean of a multivariate normal distribution. Ann. Stat. 9.
Wahba (1990). Spline Models for Observational Data, ch. 4. SIAM.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.linalg
from scipy import stats

from .spectral import (BoundaryFitWarning, InterpolationWarning, SpectralProfile, TimeEstimate)

if TYPE_CHECKING:  # pragma: no cover
    from .model import MixedLMNTK
    from .results import MixedLMNTKResults

__all__ = ["T_METHODS", "SmootherData", "GCV", "Cp", "LeaveOneOut", "KFold", "make_criterion",
           "choose_time", "hat_matrix", "compare_rules", "diagnose", "StoppingDiagnostic",
           "fit_with_rule"]

#: The rules accepted by ``fit(t_method=...)``.
T_METHODS = ("reml", "ml", "gcv", "cp", "loo", "kfold")
_LIKELIHOOD = ("reml", "ml")


# ------------------------------------------------------------------------ smoother data

@dataclass
class SmootherData:
    """What the prediction-error rules need, all from one decomposition.

    Parameters
    ----------
    profile : SpectralProfile
        Rotated response and design (``m`` eigen-directions).
    nobs : int
        n, the number of rows (may exceed ``m``).
    complement : {"none", "identity", "absorbed"}
        What happens outside the ``m`` directions: ``"none"`` (a full basis, m = n),
        ``"identity"`` (a low-rank kernel: ``K = 0`` there, weight 1, via the
        profile's ``rest_gram``) or ``"absorbed"`` (free modes: the directions are
        unpenalised fixed effects, fitted exactly, ``M_t = 0`` there).
    eigenvectors : callable returning ndarray (n, m), optional
        The ``m`` eigenvectors as columns (only LOO and K-fold need them).
    y, X : ndarray, optional
        Response minus offset, and the fixed-effects design, in the data basis
        (needed by LOO and K-fold only with ``complement="identity"``).
    """

    profile: SpectralProfile
    nobs: int
    complement: str = "none"
    eigenvectors: Any = None
    y: np.ndarray | None = None
    X: np.ndarray | None = None

    @classmethod
    def from_model(cls, model: "MixedLMNTK") -> "SmootherData":
        """The smoother of a fitted model's decomposition."""
        basis = model.basis
        rot = cls.rotated(model)
        return cls(rot.profile, model.nobs, rot.complement, lambda: basis.eigenvectors,
                   model.endog - model.offset, model.exog)

    @classmethod
    def rotated(cls, model: "MixedLMNTK") -> "SmootherData":
        """Only the rotated quantities: enough for the likelihood, GCV and Cp, and reads
        no rows (a streamed model's rows stay where they are)."""
        prof = model.profile
        comp = ("identity" if prof.rest_gram is not None
                else "absorbed" if prof.lam.shape[0] < model.nobs else "none")
        return cls(prof, model.nobs, comp)

    # -- one t -------------------------------------------------------------------
    def parts(self, t: float, normalize: bool = False) -> dict:
        """Rotated residuals and weighted leverages at ``t``.

        Returns a dict with ``w`` (weights), ``beta``, ``r`` (``y~ - X~ beta``),
        ``G`` (``W X~ R^{-1}`` with ``X~^T W X~ = R^T R``, m x p), ``e2`` (``||M_t y||^2``)
        and ``trM`` (``tr M_t``).  ``normalize=True`` divides the weights by their
        maximum and sets those below 1e-250 to zero, which scales ``M_t`` by a constant
        (LOO and K-fold residuals are invariant) and keeps subnormal numbers, which
        slow BLAS down by orders of magnitude, out of the products.
        """
        prof = self.profile
        p = prof.p
        w = np.exp(-t * prof.lam)
        if normalize:
            if self.complement != "identity" and w.size:
                w = w / w.max()
            w[w < 1e-250] = 0.0
        sw = np.sqrt(w)
        B = sw[:, None] * prof.X_rot
        yb = sw * prof.y_rot
        rest = prof._rest_root if self.complement == "identity" else None
        if rest is not None:
            B = np.vstack([B, rest[:, :p]])
            yb = np.concatenate([yb, rest[:, p]])
        n_extra = self.nobs - prof.lam.shape[0] if self.complement == "identity" else 0
        if p:
            Q, R = np.linalg.qr(B)
            d = np.abs(np.diag(R))
            if d.min() <= 1e-13 * max(d.max(), 1e-300):
                return {"w": w, "beta": np.full(p, np.nan), "r": None, "G": None,
                        "e2": np.nan, "trM": np.nan}
            beta = scipy.linalg.solve_triangular(R, Q.T @ yb)
            h = np.einsum("ij,ij->i", Q, Q)
            m = prof.lam.shape[0]
            trM = float(np.sum(w * (1 - h[:m])) + n_extra - np.sum(h[m:]))
            r = prof.y_rot - prof.X_rot @ beta
            G = scipy.linalg.solve_triangular(R, (w[:, None] * prof.X_rot).T, trans="T").T
        else:
            beta = np.empty(0)
            r = prof.y_rot
            trM = float(np.sum(w) + n_extra)
            G = np.empty((w.shape[0], 0))
        e2 = float(np.sum((w * r) ** 2))
        if rest is not None:
            rr = rest[:, p] - rest[:, :p] @ beta
            e2 += float(rr @ rr)
        return {"w": w, "beta": beta, "r": r, "G": G, "e2": e2, "trM": trM}

    def grid_parts(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``||M_t y||^2`` and ``tr M_t`` on many t at once, from weighted cross-products.

        Vectorised (one matrix product for all t, then batched p x p solves); used to
        locate the minimum on the search grid, which :meth:`parts` (QR, no
        cancellation) then refines.
        """
        prof = self.profile
        p = prof.p
        ts = np.asarray(ts, dtype=float)
        W = np.exp(-np.outer(ts, prof.lam))
        A = prof._A
        q = p + 1
        AA = (A[:, :, None] * A[:, None, :]).reshape(A.shape[0], q * q)
        S1 = (W @ AA).reshape(-1, q, q)
        S2 = ((W * W) @ AA).reshape(-1, q, q)
        sw = W.sum(axis=1)
        if self.complement == "identity":
            S1 = S1 + prof.rest_gram
            S2 = S2 + prof.rest_gram
            sw = sw + (self.nobs - prof.lam.shape[0])
        if not p:
            return np.maximum(S2[:, 0, 0], 0.0), sw
        XX = S1[:, :p, :p]
        with np.errstate(all="ignore"):
            try:
                sol = np.linalg.solve(XX, np.concatenate([S1[:, :p, p:], S2[:, :p, :p]], axis=2))
            except np.linalg.LinAlgError:
                sol = np.stack([np.linalg.lstsq(XX[i], np.concatenate(
                    [S1[i, :p, p:], S2[i, :p, :p]], axis=1), rcond=None)[0] for i in range(len(ts))])
            beta = sol[:, :, 0]
            e2 = (S2[:, p, p] - 2 * np.einsum("ti,ti->t", beta, S2[:, :p, p])
                  + np.einsum("ti,tij,tj->t", beta, S2[:, :p, :p], beta))
            trM = sw - np.einsum("tii->t", sol[:, :, 1:])
        return np.maximum(e2, 0.0), trM

    def data_basis(self, t: float, parts: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``diag(M_t)``, ``M_t y`` and ``E_t X R^{-1}`` in the data basis (for LOO / K-fold)."""
        pr = self.parts(t, normalize=True) if parts is None else parts
        U = self._U()
        w, r, G = pr["w"], pr["r"], pr["G"]
        if r is None:
            n = self.nobs
            return np.full(n, np.nan), np.full(n, np.nan), np.full((n, self.profile.p), np.nan)
        if getattr(self, "_U2", None) is None:
            self._U2 = U * U
        dE = self._U2 @ w
        e = U @ (w * r)
        EXR = U @ G
        if self.complement == "identity":
            beta = pr["beta"]
            yr = self.y - self.X @ beta
            Rm = self._Rinv(pr)
            dE = dE + (1.0 - np.einsum("ij,ij->i", U, U))
            e = e + (yr - U @ (U.T @ yr))
            if self.profile.p:
                XR = self.X @ Rm
                EXR = EXR + (XR - U @ (U.T @ XR))
        diagM = dE - np.einsum("ij,ij->i", EXR, EXR)
        return diagM, e, EXR

    def _Rinv(self, pr: dict) -> np.ndarray:
        prof = self.profile
        p = prof.p
        if not p:
            return np.empty((0, 0))
        B = np.sqrt(pr["w"])[:, None] * prof.X_rot
        if self.complement == "identity":
            B = np.vstack([B, prof._rest_root[:, :p]])
        R = np.linalg.qr(B, mode="r")
        return scipy.linalg.solve_triangular(R, np.eye(p))

    def _U(self) -> np.ndarray:
        if self.eigenvectors is None:
            raise ValueError("leave-one-out and K-fold CV need the eigenvectors of K; build the "
                             "SmootherData with eigenvectors=")
        if callable(self.eigenvectors):
            self.eigenvectors = np.asarray(self.eigenvectors())
        return self.eigenvectors

    def trace_hat(self, t: float) -> float:
        """Effective degrees of freedom of the whole fit, ``tr H_t = n - tr M_t``."""
        return self.nobs - self.parts(t)["trM"]


# ------------------------------------------------------------------------ criteria

class _Criterion:
    name = ""
    points_per_decade = 12

    def __init__(self, data: SmootherData):
        self.data = data

    def value(self, t: float) -> float:
        raise NotImplementedError

    def values(self, ts: np.ndarray) -> np.ndarray:
        return np.array([self.value(float(t)) for t in np.asarray(ts, dtype=float)])

    def __call__(self, t: float) -> float:
        return self.value(t)


class GCV(_Criterion):
    """Generalised cross-validation ``n ||M_t y||^2 / tr(M_t)^2`` (Craven & Wahba 1979).

    Undefined (``inf``) once fewer than one residual degree of freedom is left,
    ``tr M_t < 1``: the fit interpolates.

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> from mixednn.stopping import GCV, SmootherData
    >>> rng = np.random.default_rng(0); Z = rng.normal(size=(60, 2))
    >>> y = np.sin(Z[:, 0]) + 0.3 * rng.normal(size=60)
    >>> m = mn.MixedLMNTK(y, np.ones((60, 1)), Z, network=mn.MLP(depth=1))
    >>> GCV(SmootherData.from_model(m)).value(0.0) > 0
    True
    """

    name = "gcv"

    def value(self, t: float) -> float:
        pr = self.data.parts(t)
        if not pr["trM"] >= 1.0:
            return math.inf
        return self.data.nobs * pr["e2"] / pr["trM"] ** 2

    def values(self, ts: np.ndarray) -> np.ndarray:
        e2, trM = self.data.grid_parts(ts)
        with np.errstate(all="ignore"):
            return np.where(trM >= 1.0, self.data.nobs * e2 / trM ** 2, np.inf)


class Cp(_Criterion):
    """Mallows' Cp / SURE: ``||M_t y||^2 / n + 2 s2 tr(H_t) / n - s2`` with s2 fixed.

    Parameters
    ----------
    data : SmootherData
    sigma2 : float
        The noise variance, held fixed across t.
    """

    name = "cp"

    def __init__(self, data: SmootherData, sigma2: float):
        super().__init__(data)
        if not (np.isfinite(sigma2) and sigma2 > 0):
            raise ValueError(f"Cp needs a positive noise variance sigma2, got {sigma2!r}")
        self.sigma2 = float(sigma2)

    def value(self, t: float) -> float:
        pr = self.data.parts(t)
        n = self.data.nobs
        df = n - pr["trM"]
        return pr["e2"] / n + 2 * self.sigma2 * df / n - self.sigma2

    def values(self, ts: np.ndarray) -> np.ndarray:
        e2, trM = self.data.grid_parts(ts)
        n = self.data.nobs
        return e2 / n + 2 * self.sigma2 * (n - trM) / n - self.sigma2


class LeaveOneOut(_Criterion):
    """Exact leave-one-out mean squared error ``mean_i ((M_t y)_i / (M_t)_ii)^2``.

    O(n m) per t from the eigenvectors (no refits).  See the module notes for what
    "leave one out" means here.
    """

    name = "loo"

    def residuals(self, t: float) -> np.ndarray:
        """The n leave-one-out prediction errors ``y_i - y_hat_{(-i)}`` at t."""
        diagM, e, _ = self.data.data_basis(t)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(diagM > 1e-12, e / diagM, np.inf)

    def value(self, t: float) -> float:
        res = self.residuals(t)
        return float(np.mean(res ** 2)) if np.all(np.isfinite(res)) else math.inf

    def values(self, ts: np.ndarray, chunk: int = 16) -> np.ndarray:
        """The criterion on many t: batched products ``U @ [w r~, W X~ L^{-T}]`` per chunk of t."""
        data = self.data
        ts = np.asarray(ts, dtype=float)
        if data.complement == "identity":
            return super().values(ts)
        prof = data.profile
        U = data._U()
        if getattr(data, "_U2", None) is None:
            data._U2 = U * U
        p = prof.p
        Xr, yr = prof.X_rot, prof.y_rot
        out = np.empty(ts.shape[0])
        for c0 in range(0, ts.shape[0], chunk):
            tc = ts[c0:c0 + chunk]
            W = np.exp(-np.outer(tc, prof.lam))
            W /= np.maximum(W.max(axis=1, keepdims=True), 1e-300)
            W[W < 1e-250] = 0.0
            try:
                if p:
                    XX = np.einsum("ti,ij,ik->tjk", W, Xr, Xr)
                    L = np.linalg.cholesky(XX)
                    beta = np.linalg.solve(XX, np.einsum("ti,ij,i->tj", W, Xr, yr)[:, :, None])[:, :, 0]
                    r = yr[None, :] - beta @ Xr.T
                    # G_t = W X~ L^{-T}, so that G G^T = W X~ (X~^T W X~)^{-1} X~^T W
                    Linv = np.linalg.inv(L)
                    G = np.einsum("ti,ij,tkj->tik", W, Xr, Linv)
                else:
                    r = np.broadcast_to(yr, W.shape)
                    G = np.empty((tc.shape[0], W.shape[1], 0))
            except np.linalg.LinAlgError:
                out[c0:c0 + chunk] = [self.value(float(t)) for t in tc]
                continue
            C = np.concatenate([(W * r)[:, :, None], G], axis=2)  # t x m x (p+1)
            D = U @ C.transpose(1, 0, 2).reshape(U.shape[1], -1)
            D = D.reshape(U.shape[0], tc.shape[0], p + 1)
            dE = data._U2 @ W.T  # n x t
            diagM = dE - np.einsum("ntk,ntk->nt", D[:, :, 1:], D[:, :, 1:])
            with np.errstate(all="ignore"):
                res = np.where(diagM > 1e-12, D[:, :, 0] / diagM, np.inf)
                vals = np.mean(res ** 2, axis=0)
            out[c0:c0 + chunk] = np.where(np.all(np.isfinite(res), axis=0), vals, np.inf)
        return out


class KFold(_Criterion):
    """K-fold cross-validation with exact refits at each t: fold residuals ``M_FF^{-1} (M y)_F``.

    Parameters
    ----------
    data : SmootherData
    folds : int or sequence of int arrays
        Number of folds (random, balanced, from ``seed``) or explicit row-index folds.
    seed : int
        Seed of the random fold assignment.
    """

    name = "kfold"
    points_per_decade = 4

    def __init__(self, data: SmootherData, folds: Any = 10, seed: int = 0):
        super().__init__(data)
        n = data.nobs
        if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
            k = int(folds)
            if not 2 <= k <= n:
                raise ValueError(f"folds must be between 2 and n = {n}, got {k}")
            perm = np.random.default_rng(seed).permutation(n)
            self.folds = [np.sort(perm[i::k]) for i in range(k)]
        else:
            fl = [np.asarray(f, dtype=int).ravel() for f in folds]
            allidx = np.concatenate(fl) if fl else np.empty(0, int)
            if len(fl) < 2 or np.unique(allidx).size != allidx.size or allidx.size != n \
                    or allidx.min() < 0 or allidx.max() >= n:
                raise ValueError("explicit folds must be at least two disjoint index arrays "
                                 f"covering every row 0..{n - 1} exactly once")
            self.folds = fl

    def residuals(self, t: float) -> np.ndarray:
        """Held-out prediction errors of every row (from its fold's refit) at t."""
        data = self.data
        pr = data.parts(t, normalize=True)
        if pr["r"] is None:
            return np.full(data.nobs, np.inf)
        U = data._U()
        _, e, EXR = data.data_basis(t, pr)
        w = pr["w"]
        out = np.empty(data.nobs)
        for F in self.folds:
            UF = U[F]
            MFF = (UF * w) @ UF.T - EXR[F] @ EXR[F].T
            if data.complement == "identity":
                MFF += np.eye(F.size) - UF @ UF.T
            try:
                c = scipy.linalg.cho_factor(MFF, lower=True, check_finite=False)
                out[F] = scipy.linalg.cho_solve(c, e[F], check_finite=False)
            except (np.linalg.LinAlgError, ValueError):
                out[F] = np.inf
        return out

    def value(self, t: float) -> float:
        res = self.residuals(t)
        return float(np.mean(res ** 2)) if np.all(np.isfinite(res)) else math.inf


def make_criterion(data: SmootherData, name: str, *, sigma2: Any = "gcv", folds: Any = 10,
                   seed: int = 0, reml: bool = True) -> _Criterion:
    """Build the criterion object of a rule.

    Parameters
    ----------
    data : SmootherData
    name : {"gcv", "cp", "loo", "kfold"}
    sigma2 : {"gcv", "reml"} or float
        Cp only: the fixed noise variance.  ``"gcv"``: ``||M y||^2 / tr M`` at the GCV
        time (Wahba 1990, eq. 4.3.2); ``"reml"``: the REML (or ML) estimate at its t.
    folds, seed
        K-fold only (see :class:`KFold`).
    reml : bool
        Which likelihood ``sigma2="reml"`` refers to.
    """
    if name == "gcv":
        return GCV(data)
    if name == "loo":
        return LeaveOneOut(data)
    if name == "kfold":
        return KFold(data, folds=folds, seed=seed)
    if name == "cp":
        if isinstance(sigma2, str):
            if sigma2 == "gcv":
                est = data.profile.minimize_criterion(GCV(data), reml)
                pr = data.parts(est.t)
                s2 = pr["e2"] / pr["trM"]
            elif sigma2 == "reml":
                est = data.profile.maximize(reml)
                s2 = data.profile.point(est.t, reml).scale
            else:
                raise ValueError(f"sigma2 must be 'gcv', 'reml' or a positive number, got {sigma2!r}")
        else:
            s2 = float(sigma2)
        return Cp(data, s2)
    raise ValueError(f"unknown criterion {name!r}; use one of {T_METHODS}")


# ------------------------------------------------------------------------ choosing t

def _check_method(t_method: str) -> str:
    if not isinstance(t_method, str) or t_method.lower() not in T_METHODS:
        valid = ", ".join(repr(m) for m in ("auto",) + T_METHODS)
        raise ValueError(f"t_method must be one of {valid}; got {t_method!r}")
    return t_method.lower()


def choose_time(data: SmootherData, t_method: str = "reml", reml: bool = True,
                **options: Any) -> TimeEstimate:
    """Estimate t by the named rule.

    Parameters
    ----------
    data : SmootherData
        From :meth:`SmootherData.from_model` (or the free-modes reduction).
    t_method : {"reml", "ml", "gcv", "cp", "loo", "kfold"}
    reml : bool
        For a prediction-error rule: which likelihood to report at the chosen t.
    **options
        ``sigma2`` (Cp), ``folds`` and ``seed`` (K-fold), ``points_per_decade``.

    Returns
    -------
    TimeEstimate
        With ``criterion`` set to ``t_method``.
    """
    t_method = _check_method(t_method)
    ppd = options.pop("points_per_decade", None)
    bad = set(options) - {"sigma2", "folds", "seed"}
    if bad:
        raise TypeError(f"unknown option(s) for the t rules: {sorted(bad)}; "
                        "valid: sigma2 (cp), folds and seed (kfold), points_per_decade")
    if t_method in _LIKELIHOOD:
        est = data.profile.maximize(t_method == "reml", **({"points_per_decade": ppd} if ppd else {}))
        est.criterion = t_method
        est.value = -est.llf
        return est
    crit = make_criterion(data, t_method, reml=reml, **options)
    return data.profile.minimize_criterion(crit, reml, points_per_decade=ppd)


def fit_with_rule(model: "MixedLMNTK", reml: bool = True, t_method: str | None = None,
                  free_modes: Any = 0, t_options: dict | None = None,
                  stacklevel: int = 3) -> "MixedLMNTKResults":
    """What :meth:`MixedLMNTK.fit` does when ``t_method`` or ``free_modes`` is given.

    See :meth:`MixedLMNTK.fit`.  The REML time of the plain kernel is always computed
    as well (``res.t_reml``), so the summary can show it beside the chosen t.
    """
    from .results import MixedLMNTKResults

    if t_method is None or (isinstance(t_method, str) and t_method.lower() == "auto"):
        t_method = "reml" if reml else "ml"  # free modes: the likelihood on the rest
    t_method = _check_method(t_method)
    options = dict(t_options or {})
    if isinstance(free_modes, str) or (free_modes not in (0, None)):
        from .freemodes import fit_free_modes

        return fit_free_modes(model, reml=reml, t_method=t_method, free_modes=free_modes,
                              t_options=options, stacklevel=stacklevel + 1)
    data = SmootherData.from_model(model)
    est = choose_time(data, t_method, reml, **options)
    _warn(est, stacklevel + 1)
    _warn_near_interpolation(data, est, stacklevel + 1)
    res = MixedLMNTKResults(model, est, reml)
    res.t_method = t_method
    res._t_reml = est.t if t_method == "reml" else None
    return res


def leaves_residual_df(data: SmootherData, est: TimeEstimate) -> bool:
    """False when the fit at ``est.t`` leaves fewer than ``max(2, n/100)`` residual
    degrees of freedom ``tr(I - H_t)`` (near interpolation)."""
    return _residual_df_ok(data, data.parts(est.t)["trM"])


def _residual_df_ok(data: SmootherData, trM: float) -> bool:
    return not (np.isfinite(trM) and trM < max(2.0, 0.01 * data.nobs))


def _warn_near_interpolation(data: SmootherData, est: TimeEstimate, stacklevel: int) -> None:
    """Prediction-error rules can run to (near) interpolation, where predictions at new
    points are unstable: say so when fewer than max(2, n/100) residual df are left."""
    if est.criterion in _LIKELIHOOD or est.at_upper or est.boundary:
        return
    trM = data.parts(est.t)["trM"]
    if not _residual_df_ok(data, trM):
        warnings.warn(f"{est.criterion} chose a nearly interpolating fit (residual df tr(I - H) "
                      f"= {trM:.3g} of n = {data.nobs}); predictions at new points may be "
                      "unstable: compare t_method='reml' or 'loo'", InterpolationWarning,
                      stacklevel=stacklevel)


def _warn(est: TimeEstimate, stacklevel: int) -> None:
    if est.boundary:
        warnings.warn(est.message, BoundaryFitWarning, stacklevel=stacklevel)
    elif est.at_upper:
        warnings.warn(est.message, InterpolationWarning, stacklevel=stacklevel)


# ------------------------------------------------------------------------ reference objects

def hat_matrix(model: "MixedLMNTK", t: float) -> np.ndarray:
    """Dense n x n hat matrix ``H_t`` of the fitted values ``X beta(t) + u_hat(t)``.

    ``H_t = I - M_t`` with ``M_t = U (W - W X~ (X~^T W X~)^{-1} X~^T W) U^T`` (module
    notes); O(n^2) memory, meant for checks and small n.

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> from mixednn.stopping import hat_matrix
    >>> rng = np.random.default_rng(0); Z = rng.normal(size=(40, 2))
    >>> y = np.sin(Z[:, 0]) + 0.3 * rng.normal(size=40)
    >>> m = mn.MixedLMNTK(y, np.ones((40, 1)), Z, network=mn.MLP(depth=1))
    >>> res = m.fit()
    >>> bool(np.allclose(hat_matrix(m, res.t) @ m.endog, res.fittedvalues))
    True
    """
    data = SmootherData.from_model(model)
    U = data._U()
    pr = data.parts(float(t))
    w = pr["w"]
    E = (U * w) @ U.T
    if data.complement == "identity":
        E += np.eye(model.nobs) - U @ U.T
    _, _, EXR = data.data_basis(float(t), pr)
    return np.eye(model.nobs) - (E - EXR @ EXR.T)


def compare_rules(model: "MixedLMNTK", rules: tuple[str, ...] = ("reml", "ml", "gcv", "cp", "loo"),
                  reml: bool = True, **options: Any) -> pd.DataFrame:
    """t chosen by each rule, with the fit's effective df and the REML log-likelihood there.

    Returns
    -------
    pandas.DataFrame
        Index: rule; columns ``t``, ``t_over_reml``, ``df`` (``tr H_t``), ``llf_reml``,
        ``boundary``, ``at_upper``.
    """
    data = SmootherData.from_model(model)
    rows = {}
    t_reml = None
    for r in rules:
        opt = {k: v for k, v in options.items()
               if (k == "sigma2" and r == "cp") or (k in ("folds", "seed") and r == "kfold")}
        est = choose_time(data, r, reml, **opt)
        if r == "reml":
            t_reml = est.t
        rows[r] = {"t": est.t, "df": data.trace_hat(est.t),
                   "llf_reml": model.profile.loglike(est.t, True),
                   "boundary": est.boundary, "at_upper": est.at_upper}
    out = pd.DataFrame.from_dict(rows, orient="index")
    if t_reml is None:
        t_reml = model.profile.maximize(True).t
    out.insert(1, "t_over_reml", out["t"] / t_reml if t_reml > 0 else np.nan)
    return out


# ------------------------------------------------------------------------ diagnostic

@dataclass
class StoppingDiagnostic:
    """Does the REML time deserve trust on these data?

    Attributes
    ----------
    t_reml, t_gcv : float
        REML and GCV times of the plain kernel.
    ratio : float
        ``max / min`` of the two (``inf`` if exactly one is 0).
    gcv_excess : float
        ``GCV(t_reml) / GCV(t_gcv) - 1``: GCV's estimate of the prediction error that
        REML's time costs (0 when they agree).
    leading_modes : int
        Number of leading eigen-directions checked.
    leading_energy : float
        Mean standardised spectral loss ``w_i r~_i^2 / s2`` over them (1 expected).
    leading_pvalue : float
        Two-sided chi-square p-value of their sum.
    disagree, decorrelation_fails : bool
    """

    t_reml: float
    t_gcv: float
    ratio: float
    gcv_excess: float
    leading_modes: int
    leading_energy: float
    leading_pvalue: float
    disagree: bool
    decorrelation_fails: bool
    t_chosen: float | None = None

    @property
    def flagged(self) -> bool:
        return self.disagree or self.decorrelation_fails

    @property
    def message(self) -> str | None:
        """One line for the summary, or ``None`` when nothing is flagged."""
        if not self.flagged:
            return None
        parts = []
        if self.disagree:
            parts.append(f"REML and GCV disagree on t by a factor {self.ratio:.3g} "
                         f"(REML {self.t_reml:.3g}, GCV {self.t_gcv:.3g}; GCV error "
                         f"{100 * self.gcv_excess:.0f}% higher at REML's t)")
        if self.decorrelation_fails:
            parts.append(f"the {self.leading_modes} leading NTK directions do not follow "
                         f"Var = s2 exp(t lam) (mean standardised loss {self.leading_energy:.3g}, "
                         f"p = {self.leading_pvalue:.2g})")
        return ("Stopping diagnostic: " + "; ".join(parts)
                + ". Compare fit(t_method='gcv' or 'loo') and fit(free_modes='auto').")


def diagnose(model: "MixedLMNTK", t: float | None = None, reml: bool = True, *,
             factor: float = 2.5, min_excess: float = 0.05, leading: int | None = None,
             alpha: float = 1e-3) -> StoppingDiagnostic:
    """Check the REML time: agreement with GCV, and decorrelation in the leading modes.

    Parameters
    ----------
    model : MixedLMNTK
    t : float, optional
        The time to check the leading modes at (default: the REML time).
    reml : bool
        REML (default) or ML for the spectral check's s2.
    factor, min_excess : float
        Rules disagree when ``max(t) / min(t) > factor`` and the disagreement matters:
        GCV at REML's t exceeds its minimum by more than ``min_excess`` (relative).
        The defaults separated, on the settings of ``benchmarks/bench_stopping.py``,
        the simulations where REML's held-out error is more than 5% above the oracle's
        from those where it is within 5% (they were chosen there; see docs/stopping.md).
    leading : int, optional
        Number of leading directions checked; default ``max(5, min(20, n // 50))``.
    alpha : float
        Level of the two-sided chi-square check of the leading standardised losses.

    Returns
    -------
    StoppingDiagnostic

    Notes
    -----
    Under the model the rotated REML residuals satisfy ``E[w_i r~_i^2] ~ s2`` (the
    leverage of the few fixed effects aside), so over the ``L`` leading directions
    ``sum_i w_i r~_i^2 / s2`` is roughly chi-square with L degrees of freedom.  Real
    signals that do not grow like ``exp(t lam)`` along the leading directions make it
    far too small (the likelihood holds t down to avoid the implied variance there),
    which is when free leading modes (:mod:`mixednn.freemodes`) help.
    """
    prof = model.profile
    data = SmootherData.rotated(model)
    t_r = prof.maximize(True).t
    gcv = GCV(data)
    t_g = prof.minimize_criterion(gcv, reml).t
    lo, hi = sorted([t_r, t_g])
    ratio = math.inf if lo == 0 and hi > 0 else (1.0 if hi == 0 else hi / lo)
    g_min = gcv.value(t_g)
    excess = gcv.value(t_r) / g_min - 1 if g_min > 0 and np.isfinite(g_min) else math.nan
    t_chk = t_r if t is None else float(t)
    pt = prof.point(t_chk, reml)
    n_dir = prof.lam.shape[0]
    L = leading if leading is not None else max(5, min(20, model.nobs // 50))
    L = int(min(L, n_dir))
    idx = np.argsort(prof.lam)[::-1][:L]
    r = prof.y_rot - prof.X_rot @ pt.beta if prof.p else prof.y_rot
    w = np.exp(-t_chk * prof.lam)
    energy = w[idx] * r[idx] ** 2 / pt.scale
    s = float(np.sum(energy))
    p = float(min(1.0, 2 * min(stats.chi2.cdf(s, L), stats.chi2.sf(s, L))))
    return StoppingDiagnostic(t_reml=t_r, t_gcv=t_g, ratio=ratio, gcv_excess=excess,
                              leading_modes=L, leading_energy=s / L, leading_pvalue=p,
                              disagree=bool(ratio > factor and excess > min_excess),
                              decorrelation_fails=p < alpha, t_chosen=t)
