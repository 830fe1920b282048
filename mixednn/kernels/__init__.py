"""Training operators: architecture specs and user kernels -> K(Z1, Z2).

:func:`resolve_kernel` turns what the user passed (``network=`` or ``kernel=``)
into a :class:`KernelSource`, the one interface the model uses: the training
kernel, the cross-kernel for new rows, and a description for the summary.

Modules, bottom to top (each imports only from those before it):

* :mod:`~mixednn.kernels.activations` -- one record per activation (numpy and
  torch functions, closed-form / quadrature data);
* :mod:`~mixednn.kernels.source` -- the :class:`KernelSource` interface;
* :mod:`~mixednn.kernels.dual` -- closed-form dual activations (one activation and
  Dense step of the NNGP / NTK recursion);
* :mod:`~mixednn.kernels.quadrature` -- the same steps by Gauss-Hermite quadrature;
* :mod:`~mixednn.kernels.recursion` -- the tiled, multithreaded layer recursion;
* :mod:`~mixednn.kernels.analytic` -- the infinite-width NNGP / NTK (:class:`MLP`);
* :mod:`~mixednn.kernels.torch_mlp` -- the matching finite torch network (torch);
* :mod:`~mixednn.kernels.ntk_engine` -- gradient machinery of one finite network (torch);
* :mod:`~mixednn.kernels.ntk_blocks` -- its NTK and Jacobian in memory-bounded blocks
  (torch);
* :mod:`~mixednn.kernels.empirical` -- empirical NTK of finite torch networks and
  their kernel source (torch);
* :mod:`~mixednn.kernels.resolve` -- :func:`resolve_kernel`.

This package file only re-exports; importing it does not import torch.
"""

from __future__ import annotations

from .activations import ACTIVATIONS, Activation, canonical_activation, get_activation
from .analytic import MLP
from .resolve import resolve_kernel
from .source import KernelSource

__all__ = ["MLP", "KernelSource", "resolve_kernel", "ACTIVATIONS", "Activation",
           "canonical_activation", "get_activation"]
