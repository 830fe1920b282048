"""Gaussian expectations of an activation by two-dimensional Gauss--Hermite quadrature.

The dual activation ``E[phi(a) phi(b)]`` (and ``E[phi'(a) phi'(b)]``) of a centred
Gaussian pair ``(a, b)`` is integrated numerically after a Cholesky factorisation of
its 2x2 covariance: ``a = s1 z1`` and ``b = s2 (c z1 + sqrt(1 - c^2) z2)`` with ``c``
the correlation and ``z1, z2`` independent standard normals.  This is what
``neural_tangents.stax.Elementwise`` does; here it is the generic fallback for an
activation without a closed form and a cross-check of the closed forms of
:mod:`mixednn.kernels.dual` (``MLP(quadrature_nodes=n)``,
``gaussian_expectations(..., method="quadrature")``).  It loses accuracy for
saturating activations at large pre-activation variance, which is why the closed
forms are the default.

:func:`make_step_quadrature` returns a step with the signature and contract of the
closed-form steps (:data:`mixednn.kernels.dual.Step`): one activation followed by one
``Dense`` layer.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np

from .activations import DualForm
from .dual import Step, correlation, fill_unit_diag

__all__ = ["check_nodes", "make_step_quadrature"]

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
# Expectations and the quadrature step
# ---------------------------------------------------------------------------


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
    C = correlation(K, Q1, Q2)
    if unit_diag:
        fill_unit_diag(C)
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
    """Nodes of the outer (dominant) dimension for ``n_nodes`` inner nodes."""
    return min(200, 3 * n_nodes)


@functools.lru_cache(maxsize=None)
def make_step_quadrature(n_nodes: int) -> Step:
    """The quadrature step with ``n_nodes`` inner nodes (cached: one function per count).

    Parameters
    ----------
    n_nodes : int
        Gauss-Hermite nodes of the inner dimension (see :func:`check_nodes`); the
        outer one gets ``min(200, 3 * n_nodes)``.

    Returns
    -------
    callable
        ``step(spec, K, T, Q1, Q2, sw2, sb2, unit_diag=False) -> (K_new, T_new)``:
        one activation, by quadrature of ``spec.h``, then one ``Dense`` layer (the
        contract of :data:`mixednn.kernels.dual.Step`).
    """

    def _step_quadrature(
        spec: DualForm, K: np.ndarray, T: np.ndarray | None, Q1: Any, Q2: Any, sw2: float,
        sb2: float, unit_diag: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
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


def check_nodes(n: Any) -> int:
    """A validated node count: an integer between 2 and 200 (else ``ValueError``)."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"quadrature_nodes must be an integer; got {n!r}")
    if not 2 <= int(n) <= 200:
        raise ValueError(f"quadrature_nodes must be between 2 and 200; got {n}")
    return int(n)
