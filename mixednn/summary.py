"""statsmodels ``Summary`` tables for MixedLMNTK results."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from statsmodels.iolib.summary2 import Summary

if TYPE_CHECKING:  # pragma: no cover
    from .results import MixedLMNTKResults

__all__ = ["build_summary"]


def _fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{digits}g}" if abs(x) < 1e-3 or abs(x) >= 1e5 else f"{x:.{digits}f}"


def build_summary(res: "MixedLMNTKResults", alpha: float = 0.05) -> Summary:
    """Header, fixed effects, variance components, and the network's effective size."""
    m = res.model
    d = m.data
    smry = Summary()
    smry.add_title("Mixed Linear Model with a Neural Tangent Kernel random effect")
    header = {
        "Model:": "MixedLMNTK",
        "Method:": res.method,
        "Dependent Variable:": d.endog_name,
        "No. Observations:": str(res.nobs),
        "Rows dropped (missing):": str(d.n_dropped),
        "No. fixed effects:": str(res.k_fe),
        "Log-Likelihood:": f"{res.llf:.4f}",
        "Converged:": "Yes" if res.converged else "No",
        f"AIC ({res.method}):": f"{res.aic:.4f}",
        f"BIC ({res.method}):": f"{res.bic:.4f}",
        "Scale (s2):": f"{res.scale:.4f}",
        "Decomposition:": m.basis.kind,
    }
    smry.add_dict(header, ncols=2)
    smry.add_text(f"Network: {m.kernel_source.description}")
    low_rank_line = getattr(m.basis, "summary_line", None)  # feature space: Nystrom trace error
    if low_rank_line is not None:
        smry.add_text(low_rank_line())
    if m.input_scaling is not None:
        smry.add_text("Network inputs: " + ", ".join(d.ntk_names)
                      + (" (standardised: mean 0, sd 1)" if m.scale_inputs else " (unscaled)"))

    lo_q, hi_q = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
    if res.k_fe:
        ci = res.conf_int(alpha)
        fe = pd.DataFrame({
            "Coef.": res.params, "Std.Err.": res.bse, "z": res.tvalues,
            "P>|z|": res.pvalues, lo_q: ci[0], hi_q: ci[1]})
        smry.add_df(fe, float_format="%.4f")
    else:
        smry.add_text("No fixed effects.")

    t_lo, t_hi = res.t_conf_int(alpha)
    s_lo, s_hi = res.scale_conf_int(alpha)
    t_rule = getattr(res, "t_method", "reml") or "reml"
    t_ci = "profile" if t_rule in ("reml", "ml") else f"none ({t_rule})"
    vc_rows = [[_fmt(res.t), _fmt(res.t_se), _fmt(t_lo), _fmt(t_hi), t_ci],
               [_fmt(res.scale), _fmt(res.scale_se), _fmt(s_lo), _fmt(s_hi), "Wald (log)"]]
    vc_index = ["Training time t (NTK)", "Residual variance"]
    if t_rule != "reml" or getattr(res, "free_modes", 0):
        vc_rows.insert(1, [_fmt(res.t_reml), "", "", "", "REML, plain kernel"])
        vc_index.insert(1, "  t by REML (compare)")
    vc = pd.DataFrame(vc_rows, index=vc_index, columns=["Estimate", "Std.Err.", lo_q, hi_q, "CI"])
    smry.add_df(vc)

    lr = res.reference_lr
    extra = [
        f"Effective df of the network: {res.edf:.2f} of n = {res.nobs}; "
        f"signal share tr(G)/tr(V) = {res.signal_share:.3f}",
        f"Equivalent training: {res.epochs(lr):,.0f} full-batch steps of mean-squared loss at "
        f"lr = n/lambda_max = {lr:.4g} (steps = n t / lr); t is in units of lr x steps of the "
        "summed loss 1/2 sum (y - f)^2, on this kernel's scale.",
    ]
    extra.insert(0, f"Training time t chosen by: {_rule_name(res)}"
                 + (f" (REML would choose t = {res.t_reml:.4g})"
                    if (getattr(res, "t_method", "reml") != "reml" or getattr(res, "free_modes", 0))
                    else ""))
    if getattr(res, "free_modes", 0):
        extra.append(_free_modes_line(res))
    check = getattr(res, "auto_check", None)
    if check is not None and check.switched:
        # the default rule already acted on what the diagnostic would say
        extra.append(f"Default rule (t_method='auto'): {check.reason}. The log-likelihood "
                     f"and AIC/BIC above belong to this fit; the {res.method} maximum of the "
                     f"plain model is {check.llf_likelihood:.4f} at t = "
                     f"{check.t_likelihood:.4g} (fit(t_method='{res.method.lower()}'), which "
                     "mn.anova uses).")
    else:
        stop_line = _stopping_line(res)
        if stop_line:
            extra.append(stop_line)
    if res.boundary:
        extra.append("Boundary fit: t = 0 (training adds nothing beyond initialisation).")
    elif res.estimate.at_upper:
        extra.append("Warning: t at the upper end of the search (the fit interpolates).")
    if res.method == "REML":
        extra.append("AIC/BIC under REML follow lme4: compare only models with the same fixed "
                     "effects (refit with fit(reml=False) otherwise).")
    score_line = _score_line(res)
    if score_line:
        extra.insert(0, score_line)
    for line in extra:
        smry.add_text(line)
    return smry


def _rule_name(res: "MixedLMNTKResults") -> str:
    rule = getattr(res, "t_method", None) or res.method.lower()
    names = {"reml": "REML", "ml": "ML", "gcv": "GCV", "cp": "Cp/SURE", "loo": "leave-one-out",
             "kfold": "K-fold CV"}
    out = names.get(rule, rule)
    if getattr(res, "free_modes", 0):
        out += f", {res.free_modes} free modes"
    return out


def _free_modes_line(res: "MixedLMNTKResults") -> str:
    how = f" (chosen by {res.k_rule.upper()} across k)" if getattr(res, "k_rule", None) else ""
    return (f"Free leading modes: the {res.free_modes} leading NTK eigen-directions are "
            f"unpenalised fixed effects{how}, trained to convergence (t_j = inf); t is fitted on "
            "the rest of the spectrum (an extension beyond the paper).")


def _stopping_line(res: "MixedLMNTKResults") -> str | None:
    try:
        diag = res.stopping_diagnostic
    except (AttributeError, ValueError, np.linalg.LinAlgError):
        return None
    return diag.message


SUMMARY_EXACT_MAX_N = 20_000


def _score_line(res: "MixedLMNTKResults") -> str | None:
    fn = getattr(res, "score_test", None)
    if fn is None:
        return None
    # Imhof's integral costs O(m p^2) per evaluation over the m stored eigenvalues (a
    # low-rank basis's n - m zeros are one term with multiplicity); past
    # SUMMARY_EXACT_MAX_N of them the summary line uses the saddlepoint approximation
    # (its .method says so) and res.score_test() stays available for the exact value.
    n_terms = res.model.profile.lam.shape[0]
    method = "exact" if n_terms <= SUMMARY_EXACT_MAX_N else "saddlepoint"
    try:
        test = fn(method=method)
    except NotImplementedError:
        return None
    if not getattr(test, "valid", True):
        return f"Score test of t = 0: inapplicable ({test.reason})"
    return (f"Score test of t = 0: statistic = {test.statistic:.4g}, "
            f"p-value = {test.pvalue:.4g} ({test.method})")
