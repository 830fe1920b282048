"""Results of a network fitted beside group random effects (``(1 | g)`` terms).

Built once from the model, its :class:`mixednn.groupprofile.GroupedProfile` and the
joint estimate :class:`mixednn.groupfit.GroupFit`; never written to afterwards.

Without a network the numbers are lme4's: REML criterion, ``fixef``, ``vcov``,
``sigma``, ``VarCorr`` and ``ranef`` (checked against lme4 1.1 in
``tests/test_groups.py``).  With the network, the BLUP of its part is the network
trained by gradient flow for time t on ``y - X beta - f0 - Z b`` (docs/model.md
section 9); ``predict`` adds the conditional modes of known groups, and for a new
group (``allow_new_levels=True``) the population level, its group variance entering
the prediction interval.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
from scipy import stats

from . import persistence
from .bars import GroupStructure, array_groups
from .groupfit import GroupFit, fit_groups, sd_profile_intervals, t_profile_interval
from .groupprofile import GroupedProfile
from .hypotheses import TestResult
from .intervals import PredictionResults, check_get_prediction_options
from .numerics import flow_filter, flow_variance_filter
from .profile import SpectralProfile
from .checks import plain_dtypes
from .exceptions import warn_at_caller
from .newrows import rebuild_exog
from .prediction import NewRows, check_alpha, check_interval, interval_frame
from .quadform import QuadraticForm
from .results import WaldFixedEffects, fixed_effects_covariance
from .summary import build_group_summary, estimated_kernel_note

__all__ = ["GroupedResults", "score_test_t0"]


class GroupedResults(WaldFixedEffects):
    """A fitted network-plus-groups model (lme4's ``merMod`` with a training-time row).

    Attributes
    ----------
    model : MixedLMNTK
    fit_record : GroupFit
        The joint estimate of ``(t, theta)``.
    params, bse, tvalues, pvalues
        Fixed effects (GLS at the estimate), SEs from ``s2 (X^T H^{-1} X)^{-1}``, z and
        normal p-values (lme4 prints t values without p-values; statsmodels' MixedLM
        uses the normal reference).
    t, t_se : float
        Training time and its SE from the observed information (NaN at t = 0 or
        without a network).
    theta : ndarray
        lme4's relative covariance parameters (``getME(fit, "theta")``).
    scale : float
        s2, lme4's ``sigma(fit)^2``.
    llf, aic, bic : float
        REML (or ML) log-likelihood with lme4's constant, and its criteria.
    has_network : bool
    """

    def __init__(self, model: Any, profile: GroupedProfile, record: GroupFit,
                 basis: Any = None):
        self.model = model
        self.profile = profile
        self.fit_record = record
        self.basis = basis
        pt = record.point
        self.point = pt
        self.reml = bool(record.reml)
        self.method = "REML" if self.reml else "ML"
        self.has_network = bool(profile.has_network)
        self.t = float(pt.t)
        self.t_se = record.t_se if self.has_network and self.t > 0 else float("nan")
        self._t_ci_cache: dict[float, tuple[float, float]] = {}
        self._vcomp_ci_cache: dict[float, pd.DataFrame] = {}
        self.theta = pt.theta.copy()
        self.scale = float(pt.scale)
        self.llf = float(pt.llf)
        self.converged = bool(record.converged)
        self.nobs = int(model.nobs)
        self.k_fe = int(model.k_fe)
        self.df_resid = self.nobs - self.k_fe
        names = model.exog_names
        self.params = pd.Series(pt.beta, index=names, name="params")
        self.groups: GroupStructure = model.groups
        self.singular_terms = list(record.singular_terms)
        self.t_on_boundary = bool(record.t_on_boundary)

    # ----------------------------------------------------------------- fixed effects
    @cached_property
    def cov_params_fe(self) -> pd.DataFrame:
        X = self.profile.X  # U^T X: X^T X without reading the data again
        return fixed_effects_covariance(self.point.xhx, X.T @ X, self.scale,
                                        list(self.model.exog_names), self.t, weights="H^-1",
                                        absorbed_by="the network and the group effects absorb")

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald intervals of the fixed effects (columns 0 and 1, as statsmodels)."""
        alpha = check_alpha(alpha)
        z = stats.norm.ppf(1 - alpha / 2)
        return pd.DataFrame({0: self.params - z * self.bse, 1: self.params + z * self.bse})

    # ------------------------------------------------------------- variance components
    @property
    def df_modelwc(self) -> int:
        """Parameters: fixed effects, theta, t (with a network) and s2 (lme4's df), and the
        kernel hyperparameters estimated from y (``mixednn.hyper``; usually 0)."""
        return self.k_fe + self.groups.n_theta + int(self.has_network) + 1 \
            + self.kernel_estimated_params

    @property
    def kernel_estimated_params(self) -> int:
        """Kernel hyperparameters estimated from y (0 for a kernel fixed in advance)."""
        src = getattr(self.model, "kernel_source", None)
        return int(getattr(src, "estimated_params", 0)) if self.has_network else 0

    @property
    def aic(self) -> float:
        return -2 * self.llf + 2 * self.df_modelwc

    @property
    def bic(self) -> float:
        return -2 * self.llf + np.log(self.nobs) * self.df_modelwc

    @property
    def deviance(self) -> float:
        return -2 * self.llf

    @cached_property
    def vcomp(self) -> pd.DataFrame:
        """lme4's ``VarCorr`` layout: Groups, Name, Variance, Std.Dev., Corr (the
        correlations with the earlier effects of the same term, comma-separated), then
        the network's training time and the residual."""
        rows = []
        seen: dict[str, int] = {}
        for blk, cov in zip(self.groups.blocks, self.groups.covariances(self.theta, self.scale)):
            name = blk.term.group_name
            shown = name if name not in seen else f"{name}.{seen[name]}"
            seen[name] = seen.get(name, 0) + 1
            sd = np.sqrt(np.diag(cov))
            for i, eff in enumerate(blk.effect_names):
                corr = [cov[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else np.nan
                        for j in range(i)]
                rows.append({"Groups": shown if i == 0 else "", "Name": eff,
                             "Variance": cov[i, i], "Std.Dev.": sd[i],
                             "Corr": ", ".join(f"{c:.3f}" for c in corr)})
        if self.has_network:
            rows.append({"Groups": "Network", "Name": "training time t", "Variance": np.nan,
                         "Std.Dev.": np.nan, "Corr": "", "Estimate": self.t,
                         "Std.Err.": self.t_se})
        rows.append({"Groups": "Residual", "Name": "", "Variance": self.scale,
                     "Std.Dev.": np.sqrt(self.scale), "Corr": ""})
        frame = pd.DataFrame(rows)
        for col in ("Estimate", "Std.Err."):
            if col not in frame:
                frame[col] = np.nan
        return frame[["Groups", "Name", "Variance", "Std.Dev.", "Corr", "Estimate", "Std.Err."]]

    def ranef_table(self) -> pd.DataFrame:
        """Conditional modes with their conditional standard deviations, as lme4's
        ``as.data.frame(ranef(fit, condVar = TRUE))``: one row per term, effect and level,
        columns ``grpvar, term, grp, condval, condsd``.

        ``condsd`` is from the conditional covariance of b given y at the estimates (the
        fixed effects held at beta_hat, as lme4's ``condVar``), with the network's
        covariance in it: ``Var(b | y) = s2 Lam (I + Lam^T Z^T exp(-tK) Z Lam)^{-1}
        Lam^T`` (docs/model.md section 8.1).
        """
        Lam = self.groups.lambda_matrix(self.theta)
        A = Lam.T @ self.profile.at_t(self.t).G @ Lam + np.eye(Lam.shape[0])
        var = self.scale * np.einsum("ij,ji->i", Lam, np.linalg.solve(A, Lam.T))
        rows, at = [], 0
        for blk in self.groups.blocks:
            n_lev = len(blk.levels)
            b = self.point.b[at:at + blk.n_columns].reshape(n_lev, blk.k)
            sd = np.sqrt(np.maximum(var[at:at + blk.n_columns], 0.0)).reshape(n_lev, blk.k)
            at += blk.n_columns
            for i, eff in enumerate(blk.effect_names):
                rows.append(pd.DataFrame({"grpvar": blk.term.group_name, "term": eff,
                                          "grp": list(blk.levels), "condval": b[:, i],
                                          "condsd": sd[:, i]}))
        return pd.concat(rows, ignore_index=True)

    def t_conf_int(self, alpha: float = 0.05) -> tuple[float, float]:
        """Profile-likelihood interval for the training time t, the group parameters
        profiled out (lme4's ``confint(method = "profile")`` for a variance parameter):
        ``{t : 2 [l(t_hat, theta_hat) - max_theta l(t, theta)] <= chi2_1(1 - alpha)}`` of
        the REML (or ML) criterion.  The lower end is 0 where t = 0 is inside; see
        :func:`mixednn.groupfit.t_profile_interval`."""
        if not self.has_network:
            raise ValueError("this model has no network: there is no training time")
        alpha = check_alpha(alpha)
        # setdefault: fits saved before these caches existed load without them
        cache = self.__dict__.setdefault("_t_ci_cache", {})
        if alpha not in cache:
            cache[alpha] = t_profile_interval(self.profile, self.fit_record, alpha)
        return cache[alpha]

    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes of the group effects (lme4's ``ranef``): a frame per
        grouping factor, levels as rows, effects as columns."""
        return self.groups.ranef(self.point.b)

    # ----------------------------------------------------------------- in-sample values
    @cached_property
    def network_part(self) -> np.ndarray:
        """The network's fitted part ``u`` on the training rows (zeros without a network):
        gradient flow for time t on ``y - f0 - X beta - Z b``."""
        if not self.has_network:
            return np.zeros(self.nobs)
        w = np.exp(-self.t * self.profile.lam)
        return self.basis.unrotate((1.0 - w) * self.point.net_target)

    @cached_property
    def fittedvalues(self) -> pd.Series:
        """``X beta + f0 + Z b + u`` on the training rows (lme4's ``fitted``)."""
        m = self.model
        fit = m.exog @ self.point.beta + m.offset + self.groups.Z @ self.point.b + self.network_part
        return pd.Series(fit, index=m.data.row_labels, name="fittedvalues")

    @cached_property
    def resid(self) -> pd.Series:
        return pd.Series(self.model.endog - self.fittedvalues.to_numpy(),
                         index=self.model.data.row_labels, name="resid")

    # ----------------------------------------------------------------- prediction
    def predict(self, newdata: pd.DataFrame | None = None, *, re_form: str | None = None,
                allow_new_levels: bool = False, interval: str | None = None,
                alpha: float = 0.05, exog: Any = None, ntk_inputs: Any = None,
                groups: Any = None, exog_re: Any = None) -> pd.Series | pd.DataFrame:
        """Predictions at new rows (lme4's ``predict.merMod`` with the network added).

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            New rows with the fixed-effect, network-input and grouping columns; the
            training rows by default (their fitted values, or with intervals).
        re_form : {None, "~0"}
            ``None``: with the conditional modes of the groups (lme4's default);
            ``"~0"`` (or ``"NA"``): the population level, no group effects.
        allow_new_levels : bool
            A level not seen in training gets the population level (its effects 0,
            their variance in the prediction interval); otherwise such a level is an
            error naming it.
        interval : {None, "confidence", "prediction"}
            Means only, or with intervals: the prediction error variance of the BLUP
            with the GLS fixed effects (Henderson), plus s2 for a new observation.
        alpha : float
        exog, ntk_inputs, groups, exog_re
            The array interface (a model built with ``groups=``): the new rows'
            fixed-effects design, network inputs, group labels and random-effects design.

        Returns
        -------
        pandas.Series or pandas.DataFrame
        """
        check_interval(interval)
        alpha = check_alpha(alpha)
        if re_form not in (None, "~0", "NA", "~ 0"):
            raise ValueError(f"re_form must be None (with group effects) or '~0' (population "
                             f"level), got {re_form!r}")
        if not isinstance(allow_new_levels, (bool, np.bool_)):
            raise TypeError(f"allow_new_levels must be True or False, got {allow_new_levels!r}")
        with_groups = re_form is None
        formula_model = self.model.data.formula is not None
        if newdata is None and formula_model:
            if interval is None and with_groups:
                return self.fittedvalues.rename("predicted")
            newdata = self.model.group_frame
        if formula_model:
            if not isinstance(newdata, pd.DataFrame):
                raise TypeError("newdata must be a pandas DataFrame")
            rows = (self.model.new_rows(newdata, missing="raise") if self.has_network
                    else self._rows_without_network(newdata))
            frame = newdata
        else:
            rows, frame = self._array_rows(exog, ntk_inputs, groups, exog_re, with_groups)
        nrow = rows.nrows
        if with_groups:
            Zn, En = self.groups.new_rows(frame, allow_new_levels)
        else:
            Zn = None
            En = np.zeros((nrow, 0))
        mean, var = self._mean_and_variance(rows, Zn, En, need_var=interval is not None)
        if interval is None:
            return pd.Series(mean, index=rows.index, name="predicted")
        return interval_frame(mean, var, self.scale if interval == "prediction" else 0.0,
                              alpha, rows.index)

    def vcomp_conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Profile-likelihood intervals for the standard deviations of the group terms and
        the residual: lme4's ``confint(fit, parm = "theta_", method = "profile")``.

        As lme4, the profile is of the ML log-likelihood, whether this fit is REML or ML,
        with every other parameter (fixed effects, the other variances and the network's
        t) maximised at each value; see :func:`mixednn.groupfit.sd_profile_intervals`.
        Scalar terms only (``(1 | g)``, ``(0 + x | g)``, ``(x || g)``).  Each end costs
        tens of constrained ML fits (measured: 19 s, about 8 fits' worth, at n = 1,000
        with a network and two terms; 0.4-1.1 s on the 138- and 180-row test data sets).

        Returns
        -------
        pandas.DataFrame
            Rows named as lme4's (``sd_(Intercept)|g``, ``sigma``), columns the lower
            and upper ends (``"2.5 %"``, ``"97.5 %"`` at ``alpha = 0.05``).
        """
        alpha = check_alpha(alpha)
        cache = self.__dict__.setdefault("_vcomp_ci_cache", {})
        if alpha not in cache:
            rows = sd_profile_intervals(self.profile, alpha)
            cache[alpha] = pd.DataFrame(
                [r[1:] for r in rows], index=[r[0] for r in rows],
                columns=[f"{100 * alpha / 2:g} %", f"{100 * (1 - alpha / 2):g} %"])
        return cache[alpha].copy()

    def get_prediction(self, newdata: pd.DataFrame | None = None,
                       **kwargs: Any) -> PredictionResults:
        """Predictions with standard errors and both intervals, as statsmodels'
        ``get_prediction`` (and :meth:`MixedLMNTKResults.get_prediction`).

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            New rows (formula models); ``None`` predicts the training rows.
        **kwargs
            ``re_form``, ``allow_new_levels``, ``exog``, ``ntk_inputs``, ``groups``,
            ``exog_re``: as in :meth:`predict` (not ``interval`` or ``alpha``: both
            intervals, at any level, come from the returned object).

        Returns
        -------
        mixednn.intervals.PredictionResults
            ``se_mean`` is the standard error of the prediction of the mean: the
            prediction error of the conditional modes and the network (Henderson's, with
            a new level's variance where ``allow_new_levels`` gives one) plus the fixed
            effects' uncertainty; ``se_obs`` adds s2.  ``summary_frame(alpha=0.05)`` has
            statsmodels' columns (normal quantiles).
        """
        check_get_prediction_options(kwargs)
        frame = self.predict(newdata, interval="confidence", **kwargs)
        return PredictionResults.from_frame(frame, self.scale)

    def _array_rows(self, exog: Any, ntk_inputs: Any, groups: Any, exog_re: Any,
                    with_groups: bool) -> tuple[NewRows, pd.DataFrame | None]:
        """New rows of a model built from arrays (``groups=``, ``exog_re=``)."""
        if exog is None and self.k_fe:
            raise ValueError("pass exog= (the new rows' fixed-effects design) for a model "
                             "built from arrays")
        if self.has_network:
            rows = self.model.new_rows(exog=exog, ntk_inputs=ntk_inputs, missing="raise")
        else:
            X = np.asarray(exog, dtype=float).reshape(-1, self.k_fe) if self.k_fe else \
                np.empty((len(groups), 0))
            rows = NewRows(X=X, offset=np.zeros(X.shape[0]), index=pd.RangeIndex(X.shape[0]))
        if not with_groups:
            return rows, None
        if groups is None:
            raise ValueError("pass groups= (the new rows' group labels), or re_form='~0' for "
                             "the population level")
        _, frame = array_groups(groups, exog_re, rows.nrows)
        if exog_re is not None:  # the training term's column names
            blk = self.groups.blocks[0]
            frame.columns = ["group", *[c for c in blk.frame.columns]]
        return rows, frame

    def _rows_without_network(self, newdata: pd.DataFrame) -> NewRows:
        """New rows of a model without a network: fixed-effects design and offset."""
        d = self.model.data
        X = rebuild_exog(d, plain_dtypes(newdata))
        if np.isnan(X).any():
            raise ValueError("newdata has missing values in the fixed-effect columns; drop or "
                             "fill those rows")
        off = np.zeros(len(newdata))
        if d.offset_spec not in (None, "array"):
            if d.offset_spec not in newdata.columns:
                raise KeyError(f"newdata lacks the offset column {d.offset_spec!r}")
            off = newdata[d.offset_spec].to_numpy(dtype=float)
        return NewRows(X=X, offset=off, index=newdata.index)

    def _mean_and_variance(self, rows: Any, Zn: Any, En: np.ndarray, need_var: bool
                           ) -> tuple[np.ndarray, np.ndarray | None]:
        pt, prof = self.point, self.profile
        mean = rows.offset + rows.X @ pt.beta
        if Zn is not None:
            mean = mean + Zn @ pt.b
        kt = None
        if self.has_network:
            kt = self.basis.rotate(rows.kernel.T)          # U^T k*  (n x rows)
            phi = flow_filter(self.t, prof.lam)
            mean = mean + kt.T @ (phi * pt.net_target)
        if not need_var:
            return mean, None
        return mean, self._prediction_error_variance(rows, Zn, En, kt)

    def _prediction_error_variance(self, rows: Any, Zn: Any, En: np.ndarray,
                                   kt: np.ndarray | None) -> np.ndarray:
        """``s2 [c0 - c^T H^{-1} c] + L^T Cov(beta) L`` per new row, with ``c`` the
        covariance of the new row's random part with y (rotated, over s2)."""
        prof, pt = self.profile, self.point
        t, lam = self.t, prof.lam
        nrow = rows.nrows
        Lam = self.groups.lambda_matrix(self.theta)
        LLt = Lam @ Lam.T
        at = prof.at_t(t)
        w, G = at.w, at.G
        A = Lam.T @ G @ Lam + np.eye(prof.q)
        Lc = np.linalg.cholesky(A)
        # c = c_net + c_grp;  H^{-1} = W - W R Lam A^{-1} Lam^T R^T W
        c0 = np.zeros(nrow)
        RtWc = np.zeros((prof.q, nrow))
        XtWc = np.zeros((prof.p, nrow))
        cWc = np.zeros(nrow)
        if kt is not None:
            c0 += flow_variance_filter(t, lam) @ kt ** 2      # c0 - c^T W c for the network
            phik = flow_filter(t, lam)[:, None] * kt           # W c_net
            RtWc += prof.R.T @ phik
            XtWc += prof.X.T @ phik
        if Zn is not None:
            Zd = Zn.toarray() if hasattr(Zn, "toarray") else np.asarray(Zn)
            zl = (Zd @ LLt).T                                 # Lam Lam^T z*  (q x rows)
            c_grp = prof.R @ zl                               # rotated, n x rows
            c0 += np.einsum("ij,ji->i", Zd, zl) - np.einsum("ij,ij->j", c_grp, w[:, None] * c_grp)
            if kt is not None:
                cWc -= 2 * np.einsum("ij,ij->j", phik, c_grp)
            RtWc += prof.R.T @ (w[:, None] * c_grp)
            XtWc += prof.X.T @ (w[:, None] * c_grp)
        if En.size:
            c0 += self._new_level_variance(En)
        B = scipy.linalg.solve_triangular(Lc, Lam.T @ RtWc, lower=True)   # L^{-1} Lam^T R^T W c
        pev = c0 + cWc + np.einsum("ij,ij->j", B, B)
        # fixed effects: L = x* - X~^T H^{-1} c
        Lx = rows.X.T - (XtWc - at.rwx.T @ Lam @ scipy.linalg.solve_triangular(
            Lc.T, B, lower=False))
        var = self.scale * pev
        if self.k_fe:
            var = var + np.einsum("ji,jk,ki->i", Lx, self.cov_params_fe.to_numpy(), Lx)
        return np.maximum(var, 0.0)

    def _new_level_variance(self, En: np.ndarray) -> np.ndarray:
        """Prior variance (over s2) of the effects of new levels: ``e^T T T^T e``."""
        out = np.zeros(En.shape[0])
        at = 0
        for blk, T in zip(self.groups.blocks, self.groups.factors(self.theta)):
            e = En[:, at:at + blk.k]
            out += np.einsum("ij,jk,ik->i", e, T @ T.T, e)
            at += blk.k
        return out

    # ----------------------------------------------------------------- tests of t = 0
    def null_fit(self) -> "GroupedResults":
        """The same groups without the network (t = 0): lme4's linear mixed model."""
        if not self.has_network:
            raise ValueError("this model has no network: it is its own t = 0 fit")
        return self.model.without_network().fit(reml=self.reml)

    def score_test(self) -> TestResult:
        """Score test of t = 0 with the group effects present.

        The statistic is ``y^T P0 K P0 y / y^T P0 y`` at the null fit (groups, no
        network).  Given the null's theta it is a ratio of quadratic forms with an exact
        null, ``P(sum (mu_i - T) chi2_1 > 0)`` with ``mu`` the eigenvalues of
        ``K^{1/2} P0 K^{1/2}`` on the residual space (one eigenvalue problem); the
        estimated theta is treated as known (exact for known theta, asymptotically
        valid otherwise).
        """
        if not self.has_network:
            raise ValueError("the score test of t = 0 needs a network in the model")
        if self.kernel_estimated_params:
            warn_at_caller(estimated_kernel_note(self.kernel_estimated_params))
        return score_test_t0(self.profile, self.reml)

    def lr_test(self, nsim: int = 200, seed: Any = None) -> TestResult:
        """Restricted (REML) or ML likelihood-ratio test of t = 0 with the group effects
        present, by parametric bootstrap: responses simulated from the fitted null model
        (groups, no network), both models refit to each.  The p-value counts draws at
        least as large as observed, ``(1 + #) / (1 + nsim)``."""
        if not self.has_network:
            raise ValueError("the likelihood-ratio test of t = 0 needs a network in the model")
        if self.kernel_estimated_params:
            warn_at_caller(estimated_kernel_note(self.kernel_estimated_params))
        prof = self.profile
        null = fit_groups(prof.with_network_fixed_at_zero(), self.reml)
        observed = max(2 * (self.llf - null.llf), 0.0)
        Lam = self.groups.lambda_matrix(null.theta)
        sd = np.sqrt(null.point.scale)
        mean = prof.X @ null.point.beta

        def statistic(rng: np.random.Generator) -> float:
            u = rng.standard_normal(prof.q)
            sim = prof.with_response(
                mean + sd * (rng.standard_normal(prof.nobs) + prof.R @ (Lam @ u)))
            f0 = fit_groups(sim.with_network_fixed_at_zero(), self.reml)
            f1 = fit_groups(sim, self.reml, t_start=self.t or None)
            return 2 * (f1.llf - f0.llf)

        return _bootstrap_test(statistic, observed, nsim, seed, source="the fitted null",
                               null="t = 0 (no training) with the group effects",
                               dist_name="simulated (theta re-estimated in every draw)",
                               name=f"{'Restricted ' if self.reml else ''}LR test of t = 0 "
                                    "(with group effects)")

    def lr_test_groups(self, nsim: int = 200, seed: Any = None) -> TestResult:
        """Restricted (REML) or ML likelihood-ratio test that every group variance is 0,
        with the network present (H0: the network-only model), by parametric bootstrap:
        responses simulated from the fitted network-only model in the eigenbasis of K,
        both models refit to each.  The p-value is ``(1 + #) / (1 + nsim)``.

        The asymptotic alternative is ``mn.anova(network_only_fit, this_fit)``: for one
        variance the 50:50 mixture of chi2_0 and chi2_1.
        """
        if not self.has_network:
            raise ValueError("without a network, compare with the OLS fit in mn.anova")
        prof = self.profile
        null = self._network_only(prof)
        observed = max(2 * (self.llf - null.llf), 0.0)
        p0 = SpectralProfile(prof.lam, prof.y, prof.X, prof.trace, prof.nobs).point(null.t,
                                                                                  self.reml)
        sd = np.sqrt(np.exp(null.t * prof.lam) * p0.scale)
        mean = prof.X @ p0.beta

        def statistic(rng: np.random.Generator) -> float:
            sim = prof.with_response(mean + sd * rng.standard_normal(prof.nobs))
            f1 = fit_groups(sim, self.reml, t_start=null.t or None)
            return 2 * (f1.llf - self._network_only(sim).llf)

        return _bootstrap_test(statistic, observed, nsim, seed,
                               source="the network-only fit",
                               null="every group variance is 0 (the network alone)",
                               dist_name="simulated (t re-estimated in every draw)",
                               name=f"{'Restricted ' if self.reml else ''}LR test of the group "
                                    "variances (with the network)")

    def _network_only(self, prof: GroupedProfile) -> Any:
        """The network-only maximum of the same (rotated) data: the plain profile of t."""
        return SpectralProfile(prof.lam, prof.y, prof.X, prof.trace, prof.nobs).maximize(
            self.reml)

    # ----------------------------------------------------------------- output
    def summary(self, alpha: float = 0.05):
        """lme4-style summary: header, fixed effects, variance components with the
        training-time row, notes."""
        return build_group_summary(self, alpha)

    def __str__(self) -> str:
        return str(self.summary())

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.method}, t = {self.t:.4g}, llf = {self.llf:.4f}>"

    def _repr_html_(self) -> str:
        return self.summary().as_html()

    def save(self, path: Any, remove_data: bool = False) -> None:
        """Save the fit (read it back with :func:`mixednn.load`).

        ``remove_data=True`` is not available for fits with group effects yet (their
        prediction reads the training rows' group design): a ValueError says so.
        """
        if remove_data:
            raise ValueError("save(remove_data=True) is not available for fits with group "
                             "random effects yet; save with remove_data=False")
        persistence.save(self, path, remove_data=False)


def _bootstrap_test(statistic: Any, observed: float, nsim: Any, seed: Any, *, source: str,
                    null: str, dist_name: str, name: str) -> TestResult:
    """A parametric-bootstrap likelihood-ratio test: ``nsim`` simulated statistics
    ``statistic(rng)`` (negative rounding clipped to 0) drawn from ``source``, p-value
    ``(1 + #{draws >= observed}) / (1 + nsim)``."""
    if isinstance(nsim, bool) or not isinstance(nsim, (int, np.integer)) or nsim < 1:
        raise ValueError(f"nsim must be a positive integer, got {nsim!r}")
    rng = np.random.default_rng(seed)
    draws = np.array([max(statistic(rng), 0.0) for _ in range(int(nsim))])
    p = (1 + int(np.sum(draws >= observed - 1e-10))) / (1 + int(nsim))
    return TestResult(statistic=float(observed), pvalue=float(p),
                      method=f"parametric bootstrap from {source}, {nsim} draws", null=null,
                      dist_name=dist_name, name=name,
                      details={"share of draws at 0": float(np.mean(draws <= 1e-10))})


def score_test_t0(prof: GroupedProfile, reml: bool = True) -> TestResult:
    """Score test of t = 0 with group effects (see :meth:`GroupedResults.score_test`).

    Parameters
    ----------
    prof : GroupedProfile
        The likelihood of the model with the network (rotated data).
    reml : bool
        The null's theta by REML (default) or ML.

    Returns
    -------
    TestResult
    """
    null = fit_groups(prof.with_network_fixed_at_zero(), reml)
    pt0 = null.point
    Lam = prof.structure.lambda_matrix(pt0.theta)
    G = prof.at_t(0.0).G
    A = Lam.T @ G @ Lam + np.eye(prof.q)
    Lc = np.linalg.cholesky(A)
    B = scipy.linalg.solve_triangular(Lc, (prof.R @ Lam).T, lower=True).T   # n x q
    r = prof.y - prof.X @ pt0.beta
    Py = r - B @ (B.T @ r)                                                  # H0^{-1} r
    HX = prof.X - B @ (B.T @ prof.X)
    cols = [B]
    if prof.p:
        C = np.linalg.cholesky(prof.X.T @ HX)
        D = scipy.linalg.solve_triangular(C, HX.T, lower=True).T
        cols.append(D)
        Py = Py - D @ (D.T @ r)
    lam = prof.lam
    stat = float(Py @ (lam * Py) / (r @ Py))
    F = np.sqrt(lam)[:, None] * np.hstack(cols)
    nu = np.linalg.eigvalsh(np.diag(lam) - F @ F.T)
    mu = np.sort(nu)[::-1][:prof.nobs - prof.p]
    tail = QuadraticForm.from_weights(mu - stat).sf(0.0)
    return TestResult(statistic=stat, pvalue=float(tail.pvalue),
                      method=f"exact ratio null given the null's theta, {tail.method}",
                      null="t = 0 (no training) with the group effects",
                      dist_name="sum (mu_i - T) chi2_1 > 0, mu from K^1/2 P0 K^1/2",
                      name="Score test of t = 0 (with group effects)")
