"""Where t is chosen: :func:`choose_t`, the one function that decides the training time.

Every fit goes through :func:`choose_t` once.  It runs the rule asked for (the default
rule of :mod:`mixednn.autotime`, a named rule of :mod:`mixednn.stopping`, or free
leading modes of :mod:`mixednn.freemodes`), and returns a frozen :class:`TimeChoice`
that records everything later layers need: the chosen t and the rule, the search that
found it, the likelihood's own maximum (for the likelihood-ratio tests, ``anova`` and
the profile plot), the REML time of the plain kernel (shown beside another rule's t),
the default rule's check, the free-mode split, the stopping diagnostic and the
warnings to raise.  Results (:mod:`mixednn.results`) are built from it once; summary,
plots, tests and training read it and never search again.

Adding a rule: implement it as a criterion in :mod:`mixednn.stopping` (an object with
``name``, ``value(t)`` and ``values(ts)``), add its name to ``T_METHODS`` and its
construction to :func:`mixednn.stopping.make_criterion`; :func:`choose_t` picks it up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .autotime import AUTO_OPTIONS, AutoCheck, auto_time
from .exceptions import (BoundaryFitWarning, DegenerateFitWarning, InterpolationWarning,
                         warn_at_caller)
from .freemodes import FreeModes, free_mode_smoother, free_mode_split, select_free_modes
from .profile import SpectralProfile, TimeEstimate, check_complete_spectrum
from .smoother import SmootherData
from .stopping import (LIKELIHOOD_RULES, StoppingDiagnostic, check_rule, choose_time, diagnose,
                       residual_df_ok)

__all__ = ["TimeChoice", "choose_t", "RULE_NAMES", "emit_warnings", "check_t_options",
           "T_OPTION_VALUES"]

#: Display names of the rules (summary, plots, command line).
RULE_NAMES = {"reml": "REML", "ml": "ML", "gcv": "GCV", "cp": "Cp/SURE", "loo": "leave-one-out",
              "kfold": "K-fold CV"}


@dataclass(frozen=True)
class TimeChoice:
    """The training time of one fit and how it was chosen (frozen).

    Attributes
    ----------
    t : float
        The chosen training time.
    rule : str
        The rule that chose it: ``"reml"``, ``"ml"``, ``"gcv"``, ``"cp"``, ``"loo"`` or
        ``"kfold"`` (with free modes: the rule on the remaining spectrum).
    reml : bool
        The likelihood behind s2, the log-likelihood and the SEs (REML or ML).
    estimate : TimeEstimate
        The search that chose t, on :attr:`profile`.
    profile : SpectralProfile
        The profile t was chosen on: the model's, or with free modes the rest of the
        spectrum.
    likelihood : TimeEstimate
        The REML (or ML) maximum on :attr:`profile` (the same object as ``estimate``
        when the likelihood chose t): what the likelihood-ratio test of t = 0 uses.
    plain_likelihood : TimeEstimate
        The REML (or ML) maximum of the plain kernel (no free modes): what ``anova``
        compares.
    t_reml : float
        The REML time of the plain kernel, shown beside another rule's t.
    check : AutoCheck or None
        What the default rule's check found (``t_method="auto"``), else None.
    free_modes : FreeModes or None
        The split into free leading modes and the rest, when there are free modes.
    free_modes_table : pandas.DataFrame or None
        The comparison across k (``free_modes="auto"``).
    k_rule : str or None
        The rule that chose k (``free_modes="auto"``).
    diagnostic : StoppingDiagnostic or None
        Do REML and GCV agree, and does the decorrelation hold in the leading modes?
    warnings : tuple of (Warning class, str)
        The warnings the fit raises (at the user's line).
    """

    t: float
    rule: str
    reml: bool
    estimate: TimeEstimate
    profile: SpectralProfile = field(repr=False)
    likelihood: TimeEstimate = field(repr=False)
    plain_likelihood: TimeEstimate = field(repr=False)
    t_reml: float
    check: AutoCheck | None = None
    free_modes: FreeModes | None = field(default=None, repr=False)
    free_modes_table: pd.DataFrame | None = field(default=None, repr=False)
    k_rule: str | None = None
    diagnostic: StoppingDiagnostic | None = field(default=None, repr=False)
    warnings: tuple = ()
    #: True when the check was allowed to replace the likelihood's t (``t_method="auto"``);
    #: False when it is only a diagnostic (the default fit) or absent
    check_acts: bool = False

    @property
    def k(self) -> int:
        """Number of free leading modes (0 for the plain model)."""
        return 0 if self.free_modes is None else int(self.free_modes.k)

    @property
    def by_likelihood(self) -> bool:
        """True when the likelihood chose t (so t has an SE and a profile interval)."""
        return self.rule in LIKELIHOOD_RULES

    @property
    def check_acted(self) -> bool:
        """True when the checked rule replaced the likelihood's t (GCV or free modes)."""
        return self.check_acts and self.check is not None and self.check.switched

    @property
    def check_objects(self) -> bool:
        """True when the prediction check, run as a diagnostic, rejects the likelihood's t."""
        return not self.check_acts and self.check is not None and self.check.switched

    @property
    def rule_name(self) -> str:
        """The rule for a reader: ``"REML"``, ``"GCV"``, ``"REML, 3 free modes"``, ..."""
        out = RULE_NAMES.get(self.rule, self.rule)
        return out + (f", {self.k} free modes" if self.k else "")


def emit_warnings(choice: TimeChoice, stacklevel: int = 2) -> None:
    """Raise the warnings recorded in ``choice`` at the user's line (the first frame
    outside mixednn, whatever the call path; ``stacklevel`` is kept for compatibility)."""
    for category, message in choice.warnings:
        warn_at_caller(message, category)


def _search_warnings(est: TimeEstimate) -> list[tuple[type, str]]:
    if est.boundary:
        return [(BoundaryFitWarning, est.message)]
    if est.at_upper:
        return [(InterpolationWarning, est.message)]
    return []


def _near_interpolation(data: SmootherData, est: TimeEstimate) -> list[tuple[type, str]]:
    """Prediction-error rules can run to (near) interpolation, where predictions at new
    points are unstable: say so when fewer than max(2, n/100) residual df are left."""
    if est.criterion in LIKELIHOOD_RULES or est.at_upper or est.boundary:
        return []
    trM = data.parts(est.t)["trM"]
    if residual_df_ok(data, trM):
        return []
    if not np.isfinite(trM):
        return [(InterpolationWarning,
                 f"{est.criterion} chose t = {est.t:.4g}, where the fixed effects are not "
                 "identified (X^T exp(-tK) X is singular: the network absorbs them); their "
                 "estimates and predictions at new points are not meaningful: compare "
                 "t_method='reml' or 'loo'")]
    return [(InterpolationWarning,
             f"{est.criterion} chose a nearly interpolating fit (residual df tr(I - H) = "
             f"{trM:.3g} of n = {data.nobs}); predictions at new points may be unstable: "
             "compare t_method='reml' or 'loo'")]


#: s2 at the chosen t below this fraction of s2 at t = 0: the residuals vanish.
DEGENERATE_SCALE = 1e-10


def _degenerate(profile: SpectralProfile, est: TimeEstimate, reml: bool,
                reference: SpectralProfile | None = None) -> list[tuple[type, str]]:
    """An unbounded (or nearly unbounded) likelihood: s2 -> 0 at the chosen t (compared
    with s2 of the plain model at t = 0, ``reference``)."""
    if est.boundary:
        return []
    s_t = profile.point(est.t, reml).scale
    s_0 = (reference or profile).point(0.0, reml).scale
    if np.isfinite(s_t) and s_t > DEGENERATE_SCALE * s_0:
        return []
    return [(DegenerateFitWarning,
             f"the residual variance vanishes at t = {est.t:.4g} (s2 = {s_t:.3g}, against "
             f"{s_0:.3g} at t = 0): the fit reproduces the responses exactly, so the "
             "likelihood is unbounded or nearly so and these estimates are not meaningful. "
             "Usual causes: rows duplicated with identical responses (aggregate them, or "
             "use their mean with weights), or a kernel that interpolates the data")]


#: RSS at t = 0 at most this fraction of ``||y - f0||^2`` (about (300 eps)^2): the fixed
#: effects reproduce the response to rounding.
EXACT_FIT_RSS = 1e-26


def _check_residual(profile: SpectralProfile) -> None:
    """Raise when the fixed effects (and the offset) reproduce the response exactly.

    Then no residual is left at any t, s2 -> 0 and the likelihood is unbounded; t, s2
    and the log-likelihood would be set by rounding alone (they changed with the row
    order).  A constant response with an intercept is the simplest case."""
    total = float(profile.y_rot @ profile.y_rot)
    if profile.rest_gram is not None:
        total += float(profile.rest_gram[-1, -1])
    rss = profile.point(0.0, True).rss
    if not rss > EXACT_FIT_RSS * total:
        raise ValueError(
            "the fixed effects reproduce the response exactly (the response minus the "
            "offset is a linear combination of the fixed-effects columns, residual sum of "
            f"squares {rss:.3g} against {total:.3g}): nothing is left for the network or the "
            "noise to model, and the likelihood is unbounded; remove fixed-effects terms or "
            "check the response")


def _diagnostic(data: SmootherData, reml: bool) -> StoppingDiagnostic | None:
    try:
        return diagnose(data, reml=reml)
    except (ValueError, np.linalg.LinAlgError):
        return None


def _check_free_modes(free_modes: Any) -> Any:
    if free_modes is None or (not isinstance(free_modes, str) and free_modes == 0):
        return 0
    if isinstance(free_modes, str):
        if free_modes != "auto":
            raise ValueError(f"free_modes must be a non-negative integer or 'auto', "
                             f"got {free_modes!r}")
        return free_modes
    if isinstance(free_modes, bool) or not isinstance(free_modes, (int, np.integer)) \
            or free_modes < 0:
        raise ValueError(f"free_modes must be a non-negative integer or 'auto', got {free_modes!r}")
    return int(free_modes)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) \
        and not isinstance(v, (bool, np.bool_)) and math.isfinite(float(v))


#: The value each option of ``fit(t_options=...)`` takes: (test, description).
T_OPTION_VALUES = {
    "alpha": (lambda v: _is_real(v) and 0 < v < 1, "a number in (0, 1)"),
    "nsim": (lambda v: _is_int(v) and v >= 19, "an integer >= 19"),
    "min_excess": (lambda v: _is_real(v) and v >= 0, "a number >= 0"),
    "seed": (lambda v: v is None or (_is_int(v) and v >= 0)
             or isinstance(v, (np.random.Generator, np.random.SeedSequence)),
             "None, an integer >= 0 or a numpy Generator"),
    "points_per_decade": (lambda v: v is None or (_is_int(v) and v >= 1),
                          "None or an integer >= 1"),
    "sigma2": (lambda v: v in ("gcv", "reml") if isinstance(v, str) else _is_real(v) and v > 0,
               "'gcv', 'reml' or a positive number"),
    "folds": (lambda v: (_is_int(v) and v >= 2)
              or (not isinstance(v, (str, bytes, dict)) and hasattr(v, "__len__")
                  and not _is_real(v)),
              "an integer >= 2 or a list of row-index arrays"),
    "k_rule": (lambda v: isinstance(v, str), "one of 'gcv', 'loo', 'aic', 'bic'"),
    "k_candidates": (lambda v: v is None or (hasattr(v, "__len__") and not isinstance(v, str)
                                             and all(_is_int(k) and k >= 0 for k in v)),
                     "None or a list of non-negative integers"),
}


def check_t_options(t_options: Any) -> dict:
    """``fit(t_options=...)`` as a dict, each known option's value checked.

    Parameters
    ----------
    t_options : dict or None

    Returns
    -------
    dict
        A copy (unknown names are left to the rule, which lists the valid ones).

    Raises
    ------
    TypeError
        ``t_options`` is not a dict.
    ValueError
        An option's value has the wrong type or range (the message names it).
    """
    if t_options is None:
        return {}
    if not isinstance(t_options, dict):
        raise TypeError(f"t_options must be a dict of option names and values, e.g. "
                        f"{{'alpha': 0.01}}; got {type(t_options).__name__} {t_options!r}")
    for name, value in t_options.items():
        test, what = T_OPTION_VALUES.get(name, (None, ""))
        if test is not None and not test(value):
            label = f"{name} of the auto rule" if name in ("alpha", "nsim", "min_excess") else name
            raise ValueError(f"t_options: {label} must be {what}, got {value!r}")
    return dict(t_options)


def choose_t(data: SmootherData, reml: bool = True, t_method: str | None = None,
             free_modes: Any = 0, t_options: dict | None = None) -> TimeChoice:
    """Choose the training time of a fit: the one place where t is decided.

    Parameters
    ----------
    data : SmootherData
        The model's rotated data (:meth:`SmootherData.from_model`): the profile, and the
        eigenvectors on demand for leave-one-out, K-fold and free modes.
    reml : bool
        REML (True) or ML: the likelihood behind s2 and the log-likelihood.
    t_method : {None, "auto", "reml", "ml", "gcv", "cp", "loo", "kfold"}
        ``None`` (the default): the likelihood's t (REML, or ML with ``reml=False``), with
        the prediction check of :func:`mixednn.autotime.auto_time` run as a diagnostic
        (``TimeChoice.check``).  ``"auto"``: the checked rule, where the check may replace
        the likelihood's t by GCV's (or by REML with free leading modes).  With free
        modes, ``None``/``"auto"`` mean the likelihood on the rest.  Otherwise the named
        rule.
    free_modes : int or "auto"
        Number of free leading modes (0: the plain model).
    t_options : dict, optional
        Options of the rule (see :meth:`mixednn.MixedLMNTK.fit`).

    Returns
    -------
    TimeChoice
    """
    if not isinstance(reml, (bool, np.bool_)):
        raise TypeError(f"reml must be True (REML) or False (ML), got {reml!r}")
    reml = bool(reml)
    free_modes = _check_free_modes(free_modes)
    options = check_t_options(t_options)
    auto = t_method is None or (isinstance(t_method, str) and t_method.lower() == "auto")
    lik = "reml" if reml else "ml"
    plain = data.profile
    _check_residual(plain)
    if not plain.complete_spectrum:  # a Krylov basis: only the likelihood's own time
        if free_modes != 0:
            check_complete_spectrum(plain, "free_modes=")
        if t_method is not None and (auto or check_rule(t_method) not in LIKELIHOOD_RULES):
            check_complete_spectrum(plain, f"t_method={t_method!r}")
    if free_modes == 0 and t_method is None:
        return _choose_likelihood_checked(data, reml, options)
    if free_modes == 0 and auto:
        return _choose_auto(data, reml, options)
    rule = lik if auto else check_rule(t_method)
    if free_modes != 0:
        return _choose_free_modes(data, reml, rule, free_modes, options)
    est = choose_time(data, rule, reml, **options)
    likelihood = est if rule == lik else plain.maximize(reml)
    t_reml = est.t if rule == "reml" else (likelihood.t if reml else plain.maximize(True).t)
    return TimeChoice(t=est.t, rule=rule, reml=reml, estimate=est, profile=plain,
                      likelihood=likelihood, plain_likelihood=likelihood, t_reml=t_reml,
                      diagnostic=_diagnostic(data, reml),
                      warnings=tuple(_search_warnings(est) + _near_interpolation(data, est)
                                     + _degenerate(plain, est, reml)))


def _check_auto_options(options: dict, what: str) -> None:
    bad = set(options) - set(AUTO_OPTIONS)
    if bad:
        raise TypeError(f"unknown option(s) for {what}: {sorted(bad)}; valid: "
                        + ", ".join(AUTO_OPTIONS))


def _choose_likelihood_checked(data: SmootherData, reml: bool, options: dict) -> TimeChoice:
    """The default: the likelihood's t, with the prediction check as a diagnostic."""
    _check_auto_options(options, "the default fit (the prediction check)")
    est, check = auto_time(data, reml, **options)
    plain = data.profile
    if check.rule == "gcv":  # the check would move to GCV: keep the likelihood's maximum
        ppd = options.get("points_per_decade")
        est = choose_time(data, "reml" if reml else "ml", reml,
                          **({"points_per_decade": ppd} if ppd else {}))
    t_reml = est.t if reml else plain.maximize(True).t
    return TimeChoice(t=est.t, rule=est.criterion, reml=reml, estimate=est, profile=plain,
                      likelihood=est, plain_likelihood=est, t_reml=t_reml, check=check,
                      diagnostic=_diagnostic(data, reml),
                      warnings=tuple(_search_warnings(est) + _degenerate(plain, est, reml)),
                      check_acts=False)


def _choose_auto(data: SmootherData, reml: bool, options: dict) -> TimeChoice:
    _check_auto_options(options, "t_method='auto'")
    est, check = auto_time(data, reml, **options)
    plain = data.profile
    if check.rule == "free_modes":
        # REML rejected and GCV's own time unusable: REML with free leading modes
        free = _choose_free_modes(data, True, "reml", "auto", {})
        return TimeChoice(**{**free.__dict__, "check": check, "check_acts": True})
    likelihood = est if check.rule in LIKELIHOOD_RULES else plain.maximize(reml)
    t_reml = likelihood.t if reml else plain.maximize(True).t
    return TimeChoice(t=est.t, rule=est.criterion, reml=reml, estimate=est, profile=plain,
                      likelihood=likelihood, plain_likelihood=likelihood, t_reml=t_reml,
                      check=check, diagnostic=None if check.switched else _diagnostic(data, reml),
                      warnings=tuple(_search_warnings(est) + _degenerate(plain, est, reml)),
                      check_acts=True)


def _choose_free_modes(data: SmootherData, reml: bool, rule: str, free_modes: Any,
                       options: dict) -> TimeChoice:
    k_rule = options.pop("k_rule", "gcv")
    candidates = options.pop("k_candidates", None)
    if data.profile.rest_gram is not None:
        raise NotImplementedError("free modes need a full eigendecomposition of K; this model "
                                  "has a low-rank basis")
    if not reml or rule == "ml":
        raise NotImplementedError(
            "free modes are fitted by REML on the remaining spectrum: the ML of the augmented "
            "model keeps the free rows' variance s2 exp(t lam_j) with zero residual, which drives "
            "the ML time to 0 (see mixednn.freemodes); use reml=True with t_method='reml', "
            "'gcv', 'cp', 'loo' or 'kfold'")
    table = None
    if free_modes == "auto":
        k, table = select_free_modes(data, candidates, k_rule=k_rule)
    else:
        k = free_modes
    fm = free_mode_split(data, k)
    sub = free_mode_smoother(data, fm)
    est = choose_time(sub, rule, True, **options)
    likelihood = est if rule == "reml" else fm.profile.maximize(True)
    plain = data.profile.maximize(True)
    return TimeChoice(t=est.t, rule=rule, reml=True, estimate=est, profile=fm.profile,
                      likelihood=likelihood, plain_likelihood=plain, t_reml=plain.t,
                      free_modes=fm, free_modes_table=table,
                      k_rule=k_rule if table is not None else None,
                      diagnostic=_diagnostic(sub, True),
                      warnings=tuple(_search_warnings(est) + _near_interpolation(sub, est)
                                     + _degenerate(fm.profile, est, True, data.profile)))
