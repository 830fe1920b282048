"""Property tests (hypothesis): small random problems with continuous, integer-valued
and tied inputs, 1-4 fixed effects (an intercept and up to three covariates).

* a fit either succeeds or raises the package's documented errors (ValueError /
  TypeError with a message), and warns only with its own warnings;
* a successful fit has t >= 0, s2 > 0 and a finite log-likelihood, and predicting
  the training rows as new rows gives the fitted values;
* the fit does not depend on the order of the rows;
* rescaling y by c leaves t unchanged and scales s2 by c^2 (and beta by c);
* adding a constant to y changes only the intercept.

A fit that the package flags with ``DegenerateFitWarning`` (s2 vanishes at t: the
likelihood is unbounded and the warning says the estimates are not meaningful; t is
then set by rounding) must be flagged the same way after the transformation, and its
numbers are not compared.

The checks use ``fit(t_method="reml")``: the likelihood's t without the default
rule's bootstrap diagnostic, whose randomness would interfere with the comparisons.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mixednn as mn
from mixednn import exceptions

PACKAGE_WARNINGS = (exceptions.BoundaryFitWarning, exceptions.InterpolationWarning,
                    exceptions.DegenerateFitWarning, exceptions.KernelClippedWarning)

SETTINGS = dict(deadline=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _column(draw, n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "continuous":
        scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
        return scale * rng.normal(size=n)
    if kind == "integer":
        return rng.integers(-3, 4, size=n).astype(float)
    if kind == "binary":
        return (rng.random(n) < 0.3).astype(float)
    # tied: few distinct values, some repeated many times
    levels = rng.normal(size=draw(st.integers(2, 4)))
    return levels[rng.integers(0, levels.size, size=n)]


@st.composite
def problems(draw, min_n: int = 10, max_n: int = 60):
    """``(y, X, Z)``: X has an intercept and 0-3 covariates; Z 1-2 network inputs."""
    n = draw(st.integers(min_n, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    p = draw(st.integers(1, 4))
    kinds = st.sampled_from(["continuous", "integer", "tied", "binary"])
    X = np.column_stack([np.ones(n)] + [_column(draw, n, draw(kinds), rng)
                                        for _ in range(p - 1)])
    d = draw(st.integers(1, 2))
    Z = np.column_stack([_column(draw, n, draw(kinds), rng) for _ in range(d)])
    signal = draw(st.sampled_from([0.0, 1.0, 3.0]))
    # "linear": exactly a combination of the fixed effects (integer data, integer
    # coefficients), which no fit can model: it must be refused with a ValueError
    y_kind = draw(st.sampled_from(["continuous", "integer", "binary", "linear"]))
    y = signal * np.sin(2 * Z[:, 0] / (np.std(Z[:, 0]) + 1e-12)) + rng.normal(size=n)
    if p > 1:
        y = y + X[:, 1] / (np.std(X[:, 1]) + 1e-12)
    if y_kind == "integer":
        y = np.round(2 * y)
    elif y_kind == "binary":
        y = (y > np.median(y)).astype(float)
    elif y_kind == "linear":
        y = X @ rng.integers(-2, 3, size=p).astype(float)
    if draw(st.booleans()):  # exact duplicates of some rows, responses included
        k = draw(st.integers(1, n // 2))
        y, X, Z = (np.concatenate([a, a[:k]]) for a in (y, X, Z))
    return y, X, Z


def _fit(y, X, Z):
    """The fit and the warnings it raised; None when it raised a documented error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=1)).fit(t_method="reml")
        except (ValueError, TypeError) as exc:
            assert str(exc).strip(), f"{type(exc).__name__} without a message"
            return None, caught
    return res, caught


def _degenerate(caught) -> bool:
    return any(issubclass(w.category, exceptions.DegenerateFitWarning) for w in caught)


def _own_warnings_only(caught) -> None:
    for w in caught:
        own = issubclass(w.category, PACKAGE_WARNINGS) or (
            issubclass(w.category, RuntimeWarning) and "mixednn" in w.filename)
        assert own, f"foreign warning {w.category.__name__}: {w.message} ({w.filename})"


@settings(max_examples=30, **SETTINGS)
@given(problems())
def test_a_fit_is_sane_or_raises_a_documented_error(problem):
    y, X, Z = problem
    res, caught = _fit(y, X, Z)
    _own_warnings_only(caught)
    if res is None:
        return
    assert res.t >= 0 and math.isfinite(res.t)
    assert res.scale > 0 and math.isfinite(res.scale)
    assert math.isfinite(res.llf)
    # the training rows, predicted as new rows through the cross-kernel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pred = res.predict(exog=X, ntk_inputs=Z).to_numpy()
    fitted = res.fittedvalues.to_numpy()
    np.testing.assert_allclose(pred, fitted, rtol=1e-6,
                               atol=1e-6 * (np.abs(fitted).max() + np.std(y)))


def _same_fit(a, b, y_scale: float) -> None:
    assert b.t == pytest.approx(a.t, rel=1e-5, abs=1e-9 / max(a.model.profile.lam.max(), 1e-300))
    assert b.llf == pytest.approx(a.llf, rel=1e-8, abs=1e-6)
    np.testing.assert_allclose(b.params.to_numpy(), a.params.to_numpy(), rtol=1e-5,
                               atol=1e-6 * y_scale)


@settings(max_examples=20, **SETTINGS)
@given(problems(), st.integers(0, 2**32 - 1))
def test_the_fit_does_not_depend_on_the_row_order(problem, seed):
    y, X, Z = problem
    a, wa = _fit(y, X, Z)
    if a is None:
        return
    perm = np.random.default_rng(seed).permutation(len(y))
    b, wb = _fit(y[perm], X[perm], Z[perm])
    assert b is not None
    assert _degenerate(wb) == _degenerate(wa)
    if _degenerate(wa):
        return
    _same_fit(a, b, float(np.std(y)))
    assert b.scale == pytest.approx(a.scale, rel=1e-6)


@settings(max_examples=20, **SETTINGS)
@given(problems(), st.sampled_from([1e-3, 0.1, 7.0, -2.0, 1e3]))
def test_rescaling_y_leaves_t_and_scales_s2(problem, c):
    y, X, Z = problem
    a, wa = _fit(y, X, Z)
    if a is None:
        return
    b, wb = _fit(c * y, X, Z)
    assert b is not None
    assert _degenerate(wb) == _degenerate(wa)
    if _degenerate(wa):
        return
    assert b.t == pytest.approx(a.t, rel=1e-5, abs=1e-9 / a.model.profile.lam.max())
    assert b.scale == pytest.approx(c * c * a.scale, rel=1e-6)
    np.testing.assert_allclose(b.params.to_numpy(), c * a.params.to_numpy(), rtol=1e-5,
                               atol=1e-6 * abs(c) * float(np.std(y)))


@settings(max_examples=20, **SETTINGS)
@given(problems(), st.sampled_from([-50.0, 0.5, 3.0, 1e3]))
def test_adding_a_constant_changes_only_the_intercept(problem, shift):
    y, X, Z = problem
    a, wa = _fit(y, X, Z)
    if a is None:
        return
    b, wb = _fit(y + shift, X, Z)
    assert b is not None
    assert _degenerate(wb) == _degenerate(wa)
    if _degenerate(wa):
        return
    assert b.t == pytest.approx(a.t, rel=1e-5, abs=1e-9 / a.model.profile.lam.max())
    assert b.scale == pytest.approx(a.scale, rel=1e-6)
    assert b.llf == pytest.approx(a.llf, rel=1e-8, abs=1e-6)
    tol = 1e-6 * (float(np.std(y)) + abs(shift))
    assert b.params.iloc[0] == pytest.approx(a.params.iloc[0] + shift, abs=tol)
    np.testing.assert_allclose(b.params.to_numpy()[1:], a.params.to_numpy()[1:], atol=tol)


# --------------------------------------------- the two failures these properties found
def _small(seed: int, n: int = 20):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 1))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    return X @ np.array([1.0, 0.5]) + rng.normal(size=n), X, Z


def test_a_large_mean_of_y_does_not_move_a_boundary_fit():
    """The grid of the search is vectorised through cross-products, whose rounding grows
    with the mean of y; its value at the best grid point used to be compared with the
    accurate l(0), so a spurious dip of ~3e-7 beat the boundary t = 0."""
    y, X, Z = _small(0)
    a, _ = _fit(y, X, Z)
    b, _ = _fit(y + 1e4, X, Z)
    assert a.t == 0.0 and b.t == 0.0 and b.boundary
    assert b.llf == pytest.approx(a.llf, abs=1e-6)
    assert b.params.iloc[0] == pytest.approx(a.params.iloc[0] + 1e4, rel=1e-12)


def test_a_response_reproduced_by_the_fixed_effects_is_refused():
    """y in the span of X leaves no residual at any t: the likelihood is unbounded and t,
    s2, llf were rounding (they changed with the row order).  As for a constant response,
    the fit refuses with a ValueError."""
    _, X, Z = _small(1, n=30)
    with pytest.raises(ValueError, match="reproduce the response exactly"):
        mn.MixedLMNTK(X @ np.array([1.0, 2.0]), X, Z, network=mn.MLP(depth=1)).fit()
    with pytest.raises(ValueError, match="reproduce the response exactly"):
        mn.MixedLMNTK(np.round(X[:, 1] * 3) - 1, np.column_stack([X[:, 0], np.round(
            X[:, 1] * 3)]), Z, network=mn.MLP(depth=1)).fit(t_method="gcv")
