"""MixedLMNTKResults: estimates, standard errors, intervals, BLUP, prediction.

A results object is built once, in :meth:`mixednn.MixedLMNTK.fit`, from the model and
the :class:`~mixednn.timechoice.TimeChoice` that chose t; nothing writes into it
afterwards.  Everything here comes from the model's one decomposition of K; nothing
builds or decomposes an n x n matrix again, except the cross-kernel needed to predict
at new inputs.  Tests, plots, the summary and training are delegated to the modules
of the layer below (:mod:`mixednn.inference`, :mod:`mixednn.comparison`,
:mod:`mixednn.plotting`, :mod:`mixednn.summary`, :mod:`mixednn.training`), which read
this object and the record; none of them searches for t again.
"""

from __future__ import annotations

import copy
import math
import warnings
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from . import (comparison, contrasts, inference, intervals, persistence, plotting, summary,
               training)
from .checks import observation_weights
from .exceptions import warn_at_caller
from .numerics import gram_inverse
from .prediction import (Predictor, check_alpha, check_interval, check_missing,
                         empty_prediction, interval_frame, place_rows)
from .profile import SpectralProfile, TimeEstimate, check_complete_spectrum, profile_frame
from .timechoice import TimeChoice

__all__ = ["MixedLMNTKResults", "WaldFixedEffects", "fixed_effects_covariance"]


def fixed_effects_covariance(gram: np.ndarray, reference: np.ndarray, scale: float,
                             names: list[str], t: float, weights: str = "W",
                             absorbed_by: str = "the network absorbs") -> pd.DataFrame:
    """``scale * gram^{-1}`` as a frame; NaN, with a warning that names the columns
    involved, where the fixed effects are not identified at the estimated t.

    Parameters
    ----------
    gram : ndarray, shape (p, p)
        ``X^T W X`` at the estimated t (``X^T H^{-1} X`` with group effects).
    reference : ndarray, shape (p, p)
        ``X^T X`` (whitened by the observation weights): the information without the
        network, against which :func:`mixednn.numerics.gram_inverse` judges ``gram``.
    scale : float
        The residual variance s2.
    names : list of str
        The fixed effects' names.
    t : float
        The estimated training time (for the message).
    weights : str
        How the message writes the weight matrix (``"W"`` or ``"H^-1"``).
    absorbed_by : str
        What the message says absorbs a fixed effect (subject and verb).

    Returns
    -------
    pandas.DataFrame
    """
    if not names:
        return pd.DataFrame(np.empty((0, 0)))
    found = gram_inverse(gram, reference)
    if found.inverse is not None:
        return pd.DataFrame(scale * found.inverse, index=names, columns=names)
    involved = ", ".join(nm for nm, v in zip(names, found.null_loadings) if abs(v) >= 0.1)
    if found.collinear:
        why = (f"the columns {involved} are (nearly) collinear in the data. Drop or "
               "combine them")
    else:
        kept = (f"{found.retained:.2g}" if found.retained > 1e-16 else "less than 1e-16")
        why = (f"{absorbed_by} the combination of {involved}: X^T {weights} X keeps "
               f"{kept} of the information X^T X has on it (as with a network input also "
               "entered as a fixed effect, or a fit that nearly interpolates). Drop those "
               "columns from the formula, or use more rows")
    warn_at_caller(f"the fixed effects are not identified at t = {t:.4g}: {why}. Their "
                   "standard errors are NaN.", RuntimeWarning)
    return pd.DataFrame(np.full(gram.shape, np.nan), index=names, columns=names)


class WaldFixedEffects:
    """Wald quantities and tests of linear hypotheses (statsmodels' ``t_test``,
    ``wald_test``, ``f_test``) of the fixed effects, from a results class's ``params``,
    ``cov_params_fe`` and ``df_resid`` (shared by :class:`MixedLMNTKResults` and
    :class:`mixednn.groupresults.GroupedResults`)."""

    def cov_params(self) -> pd.DataFrame:
        """Covariance matrix of ``params``, conditional on the estimated variance
        parameters (as lme4's ``vcov`` and statsmodels)."""
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

    # ------------------------------------------------------------ linear hypotheses
    def t_test(self, r_matrix: Any):
        """z tests of linear hypotheses ``R beta = q`` on the fixed effects.

        Parameters
        ----------
        r_matrix : str, list of str, dict, array-like or tuple
            As in statsmodels: ``"x1 = 0"``, ``"C(g)[T.b] = C(g)[T.c]"``,
            ``"x1 = x2, x3 = 1"``, a matrix ``R`` (``q = 0``) or a tuple ``(R, q)``
            (parsed by patsy's ``DesignInfo.linear_constraint``).

        Returns
        -------
        statsmodels.stats.contrast.ContrastResults
            Normal reference distribution (``use_t=False``, as statsmodels' MixedLM),
            covariance ``cov_params()`` (conditional on t); see
            :func:`mixednn.contrasts.t_test`.
        """
        return contrasts.t_test(self, r_matrix)

    def wald_test(self, r_matrix: Any, *, use_f: bool = False, scalar: bool = True):
        """Joint Wald test of ``R beta = q``: ``(R b - q)^T (R C R^T)^{-1} (R b - q)``
        against chi2 with J degrees of freedom (``use_f=True``: divided by J, against
        ``F(J, df_resid)``); see :func:`mixednn.contrasts.wald_test`.  Returns a
        statsmodels ``ContrastResults``."""
        return contrasts.wald_test(self, r_matrix, use_f=use_f, scalar=scalar)

    def f_test(self, r_matrix: Any):
        """F test of ``R beta = q`` (the Wald statistic over J against ``F(J, df_resid)``,
        as statsmodels' ``f_test``); see :func:`mixednn.contrasts.f_test`.  Returns a
        statsmodels ``ContrastResults``."""
        return contrasts.f_test(self, r_matrix)


class MixedLMNTKResults(WaldFixedEffects):
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
        NaN at the boundary t = 0 and when another rule than the likelihood chose t.
    llf : float
        REML (or ML) log-likelihood at t.
    method : str
        ``"REML"`` or ``"ML"``.
    time_choice : TimeChoice
        How t was chosen (rule, the likelihood's own maximum, checks, free modes).
    t_method : str
        The rule that chose t (``time_choice.rule``).
    auto_check : AutoCheck or None
        What the default rule's check found (``t_method="auto"``), else None.
    free_modes : int
        Number of free leading modes (0 for the plain model); with free modes also
        ``free_coef``, ``free_modes_table`` and ``k_rule``.
    """

    def __init__(self, model: Any, choice: TimeChoice):
        self.model = model
        self.time_choice = choice
        self.reml = bool(choice.reml)
        self.method = "REML" if self.reml else "ML"
        self.estimate: TimeEstimate = choice.estimate
        self.t = float(choice.t)
        #: the profile t was chosen on (with free modes: the rest of the spectrum)
        self.likelihood_profile: SpectralProfile = choice.profile
        pt = choice.profile.point(self.t, self.reml)
        self._point = pt
        names = model.exog_names
        self.params = pd.Series(pt.beta, index=names, name="params")
        self.scale = float(pt.scale)
        self.llf = float(pt.llf)
        self.converged = bool(choice.estimate.converged)
        self.boundary = bool(choice.estimate.boundary)
        self.nobs = model.nobs
        self.k_fe = model.k_fe
        self.free_modes = choice.k
        self.df_resid = self.nobs - self.k_fe - self.free_modes
        self.t_method = choice.rule
        self.auto_check = choice.check
        self.free_modes_table = choice.free_modes_table
        self.k_rule = choice.k_rule
        self._t_ci_cache: dict[float, tuple[float, float]] = {}

    # ----------------------------------------------------------------- fixed effects
    @cached_property
    def cov_params_fe(self) -> pd.DataFrame:
        """Covariance of the fixed effects, ``s2 (X~^T W X~)^{-1}`` at t_hat."""
        # X^T X from the same profile at t = 0 (all weights 1): it needs no data, so it
        # works for streamed fits and after remove_data()
        reference = self.likelihood_profile.point(0.0, self.reml).xwx
        return fixed_effects_covariance(self._point.xwx, reference, self.scale,
                                        list(self.model.exog_names), self.t)


    def conf_int(self, alpha: float = 0.05, method: str = "wald") -> pd.DataFrame:
        """Confidence intervals for the fixed effects, conditional on t_hat.

        Parameters
        ----------
        alpha : float
            1 - coverage.
        method : {"wald", "profile"}
            ``"wald"``: ``params +- z bse`` (normal quantiles, the default);
            ``"profile"``: likelihood-ratio intervals at t_hat
            (:func:`mixednn.intervals.params_profile_interval`, closed form).

        Returns
        -------
        pandas.DataFrame
            Columns 0 (lower) and 1 (upper), as statsmodels does.
        """
        alpha = check_alpha(alpha)
        if method == "profile":
            return intervals.params_profile_interval(self, alpha)
        if method != "wald":
            raise ValueError(f"method must be 'wald' or 'profile', got {method!r}")
        z = stats.norm.ppf(1 - alpha / 2)
        return pd.DataFrame({0: self.params - z * self.bse, 1: self.params + z * self.bse})

    # ------------------------------------------------------------- variance components
    @property
    def _lik_reml(self) -> bool | None:
        """The likelihood that chose t (REML True, ML False), None for another rule."""
        return {"reml": True, "ml": False}.get(self.t_method)

    @cached_property
    def _cov_log(self) -> np.ndarray:
        if self._lik_reml is None:
            return np.full((2, 2), np.nan)
        return self.likelihood_profile.wald_cov_log(self.estimate, self._lik_reml)

    @property
    def t_se(self) -> float:
        """SE of t: observed information on log t with s2, delta method ``t * SE(log t)``."""
        return float(self.t * math.sqrt(self._cov_log[0, 0])) if not self.boundary else float("nan")

    @property
    def scale_se(self) -> float:
        """SE of s2 from the observed information of (log t, log s2) (delta method)."""
        if self.boundary or self._lik_reml is None:  # t not from the likelihood: s2 alone
            n_eff = self.df_resid if self.reml else self.nobs
            return float(self.scale * math.sqrt(2.0 / n_eff))
        return float(self.scale * math.sqrt(self._cov_log[1, 1]))

    def t_conf_int(self, alpha: float = 0.05) -> tuple[float, float]:
        """Profile-likelihood interval for t: ``{t : 2 [l(t_hat) - l(t)] <= chi2_1(1-alpha)}``."""
        alpha = check_alpha(alpha)
        if alpha not in self._t_ci_cache:
            self._t_ci_cache[alpha] = (
                (math.nan, math.nan) if self._lik_reml is None
                else self.likelihood_profile.profile_interval(self.estimate, self._lik_reml,
                                                              alpha))
        return self._t_ci_cache[alpha]

    @property
    def t_reml(self) -> float:
        """The REML time of the plain kernel, shown beside ``t`` when another rule chose t."""
        return float(self.time_choice.t_reml)

    @property
    def stopping_diagnostic(self):
        """Do the stopping rules agree, and does REML's decorrelation hold in the leading
        modes?  A :class:`mixednn.stopping.StoppingDiagnostic` (its ``message`` is the
        summary's one line, ``None`` when nothing is flagged), or None when the default
        rule already acted on it."""
        return self.time_choice.diagnostic

    def scale_conf_int(self, alpha: float = 0.05, method: str = "wald") -> tuple[float, float]:
        """Interval for the residual variance s2.

        Parameters
        ----------
        alpha : float
            1 - coverage.
        method : {"wald", "profile"}
            ``"wald"`` (default): Wald on the log scale, from :attr:`scale_se`;
            ``"profile"``: ``{s2 : 2 [l(s2_hat) - l(s2)] <= chi2_1(1 - alpha)}`` of the
            REML (or ML) criterion at t_hat
            (:func:`mixednn.intervals.scale_profile_interval`).

        Returns
        -------
        (float, float)
        """
        if method == "profile":
            return intervals.scale_profile_interval(self, check_alpha(alpha))
        if method != "wald":
            raise ValueError(f"method must be 'wald' or 'profile', got {method!r}")
        z = stats.norm.ppf(1 - check_alpha(alpha) / 2)
        se_log = self.scale_se / self.scale
        return (self.scale * math.exp(-z * se_log), self.scale * math.exp(z * se_log))

    @cached_property
    def _spectrum(self) -> np.ndarray:
        """The eigenvalues of the likelihood's profile; for a Krylov basis
        (``decomposition="lanczos"``), whose Ritz values are not the spectrum, every
        eigenvalue of K, computed on first use (eigenvalues only, about half an ``eigh``)."""
        prof = self.likelihood_profile
        if prof.complete_spectrum:
            return prof.lam
        return self.model.basis.kernel_eigenvalues()

    @cached_property
    def weights(self) -> np.ndarray:
        """``exp(-t lam_i)``: what is left to learn along each (penalised) eigen-direction.
        With ``decomposition="lanczos"`` every eigenvalue of K is computed first."""
        return np.exp(-self.t * self._spectrum)

    @cached_property
    def edf(self) -> float:
        """Effective df of the network: ``k + sum_i (1 - exp(-t lam_i))`` (k free modes).
        With ``decomposition="lanczos"`` every eigenvalue of K is computed first
        (eigenvalues only, about half the cost of a full ``eigh``)."""
        return float(self.free_modes + np.sum(-np.expm1(-self.t * self._spectrum)))

    @cached_property
    def signal_share(self) -> float:
        """``tr(G) / tr(V) = sum(exp(t lam) - 1) / sum(exp(t lam))``: share of variance in
        signal (with free modes: on the remaining spectrum, the free modes have no prior)."""
        x = self.t * self._spectrum
        m = x.max()
        if self.free_modes:
            return float(np.sum(np.exp(x - m) - math.exp(-m)) / np.sum(np.exp(x - m)))
        n_rest = self.nobs - x.shape[0]  # zero eigenvalues outside a low-rank basis
        num = np.sum(np.exp(x - m) - math.exp(-m))
        den = np.sum(np.exp(x - m)) + n_rest * math.exp(-m)
        return float(num / den)

    # --------------------------------------------------------------- model comparison
    @property
    def df_modelwc(self) -> int:
        """Number of estimated parameters: fixed effects, free-mode coefficients, s2, t and
        the kernel hyperparameters estimated from y (``mixednn.hyper``; 0 for a kernel
        fixed in advance)."""
        return self.k_fe + self.free_modes + 2 + self.kernel_estimated_params

    @property
    def kernel_estimated_params(self) -> int:
        """Kernel hyperparameters estimated from y (0 for a kernel fixed in advance)."""
        return int(getattr(self.model.kernel_source, "estimated_params", 0))

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
    def resid_rot(self) -> np.ndarray:
        """``U^T (y - f0 - X beta)`` on the penalised directions (the likelihood profile)."""
        prof = self.likelihood_profile
        return prof.y_rot - prof.X_rot @ self.params.to_numpy()

    @cached_property
    def _full_resid_rot(self) -> np.ndarray:
        prof = self.model.profile  # every direction of the basis, free modes included
        return prof.y_rot - prof.X_rot @ self.params.to_numpy() if self.k_fe else prof.y_rot

    @cached_property
    def _free_index(self) -> np.ndarray | None:
        fm = self.time_choice.free_modes
        return None if fm is None or not fm.k else fm.free

    @cached_property
    def free_coef(self) -> np.ndarray:
        """gamma: the fitted signal along each free direction (descending eigenvalue)."""
        free = self._free_index
        if free is None:
            return np.empty(0)
        lam = self.model.profile.lam[free]
        return self._full_resid_rot[free][np.argsort(lam)[::-1]]

    @cached_property
    def predictor(self) -> Predictor:
        """The fit's :class:`~mixednn.prediction.Predictor` (filters at t, beta, s2)."""
        prof = self.model.profile
        covb = self.cov_params_fe.to_numpy() if self.k_fe else None
        return Predictor.from_fit(self.t, prof.lam, self._full_resid_rot, prof.X_rot,
                                  self.params.to_numpy(), covb, self.scale,
                                  free=self._free_index)

    @cached_property
    def random_effects(self) -> pd.Series:
        """BLUP of the network effect u: ``(I - exp(-tK)) r`` = gradient flow for time t
        (free leading modes: trained to convergence).  With precision weights,
        ``W^{-1/2} (I - exp(-t K_w)) W^{1/2} r``: the flow on the weighted loss, on the
        scale of y (docs/model.md section 2.7)."""
        learned = -np.expm1(-self.t * self.model.profile.lam)
        if self._free_index is not None:
            learned[self._free_index] = 1.0
        u = self.model.unwhiten(self.model.basis.unrotate(learned * self._full_resid_rot))
        return pd.Series(u, index=self.model.data.row_labels, name="random_effects")

    @cached_property
    def fittedvalues(self) -> pd.Series:
        m = self.model
        fit = m.exog @ self.params.to_numpy() + m.offset + self.random_effects.to_numpy()
        return pd.Series(fit, index=m.data.row_labels, name="fittedvalues")

    @cached_property
    def resid(self) -> pd.Series:
        """Raw residuals ``y - fittedvalues`` (on the scale of y also with weights, as
        statsmodels' WLS ``resid``)."""
        return pd.Series(self.model.endog - self.fittedvalues.to_numpy(),
                         index=self.model.data.row_labels, name="resid")

    @cached_property
    def resid_pearson(self) -> pd.Series:
        """Pearson residuals ``sqrt(w) resid / sqrt(s2)`` (``w = 1`` without precision
        weights), as statsmodels' ``resid_pearson``: of unit variance under the model's
        noise ``Var(e_i) = s2 / w_i``."""
        r = self.model.whiten(self.resid.to_numpy()) / math.sqrt(self.scale)
        return pd.Series(r, index=self.model.data.row_labels, name="resid_pearson")

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
        """Train a copy of the (finite) network for the chosen time and compare with the NTK.

        Full-batch gradient descent (``torch.optim.SGD``, no momentum) on ``y - X beta_hat``
        for ``round(self.epochs(lr, loss))`` steps (or ``steps``); see
        :func:`mixednn.training.train` for all options and conventions.

        Returns
        -------
        mixednn.trainingpath.TrainingPath
            Real and NTK-predicted losses, the stopping step and the agreement metric.
        """
        return training.train(self._with_spectrum("training the network against the NTK path"),
                              lr, loss=loss, steps=steps, record_every=record_every,
                              test_data=test_data, **kwargs)

    # ------------------------------------------------- what needs the whole spectrum
    @cached_property
    def _spectral_twin(self) -> "MixedLMNTKResults":
        # the same likelihood fit on the full eigendecomposition; its warnings were this
        # fit's own and have been raised already
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.model.full_spectrum_model().fit(self.reml, t_method=self.t_method)

    def __getstate__(self) -> dict:
        # the fit on the full decomposition is rebuilt on demand: neither saved nor copied
        state = dict(self.__dict__)
        state.pop("_spectral_twin", None)
        return state

    def _with_spectrum(self, what: str) -> "MixedLMNTKResults":
        """This fit, or for a Krylov basis chosen by ``decomposition="auto"`` the same fit on
        the full eigendecomposition of K (computed once, on first use; estimates equal to
        1e-10): what sums over every eigen-direction reads it.  An explicit
        ``decomposition="lanczos"`` raises instead, naming the option."""
        prof = self.likelihood_profile
        if prof.complete_spectrum:
            return self
        if getattr(self.model, "decomposition", None) != "auto":
            check_complete_spectrum(prof, what)
        return self._spectral_twin

    # ----------------------------------------------------------- tests of t = 0
    def score_test(self, method: str = "exact", *, tol: float = 1e-9):
        """Score test of ``H0: t = 0`` with its exact Gaussian null; see
        :func:`mixednn.inference.score_test` (methods ``"exact"``, ``"imhof"``,
        ``"davies"``, ``"saddlepoint"``, ``"liu"``, ``"satterthwaite"``, ``"plugin"``,
        ``"plugin-liu"``, ``"plugin-satterthwaite"``, and ``"leading"`` for a Krylov
        basis without the full spectrum).  Returns a ``TestResult``.

        On a kernel whose hyperparameters were estimated from y the test is
        anticonservative (docs/tests.md) and a ``UserWarning`` says so: test with the
        kernel fixed in advance (``KernelChoice.score_test()``)."""
        if self.kernel_estimated_params:
            warn_at_caller(summary.estimated_kernel_note(self.kernel_estimated_params))
        return inference.score_test(self, method, tol=tol)

    def lr_test(self, method: str = "simulate", nsim: int = 10_000, seed: Any = None):
        """(Restricted) likelihood-ratio test of ``H0: t = 0``: ``"simulate"`` (exact
        finite-sample null) or ``"mixture"`` (50:50 chi2_0 : chi2_1); see
        :func:`mixednn.inference.lr_test`.  Returns a ``TestResult``.

        The simulated null draws in every eigen-direction of K: with
        ``decomposition="lanczos"`` it raises (``"mixture"`` works), with ``"auto"`` it
        reads the same fit on the full eigendecomposition (computed on first use).  On a
        kernel whose hyperparameters were estimated from y it warns, as
        :meth:`score_test` does."""
        if self.kernel_estimated_params:
            warn_at_caller(summary.estimated_kernel_note(self.kernel_estimated_params))
        fit = self._with_spectrum("the simulated null of the likelihood ratio (lr_test("
                                  "method='simulate'); method='mixture' needs no spectrum)") \
            if method == "simulate" else self
        return inference.lr_test(fit, method, nsim=nsim, seed=seed)

    def compare_lr_test(self, other: Any, *, null: str = "simulate", nsim: int = 10_000,
                        seed: Any = None, refit: bool | None = None):
        """Likelihood-ratio test against another nested model (a network model or a
        statsmodels OLS null); see :func:`mixednn.comparison.compare_lr_test`."""
        return comparison.compare_lr_test(self, other, null=null, nsim=nsim, seed=seed,
                                          refit=refit)

    def null_fit(self):
        """The no-network model (t = 0) on the same rows: statsmodels OLS of ``y - f0`` on
        X, ready for ``mn.anova(res.null_fit(), res)``; see :func:`mixednn.comparison.ols_null`."""
        return comparison.ols_null(self)

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
        return profile_frame(self.likelihood_profile, self.reml, self.t, self.llf,
                             self.estimate.search_bounds,
                             self.t_conf_int() if grid is None else None, grid, num)

    # -------------------------------------------------------------------- predict
    def predict(self, newdata: pd.DataFrame | None = None, *, exog: Any = None,
                ntk_inputs: Any = None, kernel: Any = None, offset: Any = None,
                interval: str | None = None, alpha: float = 0.05,
                cross: str = "auto", missing: str = "exclude",
                weights: Any = None) -> pd.Series | pd.DataFrame:
        """Predictions of the fitted (trained) network plus fixed effects (``docs/model.md``
        section 4; one implementation for every basis, :mod:`mixednn.prediction`).

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
            for a new observation (adds s2, or ``s2 / w*`` with precision weights).
        alpha : float
            1 - coverage.
        cross : {"auto", "exact", "features"}
            Feature-space (``low_rank=m``, Nystrom) fits only: how new rows meet the
            training rows.  ``"features"``: through the Nystrom feature map (O(m) per
            new row); ``"exact"``: the exact cross-kernel against every training row,
            streamed in one pass (O(n) per new row, more accurate); ``"auto"``: exact
            when that pass is cheap (n x (new rows + m) <= 2e8 kernel evaluations).  The
            route taken is in ``result.attrs["cross"]``.
        missing : {"exclude", "raise"}
            New rows with a missing value (NaN, None, ``pd.NA``) in a variable the
            prediction needs: ``"exclude"`` (default, R's ``na.action = na.exclude``)
            predicts NaN for them, in place, so that the result stays aligned with
            ``newdata``'s index; ``"raise"`` raises a ValueError naming the columns.
        weights : array-like, optional
            Precision weights ``w*`` of the new observations (``Var(e*) = s2 / w*``), used
            only by ``interval="prediction"``, as statsmodels' WLS ``get_prediction``.  By
            default the weights column of ``newdata`` when the model's weights were a
            column it carries, else 1; for the training rows, the model's weights.
            NaN gives NaN observation intervals in its row.

        Returns
        -------
        pandas.Series or pandas.DataFrame
            A Series of means without ``interval``; otherwise columns ``mean``,
            ``lower``, ``upper`` (and ``se``).  One row per new row (none for an empty
            ``newdata``), in the order and with the index of ``newdata``.
        """
        return self._predict(newdata, exog=exog, ntk_inputs=ntk_inputs, kernel=kernel,
                             offset=offset, interval=interval, alpha=alpha, cross=cross,
                             missing=missing, weights=weights)[0]

    def _predict(self, newdata: pd.DataFrame | None = None, *, exog: Any = None,
                 ntk_inputs: Any = None, kernel: Any = None, offset: Any = None,
                 interval: str | None = None, alpha: float = 0.05, cross: str = "auto",
                 missing: str = "exclude", weights: Any = None
                 ) -> tuple[pd.Series | pd.DataFrame, np.ndarray | None]:
        """:meth:`predict`, and the precision weights of the observations it predicts
        (aligned with its rows, None for all 1) for :meth:`get_prediction`."""
        check_interval(interval)
        alpha = check_alpha(alpha)
        check_missing(missing)
        if cross not in ("auto", "exact", "features"):
            raise ValueError(f"cross must be 'auto', 'exact' or 'features', got {cross!r}")
        m = self.model
        basis = m.basis
        if newdata is None and exog is None and ntk_inputs is None and kernel is None:
            mean = self.fittedvalues.to_numpy()
            index = m.data.row_labels
            w = m.weights
            # new observations at the training rows: their own weights unless given
            obs = w if weights is None else observation_weights(weights, m.nobs, index)
            if interval is None:
                return pd.Series(mean, index=index, name="predicted"), obs
            if not basis.complete_spectrum:  # diag(exp(-tK)) needs every eigen-direction
                return self._with_spectrum("in-sample prediction intervals (diag(exp(-tK)))"
                                           )._predict(interval=interval, alpha=alpha,
                                                      cross=cross, missing=missing,
                                                      weights=weights)
            pred = self.predictor
            # the in-sample rotations are those of the whitened rows: whitened X in, and
            # the variance back to the scale of y (divided by w)
            X = None if basis.feature_space else m.whiten(m.exog)
            var = np.concatenate(basis.map_in_sample(
                lambda rot, Xb: pred.variance(rot.matrix(), Xb), X))
            if w is not None:
                var = var / w
            noise = self.scale if obs is None else self.scale / obs
            out = interval_frame(mean, var, noise if interval == "prediction" else 0.0,
                                 alpha, index)
            if basis.feature_space:
                out.attrs["cross"] = "features"
            return out, obs
        rows = m.new_rows(newdata, exog=exog, ntk_inputs=ntk_inputs, kernel=kernel,
                          offset=offset, missing=missing, weights=weights)
        w = rows.weights
        if w is not None and rows.positions is not None:  # aligned with the placed rows
            w = np.full(len(rows.full_index), np.nan)
            w[rows.positions] = rows.weights
        if rows.nrows == 0:  # no rows, or none complete
            return place_rows(empty_prediction(interval, rows.index), rows), w
        rotation = basis.cross_rotation(kernel=rows.kernel, inputs=rows.inputs, route=cross)
        return place_rows(self.predictor.frame(rotation, rows, interval, alpha), rows), w

    def get_prediction(self, newdata: pd.DataFrame | None = None,
                       **kwargs: Any) -> "intervals.PredictionResults":
        """Predictions with standard errors and both intervals, as statsmodels'
        ``get_prediction``.

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            New rows (formula models); ``None`` predicts the training rows.
        **kwargs
            ``exog``, ``ntk_inputs``, ``kernel``, ``offset``, ``cross``, ``missing``,
            ``weights``: as in :meth:`predict` (not ``interval`` or ``alpha``: both
            intervals, at any level, come from the returned object).

        Returns
        -------
        mixednn.intervals.PredictionResults
            ``predicted_mean``, ``se_mean``, ``se_obs`` (``sqrt(se_mean^2 + s2)``;
            ``s2 / w*`` in place of s2 with precision weights, as statsmodels' WLS),
            ``conf_int(obs=False, alpha=0.05)`` and ``summary_frame(alpha=0.05)`` with
            statsmodels' columns ``mean, mean_se, mean_ci_lower, mean_ci_upper,
            obs_ci_lower, obs_ci_upper`` (normal quantiles).
        """
        intervals.check_get_prediction_options(kwargs)
        frame, w = self._predict(newdata, interval="confidence", **kwargs)
        return intervals.PredictionResults.from_frame(
            frame, self.scale if w is None else self.scale / w)

    # -------------------------------------------------------------------- plots
    def plot_profile(self, **kwargs: Any):
        """Profile log-likelihood against t with t_hat and its CI; see
        :func:`mixednn.plotting.plot_profile`.  Returns a matplotlib Figure."""
        return plotting.plot_profile(self, **kwargs)

    def plot_spectrum(self, **kwargs: Any):
        """Eigenvalues against spectral losses at t_hat (the REML decorrelation); see
        :func:`mixednn.plotting.plot_spectrum`.  Returns a matplotlib Figure.  With a
        Krylov basis: as :meth:`lr_test` (the full eigendecomposition for ``"auto"``)."""
        return plotting.plot_spectrum(self._with_spectrum("plot_spectrum"), **kwargs)

    def plot_fit(self, **kwargs: Any):
        """Observed vs fitted and residuals vs fitted; see
        :func:`mixednn.plotting.plot_fit`.  Returns a matplotlib Figure."""
        return plotting.plot_fit(self, **kwargs)

    # -------------------------------------------------------------------- summary
    # -------------------------------------------------------------------- saving
    def save(self, path: Any, remove_data: bool = False) -> None:
        """Save the fit to a file; read it back with :func:`mixednn.load`.

        Parameters
        ----------
        path : str or os.PathLike
            The file (overwritten).  It starts with a small header (magic line, file
            format version, mixednn version; :mod:`mixednn.persistence`) followed by the
            pickled results, model included.
        remove_data : bool
            Leave the training rows out of the file, as statsmodels' ``remove_data``:
            ``endog``, ``exog``, the offset, the row labels, the in-sample values
            (``fittedvalues``, ``resid``, ``resid_pearson``, ``random_effects``), a
            precomputed n x n kernel
            matrix, a finite network's cached n x P Jacobian and the training columns
            kept for patsy (except the few rows patsy needs to rebuild the same design:
            one per categorical level, or every row of the formula columns when the
            formulas use stateful transforms such as ``center(x)``).  Kept, because
            prediction at new rows needs them: the estimates and the time choice, the
            rotated response and design ``U^T [y - f0, X]`` (the summary, the tests of
            t = 0 and the profile read them), the basis (for a dense basis its n x n
            eigenvectors, which rotate the cross-kernel of new rows), the input scaling,
            the kernel or network, and the network inputs of the training rows when
            the cross-kernel of new rows is computed from them (a dense basis of a
            kernel evaluated on inputs; Nystrom features, whose ``cross="exact"``
            route sums the kernel against every training row) -- not for a precomputed
            kernel (``predict`` then takes the cross-kernel) or exact Jacobian features.
            A streamed (CSV) fit keeps the path of its file.  After loading,
            ``predict`` at new rows, ``summary()``, ``score_test()`` and ``lr_test()``
            give the same results; what needs the rows (``fittedvalues``, ``resid``,
            ``predict()`` of the training rows, ``plot_fit``, refits) raises
            :class:`~mixednn.exceptions.DataRemovedError`.  The rotated data and a
            dense basis together determine y: ``remove_data`` makes files smaller, it
            does not anonymise them.

        Raises
        ------
        pickle.PicklingError
            Something in the fit cannot be saved, e.g. a lambda passed as ``kernel=``
            without ``cloudpickle`` installed (the message names the option and the fix).

        Examples
        --------
        >>> import os, tempfile, numpy as np, mixednn as mn
        >>> rng = np.random.default_rng(0); Z = rng.normal(size=(60, 2))
        >>> y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=60)
        >>> res = mn.MixedLMNTK(y, np.ones((60, 1)), Z, network=mn.MLP(depth=1)).fit()
        >>> path = os.path.join(tempfile.mkdtemp(), "fit.mixednn")
        >>> res.save(path, remove_data=True)
        >>> back = mn.load(path)
        >>> bool(back.predict(exog=np.ones((2, 1)), ntk_inputs=Z[:2]).equals(
        ...      res.predict(exog=np.ones((2, 1)), ntk_inputs=Z[:2])))
        True
        """
        persistence.save(self, path, remove_data=remove_data)

    def saved_without_rows(self) -> "MixedLMNTKResults":
        """What ``save(..., remove_data=True)`` stores (:mod:`mixednn.persistence`): a copy
        without the cached in-sample values, or this object when none is cached."""
        cached = [name for name in ("fittedvalues", "resid", "resid_pearson", "random_effects")
                  if name in self.__dict__]
        if not cached:
            return self
        new = copy.copy(self)
        for name in cached:
            del new.__dict__[name]
        return new

    def summary(self, alpha: float = 0.05):
        """A statsmodels ``Summary`` (text, HTML and LaTeX) of the fit."""
        return summary.build_summary(self, alpha=check_alpha(alpha))

    def __str__(self) -> str:
        """The summary's text (``print(res)``), as linearmodels' results print."""
        return str(self.summary())

    def _repr_html_(self) -> str:
        """The summary as HTML, shown by Jupyter for a results object in a cell."""
        return self.summary().as_html()

    def __repr__(self) -> str:
        if self.free_modes:
            return (f"<MixedLMNTKResults {self.method}: k={self.free_modes} free modes, "
                    f"t={self.t:.4g}, scale={self.scale:.4g}, llf={self.llf:.4f}, "
                    f"nobs={self.nobs}>")
        return (f"<MixedLMNTKResults {self.method}: t={self.t:.4g}, scale={self.scale:.4g}, "
                f"llf={self.llf:.4f}, nobs={self.nobs}>")
