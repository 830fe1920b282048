"""The infinite-width NTK of :class:`~mixednn.kernels.analytic.MLP` in torch (float64, any device).

The recursion of :mod:`mixednn.kernels.analytic` (``docs/model.md`` section 5) written with
torch operations, differentiable in the input scales and ``bias_std``
(:func:`ntk_torch`).  Two users: :mod:`mixednn.kernelgrad` (the REML gradient over kernel
hyperparameters, :mod:`mixednn.hyper`) and the device path of the Krylov route
(:mod:`mixednn.kernels.operator`: kernel tiles computed on a torch device).  Closed forms
exist for ``relu``, ``leaky_relu``, ``abs``, ``erf`` and ``identity``
(:data:`DIFFERENTIABLE`).  torch is imported when a function runs, so importing this
module does not load it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .analytic import MLP

__all__ = ["DIFFERENTIABLE", "ntk_torch"]

#: Activations whose NTK recursion is implemented differentiably.
DIFFERENTIABLE = ("relu", "leaky_relu", "abs", "erf", "sin", "identity", "linear")
_SLOPES = {"relu": (0.0, 1.0), "abs": (-1.0, 1.0), "leaky_relu": (0.01, 1.0)}


# ------------------------------------------------------------------- the kernel in torch

def _autograd_functions():
    import torch

    class _ArcJ1(torch.autograd.Function):
        """``alpha sin(theta) + (beta - alpha theta) c`` with ``theta = arccos c``; its
        derivative is ``beta - alpha theta`` (finite at |c| = 1)."""

        @staticmethod
        def forward(ctx, c, alpha, beta):
            th = torch.arccos(c)
            s = torch.sqrt(torch.clamp((1 - c) * (1 + c), min=0.0))
            ctx.save_for_backward(th)
            ctx.ab = (alpha, beta)
            return alpha * s + (beta - alpha * th) * c

        @staticmethod
        def backward(ctx, g):
            (th,) = ctx.saved_tensors
            alpha, beta = ctx.ab
            return g * (beta - alpha * th), None, None

    class _ArcJ0(torch.autograd.Function):
        """``beta - alpha arccos(c)``; derivative ``alpha / sqrt(1 - c^2)``, taken as 0
        where ``c = +-1`` exactly (coincident inputs, where dc = 0)."""

        @staticmethod
        def forward(ctx, c, alpha, beta):
            ctx.save_for_backward(c)
            ctx.alpha = alpha
            return beta - alpha * torch.arccos(c)

        @staticmethod
        def backward(ctx, g):
            (c,) = ctx.saved_tensors
            q = (1 - c) * (1 + c)
            inv = torch.where(q > 0, torch.rsqrt(torch.clamp(q, min=1e-300)), torch.zeros_like(q))
            return g * ctx.alpha * inv, None, None

    return _ArcJ1, _ArcJ0


_FUNCS: tuple | None = None


def _funcs():
    global _FUNCS
    if _FUNCS is None:
        _FUNCS = _autograd_functions()
    return _FUNCS


def _step_diag(act: str, q, sw2: float, sb2: float):
    import torch

    if act in _SLOPES:
        a, b = _SLOPES[act]
        return sw2 * (a * a + b * b) / 2 * q + sb2
    if act == "erf":
        return sw2 * (2 / math.pi) * torch.arcsin(2 * q / (1 + 2 * q)) + sb2
    if act == "sin":
        return sw2 * 0.5 * -torch.expm1(-2 * q) + sb2
    return sw2 * q + sb2  # identity


def ntk_torch(Z1: "torch.Tensor", Z2: "torch.Tensor | None", net: MLP, scales: "torch.Tensor | None" = None,
              bias_std: "torch.Tensor | float | None" = None,
              diag_offset: int | None = None) -> "torch.Tensor":
    """Infinite-width NTK of ``net`` in torch, differentiable in the input scales and bias_std.

    Same conventions and values as :meth:`MLP.ntk` (stax, NTK parameterisation);
    ``Z2=None`` gives the symmetric Gram matrix with an exact unit correlation on the
    diagonal.

    Parameters
    ----------
    Z1, Z2 : torch.Tensor, shapes (n1, d), (n2, d)
    net : MLP
        Depth, activation and weight_std (``net.bias_std`` unless ``bias_std`` given).
    scales : torch.Tensor, shape (d,), optional
        Per-input scales ``s``: the kernel of ``Z * s``.
    bias_std : torch.Tensor or float, optional
    diag_offset : int, optional
        When ``Z1`` is the block of rows ``o, o+1, ...`` of ``Z2``: ``o``, so that the
        entries of coincident rows get an exact unit correlation, as on the diagonal.

    Returns
    -------
    torch.Tensor, shape (n1, n2)
    """
    import torch

    act = net.activation
    if act not in DIFFERENTIABLE:
        raise NotImplementedError(
            f"no differentiable NTK for activation {act!r}; supported: {', '.join(DIFFERENTIABLE)}")
    act = "identity" if act == "linear" else act
    sym = Z2 is None
    X1 = Z1 if scales is None else Z1 * scales
    X2 = X1 if sym else (Z2 if scales is None else Z2 * scales)
    d = X1.shape[1]
    sw2 = float(net.weight_std) ** 2
    b = net.bias_std if bias_std is None else bias_std
    sb2 = b * b
    J1, J0 = _funcs()
    S = sw2 * (X1 @ X2.T) / d + sb2
    q1 = sw2 * (X1 * X1).sum(1) / d + sb2
    q2 = q1 if sym else sw2 * (X2 * X2).sum(1) / d + sb2
    T = S
    eye = None
    if sym or diag_offset is not None:
        o = 0 if sym else int(diag_offset)
        eye = torch.zeros(S.shape, dtype=torch.bool, device=S.device)
        i = torch.arange(S.shape[0], device=S.device)
        ok = i + o < S.shape[1]
        eye[i[ok], i[ok] + o] = True
    for _ in range(net.depth):
        if act in _SLOPES:
            a_, b_ = _SLOPES[act]
            alpha, beta = (a_ - b_) ** 2 / (2 * math.pi), (a_ * a_ + b_ * b_) / 2
            root = torch.sqrt(q1[:, None] * q2[None, :])
            c = torch.clamp(S / root, -1.0, 1.0)
            if eye is not None:
                c = torch.where(eye, torch.ones_like(c), c)
            EP = root * J1.apply(c, alpha, beta)
            ED = J0.apply(c, alpha, beta)
        elif act == "erf":
            R = 1.0 / torch.sqrt((1 + 2 * q1)[:, None] * (1 + 2 * q2)[None, :])
            U = torch.clamp(2 * S * R, -1.0, 1.0)
            EP = (2 / math.pi) * torch.arcsin(U)
            ED = (4 / math.pi) * R / torch.sqrt(1 - U * U)
        elif act == "sin":
            D = q1[:, None] + q2[None, :]
            M = torch.clamp(D - 2 * S, min=0.0)
            if eye is not None:
                M = torch.where(eye, torch.zeros_like(M), M)
            Em, Ep = torch.exp(-0.5 * M), torch.exp(-0.5 * (D + 2 * S))
            EP, ED = 0.5 * (Em - Ep), 0.5 * (Em + Ep)
        else:
            EP, ED = S, torch.ones_like(S)
        S = sw2 * EP + sb2
        T = S + sw2 * T * ED
        q1 = _step_diag(act, q1, sw2, sb2)
        q2 = q1 if sym else _step_diag(act, q2, sw2, sb2)
    return T
