"""Training operators: architecture specs and user kernels -> K(Z1, Z2).

:func:`resolve_kernel` turns what the user passed (``network=`` or ``kernel=``)
into a :class:`KernelSource`, the one interface the model uses: the training
kernel, the cross-kernel for new rows, and a description for the summary.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .analytic import MLP

__all__ = ["MLP", "KernelSource", "resolve_kernel"]


class KernelSource:
    """Where the training kernel comes from.

    Parameters
    ----------
    gram : callable ``Z -> K`` or None
        Builds the n x n training kernel from the (scaled) network inputs.
    cross : callable ``(Znew, Z) -> K*`` or None
        Builds the m x n cross-kernel; ``None`` for a precomputed matrix (the
        user then supplies ``kernel=`` to ``predict``).
    description : str
        One line for the summary: architecture and kernel convention.
    precomputed : ndarray, optional
        A user-supplied training kernel.
    user_supplied : bool
        Whether the kernel comes from the user (checked for symmetry and PSD).
    """

    def __init__(self, gram: Callable[[np.ndarray], np.ndarray] | None,
                 cross: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
                 description: str, *, precomputed: np.ndarray | None = None,
                 user_supplied: bool = False, network: Any = None):
        self._gram = gram
        self._cross = cross
        self.description = description
        self.precomputed = precomputed
        self.user_supplied = user_supplied
        self.network = network

    @property
    def needs_inputs(self) -> bool:
        return self.precomputed is None

    @property
    def can_cross(self) -> bool:
        return self._cross is not None

    def gram(self, Z: np.ndarray | None) -> np.ndarray:
        if self.precomputed is not None:
            return self.precomputed
        return np.asarray(self._gram(Z), dtype=float)

    def cross(self, Znew: np.ndarray, Z: np.ndarray) -> np.ndarray:
        if self._cross is None:
            raise ValueError("this model was fit with a precomputed kernel matrix; pass the "
                             "cross-kernel (new rows x training rows) as predict(..., kernel=K_new)")
        return np.asarray(self._cross(Znew, Z), dtype=float)


def _callable_source(k: Callable[..., Any]) -> KernelSource:
    name = getattr(k, "__qualname__", None) or type(k).__name__
    return KernelSource(lambda Z: k(Z, Z), lambda Znew, Z: k(Znew, Z),
                        f"user kernel function {name}", user_supplied=True)


def resolve_kernel(network: Any = None, kernel: Any = None, *, has_inputs: bool) -> KernelSource:
    """Turn ``network=`` / ``kernel=`` into a :class:`KernelSource`.

    ``kernel=`` takes a precomputed n x n array or a callable ``k(Z1, Z2)``;
    ``network=`` takes an :class:`MLP` spec (analytic infinite-width NTK when
    ``width=None``).  With neither, the default architecture ``MLP()`` is used.
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
            return KernelSource(network.ntk, lambda Znew, Z: network.ntk(Znew, Z),
                                network.describe(), network=network)
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
