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

Closed forms are used for ``relu`` / ``abs`` / ``leaky_relu`` (arc-cosine
kernels, Cho & Saul 2009), ``erf`` (arcsine kernel, Williams 1997), ``gelu``
(the closed form used by ``stax.Gelu``) and ``identity``.  Other smooth
activations (``tanh``, ``sigmoid``, ``softplus``) use tensor-product
Gauss--Hermite quadrature of the bivariate normal after a Cholesky
factorisation of its 2x2 covariance.

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

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np
from scipy.special import erf as _sp_erf
from scipy.special import expit as _expit
from scipy.special import ndtr as _ndtr

if TYPE_CHECKING:  # pragma: no cover - typing only, torch is imported lazily
    import torch

__all__ = [
    "MLP",
    "ACTIVATIONS",
    "ActivationPair",
    "gaussian_expectations",
]

_PI = math.pi
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_LEAKY_SLOPE = 0.01  # torch.nn.functional.leaky_relu's default negative slope


# ---------------------------------------------------------------------------
# Activation registry
# ---------------------------------------------------------------------------


class ActivationPair(NamedTuple):
    """An activation ``phi`` and its derivative ``dphi`` (numpy callables)."""

    phi: Callable[[np.ndarray], np.ndarray]
    dphi: Callable[[np.ndarray], np.ndarray]


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _drelu(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x) > 0).astype(np.float64)


def _leaky(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x, _LEAKY_SLOPE * x)


def _dleaky(x: np.ndarray) -> np.ndarray:
    return np.where(np.asarray(x) > 0, 1.0, _LEAKY_SLOPE)


def _derf(x: np.ndarray) -> np.ndarray:
    return (2.0 / math.sqrt(_PI)) * np.exp(-np.square(x))


def _dtanh(x: np.ndarray) -> np.ndarray:
    return 1.0 - np.square(np.tanh(x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return np.asarray(x) * _ndtr(x)


def _dgelu(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return _ndtr(x) + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _dsigmoid(x: np.ndarray) -> np.ndarray:
    s = _expit(x)
    return s * (1.0 - s)


def _identity(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _one(x: np.ndarray) -> np.ndarray:
    return np.ones_like(np.asarray(x, dtype=np.float64))


#: Registry of supported activations: ``name -> ActivationPair(phi, dphi)``.
#: ``erf`` is the plain ``erf(x)`` (``stax.Erf(a=1, b=1, c=0)``), ``gelu`` the
#: exact ``x * Phi(x)`` (``stax.Gelu(approximate=False)``), ``sigmoid`` the
#: logistic function, ``softplus`` is ``log(1 + exp(x))``, ``leaky_relu`` has
#: negative slope 0.01 (torch's default) and ``linear`` is an alias of
#: ``identity``.  Torch equivalents live in :mod:`mixednn.kernels.torch_mlp`.
ACTIVATIONS: dict[str, ActivationPair] = {
    "relu": ActivationPair(_relu, _drelu),
    "erf": ActivationPair(_sp_erf, _derf),
    "tanh": ActivationPair(np.tanh, _dtanh),
    "gelu": ActivationPair(_gelu, _dgelu),
    "softplus": ActivationPair(_softplus, _expit),
    "sigmoid": ActivationPair(_expit, _dsigmoid),
    "abs": ActivationPair(np.abs, np.sign),
    "leaky_relu": ActivationPair(_leaky, _dleaky),
    "identity": ActivationPair(_identity, _one),
    "linear": ActivationPair(_identity, _one),
}


# Base functions h for the quadrature decomposition (see _Spec).  Each returns
# (h(B), h'(B)), overwriting B with h(B) when it can.


def _h_tanh(B: np.ndarray, want_d: bool) -> tuple[np.ndarray, np.ndarray | None]:
    t = np.tanh(B, out=B)
    if not want_d:
        return t, None
    d = np.multiply(t, t)
    np.subtract(1.0, d, out=d)
    return t, d


def _h_abs(B: np.ndarray, want_d: bool) -> tuple[np.ndarray, np.ndarray | None]:
    d = np.sign(B) if want_d else None
    return np.abs(B, out=B), d


def _h_erf(B: np.ndarray, want_d: bool) -> tuple[np.ndarray, np.ndarray | None]:
    d = None
    if want_d:
        d = np.multiply(B, B)
        np.negative(d, out=d)
        np.exp(d, out=d)
        d *= 2.0 / math.sqrt(_PI)
    return _sp_erf(B, out=B), d


def _h_gelu_even(B: np.ndarray, want_d: bool) -> tuple[np.ndarray, np.ndarray | None]:
    # gelu(x) = x/2 + h(x) with h(x) = x * erf(x / sqrt 2) / 2 (even)
    e = _sp_erf(B / _SQRT2)
    d = None
    if want_d:  # h'(x) = erf(x / sqrt 2) / 2 + x * pdf(x)   (odd)
        d = np.multiply(B, B)
        d *= -0.5
        np.exp(d, out=d)
        d *= B
        d *= _INV_SQRT_2PI
        d += 0.5 * e
    e *= B
    e *= 0.5
    return e, d


def _h_softplus_even(B: np.ndarray, want_d: bool) -> tuple[np.ndarray, np.ndarray | None]:
    # softplus(x) = x/2 + h(x), h(x) = log(2 cosh(x/2)) = |x|/2 + log1p(exp(-|x|))
    d = None
    if want_d:  # h'(x) = tanh(x/2) / 2   (odd)
        d = np.multiply(B, 0.5)
        np.tanh(d, out=d)
        d *= 0.5
    a = np.abs(B, out=B)
    e = np.negative(a)
    np.exp(e, out=e)
    np.log1p(e, out=e)
    a *= 0.5
    a += e
    return a, d


@dataclass(frozen=True)
class _Spec:
    """How to integrate an activation against a bivariate normal.

    ``phi(x) = c0 + lin * x + gamma * h(kappa * x)`` where ``h`` is odd (then
    ``lin == 0``) or even (then ``c0 == 0``).  Under either condition the cross
    terms vanish by the symmetry ``(a, b) -> (-a, -b)``, so

    ``E[phi(a) phi(b)]   = c0**2 + lin**2 k12 + gamma**2 E[h(ka) h(kb)]`` and
    ``E[phi'(a) phi'(b)] = lin**2 + (gamma kappa)**2 E[h'(ka) h'(kb)]``,

    and the integrand ``h(ka) h(kb)`` is invariant under ``(a, b) -> (-a, -b)``,
    which halves the number of outer quadrature nodes.
    """

    closed: str | None  # "abrelu", "erf", "gelu", "identity" or None
    h: Callable[[np.ndarray, bool], tuple[np.ndarray, np.ndarray | None]] | None
    c0: float = 0.0
    lin: float = 0.0
    gamma: float = 1.0
    kappa: float = 1.0
    slopes: tuple[float, float] = (0.0, 1.0)  # (negative, positive) for abrelu


_SPECS: dict[str, _Spec] = {
    "relu": _Spec("abrelu", _h_abs, lin=0.5, gamma=0.5, slopes=(0.0, 1.0)),
    "abs": _Spec("abrelu", _h_abs, gamma=1.0, slopes=(-1.0, 1.0)),
    "leaky_relu": _Spec(
        "abrelu",
        _h_abs,
        lin=(1.0 + _LEAKY_SLOPE) / 2.0,
        gamma=(1.0 - _LEAKY_SLOPE) / 2.0,
        slopes=(_LEAKY_SLOPE, 1.0),
    ),
    "erf": _Spec("erf", _h_erf),
    "gelu": _Spec("gelu", _h_gelu_even, lin=0.5),
    "identity": _Spec("identity", None, lin=1.0, gamma=0.0),
    "linear": _Spec("identity", None, lin=1.0, gamma=0.0),
    "tanh": _Spec(None, _h_tanh),
    "sigmoid": _Spec(None, _h_tanh, c0=0.5, gamma=0.5, kappa=0.5),
    "softplus": _Spec(None, _h_softplus_even, lin=0.5),
}


def _canonical_activation(name: Any) -> str:
    if not isinstance(name, str):
        raise ValueError(
            f"activation must be a string, one of {sorted(ACTIVATIONS)}; got {name!r}"
        )
    key = name.strip().lower().replace("-", "_")
    if key not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {name!r}; valid names are: {', '.join(sorted(ACTIVATIONS))}"
        )
    return key


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
    """``clip(K / sqrt(Q1 Q2), -1, 1)``; zero where a variance is zero."""
    C = np.multiply(_safe_rsqrt(Q1), _safe_rsqrt(Q2))
    if C.shape == K.shape:
        C *= K
    else:
        C = np.multiply(C, K)
    np.clip(C, -1.0, 1.0, out=C)
    return C


def _step_abrelu(spec: _Spec, K, T, Q1, Q2, sw2, sb2):
    # a * min(x, 0) + b * max(x, 0): arc-cosine kernel of degree 1 (Cho & Saul)
    a, b = spec.slopes
    alpha = (a - b) ** 2 / (2.0 * _PI)
    beta = (a * a + b * b) / 2.0
    C = _correlation(K, Q1, Q2)
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


def _step_erf(spec: _Spec, K, T, Q1, Q2, sw2, sb2):
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


def _step_gelu(spec: _Spec, K, T, Q1, Q2, sw2, sb2):
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


def _step_identity(spec: _Spec, K, T, Q1, Q2, sw2, sb2):
    K *= sw2
    if sb2:
        K += sb2
    if T is not None:
        T *= sw2
        T += K
    return K, T


def _quad_expectations(
    spec: _Spec,
    K: np.ndarray,
    Q1: np.ndarray,
    Q2: np.ndarray,
    n_nodes: int,
    want_d: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``E[h(k a) h(k b)]`` and ``E[h'(k a) h'(k b)]`` by Gauss-Hermite quadrature.

    With ``c`` the correlation, ``a = s1 z1`` and
    ``b = s2 (c z1 + sqrt(1 - c^2) z2)`` for independent standard normals
    ``z1, z2`` (Cholesky factor of the 2x2 covariance).  The outer sum over
    ``z1`` uses the folded (non-negative) half rule, valid because the
    integrand is invariant under ``(z1, z2) -> (-z1, -z2)``.
    """
    z, w, zh, wh = _gh_rules(n_nodes)
    shape = K.shape
    k = spec.kappa
    C = _correlation(K, Q1, Q2)
    s2 = np.broadcast_to(k * np.sqrt(np.asarray(Q2, dtype=np.float64)), shape)
    M = np.multiply(C, s2)  # conditional-mean slope of b on z1
    S = np.multiply(C, C)
    np.subtract(1.0, S, out=S)
    np.sqrt(S, out=S)
    S *= s2  # conditional sd of b given z1
    s1 = k * np.sqrt(np.asarray(Q1, dtype=np.float64))
    M = M.reshape(-1)
    S = S.reshape(-1)
    P = M.size
    E = np.zeros(shape)
    Ed = np.zeros(shape) if want_d else None
    B = np.empty((P, n_nodes))
    for zi, wi in zip(zh, wh):
        ha, dha = spec.h(np.multiply(s1, zi), want_d)  # broadcastable to shape
        np.multiply(S[:, None], z[None, :], out=B)
        B += (M * zi)[:, None]
        hb, dhb = spec.h(B, want_d)
        inner = (hb @ w).reshape(shape)
        inner *= ha
        inner *= wi
        E += inner
        if want_d:
            dinner = (dhb @ w).reshape(shape)
            dinner *= dha
            dinner *= wi
            Ed += dinner
    return E, Ed


def _make_step_quadrature(n_nodes: int):
    def _step_quadrature(spec: _Spec, K, T, Q1, Q2, sw2, sb2):
        want_d = T is not None
        E, Ed = _quad_expectations(spec, K, Q1, Q2, n_nodes, want_d)
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


_CLOSED_STEPS = {
    "abrelu": _step_abrelu,
    "erf": _step_erf,
    "gelu": _step_gelu,
    "identity": _step_identity,
}


def gaussian_expectations(
    activation: str,
    k11: Any,
    k12: Any,
    k22: Any,
    method: str = "auto",
    n_nodes: int = 48,
) -> tuple[np.ndarray, np.ndarray]:
    """Dual activation ``E[phi(a) phi(b)]`` and ``E[phi'(a) phi'(b)]``.

    Parameters
    ----------
    activation : str
        A key of :data:`ACTIVATIONS`.
    k11, k12, k22 : array_like
        Entries of the covariance of ``(a, b)``, broadcast against each other.
    method : {"auto", "closed", "quadrature"}
        ``"auto"`` uses the closed form where there is one, else quadrature.
    n_nodes : int
        Gauss-Hermite nodes per dimension for the quadrature.

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
    name = _canonical_activation(activation)
    spec = _SPECS[name]
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
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < n:  # noqa: SLF001
            _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="mixednn-kernel")
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
        A key of :data:`ACTIVATIONS`: closed forms for ``relu``, ``abs``,
        ``leaky_relu`` (slope 0.01), ``erf``, ``gelu`` and ``identity`` /
        ``linear``; Gauss-Hermite quadrature for ``tanh``, ``sigmoid`` and
        ``softplus``.
    weight_std : float, default 1.0
        ``W_std``; every layer's weight variance is ``W_std**2 / fan_in``.
    bias_std : float, default 0.0
        ``b_std``; 0 means no bias parameters at all (stax's ``b_std=None``).
    width : int or None, default None
        Hidden width of the finite network (only for :meth:`n_params` and
        :meth:`torch_module`); the kernels are always the infinite-width ones.
    quadrature_nodes : int, default 48
        Gauss-Hermite nodes per dimension for activations without a closed
        form.  The error is about 1e-9 (NNGP) / 1e-8 (derivative kernel) when
        the pre-activation variances are <= 1 and grows for saturating
        activations with large pre-activation variances (about 1e-4 / 1e-3 at
        variance 3, 1e-2 at variance 10); raise it if needed.

    Notes
    -----
    The recursion (``docs/model.md`` section 5) starts from
    ``S = x.x'/d`` and ``T = 0``; a Dense layer maps ``S -> W^2 S + b^2`` and
    ``T -> S_new + W^2 T``; an activation maps ``S -> E[phi(a) phi(b)]`` and
    ``T -> T E[phi'(a) phi'(b)]`` with ``(a, b)`` Gaussian with the previous
    layer's covariance (Jacot et al. 2018; Arora et al. 2019).  Closed forms:
    arc-cosine kernels for ReLU-type activations (Cho & Saul 2009), arcsine
    kernel for erf (Williams 1997).  The computation is tiled (a few small
    tiles per thread in cache) and multithreaded over tiles; with ``Z2=None``
    only the upper triangle is computed and mirrored, so the result is
    exactly symmetric.

    Examples
    --------
    >>> import numpy as np
    >>> k = MLP(depth=1, activation="relu")
    >>> Z = np.array([[1.0, 0.0], [1.0, 1.0]])
    >>> np.round(k.ntk(Z), 4)
    array([[0.5   , 0.4546],
           [0.4546, 1.    ]])
    >>> k.describe()
    'MLP depth=1 relu, W_std=1, b_std=0, NTK parameterisation (neural-tangents stax), infinite width'
    """

    depth: int = 2
    activation: str = "relu"
    weight_std: float = 1.0
    bias_std: float = 0.0
    width: int | None = None
    quadrature_nodes: int = 48

    def __post_init__(self) -> None:
        d = self.depth
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 0:
            raise ValueError(f"depth must be a non-negative integer; got {d!r}")
        object.__setattr__(self, "depth", int(d))
        object.__setattr__(self, "activation", _canonical_activation(self.activation))
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
        >>> MLP(depth=3, activation="tanh", weight_std=1.5, bias_std=0.1).describe()
        'MLP depth=3 tanh, W_std=1.5, b_std=0.1, NTK parameterisation (neural-tangents stax), infinite width'
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

    def torch_module(self, d: int, seed: int | None = None, dtype: Any = None) -> "torch.nn.Module":
        """Finite-width torch network with this kernel's parameterisation.

        Thin wrapper around :func:`mixednn.kernels.torch_mlp.torch_module`;
        torch is imported only when this is called.

        Parameters
        ----------
        d : int
            Input dimension.
        seed : int, optional
            Seed of the N(0, 1) initialisation.
        dtype : torch.dtype, optional
            Defaults to ``torch.float64``.

        Returns
        -------
        mixednn.kernels.torch_mlp.MLPNetwork
            Maps an ``(n, d)`` tensor to an ``(n,)`` tensor.

        Examples
        --------
        >>> net = MLP(depth=1, width=8).torch_module(3, seed=0)  # doctest: +SKIP
        """
        from .torch_mlp import torch_module

        if dtype is None:
            return torch_module(self, d, seed=seed)
        return torch_module(self, d, seed=seed, dtype=dtype)

    # -- internals ----------------------------------------------------------

    def _step(self) -> Callable:
        spec = _SPECS[self.activation]
        if spec.closed is not None:
            return _CLOSED_STEPS[spec.closed]
        return _make_step_quadrature(self.quadrature_nodes)

    def _diagonals(self, Z: np.ndarray) -> list[np.ndarray]:
        """Pre-activation variances ``S(x, x)`` entering each activation."""
        sw2, sb2 = self.weight_std**2, self.bias_std**2
        spec = _SPECS[self.activation]
        step = self._step()
        q = np.einsum("ij,ij->i", Z, Z) / Z.shape[1]
        q = sw2 * q + sb2
        qs = [q]
        for _ in range(self.depth):
            K = q.copy()
            q, _ = step(spec, K, None, q, q, sw2, sb2)
            np.maximum(q, 0.0, out=q)
            qs.append(q)
        return qs

    def _tile_size(self, d: int) -> int:
        spec = _SPECS[self.activation]
        if spec.closed is None:  # quadrature: keep B (tile x nodes) ~ 1 MB
            return max(8, int(math.sqrt(131072 / self.quadrature_nodes)))
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
        spec = _SPECS[self.activation]
        step = self._step()

        out_K = np.empty((n1, n2)) if want_nngp else None
        out_T = np.empty((n1, n2)) if want_ntk else None
        if n1 == 0 or n2 == 0:
            return out_K, out_T
        # the Gram matrix is parked in one of the outputs; each tile reads its
        # own block before overwriting it (mirrored writes only ever land in
        # strictly-lower blocks, which no tile reads).
        G = out_T if want_ntk else out_K
        np.matmul(X1, X2.T, out=G)
        qs1 = self._diagonals(X1)
        qs2 = qs1 if sym else self._diagonals(X2)

        ts = self._tile_size(d)
        tiles = []
        for i0 in range(0, n1, ts):
            for j0 in range(i0 if sym else 0, n2, ts):
                tiles.append((i0, min(i0 + ts, n1), j0, min(j0 + ts, n2)))

        scale0 = sw2 / d

        def work(tile: tuple[int, int, int, int]) -> None:
            i0, i1, j0, j1 = tile
            K = G[i0:i1, j0:j1] * scale0
            if sb2:
                K += sb2
            T = K.copy() if want_ntk else None
            for h in range(self.depth):
                K, T = step(
                    spec, K, T, qs1[h][i0:i1, None], qs2[h][None, j0:j1], sw2, sb2
                )
            diag = sym and i0 == j0
            for out, R in ((out_K, K), (out_T, T)):
                if out is None:
                    continue
                if diag:  # exact symmetry inside diagonal tiles
                    R = np.triu(R)
                    R += np.triu(R, 1).T
                out[i0:i1, j0:j1] = R
                if sym and not diag:
                    out[j0:j1, i0:i1] = R.T

        nthreads = min(_n_threads(), len(tiles))
        work_units = n1 * n2 * max(1, self.depth) * (
            1 if spec.closed is not None else self.quadrature_nodes**2
        )
        if nthreads <= 1 or work_units < 200_000:
            for t in tiles:
                work(t)
        else:
            # hand out diagonal-heavy and large tiles in an interleaved order
            list(_pool(nthreads).map(work, tiles))
        return out_K, out_T


def _check_dim(d: Any) -> int:
    if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d (input dimension) must be a positive integer; got {d!r}")
    return int(d)
