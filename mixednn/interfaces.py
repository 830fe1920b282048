"""Protocols: what the layers above results (tests, plots, summary, training) may rely on.

The modules that take a fitted model (:mod:`mixednn.inference`, :mod:`mixednn.plotting`,
:mod:`mixednn.summary`, :mod:`mixednn.training`) sit below :mod:`mixednn.results` and
never import it; they read a fit through :class:`FitResults` (a runtime-checkable
Protocol), so they can also be tested with light stand-ins.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["FitResults", "check_fit"]


@runtime_checkable
class FitResults(Protocol):
    """A fitted MixedLMNTK model, as the tests, plots and summary read it.

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

    model: Any
    time_choice: Any
    likelihood_profile: Any
    estimate: Any
    t: float
    llf: float
    scale: float
    reml: bool
    method: str
    nobs: int
    k_fe: int
    free_modes: int
    params: Any
    df_resid: float

    def cov_params(self) -> Any:
        """Covariance of ``params`` (conditional on t)."""
        ...


def check_fit(res: Any) -> None:
    """Raise a TypeError unless ``res`` is a fitted model's results (:class:`FitResults`)."""
    if not isinstance(res, FitResults):
        raise TypeError("expected a fitted MixedLMNTKResults (from MixedLMNTK.fit()), "
                        f"got {type(res).__name__}")
