"""Infinite-width NNGP and neural tangent kernels of fully connected networks.

This module computes, in closed form where one exists and by two-dimensional
Gauss--Hermite quadrature otherwise, the neural network Gaussian process
(NNGP) kernel and the neural tangent kernel (NTK; Jacot et al. 2018) of a
fully connected network of infinite width.  The conventions are exactly those
of ``neural_tangents.stax`` (Novak et al. 2020), so a user moving from that
library obtains identical kernel values:

.. code-block:: python

    # neural-tangents equivalent of MLP(depth, act, W, b)
    stax.serial(*[stax.Dense(width, W_std=W, b_std=b, parameterization="ntk"),
                  Act()] * depth,
                stax.Dense(1, W_std=W, b_std=b, parameterization="ntk"))

The kernel recursion (``docs/model.md`` section 5), for inputs ``x, x'`` of
dimension ``d``, writing ``sw2 = weight_std**2`` and ``sb2 = bias_std**2``:

* input:          ``S(x, x') = x.x' / d``, ``T(x, x') = 0``;
* ``Dense``:      ``S <- sw2 * S + sb2`` and ``T <- S_new + sw2 * T``;
* activation:     ``S <- E[phi(a) phi(b)]`` and ``T <- T * E[phi'(a) phi'(b)]``,
  with ``(a, b) ~ N(0, [[S(x,x), S(x,x')], [S(x,x'), S(x',x')]])``.

The network is ``depth`` times (``Dense`` then activation) followed by a
``Dense`` readout of width one, so the first and the readout layer both carry a
bias (when ``bias_std > 0``) and the input enters through ``x.x'/d``.  The
returned NTK is that of the scalar output with respect to *all* parameters
(weights and biases of every layer) in the NTK parameterisation, i.e. the
limit of ``sum_p df(x)/dp df(x')/dp`` as the width grows; it equals the
Jacot et al. (2018) and Arora et al. (2019) kernels up to these conventions.

Exact closed forms are used for ``relu`` / ``abs`` / ``leaky_relu``
(arc-cosine kernels, Cho & Saul 2009), ``erf`` (arcsine kernel, Williams
1997), ``gelu`` (the closed form used by ``stax.Gelu``; Tsuchida et al. 2021)
and ``identity``.  ``tanh`` and ``sigmoid`` are written as a ten-term scale
mixture of erfs, ``tanh(x) ~ sum_k A_k erf(B_k x)`` (sup error 4e-10, and
8e-10 for the derivative), whose kernels are sums of Williams' arcsine terms;
``softplus`` as the antiderivative of the matching sigmoid mixture, whose
kernels follow from Price's theorem (sup error about 1e-8).  These are exact
kernels of a network whose activation differs from the nominal one by less
than 1e-8, hence accurate uniformly in the pre-activation variance and
positive semi-definite.  Tensor-product Gauss--Hermite quadrature of the
bivariate normal (after a Cholesky factorisation of its 2x2 covariance) is
available for every activation (:func:`gaussian_expectations`, and
``MLP(quadrature_nodes=n)`` for tanh / sigmoid / softplus) as a cross-check
and as the generic fallback for activations without a closed form; it is
what ``stax.Elementwise`` does numerically, but it loses accuracy for
saturating activations at large pre-activation variance.

Each activation's numpy and torch functions and its closed-form /
quadrature data are one record of :mod:`mixednn.kernels.activations`, which
the finite-width network of :mod:`mixednn.kernels.torch_mlp` reads too.

This module is the user-facing side: the architecture spec :class:`MLP` with
its kernel methods, :func:`gaussian_expectations` and input validation.  The
closed-form dual activations are in :mod:`mixednn.kernels.dual`, their
quadrature in :mod:`mixednn.kernels.quadrature`, and the tiled, multithreaded
layer recursion in :mod:`mixednn.kernels.recursion`.

References
----------
Jacot, Gabriel & Hongler (2018). Neural tangent kernel: convergence and
generalization in neural networks. NeurIPS.
Arora, Du, Hu, Li, Salakhutdinov & Wang (2019). On exact computation with an
infinitely wide neural net. NeurIPS.
Cho & Saul (2009). Kernel methods for deep learning. NeurIPS.
Williams (1997). Computing with infinite networks. NeurIPS.
Novak, Xiao, Hron, Lee, Alemi, Sohl-Dickstein & Schoenholz (2020). Neural
Tangents: fast and easy infinite neural networks in Python. ICLR.
Tsuchida, Pearce, van der Heide, Roosta & Gallagher (2021). Avoiding kernel
fixed points: computing with ELU and GELU infinite networks. AAAI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .activations import DualForm, canonical_activation, get_activation
from .dual import CLOSED_STEPS, MIXTURE_FORMS, Step
from .quadrature import check_nodes, make_step_quadrature
from .recursion import LayerRecursion

__all__ = [
    "MLP",
    "gaussian_expectations",
]


# ---------------------------------------------------------------------------
# Dual activations, for one covariance at a time
# ---------------------------------------------------------------------------


def gaussian_expectations(
    activation: str,
    k11: Any,
    k12: Any,
    k22: Any,
    method: str = "auto",
    n_nodes: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Dual activation ``E[phi(a) phi(b)]`` and ``E[phi'(a) phi'(b)]``.

    Parameters
    ----------
    activation : str
        A key of :data:`mixednn.kernels.activations.ACTIVATIONS`.
    k11, k12, k22 : array_like
        Entries of the covariance of ``(a, b)``, broadcast against each other.
    method : {"auto", "closed", "quadrature"}
        ``"auto"`` uses the closed form where there is one, else quadrature.
    n_nodes : int
        Gauss-Hermite nodes of the inner dimension of the quadrature (the
        outer one gets ``min(200, 3 * n_nodes)``).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The two expectations, with the broadcast shape of the inputs.

    Examples
    --------
    >>> e, de = gaussian_expectations("relu", 1.0, 0.0, 1.0)
    >>> round(float(e), 6), float(de)   # 1/(2 pi) and 1/4
    (0.159155, 0.25)
    """
    name = canonical_activation(activation)
    spec = get_activation(name).dual
    k11, k12, k22 = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (k11, k12, k22))
    )
    shape = k12.shape
    K = np.array(k12, dtype=np.float64).reshape(-1)
    Q1 = np.array(k11).reshape(-1)
    Q2 = np.array(k22).reshape(-1)
    T = np.ones_like(K)
    if method == "auto":
        method = "closed" if spec.closed is not None else "quadrature"
    if method == "closed":
        if spec.closed is None:
            raise ValueError(f"activation {name!r} has no closed form; use method='quadrature'")
        step = CLOSED_STEPS[spec.closed]
    elif method == "quadrature":
        if spec.h is None:  # identity
            step = CLOSED_STEPS["identity"]
        else:
            step = make_step_quadrature(check_nodes(n_nodes))
    else:
        raise ValueError(f"method must be 'auto', 'closed' or 'quadrature'; got {method!r}")
    # with sw2 = 1, sb2 = 0 and T = 1: K_new = E[phi phi], T_new = K_new + E[phi' phi']
    Kn, Tn = step(spec, K, T, Q1, Q2, 1.0, 0.0)
    return Kn.reshape(shape), (Tn - Kn).reshape(shape)


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


def _as_inputs(Z: Any, name: str) -> np.ndarray:
    """``Z`` as a C-contiguous float64 ``(n, d)`` array, ``d >= 1``, all finite."""
    if Z is None:
        raise ValueError(f"{name} must be a 2-D array of shape (n, d); got None")
    try:
        arr = np.asarray(Z)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name} could not be converted to a numeric array: {exc}") from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be a numeric array; got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real-valued; got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = " (use Z.reshape(-1, 1) for a single feature)" if arr.ndim == 1 else ""
        raise ValueError(
            f"{name} must be a 2-D array of shape (n, d); got {arr.ndim}-D array "
            f"with shape {arr.shape}{hint}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column (d >= 1); got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def _input_pair(Z1: Any, Z2: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validated ``(X1, X2, sym)``; ``sym`` (and ``X2 is X1``) when ``Z2`` is ``None`` or
    equal to ``Z1``."""
    X1 = _as_inputs(Z1, "Z1")
    if Z2 is None:
        return X1, X1, True
    X2 = _as_inputs(Z2, "Z2")
    if X2.shape[1] != X1.shape[1]:
        raise ValueError(
            f"Z1 and Z2 must have the same number of columns d; got "
            f"{X1.shape[1]} and {X2.shape[1]}"
        )
    sym = X2.shape == X1.shape and (X2 is X1 or np.array_equal(X1, X2))
    if sym:
        X2 = X1
    return X1, X2, sym


def _check_dim(d: Any) -> int:
    if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d (input dimension) must be a positive integer; got {d!r}")
    return int(d)


# ---------------------------------------------------------------------------
# The kernel
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MLP:
    """Infinite-width NNGP / NTK of a fully connected network (stax conventions).

    The network is ``depth`` hidden layers ``Dense(width) -> activation``
    followed by a ``Dense(1)`` readout, every ``Dense`` in the NTK
    parameterisation ``W_std / sqrt(fan_in) * x @ W.T + b_std * b`` with
    ``W, b ~ N(0, 1)``; this is exactly neural-tangents'
    ``stax.serial(*[Dense(width, W_std, b_std, parameterization='ntk'),
    Act()] * depth, Dense(1, W_std, b_std, parameterization='ntk'))``
    (Novak et al. 2020), so kernel values agree with ``kernel_fn(x1, x2)``.

    Parameters
    ----------
    depth : int, default 2
        Number of hidden layers (0 gives the linear kernel
        ``W_std**2 x.x'/d + b_std**2``).
    activation : str, default "relu"
        A key of :data:`mixednn.kernels.activations.ACTIVATIONS` (any
        spelling :func:`~mixednn.kernels.activations.canonical_activation`
        accepts): exact closed forms for ``relu``,
        ``abs``, ``leaky_relu`` (slope 0.01), ``erf``, ``gelu`` and
        ``identity`` / ``linear``; closed forms of a fitted erf-mixture
        surrogate (activation error < 1e-8) for ``tanh``, ``sigmoid`` and
        ``softplus``.
    weight_std : float, default 1.0
        ``W_std``; every layer's weight variance is ``W_std**2 / fan_in``.
    bias_std : float, default 0.0
        ``b_std``; 0 means no bias parameters at all (stax's ``b_std=None``).
    width : int or None, default None
        Hidden width of the finite network (only for :meth:`n_params` and
        :func:`mixednn.kernels.torch_mlp.torch_module`); the kernels are
        always the infinite-width ones.
    quadrature_nodes : int or None, default None
        ``None`` uses the closed forms above.  An integer switches ``tanh``,
        ``sigmoid`` and ``softplus`` to 2-D Gauss-Hermite quadrature with this
        many inner nodes (the outer dimension, which dominates the error,
        gets ``min(200, 3 * quadrature_nodes)``); other activations ignore
        it.  Quadrature error for tanh with 32 nodes is about 1e-7 at
        pre-activation variance 1, 2e-4 at 2 and 3e-3 at 4 (derivative
        kernel), which is why it is not the default.

    Notes
    -----
    The recursion (``docs/model.md`` section 5) starts from
    ``S = x.x'/d`` and ``T = 0``; a Dense layer maps ``S -> W^2 S + b^2`` and
    ``T -> S_new + W^2 T``; an activation maps ``S -> E[phi(a) phi(b)]`` and
    ``T -> T E[phi'(a) phi'(b)]`` with ``(a, b)`` Gaussian with the previous
    layer's covariance (Jacot et al. 2018; Arora et al. 2019).  Closed forms:
    arc-cosine kernels for ReLU-type activations (Cho & Saul 2009), arcsine
    kernel for erf (Williams 1997).  The computation is tiled (a few small
    tiles per thread in cache) and multithreaded over tiles
    (``MIXEDNN_NUM_THREADS`` caps the threads); with ``Z2=None`` (or ``Z2``
    equal to ``Z1``) only the upper triangle is computed and mirrored, so the
    result is exactly symmetric, with correlation exactly 1 on its diagonal.
    In a cross-kernel, coincident points of ``Z1`` and ``Z2`` are exact for the
    ReLU-type activations without biases (the default) and accurate to about
    1e-8 relative with biases, the conditioning of ``arccos`` at 1 (as in
    neural-tangents).  Memory: the outputs plus a few tile-sized buffers.

    Examples
    --------
    >>> import numpy as np
    >>> k = MLP(depth=1, activation="relu")
    >>> Z = np.array([[1.0, 0.0], [1.0, 1.0]])
    >>> np.round(k.ntk(Z), 4)
    array([[0.5   , 0.4546],
           [0.4546, 1.    ]])
    >>> k.describe()  # doctest: +NORMALIZE_WHITESPACE
    'MLP depth=1 relu, W_std=1, b_std=0, NTK parameterisation (neural-tangents stax),
     infinite width'
    """

    depth: int = 2
    activation: str = "relu"
    weight_std: float = 1.0
    bias_std: float = 0.0
    width: int | None = None
    quadrature_nodes: int | None = None

    def __post_init__(self) -> None:
        d = self.depth
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 0:
            raise ValueError(f"depth must be a non-negative integer; got {d!r}")
        object.__setattr__(self, "depth", int(d))
        object.__setattr__(self, "activation", canonical_activation(self.activation))
        for nm, v, lo in (("weight_std", self.weight_std, 0.0), ("bias_std", self.bias_std, 0.0)):
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"{nm} must be a real number; got {v!r}") from None
            if not math.isfinite(fv) or fv < lo or (nm == "weight_std" and fv == 0.0):
                cond = "> 0" if nm == "weight_std" else ">= 0"
                raise ValueError(f"{nm} must be finite and {cond}; got {v!r}")
            object.__setattr__(self, nm, fv)
        w = self.width
        if w is not None:
            if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, np.integer)) or w < 1:
                raise ValueError(f"width must be None or a positive integer; got {w!r}")
            object.__setattr__(self, "width", int(w))
        if self.quadrature_nodes is not None:
            object.__setattr__(self, "quadrature_nodes", check_nodes(self.quadrature_nodes))

    # -- public API ---------------------------------------------------------

    def ntk(self, Z1: Any, Z2: Any = None) -> np.ndarray:
        """Neural tangent kernel matrix.

        Parameters
        ----------
        Z1 : array_like, shape (n1, d)
            Inputs (rows are observations).
        Z2 : array_like, shape (n2, d), optional
            Second set of inputs; ``None`` (or an array equal to ``Z1``) gives
            the exactly symmetric ``n1 x n1`` Gram matrix of ``Z1``.

        Returns
        -------
        numpy.ndarray, shape (n1, n2), float64
            ``Theta(z1_i, z2_j)``.

        Examples
        --------
        >>> import numpy as np
        >>> MLP(depth=2).ntk(np.eye(3)).shape
        (3, 3)
        """
        return self._compute(Z1, Z2, want_nngp=False, want_ntk=True)[1]

    def nngp(self, Z1: Any, Z2: Any = None) -> np.ndarray:
        """NNGP kernel (covariance of the network output at initialisation).

        Parameters
        ----------
        Z1 : array_like, shape (n1, d)
        Z2 : array_like, shape (n2, d), optional
            ``None`` means ``Z1`` against itself (exactly symmetric result).

        Returns
        -------
        numpy.ndarray, shape (n1, n2), float64

        Examples
        --------
        >>> import numpy as np
        >>> float(MLP(depth=0, bias_std=1.0).nngp(np.ones((1, 4)))[0, 0])
        2.0
        """
        return self._compute(Z1, Z2, want_nngp=True, want_ntk=False)[0]

    def kernels(self, Z1: Any, Z2: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """NNGP and NTK computed in one pass.

        Parameters
        ----------
        Z1 : array_like, shape (n1, d)
        Z2 : array_like, shape (n2, d), optional

        Returns
        -------
        nngp, ntk : numpy.ndarray, shape (n1, n2), float64

        Examples
        --------
        >>> import numpy as np
        >>> K, T = MLP(depth=1, activation="erf").kernels(np.eye(2))
        >>> bool(np.all(T >= K))
        True
        """
        K, T = self._compute(Z1, Z2, want_nngp=True, want_ntk=True)
        return K, T

    def describe(self) -> str:
        """One-line human description of the kernel and its convention.

        Examples
        --------
        >>> print(MLP(depth=3, activation="tanh", weight_std=1.5, bias_std=0.1).describe())
        ... # doctest: +NORMALIZE_WHITESPACE
        MLP depth=3 tanh, W_std=1.5, b_std=0.1, NTK parameterisation (neural-tangents stax),
        infinite width
        """
        width = "infinite width" if self.width is None else (
            f"infinite width (finite network width={self.width})"
        )
        return (
            f"MLP depth={self.depth} {self.activation}, W_std={self.weight_std:g}, "
            f"b_std={self.bias_std:g}, NTK parameterisation (neural-tangents stax), {width}"
        )

    def n_params(self, d: int) -> int:
        """Number of trainable parameters of the finite network.

        Weights of all ``depth + 1`` layers, plus one bias per unit in every
        layer (readout included) when ``bias_std > 0`` (none when it is 0).

        Parameters
        ----------
        d : int
            Input dimension.

        Returns
        -------
        int

        Examples
        --------
        >>> MLP(depth=2, width=10, bias_std=0.1).n_params(3)
        161
        """
        if self.width is None:
            raise ValueError("n_params needs a finite width; construct MLP(..., width=m)")
        d = _check_dim(d)
        m = self.width
        fans = [d] + [m] * self.depth
        outs = [m] * self.depth + [1]
        nb = sum(outs) if self.bias_std > 0 else 0
        return int(sum(i * o for i, o in zip(fans, outs)) + nb)

    def ntk_diagonal(self, Z: Any) -> np.ndarray:
        """Diagonal ``Theta(z_i, z_i)`` of the NTK, in O(n d) time and O(n) memory.

        The layer recursion (``docs/model.md`` section 5) is run on the
        diagonal alone, where the correlation of a point with itself is exactly
        1, with the same closed form (or, with ``quadrature_nodes``, the same
        quadrature) as :meth:`ntk`; no ``n x n`` matrix is formed.

        Parameters
        ----------
        Z : array_like, shape (n, d)
            Inputs (rows are observations).

        Returns
        -------
        numpy.ndarray, shape (n,), float64
            ``Theta(z_i, z_i)``; equals ``np.diag(self.ntk(Z))`` up to rounding.

        Examples
        --------
        >>> import numpy as np
        >>> m = MLP(depth=2, activation="tanh", bias_std=0.1)
        >>> Z = np.random.default_rng(0).normal(size=(5, 3))
        >>> bool(np.allclose(m.ntk_diagonal(Z), np.diag(m.ntk(Z)), rtol=1e-12, atol=0))
        True
        """
        X = _as_inputs(Z, "Z")
        if X.shape[0] == 0:
            return np.empty(0)
        return self._recursion().diagonal_ntk(X)

    # -- internals ----------------------------------------------------------

    def _dual(self) -> DualForm:
        return get_activation(self.activation).dual

    def _uses_quadrature(self) -> bool:
        spec = self._dual()
        return spec.closed is None or (
            self.quadrature_nodes is not None and spec.closed in MIXTURE_FORMS
        )

    def _step(self) -> Step:
        spec = self._dual()
        if self._uses_quadrature():
            return make_step_quadrature(self.quadrature_nodes or 32)
        return CLOSED_STEPS[spec.closed]

    def _tile_size(self) -> int:
        if self._uses_quadrature():  # keep B (tile x nodes) ~ 1 MB
            return max(8, int(math.sqrt(131072 / (self.quadrature_nodes or 32))))
        if self._dual().closed in MIXTURE_FORMS:  # 10 x tile terms
            return 64
        return 128

    def _recursion(self) -> LayerRecursion:
        """The layer recursion of this architecture (:mod:`mixednn.kernels.recursion`)."""
        return LayerRecursion(
            spec=self._dual(),
            step=self._step(),
            depth=self.depth,
            sw2=self.weight_std**2,
            sb2=self.bias_std**2,
            tile_size=self._tile_size(),
            cost_per_entry=(self.quadrature_nodes or 32) ** 2 if self._uses_quadrature() else 1,
        )

    def _compute(
        self, Z1: Any, Z2: Any, want_nngp: bool, want_ntk: bool
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        X1, X2, sym = _input_pair(Z1, Z2)
        return self._recursion().matrices(X1, X2, sym, want_nngp, want_ntk)
