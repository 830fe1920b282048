"""Empirical neural tangent kernels of finite torch networks (``K = J J^T``).

For a network ``f(z; theta)`` with one scalar output per row and ``P``
trainable parameters, the empirical NTK on rows ``Z1, Z2`` is

    K(Z1, Z2) = J(Z1) J(Z2)^T,     J(Z) = d f(Z; theta) / d theta  at theta_0,

the Gram matrix of per-row parameter gradients (Jacot et al. 2018).  It is the
exact training operator of the linearised network, so the mixed model of
``docs/model.md`` built on it describes gradient descent on *this* network.

Three ways to compute it, picked automatically (``method="auto"``, first that
applies):

``"module"`` (the network's own exact kernel)
    A module with an ``ntk(x1, x2)`` method, such as the NTK-parameterised
    :class:`~mixednn.kernels.torch_mlp.MLPNetwork` that ``MLP(width=...)``
    builds, computes its kernel itself (layer by layer); the result is checked
    once against plain autograd gradients on two rows.
``"linear"`` (structured, exact)
    When every trainable parameter is the weight or bias of a
    :class:`torch.nn.Linear` layer called once per forward pass, a row's
    gradient with respect to a layer's weight is the outer product of the
    back-propagated signal ``D`` (d f / d layer output) and the layer input
    ``A``, so

        K = sum_layers (D D^T) * (A A^T + 1[bias])        (elementwise product)

    needs one forward and one backward pass and no ``n x P`` Jacobian at all
    (Novak et al. 2022 call this a structured derivative).  The choice is
    verified once against the generic route on two rows.
``"jacobian"`` (any module)
    Per-row Jacobians ``J`` from ``torch.func`` (``functional_call`` with
    ``vmap(jacrev)``), in row blocks, combined as ``J_i J_j^T``.

All routes work in row panels and blocks sized from ``max_memory`` (working
memory beyond the returned kernel), so memory stays bounded whatever ``n`` and
``P``.  Kernels are computed in float64 by default (the network is copied and
cast; float32 weights are represented exactly in float64).

When ``P < n`` the model uses the exact *feature form* instead of the n x n
kernel: :meth:`FiniteNetworkSource.low_rank_features` returns ``J`` itself,
whose SVD ``J = U S W^T`` gives the nonzero eigenpairs ``(S^2, U)`` of ``K``
directly (decomposed by the caller, above this layer).

References
----------
Jacot, Gabriel & Hongler (2018). Neural tangent kernel: convergence and
generalization in neural networks. NeurIPS.
Novak, Sohl-Dickstein & Schoenholz (2022). Fast finite width neural tangent
kernel. ICML.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np
import torch

from .analytic import MLP
from .source import KernelSource

__all__ = ["empirical_ntk", "network_jacobian", "network_output", "FiniteNetworkSource",
           "finite_network_source", "DEFAULT_MAX_MEMORY", "NTKEngine", "as_tensor",
           "resolve_dtype", "jacobian_matrix"]

#: Default working-memory limit of a kernel build (bytes), beyond the returned kernel.
DEFAULT_MAX_MEMORY = 1 << 30

_PROGRESS_MIN_EVALS = 16  # show a progress bar (auto mode) beyond this many block evaluations


# ----------------------------------------------------------------------------- input checks

def as_tensor(Z: Any, dtype: torch.dtype, what: str = "Z") -> torch.Tensor:
    """Checked 2-D tensor of network inputs in ``dtype`` (a 1-D array becomes one column).

    Parameters
    ----------
    Z : array_like or torch.Tensor, shape (n, d) or (n,)
        Network inputs; a tensor is detached (not copied when already ``dtype``).
    dtype : torch.dtype
        Target precision.
    what : str
        Name of the argument in error messages.

    Returns
    -------
    torch.Tensor, shape (n, d)

    Raises
    ------
    ValueError
        If ``Z`` is not 2-D (after the 1-D reshape) or holds NaN or infinite values.

    Examples
    --------
    >>> import torch
    >>> as_tensor([1.0, 2.0], torch.float64).shape
    torch.Size([2, 1])
    """
    if isinstance(Z, torch.Tensor):
        Zt = Z.detach().to(dtype)
    else:
        A = np.asarray(Z, dtype=float)
        if A.ndim == 1:
            A = A.reshape(-1, 1)
        Zt = torch.from_numpy(np.ascontiguousarray(A)).to(dtype)
    if Zt.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (rows x inputs), got shape {tuple(Zt.shape)}")
    if not bool(torch.isfinite(Zt).all()):
        raise ValueError(f"{what} contains NaN or infinite values")
    return Zt


def resolve_dtype(dtype: Any) -> torch.dtype:
    """The floating torch dtype meant by ``dtype`` (``None``: ``torch.float64``).

    Parameters
    ----------
    dtype : torch.dtype, numpy dtype, str or None
        A floating torch dtype, or ``"float64"`` / ``"float32"`` in any form
        ``numpy.dtype`` accepts.

    Returns
    -------
    torch.dtype

    Raises
    ------
    ValueError
        For a non-floating torch dtype or anything but float64 / float32.

    Examples
    --------
    >>> resolve_dtype("float32"), resolve_dtype(None)
    (torch.float32, torch.float64)
    """
    if dtype is None:
        return torch.float64
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch dtype, got {dtype}")
        return dtype
    key = str(np.dtype(dtype))
    table = {"float64": torch.float64, "float32": torch.float32}
    if key not in table:
        raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype!r}")
    return table[key]


def _check_memory(max_memory: Any) -> int:
    if max_memory is None:
        return DEFAULT_MAX_MEMORY
    try:
        m = int(max_memory)
    except (TypeError, ValueError):
        raise ValueError(f"max_memory must be a number of bytes, got {max_memory!r}") from None
    if m <= 0:
        raise ValueError(f"max_memory must be positive, got {max_memory!r}")
    return m


def _fmt_bytes(b: float) -> str:
    for unit, f in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= f:
            return f"{b / f:.1f} {unit}"
    return f"{int(b)} B"


# ------------------------------------------------------------------------------- engine

class _NotStructured(Exception):
    """The module does not fit the structured (nn.Linear) route."""


class NTKEngine:
    """A float64 (or ``dtype``) copy of a module with its gradient machinery.

    Parameters
    ----------
    module : torch.nn.Module
        Maps ``(n, d)`` to ``(n,)`` or ``(n, 1)``; deep-copied and cast to ``dtype``.
    dtype : torch.dtype, default torch.float64
    method : {"auto", "module", "linear", "jacobian"}
        Kernel route (see :func:`empirical_ntk`), decided on first use.

    Attributes
    ----------
    n_params : int
        Number of trainable parameters ``P``.
    method : str or None
        The route chosen (``None`` before the first kernel build).
    """

    def __init__(self, module: torch.nn.Module, dtype: torch.dtype = torch.float64,
                 method: str = "auto"):
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"expected a torch.nn.Module, got {type(module).__name__}")
        if method not in ("auto", "module", "linear", "jacobian"):
            raise ValueError(f"method must be 'auto', 'module', 'linear' or 'jacobian', got "
                             f"{method!r}")
        self.dtype = dtype
        self.itemsize = torch.empty((), dtype=dtype).element_size()
        self.module = copy.deepcopy(module).to(dtype)
        named = list(self.module.named_parameters())
        self.names = [k for k, p in named if p.requires_grad]
        if not self.names:
            raise ValueError("the network has no trainable parameters (requires_grad=True): "
                             "its tangent kernel is zero")
        self.params = {k: p.detach() for k, p in named if p.requires_grad}
        fixed = {k: p.detach() for k, p in named if not p.requires_grad}
        fixed.update(dict(self.module.named_buffers()))
        self.fixed = fixed
        self.n_params = int(sum(p.numel() for p in self.params.values()))
        self.requested = method
        self.method: str | None = None  # decided on first use (needs rows)
        self.d_in = 0
        self.reason = ""
        self._layers = self._linear_layers()

    # -- forward and checks ------------------------------------------------------------
    def forward(self, Zt: torch.Tensor) -> torch.Tensor:
        """Validated forward pass: (n, d) -> (n,)."""
        n, d = Zt.shape
        try:
            out = self.module(Zt)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(
                f"the network failed on inputs with d = {d} column(s): {exc}. Check that its "
                f"first layer expects {d} input feature(s) (the network inputs of the model, "
                "after any formula expansion)") from exc
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"the network must return a tensor, got {type(out).__name__}")
        if tuple(out.shape) not in ((n,), (n, 1)):
            raise ValueError(
                f"the network must return one scalar per row, i.e. an output of shape (n,) or "
                f"(n, 1); for {n} input rows it returned shape {tuple(out.shape)}. Add a final "
                "Linear(..., 1) layer (or select one output)")
        return out.reshape(n)

    def output(self, Zt: torch.Tensor, chunk: int = 8192) -> np.ndarray:
        """Network output at the current parameters, checked finite."""
        outs = []
        with torch.no_grad():
            for i in range(0, Zt.shape[0], chunk):
                outs.append(self.forward(Zt[i:i + chunk]))
        f = torch.cat(outs).to(torch.float64).numpy() if outs else np.empty(0)
        bad = ~np.isfinite(f)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"the network's output at initialisation is not finite on {int(bad.sum())} of "
                f"{f.shape[0]} rows (first: row {i}, value {f[i]}); check the scale of the "
                "inputs and the initialisation")
        return f

    # -- route choice ------------------------------------------------------------------
    def _linear_layers(self) -> list[tuple[str, torch.nn.Linear, bool, bool]] | None:
        """Trainable nn.Linear layers, or None when other trainable parameters exist."""
        covered: set[int] = set()
        layers = []
        for name, mod in self.module.named_modules():
            if isinstance(mod, torch.nn.Linear):
                w = mod.weight.requires_grad
                b = mod.bias is not None and mod.bias.requires_grad
                if w or b:
                    layers.append((name, mod, w, b))
                    if w:
                        covered.add(id(mod.weight))
                    if b:
                        covered.add(id(mod.bias))
        ids = [id(p) for p in self.module.parameters() if p.requires_grad]
        shared = len({id(m) for _, m, _, _ in layers}) != len(layers)
        if shared or set(ids) != covered or len(ids) != len(covered):
            return None
        return layers

    def decide(self, Zt: torch.Tensor, max_memory: int) -> str:
        """Choose the route (once), verifying the structured one on two rows."""
        if self.method is not None:
            return self.method
        if self.requested == "jacobian":
            self.method, self.reason = "jacobian", "requested"
            return self.method
        if self.requested in ("auto", "module") and callable(getattr(self.module, "ntk", None)):
            probe = Zt[: min(2, Zt.shape[0])]
            problem = ""
            try:
                Km = self.module_ntk(probe, probe)
                if not self._agrees(Km, probe, max_memory):
                    problem = "its ntk() disagrees with the Jacobian route"
            except Exception as exc:  # a user method: any failure means "do not use it"
                problem = f"its ntk() failed ({exc})"
            if not problem:
                self.method = "module"
                self.reason = (f"the module's own ntk() method ({type(self.module).__name__}), "
                               "verified")
                return self.method
            if self.requested == "module":
                raise ValueError(f"method='module' does not apply to this network: {problem}")
        elif self.requested == "module":
            raise ValueError("method='module' needs a network with an ntk(x1, x2) method")
        if self._layers is None:
            if self.requested == "linear":
                raise ValueError("method='linear' needs every trainable parameter to belong to a "
                                 "torch.nn.Linear layer; use method='jacobian'")
            self.method = "jacobian"
            self.reason = "trainable parameters outside torch.nn.Linear layers"
            return self.method
        probe = Zt[: min(2, Zt.shape[0])]
        try:
            Fs = self.linear_features(probe)
            Ks = self.combine_linear(Fs, Fs)
        except _NotStructured as exc:
            if self.requested == "linear":
                raise ValueError(f"method='linear' does not apply to this network: {exc}") from None
            self.method, self.reason = "jacobian", str(exc)
            return self.method
        if not self._agrees(Ks, probe, max_memory):
            if self.requested == "linear":
                raise ValueError("method='linear' disagrees with the Jacobian route on this "
                                 "network (a layer reused, or rows that interact); use "
                                 "method='jacobian'")
            self.method = "jacobian"
            self.reason = "structured route failed verification"
        else:
            self.method, self.reason = "linear", "all trainable parameters in nn.Linear layers"
        return self.method

    def _agrees(self, K: torch.Tensor, probe: torch.Tensor, max_memory: int) -> bool:
        """Check a kernel on (at most two) probe rows against plain autograd gradients."""
        fits = 3 * probe.shape[0] * self.n_params * self.itemsize <= max_memory
        rows = probe.shape[0] if fits else 1
        J = self._jacobian_loop(probe[:rows])  # plain autograd: no torch.func start-up cost
        Kj = J @ J.T
        if tuple(K.shape) != (probe.shape[0], probe.shape[0]):
            return False
        scale = float(Kj.abs().max()) or 1.0
        tol = 1e-8 if self.dtype == torch.float64 else 1e-4
        return float((K[:rows, :rows] - Kj).abs().max()) <= tol * scale

    def module_ntk(self, Z1: torch.Tensor, Z2: torch.Tensor) -> torch.Tensor:
        """The module's own ``ntk(x1, x2)`` (e.g. :class:`~.torch_mlp.MLPNetwork`)."""
        K = self.module.ntk(Z1, Z2)
        if not isinstance(K, torch.Tensor) or tuple(K.shape) != (Z1.shape[0], Z2.shape[0]):
            raise ValueError("ntk(x1, x2) must return a (n1, n2) tensor")
        return K.detach().to(self.dtype)

    # -- structured route --------------------------------------------------------------
    def linear_features(self, Zb: torch.Tensor, all_layers: bool = True
                        ) -> list[tuple[torch.Tensor, torch.Tensor, bool, bool]]:
        """Per-layer ``(A, D, weight?, bias?)`` for a row block: layer inputs ``A`` and
        back-propagated signals ``D = d f / d (layer output)``, one row per data row
        (a trainable layer the forward pass never reaches contributes zeros)."""
        b = Zb.shape[0]
        layers = self._layers
        assert layers is not None
        seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        problems: list[str] = []

        def make_hook(idx: int, name: str):
            def hook(mod, inputs, output):
                if idx in seen:
                    problems.append(f"layer {name!r} is called more than once per forward pass")
                    return None
                x = inputs[0] if inputs else None
                if (not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] != b
                        or output.ndim != 2 or output.shape[0] != b):
                    problems.append(f"layer {name!r} does not see one 2-D input row per data row")
                    return None
                seen[idx] = (x.detach(), output)
                return output.clone()  # downstream in-place ops must not touch `output`
            return hook

        handles = [mod.register_forward_hook(make_hook(i, nm))
                   for i, (nm, mod, _, _) in enumerate(layers)]
        try:
            with torch.enable_grad():
                out = self.forward(Zb)
                if problems:
                    raise _NotStructured(problems[0])
                idx = sorted(seen)
                grads = torch.autograd.grad(out.sum(), [seen[i][1] for i in idx],
                                            allow_unused=True) if idx else []
        finally:
            for h in handles:
                h.remove()
        got = {i: (seen[i][0], torch.zeros_like(seen[i][1]) if g is None else g.detach())
               for i, g in zip(idx, grads)}
        feats = []
        for i, (_, mod, w, bias) in enumerate(layers):
            if i in got:
                feats.append((*got[i], w, bias))
            elif all_layers:
                feats.append((torch.zeros((b, mod.in_features), dtype=self.dtype),
                              torch.zeros((b, mod.out_features), dtype=self.dtype), w, bias))
        return feats

    @staticmethod
    def combine_linear(Fi, Fj) -> torch.Tensor:
        out = None
        for (Ai, Di, w, b), (Aj, Dj, _, _) in zip(Fi, Fj):
            DD = Di @ Dj.T
            if w:
                AA = Ai @ Aj.T
                if b:
                    AA += 1.0
                DD *= AA
            term = DD
            out = term if out is None else out.add_(term)
        if out is None:
            return torch.zeros(Fi[0][0].shape[0] if Fi else 0, Fj[0][0].shape[0] if Fj else 0)
        return out

    def linear_bytes_per_row(self) -> int:
        assert self._layers is not None
        width = sum(mod.in_features + mod.out_features for _, mod, _, _ in self._layers)
        return int(width * self.itemsize)

    # -- generic route -----------------------------------------------------------------
    def jacobian_block(self, Zb: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Per-row Jacobians ``(b, P)`` by ``vmap(jacrev)`` (row-by-row autograd fallback),
        written into ``out`` when given."""
        from torch.func import functional_call, jacrev, vmap

        module, fixed = self.module, self.fixed

        def f(p: dict, z: torch.Tensor) -> torch.Tensor:
            return functional_call(module, (p, fixed), (z.unsqueeze(0),)).reshape(())

        b = Zb.shape[0]
        try:
            jac = vmap(jacrev(f), in_dims=(None, 0))(self.params, Zb)
        except RuntimeError as exc:
            if "random" in str(exc).lower():
                raise ValueError("the network's forward pass is random (dropout?): its tangent "
                                 "kernel is not defined; call module.eval() or remove the "
                                 "randomness") from exc
            J = self._jacobian_loop(Zb)
            if out is not None:
                out.copy_(J)
                return out
            return J
        J = torch.empty((b, self.n_params), dtype=self.dtype) if out is None else out
        j = 0
        for k in self.names:
            blk = jac.pop(k).reshape(b, -1)
            J[:, j:j + blk.shape[1]] = blk
            j += blk.shape[1]
        return J

    def _jacobian_loop(self, Zb: torch.Tensor) -> torch.Tensor:
        params = [p for k, p in self.module.named_parameters() if p.requires_grad]
        J = torch.empty((Zb.shape[0], self.n_params), dtype=self.dtype)
        with torch.enable_grad():
            for i in range(Zb.shape[0]):
                out = self.forward(Zb[i:i + 1])
                gs = torch.autograd.grad(out.sum(), params, allow_unused=True)
                J[i] = torch.cat([torch.zeros(p.numel(), dtype=self.dtype) if g is None
                                  else g.reshape(-1) for g, p in zip(gs, params)])
        return J

    # -- memory model ------------------------------------------------------------------
    def costs(self, method: str) -> tuple[int, int, int]:
        """(stored bytes per row, transient bytes per row, tile bytes per entry)."""
        if method == "module":
            # the module recomputes per-row layer signals for both row sets of a product:
            # estimate them from the matrix-shaped parameters (fan_in + fan_out per layer)
            width = sum(p.shape[0] + p.shape[1] for p in self.params.values() if p.ndim == 2)
            r = 3 * max(width, 1) * self.itemsize
            return r, r, 3 * 8
        if method == "linear":
            r_f = self.linear_bytes_per_row()
            return r_f, 4 * r_f, 3 * 8
        r_f = self.n_params * self.itemsize
        return r_f, 4 * r_f, 2 * 8  # vmap(jacrev) output, its flattening, autograd buffers


# --------------------------------------------------------------------------- block driver

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
        assert e._layers is not None
        return [(torch.empty((rows, mod.in_features), dtype=e.dtype),
                 torch.zeros((rows, mod.out_features), dtype=e.dtype), w, bias)
                for _, mod, w, bias in e._layers]

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


def _kernel(engine: NTKEngine, Z1: torch.Tensor, Z2: torch.Tensor | None, *,
            max_memory: int, block_rows: int | None,
            progress: bool | None) -> tuple[np.ndarray, dict]:
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


# ----------------------------------------------------------------------------- public API

def empirical_ntk(module: torch.nn.Module, Z1: Any, Z2: Any = None, *,
                  block_rows: int | None = None, max_memory: int | None = None,
                  dtype: Any = torch.float64, method: str = "auto",
                  progress: bool | None = None) -> np.ndarray:
    """Empirical neural tangent kernel ``J(Z1) J(Z2)^T`` of a torch network.

    Parameters
    ----------
    module : torch.nn.Module
        Maps an ``(n, d)`` tensor to ``(n,)`` or ``(n, 1)`` (one scalar per row).
        It is copied and cast to ``dtype``; the original is not touched.
    Z1 : array_like, shape (n1, d)
    Z2 : array_like, shape (n2, d), optional
        ``None`` gives the exactly symmetric n1 x n1 Gram matrix of ``Z1``.
    block_rows : int, optional
        Cap on the rows per gradient block (default: as many as ``max_memory`` allows).
    max_memory : int, optional
        Working-memory limit in bytes, beyond the returned kernel
        (default :data:`DEFAULT_MAX_MEMORY`, 1 GiB).  Rows are processed in panels
        and blocks that fit; too small a limit for one row raises ``ValueError``.
    dtype : torch.dtype
        Precision of the computation (float64 by default).
    method : {"auto", "module", "linear", "jacobian"}
        ``"module"``: the network's own ``ntk(x1, x2)`` method; ``"linear"``: the
        structured route for networks whose trainable parameters all sit in
        ``torch.nn.Linear`` layers; ``"jacobian"``: ``torch.func`` per-row
        Jacobians (any module); ``"auto"`` takes the first that applies (each
        verified on two rows against plain autograd).
    progress : bool, optional
        Show a tqdm progress bar; by default only for long builds (and only on a
        terminal or notebook).

    Returns
    -------
    numpy.ndarray, shape (n1, n2), float64

    Examples
    --------
    >>> import torch, numpy as np
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    >>> Z = np.random.default_rng(0).normal(size=(5, 3))
    >>> K = empirical_ntk(net, Z)
    >>> K.shape, bool(np.allclose(K, K.T))
    ((5, 5), True)
    """
    dt = resolve_dtype(dtype)
    engine = NTKEngine(module, dt, method)
    Z1t = as_tensor(Z1, dt, "Z1")
    Z2t = None if Z2 is None else as_tensor(Z2, dt, "Z2")
    if Z2t is not None and Z2t.shape[1] != Z1t.shape[1]:
        raise ValueError(f"Z1 and Z2 must have the same number of columns, got "
                         f"{Z1t.shape[1]} and {Z2t.shape[1]}")
    engine.output(Z1t[:2])  # shape / width / finiteness checks on a probe
    K, _ = _kernel(engine, Z1t, Z2t, max_memory=_check_memory(max_memory),
                   block_rows=block_rows, progress=progress)
    return K


def network_jacobian(module: torch.nn.Module, Z: Any, *, max_memory: int | None = None,
                     dtype: Any = torch.float64) -> np.ndarray:
    """Per-row parameter gradients ``J`` (n x P) of a torch network, in row blocks.

    Parameters are ordered as ``module.named_parameters()`` (trainable ones only),
    each flattened in C order.

    Parameters
    ----------
    module : torch.nn.Module
    Z : array_like, shape (n, d)
    max_memory : int, optional
        Working-memory limit (bytes) beyond the returned ``n x P`` matrix.
    dtype : torch.dtype

    Returns
    -------
    numpy.ndarray, shape (n, P), float64

    Examples
    --------
    >>> import torch, numpy as np
    >>> net = torch.nn.Linear(2, 1)
    >>> J = network_jacobian(net, np.array([[1.0, 2.0]]))
    >>> J.tolist()
    [[1.0, 2.0, 1.0]]
    """
    engine = NTKEngine(module, resolve_dtype(dtype), "jacobian")
    Zt = as_tensor(Z, engine.dtype)
    engine.output(Zt[:2])
    return jacobian_matrix(engine, Zt, _check_memory(max_memory))


def jacobian_matrix(engine: NTKEngine, Zt: torch.Tensor, max_memory: int) -> np.ndarray:
    """Per-row parameter gradients ``J`` (n x P, float64) of an engine's network, in row blocks.

    Parameters
    ----------
    engine : NTKEngine
        The network's gradient engine (e.g. ``FiniteNetworkSource.engine_for(d)``).
    Zt : torch.Tensor, shape (n, d)
        Inputs in the engine's dtype (see :func:`as_tensor`).
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


def network_output(module: torch.nn.Module, Z: Any, *, dtype: Any = torch.float64) -> np.ndarray:
    """Checked network output ``f(Z)`` as a float64 vector (the offset ``f0`` at init).

    Examples
    --------
    >>> import torch, numpy as np
    >>> net = torch.nn.Linear(2, 1)
    >>> network_output(net, np.zeros((3, 2))).shape
    (3,)
    """
    engine = NTKEngine(module, resolve_dtype(dtype), "jacobian")
    return engine.output(as_tensor(Z, engine.dtype))


# ------------------------------------------------------------------------- kernel source

class FiniteNetworkSource(KernelSource):
    """Kernel source of a finite torch network: empirical NTK, offset, feature form.

    Built by :func:`finite_network_source` (what ``network=`` does with an
    ``MLP(width=...)`` spec or a ``torch.nn.Module``).  The network is copied at
    construction, so later changes to the user's module do not change the model.

    Attributes
    ----------
    spec : MLP or None
        The architecture spec (``MLP(width=...)``), or ``None`` for a module.
    build_info : dict
        Route, parameter count, block sizes, estimated peak working memory and
        seconds of the last kernel build.
    """

    finite = True

    def __init__(self, network: Any, *, seed: int | None = 0, dtype: Any = torch.float64,
                 max_memory: int | None = None, block_rows: int | None = None,
                 feature_form: bool | str = "auto", method: str = "auto",
                 progress: bool | None = None):
        self.dtype = resolve_dtype(dtype)
        self.max_memory = _check_memory(max_memory)
        if block_rows is not None and (int(block_rows) != block_rows or block_rows < 1):
            raise ValueError(f"block_rows must be a positive integer, got {block_rows!r}")
        self.block_rows = block_rows
        if feature_form not in ("auto", True, False):
            raise ValueError(f"feature_form must be 'auto', True or False, got {feature_form!r}")
        self.feature_form = feature_form
        self.method = method
        self.progress = progress
        self.seed = seed
        self.build_info: dict = {}
        self._engine: NTKEngine | None = None
        self._module: torch.nn.Module | None = None
        self._jac_cache: tuple[np.ndarray, np.ndarray] | None = None  # (Z, J) of training rows
        if isinstance(network, MLP):
            if network.width is None:
                raise ValueError("an MLP spec without width= has an analytic kernel; "
                                 "finite_network_source needs MLP(..., width=m)")
            self.spec = network
            desc = (f"MLP depth={network.depth} {network.activation}, "
                    f"W_std={network.weight_std:g}, b_std={network.bias_std:g}, NTK parameterisation, finite width "
                    f"{network.width} (torch, seed {seed}): empirical NTK J J^T")
        elif isinstance(network, torch.nn.Module):
            self.spec = None
            self._set_module(network)
            desc = (f"torch module {type(network).__name__} ({self._engine.n_params:,} trainable "
                    "parameters): empirical NTK J J^T at initialisation")
        else:
            raise TypeError(f"network must be an MLP(width=...) spec or a torch.nn.Module, got "
                            f"{type(network).__name__}")
        desc += f", {str(self.dtype).replace('torch.', '')}"
        super().__init__(self._gram, self._cross, desc, network=network)

    # -- the module --------------------------------------------------------------------
    def _set_module(self, module: torch.nn.Module) -> None:
        self._module = copy.deepcopy(module)
        self._engine = NTKEngine(self._module, self.dtype, self.method)

    def engine_for(self, d: int) -> NTKEngine:
        """The gradient engine; an MLP spec's torch network is built here (input width d).

        Parameters
        ----------
        d : int
            Number of network inputs.

        Returns
        -------
        NTKEngine
        """
        if self._engine is None:
            try:
                from .torch_mlp import torch_module

                module = torch_module(self.spec, d, seed=self.seed)
            except ImportError as exc:  # pragma: no cover - depends on the build
                raise NotImplementedError(
                    "MLP(width=...) needs mixednn.kernels.torch_mlp to build the finite network; "
                    "pass a torch.nn.Module as network= instead") from exc
            self._set_module(module)
            self.description = self.description.replace(
                "empirical NTK", f"empirical NTK of {self._engine.n_params:,} parameters,", 1)
        eng = self._engine
        assert eng is not None
        return eng

    @property
    def module(self) -> torch.nn.Module:
        """The network at initialisation (a private copy; deep-copy it before training)."""
        if self._module is None:
            raise RuntimeError("the network of an MLP spec is built on first use (it needs the "
                               "input width); fit the model first")
        return self._module

    def n_params(self, d: int) -> int:
        """Number of trainable parameters of the network on ``d`` inputs."""
        return self.engine_for(d).n_params

    # -- KernelSource interface ----------------------------------------------------------
    def init_output(self, Z: np.ndarray) -> np.ndarray:
        """Network output at initialisation on the (scaled) inputs ``Z``: the offset f0."""
        Zt = as_tensor(Z, self.dtype)
        return self.engine_for(Zt.shape[1]).output(Zt)

    def _check_width(self, Zt: torch.Tensor, eng: NTKEngine) -> None:
        eng.output(Zt[:2])

    def _gram(self, Z: np.ndarray) -> np.ndarray:
        Zt = as_tensor(Z, self.dtype)
        eng = self.engine_for(Zt.shape[1])
        self._check_width(Zt, eng)
        if self._use_features(Zt.shape[0], eng):
            J = self._train_jacobian(Z, Zt, eng)
            K = J @ J.T
            return 0.5 * (K + K.T)
        K, info = _kernel(eng, Zt, None, max_memory=self.max_memory,
                          block_rows=self.block_rows, progress=self.progress)
        self.build_info = info
        return K

    def _cross(self, Znew: np.ndarray, Z: np.ndarray) -> np.ndarray:
        Zn = as_tensor(Znew, self.dtype, "new network inputs")
        Zt = as_tensor(Z, self.dtype)
        eng = self.engine_for(Zt.shape[1])
        self._check_width(Zn, eng)
        if self._use_features(Zt.shape[0], eng):
            Jn = jacobian_matrix(eng, Zn, self.max_memory)
            return Jn @ self._train_jacobian(Z, Zt, eng).T
        K, info = _kernel(eng, Zn, Zt, max_memory=self.max_memory,
                          block_rows=self.block_rows, progress=self.progress)
        return K

    # -- feature form ----------------------------------------------------------------------
    def _use_features(self, n: int, eng: NTKEngine) -> bool:
        if self.feature_form is False:
            return False
        if self.feature_form is True:
            return True
        return eng.n_params < n

    def _train_jacobian(self, Z: np.ndarray, Zt: torch.Tensor, eng: NTKEngine) -> np.ndarray:
        Za = np.asarray(Z, dtype=float)
        if self._jac_cache is not None and self._jac_cache[0].shape == Za.shape \
                and np.array_equal(self._jac_cache[0], Za):
            return self._jac_cache[1]
        t0 = time.perf_counter()
        J = jacobian_matrix(eng, Zt, self.max_memory)
        self._jac_cache = (Za.copy(), J)
        self.build_info = {"method": "features", "reason": "P < n: exact feature form J (n x P)",
                           "n_params": eng.n_params, "seconds": time.perf_counter() - t0,
                           "dtype": str(eng.dtype).replace("torch.", "")}
        return J

    def low_rank_features(self, Z: np.ndarray) -> np.ndarray | None:
        """Exact features of ``K = J J^T`` on the training rows when the network has
        fewer parameters than rows (``feature_form``), else ``None``.

        The caller decomposes them: the thin SVD ``J = U S W^T`` gives
        ``K = U diag(S^2) U^T`` (rank <= P) at O(n P^2) cost instead of the O(n^3)
        of an n x n eigendecomposition (``mixednn.spectral.LowRankBasis.from_features``).
        The matrix is cached for the training rows and shared with :meth:`gram` and
        :meth:`cross`; do not modify it.

        Parameters
        ----------
        Z : ndarray, shape (n, d)
            The (scaled) training inputs.

        Returns
        -------
        numpy.ndarray of shape (n, P), float64, or None
            The Jacobian ``J`` (one row per input row, one column per trainable
            parameter), or ``None`` when the n x n kernel is to be used.

        Examples
        --------
        >>> import torch, numpy as np
        >>> src = finite_network_source(torch.nn.Linear(2, 1))
        >>> src.low_rank_features(np.ones((5, 2))).shape   # 3 parameters < 5 rows
        (5, 3)
        >>> src.low_rank_features(np.ones((2, 2))) is None
        True
        """
        Zt = as_tensor(Z, self.dtype)
        eng = self.engine_for(Zt.shape[1])
        self._check_width(Zt, eng)
        if not self._use_features(Zt.shape[0], eng):
            return None
        return self._train_jacobian(Z, Zt, eng)

    def jacobian(self, Z: Any) -> np.ndarray:
        """Per-row parameter gradients ``J`` (n x P) of the network on inputs ``Z``.

        Computed in row blocks within ``max_memory`` (not cached).

        Parameters
        ----------
        Z : array_like, shape (n, d)
            (Scaled) network inputs.

        Returns
        -------
        numpy.ndarray, shape (n, P), float64

        Examples
        --------
        >>> import torch, numpy as np
        >>> net = torch.nn.Linear(2, 1)
        >>> finite_network_source(net).jacobian(np.array([[1.0, 2.0]])).tolist()
        [[1.0, 2.0, 1.0]]
        """
        Zt = as_tensor(Z, self.dtype)
        return jacobian_matrix(self.engine_for(Zt.shape[1]), Zt, self.max_memory)


def finite_network_source(network: Any, *, seed: int | None = 0, dtype: Any = torch.float64,
                          max_memory: int | None = None, block_rows: int | None = None,
                          feature_form: bool | str = "auto", method: str = "auto",
                          progress: bool | None = None) -> FiniteNetworkSource:
    """Kernel source for a finite network (``MLP(width=...)`` or a ``torch.nn.Module``).

    Pass the result as ``network=`` to :class:`~mixednn.MixedLMNTK` to set the
    options below; ``network=module`` uses the defaults.

    Parameters
    ----------
    network : MLP or torch.nn.Module
        An ``MLP`` spec with a finite ``width`` (its torch network, in the NTK
        parameterisation of the analytic kernel, is built with ``seed``) or any
        module with one scalar output per row.
    seed : int, optional
        Initialisation seed for an ``MLP`` spec (ignored for a module).
    dtype : torch.dtype
        Precision of the kernel computation (float64 by default).
    max_memory : int, optional
        Working-memory limit (bytes) of kernel builds, beyond the kernel itself.
    block_rows : int, optional
        Cap on rows per gradient block.
    feature_form : {"auto", True, False}
        Use the exact feature form (SVD of the n x P Jacobian) instead of the
        n x n kernel: ``"auto"`` when the network has fewer parameters than rows.
    method : {"auto", "module", "linear", "jacobian"}
        Kernel route (see :func:`empirical_ntk`).
    progress : bool, optional
        tqdm progress bar for long builds (auto by default).

    Returns
    -------
    FiniteNetworkSource

    Examples
    --------
    >>> import torch, numpy as np, mixednn as mn
    >>> from mixednn.kernels.empirical import finite_network_source
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    >>> src = finite_network_source(net, max_memory=2**26)
    >>> src.gram(np.eye(2)).shape
    (2, 2)
    """
    return FiniteNetworkSource(network, seed=seed, dtype=dtype, max_memory=max_memory,
                               block_rows=block_rows, feature_form=feature_form, method=method,
                               progress=progress)
