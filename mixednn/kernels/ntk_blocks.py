"""Empirical NTKs and Jacobians of a finite torch network in row panels and blocks.

Given an :class:`~mixednn.kernels.ntk_engine.NTKEngine` and its route, the kernel
``K(Z1, Z2)`` is filled panel by panel: a panel of ``Z1``'s rows keeps its features
(layer signals, Jacobian rows, or the inputs themselves for the module route), ``Z2``
is streamed in blocks, and each (panel, block) pair is one product.  Panel and block
sizes follow from a memory model of the route and ``max_memory`` (working memory
beyond the returned matrix), so memory stays bounded whatever ``n`` and ``P``.
:func:`jacobian_matrix` builds the ``n x P`` Jacobian in row blocks the same way.

The user-facing functions are in :mod:`mixednn.kernels.empirical`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from .ntk_engine import NTKEngine

__all__ = ["blocked_ntk", "jacobian_matrix"]

_PROGRESS_MIN_EVALS = 16  # show a progress bar (auto mode) beyond this many block evaluations


# --------------------------------------------------------------------------- memory plan

def _fmt_bytes(b: float) -> str:
    for unit, f in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= f:
            return f"{b / f:.1f} {unit}"
    return f"{int(b)} B"


def _plan(n1: int, n2: int, r_f: int, r_t: int, c_tile: int, max_memory: int,
          block_rows: int | None) -> tuple[int, int]:
    """Stream block rows ``b`` and panel rows ``Pn`` within ``max_memory``.

    Memory: the panel's stored features ``Pn * r_f``, one stream block's features
    and the transient of building them ``b * (r_f + r_t)``, and the product tile
    temporaries ``Pn * b * c_tile``.
    """
    need = 2 * (r_t + r_f) + r_f + c_tile
    if need > max_memory:
        raise ValueError(
            f"max_memory = {_fmt_bytes(max_memory)} is too small: one row of this network's "
            f"gradient features needs about {_fmt_bytes(r_t)} while it is built; allow at least "
            f"{_fmt_bytes(need)}")
    r_s = r_t + r_f  # a stream block: its stored features plus the transient of building them
    b = max(1, min(max_memory // (2 * r_s), max(n1, n2)))
    if block_rows is not None:
        b = max(1, min(b, int(block_rows)))
    denom = r_f + b * c_tile
    Pn = n1 if denom == 0 else (max_memory - b * r_s) // denom
    Pn = int(max(1, min(Pn, n1)))
    return b, Pn


# --------------------------------------------------------------------------- block driver

class _Route:
    """How one kernel route stores, fills, slices and combines row features."""

    def __init__(self, engine: NTKEngine, method: str):
        self.engine = engine
        self.method = method

    def alloc(self, rows: int) -> Any:
        e = self.engine
        if self.method == "module":
            return torch.empty((rows, e.d_in), dtype=e.dtype)
        if self.method == "jacobian":
            return torch.empty((rows, e.n_params), dtype=e.dtype)
        assert e.linear_layers is not None
        return [(torch.empty((rows, mod.in_features), dtype=e.dtype),
                 torch.zeros((rows, mod.out_features), dtype=e.dtype), w, bias)
                for _, mod, w, bias in e.linear_layers]

    def fill(self, F: Any, i0: int, Zb: torch.Tensor) -> None:
        i1 = i0 + Zb.shape[0]
        if self.method == "module":
            F[i0:i1] = Zb
            return
        if self.method == "jacobian":
            self.engine.jacobian_block(Zb, out=F[i0:i1])
            return
        feats = self.engine.linear_features(Zb, all_layers=True)
        for (A, D, _, _), (Ab, Db, _, _) in zip(F, feats):
            A[i0:i1] = Ab
            D[i0:i1] = Db

    def take(self, F: Any, a: int, b: int) -> Any:
        if self.method in ("jacobian", "module"):
            return F[a:b]
        return [(A[a:b], D[a:b], w, bias) for A, D, w, bias in F]

    def combine(self, Fi: Any, Fj: Any) -> torch.Tensor:
        if self.method == "module":
            return self.engine.module_ntk(Fi, Fj)
        if self.method == "jacobian":
            return Fi @ Fj.T
        return NTKEngine.combine_linear(Fi, Fj)


def _blocked_kernel(route: _Route, Z1: torch.Tensor, Z2: torch.Tensor | None, b: int, Pn: int,
                    progress: bool | None, desc: str) -> tuple[np.ndarray, int]:
    """Fill ``K(Z1, Z2)`` panel by panel: a panel of Z1's rows keeps its features, Z2
    is streamed in blocks of ``b`` rows, and each (panel, block) pair is one product."""
    sym = Z2 is None
    Z2_ = Z1 if sym else Z2
    n1, n2 = Z1.shape[0], Z2_.shape[0]
    K = np.empty((n1, n2))
    Kt = torch.from_numpy(K)
    panels = [(p0, min(p0 + Pn, n1)) for p0 in range(0, n1, Pn)]
    total = 0
    for p0, p1 in panels:
        total += math.ceil((p1 - p0) / b) + math.ceil(max(n2 - (p1 if sym else 0), 0) / b)
    show = progress if progress is not None else (total >= _PROGRESS_MIN_EVALS)
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, unit="block",
                   disable=None if progress is None else not progress, leave=False)
    evals = 0

    def fill(F: Any, i0: int, Zb: torch.Tensor) -> None:
        nonlocal evals
        route.fill(F, i0, Zb)
        evals += 1
        if bar is not None:
            bar.update(1)

    try:
        for p0, p1 in panels:
            m = p1 - p0
            Fp = route.alloc(m)
            for i0 in range(0, m, b):
                fill(Fp, i0, Z1[p0 + i0:p0 + min(i0 + b, m)])
            if sym:
                # the diagonal panel from its own features, c columns at a time; each
                # product covers rows [0, j1), so about the upper triangle only is computed
                # (the module route recomputes features per product: one product there)
                c = b if route.method == "module" else max(1, min(b, max(128, -(-m // 8))))
                for j0 in range(0, m, c):
                    j1 = min(j0 + c, m)
                    T = route.combine(route.take(Fp, 0, j1), route.take(Fp, j0, j1))
                    D = T[j0:j1]
                    D = torch.triu(D) + torch.triu(D, 1).T  # exact symmetry
                    Kt[p0 + j0:p0 + j1, p0 + j0:p0 + j1] = D
                    if j0:
                        Kt[p0:p0 + j0, p0 + j0:p0 + j1] = T[:j0]
                        Kt[p0 + j0:p0 + j1, p0:p0 + j0] = T[:j0].T
                    del T, D
            start = p1 if sym else 0
            if start < n2:
                Fj = route.alloc(min(b, n2 - start))
                for j0 in range(start, n2, b):
                    j1 = min(j0 + b, n2)
                    Fb = route.take(Fj, 0, j1 - j0)
                    fill(Fb, 0, Z2_[j0:j1])
                    T = route.combine(Fp, Fb)
                    Kt[p0:p1, j0:j1] = T
                    if sym:
                        Kt[j0:j1, p0:p1] = T.T
                    del T, Fb
                del Fj
            del Fp
    finally:
        if bar is not None:
            bar.close()
    return K, evals


def blocked_ntk(engine: NTKEngine, Z1: torch.Tensor, Z2: torch.Tensor | None, *,
                max_memory: int, block_rows: int | None,
                progress: bool | None) -> tuple[np.ndarray, dict]:
    """Empirical NTK ``K(Z1, Z2)`` of an engine's network within ``max_memory``.

    Parameters
    ----------
    engine : NTKEngine
        The network's gradient engine; its route is decided here on first use.
    Z1 : torch.Tensor, shape (n1, d)
    Z2 : torch.Tensor, shape (n2, d), or None
        ``None`` gives the exactly symmetric Gram matrix of ``Z1``.  Both in the
        engine's dtype, already checked (``mixednn.kernels.empirical.as_tensor``).
    max_memory : int
        Working-memory limit in bytes, beyond the returned kernel.
    block_rows : int or None
        Cap on rows per gradient block.
    progress : bool or None
        tqdm progress bar: on, off, or (``None``) only for long builds.

    Returns
    -------
    K : numpy.ndarray, shape (n1, n2), float64
    info : dict
        Route and why, parameter count, block and panel rows, block evaluations,
        estimated peak working memory, seconds and dtype of the build.

    Raises
    ------
    ValueError
        If the kernel is not finite, or ``max_memory`` is too small for one row.
    """
    t0 = time.perf_counter()
    engine.d_in = Z1.shape[1]
    method = engine.decide(Z1, max_memory)
    r_f, r_t, c_tile = engine.costs(method)
    n1 = Z1.shape[0]
    n2 = n1 if Z2 is None else Z2.shape[0]
    b, Pn = _plan(n1, n2, r_f, r_t, c_tile, max_memory, block_rows)
    K, evals = _blocked_kernel(_Route(engine, method), Z1, Z2, b, Pn, progress,
                               desc="empirical NTK")
    if not np.all(np.isfinite(K)):
        raise ValueError("the empirical NTK contains NaN or infinite values: the network's "
                         "gradients at initialisation are not finite on these inputs")
    info = {"method": method, "reason": engine.reason, "n_params": engine.n_params,
            "block_rows": b, "panel_rows": Pn, "block_evaluations": evals,
            "estimated_peak_bytes": int(Pn * r_f + b * (r_t + r_f) + Pn * b * c_tile),
            "max_memory": max_memory, "seconds": time.perf_counter() - t0,
            "dtype": str(engine.dtype).replace("torch.", "")}
    return K, info


def jacobian_matrix(engine: NTKEngine, Zt: torch.Tensor, max_memory: int) -> np.ndarray:
    """Per-row parameter gradients ``J`` (n x P, float64) of an engine's network, in row blocks.

    Parameters
    ----------
    engine : NTKEngine
        The network's gradient engine (e.g. ``FiniteNetworkSource.engine_for(d)``).
    Zt : torch.Tensor, shape (n, d)
        Inputs in the engine's dtype (see :func:`mixednn.kernels.empirical.as_tensor`).
    max_memory : int
        Working-memory limit in bytes, beyond the returned matrix.

    Returns
    -------
    numpy.ndarray, shape (n, P), float64
        Columns ordered as the engine's trainable parameters.

    Raises
    ------
    ValueError
        If a gradient is not finite, or ``max_memory`` is too small for one row.

    Examples
    --------
    >>> import torch
    >>> eng = NTKEngine(torch.nn.Linear(2, 1), torch.float64)
    >>> jacobian_matrix(eng, torch.tensor([[1.0, 2.0]], dtype=torch.float64), 2**20).tolist()
    [[1.0, 2.0, 1.0]]
    """
    n = Zt.shape[0]
    _, r_t, _ = engine.costs("jacobian")
    b, _ = _plan(n, n, 0, r_t, 0, max_memory, None)
    J = np.empty((n, engine.n_params))
    Jt = torch.from_numpy(J)
    for i0 in range(0, n, b):
        blk = Zt[i0:i0 + b]
        if engine.dtype == torch.float64:
            engine.jacobian_block(blk, out=Jt[i0:i0 + blk.shape[0]])
        else:
            Jt[i0:i0 + blk.shape[0]] = engine.jacobian_block(blk).to(torch.float64)
    if not np.all(np.isfinite(J)):
        raise ValueError("the network's parameter gradients at initialisation are not finite")
    return J

