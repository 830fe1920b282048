"""Feature-space fits: ``K = Phi Phi^T`` with Phi n x m (``docs/model.md`` sections 2.6 and 7).

This module owns what a feature-space fit does with a feature map
(:mod:`mixednn.features`): the sufficient statistics (:class:`FeatureStats`,
:func:`chunk_stats`, :func:`accumulate_stats`), the basis they give
(:class:`FeatureBasis`), its cross-rotations for new rows, and the model's entry
points :func:`build_feature_basis` and :func:`check_low_rank`.

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

With precision weights ``w`` (``Var(e_i) = s2 / w_i``) every row of ``B`` is
multiplied by ``sqrt(w_i)``: the features become ``W^{1/2} Phi``, exactly the features
of the whitened kernel ``W^{1/2} K W^{1/2}`` (``docs/model.md`` section 2.7), and the
basis, its rotations and in-sample maps are those of the whitened problem.  New rows
keep their own features (the training side alone carries ``W^{1/2}``).

The feature maps (Nystrom, Jacobian, user function), the landmark rules and the
accuracy of the Nystrom approximation are described in :mod:`mixednn.features`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.linalg

from .exceptions import KernelMemoryError
from .features import FeatureMap, JacobianFeatures, build_nystrom
from .numerics import available_memory
from .profile import SpectralProfile
from .rows import LANDMARK_RULES, ArraySource, RowChunk
from .spectral import CrossRotation, EigenBasis

__all__ = ["FeatureStats", "FeatureBasis", "accumulate_stats", "build_feature_basis",
           "check_low_rank", "chunk_stats", "exact_cross_products", "FeatureCrossRotation",
           "MatrixCrossRotation", "CROSS_AUTO_LIMIT", "RCOND_GRAM"]

#: Relative cut-off below which eigenvalues of ``Phi^T Phi`` are treated as zero (they
#: cannot be resolved from sums of squares in float64).
RCOND_GRAM = 1e-12


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


def _whitened(chunk: RowChunk, M: np.ndarray) -> np.ndarray:
    """``W^{1/2} M`` for the rows of a chunk (M itself without weights)."""
    return M if chunk.weights is None else np.sqrt(chunk.weights).reshape(-1, 1) * M


def chunk_stats(chunk: RowChunk, fmap: FeatureMap, scaling: Any,
                offset_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> FeatureStats:
    """The sufficient statistics of one chunk of rows (see :class:`FeatureStats`); with
    precision weights, of the whitened rows ``W^{1/2} B``."""
    Zs = scaling.apply(chunk.Z)
    F = fmap.raw(Zs)
    off = chunk.offset if offset_fn is None else chunk.offset + offset_fn(Zs)
    B = np.empty((F.shape[0], F.shape[1] + 1 + chunk.X.shape[1]))
    k = F.shape[1]
    B[:, :k] = F
    B[:, k] = chunk.y - off
    B[:, k + 1:] = chunk.X
    B = _whitened(chunk, B)
    diag = fmap.kernel_diagonal(Zs)
    if diag is not None and chunk.weights is not None:
        diag = chunk.weights * diag  # the diagonal of W^{1/2} K W^{1/2}
    return FeatureStats(chunk.nrows, _syrk_into(B, None),
                        float(np.sum(diag)) if diag is not None else float("nan"))


def accumulate_stats(source: Any, fmap: FeatureMap, scaling: Any,
                     offset_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> FeatureStats:
    """One pass over ``source``: the sufficient statistics of ``[Phi, y - f0, X]``."""
    q = 1 + (source.X.shape[1] if hasattr(source, "X") else 0)
    return source.map_chunks(lambda c: chunk_stats(c, fmap, scaling, offset_fn),
                             combine=FeatureStats.__add__, desc="feature statistics",
                             width=fmap.raw_dim + q + fmap.n_landmarks)


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
        self.kind = feature_map.kind
        self.n_features = k
        Yr = (self.W.T @ C) / self.s[:, None]  # U^T [y - f0, X]
        self.rotated_data = Yr
        rest = D - Yr.T @ Yr
        self.rest = 0.5 * (rest + rest.T)
        self.ytY = D
        self.kernel_trace = float(stats.diag_sum) if np.isfinite(stats.diag_sum) else None

    def saved_without_rows(self) -> "FeatureBasis":
        """What a save with ``remove_data=True`` stores (:mod:`mixednn.persistence`): of
        in-memory training rows only the network inputs that Nystrom features need
        (``cross="exact"`` sums the kernel against every training row); a streamed source
        keeps its file's path (this basis itself)."""
        if not isinstance(self.source, ArraySource) or self.source.rows_removed:
            return self
        fm = self.feature_map
        new = copy.copy(self)
        new.source = self.source.without_rows(
            keep_inputs=not fm.exact and getattr(fm, "kernel", None) is not None)
        return new

    # -- sizes ------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self._n

    @property
    def rank(self) -> int:
        return int(self.eigenvalues.shape[0])

    @property
    def rest_dim(self) -> int:
        """Directions outside ``span(U)``, on which ``K = 0``: n - rank."""
        return self.n - self.rank

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

    def spectral_profile(self, sum_log_weights: float = 0.0) -> SpectralProfile:
        """The REML/ML profile from the statistics: leading k coordinates + the rest Gram
        (``sum_log_weights``: of precision weights, :class:`SpectralProfile`)."""
        Yr = self.rotated_data
        q = Yr.shape[1]
        order = [*range(1, q), 0]  # the profile orders columns [X, y]
        return SpectralProfile(self.eigenvalues, Yr[:, 0], Yr[:, 1:], self.trace, self.n,
                               rest_gram=self.rest[np.ix_(order, order)],
                               sum_log_weights=sum_log_weights)

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

    # -- prediction: cross-rotations -----------------------------------------------------
    def cross_rotation(self, kernel: Any = None, inputs: Any = None,
                       route: str = "auto") -> CrossRotation:
        """``U^T k*`` of new rows from their scaled network inputs (``inputs``).

        ``route``: ``"features"`` (through the feature map, the Nystrom cross-kernel
        ``K_m(z*, Z)``: O(m) per row), ``"exact"`` (the exact kernel against every
        training row, summed chunk by chunk, :func:`exact_cross_products`: O(n) per
        row) or ``"auto"`` (exact for Nystrom features when that pass costs at most
        :data:`CROSS_AUTO_LIMIT` kernel evaluations).  The route taken is the result's
        ``route`` attribute.
        """
        if kernel is not None:
            raise ValueError("kernel= (a cross-kernel) is not used by a feature-space fit: pass "
                             "newdata= or ntk_inputs= and the new rows get their features through "
                             "the training feature map (or cross='exact')")
        if route not in ("auto", "exact", "features"):
            raise ValueError(f"cross must be 'auto', 'exact' or 'features', got {route!r}")
        Zn = np.asarray(inputs, dtype=float)
        fm = self.feature_map
        if route == "auto":
            cost = self.n * (Zn.shape[0] + (fm.n_landmarks or fm.dim))
            route = "exact" if (not fm.exact and fm.kernel is not None
                                and cost <= CROSS_AUTO_LIMIT) else "features"
        if route == "exact" and not fm.exact:
            H = exact_cross_products(self, Zn)  # R^T k(Z, z*), raw features x rows
            return MatrixCrossRotation((self.W_raw.T @ H) / self.s[:, None], "exact")
        return FeatureCrossRotation(self, self.features(Zn), raw=False)

    def map_in_sample(self, fn: Callable[[CrossRotation, np.ndarray], Any],
                      X: Any = None) -> list:
        """``fn(cross-rotation of a chunk of training rows, its X)`` over the training rows,
        chunk by chunk, in row order (``X`` is ignored: each chunk carries its own)."""
        return self._map_features(
            lambda F, c: fn(FeatureCrossRotation(self, F, raw=True), _whitened(c, c.X)),
            "intervals")

    # -- EigenBasis interface (passes over the training rows) ------------------------------
    def _map_features(self, fn: Callable[[np.ndarray, RowChunk], Any], desc: str) -> list:
        """``fn(raw features, chunk)`` on every chunk of training rows, in row order (the
        features of the whitened rows, ``W^{1/2} R``, with precision weights)."""
        fmap, scaling = self.feature_map, self.scaling
        return self.source.map_chunks(
            lambda c: fn(_whitened(c, fmap.raw(scaling.apply(c.Z))), c), desc=desc,
            width=fmap.raw_dim + fmap.n_landmarks)

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
        need, avail = 8 * self.n * self.rank, available_memory()
        if avail is not None and need > avail:
            raise KernelMemoryError(
                f"the dense n x k eigenvector matrix of this feature-space fit needs "
                f"{need / 2**30:.1f} GiB but only {avail / 2**30:.1f} GiB is available; use "
                "coef() / features() (feature-space formulas) instead")
        return self.unrotate(np.eye(self.rank))


# ============================================================================ building

def build_feature_basis(model: Any) -> FeatureBasis:
    """The feature-space basis of a model with ``low_rank=`` set (one or two passes)."""
    spec = model.low_rank
    d = model.data
    streamed = d.streamed
    if streamed:
        source = d.source
        offset_fn = d.offset_fn
    else:
        source = ArraySource(d.endog, d.exog, d.ntk_inputs, d.offset, weights=d.weights)
        offset_fn = None
    if not streamed and d.ntk_inputs is None:
        raise ValueError("low_rank= needs network inputs (ntk= or ntk_inputs=)")
    if isinstance(spec, FeatureMap):
        fmap = spec
    elif isinstance(spec, str) and spec == "exact":
        if not model.kernel_source.finite:
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


# ============================================================================ cross-rotations

#: ``cross="auto"`` is exact up to this many kernel evaluations, n x (new rows + m).
CROSS_AUTO_LIMIT = 2e8


class FeatureCrossRotation(CrossRotation):
    """Rows given by their features ``f*`` (``k* = Phi f*``): ``U^T k* = diag(s) W^T f*``.

    Picklable (it runs on dask workers for streamed in-sample intervals).
    """

    route = "features"

    def __init__(self, basis: "FeatureBasis", features: np.ndarray, raw: bool):
        self.s = basis.s
        self.W = basis.W_raw if raw else basis.W
        self.features = np.asarray(features, dtype=float)

    def matrix(self) -> np.ndarray:
        return self.s[:, None] * (self.W.T @ self.features.T)

    def apply(self, c: np.ndarray) -> np.ndarray:
        return self.features @ (self.W @ (self.s * c))


class MatrixCrossRotation(CrossRotation):
    """A cross-rotation already computed (k x rows)."""

    def __init__(self, kt: np.ndarray, route: str):
        self.kt = np.asarray(kt, dtype=float)
        self.route = route

    def matrix(self) -> np.ndarray:
        return self.kt


def exact_cross_products(basis: FeatureBasis, Znew: np.ndarray) -> np.ndarray:
    """``R^T k(Z, z*)`` (raw features R) for new (scaled) rows: one pass over the training rows.

    The exact cross-kernel ``k(z*, Z)`` is never held: each chunk of training rows
    contributes ``Phi_c^T k(Z_c, z*)``.  With precision weights the features and the
    cross-kernel are both whitened on the training side, so each chunk contributes
    ``R_c^T W_c k(Z_c, z*)``.
    """
    fmap, scaling = basis.feature_map, basis.scaling
    kernel = fmap.kernel
    if kernel is None:
        raise ValueError("cross='exact' needs the kernel that the features approximate "
                         "(Nystrom features); exact features already give the exact cross-kernel")
    Znew = np.asarray(Znew, dtype=float)
    block = int(max(64, 2**22 // max(Znew.shape[0], 1)))

    def part(c: RowChunk) -> np.ndarray:
        Zs = scaling.apply(c.Z)
        out = np.zeros((fmap.raw_dim, Znew.shape[0]))
        w = c.weights
        for i in range(0, Zs.shape[0], block):
            Zb = Zs[i:i + block]
            Kb = np.asarray(kernel(Zb, Znew), dtype=float)
            if w is not None:
                Kb = w[i:i + block, None] * Kb
            out += fmap.raw(Zb).T @ Kb
        return out

    return basis.source.map_chunks(part, combine=np.add, desc="exact cross-kernel",
                                   width=fmap.raw_dim + fmap.n_landmarks
                                   + Znew.shape[0])
