"""Degenerate likelihoods get a clear answer: a maximum within rounding of t = 0 is the
boundary, vanishing residuals are detected and explained, and a prediction rule never
moves to a time where the fixed effects are not identified without saying so."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixednn as mn


def _fit_quietly(model, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(**kw)
    return res, caught


@pytest.mark.parametrize("seed", [7, 25])
def test_a_gain_within_rounding_of_t0_is_the_boundary(seed):
    # pure noise on these seeds used to give t ~ 1e-16, no warning and a NaN s2 interval
    rng = np.random.default_rng(seed)
    Z, y = rng.normal(size=(40, 2)), rng.normal(size=40)
    res, caught = _fit_quietly(mn.MixedLMNTK(y, np.ones((40, 1)), Z, network=mn.MLP(depth=2)))
    assert res.t == 0.0 and res.boundary
    assert any(issubclass(w.category, mn.BoundaryFitWarning) for w in caught)
    lo, hi = res.scale_conf_int()
    assert 0 < lo < res.scale < hi
    assert "Boundary fit" in str(res.summary())


def _duplicated():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(30, 2))
    y = np.sin(Z[:, 0]) + 0.3 * rng.normal(size=30)
    return mn.MixedLMNTK(np.concatenate([y, y]), np.ones((60, 1)), np.vstack([Z, Z]),
                         network=mn.MLP(depth=2))


def test_duplicated_rows_never_lead_the_checked_rule_to_a_vanishing_variance():
    m = _duplicated()
    res, _ = _fit_quietly(m, t_method="auto")
    reml, _ = _fit_quietly(m, t_method="reml")
    assert res.t == reml.t and res.scale > 1e-3
    assert "drives the residuals to zero" in res.auto_check.reason
    str(res.summary())  # no internal error


def test_vanishing_residual_variance_is_detected_and_explained():
    m = _duplicated()
    res, caught = _fit_quietly(m, t_method="gcv")
    msgs = [str(w.message) for w in caught if issubclass(w.category, mn.DegenerateFitWarning)]
    assert msgs and "duplicated with identical responses" in msgs[0]
    assert res.scale < 1e-10
    str(res.summary())  # the summary still prints


def test_nan_residual_df_counts_as_interpolation():
    from mixednn.smoother import SmootherData
    from mixednn.stopping import residual_df_ok

    m = _duplicated()
    data = SmootherData.from_model(m)
    assert not residual_df_ok(data, float("nan"))
    assert residual_df_ok(data, 10.0) and not residual_df_ok(data, 1.0)
