"""Infinite-width NNGP and neural tangent kernels of fully connected networks.

This module computes, in closed form where one exists and by two-dimensional
Gauss--Hermite quadrature otherwise, the neural network Gaussian process
(NNGP) kernel and the neural tangent kernel (NTK; Jacot et al. 2018) of a
fully connected network of infinite width.  The conventions are exactly those
of ``neural_tangents.stax`` (Novak et al. 2020), so a user moving from that
library obtains identical kernel values:

.. code-block:: python

    # neural-tangents equivalent of MLP(depth, act, W, b)
    stax.serial(*[stax.Dense(width, W_std=W, b_std=b, parameterization="ntk"),
                  Act()] * depth,
                stax.Dense(1, W_std=W, b_std=b, parameterization="ntk"))

The kernel recursion (``docs/model.md`` section 5), for inputs ``x, x'`` of
dimension ``d``, writing ``sw2 = weight_std**2`` and ``sb2 = bias_std**2``:

* input:          ``S(x, x') = x.x' / d``, ``T(x, x') = 0``;
* ``Dense``:      ``S <- sw2 * S + sb2`` and ``T <- S_new + sw2 * T``;
* activation:     ``S <- E[phi(a) phi(b)]`` and ``T <- T * E[phi'(a) phi'(b)]``,
  with ``(a, b) ~ N(0, [[S(x,x), S(x,x')], [S(x,x'), S(x',x')]])``.

The network is ``depth`` times (``Dense`` then activation) followed by a
``Dense`` readout of width one, so the first and the readout layer both carry a
bias (when ``bias_std > 0``) and the input enters through ``x.x'/d``.  The
returned NTK is that of the scalar output with respect to *all* parameters
(weights and biases of every layer) in the NTK parameterisation, i.e. the
limit of ``sum_p df(x)/dp df(x')/dp`` as the width grows; it equals the
Jacot et al. (2018) and Arora et al. (2019) kernels up to these conventions.

Exact closed forms are used for ``relu`` / ``abs`` / ``leaky_relu``
(arc-cosine kernels, Cho & Saul 2009), ``erf`` (arcsine kernel, Williams
1997), ``gelu`` (the closed form used by ``stax.Gelu``; Tsuchida et al. 2021)
and ``identity``.  ``tanh`` and ``sigmoid`` are written as a ten-term scale
mixture of erfs, ``tanh(x) ~ sum_k A_k erf(B_k x)`` (sup error 4e-10, and
8e-10 for the derivative), whose kernels are sums of Williams' arcsine terms;
``softplus`` as the antiderivative of the matching sigmoid mixture, whose
kernels follow from Price's theorem (sup error about 1e-8).  These are exact
kernels of a network whose activation differs from the nominal one by less
than 1e-8, hence accurate uniformly in the pre-activation variance and
positive semi-definite.  Tensor-product Gauss--Hermite quadrature of the
bivariate normal (after a Cholesky factorisation of its 2x2 covariance) is
available for every activation (:func:`gaussian_expectations`, and
``MLP(quadrature_nodes=n)`` for tanh / sigmoid / softplus) as a cross-check
and as the generic fallback for activations without a closed form; it is
what ``stax.Elementwise`` does numerically, but it loses accuracy for
saturating activations at large pre-activation variance.

Each activation's numpy and torch functions and its closed-form /
quadrature data are one record of :mod:`mixednn.kernels.activations`, which
the finite-width network of :mod:`mixednn.kernels.torch_mlp` reads too.

References
----------
Jacot, Gabriel & Hongler (2018). Neural tangent kernel: convergence and
generalization in neural networks. NeurIPS.
Arora, Du, Hu, Li, Salakhutdinov & Wang (2019). On exact computation with an
infinitely wide neural net. NeurIPS.
Cho & Saul (2009). Kernel methods for deep learning. NeurIPS.
Williams (1997). Computing with infinite networks. NeurIPS.
Novak, Xiao, Hron, Lee, Alemi, Sohl-Dickstein & Schoenholz (2020). Neural
Tangents: fast and easy infinite neural networks in Python. ICLR.
Tsuchida, Pearce, van der Heide, Roosta & Gallagher (2021). Avoiding kernel
fixed points: computing with ELU and GELU infinite networks. AAAI.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .activations import (
    TANH_ERF_RATES,
    TANH_ERF_WEIGHTS,
    DualForm,
    canonical_activation,
    get_activation,
)

__all__ = [
    "MLP",
    "gaussian_expectations",
]

_PI = math.pi


# ---------------------------------------------------------------------------
# Gauss-Hermite rules
# ---------------------------------------------------------------------------

_GH_CACHE: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
_GH_LOCK = threading.Lock()


def _gh_rules(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Probabilists' Gauss-Hermite rule for N(0, 1), full and folded halves.

    Returns ``(z, w, zh, wh)``: ``sum(w * f(z)) ~ E f(Z)`` and, for integrands
    with ``f(z) == f(-z)``, ``sum(wh * f(zh))`` over the non-negative nodes.
    """
    with _GH_LOCK:
        rule = _GH_CACHE.get(n)
        if rule is None:
            z, w = np.polynomial.hermite_e.hermegauss(n)
            w = w / w.sum()
            keep = z >= -1e-300
            # nodes are symmetric; pick the non-negative half, doubling weights
            zh = np.abs(z[keep])
            wh = np.where(zh > 0, 2.0, 1.0) * w[keep]
            rule = (z, w, zh, wh)
            _GH_CACHE[n] = rule
    return rule


# ---------------------------------------------------------------------------
# Activation steps.  Every step maps (K, T) -> (K_new, T_new) on a tile, where
# K holds the pre-activation covariance S(x, x'), Q1 / Q2 its diagonals
# (broadcastable to K, e.g. q1[:, None] and q2[None, :]), and returns
#     K_new = sw2 * E[phi(a) phi(b)] + sb2             (the next Dense's NNGP)
#     T_new = K_new + sw2 * T * E[phi'(a) phi'(b)]      (the next Dense's NTK)
# i.e. one activation followed by one Dense layer.  K and T are consumed.
# ---------------------------------------------------------------------------


def _safe_rsqrt(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    out = np.zeros_like(q)
    np.divide(1.0, np.sqrt(q), out=out, where=q > 0)
    return out


def _correlation(K: np.ndarray, Q1: np.ndarray, Q2: np.ndarray) -> np.ndarray:
    """``clip(K / sqrt(Q1 Q2), -1, 1)``; zero where a variance is zero.

    Dividing by ``sqrt(Q1 * Q2)`` (rather than multiplying reciprocal square
    roots) returns exactly 1 when ``K == Q1 == Q2``, since
    ``sqrt(fl(q * q)) == q`` in IEEE arithmetic: arccos is ill-conditioned at
    1, where a one-ulp error would cost 1e-8 in the ReLU derivative kernel.
    """
    D = np.multiply(Q1, Q2)
    np.sqrt(D, out=D)
    if D.shape != K.shape:
        D = np.broadcast_to(D, K.shape)
    C = np.divide(K, D, out=np.zeros(K.shape), where=D > 0)
    np.clip(C, -1.0, 1.0, out=C)
    return C


def _refine_near_parallel(C: np.ndarray, U1: np.ndarray, U2: np.ndarray, i0: int, j0: int) -> None:
    """Recompute correlations of near-parallel unit vectors as ``1 - |u - v|^2 / 2``.

    A dot product of two (nearly) equal unit vectors carries an absolute
    error of about 1e-16, which arccos turns into 1e-8; the difference form is
    exact for coincident points (e.g. a cross-kernel at training inputs).
    """
    near = C > 1.0 - 1e-6
    if not near.any():
        return
    ii, jj = np.nonzero(near)
    diff = U1[ii + i0] - U2[jj + j0]
    C[ii, jj] = 1.0 - 0.5 * np.einsum("ij,ij->i", diff, diff)


def _fill_unit_diag(C: np.ndarray) -> None:
    if C.ndim == 1:
        C[:] = 1.0
    else:
        np.fill_diagonal(C, 1.0)


def _step_abrelu(spec: DualForm, K, T, Q1, Q2, sw2, sb2, unit_diag=False):
    # a * min(x, 0) + b * max(x, 0): arc-cosine kernel of degree 1 (Cho & Saul)
    a, b = spec.slopes
    alpha = (a - b) ** 2 / (2.0 * _PI)
    beta = (a * a + b * b) / 2.0
    C = _correlation(K, Q1, Q2)
    if unit_diag:  # the same input on both sides: c = 1 exactly (arccos is
        _fill_unit_diag(C)  # ill-conditioned at 1, rounding would cost 1e-8)
    A = np.arccos(C)  # theta
    S = np.subtract(1.0, C)  # sin(theta) = sqrt((1 - c)(1 + c)), accurate near |c| = 1
    S *= 1.0 + C
    np.sqrt(S, out=S)
    # A <- sw2 * E[phi'(a) phi'(b)] = sw2 * (beta - alpha * theta)
    A *= -sw2 * alpha
    A += sw2 * beta
    if T is not None:
        T *= A
    # K <- sw2 * sqrt(Q1 Q2) * (alpha * sin(theta) + (beta - alpha theta) c) + sb2
    C *= A
    S *= sw2 * alpha
    C += S
    np.multiply(np.sqrt(Q1), np.sqrt(Q2), out=K)
    K *= C
    if sb2:
        K += sb2
    if T is not None:
        T += K
    return K, T


def _step_erf(spec: DualForm, K, T, Q1, Q2, sw2, sb2, unit_diag=False):
    # Williams (1997): E[erf(a) erf(b)] = 2/pi asin(2 k12 / sqrt((1+2k11)(1+2k22)))
    R = np.multiply(
        1.0 / np.sqrt(1.0 + 2.0 * np.asarray(Q1)), 1.0 / np.sqrt(1.0 + 2.0 * np.asarray(Q2))
    )
    R = np.array(np.broadcast_to(R, K.shape))
    U = np.multiply(R, K)
    U *= 2.0
    np.clip(U, -1.0, 1.0, out=U)
    if T is not None:
        # E[erf'(a) erf'(b)] = 4/pi / sqrt((1+2k11)(1+2k22) - 4 k12^2)
        #                    = 4/pi * R / sqrt(1 - U^2)
        S = np.multiply(U, U)
        np.subtract(1.0, S, out=S)
        np.sqrt(S, out=S)
        np.divide(R, S, out=R)
        R *= sw2 * 4.0 / _PI
        T *= R
    np.arcsin(U, out=U)
    np.multiply(U, sw2 * 2.0 / _PI, out=K)
    if sb2:
        K += sb2
    if T is not None:
        T += K
    return K, T


def _mixture_rates(b: np.ndarray, Q1: Any, Q2: Any) -> tuple[np.ndarray, np.ndarray]:
    """``b_k / sqrt(1 + 2 b_k^2 q)`` for both sides, mixture index first."""
    out = []
    for Q in (Q1, Q2):
        Q = np.asarray(Q, dtype=np.float64)
        bb = b.reshape((-1,) + (1,) * Q.ndim)
        out.append(bb / np.sqrt(1.0 + 2.0 * bb * bb * Q[None]))
    return out[0], out[1]


def _wsum(a: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``sum_l a[l] X[l]`` over the leading axis (a BLAS gemv)."""
    return (a @ X.reshape(a.size, -1)).reshape(X.shape[1:])


def _step_erfmix(spec: DualForm, K, T, Q1, Q2, sw2, sb2, unit_diag=False):
    # phi = c0 + gamma * sum_k A_k erf(kappa B_k x); with r_k = b_k / sqrt(1 + 2 b_k^2 q):
    #   E[phi phi]   = c0^2 + gamma^2 2/pi sum_kl A_k A_l asin(2 k12 r_k r'_l)
    #   E[phi' phi'] = gamma^2 4/pi sum_kl A_k A_l r_k r'_l / sqrt(1 - (2 k12 r_k r'_l)^2)
    want_d = T is not None
    a = TANH_ERF_WEIGHTS
    b = spec.kappa * TANH_ERF_RATES
    r1, r2 = _mixture_rates(b, Q1, Q2)  # (M,) + Q.shape
    K2 = 2.0 * K
    E = np.zeros(K.shape)
    Ed = np.zeros(K.shape) if want_d else None
    shape3 = (a.size,) + K.shape
    R = np.empty(shape3)
    U = np.empty(shape3)
    S = np.empty(shape3) if want_d else None
    for k in range(a.size):
        np.multiply(r1[k], r2, out=R)  # terms (k, l) for all l, stacked first
        np.multiply(R, K2, out=U)
        if want_d:
            np.multiply(U, U, out=S)
            np.subtract(1.0, S, out=S)
            np.sqrt(S, out=S)
            np.divide(R, S, out=R)
            Ed += a[k] * _wsum(a, R)
        np.arcsin(U, out=U)
        E += a[k] * _wsum(a, U)
    g2 = spec.gamma**2
    E *= sw2 * g2 * 2.0 / _PI
    c = sw2 * spec.c0**2 + sb2
    if c:
        E += c
    if want_d:
        Ed *= sw2 * g2 * 4.0 / _PI
        T *= Ed
        T += E
    return E, T


def _step_softplusmix(spec: DualForm, K, T, Q1, Q2, sw2, sb2, unit_diag=False):
    # softplus' = sigmoid ~= 1/2 + 1/2 sum_k A_k erf(beta_k x), beta_k = B_k / 2, so
    # psi(x) = x/2 + 1/2 sum_k A_k (x erf(beta_k x) + exp(-beta_k^2 x^2) / (beta_k sqrt(pi)))
    # (the exact antiderivative vanishing at -inf).  With rho_k = beta_k / sqrt(1 + 2 beta_k^2 q)
    # and u_kl = 2 rho_k rho'_l k12:
    #   E[psi' psi'] = 1/4 + 1/(2 pi) sum_kl A_k A_l asin(u_kl)
    # and, by Price's theorem (d/dk12 E[psi psi] = E[psi' psi']) integrated from k12 = 0,
    #   E[psi psi] = m m' + k12/4 + k12/(2 pi) sum_kl A_k A_l (asin(u) - u / (1 + sqrt(1 - u^2)))
    # with m = E[psi(a)] = 1/(2 sqrt(pi)) sum_k A_k / rho_k.
    want_d = T is not None
    a = TANH_ERF_WEIGHTS
    beta = 0.5 * TANH_ERF_RATES
    r1, r2 = _mixture_rates(beta, Q1, Q2)  # (M,) + Q.shape
    m1 = _wsum(a, 1.0 / r1) / (2.0 * math.sqrt(_PI))
    m2 = _wsum(a, 1.0 / r2) / (2.0 * math.sqrt(_PI))
    K2 = 2.0 * K
    E = np.zeros(K.shape)
    Ed = np.zeros(K.shape) if want_d else None
    shape3 = (a.size,) + K.shape
    U = np.empty(shape3)
    A = np.empty(shape3)
    S = np.empty(shape3)
    for k in range(a.size):
        np.multiply(r1[k], r2, out=U)
        U *= K2
        np.arcsin(U, out=A)
        if want_d:
            Ed += a[k] * _wsum(a, A)
        np.multiply(U, U, out=S)
        np.subtract(1.0, S, out=S)
        np.sqrt(S, out=S)
        S += 1.0
        np.divide(U, S, out=U)
        A -= U
        E += a[k] * _wsum(a, A)
    E *= K
    E *= 1.0 / (2.0 * _PI)
    E += 0.25 * K
    E += np.multiply(m1, m2)
    E *= sw2
    if sb2:
        E += sb2
    if want_d:
        Ed *= sw2 / (2.0 * _PI)
        Ed += sw2 * 0.25
        T *= Ed
        T += E
    return E, T


def _step_gelu(spec: DualForm, K, T, Q1, Q2, sw2, sb2, unit_diag=False):
    # Closed form of stax.Gelu (Tsuchida et al. 2021), with P = (1+k11)(1+k22),
    # p = k11 k22, D^2 = P - k12^2, ang = atan2(k12, D):
    #   E[gelu gelu]   = k12/4 + (k12^2 + p D^2) / (2 pi P D) + k12 ang / (2 pi)
    #   E[gelu' gelu'] = 1/4 + ang/(2 pi) + k12/(2 pi D) (1/D^2 + (1 - p)/P + 1)
    Q1 = np.asarray(Q1, dtype=np.float64)
    Q2 = np.asarray(Q2, dtype=np.float64)
    P = np.array(np.broadcast_to(np.multiply(1.0 + Q1, 1.0 + Q2), K.shape))
    p = np.array(np.broadcast_to(np.multiply(Q1, Q2), K.shape))
    D2 = np.multiply(K, K)
    np.subtract(P, D2, out=D2)
    np.maximum(D2, 1e-300, out=D2)
    D = np.sqrt(D2)
    ang = np.arctan2(K, D)
    if T is not None:
        first = np.subtract(1.0, p)
        first /= P
        first += 1.0
        first += 1.0 / D2
        first *= K
        first /= D
        first += ang
        first *= sw2 / (2.0 * _PI)
        first += sw2 * 0.25
        T *= first
    # nngp
    p *= D2
    D2 = np.multiply(K, K, out=D2)
    D2 += p
    P *= D
    D2 /= P
    ang *= K
    D2 += ang
    D2 *= sw2 / (2.0 * _PI)
    np.multiply(K, sw2 * 0.25, out=K)
    K += D2
    if sb2:
        K += sb2
    if T is not None:
        T += K
    return K, T


def _step_identity(spec: DualForm, K, T, Q1, Q2, sw2, sb2, unit_diag=False):
    K *= sw2
    if sb2:
        K += sb2
    if T is not None:
        T *= sw2
        T += K
    return K, T


def _quad_expectations(
    spec: DualForm,
    K: np.ndarray,
    Q1: np.ndarray,
    Q2: np.ndarray,
    n_nodes: int,
    want_d: bool,
    unit_diag: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``E[h(k a) h(k b)]`` and ``E[h'(k a) h'(k b)]`` by Gauss-Hermite quadrature.

    With ``c`` the correlation, ``a = s1 z1`` and
    ``b = s2 (c z1 + sqrt(1 - c^2) z2)`` for independent standard normals
    ``z1, z2`` (Cholesky factor of the 2x2 covariance).  The outer sum over
    ``z1`` uses the folded (non-negative) half rule, valid because the
    integrand is invariant under ``(z1, z2) -> (-z1, -z2)``.  The outer
    dimension, which carries both sharp features of a saturating activation
    at large variance (``h(s1 z1)`` and, for ``c`` near 1, the inner mean),
    dominates the error, so it gets ``_outer_nodes(n_nodes)`` nodes.
    """
    z, w, _, _ = _gh_rules(n_nodes)
    _, _, zh, wh = _gh_rules(_outer_nodes(n_nodes))
    du, dv = spec.dh_affine
    shape = K.shape
    k = spec.kappa
    C = _correlation(K, Q1, Q2)
    if unit_diag:
        _fill_unit_diag(C)
    s2 = np.broadcast_to(k * np.sqrt(np.asarray(Q2, dtype=np.float64)), shape)
    M = np.multiply(C, s2)  # conditional-mean slope of b on z1
    S = np.multiply(C, C)
    np.subtract(1.0, S, out=S)
    np.sqrt(S, out=S)
    S *= s2  # conditional sd of b given z1
    s1 = k * np.sqrt(np.asarray(Q1, dtype=np.float64))
    M = M.reshape(-1)
    S = S.reshape(-1)
    E = np.zeros(shape)
    Ed = np.zeros(shape) if want_d else None
    SZ = np.multiply(S[:, None], z[None, :])  # (P, nodes)
    B = np.empty_like(SZ)
    for zi, wi in zip(zh, wh):
        ha, dha = spec.h(np.multiply(s1, zi), want_d)  # broadcastable to shape
        np.add(SZ, (M * zi)[:, None], out=B)
        hb, dhb = spec.h(B, want_d)
        inner = (hb @ w).reshape(shape)
        inner *= ha * wi
        E += inner
        if want_d:
            dinner = (dhb @ w).reshape(shape)
            if (du, dv) != (0.0, 1.0):  # sum(w) == 1
                dinner *= dv
                dinner += du
                dha = du + dv * dha
            dinner *= dha * wi
            Ed += dinner
    return E, Ed


def _outer_nodes(n_nodes: int) -> int:
    return min(200, 3 * n_nodes)


@functools.lru_cache(maxsize=None)
def _make_step_quadrature(n_nodes: int):
    def _step_quadrature(spec: DualForm, K, T, Q1, Q2, sw2, sb2, unit_diag=False):
        want_d = T is not None
        E, Ed = _quad_expectations(spec, K, Q1, Q2, n_nodes, want_d, unit_diag)
        g2 = spec.gamma**2
        if want_d:
            Ed *= sw2 * g2 * spec.kappa**2
            if spec.lin:
                Ed += sw2 * spec.lin**2
            T *= Ed
        E *= sw2 * g2
        if spec.lin:
            E += (sw2 * spec.lin**2) * K
        c = sw2 * spec.c0**2 + sb2
        if c:
            E += c
        if want_d:
            T += E
        return E, T

    return _step_quadrature


_MIXTURE_FORMS = ("erfmix", "softplusmix")

_CLOSED_STEPS = {
    "abrelu": _step_abrelu,
    "erf": _step_erf,
    "erfmix": _step_erfmix,
    "softplusmix": _step_softplusmix,
    "gelu": _step_gelu,
    "identity": _step_identity,
}


def gaussian_expectations(
    activation: str,
    k11: Any,
    k12: Any,
    k22: Any,
    method: str = "auto",
    n_nodes: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Dual activation ``E[phi(a) phi(b)]`` and ``E[phi'(a) phi'(b)]``.

    Parameters
    ----------
    activation : str
        A key of :data:`mixednn.kernels.activations.ACTIVATIONS`.
    k11, k12, k22 : array_like
        Entries of the covariance of ``(a, b)``, broadcast against each other.
    method : {"auto", "closed", "quadrature"}
        ``"auto"`` uses the closed form where there is one, else quadrature.
    n_nodes : int
        Gauss-Hermite nodes of the inner dimension of the quadrature (the
        outer one gets ``min(200, 3 * n_nodes)``).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The two expectations, with the broadcast shape of the inputs.

    Examples
    --------
    >>> e, de = gaussian_expectations("relu", 1.0, 0.0, 1.0)
    >>> round(float(e), 6), float(de)   # 1/(2 pi) and 1/4
    (0.159155, 0.25)
    """
    name = canonical_activation(activation)
    spec = get_activation(name).dual
    k11, k12, k22 = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (k11, k12, k22))
    )
    shape = k12.shape
    K = np.array(k12, dtype=np.float64).reshape(-1)
    Q1 = np.array(k11).reshape(-1)
    Q2 = np.array(k22).reshape(-1)
    T = np.ones_like(K)
    if method == "auto":
        method = "closed" if spec.closed is not None else "quadrature"
    if method == "closed":
        if spec.closed is None:
            raise ValueError(f"activation {name!r} has no closed form; use method='quadrature'")
        step = _CLOSED_STEPS[spec.closed]
    elif method == "quadrature":
        if spec.h is None:  # identity
            step = _step_identity
        else:
            step = _make_step_quadrature(_check_nodes(n_nodes))
    else:
        raise ValueError(f"method must be 'auto', 'closed' or 'quadrature'; got {method!r}")
    # with sw2 = 1, sb2 = 0 and T = 1: K_new = E[phi phi], T_new = K_new + E[phi' phi']
    Kn, Tn = step(spec, K, T, Q1, Q2, 1.0, 0.0)
    return Kn.reshape(shape), (Tn - Kn).reshape(shape)


def _check_nodes(n: Any) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"quadrature_nodes must be an integer; got {n!r}")
    if not 2 <= int(n) <= 200:
        raise ValueError(f"quadrature_nodes must be between 2 and 200; got {n}")
    return int(n)


# ---------------------------------------------------------------------------
# Threading
# ---------------------------------------------------------------------------

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0  # its max_workers
_POOL_LOCK = threading.Lock()


def _n_threads() -> int:
    env = os.environ.get("MIXEDNN_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _pool(n: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < n:
            _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="mixednn-kernel")
            _POOL_SIZE = n
        return _POOL


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


def _as_inputs(Z: Any, name: str) -> np.ndarray:
    if Z is None:
        raise ValueError(f"{name} must be a 2-D array of shape (n, d); got None")
    try:
        arr = np.asarray(Z)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name} could not be converted to a numeric array: {exc}") from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be a numeric array; got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real-valued; got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = " (use Z.reshape(-1, 1) for a single feature)" if arr.ndim == 1 else ""
        raise ValueError(
            f"{name} must be a 2-D array of shape (n, d); got {arr.ndim}-D array "
            f"with shape {arr.shape}{hint}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column (d >= 1); got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


# ---------------------------------------------------------------------------
# The kernel
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MLP:
    """Infinite-width NNGP / NTK of a fully connected network (stax conventions).

    The network is ``depth`` hidden layers ``Dense(width) -> activation``
    followed by a ``Dense(1)`` readout, every ``Dense`` in the NTK
    parameterisation ``W_std / sqrt(fan_in) * x @ W.T + b_std * b`` with
    ``W, b ~ N(0, 1)``; this is exactly neural-tangents'
    ``stax.serial(*[Dense(width, W_std, b_std, parameterization='ntk'),
    Act()] * depth, Dense(1, W_std, b_std, parameterization='ntk'))``
    (Novak et al. 2020), so kernel values agree with ``kernel_fn(x1, x2)``.

    Parameters
    ----------
    depth : int, default 2
        Number of hidden layers (0 gives the linear kernel
        ``W_std**2 x.x'/d + b_std**2``).
    activation : str, default "relu"
        A key of :data:`mixednn.kernels.activations.ACTIVATIONS` (any
        spelling :func:`~mixednn.kernels.activations.canonical_activation`
        accepts): exact closed forms for ``relu``,
        ``abs``, ``leaky_relu`` (slope 0.01), ``erf``, ``gelu`` and
        ``identity`` / ``linear``; closed forms of a fitted erf-mixture
        surrogate (activation error < 1e-8) for ``tanh``, ``sigmoid`` and
        ``softplus``.
    weight_std : float, default 1.0
        ``W_std``; every layer's weight variance is ``W_std**2 / fan_in``.
    bias_std : float, default 0.0
        ``b_std``; 0 means no bias parameters at all (stax's ``b_std=None``).
    width : int or None, default None
        Hidden width of the finite network (only for :meth:`n_params` and
        :func:`mixednn.kernels.torch_mlp.torch_module`); the kernels are
        always the infinite-width ones.
    quadrature_nodes : int or None, default None
        ``None`` uses the closed forms above.  An integer switches ``tanh``,
        ``sigmoid`` and ``softplus`` to 2-D Gauss-Hermite quadrature with this
        many inner nodes (the outer dimension, which dominates the error,
        gets ``min(200, 3 * quadrature_nodes)``); other activations ignore
        it.  Quadrature error for tanh with 32 nodes is about 1e-7 at
        pre-activation variance 1, 2e-4 at 2 and 3e-3 at 4 (derivative
        kernel), which is why it is not the default.

    Notes
    -----
    The recursion (``docs/model.md`` section 5) starts from
    ``S = x.x'/d`` and ``T = 0``; a Dense layer maps ``S -> W^2 S + b^2`` and
    ``T -> S_new + W^2 T``; an activation maps ``S -> E[phi(a) phi(b)]`` and
    ``T -> T E[phi'(a) phi'(b)]`` with ``(a, b)`` Gaussian with the previous
    layer's covariance (Jacot et al. 2018; Arora et al. 2019).  Closed forms:
    arc-cosine kernels for ReLU-type activations (Cho & Saul 2009), arcsine
    kernel for erf (Williams 1997).  The computation is tiled (a few small
    tiles per thread in cache) and multithreaded over tiles
    (``MIXEDNN_NUM_THREADS`` caps the threads); with ``Z2=None`` (or ``Z2``
    equal to ``Z1``) only the upper triangle is computed and mirrored, so the
    result is exactly symmetric, with correlation exactly 1 on its diagonal.
    In a cross-kernel, coincident points of ``Z1`` and ``Z2`` are exact for the
    ReLU-type activations without biases (the default) and accurate to about
    1e-8 relative with biases, the conditioning of ``arccos`` at 1 (as in
    neural-tangents).  Memory: the outputs plus a few tile-sized buffers.

    Examples
    --------
    >>> import numpy as np
    >>> k = MLP(depth=1, activation="relu")
    >>> Z = np.array([[1.0, 0.0], [1.0, 1.0]])
    >>> np.round(k.ntk(Z), 4)
    array([[0.5   , 0.4546],
           [0.4546, 1.    ]])
    >>> k.describe()  # doctest: +NORMALIZE_WHITESPACE
    'MLP depth=1 relu, W_std=1, b_std=0, NTK parameterisation (neural-tangents stax),
     infinite width'
    """

    depth: int = 2
    activation: str = "relu"
    weight_std: float = 1.0
    bias_std: float = 0.0
    width: int | None = None
    quadrature_nodes: int | None = None

    def __post_init__(self) -> None:
        d = self.depth
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 0:
            raise ValueError(f"depth must be a non-negative integer; got {d!r}")
        object.__setattr__(self, "depth", int(d))
        object.__setattr__(self, "activation", canonical_activation(self.activation))
        for nm, v, lo in (("weight_std", self.weight_std, 0.0), ("bias_std", self.bias_std, 0.0)):
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"{nm} must be a real number; got {v!r}") from None
            if not math.isfinite(fv) or fv < lo or (nm == "weight_std" and fv == 0.0):
                cond = "> 0" if nm == "weight_std" else ">= 0"
                raise ValueError(f"{nm} must be finite and {cond}; got {v!r}")
            object.__setattr__(self, nm, fv)
        w = self.width
        if w is not None:
            if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, np.integer)) or w < 1:
                raise ValueError(f"width must be None or a positive integer; got {w!r}")
            object.__setattr__(self, "width", int(w))
        if self.quadrature_nodes is not None:
            object.__setattr__(self, "quadrature_nodes", _check_nodes(self.quadrature_nodes))

    # -- public API ---------------------------------------------------------

    def ntk(self, Z1: Any, Z2: Any = None) -> np.ndarray:
        """Neural tangent kernel matrix.

        Parameters
        ----------
        Z1 : array_like, shape (n1, d)
            Inputs (rows are observations).
        Z2 : array_like, shape (n2, d), optional
            Second set of inputs; ``None`` (or an array equal to ``Z1``) gives
            the exactly symmetric ``n1 x n1`` Gram matrix of ``Z1``.

        Returns
        -------
        numpy.ndarray, shape (n1, n2), float64
            ``Theta(z1_i, z2_j)``.

        Examples
        --------
        >>> import numpy as np
        >>> MLP(depth=2).ntk(np.eye(3)).shape
        (3, 3)
        """
        return self._compute(Z1, Z2, want_nngp=False, want_ntk=True)[1]

    def nngp(self, Z1: Any, Z2: Any = None) -> np.ndarray:
        """NNGP kernel (covariance of the network output at initialisation).

        Parameters
        ----------
        Z1 : array_like, shape (n1, d)
        Z2 : array_like, shape (n2, d), optional
            ``None`` means ``Z1`` against itself (exactly symmetric result).

        Returns
        -------
        numpy.ndarray, shape (n1, n2), float64

        Examples
        --------
        >>> import numpy as np
        >>> float(MLP(depth=0, bias_std=1.0).nngp(np.ones((1, 4)))[0, 0])
        2.0
        """
        return self._compute(Z1, Z2, want_nngp=True, want_ntk=False)[0]

    def kernels(self, Z1: Any, Z2: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """NNGP and NTK computed in one pass.

        Parameters
        ----------
        Z1 : array_like, shape (n1, d)
        Z2 : array_like, shape (n2, d), optional

        Returns
        -------
        nngp, ntk : numpy.ndarray, shape (n1, n2), float64

        Examples
        --------
        >>> import numpy as np
        >>> K, T = MLP(depth=1, activation="erf").kernels(np.eye(2))
        >>> bool(np.all(T >= K))
        True
        """
        K, T = self._compute(Z1, Z2, want_nngp=True, want_ntk=True)
        return K, T

    def describe(self) -> str:
        """One-line human description of the kernel and its convention.

        Examples
        --------
        >>> print(MLP(depth=3, activation="tanh", weight_std=1.5, bias_std=0.1).describe())
        ... # doctest: +NORMALIZE_WHITESPACE
        MLP depth=3 tanh, W_std=1.5, b_std=0.1, NTK parameterisation (neural-tangents stax),
        infinite width
        """
        width = "infinite width" if self.width is None else (
            f"infinite width (finite network width={self.width})"
        )
        return (
            f"MLP depth={self.depth} {self.activation}, W_std={self.weight_std:g}, "
            f"b_std={self.bias_std:g}, NTK parameterisation (neural-tangents stax), {width}"
        )

    def n_params(self, d: int) -> int:
        """Number of trainable parameters of the finite network.

        Weights of all ``depth + 1`` layers, plus one bias per unit in every
        layer (readout included) when ``bias_std > 0`` (none when it is 0).

        Parameters
        ----------
        d : int
            Input dimension.

        Returns
        -------
        int

        Examples
        --------
        >>> MLP(depth=2, width=10, bias_std=0.1).n_params(3)
        161
        """
        if self.width is None:
            raise ValueError("n_params needs a finite width; construct MLP(..., width=m)")
        d = _check_dim(d)
        m = self.width
        fans = [d] + [m] * self.depth
        outs = [m] * self.depth + [1]
        nb = sum(outs) if self.bias_std > 0 else 0
        return int(sum(i * o for i, o in zip(fans, outs)) + nb)

    def ntk_diagonal(self, Z: Any) -> np.ndarray:
        """Diagonal ``Theta(z_i, z_i)`` of the NTK, in O(n d) time and O(n) memory.

        The layer recursion (``docs/model.md`` section 5) is run on the
        diagonal alone, where the correlation of a point with itself is exactly
        1, with the same closed form (or, with ``quadrature_nodes``, the same
        quadrature) as :meth:`ntk`; no ``n x n`` matrix is formed.

        Parameters
        ----------
        Z : array_like, shape (n, d)
            Inputs (rows are observations).

        Returns
        -------
        numpy.ndarray, shape (n,), float64
            ``Theta(z_i, z_i)``; equals ``np.diag(self.ntk(Z))`` up to rounding.

        Examples
        --------
        >>> import numpy as np
        >>> m = MLP(depth=2, activation="tanh", bias_std=0.1)
        >>> Z = np.random.default_rng(0).normal(size=(5, 3))
        >>> bool(np.allclose(m.ntk_diagonal(Z), np.diag(m.ntk(Z)), rtol=1e-12, atol=0))
        True
        """
        X = _as_inputs(Z, "Z")
        if X.shape[0] == 0:
            return np.empty(0)
        sw2, sb2 = self.weight_std**2, self.bias_std**2
        spec = self._dual()
        step = self._step()
        qs = self._diagonals(X)
        K = qs[0].copy()
        T = K.copy()
        for h in range(self.depth):
            K, T = step(spec, K, T, qs[h], qs[h], sw2, sb2, unit_diag=True)
        return np.asarray(T, dtype=np.float64)

    # -- internals ----------------------------------------------------------

    def _dual(self) -> DualForm:
        return get_activation(self.activation).dual

    def _uses_quadrature(self) -> bool:
        spec = self._dual()
        return spec.closed is None or (
            self.quadrature_nodes is not None and spec.closed in _MIXTURE_FORMS
        )

    def _step(self) -> Callable:
        spec = self._dual()
        if self._uses_quadrature():
            return _make_step_quadrature(self.quadrature_nodes or 32)
        return _CLOSED_STEPS[spec.closed]

    def _diagonals(self, Z: np.ndarray) -> list[np.ndarray]:
        """Pre-activation variances ``S(x, x)`` entering each activation."""
        sw2, sb2 = self.weight_std**2, self.bias_std**2
        spec = self._dual()
        step = self._step()
        q = np.einsum("ij,ij->i", Z, Z) / Z.shape[1]
        q = sw2 * q + sb2
        qs = [q]
        for _ in range(self.depth):
            K = q.copy()
            q, _ = step(spec, K, None, q, q, sw2, sb2, unit_diag=True)
            np.maximum(q, 0.0, out=q)
            qs.append(q)
        return qs

    def _tile_size(self, d: int) -> int:
        if self._uses_quadrature():  # keep B (tile x nodes) ~ 1 MB
            return max(8, int(math.sqrt(131072 / (self.quadrature_nodes or 32))))
        if self._dual().closed in _MIXTURE_FORMS:  # 10 x tile terms
            return 64
        return 128

    def _compute(
        self, Z1: Any, Z2: Any, want_nngp: bool, want_ntk: bool
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        X1 = _as_inputs(Z1, "Z1")
        if Z2 is None:
            X2, sym = X1, True
        else:
            X2 = _as_inputs(Z2, "Z2")
            if X2.shape[1] != X1.shape[1]:
                raise ValueError(
                    f"Z1 and Z2 must have the same number of columns d; got "
                    f"{X1.shape[1]} and {X2.shape[1]}"
                )
            sym = X2.shape == X1.shape and (X2 is X1 or np.array_equal(X1, X2))
            if sym:
                X2 = X1
        n1, n2, d = X1.shape[0], X2.shape[0], X1.shape[1]
        sw2, sb2 = self.weight_std**2, self.bias_std**2
        spec = self._dual()

        out_K = np.empty((n1, n2)) if want_nngp else None
        out_T = np.empty((n1, n2)) if want_ntk else None
        if n1 == 0 or n2 == 0:
            return out_K, out_T
        qs1 = self._diagonals(X1)
        qs2 = qs1 if sym else self._diagonals(X2)
        fast = spec.closed == "abrelu" and sb2 == 0.0
        if fast:
            # Without biases the ReLU-type recursion closes on correlations:
            # start from the Gram matrix of unit-normalised inputs.
            X1 = X1 * _safe_rsqrt(np.einsum("ij,ij->i", X1, X1))[:, None]
            X2 = X1 if sym else X2 * _safe_rsqrt(np.einsum("ij,ij->i", X2, X2))[:, None]
        ts = self._tile_size(d)
        tiles = []
        for i0 in range(0, n1, ts):
            for j0 in range(i0 if sym else 0, n2, ts):
                tiles.append((i0, min(i0 + ts, n1), j0, min(j0 + ts, n2)))

        depth = self.depth
        if fast:
            a, b = spec.slopes
            beta = (a * a + b * b) / 2.0
            ab = (a - b) ** 2 / (2.0 * _PI) / beta  # alpha / beta
            sL1 = np.sqrt(qs1[-1])
            sL2 = sL1 if sym else np.sqrt(qs2[-1])

            def tile_fn(C: np.ndarray, i0: int, i1: int, j0: int, j1: int, diag: bool):
                # C: correlations c0 = x.x' / (|x| |x'|).  Recursion on
                #   c_h = (alpha sin(theta) + (beta - alpha theta) c) / beta,
                #   T_h = c_h + (1 - theta alpha / beta) T_{h-1},  T_0 = c_0,
                # with K = sqrt(q q') c_L and Theta = sqrt(q q') T_L at the end.
                np.clip(C, -1.0, 1.0, out=C)
                if diag:
                    np.fill_diagonal(C, 1.0)
                _refine_near_parallel(C, X1, X2, i0, j0)
                T = C.copy() if want_ntk else None
                if depth:
                    A = np.empty_like(C)
                    S = np.empty_like(C)
                    U = np.empty_like(C)
                for h in range(depth):
                    if h:
                        np.minimum(C, 1.0, out=C)  # |c_h| <= 1 up to rounding
                    np.arccos(C, out=A)
                    np.subtract(1.0, C, out=S)
                    np.add(1.0, C, out=U)
                    S *= U
                    np.sqrt(S, out=S)  # sin(theta)
                    A *= -ab
                    A += 1.0
                    if T is not None:
                        T *= A
                    C *= A
                    S *= ab
                    C += S
                    if T is not None:
                        T += C
                O = np.multiply(sL1[i0:i1, None], sL2[None, j0:j1])
                if want_nngp:
                    np.multiply(C, O, out=out_K[i0:i1, j0:j1])
                if want_ntk:
                    np.multiply(T, O, out=out_T[i0:i1, j0:j1])

        else:
            scale0 = sw2 / d
            step = self._step()

            def tile_fn(K: np.ndarray, i0: int, i1: int, j0: int, j1: int, diag: bool):
                K *= scale0
                if sb2:
                    K += sb2
                T = K.copy() if want_ntk else None
                for h in range(depth):
                    K, T = step(
                        spec, K, T, qs1[h][i0:i1, None], qs2[h][None, j0:j1], sw2, sb2,
                        unit_diag=diag,
                    )
                if want_nngp:
                    out_K[i0:i1, j0:j1] = K
                if want_ntk:
                    out_T[i0:i1, j0:j1] = T

        outs = [o for o in (out_K, out_T) if o is not None]

        def work(tile: tuple[int, int, int, int]) -> None:
            i0, i1, j0, j1 = tile
            diag = sym and i0 == j0
            tile_fn(np.matmul(X1[i0:i1], X2[j0:j1].T), i0, i1, j0, j1, diag)
            for out in outs:
                if diag:  # exact symmetry inside diagonal tiles
                    v = out[i0:i1, j0:j1]
                    il = np.tril_indices(i1 - i0, -1)
                    v[il] = v.T[il]
                elif sym:
                    out[j0:j1, i0:i1] = out[i0:i1, j0:j1].T

        nthreads = min(_n_threads(), len(tiles))
        work_units = n1 * n2 * max(1, depth) * (
            (self.quadrature_nodes or 32) ** 2 if self._uses_quadrature() else 1
        )
        if nthreads <= 1 or work_units < 200_000:
            for t in tiles:
                work(t)
        else:
            list(_pool(nthreads).map(work, tiles))
        return out_K, out_T


def _check_dim(d: Any) -> int:
    if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d (input dimension) must be a positive integer; got {d!r}")
    return int(d)
