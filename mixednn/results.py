"""MixedLMNTKResults: estimates, standard errors, intervals, BLUP, prediction.

Everything here is computed from the model's one decomposition of K; nothing
builds or decomposes an n x n matrix again, except the cross-kernel needed to
predict at new inputs.
"""

from __future__ import annotations

import math
import warnings
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from .formula import rebuild_exog, rebuild_ntk_inputs
from .spectral import TimeEstimate

if TYPE_CHECKING:  # pragma: no cover
    from .model import MixedLMNTK

__all__ = ["MixedLMNTKResults"]


def _phi(t: float, lam: np.ndarray) -> np.ndarray:
    """``(1 - exp(-t lam)) / lam``, equal to t at lam = 0 (gradient-flow filter)."""
    out = np.full_like(lam, float(t))
    nz = lam > 0
    out[nz] = -np.expm1(-t * lam[nz]) / lam[nz]
    return out


def interval_frame(mean: np.ndarray, var: np.ndarray, noise: float, alpha: float,
                   index: Any) -> pd.DataFrame:
    """Normal intervals ``mean +- z sqrt(var + noise)``: ``noise = s2`` for a prediction
    interval (a new observation), 0 for a confidence interval (the mean)."""
    se = np.sqrt(np.maximum(var + noise, 0.0))
    z = stats.norm.ppf(1 - alpha / 2)
    return pd.DataFrame({"mean": mean, "lower": mean - z * se, "upper": mean + z * se,
                         "se": se}, index=index)


class MixedLMNTKResults:
    """Results of :meth:`MixedLMNTK.fit`.

    Attributes
    ----------
    params : pandas.Series
        Fixed effects beta(t_hat) (GLS at the estimated t).
    bse, tvalues, pvalues : pandas.Series
        Standard errors, z statistics and two-sided normal p-values of ``params``.
    scale : float
        Residual variance s2 (REML: RSS / (n - p); ML: RSS / n).
    t : float
        Estimated training time (a variance component).
    t_se : float
        Standard error of t from the observed information on log t (delta method);
        NaN at the boundary t = 0.
    llf : float
        Maximised REML (or ML) log-likelihood.
    method : str
        ``"REML"`` or ``"ML"``.
    """

    def __init__(self, model: "MixedLMNTK", estimate: TimeEstimate, reml: bool):
        self.model = model
        self.reml = bool(reml)
        self.method = "REML" if reml else "ML"
        self.estimate = estimate
        prof = model.profile
        self.t = float(estimate.t)
        pt = prof.point(self.t, self.reml)
        self._point = pt
        names = model.exog_names
        self.params = pd.Series(pt.beta, index=names, name="params")
        self.scale = float(pt.scale)
        self.llf = float(pt.llf)
        self.converged = bool(estimate.converged)
        self.boundary = bool(estimate.boundary)
        self.nobs = model.nobs
        self.k_fe = model.k_fe
        self.df_resid = self.nobs - self.k_fe
        # which rule chose t (mixednn.stopping); t_se / t_conf_int come from the
        # likelihood that chose it, and are NaN for a prediction-error rule
        self.t_method = estimate.criterion or self.method.lower()
        self._t_lik = {"reml": True, "ml": False}.get(self.t_method)
        self._t_reml: float | None = self.t if self.t_method == "reml" else None
        #: what the default rule's check found (mixednn.autotime); None for a named rule
        self.auto_check = None

    # ----------------------------------------------------------------- fixed effects
    @cached_property
    def cov_params_fe(self) -> pd.DataFrame:
        """Covariance of the fixed effects, ``s2 (X~^T W X~)^{-1}`` at t_hat."""
        names = self.model.exog_names
        if not names:
            return pd.DataFrame(np.empty((0, 0)))
        xwx = self._point.xwx
        if np.linalg.cond(xwx) > 1e14:
            # at this t the weights exp(-t lam) leave X~ (nearly) no directions to be
            # estimated on: the network has absorbed the fixed effects
            warnings.warn(f"the fixed effects are not identified at t = {self.t:.4g}: X^T W X "
                          "is singular (the fit nearly interpolates); their standard errors "
                          "are NaN. Fewer fixed effects, more rows, or fit(t_method='reml') "
                          "may help.", RuntimeWarning, stacklevel=3)
            cov = np.full(xwx.shape, np.nan)
        else:
            cov = self.scale * np.linalg.inv(xwx)
        return pd.DataFrame(cov, index=names, columns=names)

    def cov_params(self) -> pd.DataFrame:
        """Covariance matrix of ``params`` (conditional on t_hat, as in lme4/statsmodels)."""
        return self.cov_params_fe

    @cached_property
    def bse(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.cov_params_fe.to_numpy())),
                         index=self.model.exog_names, name="bse")

    @cached_property
    def tvalues(self) -> pd.Series:
        return (self.params / self.bse).rename("z")

    @cached_property
    def pvalues(self) -> pd.Series:
        return pd.Series(2 * stats.norm.sf(np.abs(self.tvalues.to_numpy())),
                         index=self.model.exog_names, name="pvalues")

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald confidence intervals for the fixed effects (normal quantiles).

        Returns a DataFrame with columns 0 (lower) and 1 (upper), as statsmodels does.
        """
        z = stats.norm.ppf(1 - alpha / 2)
        lo = self.params - z * self.bse
        hi = self.params + z * self.bse
        return pd.DataFrame({0: lo, 1: hi})

    # ------------------------------------------------------------- variance components
    @cached_property
    def _cov_log(self) -> np.ndarray:
        if self._t_lik is None:
            return np.full((2, 2), np.nan)
        return self.model.profile.wald_cov_log(self.estimate, self._t_lik)

    @property
    def t_se(self) -> float:
        """SE of t: observed information on log t with s2, delta method ``t * SE(log t)``."""
        return float(self.t * math.sqrt(self._cov_log[0, 0])) if not self.boundary else float("nan")

    @property
    def scale_se(self) -> float:
        """SE of s2 from the observed information of (log t, log s2) (delta method)."""
        if self.boundary or self._t_lik is None:  # t not from the likelihood: s2 alone
            n_eff = self.df_resid if self.reml else self.nobs
            return float(self.scale * math.sqrt(2.0 / n_eff))
        return float(self.scale * math.sqrt(self._cov_log[1, 1]))

    def t_conf_int(self, alpha: float = 0.05) -> tuple[float, float]:
        """Profile-likelihood interval for t: ``{t : 2 [l(t_hat) - l(t)] <= chi2_1(1-alpha)}``."""
        if alpha not in self._t_ci_cache:
            self._t_ci_cache[alpha] = (
                (math.nan, math.nan) if self._t_lik is None
                else self.model.profile.profile_interval(self.estimate, self._t_lik, alpha))
        return self._t_ci_cache[alpha]

    @cached_property
    def _t_ci_cache(self) -> dict:
        return {}

    @property
    def t_reml(self) -> float:
        """The REML time of the plain kernel, shown beside ``t`` when another rule chose t
        (``fit(t_method=...)`` or ``free_modes``; see :mod:`mixednn.stopping`)."""
        if self._t_reml is None:
            self._t_reml = float(self.model.profile.maximize(True).t)
        return self._t_reml

    @cached_property
    def stopping_diagnostic(self):
        """Do the stopping rules agree, and does REML's decorrelation hold in the leading
        modes?  A :class:`mixednn.stopping.StoppingDiagnostic` (its ``message`` is the
        summary's one line, ``None`` when nothing is flagged)."""
        from .stopping import diagnose

        return diagnose(self.model, reml=self.reml)

    def scale_conf_int(self, alpha: float = 0.05) -> tuple[float, float]:
        """Wald interval for s2 on the log scale."""
        z = stats.norm.ppf(1 - alpha / 2)
        se_log = self.scale_se / self.scale
        return (self.scale * math.exp(-z * se_log), self.scale * math.exp(z * se_log))

    @cached_property
    def weights(self) -> np.ndarray:
        """``exp(-t lam_i)``: what is left to learn along each eigen-direction."""
        return np.exp(-self.t * self.model.profile.lam)

    @cached_property
    def edf(self) -> float:
        """Effective degrees of freedom of the network, ``sum_i (1 - exp(-t lam_i))``."""
        return float(np.sum(-np.expm1(-self.t * self.model.profile.lam)))

    @cached_property
    def signal_share(self) -> float:
        """``tr(G) / tr(V) = sum(exp(t lam) - 1) / sum(exp(t lam))``: share of variance in signal."""
        x = self.t * self.model.profile.lam
        m = x.max()
        n_rest = self.nobs - x.shape[0]  # zero eigenvalues outside a low-rank basis
        num = np.sum(np.exp(x - m) - math.exp(-m))
        den = np.sum(np.exp(x - m)) + n_rest * math.exp(-m)
        return float(num / den)

    # --------------------------------------------------------------- model comparison
    @property
    def df_modelwc(self) -> int:
        """Number of estimated parameters: fixed effects, s2 and t."""
        return self.k_fe + 2

    @property
    def aic(self) -> float:
        """``-2 llf + 2 k`` with k = p + 2.  Under REML this is the REML criterion (as R's
        lme4 reports it): comparable only between models with the same fixed effects."""
        return -2 * self.llf + 2 * self.df_modelwc

    @property
    def bic(self) -> float:
        """``-2 llf + k log(n)``; under REML, the same caveat as :attr:`aic`."""
        return -2 * self.llf + self.df_modelwc * math.log(self.nobs)

    @property
    def deviance(self) -> float:
        return -2 * self.llf

    # -------------------------------------------------------------- in-sample values
    @cached_property
    def _resid_rot(self) -> np.ndarray:
        prof = self.model.profile
        return prof.y_rot - prof.X_rot @ self.params.to_numpy()

    @cached_property
    def random_effects(self) -> pd.Series:
        """BLUP of the network effect u: ``(I - exp(-tK)) r`` = gradient flow for time t."""
        b = self.model.basis
        u = b.unrotate((1 - self.weights) * self._resid_rot)
        return pd.Series(u, index=self.model.data.row_labels, name="random_effects")

    @cached_property
    def fittedvalues(self) -> pd.Series:
        m = self.model
        fit = m.exog @ self.params.to_numpy() + m.offset + self.random_effects.to_numpy()
        return pd.Series(fit, index=m.data.row_labels, name="fittedvalues")

    @cached_property
    def resid(self) -> pd.Series:
        return pd.Series(self.model.endog - self.fittedvalues.to_numpy(),
                         index=self.model.data.row_labels, name="resid")

    # ---------------------------------------------------------------------- epochs
    def epochs(self, lr: float, loss: str = "mean") -> float:
        """Full-batch gradient-descent steps that the training time t corresponds to.

        Parameters
        ----------
        lr : float
            Learning rate.
        loss : {"mean", "sum"}
            ``"mean"``: loss ``1/(2n) sum (y - f)^2`` (steps = n t / lr);
            ``"sum"``: loss ``1/2 sum (y - f)^2`` (steps = t / lr).

        Returns
        -------
        float
            Number of steps (= epochs, full batch); round as needed.
        """
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if loss == "mean":
            return self.nobs * self.t / lr
        if loss == "sum":
            return self.t / lr
        raise ValueError(f"loss must be 'mean' or 'sum', got {loss!r}")

    @property
    def reference_lr(self) -> float:
        """A reference learning rate for the mean loss: ``n / lam_max`` (half the stability limit)."""
        return self.nobs / float(self.model.profile.lam.max())

    def train(self, lr: float, loss: str = "mean", steps: int | None = None,
              record_every: int | None = None, test_data: Any = None, **kwargs: Any):
        """Train a copy of the (finite) network for the REML time and compare with the NTK.

        Full-batch gradient descent (``torch.optim.SGD``, no momentum) on ``y - X beta_hat``
        for ``round(self.epochs(lr, loss))`` steps (or ``steps``); see
        :func:`mixednn.training.train` for all options and conventions.

        Returns
        -------
        mixednn.training.TrainingPath
            Real and NTK-predicted losses, the REML stopping step and the agreement metric.
        """
        from .training import train

        return train(self, lr, loss=loss, steps=steps, record_every=record_every,
                     test_data=test_data, **kwargs)

    # ----------------------------------------------------------- tests of t = 0
    def score_test(self, method: str = "exact", *, tol: float = 1e-9):
        """Score test of ``H0: t = 0`` with its exact Gaussian null; see
        :func:`mixednn.inference.score_test` (methods ``"exact"``, ``"imhof"``,
        ``"davies"``, ``"saddlepoint"``, ``"liu"``, ``"satterthwaite"``, ``"plugin"``,
        ``"plugin-liu"``, ``"plugin-satterthwaite"``).  Returns a ``TestResult``."""
        from .inference import score_test

        return score_test(self, method, tol=tol)

    def lr_test(self, method: str = "simulate", nsim: int = 10_000, seed: Any = None):
        """(Restricted) likelihood-ratio test of ``H0: t = 0``: ``"simulate"`` (exact
        finite-sample null) or ``"mixture"`` (50:50 chi2_0 : chi2_1); see
        :func:`mixednn.inference.lr_test`.  Returns a ``TestResult``."""
        from .inference import lr_test

        return lr_test(self, method, nsim=nsim, seed=seed)

    def compare_lr_test(self, other: Any, *, null: str = "simulate", nsim: int = 10_000,
                        seed: Any = None, refit: bool | None = None):
        """Likelihood-ratio test against another nested model (a network model or a
        statsmodels OLS null); see :func:`mixednn.inference.compare_lr_test`."""
        from .inference import compare_lr_test

        return compare_lr_test(self, other, null=null, nsim=nsim, seed=seed, refit=refit)

    def null_fit(self):
        """The no-network model (t = 0) on the same rows: statsmodels OLS of ``y - f0`` on
        X, ready for ``mn.anova(res.null_fit(), res)``; see :func:`mixednn.inference.ols_null`."""
        from .inference import ols_null

        return ols_null(self)

    # -------------------------------------------------------------------- profile
    def profile(self, grid: Any = None, num: int = 41) -> pd.DataFrame:
        """Profile REML (or ML) log-likelihood over a grid of t.

        Parameters
        ----------
        grid : array-like, optional
            Values of t >= 0.  By default ``num`` log-spaced points spanning the
            profile confidence interval (widened by a factor 10 each side) plus t = 0.

        Returns
        -------
        pandas.DataFrame
            Columns ``t``, ``llf``, ``deviance_change`` (``2 [l(t_hat) - l(t)]``).
        """
        prof = self.model.profile
        if grid is None:
            lo, hi = self.t_conf_int()
            lo_b, hi_b = self.estimate.search_bounds
            a = max(lo / 10, lo_b) if lo > 0 else max(self.t / 1e3, lo_b) if self.t > 0 else lo_b
            b = min(hi * 10, hi_b) if np.isfinite(hi) else hi_b
            grid = np.concatenate([[0.0], np.logspace(np.log10(a), np.log10(b), num)])
            if self.t > 0:
                grid = np.sort(np.append(grid, self.t))
        grid = np.asarray(grid, dtype=float)
        if np.any(grid < 0):
            raise ValueError("profile grid values must be >= 0")
        llf = np.array([prof.loglike(float(t), self.reml) for t in grid])
        return pd.DataFrame({"t": grid, "llf": llf, "deviance_change": 2 * (self.llf - llf)})

    # -------------------------------------------------------------------- predict
    def predict(self, newdata: pd.DataFrame | None = None, *, exog: Any = None,
                ntk_inputs: Any = None, kernel: Any = None, offset: Any = None,
                interval: str | None = None, alpha: float = 0.05,
                cross: str = "auto") -> pd.Series | pd.DataFrame:
        """Predictions of the fitted (trained) network plus fixed effects (model.md section 4).

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            New rows for a formula model; both designs are rebuilt through patsy's
            design info and the stored input scaling.  ``None`` (and no arrays)
            predicts the training rows.
        exog, ntk_inputs : array-like, optional
            New fixed-effects design and network inputs (array interface).
        kernel : array-like, optional
            Cross-kernel (m new rows x n training rows), needed when the model was
            fit with a precomputed kernel matrix.
        offset : array-like, optional
            Offset f0 of the new rows (taken from ``newdata`` when the model's offset
            is a column; zero for analytic kernels).
        interval : {None, "confidence", "prediction"}
            ``"confidence"``: for the mean ``x*^T beta + u(z*)``; ``"prediction"``:
            for a new observation (adds s2).
        alpha : float
            1 - coverage.
        cross : {"auto", "exact", "features"}
            Feature-space (``low_rank=m``, Nystrom) fits only: how new rows meet the
            training rows.  ``"features"``: through the Nystrom feature map (O(m) per
            new row); ``"exact"``: the exact cross-kernel against every training row,
            streamed in one pass (O(n) per new row, more accurate); ``"auto"``: exact
            when that pass is cheap (n x (new rows + m) <= 2e8 kernel evaluations).  See
            :func:`mixednn.lowrank.predict_feature_space`.

        Returns
        -------
        pandas.Series or pandas.DataFrame
            A Series of means without ``interval``; otherwise columns ``mean``,
            ``lower``, ``upper`` (and ``se``).
        """
        if interval not in (None, "confidence", "prediction"):
            raise ValueError(f"interval must be None, 'confidence' or 'prediction', got {interval!r}")
        m = self.model
        if getattr(m.basis, "feature_space", False):  # K = Phi Phi^T: no n x n objects
            from .lowrank import predict_feature_space

            return predict_feature_space(self, newdata, exog=exog, ntk_inputs=ntk_inputs,
                                         kernel=kernel, offset=offset, interval=interval,
                                         alpha=alpha, cross=cross)
        prof = m.profile
        basis = m.basis
        lam = prof.lam
        beta = self.params.to_numpy()
        in_sample = newdata is None and exog is None and ntk_inputs is None and kernel is None
        if in_sample:
            index = m.data.row_labels
            mean = self.fittedvalues.to_numpy()
            if interval is None:
                return pd.Series(mean, index=index, name="predicted")
            Xn = m.exog
            kt_rot = None  # handled below from U directly
        else:
            Xn, Kx, off, index = self._new_design(newdata, exog, ntk_inputs, kernel, offset)
            a = basis.unrotate(_phi(self.t, lam) * self._resid_rot)
            mean = off + (Xn @ beta if beta.size else 0.0) + Kx @ a
            if interval is None:
                return pd.Series(mean, index=index, name="predicted")
            kt_rot = basis.rotate(Kx.T)  # U^T k*, n x m
        # posterior variance of the network part, and the beta-estimation term
        w = self.weights
        if kt_rot is None:
            U = basis.eigenvectors
            var_u = self.scale * ((U ** 2) @ (1 - w))
            L = Xn - U @ ((1 - w)[:, None] * prof.X_rot) if beta.size else None
        else:
            tol = lam.max() * max(lam.size, 1) * np.finfo(float).eps
            g = np.zeros_like(lam)
            nz = lam > tol
            g[nz] = -np.expm1(-self.t * lam[nz]) / lam[nz] ** 2
            var_u = self.scale * (g @ kt_rot ** 2)
            L = Xn - kt_rot.T @ (_phi(self.t, lam)[:, None] * prof.X_rot) if beta.size else None
        var = var_u
        if L is not None:
            var = var + np.einsum("ij,jk,ik->i", L, self.cov_params_fe.to_numpy(), L)
        return interval_frame(mean, var, self.scale if interval == "prediction" else 0.0,
                              alpha, index)

    def _new_design(self, newdata, exog, ntk_inputs, kernel, offset):
        m = self.model
        d = m.data
        if newdata is not None:
            if not isinstance(newdata, pd.DataFrame):
                raise TypeError("newdata must be a pandas DataFrame; use exog= / ntk_inputs= for arrays")
            nrow = len(newdata)
            index = newdata.index
            Xn = rebuild_exog(d, newdata) if d.exog_design_info is not None else \
                self._array_exog(exog, nrow)
            Zn = None
            if kernel is None:
                if not m.kernel_source.can_cross:
                    m.kernel_source.cross(None, None)  # raises: a cross-kernel is needed
                Zn = rebuild_ntk_inputs(d, newdata)
            if offset is None and d.offset_spec not in (None, "array"):
                if d.offset_spec not in newdata.columns:
                    raise KeyError(f"newdata lacks the offset column {d.offset_spec!r}")
                offset = newdata[d.offset_spec].to_numpy(dtype=float)
        else:
            if kernel is not None:
                nrow = np.asarray(kernel).shape[0]
            elif ntk_inputs is not None:
                nrow = np.asarray(ntk_inputs).reshape(len(ntk_inputs), -1).shape[0]
            else:
                nrow = np.asarray(exog).reshape(len(exog), -1).shape[0]
            index = pd.RangeIndex(nrow)
            Xn = self._array_exog(exog, nrow)
            Zn = None
            if kernel is None:
                if ntk_inputs is None:
                    raise ValueError("pass ntk_inputs= (new network inputs) or kernel= "
                                     "(cross-kernel) to predict at new points")
                Zn = np.asarray(ntk_inputs, dtype=float)
                if Zn.ndim == 1:
                    Zn = Zn.reshape(-1, 1)
                if d.ntk_inputs is not None and Zn.shape[1] != d.ntk_inputs.shape[1]:
                    raise ValueError(f"ntk_inputs has {Zn.shape[1]} columns; the model was fit "
                                     f"with {d.ntk_inputs.shape[1]}")
                if not np.all(np.isfinite(Zn)):
                    raise ValueError("ntk_inputs contains NaN or infinite values")
        if kernel is not None:
            Kx = np.asarray(kernel, dtype=float)
            if Kx.ndim != 2 or Kx.shape != (nrow, m.nobs):
                raise ValueError(f"kernel= must be the cross-kernel of shape (new rows, training "
                                 f"rows) = ({nrow}, {m.nobs}), got {Kx.shape}")
        elif getattr(m.basis, "feature_space", False):  # scaled new inputs; lowrank maps them
            Kx = m.input_scaling.apply(Zn)
        else:
            Kx = m.kernel_source.cross(m.input_scaling.apply(Zn), m.scaled_inputs)
        if offset is None:
            if m.offset_mode == "init":
                off = np.asarray(m.kernel_source.init_output(m.input_scaling.apply(Zn)), float)
            elif m.offset_mode == "array" and np.any(m.offset != 0):
                raise ValueError("the model was fit with an offset array: pass offset= for the new rows")
            else:
                off = np.zeros(nrow)
        else:
            off = np.asarray(offset, dtype=float).ravel()
            if off.shape[0] != nrow:
                raise ValueError(f"offset has {off.shape[0]} values for {nrow} new rows")
        return Xn, Kx, off, index

    def _array_exog(self, exog: Any, nrow: int) -> np.ndarray:
        p = self.model.k_fe
        if p == 0:
            return np.empty((nrow, 0))
        if exog is None:
            raise ValueError(f"pass exog= (new fixed-effects design with {p} columns)")
        X = np.asarray(exog, dtype=float)
        if X.ndim == 1:
            X = X.reshape(-1, 1)
        if X.shape != (nrow, p):
            raise ValueError(f"exog must have shape ({nrow}, {p}), got {X.shape}")
        return X

    # -------------------------------------------------------------------- plots
    def plot_profile(self, **kwargs: Any):
        """Profile log-likelihood against t with t_hat and its CI; see
        :func:`mixednn.plotting.plot_profile`.  Returns a matplotlib Figure."""
        from .plotting import plot_profile

        return plot_profile(self, **kwargs)

    def plot_spectrum(self, **kwargs: Any):
        """Eigenvalues against spectral losses at t_hat (the REML decorrelation); see
        :func:`mixednn.plotting.plot_spectrum`.  Returns a matplotlib Figure."""
        from .plotting import plot_spectrum

        return plot_spectrum(self, **kwargs)

    def plot_fit(self, **kwargs: Any):
        """Observed vs fitted and residuals vs fitted; see
        :func:`mixednn.plotting.plot_fit`.  Returns a matplotlib Figure."""
        from .plotting import plot_fit

        return plot_fit(self, **kwargs)

    # -------------------------------------------------------------------- summary
    def summary(self, alpha: float = 0.05):
        """A statsmodels ``Summary`` (text, HTML and LaTeX) of the fit."""
        from .summary import build_summary

        return build_summary(self, alpha=alpha)

    def __repr__(self) -> str:
        return (f"<MixedLMNTKResults {self.method}: t={self.t:.4g}, scale={self.scale:.4g}, "
                f"llf={self.llf:.4f}, nobs={self.nobs}>")
