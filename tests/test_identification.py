"""When are the fixed effects identified at the estimated t?

``numerics.gram_inverse`` judges ``X^T W X`` against ``X^T X``: columns collinear in the data,
or a combination whose information the network's weights remove.  Neither depends on the
columns' units.  Until this was fixed the raw condition number of ``X^T W X`` decided, so a
covariate in raw units (a population in persons, about 1e9, beside an intercept) gave NaN
standard errors and a warning that the fit "nearly interpolates".
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import mixednn as mn
from mixednn.numerics import gram_inverse


def _population_frame(n: int = 80, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({"pop": rng.uniform(1e6, 1e9, n), "g": rng.choice(["a", "b"], n),
                      "z1": rng.normal(size=n), "z2": rng.normal(size=n),
                      "grp": rng.choice(list("ABCDEFGH"), n)})
    d["y"] = (np.sin(d["z1"]) + d["pop"] / 1e9 + (d["g"] == "b")
              + 0.3 * rng.normal(size=n))
    return d


@pytest.mark.parametrize("formula", ["y ~ pop + g", "y ~ pop + g + (1 | grp)"])
def test_a_covariate_in_raw_units_keeps_its_standard_errors(formula):
    """Population in persons (1e6-1e9) and in billions: the same fit, standard errors
    scaled by 1e9, no warning (was: NaN and 'not identified')."""
    raw = _population_frame()
    billions = raw.assign(pop=raw["pop"] / 1e9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", mn.BoundaryFitWarning)  # (1 | grp) has no variance
        r_raw = mn.MixedLMNTK.from_formula(formula, raw, ntk=["z1", "z2"]).fit()
        r_bn = mn.MixedLMNTK.from_formula(formula, billions, ntk=["z1", "z2"]).fit()
        bse_raw, bse_bn = r_raw.bse, r_bn.bse
    assert r_raw.t == pytest.approx(r_bn.t, rel=1e-8)
    assert bse_raw["pop"] * 1e9 == pytest.approx(bse_bn["pop"], rel=1e-8)
    for name in ("Intercept", "g[T.b]"):
        assert bse_raw[name] == pytest.approx(bse_bn[name], rel=1e-8)
    assert np.isfinite(r_raw.conf_int().to_numpy()).all()


def test_a_fixed_effect_the_network_absorbs_is_named():
    """The intercept lies in the span of the kernel's eigenvectors and the fit runs to
    interpolation: the weights keep none of the intercept's information, so its standard
    error is NaN and the warning names it (the slope, which the kernel does not carry,
    keeps its standard error only through the same matrix, so both are NaN)."""
    rng = np.random.default_rng(8)
    n = 40
    Phi, _ = np.linalg.qr(np.column_stack([np.ones(n), rng.normal(size=(n, 4))]))
    K = 3.0 * Phi @ Phi.T
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = Phi @ rng.normal(size=5) + X @ [1.0, 0.5]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mn.DegenerateFitWarning)
        res = mn.MixedLMNTK(y, X, kernel=K).fit()
    with pytest.warns(RuntimeWarning, match=r"the network absorbs the combination of x1:"):
        bse = res.bse
    assert bse.isna().all()


def test_columns_collinear_in_the_data_are_named():
    X = np.column_stack([np.ones(6), np.arange(6.0), 2 * np.arange(6.0) + 1e-13])
    found = gram_inverse(X.T @ X, X.T @ X)
    assert found.inverse is None and found.collinear
    assert list(np.abs(found.null_loadings) >= 0.1) == [False, True, True]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), p=st.integers(1, 4),
       log10_units=st.lists(st.floats(-8, 8), min_size=4, max_size=4),
       t=st.floats(0.0, 3.0))
def test_gram_inverse_is_the_inverse_and_ignores_units(seed, p, log10_units, t):
    """Against brute force: the inverse is ``inv(X^T W X)``, ``retained`` is the smallest
    generalised eigenvalue of ``(X^T W X, X^T X)``, and rescaling the columns by any units
    rescales the inverse exactly and changes nothing else."""
    rng = np.random.default_rng(seed)
    n = 12
    X = rng.normal(size=(n, p))
    w = np.exp(-t * rng.uniform(0, 2, n))  # weights exp(-t lam)
    G, R = X.T @ (w[:, None] * X), X.T @ X
    found = gram_inverse(G, R)
    assert found.inverse is not None
    np.testing.assert_allclose(found.inverse @ G, np.eye(p), atol=1e-9)
    assert found.retained == pytest.approx(scipy.linalg.eigh(G, R, eigvals_only=True)[0],
                                           rel=1e-9)
    D = 10.0 ** np.array(log10_units[:p])  # units from 1e-8 to 1e8
    scaled = gram_inverse(G * np.outer(D, D), R * np.outer(D, D))
    np.testing.assert_allclose(scaled.inverse * np.outer(D, D), found.inverse,
                               rtol=1e-8, atol=1e-12 * np.abs(found.inverse).max())
    assert scaled.retained == pytest.approx(found.retained, rel=1e-8)
