"""Dual activations in closed form: one activation-then-Dense step of the kernel recursion.

For an activation ``phi`` and a centred Gaussian pair ``(a, b)`` with covariance
``[[q1, k], [k, q2]]``, the *dual activation* is ``E[phi(a) phi(b)]`` and its derivative
counterpart ``E[phi'(a) phi'(b)]``.  Every step here maps a tile ``(K, T)`` of the
NNGP / NTK recursion (``docs/model.md`` section 5) through one activation followed by
one ``Dense`` layer of weight variance ``sw2`` and bias variance ``sb2``::

    K_new = sw2 * E[phi(a) phi(b)] + sb2             (the next Dense's NNGP)
    T_new = K_new + sw2 * T * E[phi'(a) phi'(b)]      (the next Dense's NTK)

where ``K`` holds the pre-activation covariance ``S(x, x')`` and ``Q1`` / ``Q2`` its
diagonals, broadcastable to ``K`` (e.g. ``q1[:, None]`` and ``q2[None, :]``).  ``K``
and ``T`` are consumed (overwritten); ``T=None`` skips the NTK.

Closed forms (keys of :data:`CLOSED_STEPS`, the ``closed`` field of an activation's
:class:`~mixednn.kernels.activations.DualForm`):

* ``"abrelu"`` -- ``a * min(x, 0) + b * max(x, 0)`` (relu, abs, leaky_relu):
  arc-cosine kernel of degree 1 (Cho & Saul 2009);
* ``"erf"`` -- Williams' (1997) arcsine kernel;
* ``"erfmix"`` -- tanh and sigmoid as a ten-term scale mixture of erfs, a sum of
  arcsine terms;
* ``"softplusmix"`` -- softplus as the antiderivative of the sigmoid mixture (Price's
  theorem);
* ``"gelu"`` -- the closed form of ``neural_tangents.stax.Gelu`` (Tsuchida et al. 2021);
* ``"sin"`` -- ``E[sin a sin b] = exp(-(q1 + q2) / 2) sinh(k)`` and
  ``E[cos a cos b] = exp(-(q1 + q2) / 2) cosh(k)`` (the Gaussian characteristic
  function; ``neural_tangents.stax.Sin``);
* ``"identity"``.

Gauss--Hermite quadrature of the same expectations is in
:mod:`mixednn.kernels.quadrature`; the tiled recursion that applies these steps layer
by layer is in :mod:`mixednn.kernels.recursion`.

References
----------
Cho & Saul (2009). Kernel methods for deep learning. NeurIPS.
Williams (1997). Computing with infinite networks. NeurIPS.
Tsuchida, Pearce, van der Heide, Roosta & Gallagher (2021). Avoiding kernel
fixed points: computing with ELU and GELU infinite networks. AAAI.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .activations import TANH_ERF_RATES, TANH_ERF_WEIGHTS, DualForm

__all__ = [
    "CLOSED_STEPS",
    "MIXTURE_FORMS",
    "Step",
    "correlation",
    "fill_unit_diag",
    "refine_near_parallel",
    "safe_rsqrt",
]

_PI = math.pi

#: Signature of a step: ``step(spec, K, T, Q1, Q2, sw2, sb2, unit_diag=False) -> (K, T)``.
Step = Callable[..., tuple[np.ndarray, "np.ndarray | None"]]


# ---------------------------------------------------------------------------
# Correlations
# ---------------------------------------------------------------------------


def safe_rsqrt(q: np.ndarray) -> np.ndarray:
    """``1 / sqrt(q)`` elementwise, float64, and 0 where ``q <= 0``."""
    q = np.asarray(q, dtype=np.float64)
    out = np.zeros_like(q)
    np.divide(1.0, np.sqrt(q), out=out, where=q > 0)
    return out


def correlation(K: np.ndarray, Q1: np.ndarray, Q2: np.ndarray) -> np.ndarray:
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


def refine_near_parallel(C: np.ndarray, U1: np.ndarray, U2: np.ndarray, i0: int, j0: int) -> None:
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


def fill_unit_diag(C: np.ndarray) -> None:
    """Set the correlations of points with themselves to exactly 1, in place (all of a
    vector of diagonal entries, the diagonal of a square tile)."""
    if C.ndim == 1:
        C[:] = 1.0
    else:
        np.fill_diagonal(C, 1.0)


# ---------------------------------------------------------------------------
# Closed-form steps (activation, then Dense)
# ---------------------------------------------------------------------------


def _step_abrelu(
    spec: DualForm, K: np.ndarray, T: np.ndarray | None, Q1: Any, Q2: Any, sw2: float,
    sb2: float, unit_diag: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    # a * min(x, 0) + b * max(x, 0): arc-cosine kernel of degree 1 (Cho & Saul)
    a, b = spec.slopes
    alpha = (a - b) ** 2 / (2.0 * _PI)
    beta = (a * a + b * b) / 2.0
    C = correlation(K, Q1, Q2)
    if unit_diag:  # the same input on both sides: c = 1 exactly (arccos is
        fill_unit_diag(C)  # ill-conditioned at 1, rounding would cost 1e-8)
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


def _step_erf(
    spec: DualForm, K: np.ndarray, T: np.ndarray | None, Q1: Any, Q2: Any, sw2: float,
    sb2: float, unit_diag: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
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


def _step_erfmix(
    spec: DualForm, K: np.ndarray, T: np.ndarray | None, Q1: Any, Q2: Any, sw2: float,
    sb2: float, unit_diag: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
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


def _step_softplusmix(
    spec: DualForm, K: np.ndarray, T: np.ndarray | None, Q1: Any, Q2: Any, sw2: float,
    sb2: float, unit_diag: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
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


def _step_gelu(
    spec: DualForm, K: np.ndarray, T: np.ndarray | None, Q1: Any, Q2: Any, sw2: float,
    sb2: float, unit_diag: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
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


def _step_sin(
    spec: DualForm, K: np.ndarray, T: np.ndarray | None, Q1: Any, Q2: Any, sw2: float,
    sb2: float, unit_diag: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    # E[sin a sin b] = (E cos(a - b) - E cos(a + b)) / 2 with Var(a -+ b) = q1 + q2 -+ 2k;
    # the two exponentials, not exp(-(q1 + q2)/2) sinh(k), so nothing overflows
    D = np.add(Q1, Q2)
    D = np.array(np.broadcast_to(D, K.shape))
    M = np.subtract(D, 2.0 * K)  # Var(a - b) >= 0
    if unit_diag:  # the same input on both sides: a = b exactly
        if M.ndim == 1:
            M[:] = 0.0
        else:
            np.fill_diagonal(M, 0.0)
    np.maximum(M, 0.0, out=M)
    M *= -0.5
    np.exp(M, out=M)
    P = np.add(D, 2.0 * K, out=D)
    P *= -0.5
    np.exp(P, out=P)
    if T is not None:  # sin' = cos: E[cos a cos b] = (Em + Ep) / 2
        T *= 0.5 * sw2
        T *= np.add(M, P)
    np.subtract(M, P, out=K)
    K *= 0.5 * sw2
    if sb2:
        K += sb2
    if T is not None:
        T += K
    return K, T


def _step_identity(
    spec: DualForm, K: np.ndarray, T: np.ndarray | None, Q1: Any, Q2: Any, sw2: float,
    sb2: float, unit_diag: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    K *= sw2
    if sb2:
        K += sb2
    if T is not None:
        T *= sw2
        T += K
    return K, T


#: Closed forms whose cost is ten terms per entry (tiles are kept smaller for them).
MIXTURE_FORMS = ("erfmix", "softplusmix")

#: The closed-form step of each ``DualForm.closed`` key.
CLOSED_STEPS: dict[str, Step] = {
    "abrelu": _step_abrelu,
    "erf": _step_erf,
    "erfmix": _step_erfmix,
    "softplusmix": _step_softplusmix,
    "gelu": _step_gelu,
    "sin": _step_sin,
    "identity": _step_identity,
}
