"""Feature-space fits: ``K = Phi Phi^T`` with Phi n x m (model.md section 2, low-rank kernels).

When the kernel has a feature form, every quantity of the fit comes from sums
over rows of the n x (m + q) matrix ``B = [Phi, Y]``, ``Y = [y - f0, X]``:

    Phi^T Phi (m x m),   Phi^T Y (m x q),   Y^T Y (q x q),

accumulated chunk by chunk, so memory is O((m + q)^2) whatever n is.  With the
eigendecomposition ``Phi^T Phi = W diag(s^2) W^T`` the nonzero eigenvalues of K
are ``s^2``, its leading eigenvectors are ``U = Phi W diag(1/s)`` (never formed),
the rotated data are ``U^T Y = diag(1/s) W^T Phi^T Y`` and the part of ``Y^T Y``
outside ``span(U)``, on which every weight ``exp(-t lam)`` is 1, is
``Y^T Y - (U^T Y)^T (U^T Y)``: exactly what :class:`~mixednn.spectral.SpectralProfile`
takes as ``rest_gram``.  The BLUP and the predictions are ``Phi a`` for an
m-vector ``a`` (:meth:`FeatureBasis.coef`), evaluated row by row.

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
inputs (the rows with the smallest keys: a uniform sample without replacement
that does not depend on how the data are split into chunks or partitions, so an
in-memory fit, a CSV stream and a dask fit choose the same landmarks).

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
accumulated in the same pass and reported in the summary.

Accuracy (``benchmarks/bench_scale.py``; n = 4,000, 10 Gaussian inputs, depth-2 ReLU
NTK, data seeds 0-3, default rule): REML t within 1.7% of the exact fit at m = 500
and 1.4% at m = 1,000 (8% at m = 250).  Out of sample, the Nystrom cross-kernel
``K_m(z*, Z)`` (``predict(..., cross="features")``) raises the test MSE by 2.5-3.1% at
m = 500 and 1.3-1.7% at m = 1,000; the exact cross-kernel with the Nystrom eigenpairs
(``cross="exact"``, the default when cheap) by at most 1.2% and 0.2%.  On such
unclustered inputs the landmark rules perform alike; k-means++ gains on clustered inputs.
"""

from __future__ import annotations

import hashlib
import math
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import scipy.linalg
from scipy import stats

from .spectral import EigenBasis, SpectralProfile

__all__ = ["FeatureMap", "NystromFeatures", "JacobianFeatures", "FunctionFeatures",
           "LANDMARK_RULES", "select_landmarks", "pool_size", "row_keys", "kernel_diagonal",
           "RowChunk", "ArraySource", "TreeReducer", "FeatureStats", "FeatureBasis", "accumulate_stats",
           "build_feature_basis", "predict_feature_space", "PROGRESS"]

LANDMARK_RULES = ("kmeans++", "uniform", "leverage", "rpcholesky")
DEFAULT_LANDMARKS = "kmeans++"

#: Progress bars on long passes: ``None`` (auto: passes over at least 200,000 rows or
#: 8 partitions), ``True`` or ``False``.
PROGRESS: bool | None = None

#: Relative cut-off below which eigenvalues of ``k(L, L)`` and of ``Phi^T Phi`` are
#: treated as zero (they cannot be resolved from sums of squares in float64).
RCOND_LANDMARKS = 1e-10
RCOND_GRAM = 1e-12
#: Largest condition number of ``k(L, L)`` for which sums run over the raw block ``k(Z, L)``.
RAW_COND = 1e6

_TARGET_CHUNK_BYTES = 64 * 2**20


def _chunk_rows(width: int) -> int:
    """Rows per chunk so that a chunk's n x width float64 block is about 64 MiB."""
    return int(max(256, min(65536, _TARGET_CHUNK_BYTES // (8 * max(width, 1)))))


def _show_progress(n_rows: int = 0, n_parts: int = 0) -> bool:
    if PROGRESS is not None:
        return bool(PROGRESS)
    return n_rows >= 200_000 or n_parts >= 8


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
        self.fn = fn
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
        from .kernels.empirical import _as_tensor, _jacobian_matrix

        src = self.source
        Zt = _as_tensor(Z, src.dtype)
        return np.asarray(_jacobian_matrix(src.engine_for(Zt.shape[1]), Zt, src.max_memory),
                          dtype=float)


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
    from .kernels.analytic import MLP

    net = getattr(kernel_source, "network", None)
    Z = np.asarray(Z, dtype=float)
    if isinstance(net, MLP) and net.width is None and getattr(kernel_source, "precomputed", None) is None:
        return _mlp_ntk_diagonal(net, Z)
    return _blocked_diagonal(kernel_source.cross, Z)


def _mlp_ntk_diagonal(net: Any, Z: np.ndarray) -> np.ndarray:
    from .kernels import analytic as an

    spec = an._SPECS[net.activation]
    sw2, sb2 = net.weight_std ** 2, net.bias_std ** 2
    qs = net._diagonals(Z)
    K = qs[0].copy()
    T = K.copy()
    for h in range(net.depth):
        q = qs[h]
        if spec.closed is not None:
            st = net._step()
        else:
            st = an._make_step_quadrature(net._nodes_for(float(spec.kappa ** 2 * q.max())))
        K, T = st(spec, K, T, q, q, sw2, sb2, unit_diag=True)
    return np.asarray(T, dtype=float)


# ============================================================================ landmarks

def pool_size(m: int, rule: str, n: int) -> int:
    """Number of candidate rows from which ``rule`` picks m landmarks (at most n)."""
    if rule not in LANDMARK_RULES:
        raise ValueError(f"landmarks must be one of {LANDMARK_RULES}, got {rule!r}")
    return int(min(n, m if rule == "uniform" else max(20 * m, 2000)))


def row_keys(Z: np.ndarray, seed: int) -> np.ndarray:
    """Seeded 64-bit hash of each row's values: random keys that do not depend on chunking."""
    frame = pd.DataFrame(np.ascontiguousarray(Z, dtype=float) + 0.0)  # + 0.0: -0.0 -> 0.0
    h = pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64)
    salt = np.uint64(int(hashlib.sha256(f"mixednn-landmarks-{int(seed)}".encode()).hexdigest()[:16], 16))
    with np.errstate(over="ignore"):  # splitmix64 finaliser of (hash + salt): wraps mod 2^64
        x = h + salt
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _smallest(keys: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k rows with the smallest keys, sorted by (key, row values) for determinism."""
    if keys.shape[0] > k:
        idx = np.argpartition(keys, k - 1)[:k]
        keys, rows = keys[idx], rows[idx]
    order = np.lexsort(tuple(rows.T[::-1]) + (keys,)) if rows.shape[0] else np.arange(0)
    return keys[order], rows[order]


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
    if rule == "rpcholesky":
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
    # leverage: approximate ridge leverage scores from a uniform Nystrom on the pool
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


# ============================================================================ row sources

@dataclass
class RowChunk:
    """A block of complete rows: response, fixed-effects design, raw network inputs, offset."""

    y: np.ndarray
    X: np.ndarray
    Z: np.ndarray | None
    offset: np.ndarray
    labels: Any = None
    n_dropped: int = 0  # incomplete rows of the partition left out

    @property
    def nrows(self) -> int:
        return int(self.y.shape[0])


class ArraySource:
    """In-memory rows served in chunks (the in-memory path of the streaming protocol).

    A row source has ``nobs`` and ``map_chunks(fn, combine=None, desc="")``: apply
    ``fn`` to every :class:`RowChunk` and either tree-reduce the results with
    ``combine`` or return them as a list in row order.
    """

    def __init__(self, y: np.ndarray, X: np.ndarray, Z: np.ndarray | None, offset: np.ndarray,
                 chunk_rows: int | None = None):
        self.y, self.X, self.Z, self.offset = y, X, Z, offset
        self.nobs = int(y.shape[0])
        self.chunk_rows = chunk_rows

    def chunks(self, rows: int) -> Iterable[RowChunk]:
        for i in range(0, self.nobs, rows):
            sl = slice(i, min(i + rows, self.nobs))
            yield RowChunk(self.y[sl], self.X[sl], None if self.Z is None else self.Z[sl],
                           self.offset[sl])

    def map_chunks(self, fn: Callable[[RowChunk], Any], combine: Callable[[Any, Any], Any] | None = None,
                   desc: str = "", width: int = 64) -> Any:
        rows = self.chunk_rows or _chunk_rows(width)
        it: Iterable[RowChunk] = self.chunks(rows)
        nchunks = -(-self.nobs // rows)
        if _show_progress(self.nobs) and nchunks > 1:
            from tqdm.auto import tqdm

            it = tqdm(it, total=nchunks, desc=desc or "rows", unit="chunk", file=sys.stderr)
        if combine is None:
            return [fn(c) for c in it]
        red = TreeReducer(combine)
        for c in it:
            red.push(fn(c))
        return red.result()


class TreeReducer:
    """Streaming pairwise (tree) reduction: O(log k) partial results held at once.

    Sums of k chunk statistics are combined in a balanced binary tree (rounding
    error O(log k) rather than O(k)), without keeping all k of them.
    """

    def __init__(self, combine: Callable[[Any, Any], Any]):
        self.combine = combine
        self.stack: list[tuple[int, Any]] = []

    def push(self, item: Any) -> None:
        level = 0
        while self.stack and self.stack[-1][0] == level:
            _, prev = self.stack.pop()
            item = self.combine(prev, item)
            level += 1
        self.stack.append((level, item))

    def result(self) -> Any:
        if not self.stack:
            raise ValueError("no rows to reduce")
        out = self.stack.pop()[1]
        while self.stack:
            out = self.combine(self.stack.pop()[1], out)
        return out


# ============================================================================ statistics

@dataclass
class FeatureStats:
    """Sufficient statistics of a feature-space fit, summed over rows.

    ``gram`` is the upper triangle of ``B^T B`` with ``B = [Phi, y - f0, X]``
    (k + 1 + p columns); ``diag_sum`` is ``sum_i k(z_i, z_i)`` of the approximated
    kernel (NaN for exact features).
    """

    nobs: int
    gram: np.ndarray
    diag_sum: float

    def __add__(self, other: "FeatureStats") -> "FeatureStats":
        return FeatureStats(self.nobs + other.nobs, self.gram + other.gram,
                            self.diag_sum + other.diag_sum)


def _syrk_into(B: np.ndarray, C: np.ndarray | None) -> np.ndarray:
    """Upper triangle of ``B^T B`` (+ C), BLAS syrk on a Fortran view (half a gemm)."""
    syrk = scipy.linalg.blas.dsyrk
    A = np.asfortranarray(B.T)  # (k, b) Fortran = B C-contiguous, no copy
    if C is None:
        return syrk(1.0, A, trans=0, lower=0)
    return syrk(1.0, A, beta=1.0, c=C, trans=0, lower=0, overwrite_c=1)


def _chunk_stats(chunk: RowChunk, fmap: FeatureMap, scaling: Any,
                 offset_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> FeatureStats:
    Zs = scaling.apply(chunk.Z)
    F = fmap.raw(Zs)
    off = chunk.offset if offset_fn is None else chunk.offset + offset_fn(Zs)
    B = np.empty((F.shape[0], F.shape[1] + 1 + chunk.X.shape[1]))
    k = F.shape[1]
    B[:, :k] = F
    B[:, k] = chunk.y - off
    B[:, k + 1:] = chunk.X
    diag = fmap.kernel_diagonal(Zs)
    return FeatureStats(chunk.nrows, _syrk_into(B, None),
                        float(np.sum(diag)) if diag is not None else float("nan"))


def accumulate_stats(source: Any, fmap: FeatureMap, scaling: Any,
                     offset_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> FeatureStats:
    """One pass over ``source``: the sufficient statistics of ``[Phi, y - f0, X]``."""
    q = 1 + (source.X.shape[1] if hasattr(source, "X") else 0)
    return source.map_chunks(lambda c: _chunk_stats(c, fmap, scaling, offset_fn),
                             combine=FeatureStats.__add__, desc="feature statistics",
                             width=fmap.raw_dim + q + getattr(fmap, "n_landmarks", 0))


# ============================================================================ basis

class FeatureBasis(EigenBasis):
    """Leading eigen-structure of ``K = Phi Phi^T`` held in feature space.

    Holds only O(k^2 + k p) numbers: the eigenpairs ``Phi^T Phi = W diag(s^2) W^T``
    (``s^2`` are the nonzero eigenvalues of K, ascending) and the rotated data.
    ``U = Phi W diag(1/s)`` (n x k) is never stored: :meth:`unrotate` and
    :meth:`rotate` evaluate it by a pass over the training rows.

    Parameters
    ----------
    stats : FeatureStats
        Summed ``[R, y - f0, X]`` cross-products with ``R = feature_map.raw(Z)``
        (``Phi = R T``, ``T = feature_map.raw_transform``).
    feature_map : FeatureMap
    source : row source
        The training rows (for in-sample values); see :class:`ArraySource`.
    scaling : InputScaling
        Scaling of the network inputs.
    offset_fn : callable, optional
        Offset from the network at initialisation, added per chunk (streamed data).
    rcond : float
        Eigenvalues of ``Phi^T Phi`` below ``rcond * max`` are treated as zero.
    """

    feature_space = True

    def __init__(self, stats: FeatureStats, feature_map: FeatureMap, source: Any, scaling: Any,
                 offset_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                 rcond: float = RCOND_GRAM):
        kr = feature_map.raw_dim
        A = np.triu(stats.gram)
        A = A + np.triu(A, 1).T
        G, C, D = A[:kr, :kr], A[:kr, kr:], A[kr:, kr:]
        T = feature_map.raw_transform
        if T is not None:  # whiten the sums: Phi^T Phi = T^T R^T R T, Phi^T Y = T^T R^T Y
            G = T.T @ G @ T
            G = 0.5 * (G + G.T)
            C = T.T @ C
        k = G.shape[0]
        s2, Wg = scipy.linalg.eigh(G, check_finite=True)
        top = float(s2.max()) if s2.size else 0.0
        keep = s2 > rcond * top if top > 0 else np.zeros(s2.shape, bool)
        self.s = np.sqrt(s2[keep])
        self.W = np.ascontiguousarray(Wg[:, keep])
        # the same eigenvectors in raw coordinates: Phi W = R (T W)
        self.W_raw = self.W if T is None else np.ascontiguousarray(T @ self.W)
        self.eigenvalues = s2[keep]
        self.trace = float(np.trace(G))  # tr(K) of the (approximated) kernel, ||Phi||_F^2
        self._n = int(stats.nobs)
        self.feature_map = feature_map
        self.source = source
        self.scaling = scaling
        self.offset_fn = offset_fn
        self.kind = getattr(feature_map, "kind", "features")
        self.n_features = k
        Yr = (self.W.T @ C) / self.s[:, None]  # U^T [y - f0, X]
        self.rotated_data = Yr
        rest = D - Yr.T @ Yr
        self.rest = 0.5 * (rest + rest.T)
        self.ytY = D
        self.kernel_trace = float(stats.diag_sum) if np.isfinite(stats.diag_sum) else None

    # -- sizes ------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self._n

    @property
    def rank(self) -> int:
        return int(self.eigenvalues.shape[0])

    @property
    def trace_error(self) -> float | None:
        """``tr(K - K_m)``: the Nystrom approximation's trace error (None for exact features)."""
        return None if self.kernel_trace is None else self.kernel_trace - self.trace

    def summary_line(self) -> str:
        fm = self.feature_map
        line = f"Low rank: {fm.description}; {self.rank} nonzero eigenvalues of n = {self.n:,}"
        if self.trace_error is not None:
            rel = self.trace_error / self.kernel_trace if self.kernel_trace else float("nan")
            line += (f"; Nystrom trace error tr(K - K_m) = {self.trace_error:.4g} "
                     f"({100 * rel:.2f}% of tr K = {self.kernel_trace:.4g})")
        else:
            line += " (exact: no approximation)"
        return line

    def spectral_profile(self) -> SpectralProfile:
        """The REML/ML profile from the statistics: leading k coordinates + the rest Gram."""
        Yr = self.rotated_data
        q = Yr.shape[1]
        order = [*range(1, q), 0]  # the profile orders columns [X, y]
        return SpectralProfile(self.eigenvalues, Yr[:, 0], Yr[:, 1:], self.trace, self.n,
                               rest_gram=self.rest[np.ix_(order, order)])

    # -- feature-space maps -------------------------------------------------------------
    def features(self, Z_scaled: np.ndarray) -> np.ndarray:
        """Features of new rows (scaled inputs), through the training feature map."""
        return self.feature_map(np.asarray(Z_scaled, dtype=float))

    def coef(self, C: np.ndarray, raw: bool = False) -> np.ndarray:
        """``W diag(1/s) C``: the feature-space vector ``a`` with ``Phi a = U C``
        (``raw=True``: the same in raw coordinates, ``R a = U C``)."""
        C = np.asarray(C, dtype=float)
        return (self.W_raw if raw else self.W) @ (C / (self.s if C.ndim == 1 else self.s[:, None]))

    def rotate_features(self, F: np.ndarray, raw: bool = False) -> np.ndarray:
        """``U^T k*`` for rows with features F (k* = Phi f*): ``diag(s) W^T F^T``, k x rows
        (``raw=True``: F are raw features)."""
        W = self.W_raw if raw else self.W
        return self.s[:, None] * (W.T @ np.asarray(F, dtype=float).T)

    # -- EigenBasis interface (passes over the training rows) ------------------------------
    def _map_features(self, fn: Callable[[np.ndarray, RowChunk], Any], desc: str) -> list:
        """``fn(raw features, chunk)`` on every chunk of training rows, in row order."""
        fmap, scaling = self.feature_map, self.scaling
        return self.source.map_chunks(lambda c: fn(fmap.raw(scaling.apply(c.Z)), c), desc=desc,
                                      width=fmap.raw_dim + getattr(fmap, "n_landmarks", 0))

    def unrotate(self, C: np.ndarray) -> np.ndarray:
        """``U C = Phi (W diag(1/s) C)``, one pass over the training rows."""
        a = self.coef(C, raw=True)
        parts = self._map_features(lambda F, c: F @ a, "in-sample values")
        return np.concatenate(parts, axis=0)

    def rotate(self, M: np.ndarray) -> np.ndarray:
        """``U^T M`` for an in-memory n x r array M (a pass over the training rows)."""
        if not isinstance(self.source, ArraySource):
            raise NotImplementedError("rotate() of an n x r array needs in-memory training rows; "
                                      "this model streams its rows (use coef()/features())")
        M = np.asarray(M, dtype=float)
        vec = M.ndim == 1
        M2 = M.reshape(self.n, -1)
        starts = [0]

        def part(F: np.ndarray, c: RowChunk) -> np.ndarray:
            i = starts[0]
            starts[0] += F.shape[0]
            return F.T @ M2[i:i + F.shape[0]]

        acc = sum(self._map_features(part, "rotate"))
        out = (self.W_raw.T @ acc) / self.s[:, None]
        return out.ravel() if vec else out

    @property
    def eigenvectors(self) -> np.ndarray:
        """Dense ``U`` (n x k), built only on demand (O(n k) memory)."""
        from .model import KernelMemoryError, _available_memory

        need, avail = 8 * self.n * self.rank, _available_memory()
        if avail is not None and need > avail:
            raise KernelMemoryError(
                f"the dense n x k eigenvector matrix of this feature-space fit needs "
                f"{need / 2**30:.1f} GiB but only {avail / 2**30:.1f} GiB is available; use "
                "coef() / features() (feature-space formulas) instead")
        return self.unrotate(np.eye(self.rank))


# ============================================================================ building

def _landmark_kernel(model: Any) -> tuple[Callable, Callable[[np.ndarray], np.ndarray], str]:
    src = model.kernel_source
    if src.precomputed is not None:
        raise ValueError("low_rank= needs a kernel that can be evaluated at new inputs "
                         "(network= or a kernel function); a precomputed n x n matrix already "
                         "holds the dense kernel")
    desc = "analytic NTK" if src.network is not None and getattr(src.network, "width", 1) is None \
        else "kernel"
    return src.cross, (lambda Z: kernel_diagonal(src, Z)), desc


def scan_pool(source: Any, size: int, seed: int) -> np.ndarray:
    """Raw network-input rows with the ``size`` smallest seeded hash keys (one pass)."""
    def part(c: RowChunk) -> tuple[np.ndarray, np.ndarray]:
        return _smallest(row_keys(c.Z, seed), np.asarray(c.Z, dtype=float), size)

    def comb(a, b):
        return _smallest(np.concatenate([a[0], b[0]]), np.vstack([a[1], b[1]]), size)

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


def build_feature_basis(model: Any) -> FeatureBasis:
    """The feature-space basis of a model with ``low_rank=`` set (one or two passes)."""
    spec = model.low_rank
    d = model.data
    streamed = getattr(d, "streamed", False)
    if streamed:
        source = d.source
        offset_fn = d.offset_fn
    else:
        source = ArraySource(d.endog, d.exog, d.ntk_inputs, d.offset)
        offset_fn = None
    if not streamed and d.ntk_inputs is None:
        raise ValueError("low_rank= needs network inputs (ntk= or ntk_inputs=)")
    if isinstance(spec, FeatureMap):
        fmap = spec
    elif isinstance(spec, str) and spec == "exact":
        if not getattr(model.kernel_source, "finite", False):
            raise ValueError("low_rank='exact' needs a finite network (MLP(width=...) or a torch "
                             "module): its Jacobian gives K = J J^T exactly; for an analytic "
                             "kernel pass low_rank=m (Nystrom features)")
        fmap = JacobianFeatures(model.kernel_source, len(d.ntk_names))
    else:
        fmap = build_nystrom(model, source, int(spec), model.landmarks, model.seed,
                             getattr(d, "pool", None))
    stats_ = accumulate_stats(source, fmap, model.input_scaling, offset_fn)
    basis = FeatureBasis(stats_, fmap, source, model.input_scaling, offset_fn)
    if basis.rank == 0:
        raise ValueError("the features are zero on the training rows: no network effect to fit")
    return basis


def check_low_rank(low_rank: Any, landmarks: str, seed: Any) -> None:
    """Validate the ``low_rank=`` / ``landmarks=`` / ``seed=`` options of the model."""
    if low_rank is not None and not isinstance(low_rank, FeatureMap) and low_rank != "exact":
        if isinstance(low_rank, (bool, np.bool_)) or not isinstance(low_rank, (int, np.integer)) \
                or low_rank < 1:
            raise ValueError(f"low_rank must be a positive integer (number of Nystrom landmarks), "
                             f"'exact' (Jacobian features of a finite network) or a FeatureMap; "
                             f"got {low_rank!r}")
    if landmarks not in LANDMARK_RULES:
        raise ValueError(f"landmarks must be one of {LANDMARK_RULES}, got {landmarks!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"seed must be an integer, got {seed!r}")


# ============================================================================ prediction

class _Variance:
    """Posterior variance of predictions from ``U^T k*`` (picklable: runs on dask workers)."""

    def __init__(self, scale: float, g: np.ndarray, XphiXr: np.ndarray, covb: np.ndarray | None,
                 noise: bool, s: np.ndarray, W: np.ndarray):
        self.scale, self.g, self.XphiXr, self.covb, self.noise = scale, g, XphiXr, covb, noise
        self.s, self.W = s, W

    def __call__(self, kt: np.ndarray, Xn: np.ndarray) -> np.ndarray:  # kt = U^T k*, k x rows
        var = self.scale * (self.g @ kt ** 2)
        if self.covb is not None:
            L = Xn - kt.T @ self.XphiXr
            var = var + np.einsum("ij,jk,ik->i", L, self.covb, L)
        if self.noise:
            var = var + self.scale
        return var

    def of_features(self, F: np.ndarray, chunk: RowChunk) -> np.ndarray:
        return self(self.s[:, None] * (self.W.T @ F.T), chunk.X)


#: ``cross="auto"`` is exact up to this many kernel evaluations, n x (new rows + m).
CROSS_AUTO_LIMIT = 2e8


def exact_cross_products(basis: "FeatureBasis", Znew: np.ndarray) -> np.ndarray:
    """``R^T k(Z, z*)`` (raw features R) for new (scaled) rows: one pass over the training rows.

    The exact cross-kernel ``k(z*, Z)`` is never held: each chunk of training rows
    contributes ``Phi_c^T k(Z_c, z*)``.
    """
    fmap, scaling = basis.feature_map, basis.scaling
    kernel = getattr(fmap, "kernel", None)
    if kernel is None:
        raise ValueError("cross='exact' needs the kernel that the features approximate "
                         "(Nystrom features); exact features already give the exact cross-kernel")
    Znew = np.asarray(Znew, dtype=float)
    block = int(max(64, 2**22 // max(Znew.shape[0], 1)))

    def part(c: RowChunk) -> np.ndarray:
        Zs = scaling.apply(c.Z)
        out = np.zeros((fmap.raw_dim, Znew.shape[0]))
        for i in range(0, Zs.shape[0], block):
            Zb = Zs[i:i + block]
            out += fmap.raw(Zb).T @ np.asarray(kernel(Zb, Znew), dtype=float)
        return out

    return basis.source.map_chunks(part, combine=np.add, desc="exact cross-kernel",
                                   width=fmap.raw_dim + getattr(fmap, "n_landmarks", 0)
                                   + Znew.shape[0])


def predict_feature_space(res: Any, newdata: Any = None, *, exog: Any = None, ntk_inputs: Any = None,
                          kernel: Any = None, offset: Any = None, interval: str | None = None,
                          alpha: float = 0.05, cross: str = "auto") -> pd.Series | pd.DataFrame:
    """:meth:`MixedLMNTKResults.predict` for a feature-space fit (no n x n object).

    With ``U = Phi W diag(1/s)`` the leading eigenvectors and ``r~ = U^T r``, model.md
    (3) reads ``f(z*) = f0 + x*^T beta + h*^T W diag(phi_t(s^2) / s) r~`` with
    ``h* = Phi^T k(Z, z*)``, and the posterior variance of the network part is
    ``s2 sum_i (1 - exp(-t s_i^2)) / s_i^4 (U^T k*)_i^2``, ``U^T k* = diag(1/s) W^T h*``;
    the fixed-effects term uses ``L = x* - X~^T diag(phi_t) U^T k*``.

    ``h*`` comes in one of two ways (``cross=``):

    * ``"features"`` -- through the feature map, ``k* = Phi f(z*)`` so ``h* = Phi^T Phi f*``
      and the mean is ``f*^T a`` with the BLUP's coefficients
      ``a = W diag((1 - exp(-t s^2)) / s) r~`` (``u = Phi a`` on the training rows).
      O(m) per new row; exact for exact features, the Nystrom cross-kernel
      ``K_m(z*, Z)`` otherwise.
    * ``"exact"`` -- the exact kernel ``k(z*, Z)`` against every training row, summed
      chunk by chunk (:func:`exact_cross_products`): the Nystrom eigenpairs with the
      true cross-kernel.  O(n) kernel evaluations per new row, memory O(m) per row;
      markedly more accurate out of sample (see ``benchmarks/bench_scale.py``).
    * ``"auto"`` -- ``"exact"`` for Nystrom features when the pass costs at most
      :data:`CROSS_AUTO_LIMIT` kernel evaluations, ``n x (new rows + m)`` (a few seconds),
      else ``"features"``.  The route taken is in ``result.attrs["cross"]``.

    In-sample values and intervals (no new rows) use the training features, chunk by
    chunk, and agree with ``fittedvalues``.
    """
    from .results import _phi

    if interval not in (None, "confidence", "prediction"):
        raise ValueError(f"interval must be None, 'confidence' or 'prediction', got {interval!r}")
    if cross not in ("auto", "exact", "features"):
        raise ValueError(f"cross must be 'auto', 'exact' or 'features', got {cross!r}")
    if kernel is not None:
        raise ValueError("kernel= (a cross-kernel) is not used by a feature-space fit: pass "
                         "newdata= or ntk_inputs= and the new rows get their features through "
                         "the training feature map (or cross='exact')")
    m = res.model
    basis: FeatureBasis = m.basis
    prof = m.profile
    lam = prof.lam
    beta = res.params.to_numpy()
    w = res.weights
    phi = _phi(res.t, lam)
    a = basis.coef((1.0 - w) * res._resid_rot)  # the BLUP's coefficients: u = Phi a
    g = np.zeros_like(lam)
    nz = lam > 0
    g[nz] = -np.expm1(-res.t * lam[nz]) / lam[nz] ** 2
    covb = res.cov_params_fe.to_numpy() if beta.size else None
    z = stats.norm.ppf(1 - alpha / 2)
    variance = _Variance(res.scale, g, phi[:, None] * prof.X_rot, covb, interval == "prediction",
                         basis.s, basis.W_raw)

    in_sample = newdata is None and exog is None and ntk_inputs is None
    if in_sample:
        index = m.data.row_labels
        mean = res.fittedvalues.to_numpy()
        if interval is None:
            return pd.Series(mean, index=index, name="predicted")
        var = np.concatenate(basis._map_features(variance.of_features, "intervals"))
        route = "features"
    else:
        Xn, Zn, off, index = res._new_design(newdata, exog, ntk_inputs, None, offset)
        route = cross
        if cross == "auto":
            fm = basis.feature_map
            cost = basis.n * (Zn.shape[0] + getattr(fm, "n_landmarks", fm.dim))
            route = "exact" if (not fm.exact and getattr(fm, "kernel", None) is not None
                                and cost <= CROSS_AUTO_LIMIT) else "features"
        if route == "exact" and not basis.feature_map.exact:
            H = exact_cross_products(basis, Zn)  # R^T k(Z, z*), raw features x rows
            kt = (basis.W_raw.T @ H) / basis.s[:, None]
            fnet = kt.T @ (phi * res._resid_rot)
        else:
            Fx = basis.features(Zn)
            kt = basis.rotate_features(Fx)
            fnet = Fx @ a
        mean = off + (Xn @ beta if beta.size else 0.0) + fnet
        if interval is None:
            out = pd.Series(mean, index=index, name="predicted")
            out.attrs["cross"] = route
            return out
        var = variance(kt, Xn)
    se = np.sqrt(np.maximum(var, 0.0))
    out = pd.DataFrame({"mean": mean, "lower": mean - z * se, "upper": mean + z * se, "se": se},
                       index=index)
    out.attrs["cross"] = route
    return out
