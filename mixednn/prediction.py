"""One prediction for every basis: mean, variance, confidence and prediction intervals.

With the decomposition ``K = U diag(lam) U^T`` (any basis of :mod:`mixednn.spectral`
or :mod:`mixednn.lowrank`), the fitted model predicts at a new row with fixed-effects
row ``x*``, offset ``f0*`` and cross-kernel ``k* = k(z*, Z)`` (``docs/model.md``
section 4)

    mean = f0* + x*^T beta + (U^T k*)^T diag(phi) r~,         r~ = U^T (y - f0 - X beta)
    Var(network part) = s2 sum_i g_i (U^T k*)_i^2
    L = x* - X~^T diag(phi) U^T k*,    Var(mean) = Var(network part) + L^T Cov(beta) L

with per-direction filters: ``phi_i = (1 - exp(-t lam_i)) / lam_i`` and
``g_i = (1 - exp(-t lam_i)) / lam_i^2`` for a direction trained for time t, and
``phi_i = 1 / lam_i``, ``g_i = 1 / lam_i^2`` for a free leading mode (trained to
convergence, :mod:`mixednn.freemodes`).  A prediction interval adds ``s2`` (``s2 / w*``
for a new observation of precision weight ``w*``, as statsmodels' WLS).

With precision weights the decomposition is that of the whitened kernel
``W^{1/2} K W^{1/2}`` and ``r~`` rotates ``W^{1/2} (y - f0 - X beta)``; the model's new
rows then carry ``W^{1/2}`` on the training side of their cross-kernel,
``k* = W^{1/2} k(Z, z*)`` (:meth:`mixednn.MixedLMNTK.new_rows`), and the formulas above
hold unchanged (``docs/model.md`` section 2.7).

So a basis only has to say how new rows meet the training rows: its
*cross-rotation* ``U^T k*`` (:class:`mixednn.spectral.CrossRotation`).  Dense bases
rotate the cross-kernel; feature-space bases map new rows through their features or
sum the exact cross-kernel chunk by chunk; the training rows themselves have
``U^T k_i = lam * U^T e_i``.  :class:`Predictor` holds everything else, is built once
per fit, and is picklable (it runs on dask workers for streamed data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .numerics import flow_filter, flow_variance_filter

__all__ = ["Predictor", "NewRows", "interval_frame", "check_interval", "check_alpha",
           "check_missing", "empty_prediction", "place_rows"]


def check_interval(interval: Any) -> None:
    """Raise unless ``interval`` is None, ``"confidence"`` or ``"prediction"``."""
    if interval not in (None, "confidence", "prediction"):
        raise ValueError(f"interval must be None, 'confidence' or 'prediction', got {interval!r}")


def check_alpha(alpha: Any, name: str = "alpha") -> float:
    """``alpha`` as a float in (0, 1), or a ValueError naming the option."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)) \
            or not 0 < float(alpha) < 1:
        raise ValueError(f"{name} must be a number in (0, 1) (1 - coverage, e.g. 0.05), "
                         f"got {alpha!r}")
    return float(alpha)


def interval_frame(mean: np.ndarray, var: np.ndarray, noise: float | np.ndarray, alpha: float,
                   index: Any) -> pd.DataFrame:
    """Normal intervals ``mean +- z sqrt(var + noise)``: ``noise = s2`` (or ``s2 / w`` per
    row, with precision weights) for a prediction interval (a new observation), 0 for a
    confidence interval (the mean)."""
    se = np.sqrt(np.maximum(var + noise, 0.0))
    z = stats.norm.ppf(1 - alpha / 2)
    return pd.DataFrame({"mean": mean, "lower": mean - z * se, "upper": mean + z * se,
                         "se": se}, index=index)


@dataclass(frozen=True)
class NewRows:
    """New rows ready for prediction: fixed-effects design, offset, and how they meet
    the training rows (``kernel``: the cross-kernel, rows x n; ``inputs``: the scaled
    network inputs, for feature-space bases).

    When rows with missing values were left out (``predict(missing="exclude")``, R's
    ``na.action = na.exclude``), ``index`` labels the complete rows, ``positions`` are
    their positions among all the rows asked for and ``full_index`` labels those:
    :func:`place_rows` puts the predictions back, with NaN in the incomplete rows.

    ``weights`` are the precision weights of new observations (``Var(e*) = s2 / w*``,
    for prediction intervals only); None means 1."""

    X: np.ndarray
    offset: np.ndarray
    index: Any
    kernel: np.ndarray | None = None
    inputs: np.ndarray | None = None
    positions: np.ndarray | None = None
    full_index: Any = None
    weights: np.ndarray | None = None

    @property
    def nrows(self) -> int:
        """Number of (complete) rows to predict."""
        return int(self.X.shape[0])


def check_missing(missing: Any) -> str:
    """``missing`` of ``predict``: ``"exclude"`` (NaN predictions for incomplete rows) or
    ``"raise"``; anything else is a ValueError naming the option."""
    if missing not in ("exclude", "raise"):
        raise ValueError(f"missing must be 'exclude' (NaN predictions for rows with missing "
                         f"values) or 'raise', got {missing!r}")
    return missing


def empty_prediction(interval: str | None, index: Any) -> pd.Series | pd.DataFrame:
    """Predictions for no rows: an empty Series, or an empty frame with the interval
    columns (``mean``, ``lower``, ``upper``, ``se``)."""
    if interval is None:
        return pd.Series(np.empty(0), index=index, name="predicted")
    return interval_frame(np.empty(0), np.empty(0), 0.0, 0.05, index)


def place_rows(out: pd.Series | pd.DataFrame, rows: NewRows) -> pd.Series | pd.DataFrame:
    """The predictions of the complete rows put back among all the rows asked for, NaN
    in the rows left out for missing values (R's ``na.exclude``), in the caller's order
    and index (duplicated labels included).

    Parameters
    ----------
    out : pandas.Series or pandas.DataFrame
        Predictions of the complete rows (``rows.index``).
    rows : NewRows

    Returns
    -------
    pandas.Series or pandas.DataFrame
    """
    if rows.positions is None:
        return out
    n = len(rows.full_index)
    values = out.to_numpy(dtype=float)
    full = np.full((n,) + values.shape[1:], np.nan)
    full[rows.positions] = values
    if isinstance(out, pd.Series):
        placed = pd.Series(full, index=rows.full_index, name=out.name)
    else:
        placed = pd.DataFrame(full, index=rows.full_index, columns=out.columns)
    placed.attrs.update(out.attrs)
    return placed


@dataclass(frozen=True)
class Predictor:
    """The fitted model's predictions given a cross-rotation (picklable; built once per fit).

    Attributes
    ----------
    coef : ndarray (k,)
        ``diag(phi) r~``: the network part of the mean is ``(U^T k*)^T coef``.
    g : ndarray (k,)
        Variance filter: ``Var(network part) = s2 g^T (U^T k*)^2``.
    X_filtered : ndarray (k, p)
        ``diag(phi) X~``, for the fixed-effects term ``L = x* - (U^T k*)^T X_filtered``.
    beta : ndarray (p,)
    cov_beta : ndarray (p, p) or None
    scale : float
        s2.
    t : float
        The training time (for cross-rotations that compute the network's variance
        themselves, :meth:`mixednn.spectral.CrossRotation.network_variance`).
    """

    coef: np.ndarray
    g: np.ndarray
    X_filtered: np.ndarray
    beta: np.ndarray
    cov_beta: np.ndarray | None
    scale: float
    t: float = float("nan")  # a class default: predictors pickled before it existed

    @classmethod
    def from_fit(cls, t: float, lam: np.ndarray, resid_rot: np.ndarray, X_rot: np.ndarray,
                 beta: np.ndarray, cov_beta: np.ndarray | None, scale: float,
                 free: np.ndarray | None = None) -> "Predictor":
        """Filters at training time ``t``; ``free`` marks directions trained to convergence.

        Parameters
        ----------
        t : float
        lam : ndarray (k,)
            Eigenvalues of the basis (all of them, free modes included).
        resid_rot, X_rot : ndarray
            ``U^T (y - f0 - X beta)`` and ``U^T X`` in the same coordinates.
        beta, cov_beta, scale
            The fixed effects, their covariance (None without fixed effects) and s2.
        free : ndarray of int, optional
            Indices of free leading modes.
        """
        lam = np.asarray(lam, dtype=float)
        phi = flow_filter(t, lam)
        g = flow_variance_filter(t, lam)
        if free is not None and len(free):
            phi[free] = 1.0 / lam[free]
            g[free] = 1.0 / lam[free] ** 2
        return cls(phi * resid_rot, g, phi[:, None] * X_rot, np.asarray(beta, dtype=float),
                   cov_beta, float(scale), float(t))

    def mean(self, cross: Any, X: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Predicted means for the rows of a cross-rotation."""
        out = offset + cross.apply(self.coef)
        return out + X @ self.beta if self.beta.size else out

    def variance(self, kt: np.ndarray, X: np.ndarray,
                 network: np.ndarray | None = None) -> np.ndarray:
        """Variance of the predicted mean from ``kt = U^T k*`` (k x rows).

        ``network``: ``k*^T g_t(K) k*`` per row when the cross-rotation computed it
        itself (a Krylov basis); by default ``g^T kt^2``."""
        var = self.scale * (self.g @ kt ** 2 if network is None else network)
        if self.cov_beta is not None and self.beta.size:
            L = X - kt.T @ self.X_filtered
            var = var + np.einsum("ij,jk,ik->i", L, self.cov_beta, L)
        return var

    def noise(self, rows: NewRows) -> float | np.ndarray:
        """Variance of a new observation's noise: ``s2``, or ``s2 / w*`` with weights."""
        return self.scale if rows.weights is None else self.scale / rows.weights

    def frame(self, cross: Any, rows: NewRows, interval: str | None,
              alpha: float) -> pd.Series | pd.DataFrame:
        """Means (a Series) or means with intervals (a DataFrame) for new rows."""
        mean = self.mean(cross, rows.X, rows.offset)
        route = cross.route
        if interval is None:
            out = pd.Series(mean, index=rows.index, name="predicted")
        else:
            var = self.variance(cross.matrix(), rows.X, cross.network_variance(self.t))
            noise = self.noise(rows) if interval == "prediction" else 0.0
            out = interval_frame(mean, var, noise, alpha, rows.index)
        if route is not None:
            out.attrs["cross"] = route
        return out
