"""Linear hypotheses on the fixed effects: ``t_test``, ``wald_test`` and ``f_test``.

The statsmodels way, with statsmodels' own machinery: a hypothesis ``R beta = q`` is
parsed by patsy's :meth:`patsy.DesignInfo.linear_constraint` against the names of the
fixed effects (a string such as ``"x1 = 0"`` or ``"C(g)[T.b] = C(g)[T.c]"``, a list of
such strings, a dict, a matrix ``R``, or a tuple ``(R, q)``), and the outcome is a
:class:`statsmodels.stats.contrast.ContrastResults` (``.summary()``, ``.pvalue``,
``.conf_int()``), as :meth:`statsmodels.base.model.LikelihoodModelResults.t_test` does.

The covariance is the fit's ``cov_params()``: ``s2 (X~^T W X~)^{-1}`` at the estimated
t, conditional on t (as lme4 reports it).  The reference distributions are the normal
(``t_test``) and chi-square (``wald_test``), as for statsmodels' ``MixedLM``
(``use_t=False``); ``f_test`` is the Wald statistic divided by the number of
constraints against ``F(J, df_resid)``, as statsmodels' ``f_test`` always is.

The functions read a fit through :class:`mixednn.interfaces.FixedEffectsFit`
(``params``, ``cov_params()``, ``df_resid``); plain and grouped results
(:class:`mixednn.MixedLMNTKResults`, :class:`mixednn.groupresults.GroupedResults`) have
the methods of the same names.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from patsy import DesignInfo, PatsyError
from statsmodels.stats.contrast import ContrastResults
from statsmodels.tools.sm_exceptions import ValueWarning

from .interfaces import FixedEffectsFit, check_fixed_effects_fit

__all__ = ["linear_constraint", "t_test", "wald_test", "f_test"]


def _check_testable(res: Any) -> None:
    check_fixed_effects_fit(res)
    if not res.k_fe:
        raise ValueError("the model has no fixed effects to test")


def linear_constraint(names: list[str], r_matrix: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(R, q)`` of the hypothesis ``R beta = q`` on parameters called ``names``.

    Parameters
    ----------
    names : list of str
        The fixed effects' names, in order (``res.model.exog_names``).
    r_matrix : str, list of str, dict, array-like or tuple
        Anything :meth:`patsy.DesignInfo.linear_constraint` accepts: ``"x1 = 0"``,
        ``"x1 = x2, x3 = 1"``, ``["x1", "x2 = 1"]``, ``{"x1": 0}``, a matrix ``R``
        (``q = 0``; one row may be given as a 1-d array) or a tuple ``(R, q)``.

    Returns
    -------
    R : ndarray, shape (J, p)
    q : ndarray, shape (J,)

    Raises
    ------
    ValueError
        A name that is not a fixed effect, a malformed expression, or a matrix of the
        wrong shape.

    Examples
    --------
    >>> R, q = linear_constraint(["Intercept", "x"], "x = 1")
    >>> R.tolist(), q.tolist()
    ([[0.0, 1.0]], [1.0])
    """
    names = [str(n) for n in names]
    if isinstance(r_matrix, tuple) and len(r_matrix) == 2:
        R, q = r_matrix
        R = np.atleast_2d(np.asarray(R, dtype=float))
        r_matrix = (R, np.asarray(q, dtype=float).reshape(-1))
    elif not isinstance(r_matrix, (str, list, dict)) or (
            isinstance(r_matrix, list) and r_matrix and not isinstance(r_matrix[0], str)):
        r_matrix = np.atleast_2d(np.asarray(r_matrix, dtype=float))
    try:
        lc = DesignInfo(names).linear_constraint(r_matrix)
    except PatsyError as exc:
        raise ValueError(f"could not read the hypothesis {r_matrix!r}: {exc.message}; the "
                         f"fixed effects are {names}") from None
    except ValueError as exc:
        raise ValueError(f"could not read the hypothesis: {exc}; R needs {len(names)} "
                         f"columns, one per fixed effect {names}") from None
    R = np.asarray(lc.coefs, dtype=float)
    q = np.asarray(lc.constants, dtype=float).reshape(-1)
    if not (np.all(np.isfinite(R)) and np.all(np.isfinite(q))):
        raise ValueError("the hypothesis has non-finite coefficients or values")
    return R, q


def _parts(res: FixedEffectsFit, r_matrix: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                    np.ndarray]:
    """``R``, ``q``, ``R beta`` and ``R C R^T`` for the fit's fixed effects."""
    _check_testable(res)
    names = list(res.model.exog_names)
    R, q = linear_constraint(names, r_matrix)
    beta = np.asarray(res.params, dtype=float)
    cov = np.asarray(res.cov_params(), dtype=float)
    return R, q, R @ beta, R @ cov @ R.T


def t_test(res: FixedEffectsFit, r_matrix: Any) -> ContrastResults:
    """z tests of each row of ``R beta = q`` (normal reference, as statsmodels' MixedLM).

    Parameters
    ----------
    res : MixedLMNTKResults
    r_matrix : str, list, dict, array-like or tuple
        The hypothesis; see :func:`linear_constraint`.

    Returns
    -------
    statsmodels.stats.contrast.ContrastResults
        ``effect`` (``R beta``), ``sd``, ``statistic`` (= ``tvalue``, the z statistics
        ``(R beta - q) / sd``), two-sided normal ``pvalue``, ``conf_int()`` and
        ``summary()``.  NaN where the fixed effects are not identified at t.

    Examples
    --------
    >>> import numpy as np, mixednn as mn
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(60, 1)); X = np.column_stack([np.ones(60), Z[:, 0]])
    >>> y = X @ [1.0, 0.5] + np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=60)
    >>> res = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=1)).fit()
    >>> tt = t_test(res, "x2 = 0")  # array fits name their columns x1, x2, ...
    >>> bool(np.isclose(tt.statistic[0, 0], res.tvalues["x2"]))
    True
    """
    _, q, effect, cov = _parts(res, r_matrix)
    # statsmodels' shapes (LikelihoodModelResults.t_test): sd and statistic are 1 x 1 for
    # one constraint, (J,) for several
    sd = np.sqrt(cov) if cov.shape[0] == 1 else np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = (effect - q) / sd
    return ContrastResults(effect=effect, statistic=stat, sd=sd, df_denom=res.df_resid,
                           distribution="norm")


def _wald(res: FixedEffectsFit, r_matrix: Any) -> tuple[float, int]:
    """``(R b - q)^T (R C R^T)^+ (R b - q)`` and its degrees of freedom (the rank)."""
    R, q, effect, cov = _parts(res, r_matrix)
    if not np.all(np.isfinite(cov)):
        raise ValueError("the covariance of the fixed effects is not finite at this t (they "
                         "are not identified: the network has absorbed them), so no Wald "
                         "test can be formed")
    J = R.shape[0]
    rank = int(np.linalg.matrix_rank(cov))
    if rank < J:
        warnings.warn(f"covariance of constraints does not have full rank. The number of "
                      f"constraints is {J}, but rank is {rank}", ValueWarning, stacklevel=3)
    d = effect - q
    return float(d @ np.linalg.pinv(cov) @ d), rank


def wald_test(res: FixedEffectsFit, r_matrix: Any, *, use_f: bool = False,
              scalar: bool = True) -> ContrastResults:
    """Joint Wald test of ``R beta = q`` (chi-square reference, as statsmodels' MixedLM).

    ``W = (R b - q)^T (R C R^T)^{-1} (R b - q)`` with ``C = res.cov_params()`` (a
    pseudo-inverse and the rank as degrees of freedom, with statsmodels' warning, when
    the constraints are linearly dependent).

    Parameters
    ----------
    res : MixedLMNTKResults
    r_matrix : str, list, dict, array-like or tuple
        The hypothesis; see :func:`linear_constraint`.
    use_f : bool
        ``True``: ``W / J`` against ``F(J, df_resid)`` (what :func:`f_test` returns).
    scalar : bool
        Return the statistic as a Python float (statsmodels' future default); ``False``
        gives a 1 x 1 array.

    Returns
    -------
    statsmodels.stats.contrast.ContrastResults
        ``statistic``, ``pvalue``, ``df_denom`` (chi2: the number of constraints J) or
        ``df_num``/``df_denom`` (F).

    Raises
    ------
    ValueError
        When the fixed effects are not identified at t (their covariance is NaN).
    """
    W, J = _wald(res, r_matrix)
    stat: Any = W if scalar else np.array([[W]])
    if use_f:
        return ContrastResults(F=stat / J, df_denom=res.df_resid, df_num=J)
    return ContrastResults(chi2=stat, df_denom=J, statistic=stat, distribution="chi2",
                           distargs=(J,))


def f_test(res: FixedEffectsFit, r_matrix: Any) -> ContrastResults:
    """F test of ``R beta = q``: the Wald statistic over J against ``F(J, df_resid)``.

    As statsmodels' ``f_test`` (``wald_test(..., use_f=True)``); see :func:`wald_test`.

    Returns
    -------
    statsmodels.stats.contrast.ContrastResults
        ``fvalue``, ``pvalue``, ``df_num`` (J) and ``df_denom`` (``res.df_resid``).
    """
    return wald_test(res, r_matrix, use_f=True, scalar=True)
