"""The kernel-source interface: what the model asks of a training operator.

A :class:`KernelSource` gives the training kernel ``K(Z, Z)``, the
cross-kernel for new rows and a one-line description for the summary.
:func:`mixednn.kernels.resolve.resolve_kernel` builds one from what the user
passed; :class:`~mixednn.kernels.empirical.FiniteNetworkSource` extends it for
finite torch networks.  This module imports nothing from mixednn.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np

__all__ = ["KernelSource"]


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
    network : object, optional
        The architecture the kernel belongs to (an ``MLP`` spec or a torch
        module), or ``None``.
    estimated_params : int
        Kernel hyperparameters estimated from the response (``mixednn.hyper``):
        they count in AIC/BIC, and a test of t = 0 on this kernel is
        anticonservative (they exist only when t > 0).  0 for a kernel fixed in
        advance.

    Attributes
    ----------
    finite : bool
        ``True`` for the empirical kernel of a finite network (subclasses).

    Examples
    --------
    >>> import numpy as np
    >>> src = KernelSource(lambda Z: Z @ Z.T, lambda Zn, Z: Zn @ Z.T, "linear kernel")
    >>> src.gram(np.eye(2)).tolist(), src.can_cross, src.low_rank_features(np.eye(2))
    ([[1.0, 0.0], [0.0, 1.0]], True, None)
    """

    finite: bool = False

    def __init__(self, gram: Callable[[np.ndarray], np.ndarray] | None,
                 cross: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
                 description: str, *, precomputed: np.ndarray | None = None,
                 user_supplied: bool = False, network: Any = None,
                 estimated_params: int = 0):
        self._gram = gram
        self._cross = cross
        self.description = description
        self.precomputed = precomputed
        self.user_supplied = user_supplied
        self.network = network
        self.estimated_params = int(estimated_params)

    def with_estimated_params(self, k: int) -> "KernelSource":
        """A copy of this source that records ``k`` hyperparameters estimated from y."""
        new = copy.copy(self)
        new.estimated_params = int(k)
        return new

    @property
    def needs_inputs(self) -> bool:
        """Whether the kernel is computed from network inputs (not precomputed)."""
        return self.precomputed is None and not self.matrix_removed

    #: True when a precomputed matrix was left out of a saved fit (``remove_data=True``)
    matrix_removed: bool = False

    def saved_without_rows(self) -> "KernelSource":
        """What a save with ``remove_data=True`` stores (:mod:`mixednn.persistence`): a copy
        without a precomputed n x n matrix (prediction takes the cross-kernel from the
        user, as always), or this source when it holds none."""
        if self.precomputed is None:
            return self
        new = copy.copy(self)
        new.precomputed = None
        new.matrix_removed = True
        return new

    @property
    def can_cross(self) -> bool:
        """Whether a cross-kernel for new rows can be computed."""
        return self._cross is not None

    def gram(self, Z: np.ndarray | None) -> np.ndarray:
        """The n x n training kernel on the (scaled) inputs ``Z``.

        Parameters
        ----------
        Z : ndarray, shape (n, d), or None
            Network inputs; ignored for a precomputed kernel.

        Returns
        -------
        numpy.ndarray, shape (n, n), float64
        """
        if self.precomputed is not None:
            return self.precomputed
        if self.matrix_removed:
            raise ValueError("the precomputed training kernel was removed when this fit was "
                             "saved with remove_data=True; refit with kernel=K")
        return np.asarray(self._gram(Z), dtype=float)

    def cross(self, Znew: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """The m x n cross-kernel between new rows and training rows.

        Parameters
        ----------
        Znew : ndarray, shape (m, d)
        Z : ndarray, shape (n, d)

        Returns
        -------
        numpy.ndarray, shape (m, n), float64

        Raises
        ------
        ValueError
            For a precomputed kernel (the cross-kernel must then be supplied).
        """
        if self._cross is None:
            raise ValueError("this model was fit with a precomputed kernel matrix; pass the "
                             "cross-kernel (new rows x training rows) as predict(..., kernel=K_new)")
        return np.asarray(self._cross(Znew, Z), dtype=float)

    def low_rank_features(self, Z: np.ndarray) -> np.ndarray | None:
        """Exact features ``Phi`` (n x P, ``K = Phi Phi^T``) when cheaper than K, else ``None``.

        The base class has none; a finite network with fewer parameters than
        rows returns its Jacobian
        (:meth:`~mixednn.kernels.empirical.FiniteNetworkSource.low_rank_features`).

        Parameters
        ----------
        Z : ndarray, shape (n, d)

        Returns
        -------
        numpy.ndarray of shape (n, P), or None
        """
        return None
