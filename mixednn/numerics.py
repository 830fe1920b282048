"""Small numerical helpers shared by several layers: constants, the gradient-flow
filters of ``docs/model.md`` sections 1 and 4, and the memory check of dense fits."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .exceptions import KernelMemoryError

__all__ = ["LOG_2PI", "flow_filter", "flow_variance_filter", "available_memory",
           "check_kernel_memory", "positive_tolerance", "GramInverse", "gram_inverse"]

LOG_2PI = math.log(2 * math.pi)


def flow_filter(t: float, lam: np.ndarray) -> np.ndarray:
    """``phi_t(lam) = (1 - exp(-t lam)) / lam``, equal to t at lam = 0.

    The gradient-flow filter: the network trained for time t predicts at a new
    point ``k*^T U diag(phi_t(lam)) U^T r`` (``docs/model.md`` section 4).
    """
    lam = np.asarray(lam, dtype=float)
    out = np.full_like(lam, float(t))
    nz = lam > 0
    out[nz] = -np.expm1(-t * lam[nz]) / lam[nz]
    return out


@dataclass(frozen=True)
class GramInverse:
    """What :func:`gram_inverse` found.

    Attributes
    ----------
    inverse : ndarray or None
        The inverse, or None where it is not identified.
    retained : float
        The smallest fraction of the reference's information that the weighted Gram
        keeps on any combination of the columns (1 without weights; 0 where the columns
        are collinear in the reference itself).
    collinear : bool
        The columns are (nearly) dependent in the reference itself, before any weights.
    null_loadings : ndarray or None
        Where not identified: the combination of the columns (each scaled to unit norm in
        the reference) that is lost, scaled to a largest absolute value of 1; None
        otherwise.
    """

    inverse: np.ndarray | None
    retained: float
    collinear: bool
    null_loadings: np.ndarray | None


def gram_inverse(gram: np.ndarray, reference: np.ndarray, *, min_retained: float = 1e-12,
                 max_cond: float = 1e12) -> GramInverse:
    """Inverse of a weighted Gram matrix ``X^T W X``, judged against the unweighted
    ``X^T X``: is every combination of the columns still estimable?

    Two things can make ``X^T W X`` singular, and neither is measured by its raw condition
    number, which also grows with the square of the ratio of the columns' units (a column
    in the thousands beside a 0/1 dummy):

    * the columns are collinear in the data: the unit-diagonal form of ``reference`` has a
      condition number above ``max_cond``;
    * the weights remove a combination: the generalised eigenvalues of
      ``(gram, reference)`` are the fractions of each combination's information the
      weights keep, and the smallest is below ``min_retained`` (a network that absorbs a
      fixed effect: weights ``exp(-t lam)`` on directions that carry it).

    Both criteria are invariant to rescaling the columns.

    Parameters
    ----------
    gram : ndarray, shape (p, p)
        The weighted Gram matrix (symmetric positive semi-definite).
    reference : ndarray, shape (p, p)
        The same columns' Gram matrix without the weights.
    min_retained, max_cond : float
        Thresholds of the two criteria (the inverse keeps about 4 accurate digits at
        either).

    Returns
    -------
    GramInverse

    Examples
    --------
    >>> import numpy as np
    >>> X = np.column_stack([np.ones(4), [1e6, 2e6, 4e6, 3e6]])  # raw units
    >>> found = gram_inverse(X.T @ X, X.T @ X)
    >>> bool(np.allclose(found.inverse @ (X.T @ X), np.eye(2))), round(found.retained, 12)
    (True, 1.0)
    >>> w = np.array([1e-30, 1.0, 1.0, 1.0])  # the weights all but remove row 0
    >>> X2 = np.column_stack([X, [1.0, 0, 0, 0]])  # a column that only row 0 carries
    >>> found = gram_inverse(X2.T @ (w[:, None] * X2), X2.T @ X2)
    >>> found.inverse is None, found.collinear, int(np.abs(found.null_loadings).argmax())
    (True, False, 2)
    """
    gram = np.asarray(gram, dtype=float)
    reference = np.asarray(reference, dtype=float)
    p = gram.shape[0]
    if p == 0:
        return GramInverse(np.empty((0, 0)), 1.0, False, None)
    d = np.sqrt(np.maximum(np.diag(reference), 0.0))
    if not (np.all(d > 0) and np.all(np.isfinite(reference))):
        return GramInverse(None, 0.0, True, (~(d > 0)).astype(float))
    unit = reference / np.outer(d, d)
    ev, vec = np.linalg.eigh(0.5 * (unit + unit.T))
    if not ev[0] * max_cond > ev[-1]:
        return GramInverse(None, 0.0, True, _unit_max(vec[:, 0]))
    half = vec / np.sqrt(ev)  # reference^{-1/2} on the unit-diagonal scale
    if not np.all(np.isfinite(gram)):
        return GramInverse(None, 0.0, False, np.ones(p))
    kept = half.T @ (gram / np.outer(d, d)) @ half
    mu, w = np.linalg.eigh(0.5 * (kept + kept.T))
    retained = float(max(mu[0], 0.0))
    if not retained >= min_retained:
        return GramInverse(None, retained, False, _unit_max(half @ w[:, 0]))
    inverse = (half @ (w / mu) @ w.T @ half.T) / np.outer(d, d)
    return GramInverse(0.5 * (inverse + inverse.T), min(retained, 1.0), False, None)


def _unit_max(v: np.ndarray) -> np.ndarray:
    """``v`` scaled so that its largest absolute entry is 1."""
    return v / v[np.argmax(np.abs(v))]


def positive_tolerance(lam: np.ndarray) -> float:
    """Eigenvalues at or below ``max(lam) * len(lam) * eps`` are rounding zeros."""
    lam = np.asarray(lam, dtype=float)
    return float(lam.max()) * max(lam.size, 1) * np.finfo(float).eps if lam.size else 0.0


def flow_variance_filter(t: float, lam: np.ndarray) -> np.ndarray:
    """``(1 - exp(-t lam)) / lam^2`` on the resolvable eigenvalues, 0 on rounding zeros.

    The posterior variance of the network part at a new point is
    ``s2 sum_i g_i (U^T k*)_i^2`` (``docs/model.md`` section 4).
    """
    lam = np.asarray(lam, dtype=float)
    g = np.zeros_like(lam)
    nz = lam > positive_tolerance(lam)
    g[nz] = -np.expm1(-t * lam[nz]) / lam[nz] ** 2
    return g


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable``), or None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return None


def check_kernel_memory(n: int, n_matrices: int = 3, available: int | None = None) -> None:
    """Refuse, before allocating, a dense fit whose kernel would not fit in memory.

    The dense path holds at most ``n_matrices`` n x n float64 matrices at once
    (kernel, reflectors, tridiagonal eigenvectors).

    Raises
    ------
    KernelMemoryError
        With the size needed, the memory available and the feature-space alternatives.
    """
    need = n_matrices * n * n * 8
    available = available_memory() if available is None else available
    if available is not None and need > available:
        raise KernelMemoryError(
            f"a dense NTK fit with n = {n:,} rows needs about {need / 2**30:.1f} GiB "
            f"({n_matrices} n x n float64 matrices) but only {available / 2**30:.1f} GiB is "
            "available. Fit in feature space instead: low_rank=m (Nystrom features, memory "
            "O(m^2) whatever n, e.g. low_rank=1000), or low_rank='exact' for a finite network "
            "with fewer parameters than rows; data too large to load can be passed as a "
            "dask.dataframe (from_formula(..., data=ddf, low_rank=m)) or a chunked CSV "
            "(mixednn.partitions.CSVSource)")
