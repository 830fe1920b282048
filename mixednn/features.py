"""Feature maps ``Phi`` with ``K = Phi Phi^T``, and how Nystrom landmarks are chosen.

This module owns the maps from (scaled) network inputs to features that a
feature-space fit (:mod:`mixednn.lowrank`) sums over: the :class:`FeatureMap`
interface and its three kinds, the exact kernel diagonal (for the Nystrom trace
error), and the choice of landmark rows (:func:`select_landmarks`,
:func:`scan_pool`, :func:`build_nystrom`).  What is done with the features -- the
sufficient statistics, the basis, the cross-rotations -- is :mod:`mixednn.lowrank`.

Feature maps
------------
* :class:`NystromFeatures` -- Nystrom features of any kernel ``k(Z1, Z2)`` (the
  analytic NTK): ``Phi(z) = k(z, L) V diag(w^{-1/2})`` with ``k(L, L) = V diag(w) V^T``
  on m landmark rows L, so that ``Phi Phi^T = K_m = K_{nL} K_{LL}^+ K_{Ln}``
  (Williams & Seeger 2001).  New rows get their features through the same map,
  so predictions use the Nystrom cross-kernel ``K_m(z*, Z)``.
* :class:`JacobianFeatures` -- the exact per-row Jacobian ``J`` of a finite
  torch network (``K = J J^T``, no approximation), streamed by chunks.
* :class:`FunctionFeatures` -- any user feature function (``K = Phi Phi^T`` exactly).

Landmark rules (:func:`select_landmarks`, ``landmarks=`` of :class:`~mixednn.MixedLMNTK`)
----------------------------------------------------------------------------------------
Candidates are a *pool* of rows chosen by a seeded hash of their network
inputs (the rows with the smallest keys, :func:`scan_pool`: a uniform sample without
replacement that does not depend on how the data are split into chunks or partitions,
so an in-memory fit, a CSV stream and a dask fit choose the same landmarks).

* ``"uniform"``: the first m pool rows (a uniform sample).
* ``"kmeans++"`` (default): kernel k-means++ seeding (Arthur & Vassilvitskii 2007)
  in the kernel's feature space, ``D^2(z) = min_l k(z,z) - 2 k(z,l) + k(l,l)``,
  on a pool of ``min(n, max(20 m, 2000))`` rows; the first landmark is the first pool
  row, the next ones are drawn proportionally to ``D^2`` in batches of at most 64
  (a batch is one kernel call; ``D^2`` is updated between batches).  Spreads the
  landmarks over the input distribution (Zhang, Tsang & Kwok 2008; Oglic & Gaertner
  2017).
* ``"leverage"``: sampling without replacement proportional to approximate
  ridge leverage scores (Alaoui & Mahoney 2015), computed from a uniform Nystrom
  approximation on the pool, with the ridge set so that the effective dimension
  is m.
* ``"rpcholesky"``: randomly pivoted Cholesky (Chen, Epperly, Tropp & Webber
  2023): pivots sampled proportionally to the diagonal of the current residual
  ``K - K_S``.

The approximation's trace error ``tr(K - K_m) = sum_i k(z_i, z_i) - ||Phi||_F^2`` is
accumulated in the same pass as the sufficient statistics and reported in the summary.

Accuracy (``benchmarks/bench_scale.py``; n = 4,000, 10 Gaussian inputs, depth-2 ReLU
NTK, data seeds 0-3, default rule): REML t within 1.7% of the exact fit at m = 500
and 1.4% at m = 1,000 (8% at m = 250).  Out of sample, the Nystrom cross-kernel
``K_m(z*, Z)`` (``predict(..., cross="features")``) raises the test MSE by 2.5-3.1% at
m = 500 and 1.3-1.7% at m = 1,000; the exact cross-kernel with the Nystrom eigenpairs
(``cross="exact"``, the default when cheap) by at most 1.2% and 0.2%.  On such
unclustered inputs the landmark rules perform alike; k-means++ gains on clustered inputs.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np
import scipy.linalg

from .kernels import MLP
from .persistence import UserFunction
from .rows import LANDMARK_RULES, RowChunk, pool_size, row_keys, smallest_keys

__all__ = ["FeatureMap", "NystromFeatures", "JacobianFeatures", "FunctionFeatures",
           "DEFAULT_LANDMARKS", "RCOND_LANDMARKS", "RAW_COND", "select_landmarks",
           "kernel_diagonal", "scan_pool", "build_nystrom"]

DEFAULT_LANDMARKS = "kmeans++"

#: Relative cut-off below which eigenvalues of ``k(L, L)`` are treated as zero.
RCOND_LANDMARKS = 1e-10
#: Largest condition number of ``k(L, L)`` for which sums run over the raw block ``k(Z, L)``.
RAW_COND = 1e6


# ============================================================================ feature maps

class FeatureMap:
    """A map from (scaled) network inputs to features, ``K(Z1, Z2) = Phi(Z1) Phi(Z2)^T``.

    Subclasses set ``dim`` (number of features), ``exact`` (whether ``Phi Phi^T`` is
    the model's kernel itself rather than an approximation) and ``description``, and
    implement :meth:`__call__`.
    """

    dim: int = 0
    exact: bool = True
    description: str = "feature map"
    kind: str = "features"
    #: landmark rows a Nystrom map evaluates the kernel at (0 for other maps)
    n_landmarks: int = 0
    #: the kernel ``k(Z1, Z2)`` that the features approximate (None: exact features)
    kernel: Any = None

    def __call__(self, Z: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    #: ``Phi(Z) = raw(Z) @ raw_transform`` (``None``: the raw features are the features).
    #: Passes over the rows work with the cheaper raw block and apply the transform to
    #: the small m x m results.
    raw_transform: np.ndarray | None = None

    def raw(self, Z: np.ndarray) -> np.ndarray:
        """The raw feature block of rows Z (see :attr:`raw_transform`)."""
        return self(Z)

    @property
    def raw_dim(self) -> int:
        return self.dim if self.raw_transform is None else int(self.raw_transform.shape[0])

    def kernel_diagonal(self, Z: np.ndarray) -> np.ndarray | None:
        """Diagonal ``k(z, z)`` of the kernel being approximated (None when exact)."""
        return None


class FunctionFeatures(FeatureMap):
    """Exact features from a user function ``Z -> Phi`` (n x m).

    Parameters
    ----------
    fn : callable
        Maps an (n, d) array of scaled network inputs to an (n, m) feature matrix.
    dim : int
        m, the number of features.
    description : str, optional
        One line for the summary.

    Examples
    --------
    >>> import numpy as np
    >>> f = FunctionFeatures(lambda Z: np.column_stack([Z, Z ** 2]), dim=4)
    >>> f(np.ones((3, 2))).shape
    (3, 4)
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], dim: int, description: str | None = None):
        if not callable(fn):
            raise TypeError("fn must be callable: Z (n x d) -> features (n x m)")
        if int(dim) != dim or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.fn = UserFunction(fn, "FunctionFeatures(fn, ...)",
                               "def my_features(Z): return ... at the top of a module")
        self.dim = int(dim)
        self.description = description or f"user feature map ({self.dim} features): K = Phi Phi^T"

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        F = np.asarray(self.fn(Z), dtype=float)
        if F.ndim != 2 or F.shape != (Z.shape[0], self.dim):
            raise ValueError(f"the feature map returned shape {F.shape}; expected "
                             f"({Z.shape[0]}, {self.dim})")
        if not np.all(np.isfinite(F)):
            raise ValueError("the feature map returned NaN or infinite values")
        return F


class JacobianFeatures(FeatureMap):
    """Exact Jacobian features of a finite torch network, ``K = J J^T`` (no approximation).

    Row ``i`` of ``J`` is ``d f(z_i; theta) / d theta`` at initialisation, one column
    per trainable parameter.  Chunks of rows are differentiated one at a time, so
    memory is O(P^2) for the sufficient statistics, not O(n P).

    Parameters
    ----------
    source : mixednn.kernels.empirical.FiniteNetworkSource
        The finite network's kernel source (what ``network=module`` resolves to).
    d : int
        Number of network inputs.
    """

    kind = "jacobian"

    def __init__(self, source: Any, d: int):
        self.source = source
        eng = source.engine_for(int(d))
        self.dim = int(eng.n_params)
        if self.dim > 40_000:
            raise ValueError(
                f"the network has {self.dim:,} parameters: exact Jacobian features need a "
                f"{self.dim:,} x {self.dim:,} Gram matrix ({8 * self.dim ** 2 / 2**30:.0f} GiB); use "
                "low_rank=m (Nystrom features of its kernel) instead")
        self.description = f"exact Jacobian features J ({self.dim:,} parameters): K = J J^T"

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(self.source.jacobian(Z), dtype=float)


class NystromFeatures(FeatureMap):
    """Nystrom features ``Phi(z) = k(z, L) V_r diag(w_r^{-1/2})`` of a kernel on landmarks L.

    ``k(L, L) = V diag(w) V^T``; eigenvalues below ``rcond * max(w)`` are dropped
    (pseudo-inverse), so ``Phi Phi^T = K_{nL} K_{LL}^+ K_{Ln}`` (Williams & Seeger 2001).

    Parameters
    ----------
    kernel : callable ``(Z1, Z2) -> K``
        The kernel (e.g. ``MLP().ntk``), on scaled inputs.
    landmarks : ndarray, shape (m, d)
        Landmark rows (scaled inputs).
    diagonal : callable ``Z -> diag K``, optional
        Exact kernel diagonal, for the trace error; by default computed from small
        diagonal blocks of ``kernel``.
    rule : str
        How the landmarks were chosen (for the summary).
    rcond : float
        Relative eigenvalue cut-off of ``k(L, L)``.

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> Z = np.random.default_rng(0).normal(size=(50, 3))
    >>> f = NystromFeatures(mn.MLP().ntk, Z[:10])
    >>> F = f(Z); F.shape[0]
    50
    >>> bool(np.allclose(F[:10] @ F[:10].T, mn.MLP().ntk(Z[:10])))
    True
    """

    kind = "nystrom"

    def __init__(self, kernel: Callable[[np.ndarray, np.ndarray], np.ndarray], landmarks: np.ndarray,
                 *, diagonal: Callable[[np.ndarray], np.ndarray] | None = None,
                 rule: str = "given", seed: int | None = None, rcond: float = RCOND_LANDMARKS,
                 description: str = "kernel"):
        L = np.asarray(landmarks, dtype=float)
        if L.ndim != 2 or L.shape[0] < 1:
            raise ValueError(f"landmarks must be a non-empty 2-D array, got shape {L.shape}")
        self.kernel = kernel
        self.landmarks = L
        self.rule = rule
        self.seed = seed
        self._diagonal = diagonal
        W = np.asarray(kernel(L, L), dtype=float)
        W = 0.5 * (W + W.T)
        w, V = scipy.linalg.eigh(W, check_finite=True)
        top = float(w.max()) if w.size else 0.0
        if not top > 0:
            raise ValueError("the kernel is zero on the landmarks: no features to build")
        keep = w > rcond * top
        self.landmark_eigenvalues = w[::-1]
        self.transform = np.ascontiguousarray(V[:, keep] / np.sqrt(w[keep]))
        self.dim = int(keep.sum())
        # Well-conditioned k(L, L): sums run over the raw block k(Z, L) and the whitening is
        # applied to the m x m sums (half the flops); rounding there is amplified by
        # cond(k(L, L)), hence the per-row whitening beyond RAW_COND.
        self.condition = float(top / w[keep].min())
        self.raw_transform = self.transform if self.condition <= RAW_COND else None
        self.n_landmarks = int(L.shape[0])
        self.exact = False
        self.description = (f"Nystrom features of the {description}: m = {self.n_landmarks} "
                            f"landmarks ({rule}" + (f", seed {seed}" if seed is not None else "")
                            + f"), rank {self.dim}")

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        C = np.asarray(self.kernel(Z, self.landmarks), dtype=float)
        return C @ self.transform

    def raw(self, Z: np.ndarray) -> np.ndarray:
        if self.raw_transform is None:
            return self(Z)
        return np.asarray(self.kernel(Z, self.landmarks), dtype=float)

    def kernel_diagonal(self, Z: np.ndarray) -> np.ndarray:
        if self._diagonal is not None:
            return np.asarray(self._diagonal(Z), dtype=float)
        return _blocked_diagonal(self.kernel, Z)


def _blocked_diagonal(kernel: Callable, Z: np.ndarray, block: int = 32) -> np.ndarray:
    out = np.empty(Z.shape[0])
    for i in range(0, Z.shape[0], block):
        out[i:i + block] = np.diag(np.asarray(kernel(Z[i:i + block], Z[i:i + block]), dtype=float))
    return out


def kernel_diagonal(kernel_source: Any, Z: np.ndarray) -> np.ndarray:
    """Exact diagonal ``k(z_i, z_i)`` of a kernel source on scaled inputs, in O(n d).

    For the analytic :class:`~mixednn.MLP` NTK the layer recursion (model.md
    section 5) is run on the diagonal alone (correlation 1); other kernels use
    small diagonal blocks.

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> from mixednn.kernels import resolve_kernel
    >>> Z = np.random.default_rng(1).normal(size=(5, 3))
    >>> src = resolve_kernel(mn.MLP(depth=2, bias_std=0.1), has_inputs=True)
    >>> bool(np.allclose(kernel_diagonal(src, Z), np.diag(mn.MLP(depth=2, bias_std=0.1).ntk(Z))))
    True
    """
    net = kernel_source.network
    Z = np.asarray(Z, dtype=float)
    if isinstance(net, MLP) and net.width is None and kernel_source.precomputed is None:
        return np.asarray(net.ntk_diagonal(Z), dtype=float)
    return _blocked_diagonal(kernel_source.cross, Z)


# ============================================================================ landmarks

def select_landmarks(Zpool: np.ndarray, m: int, rule: str, kernel: Callable, diagonal: np.ndarray,
                     seed: int = 0) -> np.ndarray:
    """Indices of m landmark rows of ``Zpool`` chosen by ``rule`` (see the module notes).

    Parameters
    ----------
    Zpool : ndarray, shape (P, d)
        Candidate rows (scaled inputs), in random (hash-key) order.
    m : int
        Number of landmarks (at most P).
    rule : {"kmeans++", "uniform", "leverage", "rpcholesky"}
    kernel : callable ``(Z1, Z2) -> K``
    diagonal : ndarray, shape (P,)
        ``k(z, z)`` on the pool.
    seed : int
        Seed of the sampling.

    Returns
    -------
    ndarray of int, shape (m,)

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> Z = np.random.default_rng(0).normal(size=(200, 2)); k = mn.MLP().ntk
    >>> idx = select_landmarks(Z, 10, "kmeans++", k, np.diag(k(Z)), seed=0)
    >>> len(set(idx.tolist()))
    10
    """
    P = Zpool.shape[0]
    if not 1 <= m <= P:
        raise ValueError(f"need 1 <= m <= pool size {P}, got m = {m}")
    if rule not in LANDMARK_RULES:
        raise ValueError(f"landmarks must be one of {LANDMARK_RULES}, got {rule!r}")
    if rule == "uniform" or m == P:
        return np.arange(m)
    rng = np.random.default_rng(seed)
    d = np.maximum(np.asarray(diagonal, dtype=float), 0.0)
    if rule == "kmeans++":
        return _kmeanspp_landmarks(Zpool, m, kernel, d, rng)
    if rule == "rpcholesky":
        return _rpcholesky_landmarks(Zpool, m, kernel, d, rng)
    return _leverage_landmarks(Zpool, m, kernel, rng)


def _kmeanspp_landmarks(Zpool: np.ndarray, m: int, kernel: Callable, d: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    """Kernel k-means++ seeding, drawn in batches (``d``: the clipped kernel diagonal)."""
    P = Zpool.shape[0]
    chosen = [0]  # the pool is in random order: its first row is a uniform draw
    D2 = np.maximum(d - 2 * kernel(Zpool, Zpool[:1])[:, 0] + d[0], 0.0)
    D2[0] = 0.0
    block = 1
    while len(chosen) < m:
        # draw `block` centres from the current D^2 at once (one kernel call per block)
        b = min(block, m - len(chosen))
        tot = D2.sum()
        if not tot > 0:  # every remaining candidate duplicates a centre
            rest = np.setdiff1d(np.arange(P), chosen)[: m - len(chosen)]
            chosen.extend(rest.tolist())
            break
        new = _weighted_sample(rng, D2, b)
        chosen.extend(new.tolist())
        Kc = kernel(Zpool, Zpool[new])
        D2 = np.minimum(D2, np.maximum(d[:, None] - 2 * Kc + d[new][None, :], 0.0).min(axis=1))
        D2[new] = 0.0
        block = min(64, max(1, len(chosen) // 16))
    return np.asarray(chosen[:m])


def _rpcholesky_landmarks(Zpool: np.ndarray, m: int, kernel: Callable, d: np.ndarray,
                          rng: np.random.Generator) -> np.ndarray:
    """Randomly pivoted (block) Cholesky: pivots drawn by the residual diagonal."""
    P = Zpool.shape[0]
    F = np.zeros((P, m))
    res = d.copy()
    chosen: list[int] = []
    while len(chosen) < m:
        b = min(max(1, len(chosen) // 8), 64, m - len(chosen))
        if not res.sum() > 0:
            rest = np.setdiff1d(np.arange(P), chosen)[: m - len(chosen)]
            chosen.extend(rest.tolist())
            break
        new = _weighted_sample(rng, res, b)
        i0 = len(chosen)
        G = kernel(Zpool, Zpool[new]) - F[:, :i0] @ F[new, :i0].T
        # Cholesky of the pivot block (a tiny ridge guards numerically dependent pivots)
        H = 0.5 * (G[new] + G[new].T)
        ev = np.linalg.eigvalsh(H)
        if ev.max() <= 0:
            res[new] = 0.0
            continue
        Lc = np.linalg.cholesky(H + np.eye(b) * max(ev.max(), 0) * 1e-12 * b)
        Fb = scipy.linalg.solve_triangular(Lc, G.T, lower=True).T
        F[:, i0:i0 + b] = Fb
        chosen.extend(new.tolist())
        res = np.maximum(res - np.einsum("ij,ij->i", Fb, Fb), 0.0)
        res[new] = 0.0
    return np.asarray(chosen[:m])


def _leverage_landmarks(Zpool: np.ndarray, m: int, kernel: Callable,
                        rng: np.random.Generator) -> np.ndarray:
    """Approximate ridge leverage scores from a uniform Nystrom on the pool."""
    P = Zpool.shape[0]
    m0 = min(P, max(m, 50))
    nf = NystromFeatures(kernel, Zpool[:m0], rule="uniform")
    Fp = nf(Zpool)
    s2, Wg = np.linalg.eigh(Fp.T @ Fp)
    s2 = np.maximum(s2, 0.0)
    target = min(float(m), 0.999 * float((s2 > 0).sum()))

    def deff(log_lam: float) -> float:
        return float(np.sum(s2 / (s2 + math.exp(log_lam)))) - target

    lo, hi = math.log(max(s2.max(), 1e-300)) - 60, math.log(max(s2.max(), 1e-300)) + 5
    from scipy.optimize import brentq

    lam = math.exp(brentq(deff, lo, hi)) if deff(lo) > 0 > deff(hi) else float(np.median(s2))
    G = Fp @ Wg
    scores = np.einsum("ij,ij,j->i", G, G, 1.0 / (s2 + lam))
    return _weighted_sample(rng, np.maximum(scores, 0.0) + 1e-300, m)

def _weighted_sample(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
    """k distinct indices, sampled without replacement proportionally to ``weights``
    (Efraimidis-Spirakis exponential keys)."""
    w = np.asarray(weights, dtype=float)
    pos = np.flatnonzero(w > 0)
    if pos.shape[0] <= k:
        extra = np.setdiff1d(np.arange(w.shape[0]), pos)[: k - pos.shape[0]]
        return np.concatenate([pos, extra]).astype(int)
    keys = np.log(rng.random(pos.shape[0])) / w[pos]
    return pos[np.argpartition(-keys, k - 1)[:k]].astype(int)


# ============================================================================ building

def _landmark_kernel(model: Any) -> tuple[Callable, Callable[[np.ndarray], np.ndarray], str]:
    src = model.kernel_source
    if src.precomputed is not None:
        raise ValueError("low_rank= needs a kernel that can be evaluated at new inputs "
                         "(network= or a kernel function); a precomputed n x n matrix already "
                         "holds the dense kernel")
    desc = "analytic NTK" if isinstance(src.network, MLP) and src.network.width is None \
        else "kernel"
    return src.cross, functools.partial(kernel_diagonal, src), desc  # picklable, unlike a lambda


def scan_pool(source: Any, size: int, seed: int) -> np.ndarray:
    """Raw network-input rows with the ``size`` smallest seeded hash keys (one pass)."""
    def part(c: RowChunk) -> tuple[np.ndarray, np.ndarray]:
        return smallest_keys(row_keys(c.Z, seed), np.asarray(c.Z, dtype=float), size)

    def comb(a, b):
        return smallest_keys(np.concatenate([a[0], b[0]]), np.vstack([a[1], b[1]]), size)

    return source.map_chunks(part, combine=comb, desc="landmark pool")[1]


def build_nystrom(model: Any, source: Any, m: int, rule: str, seed: int,
                  pool: np.ndarray | None = None) -> NystromFeatures:
    """Choose m landmarks by ``rule`` and build the Nystrom feature map of the model's kernel."""
    n = source.nobs
    kernel, diag_fn, desc = _landmark_kernel(model)
    size = pool_size(m, rule, n)
    if pool is None or pool.shape[0] < size:
        pool = scan_pool(source, size, seed)
    pool = pool[:size]
    Zp = model.input_scaling.apply(pool)
    m_eff = min(m, Zp.shape[0])
    idx = select_landmarks(Zp, m_eff, rule, kernel, diag_fn(Zp) if rule != "uniform" else
                           np.ones(Zp.shape[0]), seed=seed)
    return NystromFeatures(kernel, Zp[np.sort(idx)], diagonal=diag_fn, rule=rule, seed=seed,
                           description=desc)
