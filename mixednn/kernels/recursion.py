"""The NNGP / NTK layer recursion of an infinite-width MLP, tiled and multithreaded.

The recursion (``docs/model.md`` section 5) starts, for inputs ``x, x'`` of dimension
``d``, from the first ``Dense`` layer, ``S = sw2 * x.x'/d + sb2`` and ``T = S``, and
then applies ``depth`` times one activation followed by one ``Dense`` layer (a *step*
of :mod:`mixednn.kernels.dual` or :mod:`mixednn.kernels.quadrature`), which updates
the NNGP ``S`` and the NTK ``T`` together.  A step needs the pre-activation variances
``S(x, x)`` of both sides at its layer; :meth:`LayerRecursion.variances` runs the
recursion on the diagonal alone to get them for every layer first.

:meth:`LayerRecursion.matrices` fills the ``n1 x n2`` kernel matrices tile by tile
(a few small tiles per thread in cache), over a shared thread pool
(``MIXEDNN_NUM_THREADS`` caps the threads).  For a Gram matrix (``sym``) only the
upper triangle of tiles is computed and mirrored, so the result is exactly symmetric,
with correlation exactly 1 on its diagonal.  ReLU-type activations without biases
take a faster route: the recursion then closes on correlations, which start from the
Gram matrix of unit-normalised inputs (near-parallel pairs recomputed from
differences, so coincident points are exact).

The user-facing class is :class:`mixednn.kernels.analytic.MLP`, which validates
inputs and builds the :class:`LayerRecursion` of its architecture.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .activations import DualForm
from .dual import Step, refine_near_parallel, safe_rsqrt

__all__ = ["LayerRecursion", "relu_correlations"]

_PI = math.pi

#: ``tile_fn(block, i0, i1, j0, j1, diag)``: finishes the kernels of one tile from the
#: block of input inner products (or correlations) and writes them to the outputs.
TileFn = Callable[[np.ndarray, int, int, int, int, bool], None]


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
# Tiles
# ---------------------------------------------------------------------------


def _tile_grid(n1: int, n2: int, ts: int, sym: bool) -> list[tuple[int, int, int, int]]:
    """``(i0, i1, j0, j1)`` of every tile; only the upper triangle when ``sym``."""
    tiles = []
    for i0 in range(0, n1, ts):
        for j0 in range(i0 if sym else 0, n2, ts):
            tiles.append((i0, min(i0 + ts, n1), j0, min(j0 + ts, n2)))
    return tiles


def _run_tiles(tile_fn: TileFn, X1: np.ndarray, X2: np.ndarray,
               tiles: list[tuple[int, int, int, int]], outs: list[np.ndarray], sym: bool,
               work_units: int) -> None:
    """Apply ``tile_fn`` to each tile's block ``X1[i0:i1] @ X2[j0:j1].T`` and mirror
    the symmetric case; threaded when there is enough work."""

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
    if nthreads <= 1 or work_units < 200_000:
        for t in tiles:
            work(t)
    else:
        list(_pool(nthreads).map(work, tiles))


def _unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    return X * safe_rsqrt(np.einsum("ij,ij->i", X, X))[:, None]


def relu_correlations(C: np.ndarray, ab: float, depth: int, want_ntk: bool
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """The bias-free ReLU-type recursion on correlations, for ``depth`` layers.

    With ``theta = arccos(c)`` and ``ab = alpha / beta`` of the activation
    ``a * min(x, 0) + b * max(x, 0)``::

        c_h = (alpha sin(theta) + (beta - alpha theta) c) / beta,
        T_h = c_h + (1 - theta alpha / beta) T_{h-1},   T_0 = c_0;

    the kernels are then ``K = sqrt(q q') c_L`` and ``Theta = sqrt(q q') T_L``.

    Parameters
    ----------
    C : numpy.ndarray
        Input correlations ``c_0`` in ``[-1, 1]``; overwritten with ``c_L``.
    ab : float
        ``alpha / beta``.
    depth : int
        Number of hidden layers ``L``.
    want_ntk : bool
        Also run the ``T`` recursion.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray or None)
        ``c_L`` (``C`` itself) and ``T_L`` (``None`` unless ``want_ntk``).
    """
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
    return C, T


# ---------------------------------------------------------------------------
# The recursion of one architecture
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerRecursion:
    """The layer recursion of one architecture, ready to run on inputs.

    Parameters
    ----------
    spec : DualForm
        The activation's closed-form / quadrature data.
    step : callable
        One activation then one ``Dense`` layer (:data:`mixednn.kernels.dual.Step`).
    depth : int
        Number of hidden layers.
    sw2, sb2 : float
        Weight and bias variances ``W_std**2`` and ``b_std**2``.
    tile_size : int
        Rows (and columns) of a tile.
    cost_per_entry : int
        Relative cost of one kernel entry per layer (quadrature: nodes squared), which
        decides whether threads are worth starting.
    """

    spec: DualForm
    step: Step
    depth: int
    sw2: float
    sb2: float
    tile_size: int = 128
    cost_per_entry: int = 1

    def variances(self, Z: np.ndarray) -> list[np.ndarray]:
        """Pre-activation variances ``S(x, x)`` entering each activation (``depth + 1``
        vectors; the last one is the readout's input variance)."""
        sw2, sb2 = self.sw2, self.sb2
        spec = self.spec
        step = self.step
        q = np.einsum("ij,ij->i", Z, Z) / Z.shape[1]
        q = sw2 * q + sb2
        qs = [q]
        for _ in range(self.depth):
            K = q.copy()
            q, _ = step(spec, K, None, q, q, sw2, sb2, unit_diag=True)
            np.maximum(q, 0.0, out=q)
            qs.append(q)
        return qs

    def diagonal_ntk(self, X: np.ndarray) -> np.ndarray:
        """``Theta(x_i, x_i)`` for the rows of ``X`` (non-empty, validated), in O(n d)."""
        sw2, sb2 = self.sw2, self.sb2
        spec = self.spec
        step = self.step
        qs = self.variances(X)
        K = qs[0].copy()
        T = K.copy()
        for h in range(self.depth):
            K, T = step(spec, K, T, qs[h], qs[h], sw2, sb2, unit_diag=True)
        return np.asarray(T, dtype=np.float64)

    def matrices(self, X1: np.ndarray, X2: np.ndarray, sym: bool, want_nngp: bool,
                 want_ntk: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """NNGP and NTK matrices ``(n1, n2)`` of validated inputs.

        ``sym`` means ``X2`` is ``X1`` (the Gram matrix: upper triangle computed and
        mirrored).  A matrix not wanted is returned as ``None``.
        """
        n1, n2 = X1.shape[0], X2.shape[0]
        out_K = np.empty((n1, n2)) if want_nngp else None
        out_T = np.empty((n1, n2)) if want_ntk else None
        if n1 == 0 or n2 == 0:
            return out_K, out_T
        qs1 = self.variances(X1)
        qs2 = qs1 if sym else self.variances(X2)
        if self.spec.closed == "abrelu" and self.sb2 == 0.0:
            # Without biases the ReLU-type recursion closes on correlations:
            # start from the Gram matrix of unit-normalised inputs.
            X1 = _unit_rows(X1)
            X2 = X1 if sym else _unit_rows(X2)
            sL1 = np.sqrt(qs1[-1])
            sL2 = sL1 if sym else np.sqrt(qs2[-1])
            tile_fn = self._relu_tile(X1, X2, sL1, sL2, out_K, out_T)
        else:
            tile_fn = self._dense_tile(X1.shape[1], qs1, qs2, out_K, out_T)
        tiles = _tile_grid(n1, n2, self.tile_size, sym)
        outs = [o for o in (out_K, out_T) if o is not None]
        work_units = n1 * n2 * max(1, self.depth) * self.cost_per_entry
        _run_tiles(tile_fn, X1, X2, tiles, outs, sym, work_units)
        return out_K, out_T

    def _relu_tile(self, X1: np.ndarray, X2: np.ndarray, sL1: np.ndarray, sL2: np.ndarray,
                   out_K: np.ndarray | None, out_T: np.ndarray | None) -> TileFn:
        """Tile function of the bias-free ReLU-type route (blocks are correlations of
        the unit rows ``X1``, ``X2``; ``sL*`` the readout's input standard deviations)."""
        a, b = self.spec.slopes
        beta = (a * a + b * b) / 2.0
        ab = (a - b) ** 2 / (2.0 * _PI) / beta  # alpha / beta
        depth = self.depth
        want_ntk = out_T is not None

        def tile_fn(C: np.ndarray, i0: int, i1: int, j0: int, j1: int, diag: bool) -> None:
            np.clip(C, -1.0, 1.0, out=C)
            if diag:
                np.fill_diagonal(C, 1.0)
            refine_near_parallel(C, X1, X2, i0, j0)
            C, T = relu_correlations(C, ab, depth, want_ntk)
            O = np.multiply(sL1[i0:i1, None], sL2[None, j0:j1])
            if out_K is not None:
                np.multiply(C, O, out=out_K[i0:i1, j0:j1])
            if out_T is not None:
                np.multiply(T, O, out=out_T[i0:i1, j0:j1])

        return tile_fn

    def _dense_tile(self, d: int, qs1: list[np.ndarray], qs2: list[np.ndarray],
                    out_K: np.ndarray | None, out_T: np.ndarray | None) -> TileFn:
        """Tile function of the general route: the first ``Dense`` layer on the block
        of inner products, then ``depth`` steps with both sides' variances."""
        spec, step, depth = self.spec, self.step, self.depth
        sw2, sb2 = self.sw2, self.sb2
        scale0 = sw2 / d
        want_ntk = out_T is not None

        def tile_fn(K: np.ndarray, i0: int, i1: int, j0: int, j1: int, diag: bool) -> None:
            K *= scale0
            if sb2:
                K += sb2
            T = K.copy() if want_ntk else None
            for h in range(depth):
                K, T = step(
                    spec, K, T, qs1[h][i0:i1, None], qs2[h][None, j0:j1], sw2, sb2,
                    unit_diag=diag,
                )
            if out_K is not None:
                out_K[i0:i1, j0:j1] = K
            if out_T is not None:
                out_T[i0:i1, j0:j1] = T

        return tile_fn
