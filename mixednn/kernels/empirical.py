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

The per-network gradient machinery (:class:`~mixednn.kernels.ntk_engine.NTKEngine`,
route choice and verification) is in :mod:`mixednn.kernels.ntk_engine`, the blocked
computation of kernels and Jacobians within ``max_memory``
(:func:`~mixednn.kernels.ntk_blocks.jacobian_matrix`) in
:mod:`mixednn.kernels.ntk_blocks`; both names are re-exported here.  This module
holds the user-facing functions and the kernel source :class:`FiniteNetworkSource`.

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
import time
from typing import Any

import numpy as np
import torch

from .analytic import MLP
from .ntk_blocks import blocked_ntk, jacobian_matrix
from .ntk_engine import NTKEngine
from .source import KernelSource

__all__ = ["empirical_ntk", "network_jacobian", "network_output", "FiniteNetworkSource",
           "finite_network_source", "DEFAULT_MAX_MEMORY", "as_tensor", "resolve_dtype",
           # re-exported from ntk_engine / ntk_blocks, where they are defined
           "NTKEngine", "jacobian_matrix"]

#: Default working-memory limit of a kernel build (bytes), beyond the returned kernel.
DEFAULT_MAX_MEMORY = 1 << 30


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
    """``max_memory`` as a positive number of bytes (``None``: :data:`DEFAULT_MAX_MEMORY`)."""
    if max_memory is None:
        return DEFAULT_MAX_MEMORY
    try:
        m = int(max_memory)
    except (TypeError, ValueError):
        raise ValueError(f"max_memory must be a number of bytes, got {max_memory!r}") from None
    if m <= 0:
        raise ValueError(f"max_memory must be positive, got {max_memory!r}")
    return m


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
    K, _ = blocked_ntk(engine, Z1t, Z2t, max_memory=_check_memory(max_memory),
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
                    f"W_std={network.weight_std:g}, b_std={network.bias_std:g}, "
                    f"NTK parameterisation, finite width "
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

    def saved_without_rows(self) -> "FiniteNetworkSource":
        """What a save with ``remove_data=True`` stores (:mod:`mixednn.persistence`): a copy
        without the cached n x P Jacobian of the training rows (recomputed from the kept
        network inputs when new rows need it), or this source when nothing is cached."""
        if self._jac_cache is None:
            return self
        new = copy.copy(self)
        new._jac_cache = None
        # the kernel functions are bound methods of this source: rebind them to the copy
        new._gram, new._cross = new.gram_method, new.cross_method
        return new

    @property
    def gram_method(self) -> Any:
        """This source's own training-kernel function (bound to it)."""
        return FiniteNetworkSource._gram.__get__(self)

    @property
    def cross_method(self) -> Any:
        """This source's own cross-kernel function (bound to it)."""
        return FiniteNetworkSource._cross.__get__(self)

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
        K, info = blocked_ntk(eng, Zt, None, max_memory=self.max_memory,
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
        K, info = blocked_ntk(eng, Zn, Zt, max_memory=self.max_memory,
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
