"""The smoother of one decomposition: what the prediction-error rules for t need.

This module owns :class:`SmootherData` (the rotated response and design of the
model's one decomposition ``K = U diag(lam) U^T``, with the eigenvectors and the
rows on demand) and the dense reference :func:`hat_matrix`.  The rules that read
it -- GCV, Cp, leave-one-out and K-fold CV -- are :mod:`mixednn.stopping`; the
default rule's check (:mod:`mixednn.autotime`) and free modes
(:mod:`mixednn.freemodes`) read it too.

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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg

from .profile import SpectralProfile, check_complete_spectrum

__all__ = ["SmootherData", "hat_matrix"]


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
    eigenvectors_squared: np.ndarray | None = field(default=None, repr=False)
    #: optional ``() -> (y - f0, X)``: loads y and X on first use (streamed rows)
    rows: Any = field(default=None, repr=False)

    @classmethod
    def from_model(cls, model: Any) -> "SmootherData":
        """The smoother of a fitted model's decomposition (of the whitened rows,
        ``W^{1/2} (y - f0)`` and ``W^{1/2} X``, with precision weights)."""
        basis = model.basis
        rot = cls.rotated(model)
        return cls(rot.profile, model.nobs, rot.complement, lambda: basis.dense_eigenvectors,
                   model.whiten(model.endog - model.offset), model.whiten(model.exog))

    @classmethod
    def rotated(cls, model: Any) -> "SmootherData":
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
        check_complete_spectrum(prof, "the smoother M_t (GCV, Cp, LOO, K-fold)")
        p = prof.p
        w = np.exp(-t * prof.lam)
        if normalize:
            if self.complement != "identity" and w.size:
                w = w / w.max()
            w[w < 1e-250] = 0.0
        sw = np.sqrt(w)
        B = sw[:, None] * prof.X_rot
        yb = sw * prof.y_rot
        rest = prof.rest_root if self.complement == "identity" else None
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
        check_complete_spectrum(prof, "the smoother M_t (GCV, Cp, LOO, K-fold)")
        p = prof.p
        ts = np.asarray(ts, dtype=float)
        W = np.exp(-np.outer(ts, prof.lam))
        A = prof.data_block
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
        U = self.eigenvector_matrix()
        w, r, G = pr["w"], pr["r"], pr["G"]
        if r is None:
            n = self.nobs
            return np.full(n, np.nan), np.full(n, np.nan), np.full((n, self.profile.p), np.nan)
        dE = self.squared_eigenvectors() @ w
        e = U @ (w * r)
        EXR = U @ G
        if self.complement == "identity":
            beta = pr["beta"]
            y, X = self.response_design()
            yr = y - X @ beta
            Rm = self._Rinv(pr)
            dE = dE + (1.0 - np.einsum("ij,ij->i", U, U))
            e = e + (yr - U @ (U.T @ yr))
            if self.profile.p:
                XR = X @ Rm
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
            B = np.vstack([B, prof.rest_root[:, :p]])
        R = np.linalg.qr(B, mode="r")
        return scipy.linalg.solve_triangular(R, np.eye(p))

    def eigenvector_matrix(self) -> np.ndarray:
        if self.eigenvectors is None:
            raise ValueError("leave-one-out and K-fold CV need the eigenvectors of K; build the "
                             "SmootherData with eigenvectors=")
        if callable(self.eigenvectors):
            self.eigenvectors = np.asarray(self.eigenvectors())
        return self.eigenvectors

    def response_design(self) -> tuple[np.ndarray, np.ndarray]:
        """``(y - f0, X)`` in the data basis (loaded on first use for streamed rows)."""
        if self.y is None and self.rows is not None:
            self.y, self.X = self.rows()
        if self.y is None:
            raise ValueError("this rule needs the response and design in the data basis; build "
                             "the SmootherData with y= and X=")
        return self.y, self.X

    def squared_eigenvectors(self) -> np.ndarray:
        """``U * U`` (elementwise), formed once: its rows give ``diag(U W U^T)``."""
        if self.eigenvectors_squared is None:
            U = self.eigenvector_matrix()
            self.eigenvectors_squared = U * U
        return self.eigenvectors_squared

    def restricted(self, profile: SpectralProfile, keep: np.ndarray,
                   complement: str) -> "SmootherData":
        """The smoother of a sub-spectrum (free modes: the directions ``keep``)."""
        parent = self

        def vectors() -> np.ndarray:
            return parent.eigenvector_matrix()[:, keep]

        return SmootherData(profile, self.nobs, complement, vectors, self.y, self.X,
                            rows=self.rows)

    def trace_hat(self, t: float) -> float:
        """Effective degrees of freedom of the whole fit, ``tr H_t = n - tr M_t``."""
        return self.nobs - self.parts(t)["trM"]



# ------------------------------------------------------------------------ reference objects

def hat_matrix(model: Any, t: float) -> np.ndarray:
    """Dense n x n hat matrix ``H_t`` of the fitted values ``X beta(t) + u_hat(t)``.

    ``H_t = I - M_t`` with ``M_t = U (W - W X~ (X~^T W X~)^{-1} X~^T W) U^T`` (module
    notes); O(n^2) memory, meant for checks and small n.  With precision weights the
    smoother of the whitened problem, ``H_w``, acts on ``W^{1/2} y``, and this is
    ``W^{-1/2} H_w W^{1/2}`` (fitted values on the scale of y are ``H_t y``).

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> from mixednn.smoother import hat_matrix
    >>> rng = np.random.default_rng(0); Z = rng.normal(size=(40, 2))
    >>> y = np.sin(Z[:, 0]) + 0.3 * rng.normal(size=40)
    >>> m = mn.MixedLMNTK(y, np.ones((40, 1)), Z, network=mn.MLP(depth=1))
    >>> res = m.fit()
    >>> bool(np.allclose(hat_matrix(m, res.t) @ m.endog, res.fittedvalues))
    True
    """
    data = SmootherData.from_model(model)
    U = data.eigenvector_matrix()
    pr = data.parts(float(t))
    w = pr["w"]
    E = (U * w) @ U.T
    if data.complement == "identity":
        E += np.eye(model.nobs) - U @ U.T
    _, _, EXR = data.data_basis(float(t), pr)
    H = np.eye(model.nobs) - (E - EXR @ EXR.T)
    w = model.weights
    if w is not None:
        sw = np.sqrt(w)
        H = H * (sw[None, :] / sw[:, None])
    return H
