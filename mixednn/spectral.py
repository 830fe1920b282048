"""Decompositions of the training kernel: the bases the likelihood and predictions use.

One decomposition ``K = U diag(lam) U^T`` (``docs/model.md`` section 2) turns every
later computation into products with a few vectors.  A *basis* owns it and offers

* ``eigenvalues`` and ``trace`` (``tr K`` from the kernel's diagonal);
* ``rotate(M) = U^T M`` and ``unrotate(C) = U C``;
* ``cross_rotation(kernel=..., inputs=...)``: a :class:`CrossRotation` for new rows,
  whose ``matrix()`` is ``U^T k*`` and ``apply(c)`` is ``k*^T U c`` (the one thing
  prediction needs from a basis, :mod:`mixednn.prediction`);
* ``map_in_sample(fn, X)``: ``fn(in-sample cross-rotation, X block)`` over the
  training rows (in one block for the dense bases, chunk by chunk in feature space).

Bases here: :class:`EigenBasis` (LAPACK ``syevd``), :class:`TridiagonalBasis`
(Householder reflectors kept implicit), :class:`LowRankBasis` (exact ``K = Phi Phi^T``
with n x m features).  The feature-space basis of Nystrom and Jacobian features lives
in :mod:`mixednn.lowrank`.  :func:`decompose` builds a dense one.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Callable

import numpy as np
import scipy.linalg

from .exceptions import KernelClippedWarning, warn_at_caller

__all__ = ["EigenBasis", "TridiagonalBasis", "LowRankBasis", "decompose", "CrossRotation",
           "DenseCrossRotation", "InSampleRotation", "clip_warning_threshold", "clip_spectrum"]


# ----------------------------------------------------------------------- cross-rotations

class CrossRotation:
    """``U^T k*`` for a block of rows: what a basis gives prediction for new rows.

    Subclasses implement :meth:`matrix` (k x rows) and may implement :meth:`apply`
    more cheaply than ``matrix().T @ c``.
    """

    #: how the new rows met the training rows, when a basis offers several routes
    route: str | None = None

    def matrix(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, c: np.ndarray) -> np.ndarray:
        """``k*^T U c``: the network part of the predictions for coefficients c."""
        return self.matrix().T @ c

    def network_variance(self, t: float) -> np.ndarray | None:
        """``k*^T g_t(K) k*`` per row when the basis cannot give it from ``matrix()``
        (a Krylov basis, :mod:`mixednn.krylov`); None: ``g^T (U^T k*)^2`` is exact."""
        return None


class DenseCrossRotation(CrossRotation):
    """New rows of a dense basis, from their cross-kernel ``K* = k(z*, Z)`` (rows x n)."""

    def __init__(self, basis: "EigenBasis", kernel: np.ndarray):
        self.basis = basis
        self.kernel = np.asarray(kernel, dtype=float)

    def matrix(self) -> np.ndarray:
        return self.basis.rotate(self.kernel.T)

    def apply(self, c: np.ndarray) -> np.ndarray:  # O(rows n), no rotation of K*
        return self.kernel @ self.basis.unrotate(c)


class InSampleRotation(CrossRotation):
    """The training rows themselves: ``U^T k_i = lam * U^T e_i``."""

    def __init__(self, basis: "EigenBasis"):
        self.basis = basis

    def matrix(self) -> np.ndarray:
        return self.basis.eigenvalues[:, None] * self.basis.dense_eigenvectors.T

    def apply(self, c: np.ndarray) -> np.ndarray:
        return self.basis.unrotate(self.basis.eigenvalues * c)


class EigenBasis:
    """Exact eigendecomposition ``K = U diag(eigenvalues) U^T``.

    Parameters
    ----------
    eigenvalues : ndarray, shape (n,)
        Eigenvalues (ascending), already clipped at zero.
    eigenvectors : ndarray, shape (n, n)
        Orthonormal eigenvectors as columns.
    trace : float
        ``tr(K)``, taken from the kernel's diagonal (exact, no eigenvalue sum).
    """

    kind = "eigh"
    #: True for a basis held in feature space (:mod:`mixednn.lowrank`): no n x n object
    feature_space = False
    #: False when ``eigenvalues`` are not the whole spectrum of K (the Ritz values of a
    #: Krylov basis, :mod:`mixednn.krylov`; a low-rank basis's zeros are known, so True)
    complete_spectrum = True

    def __init__(self, eigenvalues: np.ndarray, eigenvectors: np.ndarray, trace: float):
        self.eigenvalues = np.asarray(eigenvalues, dtype=float)
        self.eigenvectors = eigenvectors
        self.trace = float(trace)

    @property
    def n(self) -> int:
        return int(self.eigenvectors.shape[0])

    @property
    def rest_dim(self) -> int:
        """Directions outside the stored eigenvectors (0: the basis is complete)."""
        return 0

    def rotate(self, M: np.ndarray) -> np.ndarray:
        """``U^T M``: coordinates of the columns of ``M`` in the eigenbasis."""
        return self.eigenvectors.T @ M

    def unrotate(self, C: np.ndarray) -> np.ndarray:
        """``U C``: back from eigen-coordinates to the data basis."""
        return self.eigenvectors @ C

    @cached_property
    def dense_eigenvectors(self) -> np.ndarray:
        """``U`` as a dense array, formed once (the tridiagonal basis builds it on demand)."""
        return np.asarray(self.eigenvectors)

    def cross_rotation(self, kernel: Any = None, inputs: Any = None,
                       route: str = "auto") -> CrossRotation:
        """The cross-rotation of new rows from their cross-kernel (rows x n)."""
        if kernel is None:
            raise ValueError("a dense basis needs the cross-kernel of the new rows")
        return DenseCrossRotation(self, kernel)

    def map_in_sample(self, fn: Callable[[CrossRotation, np.ndarray], Any],
                      X: np.ndarray) -> list:
        """``[fn(in-sample rotation, X)]``: the training rows in one block."""
        return [fn(InSampleRotation(self), X)]

    def rest_gram(self, Y: np.ndarray) -> np.ndarray | None:
        """The part of ``Y^T Y`` outside the stored eigenvectors (None: the basis is complete)."""
        return None


class TridiagonalBasis(EigenBasis):
    """``K = Q T Q^T`` (Householder) and ``T = V diag(lam) V^T``, so ``U = Q V``.

    LAPACK's ``sytrd`` reduces K to tridiagonal form in place; ``stevd`` (divide and
    conquer, fast on the strongly deflating NTK spectra) then finds the eigenpairs of T.  The reflectors Q are applied only to the few
    vectors that need them (``ormtr``), which skips the O(n^3) back-transformation
    that a full ``eigh`` performs.  Same eigenvalues and rotations as
    :class:`EigenBasis`, about half the cost at large n.
    """

    kind = "tridiagonal"

    def __init__(self, reflectors: np.ndarray, tau: np.ndarray, eigenvalues: np.ndarray,
                 tri_vectors: np.ndarray, trace: float):
        self.eigenvalues = np.asarray(eigenvalues, dtype=float)
        # sytrd(lower) stores H(i) = I - tau v v^T with v below the subdiagonal: the
        # same layout as a QR factorisation of K[1:, :-1], so ormqr applies Q to C[1:].
        self.reflectors = reflectors
        self.tau = tau
        self.tri_vectors = tri_vectors
        self.trace = float(trace)
        self._ormqr = scipy.linalg.get_lapack_funcs("ormqr", (reflectors,))

    @property
    def n(self) -> int:
        return int(self.tri_vectors.shape[0])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_ormqr", None)  # a LAPACK routine: looked up again on loading
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._ormqr = scipy.linalg.get_lapack_funcs("ormqr", (self.reflectors,))

    def _apply_q(self, M: np.ndarray, trans: str) -> np.ndarray:
        M = np.asarray(M, dtype=float)
        vec = M.ndim == 1
        C = np.array(M.reshape(M.shape[0], -1), dtype=float, order="F")
        if self.n > 1:
            lwork = max(1, C.shape[1]) * 64
            sub, _, info = self._ormqr("L", trans, self.reflectors, self.tau, C[1:],
                                       lwork=lwork, overwrite_c=0)
            if info != 0:
                raise np.linalg.LinAlgError(f"LAPACK ormqr failed (info={info})")
            C[1:] = sub
        return C.ravel() if vec else C

    def rotate(self, M: np.ndarray) -> np.ndarray:
        return self.tri_vectors.T @ self._apply_q(M, "T")

    def unrotate(self, C: np.ndarray) -> np.ndarray:
        return self._apply_q(self.tri_vectors @ C, "N")

    @property
    def eigenvectors(self) -> np.ndarray:  # dense U, built only on demand
        return self.unrotate(np.eye(self.n))


class LowRankBasis(EigenBasis):
    """Exact low-rank basis ``K = U_m diag(eigenvalues) U_m^T`` from features ``K = Phi Phi^T``.

    ``U_m`` (n x m, orthonormal columns) spans the features; on its orthogonal
    complement K is zero, so every weight there is 1 and the profile needs only
    :meth:`rest_gram` of the data (``docs/model.md`` section 2.6).

    Parameters
    ----------
    eigenvalues : ndarray, shape (m,)
        Ascending, non-negative.
    eigenvectors : ndarray, shape (n, m)
        Orthonormal columns.
    trace : float
        ``tr(K) = ||Phi||_F^2``.
    """

    kind = "low_rank"

    @classmethod
    def from_features(cls, Phi: np.ndarray) -> "LowRankBasis":
        """From an n x m feature matrix (``K = Phi Phi^T``) by a thin SVD, O(n m^2)."""
        Phi = np.asarray(Phi, dtype=float)
        U, s, _ = scipy.linalg.svd(Phi, full_matrices=False, check_finite=False)
        return cls((s ** 2)[::-1], np.ascontiguousarray(U[:, ::-1]), float(np.sum(Phi * Phi)))

    @property
    def rank(self) -> int:
        return int(self.eigenvectors.shape[1])

    @property
    def rest_dim(self) -> int:
        return self.n - self.rank

    def rest_gram(self, Y: np.ndarray) -> np.ndarray:
        """``Y^T Y - (U^T Y)^T (U^T Y)``, from the projection residual (no cancellation)."""
        Y = np.asarray(Y, dtype=float).reshape(self.n, -1)
        R = Y - self.eigenvectors @ (self.eigenvectors.T @ Y)
        return R.T @ R


def clip_spectrum(lam: np.ndarray, check: bool, what: str, n: int | None = None) -> np.ndarray:
    """Eigenvalues (or Ritz values) of a PSD kernel with rounding negatives set to zero.

    Parameters
    ----------
    lam : ndarray
    check : bool
        Raise if a value is below ``-sqrt(eps) max|lam|`` (not PSD), and warn
        (:class:`KernelClippedWarning`) when one is below ``-clip_warning_threshold(n)
        max|lam|``.
    what : str
        The matrix, in messages.
    n : int, optional
        Size of the kernel (default ``len(lam)``; larger for Ritz values).

    Returns
    -------
    ndarray
    """
    lam = np.asarray(lam, dtype=float)
    if lam.size == 0:
        return lam
    top = max(float(np.max(np.abs(lam))), np.finfo(float).tiny)
    n = lam.shape[0] if n is None else int(n)
    hard = math.sqrt(np.finfo(float).eps) * top  # beyond rounding: not PSD
    if check and lam.min() < -hard:
        k = int((lam < -hard).sum())
        raise ValueError(
            f"{what} is not positive semi-definite: {k} eigenvalue(s) below "
            f"-{hard:.3g} (smallest {lam.min():.4g}, largest {top:.4g}); a training operator "
            "must be PSD — check how the kernel was built (symmetrise it, or add a small ridge)")
    soft = clip_warning_threshold(n) * top
    if check and lam.min() < -soft:
        warn_at_caller(
            f"{what}: {int((lam < 0).sum())} slightly negative eigenvalue(s) (smallest "
            f"{lam.min():.3g}, largest {top:.4g}) set to zero as rounding error",
            KernelClippedWarning)
    return np.maximum(lam, 0.0)


def clip_warning_threshold(n: int) -> float:
    """Relative size ``|lam_min| / lam_max`` from which clipping a negative eigenvalue
    of an n x n kernel is reported (:class:`~mixednn.exceptions.KernelClippedWarning`).

    Below it the negative eigenvalues are rounding: of the eigensolver (about
    ``n eps lam_max``) and of the kernel's closed form, whose entries near coincident
    inputs carry errors of order ``sqrt(eps)`` (``arccos`` near 1).  Measured on
    one-input ReLU NTK fits at n = 30-2000 (the worst case: many nearly coincident
    inputs), ``|lam_min| / lam_max`` stays below 2.5e-10; the threshold
    ``max(sqrt(eps) / 10, sqrt(n) n eps)`` (1.5e-9 up to n of about 35,000) leaves a
    margin of 6.  Beyond ``sqrt(eps)`` the kernel is not PSD and :func:`decompose`
    raises.

    Parameters
    ----------
    n : int
        Size of the kernel.

    Returns
    -------
    float
    """
    eps = np.finfo(float).eps
    return max(0.1 * math.sqrt(eps), math.sqrt(n) * n * eps)


def _compact_reflectors(c: np.ndarray) -> np.ndarray:
    """``c[1:, :-1]`` as an F-contiguous array stored in ``c``'s own buffer.

    Column j of the block moves from offset ``j n + 1`` to ``j (n - 1)``, never to a
    higher address, so a forward pass of (overlap-safe) slice copies compacts it in
    place: the reflectors then cost no second n x n matrix.
    """
    n = c.shape[0]
    if n < 2:
        return np.zeros((0, 0), order="F")
    flat = c.reshape(-1, order="F")  # a view: c is F-contiguous
    m = n - 1
    for j in range(m):
        flat[j * m:(j + 1) * m] = flat[j * n + 1:j * n + n]
    return flat[: m * m].reshape((m, m), order="F")


def decompose(K: np.ndarray, *, method: str = "auto", check_psd: bool = True,
              overwrite: bool = False, what: str = "the kernel") -> EigenBasis:
    """Decompose a symmetric PSD kernel matrix.

    Parameters
    ----------
    K : ndarray, shape (n, n)
        Symmetric kernel.  With ``overwrite=True`` its storage is reused.
    method : {"auto", "eigh", "tridiagonal"}
        ``"eigh"``: LAPACK ``syevd``, the reference.  ``"tridiagonal"``: Householder
        reduction with the reflectors kept implicit (faster at large n, same
        numbers to rounding).  ``"auto"`` picks the tridiagonal route for n >= 3000 (and
        whenever memory is tight it is the leaner of the two: 3 n x n matrices at peak).
    check_psd : bool
        Raise if eigenvalues are negative beyond rounding (``sqrt(eps) * max|lam|``);
        tiny negative ones are set to zero, with a :class:`KernelClippedWarning` when they
        exceed :func:`clip_warning_threshold` (relative to ``max|lam|``).

    Returns
    -------
    EigenBasis
    """
    n = K.shape[0]
    trace = float(np.trace(K))
    if method == "auto":
        method = "tridiagonal" if n >= 3000 else "eigh"
    if method == "eigh":
        lam, U = scipy.linalg.eigh(K, overwrite_a=overwrite, check_finite=False, driver="evd")
        return EigenBasis(clip_spectrum(lam, check_psd, what), U, trace)
    if method != "tridiagonal":
        raise ValueError(f"unknown decomposition method {method!r}; use 'auto', 'eigh' or 'tridiagonal'")
    # K is symmetric, so K.T is a Fortran-ordered view of the same numbers.
    A = K.T if (overwrite and K.flags.c_contiguous) else np.array(K, order="F", copy=not overwrite)
    sytrd, sytrd_lwork = scipy.linalg.get_lapack_funcs(("sytrd", "sytrd_lwork"), (A,))
    lw, info = sytrd_lwork(n, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"LAPACK sytrd_lwork failed (info={info})")
    lwork = max(1, int(np.ceil(lw)))
    c, d, e, tau, info = sytrd(A, lower=1, lwork=lwork, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"LAPACK sytrd failed (info={info})")
    reflectors = _compact_reflectors(c)
    del c, A
    lam, V = scipy.linalg.eigh_tridiagonal(d, e, lapack_driver="stevd", check_finite=False)
    return TridiagonalBasis(reflectors, tau, clip_spectrum(lam, check_psd, what), V, trace)


