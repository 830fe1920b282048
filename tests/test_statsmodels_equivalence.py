"""With a group-indicator kernel K = Z Z^T the model is the random-intercept model.

exp(tK) = I + (exp(tm) - 1)/m Z Z^T for balanced groups of size m, so the group
variance is s2 (exp(tm) - 1)/m, and statsmodels' MixedLM (REML and ML) must be
reproduced exactly, log-likelihood included (model.md section 2).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import mixednn as mn


@pytest.fixture(scope="module")
def grouped():
    rng = np.random.default_rng(42)
    g, m = 15, 6
    groups = np.repeat(np.arange(g), m)
    x = rng.normal(size=g * m)
    y = 1.0 + 0.7 * x + rng.normal(scale=0.8, size=g)[groups] + rng.normal(size=g * m)
    df = pd.DataFrame({"y": y, "x": x, "g": groups})
    Zg = (groups[:, None] == np.arange(g)[None, :]).astype(float)
    return df, Zg @ Zg.T, m


@pytest.mark.parametrize("reml", [True, False])
def test_reproduces_statsmodels_random_intercept(grouped, reml):
    df, K, m = grouped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm("y ~ x", df, groups=df["g"]).fit(reml=reml)
    res = mn.MixedLMNTK.from_formula("y ~ x", df, kernel=K).fit(reml=reml)
    group_var = res.scale * math.expm1(res.t * m) / m
    assert res.scale == pytest.approx(ref.scale, rel=1e-5)
    assert group_var == pytest.approx(float(ref.cov_re.iloc[0, 0]), rel=1e-4)
    assert res.llf == pytest.approx(ref.llf, rel=1e-8, abs=1e-6)
    np.testing.assert_allclose(res.params.to_numpy(), ref.fe_params.to_numpy(), rtol=1e-5)
    # Standard errors follow lme4: (X^T V^-1 X)^-1 at the estimates (statsmodels takes
    # them from the joint observed information instead, which differs at O(1/n)).
    X = np.column_stack([np.ones(len(df)), df["x"].to_numpy()])
    Vi = np.linalg.inv(res.scale * (np.eye(len(df)) + math.expm1(res.t * m) / m * K))
    np.testing.assert_allclose(res.bse.to_numpy(), np.sqrt(np.diag(np.linalg.inv(X.T @ Vi @ X))),
                               rtol=1e-8)


def test_llf_matches_statsmodels_loglike_at_fixed_values(grouped):
    """Exact agreement of the criterion itself (no optimiser tolerance involved)."""
    import statsmodels.api as sm

    df, K, m = grouped
    mod = mn.MixedLMNTK.from_formula("y ~ x", df, kernel=K)
    sm_mod = sm.MixedLM.from_formula("y ~ x", df, groups=df["g"])
    for t in [0.05, 0.2, 0.6]:
        pt = mod.profile.point(t, True)
        ratio = math.expm1(t * m) / m  # group variance / s2
        params = sm.regression.mixed_linear_model.MixedLMParams.from_components(
            fe_params=pt.beta, cov_re=np.array([[ratio]]), vcomp=np.array([]))
        sm_mod.reml = True
        sm_mod.cov_pen = sm_mod.fe_pen = None  # normally set by fit()
        # statsmodels profiles out the scale, as we do
        assert mod.loglike(t) == pytest.approx(sm_mod.loglike(params, profile_fe=False), rel=1e-10)
