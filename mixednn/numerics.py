"""Small numerical helpers shared by several layers: constants, the gradient-flow
filters of ``docs/model.md`` sections 1 and 4, and the memory check of dense fits."""

from __future__ import annotations

import math
import os

import numpy as np

from .exceptions import KernelMemoryError

__all__ = ["LOG_2PI", "flow_filter", "flow_variance_filter", "available_memory",
           "check_kernel_memory", "positive_tolerance"]

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
