"""The analytic NTK in torch, differentiable in its hyperparameters, and the REML gradient.

What :mod:`mixednn.hyper` needs to maximise the profiled REML (or ML) log-likelihood over
kernel hyperparameters (per-input scales, bias_std): the NTK recursion of
:class:`~mixednn.kernels.analytic.MLP` written with torch operations (:func:`ntk_torch`, in :mod:`mixednn.kernels.torch_ntk`),
the matrix ``B`` with ``d l / d theta = <dK/d theta, B>_F`` at the profiled optimum
(:func:`reml_gradient_matrix`; derivation in :mod:`mixednn.hyper`), and the reverse-mode
pass that turns the two into the gradient (:func:`kernel_gradient`).

Differentiable closed forms exist for ``relu``, ``leaky_relu``, ``abs``, ``erf``, ``sin`` and
``identity`` (:data:`DIFFERENTIABLE`).  torch is imported when a function runs.
"""

from __future__ import annotations

import numpy as np

from .kernels.analytic import MLP
from .kernels.torch_ntk import DIFFERENTIABLE, ntk_torch
from .profile import SpectralProfile

__all__ = ["DIFFERENTIABLE", "ntk_torch", "kernel_gradient", "reml_gradient_matrix"]


# ------------------------------------------------------------------- the gradient in torch

def kernel_gradient(Z: np.ndarray, B: np.ndarray, net: MLP, log_scales: np.ndarray | None,
                    log_bias: float | None, block: int = 512) -> tuple[np.ndarray | None, float | None]:
    """Gradient of ``<K(theta), B>`` w.r.t. log scales and log bias_std (reverse mode,
    in row blocks to bound memory)."""
    import torch

    Zt = torch.as_tensor(Z, dtype=torch.float64)
    Bt = torch.as_tensor(B, dtype=torch.float64)
    ls = torch.tensor(log_scales, dtype=torch.float64, requires_grad=True) \
        if log_scales is not None else None
    lb = torch.tensor(float(log_bias), dtype=torch.float64, requires_grad=True) \
        if log_bias is not None else None
    n = Z.shape[0]
    threads = torch.get_num_threads()
    if n * min(n, block) < 250_000:  # small problems: thread start-up costs more than it saves
        torch.set_num_threads(1)
    try:
        for i0 in range(0, n, block):
            i1 = min(i0 + block, n)
            sc = torch.exp(ls) if ls is not None else None
            bs = torch.exp(lb) if lb is not None else None
            Kb = ntk_torch(Zt, None, net, sc, bs) if i1 - i0 == n else \
                ntk_torch(Zt[i0:i1], Zt, net, sc, bs, diag_offset=i0)
            val = (Kb * Bt[i0:i1]).sum()
            val.backward()
    finally:
        torch.set_num_threads(threads)
    gs = ls.grad.numpy().copy() if ls is not None else None
    gb = float(lb.grad) if lb is not None else None
    return gs, gb


# ------------------------------------------------------------- the likelihood and its gradient

def _gamma(lam: np.ndarray, t: float) -> np.ndarray:
    """Divided differences of ``exp(-t lam)``: ``-t exp(-t min) phi(t |dlam|)``, phi(x) = (1-e^-x)/x."""
    lo = np.minimum.outer(lam, lam)
    x = t * np.abs(np.subtract.outer(lam, lam))
    with np.errstate(invalid="ignore", divide="ignore"):
        ph = np.where(x > 1e-12, -np.expm1(-x) / np.where(x > 1e-12, x, 1.0), 1.0 - x / 2)
    return -t * np.exp(-t * lo) * ph


def reml_gradient_matrix(profile: SpectralProfile, U: np.ndarray, t: float,
                         reml: bool = True) -> np.ndarray:
    """``B`` with ``d l / d theta = <dK/d theta, B>`` at the profiled optimum (module notes).

    Parameters
    ----------
    profile : SpectralProfile
        Of the current kernel (full basis).
    U : ndarray (n, n)
        Its eigenvectors.
    t : float
        The profiled (optimal) t.
    reml : bool

    Returns
    -------
    ndarray (n, n), symmetric
    """
    if profile.rest_gram is not None or not profile.complete_spectrum:
        raise NotImplementedError("hyperparameter gradients need a full eigendecomposition")
    pt = profile.point(t, reml)
    lam = profile.lam
    n, p = profile.nobs, profile.p
    r = profile.y_rot - profile.X_rot @ pt.beta if p else profile.y_rot
    dof = n - p if reml else n
    G = _gamma(lam, t)
    S = (dof / pt.rss) * G * np.outer(r, r)
    if reml and p:
        H = profile.X_rot @ np.linalg.solve(pt.xwx, profile.X_rot.T)
        S += G * H
    S[np.diag_indices_from(S)] += t
    S *= -0.5
    B = U @ S @ U.T
    return 0.5 * (B + B.T)
