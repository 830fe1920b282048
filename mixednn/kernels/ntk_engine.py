"""The gradient machinery of one finite torch network, for its empirical NTK.

:class:`NTKEngine` holds a float64 (or ``dtype``) copy of a network with one scalar
output per row and computes, for a block of rows, what each route of
:mod:`mixednn.kernels.empirical` needs:

* ``"module"`` -- the network's own ``ntk(x1, x2)`` (e.g.
  :class:`~mixednn.kernels.torch_mlp.MLPNetwork`), :meth:`NTKEngine.module_ntk`;
* ``"linear"`` -- when every trainable parameter is the weight or bias of a
  :class:`torch.nn.Linear` layer called once per forward pass, the layer inputs
  ``A`` and back-propagated signals ``D`` of each layer
  (:meth:`NTKEngine.linear_features`), combined as
  ``sum_layers (D D^T) * (A A^T + 1[bias])`` (:meth:`NTKEngine.combine_linear`);
* ``"jacobian"`` -- per-row Jacobians by ``torch.func`` ``vmap(jacrev)``
  (:meth:`NTKEngine.jacobian_block`), for any module.

:meth:`NTKEngine.decide` picks the route once (verifying it on two rows against
plain autograd gradients) and :meth:`NTKEngine.costs` gives its memory model.  The
blocked computation of whole kernels and Jacobians within a memory limit is in
:mod:`mixednn.kernels.ntk_blocks`.

References
----------
Novak, Sohl-Dickstein & Schoenholz (2022). Fast finite width neural tangent
kernel. ICML.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

__all__ = ["NTKEngine"]


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
    linear_layers : list of (name, torch.nn.Linear, bool, bool) or None
        The trainable ``nn.Linear`` layers with whether their weight and bias are
        trainable, or ``None`` when other trainable parameters exist (no ``"linear"``
        route).
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
        self.linear_layers = self._find_linear_layers()

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
    def _find_linear_layers(self) -> list[tuple[str, torch.nn.Linear, bool, bool]] | None:
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
        if self.linear_layers is None:
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
        layers = self.linear_layers
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
        assert self.linear_layers is not None
        width = sum(mod.in_features + mod.out_features for _, mod, _, _ in self.linear_layers)
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
