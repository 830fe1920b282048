"""Turn the user's ``network=`` / ``kernel=`` into a :class:`~.source.KernelSource`.

The top of the kernels layer: it imports the analytic kernel and the
interface, and the torch-backed :mod:`~mixednn.kernels.empirical` only when a
finite network is asked for (torch is heavy and optional).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .analytic import MLP
from .source import KernelSource

__all__ = ["resolve_kernel", "KernelFunction"]


class KernelFunction:
    """A user kernel ``k(Z1, Z2)`` as the training kernel ``k(Z, Z)`` and the cross-kernel
    ``k(Znew, Z)`` (bound methods, so the kernel source pickles whenever ``k`` does; the
    model wraps ``k`` in :class:`mixednn.persistence.UserFunction`, which saves a lambda
    with cloudpickle or names ``kernel=`` and the fix).

    Examples
    --------
    >>> import numpy as np
    >>> kf = KernelFunction(np.dot)
    >>> kf.cross(np.ones((1, 2)), np.ones((2, 3))).tolist()
    [[2.0, 2.0, 2.0]]
    """

    def __init__(self, k: Callable[..., Any]):
        self.k = k

    def gram(self, Z: np.ndarray) -> np.ndarray:
        return self.k(Z, Z)

    def cross(self, Znew: np.ndarray, Z: np.ndarray) -> np.ndarray:
        return self.k(Znew, Z)


def _callable_source(k: Callable[..., Any]) -> KernelSource:
    name = getattr(k, "__qualname__", None) or type(k).__name__
    fn = KernelFunction(k)
    return KernelSource(fn.gram, fn.cross, f"user kernel function {name}", user_supplied=True)


def resolve_kernel(network: Any = None, kernel: Any = None, *, has_inputs: bool) -> KernelSource:
    """Turn ``network=`` / ``kernel=`` into a :class:`KernelSource`.

    Parameters
    ----------
    network : MLP, torch.nn.Module or KernelSource, optional
        An :class:`~mixednn.kernels.analytic.MLP` spec (analytic infinite-width
        NTK when ``width=None``, the empirical NTK of its torch network
        otherwise), a torch module (empirical NTK) or a configured source (e.g.
        :func:`~mixednn.kernels.empirical.finite_network_source`), returned as
        is.  With neither argument the default architecture ``MLP()`` is used.
    kernel : array_like or callable, optional
        A precomputed n x n array or a callable ``k(Z1, Z2)``.
    has_inputs : bool
        Whether the model has network inputs (all but a precomputed kernel
        need them).

    Returns
    -------
    KernelSource

    Raises
    ------
    ValueError
        Both arguments given, or network inputs missing.
    TypeError
        ``network`` of an unsupported type.

    Examples
    --------
    >>> import numpy as np
    >>> src = resolve_kernel(MLP(depth=1), has_inputs=True)
    >>> src.gram(np.eye(2)).shape, src.description.startswith("MLP depth=1 relu")
    ((2, 2), True)
    """
    if network is not None and kernel is not None:
        raise ValueError("pass either network= or kernel=, not both")
    if kernel is not None:
        if callable(kernel) and not isinstance(kernel, np.ndarray):
            if not has_inputs:
                raise ValueError("a kernel function needs network inputs: pass ntk= (formula) "
                                 "or ntk_inputs= (arrays)")
            return _callable_source(kernel)
        K = np.asarray(kernel, dtype=float)
        return KernelSource(None, None, "precomputed kernel matrix (user supplied)",
                            precomputed=K, user_supplied=True)
    if network is None:
        network = MLP()
    if not has_inputs:
        raise ValueError("network= needs network inputs: pass ntk='~ x1 + x2' (or a list of "
                         "columns) to from_formula, or ntk_inputs= to MixedLMNTK")
    if isinstance(network, KernelSource):  # e.g. finite_network_source(module, max_memory=...)
        return network
    if isinstance(network, MLP):
        if network.width is None:
            return KernelSource(network.ntk, network.ntk, network.describe(), network=network)
        return _finite_source(network)
    if _is_torch_module(network):
        return _finite_source(network)
    raise TypeError(f"network= must be an mn.MLP spec or a torch.nn.Module, got "
                    f"{type(network).__name__}; for a kernel function use kernel=")


def _is_torch_module(obj: Any) -> bool:
    mod = type(obj).__module__ or ""
    if not mod.startswith("torch") and not hasattr(obj, "parameters"):
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, torch.nn.Module)


def _finite_source(network: Any) -> KernelSource:
    try:
        from .empirical import finite_network_source
    except ImportError:
        raise NotImplementedError(
            "finite-width networks (MLP(width=...) or a torch.nn.Module) need the empirical NTK "
            "module, which is not available in this build; use MLP(width=None) for the analytic "
            "kernel") from None
    return finite_network_source(network)
