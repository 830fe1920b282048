"""statsmodels ``Summary`` tables for MixedLMNTK results."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from statsmodels.iolib.summary2 import Summary

from .interfaces import FitResults

__all__ = ["build_summary", "build_group_summary", "SUMMARY_EXACT_MAX_N", "LatexSafeSummary", "latex_escape"]

#: LaTeX's special characters in running text, and what stands for each.
_LATEX_TEXT = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "#": r"\#", "$": r"\$",
               "%": r"\%", "&": r"\&", "_": r"\_", "^": r"\textasciicircum{}",
               "~": r"\textasciitilde{}", "<": r"\textless{}", ">": r"\textgreater{}",
               "|": r"\textbar{}"}
#: Those that statsmodels' tables leave as they are (it escapes # $ % & > _ | itself).
_LATEX_TABLE = {c: _LATEX_TEXT[c] for c in ("\\", "{", "}", "^", "~", "<")}


def latex_escape(text: str, table: bool = False) -> str:
    """``text`` with LaTeX's special characters escaped, so that it compiles as text.

    Parameters
    ----------
    text : str
    table : bool
        For a cell of a statsmodels table, which escapes ``# $ % & > _ |`` itself: only
        the other special characters are escaped here.

    Returns
    -------
    str

    Examples
    --------
    >>> print(latex_escape("x_1 ^ 2 & 5%"))
    x\\_1 \\textasciicircum{} 2 \\& 5\\%
    """
    chars = _LATEX_TABLE if table else _LATEX_TEXT
    return "".join(chars.get(ch, ch) for ch in str(text))


def _escape_cells(frame: pd.DataFrame) -> pd.DataFrame:
    def esc(v: object) -> object:
        return latex_escape(v, table=True) if isinstance(v, str) else v

    out = frame.copy()
    out.index = [esc(v) for v in frame.index]
    out.columns = [esc(v) for v in frame.columns]
    return out.map(esc) if hasattr(out, "map") else out.applymap(esc)


class LatexSafeSummary(Summary):
    """statsmodels' ``Summary`` whose :meth:`as_latex` compiles: statsmodels escapes
    some special characters in the tables, none in the notes under them (``z_b``,
    ``lambda_max``, ``5%``, ``(y - f)^2``); here every text is escaped."""

    def as_latex(self, label: str = "") -> str:
        """The summary as a LaTeX ``table`` (tables and notes escaped).

        Parameters
        ----------
        label : str
            The table's ``\\label``.

        Returns
        -------
        str
        """
        saved = self.tables, self.extra_txt, self.title
        self.tables = [_escape_cells(t) if isinstance(t, pd.DataFrame) else t
                       for t in self.tables]
        self.extra_txt = [latex_escape(t) for t in self.extra_txt]
        self.title = None if self.title is None else latex_escape(self.title)
        try:
            return super().as_latex(label=latex_escape(label))
        finally:
            self.tables, self.extra_txt, self.title = saved


def _fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{digits}g}" if abs(x) < 1e-3 or abs(x) >= 1e5 else f"{x:.{digits}f}"


def build_summary(res: FitResults, alpha: float = 0.05) -> Summary:
    """Header, fixed effects, variance components, and the network's effective size
    (a :class:`LatexSafeSummary`: its LaTeX compiles)."""
    smry = LatexSafeSummary()
    smry.add_title("Mixed Linear Model with a Neural Tangent Kernel random effect")
    smry.add_dict(_header(res), ncols=2)
    for line in _model_lines(res):
        smry.add_text(line)
    if res.k_fe:
        smry.add_df(_fixed_effects(res, alpha), float_format="%.4f")
    else:
        smry.add_text("No fixed effects.")
    smry.add_df(_variance_components(res, alpha))
    for line in _notes(res):
        smry.add_text(line)
    return smry


def _header(res: FitResults) -> dict[str, str]:
    choice = res.time_choice
    # a fit whose t another rule chose is not a likelihood maximum: say so where it shows
    at = "" if choice.by_likelihood else f", t by {choice.rule_name}"
    head = {
        "Model:": "MixedLMNTK",
        "Method:": res.method + at,
        "Dependent Variable:": res.model.data.endog_name,
        "No. Observations:": str(res.nobs),
        "Rows dropped (missing):": str(res.model.data.n_dropped),
        "No. fixed effects:": str(res.k_fe),
        "Log-Likelihood:": f"{res.llf:.4f}",
        "Converged:": "Yes" if res.converged else "No",
        f"AIC ({res.method}{' at that t' if at else ''}):": f"{res.aic:.4f}",
        f"BIC ({res.method}{' at that t' if at else ''}):": f"{res.bic:.4f}",
        "Scale (s2):": f"{res.scale:.4f}",
        "Decomposition:": res.model.basis.kind,
    }
    spec = getattr(res.model.data, "weights_spec", None)
    if spec is not None:  # a weighted fit: Var(e_i) = s2 / w_i, and s2 is for w = 1
        head["Weights:"] = spec if spec != "array" else "yes (array)"
    return head


def _model_lines(res: FitResults) -> list[str]:
    """The network, the low-rank basis (in feature space) and the network inputs."""
    m = res.model
    lines = [f"Network: {m.kernel_source.description}"]
    if m.basis.feature_space or not m.basis.complete_spectrum:
        # Nystrom trace error, or "exact"; a Krylov space's size and what it leaves out
        lines.append(m.basis.summary_line())
    if m.input_scaling is not None:
        lines.append("Network inputs: " + ", ".join(m.data.ntk_names)
                     + (" (standardised: mean 0, sd 1)" if m.scale_inputs else " (unscaled)"))
    return lines


def _interval_columns(alpha: float) -> tuple[str, str]:
    return f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"


def _fixed_effects(res: FitResults, alpha: float) -> pd.DataFrame:
    lo_q, hi_q = _interval_columns(alpha)
    ci = res.conf_int(alpha)
    return pd.DataFrame({
        "Coef.": res.params, "Std.Err.": res.bse, "z": res.tvalues,
        "P>|z|": res.pvalues, lo_q: ci[0], hi_q: ci[1]})


def _compares_reml(res: FitResults) -> bool:
    """Whether the summary shows REML's t beside the one chosen (another rule, free modes)."""
    return bool(res.time_choice.rule != "reml" or res.free_modes)


def _variance_components(res: FitResults, alpha: float) -> pd.DataFrame:
    """t and s2 with their SEs and intervals (and REML's t when another rule chose t)."""
    lo_q, hi_q = _interval_columns(alpha)
    t_lo, t_hi = res.t_conf_int(alpha)
    s_lo, s_hi = res.scale_conf_int(alpha)
    choice = res.time_choice
    t_ci = "profile" if choice.by_likelihood else f"none ({choice.rule})"
    vc_rows = [[_fmt(res.t), _fmt(res.t_se), _fmt(t_lo), _fmt(t_hi), t_ci],
               [_fmt(res.scale), _fmt(res.scale_se), _fmt(s_lo), _fmt(s_hi), "Wald (log)"]]
    vc_index = ["Training time t (NTK)", "Residual variance"]
    if _compares_reml(res):
        vc_rows.insert(1, [_fmt(res.t_reml), "", "", "", "REML, plain kernel"])
        vc_index.insert(1, "  t by REML (compare)")
    return pd.DataFrame(vc_rows, index=vc_index, columns=["Estimate", "Std.Err.", lo_q, hi_q, "CI"])


def _notes(res: FitResults) -> list[str]:
    """The lines under the tables: score test, the rule for t, the network's size, what
    the default rule's check or the stopping diagnostic found, boundary and AIC notes."""
    choice = res.time_choice
    lr = res.reference_lr
    # a Krylov basis has no spectrum: the summary does not compute it (res.edf does)
    size = (f"Effective df of the network: {res.edf:.2f} of n = {res.nobs}; "
            f"signal share tr(G)/tr(V) = {res.signal_share:.3f}"
            if res.likelihood_profile.complete_spectrum else
            "Effective df of the network: not computed (decomposition='lanczos' has no "
            "spectrum; res.edf and res.signal_share compute every eigenvalue of K)")
    notes = [
        f"Training time t chosen by: {choice.rule_name}"
        + (f" (REML would choose t = {res.t_reml:.4g})" if _compares_reml(res) else ""),
        size,
        f"Equivalent training: {res.epochs(lr):,.0f} full-batch steps of mean-squared loss at "
        f"lr = n/lambda_max = {lr:.4g} (steps = n t / lr); t is in units of lr x steps of the "
        "summed loss 1/2 sum (y - f)^2, on this kernel's scale.",
    ]
    if res.free_modes:
        notes.append(_free_modes_line(res))
    rule_note = _rule_check_line(res)
    if rule_note:
        notes.append(rule_note)
    if res.boundary:
        notes.append("Boundary fit: t = 0 (training adds nothing beyond initialisation).")
    elif res.estimate.at_upper:
        notes.append("Warning: t at the upper end of the search (the fit interpolates).")
    if res.method == "REML":
        notes.append("AIC/BIC under REML follow lme4: compare only models with the same fixed "
                     "effects (refit with fit(reml=False) otherwise).")
    if getattr(res, "kernel_estimated_params", 0):
        notes.append(f"AIC/BIC count the kernel's {res.kernel_estimated_params} hyperparameters "
                     "estimated from y.")
    score_line = _score_line(res)
    return [score_line, *notes] if score_line else notes


def _rule_check_line(res: FitResults) -> str | None:
    """What the prediction check did (the checked rule switched) or found (as the default
    fit's diagnostic), else the stopping diagnostic's message, if any."""
    choice = res.time_choice
    check = choice.check
    if choice.check_acted:
        # the checked rule already acted on what the diagnostic would say
        return (f"Checked rule (t_method='auto'): {check.reason}. The log-likelihood "
                f"and AIC/BIC above are not a likelihood maximum; the {res.method} maximum "
                f"of the plain model is {check.llf_likelihood:.4f} at t = "
                f"{check.t_likelihood:.4g} (the default fit(), which mn.anova uses).")
    if choice.check_objects:
        lik = res.method
        remedy = ("GCV's t = " f"{check.t_gcv:.4g}" if check.rule == "gcv"
                  else "REML with free leading modes")
        return (f"Prediction check: {lik}'s t predicts worse than the model explains: GCV's "
                f"error at it is {100 * check.excess:.3g}% above its minimum (parametric "
                f"bootstrap p = {check.pvalue:.2g}, {check.nsim} draws). The likelihood's t is "
                f"kept; for prediction compare fit(t_method='auto') ({remedy}) or a richer "
                "kernel by REML (mixednn.hyper.optimize_kernel).")
    diag = choice.diagnostic
    if diag is not None and diag.message:
        return diag.message
    return None


def _free_modes_line(res: FitResults) -> str:
    how = f" (chosen by {res.k_rule.upper()} across k)" if res.k_rule else ""
    return (f"Free leading modes: the {res.free_modes} leading NTK eigen-directions are "
            f"unpenalised fixed effects{how}, trained to convergence (t_j = inf); t is fitted on "
            "the rest of the spectrum (an extension beyond the paper).")


SUMMARY_EXACT_MAX_N = 20_000


def estimated_kernel_note(k: int) -> str:
    """Why a test of t = 0 on a kernel with ``k`` hyperparameters estimated from y is not
    a valid test, and which test is."""
    return (f"the kernel's {k} hyperparameters were estimated from these data; they exist only "
            "when t > 0, so a test of t = 0 on this kernel is anticonservative (docs/tests.md). "
            "Test with the kernel fixed in advance: KernelChoice.score_test() or "
            "KernelOptimization.score_test()")


def _score_line(res: FitResults) -> str | None:
    # Imhof's integral costs O(m p^2) per evaluation over the m stored eigenvalues (a
    # low-rank basis's n - m zeros are one term with multiplicity); past
    # SUMMARY_EXACT_MAX_N of them the summary line uses the saddlepoint approximation
    # (its .method says so) and res.score_test() stays available for the exact value.
    # A Krylov basis (decomposition="lanczos") has no spectrum: the leading eigenvalues
    # of (I - H) K (I - H) and exact traces give the null (its .method says so).
    k_est = getattr(res, "kernel_estimated_params", 0)
    if k_est:
        return f"Score test of t = 0: not shown: {estimated_kernel_note(k_est)}."
    prof = res.likelihood_profile
    n_terms = prof.lam.shape[0]
    method = ("leading" if not prof.complete_spectrum
              else "exact" if n_terms <= SUMMARY_EXACT_MAX_N else "saddlepoint")
    try:
        test = res.score_test(method=method)
    except NotImplementedError:
        return None
    if not test.valid:
        return f"Score test of t = 0: inapplicable ({test.reason})"
    return (f"Score test of t = 0: statistic = {test.statistic:.4g}, "
            f"p-value = {test.pvalue:.4g} ({test.method})")


def build_group_summary(res: Any, alpha: float = 0.05) -> Summary:
    """The summary of a fit with group random effects (:mod:`mixednn.groupresults`):
    header, fixed effects, and lme4's variance-components table (Groups, Name,
    Variance, Std.Dev., Corr) with the network's training time beside the groups."""
    smry = LatexSafeSummary()
    has_net = res.has_network
    smry.add_title("Mixed Linear Model with group random effects"
                   + (" and a Neural Tangent Kernel random effect" if has_net else ""))
    m = res.model
    header = {
        "Model:": "MixedLMNTK" if has_net else "MixedLMNTK (no network)",
        "Method:": res.method,
        "Dependent Variable:": m.data.endog_name,
        "No. Observations:": str(res.nobs),
        "Rows dropped (missing):": str(m.data.n_dropped),
        "Groups:": ", ".join(f"{b.term.group_name} {len(b.levels)}" for b in res.groups.blocks),
        "Log-Likelihood:": f"{res.llf:.4f}",
        "Converged:": "Yes" if res.converged else "No",
        f"AIC ({res.method}):": f"{res.aic:.4f}",
        f"BIC ({res.method}):": f"{res.bic:.4f}",
        "Scale (s2):": f"{res.scale:.4f}",
        "Decomposition:": m.basis.kind if has_net else "none",
    }
    smry.add_dict(header, ncols=2)
    if has_net:
        for line in _model_lines(res):
            smry.add_text(line)
    if res.k_fe:
        smry.add_df(_fixed_effects(res, alpha), float_format="%.4f")
    vc = res.vcomp
    shown = pd.DataFrame({
        "Groups": vc["Groups"], "Name": vc["Name"],
        "Variance": [_fmt(v) for v in vc["Variance"]],
        "Std.Dev.": [_fmt(v) for v in vc["Std.Dev."]],
        "Corr": vc["Corr"],
        "t": [_fmt(v) for v in vc["Estimate"]],
        "Std.Err.(t)": [_fmt(v) for v in vc["Std.Err."]]})
    if not has_net:
        shown = shown.drop(columns=["t", "Std.Err.(t)"])
    smry.add_df(shown.set_index("Groups"))
    notes = []
    if has_net:
        notes.append("The network's part is its training by gradient flow for time t on y - X "
                     "beta - f0 - Z b (the residual after the fixed and group effects); Var(y) "
                     "= s2 (exp(tK) + Z Lambda Lambda^T Z^T).")
    if res.singular_terms:
        notes.append("Boundary (singular) fit: " + ", ".join(res.singular_terms)
                     + " has a zero variance or a correlation of +-1.")
    if has_net:
        lo, hi = res.t_conf_int(alpha)
        notes.append(f"Training time t: {100 * (1 - alpha):g}% profile-likelihood interval "
                     f"[{_fmt(lo)}, {_fmt(hi)}] (group parameters profiled out).")
    if has_net and res.t_on_boundary:
        notes.append("t = 0: training adds nothing beyond the fixed and group effects.")
    notes.append("AIC/BIC under REML follow lme4: compare only models with the same fixed "
                 "effects (refit with fit(reml=False) otherwise)." if res.reml else
                 "ML fit: AIC/BIC compare models with different fixed effects.")
    for line in notes:
        smry.add_text(line)
    return smry
