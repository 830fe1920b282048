"""Finite-width torch MLP whose parameterisation matches :class:`~.analytic.MLP`.

Every layer computes ``W_std / sqrt(fan_in) * (x @ W.T) + b_std * b`` with all
entries of ``W`` and ``b`` drawn i.i.d. ``N(0, 1)`` (the NTK parameterisation
of Jacot et al. 2018 and of ``neural_tangents.stax.Dense(...,
parameterization='ntk')``, Novak et al. 2020); the activation follows every
hidden layer and a width-one readout layer ends the network.  Biases exist only
when ``bias_std > 0`` (stax's ``b_std=None`` otherwise).  As the width grows,
the network's output covariance over initialisations tends to
:meth:`MLP.nngp` and its empirical NTK
``sum_p df(x)/dp df(x')/dp`` to :meth:`MLP.ntk`.

The activation is the ``torch_fn`` of the spec's record in
:mod:`mixednn.kernels.activations`, the record the analytic kernel reads.

Examples
--------
>>> import torch
>>> from mixednn.kernels.analytic import MLP
>>> net = torch_module(MLP(depth=2, width=64), d=3, seed=0)
>>> net(torch.zeros(5, 3, dtype=torch.float64)).shape
torch.Size([5])
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from .activations import get_activation
from .analytic import MLP

__all__ = ["MLPNetwork", "torch_module", "empirical_ntk"]


class MLPNetwork(nn.Module):
    """Fully connected network in the NTK parameterisation.

    Parameters
    ----------
    spec : MLP
        Architecture; ``spec.width`` must be set.
    d : int
        Input dimension.
    seed : int, optional
        Seed of the ``N(0, 1)`` initialisation, drawn with
        ``numpy.random.default_rng(seed)`` layer by layer (weights, then
        biases); ``None``: fresh randomness.
    dtype : torch.dtype, default torch.float64

    Attributes
    ----------
    weights : torch.nn.ParameterList
        ``depth + 1`` matrices of shape ``(fan_out, fan_in)``.
    biases : torch.nn.ParameterList
        ``depth + 1`` vectors, empty when ``spec.bias_std == 0``.

    Notes
    -----
    ``forward`` maps an ``(n, d)`` tensor to an ``(n,)`` tensor (the scalar
    readout squeezed).

    Examples
    --------
    >>> from mixednn.kernels.analytic import MLP
    >>> net = MLPNetwork(MLP(depth=1, width=16, bias_std=0.1), d=2, seed=1)
    >>> sum(p.numel() for p in net.parameters()) == net.spec.n_params(2)
    True
    """

    def __init__(
        self, spec: MLP, d: int, seed: int | None = None, dtype: torch.dtype = torch.float64
    ) -> None:
        super().__init__()
        if not isinstance(spec, MLP):
            raise TypeError(f"spec must be an MLP, got {type(spec).__name__}")
        if spec.width is None:
            raise ValueError(
                "a finite network needs a width: use MLP(..., width=m) "
                "(the analytic kernels are those of width -> infinity)"
            )
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"d (input dimension) must be a positive integer; got {d!r}")
        self.spec = spec
        self.d = d
        self.activation = get_activation(spec.activation).torch_fn
        # numpy's generator (ziggurat) draws the N(0, 1) entries several times
        # faster than torch.randn in float64, which matters at width 4096
        rng = np.random.default_rng(seed)
        fans = [d] + [spec.width] * spec.depth
        outs = [spec.width] * spec.depth + [1]

        def draw(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.from_numpy(rng.standard_normal(shape)).to(dtype))

        self.weights = nn.ParameterList(draw(o, i) for i, o in zip(fans, outs))
        self.has_bias = spec.bias_std > 0
        self.biases = (
            nn.ParameterList(draw(o) for o in outs) if self.has_bias else nn.ParameterList()
        )

    def _layers(self, x: Tensor, keep: bool = False):
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"expected input of shape (n, {self.d}); got {tuple(x.shape)}")
        w_std, b_std = self.spec.weight_std, self.spec.bias_std
        h = x.to(self.weights[0].dtype)
        inputs, pre = [], []
        L = len(self.weights)
        for l, W in enumerate(self.weights):
            z = (w_std / math.sqrt(W.shape[1])) * (h @ W.T)
            if self.has_bias:
                z = z + b_std * self.biases[l]
            if keep:
                inputs.append(h)
                pre.append(z)
            h = self.activation(z) if l + 1 < L else z
        return h.squeeze(-1), inputs, pre

    def forward(self, x: Tensor) -> Tensor:
        """Network output, shape ``(n,)``."""
        return self._layers(x)[0]

    def features(self, x: Tensor) -> Tensor:
        """Last hidden layer's activations (the readout's input), shape ``(n, width)``.

        Given them, the output's covariance over the readout layer is
        ``W_std**2 / width * F F^T + b_std**2``; averaged over the hidden
        layers it is the NNGP (exactly so at depth 1, up to ``O(1/width)``
        deeper).
        """
        return self._layers(x, keep=True)[1][-1]

    def ntk(self, x1: Tensor, x2: Tensor | None = None) -> Tensor:
        """Empirical NTK ``sum_p df(x1)/dp df(x2)/dp`` over all parameters.

        Computed layer by layer: a weight ``W_l`` contributes
        ``W_std**2 / fan_in * (D_l D_l'^T) * (H_l H_l'^T)`` and a bias
        ``b_std**2 * D_l D_l'^T``, with ``H_l`` the layer's input and
        ``D_l = df/dz_l`` its back-propagated output gradient (one backward
        pass per input set).  This equals :func:`empirical_ntk` exactly, at a
        cost linear in the number of parameters.

        Parameters
        ----------
        x1 : Tensor, shape (n1, d)
        x2 : Tensor, shape (n2, d), optional (``None``: ``x1``)

        Returns
        -------
        Tensor, shape (n1, n2)
        """
        f1 = self._signals(x1)
        f2 = f1 if x2 is None else self._signals(x2)
        w2, b2 = self.spec.weight_std**2, self.spec.bias_std**2
        out = None
        for (h1, g1), (h2, g2) in zip(f1, f2):
            gg = g1 @ g2.T
            term = gg * (h1 @ h2.T) * (w2 / h1.shape[1])
            if self.has_bias:
                term = term + b2 * gg
            out = term if out is None else out + term
        return out

    def _signals(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        with torch.enable_grad():
            y, inputs, pre = self._layers(x, keep=True)
            grads = torch.autograd.grad(y.sum(), pre)
        return [(h.detach(), g.detach()) for h, g in zip(inputs, grads)]


def torch_module(
    mlp: MLP, d: int, seed: int | None = None, dtype: torch.dtype = torch.float64
) -> MLPNetwork:
    """Build the finite-width network of ``mlp`` (``mlp.width`` must be set).

    Parameters
    ----------
    mlp : MLP
        Architecture and parameterisation.
    d : int
        Input dimension.
    seed : int, optional
        Seed of the ``N(0, 1)`` initialisation.
    dtype : torch.dtype, default torch.float64

    Returns
    -------
    MLPNetwork
        ``forward`` maps ``(n, d)`` to ``(n,)``.

    Examples
    --------
    >>> from mixednn.kernels.analytic import MLP
    >>> net = torch_module(MLP(depth=1, width=32), d=4, seed=0)
    >>> type(net).__name__
    'MLPNetwork'
    """
    return MLPNetwork(mlp, d, seed=seed, dtype=dtype)


def empirical_ntk(module: nn.Module, x1: Tensor, x2: Tensor | None = None) -> Tensor:
    """Generic empirical NTK of a scalar-output module via ``torch.func``.

    ``Theta = sum_p J_p(x1) J_p(x2)^T`` with per-example Jacobians from
    ``vmap(jacrev(...))``, one parameter tensor at a time (memory
    ``n * numel`` for the largest tensor).

    Parameters
    ----------
    module : torch.nn.Module
        Maps ``(n, d)`` to ``(n,)`` or ``(n, 1)``.
    x1 : Tensor, shape (n1, d)
    x2 : Tensor, shape (n2, d), optional

    Returns
    -------
    Tensor, shape (n1, n2)
    """
    from torch.func import functional_call, jacrev, vmap

    params = {k: v.detach() for k, v in module.named_parameters()}

    def jac(x: Tensor, name: str) -> Tensor:
        def f(p: Tensor, xi: Tensor) -> Tensor:
            ps = dict(params)
            ps[name] = p
            return functional_call(module, ps, (xi.unsqueeze(0),)).reshape(())

        J = vmap(jacrev(f), in_dims=(None, 0))(params[name], x)
        return J.reshape(x.shape[0], -1)

    out = None
    for name in params:
        J1 = jac(x1, name)
        J2 = J1 if x2 is None else jac(x2, name)
        term = J1 @ J2.T
        out = term if out is None else out + term
    return out
