"""The training kernel as an operator: ``K V`` tile by tile, never stored (matrix-free).

The Krylov route (:mod:`mixednn.krylov`) needs K only through products ``K V`` with
thin blocks V, its diagonal (``tr K``) and, for the score test's moments, ``||K||_F^2``.
:class:`KernelOperator` provides them from the network inputs, one row tile at a time:
for the tile of rows ``a:b`` it evaluates ``K[a:b, a:]`` (the upper triangle from the
tile's diagonal block on, ``b - a`` rows by ``n - a`` columns) and adds
``K[a:b, a:] V[a:]`` to rows ``a:b`` of the product and ``K[a:b, b:]^T V[a:b]`` to rows
``b:`` (the mirrored lower triangle).  Each entry of K is evaluated once per product,
half the entries of the full matrix, and memory is O(n b) for a tile height b
(:func:`tile_height` picks b from a memory budget).  The stored kernel mirrors the same
upper triangle, so the two routes multiply by the same matrix to rounding.

Tiles are computed

* in NumPy by the model's kernel source (``source.cross(Z[a:b], Z[a:])``: any kernel
  that can compute a cross-kernel, the analytic MLP's tiled recursion included), or
* on a torch device (``device="cuda"``, or ``"cpu"`` for torch on the CPU, which runs
  the very same code) by :func:`mixednn.kernels.torch_ntk.ntk_torch`, the analytic MLP's
  NTK in torch, float64, with the products ``K V`` on the device too.  There a
  non-matrix-free operator (``store=True``) keeps the upper tiles on the device
  (half an n x n matrix) instead of recomputing them for every product.

With precision weights the operator is ``W^{1/2} K W^{1/2}`` (``scale``), as the stored
route's whitened kernel.  :meth:`KernelOperator.dense` materialises the n x n matrix,
for what needs every eigenvalue (on demand, as the stored Krylov route).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .torch_ntk import DIFFERENTIABLE, ntk_torch

__all__ = ["KernelOperator", "tile_height", "check_device", "check_device_network",
           "TILE_MEMORY"]

#: Default memory budget of one kernel tile in bytes (``matrix_free=True``): 128 MiB, the
#: tile plus the recursion's buffers and the product stay far below a stored n x n kernel
#: from n of about 5,000 on (at n = 50,000 a tile has 335 rows).
TILE_MEMORY = 128 * 2**20


def tile_height(n: int, memory: float = TILE_MEMORY) -> int:
    """Rows of a kernel tile (``b x n`` float64) that fit in ``memory`` bytes (16 to n).

    Parameters
    ----------
    n : int
        Number of training rows.
    memory : float
        Budget in bytes for one tile.

    Returns
    -------
    int
    """
    return int(min(max(n, 1), max(16, memory // (8 * max(n, 1)))))


def check_device(device: Any) -> str | None:
    """Validate ``device=``: None (NumPy) or a torch device string that is available.

    Raises
    ------
    ValueError
        When the device is unknown or unavailable here (e.g. ``"cuda"`` without a GPU),
        naming the option and the fix.
    """
    if device is None:
        return None
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        raise ValueError(f"device={device!r} needs torch, which is not installed: install "
                         "torch, or leave device=None (NumPy on the CPU)")
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device string ('cpu', 'cuda', "
                         f"'cuda:1', 'mps'): {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: torch.cuda.is_available() is False on this "
                         "machine (no GPU, or a CPU-only torch build); pass device=None for "
                         "the NumPy path or device='cpu' for torch on the CPU")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) "
                         "here; pass device='cuda:0' or device=None")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r}: torch.backends.mps.is_available() is False; pass "
                         "device=None (NumPy) or device='cpu'")
    return str(dev)


def check_device_network(network: Any, device: str) -> None:
    """Refuse a kernel that :func:`ntk_torch` cannot compute on ``device``, naming the option.

    Raises
    ------
    ValueError
        Unless ``network`` is an analytic (infinite-width) MLP whose activation is one of
        :data:`~mixednn.kernels.torch_ntk.DIFFERENTIABLE`.
    """
    act = getattr(network, "activation", None)
    if act not in DIFFERENTIABLE or getattr(network, "width", 0) is not None:
        raise ValueError(
            f"device={device!r} computes the analytic MLP's NTK in torch, for the "
            f"activations {', '.join(DIFFERENTIABLE)}; this model's kernel is "
            f"{network!r}: pass device=None (NumPy tiles of any kernel)")


class KernelOperator:
    """``K`` (optionally ``W^{1/2} K W^{1/2}``) applied to blocks, tile by tile (module notes).

    Parameters
    ----------
    inputs : ndarray, shape (n, d)
        The (scaled) network inputs of the training rows.
    cross : callable, optional
        ``cross(Z1, Z2) -> K(Z1, Z2)`` (NumPy): the kernel source's cross-kernel.  Used when
        ``device`` is None.
    network : MLP, optional
        The analytic architecture, for tiles on a torch device (:func:`ntk_torch`; the
        activation must be one of :data:`~mixednn.kernels.torch_ntk.DIFFERENTIABLE`).
    tile_rows : int
        Tile height b.
    scale : ndarray, shape (n,), optional
        ``W^{1/2}``: the operator is ``diag(scale) K diag(scale)``.
    device : str, optional
        A torch device string (:func:`check_device`); None for NumPy.
    store : bool
        On a device: keep the tiles there after the first product (half an n x n matrix of
        device memory) instead of recomputing them.  Ignored without a device.
    """

    def __init__(self, inputs: np.ndarray, *, cross: Callable | None = None,
                 network: Any = None, tile_rows: int | None = None,
                 scale: np.ndarray | None = None, device: str | None = None,
                 store: bool = False):
        self.inputs = np.ascontiguousarray(inputs, dtype=float)
        n = self.inputs.shape[0]
        self.n = int(n)
        self.tile_rows = int(tile_rows) if tile_rows is not None else tile_height(n)
        if self.tile_rows < 1:
            raise ValueError(f"the tile height must be a positive integer, got {tile_rows!r}")
        self.scale = None if scale is None else np.asarray(scale, dtype=float)
        self.device = check_device(device)
        self.store = bool(store) and self.device is not None
        if self.device is None:
            if cross is None:
                raise ValueError("a matrix-free kernel needs a cross-kernel function")
        else:
            check_device_network(network, device)
        self.cross = cross
        self.network = network
        self.products = 0           # number of products K V computed (for benchmarks)
        self._tensors: dict = {}    # device copies (inputs, stored tiles), rebuilt after pickling
        self._diagonal: np.ndarray | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_tensors"] = {}
        return state

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    @property
    def matrix_free(self) -> bool:
        """Whether the kernel is recomputed for every product (nothing n x n is kept)."""
        return not self.store

    def describe(self) -> str:
        """One line: where the tiles are computed and how they are kept."""
        where = "NumPy" if self.device is None else f"torch on {self.device}"
        kept = "tiles stored on the device" if self.store else "matrix-free"
        return f"kernel tiles of {self.tile_rows} rows ({where}, {kept})"

    # -- tiles ---------------------------------------------------------------------------
    def _tiles(self):
        """``(a, b, K[a:b, a:])`` for every row tile (NumPy arrays or device tensors)."""
        n, h = self.n, self.tile_rows
        if self.device is None:
            Z = self.inputs
            for a in range(0, n, h):
                b = min(a + h, n)
                C = np.asarray(self.cross(Z[a:b], Z[a:]), dtype=float)
                if not np.all(np.isfinite(C)):
                    raise ValueError("the kernel contains NaN or infinite values; check the "
                                     "network inputs and architecture")
                yield a, b, C
            return
        import torch
        stored = self._tensors.get("tiles")
        if stored is not None:
            yield from stored
            return
        Zt = self._tensor("inputs", self.inputs)
        keep = [] if self.store else None
        for a in range(0, n, h):
            b = min(a + h, n)
            # rows a:b of Z are the first rows of Z[a:]: exact unit correlation there
            C = ntk_torch(Zt[a:b], Zt[a:], self.network, diag_offset=0)
            if not bool(torch.isfinite(C).all()):
                raise ValueError("the kernel contains NaN or infinite values; check the "
                                 "network inputs and architecture")
            if keep is not None:
                keep.append((a, b, C))
            yield a, b, C
        if keep is not None:
            self._tensors["tiles"] = keep

    def _tensor(self, key: str, value: np.ndarray):
        import torch
        t = self._tensors.get(key)
        if t is None:
            t = torch.as_tensor(value, dtype=torch.float64, device=self.device)
            self._tensors[key] = t
        return t

    # -- products ------------------------------------------------------------------------
    def matmul(self, V: np.ndarray) -> np.ndarray:
        """``K V`` (or ``W^{1/2} K W^{1/2} V``) for an n x k block (or a vector)."""
        V = np.asarray(V, dtype=float)
        vec = V.ndim == 1
        V = V.reshape(self.n, -1)
        if self.scale is not None:
            V = self.scale[:, None] * V
        if self.device is None:
            out = np.zeros_like(V)
            for a, b, C in self._tiles():
                out[a:b] += C @ V[a:]
                if b < self.n:
                    out[b:] += C[:, b - a:].T @ V[a:b]
        else:
            import torch
            Vt = torch.as_tensor(V, dtype=torch.float64, device=self.device)
            acc = torch.zeros_like(Vt)
            for a, b, C in self._tiles():
                acc[a:b] += C @ Vt[a:]
                if b < self.n:
                    acc[b:] += C[:, b - a:].T @ Vt[a:b]
            out = acc.cpu().numpy()
        if self.scale is not None:
            out *= self.scale[:, None]
        self.products += 1
        return out[:, 0] if vec else out

    def __matmul__(self, V: np.ndarray) -> np.ndarray:
        return self.matmul(V)

    def diagonal(self) -> np.ndarray:
        """The diagonal of the operator, from the tiles' diagonal blocks (O(n b) entries;
        the same values as the products use)."""
        if self._diagonal is None:
            n, h, Z = self.n, self.tile_rows, self.inputs
            d = np.empty(n)
            for a in range(0, n, h):
                b = min(a + h, n)
                if self.device is None:
                    D = np.asarray(self.cross(Z[a:b], Z[a:b]), dtype=float)
                else:
                    Zt = self._tensor("inputs", Z)
                    D = ntk_torch(Zt[a:b], Zt[a:b], self.network,
                                  diag_offset=0).cpu().numpy()
                d[a:b] = np.diagonal(D)
            if self.scale is not None:
                d = d * self.scale ** 2
            self._diagonal = d
        return self._diagonal

    def trace(self) -> float:
        """``tr K``."""
        return float(np.sum(self.diagonal()))

    def frobenius_squared(self) -> float:
        """``||K||_F^2``, one pass over the tiles (the diagonal block once, the rest twice)."""
        total = 0.0
        for a, b, C in self._tiles():
            if self.device is not None:
                C = C.cpu().numpy()
            if self.scale is not None:
                C = self.scale[a:b, None] * C * self.scale[None, a:]
            D, R = C[:, :b - a], C[:, b - a:]
            total += float(np.einsum("ij,ij->", D, D)) + 2.0 * float(np.einsum("ij,ij->", R, R))
        return total

    def dense(self) -> np.ndarray:
        """The n x n matrix, assembled from the tiles (mirrored upper triangle): for what
        needs every eigenvalue, on demand."""
        K = np.empty((self.n, self.n))
        for a, b, C in self._tiles():
            if self.device is not None:
                C = C.cpu().numpy()
            K[a:b, a:] = C
            K[a:, a:b] = C.T
        if self.scale is not None:
            K *= self.scale[:, None]
            K *= self.scale[None, :]
        return K
