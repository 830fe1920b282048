"""Protocols: what the layers above results (tests, plots, summary, training) may rely on.

The modules that take a fitted model (:mod:`mixednn.inference`, :mod:`mixednn.plotting`,
:mod:`mixednn.summary`, :mod:`mixednn.training`) sit below :mod:`mixednn.results` and
never import it; they read a fit through :class:`FitResults` (a runtime-checkable
Protocol), so they can also be tested with light stand-ins.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["FitResults", "check_fit", "FixedEffectsFit", "check_fixed_effects_fit"]


@runtime_checkable
class FixedEffectsFit(Protocol):
    """A fit whose fixed effects can be tested (:mod:`mixednn.contrasts`): plain and
    grouped fits alike.

    Attributes
    ----------
    model
        The fitted model (``model.exog_names`` names the fixed effects).
    params, df_resid, k_fe
        The fixed effects, the residual degrees of freedom and their number.

    Methods
    -------
    cov_params()
        Covariance of ``params`` at the estimated variance parameters (a DataFrame).
    """

    model: Any
    params: Any
    df_resid: float
    k_fe: int

    def cov_params(self) -> Any:
        """Covariance of ``params``."""
        ...


@runtime_checkable
class FitResults(FixedEffectsFit, Protocol):
    """A fitted MixedLMNTK model, as the tests, plots and summary read it: a
    :class:`FixedEffectsFit` with the time choice and the estimates.

    Attributes
    ----------
    model
        The fitted model (data, kernel, decomposition).
    time_choice
        The :class:`mixednn.timechoice.TimeChoice` that chose t.
    likelihood_profile
        The :class:`mixednn.profile.SpectralProfile` t was chosen on.
    t, llf, scale, reml, method, nobs, k_fe, free_modes
        The estimates and sizes.
    params, df_resid
        The fixed effects (a Series named by ``model.exog_names``) and the residual
        degrees of freedom.

    Methods
    -------
    cov_params()
        Covariance of ``params`` at the estimated t (a DataFrame).
    """

    time_choice: Any
    likelihood_profile: Any
    estimate: Any
    t: float
    llf: float
    scale: float
    reml: bool
    method: str
    nobs: int
    free_modes: int


def check_fit(res: Any) -> None:
    """Raise a TypeError unless ``res`` is a fitted model's results (:class:`FitResults`)."""
    if not isinstance(res, FitResults):
        raise TypeError("expected a fitted MixedLMNTKResults (from MixedLMNTK.fit()), "
                        f"got {type(res).__name__}")


def check_fixed_effects_fit(res: Any) -> None:
    """Raise a TypeError unless ``res`` is a fit with testable fixed effects."""
    if not isinstance(res, FixedEffectsFit):
        raise TypeError("expected a fitted model's results (from MixedLMNTK.fit()), "
                        f"got {type(res).__name__}")
