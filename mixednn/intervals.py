"""Profile-likelihood intervals for s2 and the fixed effects, and prediction results.

* :func:`scale_profile_interval` -- ``{s2 : 2 [l(s2_hat) - l(s2)] <= chi2_1(1 - alpha)}``
  with l the fit's REML (or ML) criterion at the estimated t and beta profiled
  (integrated, under REML) out, :meth:`mixednn.profile.SpectralProfile.loglike_full`.
* :func:`params_profile_interval` -- the likelihood-ratio interval of each fixed
  effect at the estimated t: the Gaussian likelihood of ``(beta, s2)`` with s2 and the
  other coefficients profiled out.  At fixed t the model is a weighted regression in
  the rotated basis, so this has the closed form ``b_j +- sqrt(v_jj RSS (exp(q / n) -
  1))`` (``v = (X~^T W X~)^{-1}``, ``q = chi2_1(1 - alpha)``).  REML and ML fits share
  beta(t) and give the same interval; REML has no likelihood for beta of its own.
* :class:`PredictionResults` -- what ``res.get_prediction()`` returns: statsmodels'
  :class:`statsmodels.regression.linear_model.PredictionResults` (``predicted_mean``,
  ``se_mean``, ``se_obs``, ``conf_int(obs=, alpha=)``, ``summary_frame(alpha=)``) with
  normal quantiles, built from one call of ``res.predict(..., interval="confidence")``.

All intervals here are conditional on the estimated t, as the Wald intervals of
``res.conf_int()`` are; ``res.t_conf_int()`` is the interval for t itself.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import brentq
from statsmodels.regression import linear_model as sm_linear_model

from .interfaces import FitResults, check_fit
from .prediction import check_alpha

__all__ = ["scale_profile_interval", "params_profile_interval", "PredictionResults",
           "check_get_prediction_options"]


def check_get_prediction_options(options: dict) -> None:
    """``get_prediction`` returns both intervals at any level: refuse ``interval`` and
    ``alpha`` with the way to get them."""
    for name in ("interval", "alpha"):
        if name in options:
            raise TypeError(f"get_prediction() takes no {name!r}: pass alpha to "
                            ".conf_int() or .summary_frame() of its result")


def scale_profile_interval(res: FitResults, alpha: float = 0.05) -> tuple[float, float]:
    """Profile-likelihood interval for the residual variance s2 at the estimated t.

    The set ``{s2 : 2 [l(t_hat, s2_hat) - l(t_hat, s2)] <= chi2_1(1 - alpha)}`` with
    ``l`` the fit's criterion (REML, or ML) with beta profiled out; its maximum in s2 is
    the fit's ``scale``.  Asymmetric (longer to the right), unlike a Wald interval on s2.

    Parameters
    ----------
    res : MixedLMNTKResults
    alpha : float
        1 - coverage.

    Returns
    -------
    (float, float)
        Lower and upper end; NaN when s2 is not positive (an interpolating fit).

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(60, 1)); y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=60)
    >>> res = mn.MixedLMNTK(y, np.ones((60, 1)), Z, network=mn.MLP(depth=1)).fit()
    >>> lo, hi = scale_profile_interval(res)
    >>> bool(lo < res.scale < hi)
    True
    """
    check_fit(res)
    alpha = check_alpha(alpha)
    s_hat = float(res.scale)
    if not (s_hat > 0 and math.isfinite(s_hat)):
        return (math.nan, math.nan)
    prof, t, reml = res.likelihood_profile, float(res.t), bool(res.reml)
    top = prof.loglike_full(t, s_hat, reml)
    thr = top - 0.5 * float(stats.chi2.ppf(1 - alpha, 1))
    u0 = math.log(s_hat)

    def f(u: float) -> float:
        return prof.loglike_full(t, math.exp(u), reml) - thr

    ends = []
    for sign in (-1.0, 1.0):
        step = 0.25
        while f(u0 + sign * step) > 0:  # the criterion is concave in log s2
            step *= 2.0
            if step > 700:
                raise RuntimeError("the s2 profile does not fall below its cut-off")
        a, b = sorted((u0, u0 + sign * step))
        ends.append(math.exp(brentq(f, a, b, xtol=1e-13, rtol=1e-13)))
    return (ends[0], ends[1])


def params_profile_interval(res: FitResults, alpha: float = 0.05) -> pd.DataFrame:
    """Likelihood-ratio intervals for the fixed effects at the estimated t.

    ``{b : 2 [l(beta_hat) - l_j(b)] <= chi2_1(1 - alpha)}``, ``l_j(b)`` the Gaussian
    log-likelihood at t_hat maximised over s2 and the other coefficients with
    ``beta_j = b``.  With ``RSS_j(b) = RSS + (b - b_j)^2 / v_jj`` this is
    ``n log(RSS_j(b) / RSS) <= q``, i.e. ``b_j +- sqrt(v_jj RSS (exp(q / n) - 1))`` --
    a little wider than the Wald interval in small samples, equal to it as n grows.

    Parameters
    ----------
    res : MixedLMNTKResults
    alpha : float
        1 - coverage.

    Returns
    -------
    pandas.DataFrame
        Columns 0 (lower) and 1 (upper), one row per fixed effect (as ``conf_int()``);
        NaN where the fixed effects are not identified at t.
    """
    check_fit(res)
    alpha = check_alpha(alpha)
    names = list(res.model.exog_names)
    beta = np.asarray(res.params, dtype=float)
    if not names:
        return pd.DataFrame({0: pd.Series(dtype=float), 1: pd.Series(dtype=float)})
    prof = res.likelihood_profile
    pt = prof.point(float(res.t), bool(res.reml))
    n = prof.nobs  # the rows the likelihood is on (with free modes: the rest)
    q = float(stats.chi2.ppf(1 - alpha, 1))
    with np.errstate(invalid="ignore"):
        cov = np.asarray(res.cov_params(), dtype=float)
        v = np.diag(cov) / res.scale if res.scale > 0 else np.full(len(names), np.nan)
        half = np.sqrt(v * pt.rss * math.expm1(q / n))
    return pd.DataFrame({0: beta - half, 1: beta + half}, index=names)


class PredictionResults(sm_linear_model.PredictionResults):
    """Predictions with their standard errors and intervals (``res.get_prediction()``).

    statsmodels' ``PredictionResults`` with the normal distribution: mean and
    observation intervals are ``mean +- z se_mean`` and ``mean +- z se_obs``,
    ``se_obs = sqrt(se_mean^2 + s2)``.

    Attributes
    ----------
    predicted_mean : ndarray
        Predicted means ``f0* + x*^T beta + u(z*)``.
    se_mean : ndarray
        Standard errors of the means (network part and fixed effects).
    se_obs : ndarray
        Standard errors for a new observation.
    var_resid : float or ndarray
        s2; with precision weights ``s2 / w*`` per row (as statsmodels' WLS).
    row_labels : index
        Labels of the predicted rows (the ``index`` of ``summary_frame()``).
    cross : str or None
        How new rows met the training rows on a feature-space basis
        (``"exact"``/``"features"``), else None.

    Methods
    -------
    conf_int(obs=False, alpha=0.05)
        n x 2 array: interval for the mean, or for a new observation (``obs=True``).
    summary_frame(alpha=0.05)
        DataFrame with statsmodels' columns ``mean``, ``mean_se``, ``mean_ci_lower``,
        ``mean_ci_upper``, ``obs_ci_lower``, ``obs_ci_upper``.
    """

    def __init__(self, predicted_mean: np.ndarray, var_pred_mean: np.ndarray,
                 var_resid: float | np.ndarray, row_labels: Any = None,
                 cross: str | None = None):
        var_resid = float(var_resid) if np.ndim(var_resid) == 0 \
            else np.asarray(var_resid, dtype=float)
        super().__init__(np.asarray(predicted_mean, dtype=float),
                         np.asarray(var_pred_mean, dtype=float), var_resid,
                         dist="norm", row_labels=row_labels)
        self.cross = cross

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, scale: float | np.ndarray) -> "PredictionResults":
        """From the frame of ``res.predict(..., interval="confidence")`` (``mean``, ``se``)
        and the noise variance of a new observation (``s2``, or ``s2 / w*`` per row)."""
        se = frame["se"].to_numpy(dtype=float)
        return cls(frame["mean"].to_numpy(dtype=float), se * se, scale,
                   row_labels=frame.index, cross=frame.attrs.get("cross"))

    def conf_int(self, obs: bool = False, alpha: float = 0.05) -> np.ndarray:
        """Interval for the mean (``obs=False``) or a new observation (``obs=True``).

        Returns
        -------
        ndarray, shape (n, 2)
            Lower and upper ends (columns 0 and 1).
        """
        return super().conf_int(obs=obs, alpha=check_alpha(alpha))

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """``mean, mean_se, mean_ci_lower, mean_ci_upper, obs_ci_lower, obs_ci_upper``."""
        return super().summary_frame(alpha=check_alpha(alpha))

    def __repr__(self) -> str:
        if np.ndim(self.var_resid):  # precision weights: s2 / w* per row
            return (f"<PredictionResults: {np.size(self.predicted_mean)} rows, "
                    "s2 / w* per row>")
        return (f"<PredictionResults: {np.size(self.predicted_mean)} rows, "
                f"s2 = {self.var_resid:.4g}>")
