"""Tests of H0: t = 0 (score test, RLRT: mixednn.inference, mixednn.lrnull) and model
comparison (mixednn.comparison).

Every p-value is checked against an independent reference: dense brute force
(explicit projector and eigenvalues), Monte Carlo with 10^5 draws, closed-form
distributions (Beta for a projector kernel, the 50:50 mixture), statsmodels'
OLS log-likelihood, and refits of simulated data.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import mixednn as mn
from mixednn.chi2sums import projected_ratio_sf, weighted_chi2_sf
from mixednn.comparison import anova, compare_lr_test
from mixednn.exceptions import BoundaryFitWarning, MLRefitWarning
from mixednn.hypotheses import InapplicableTest, TestResult
from mixednn.inference import lr_test, ratio_cumulants, score_test
from mixednn.lrnull import NullSimulator, simulate_lr_null
from mixednn.features import FunctionFeatures

from .conftest import rbf


def _fit(y, X, K, reml=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryFitWarning)
        return mn.MixedLMNTK(y, X, kernel=K).fit(reml=reml)


@pytest.fixture(scope="module")
def small():
    """n = 40, intercept + covariate, an RBF kernel and a moderate signal."""
    rng = np.random.default_rng(11)
    n = 40
    Z = rng.normal(size=(n, 2))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    K = rbf(Z, Z, 1.0)
    y = X @ [1.0, -0.5] + 0.6 * np.sin(2 * Z[:, 0]) + 0.5 * rng.normal(size=n)
    return {"y": y, "X": X, "K": K, "Z": Z, "n": n, "res": _fit(y, X, K)}


def _dense_score(y, X, K):
    """Q, its null weights nu (explicit eigenvalues of M K M on range(M)), the REML score."""
    n, p = X.shape
    H = X @ np.linalg.solve(X.T @ X, X.T)
    M = np.eye(n) - H
    r0 = M @ y
    Q = r0 @ K @ r0 / (r0 @ r0)
    # orthonormal basis of range(M): the eigenvectors of M with eigenvalue 1
    w, V = np.linalg.eigh(M)
    A = V[:, w > 0.5]
    nu = np.linalg.eigvalsh(A.T @ K @ A)
    s2 = r0 @ r0 / (n - p)
    score = 0.5 * (r0 @ K @ r0 / s2 - np.trace(M @ K))
    return Q, nu, score


# ------------------------------------------------------------------ score test

def test_score_test_matches_dense_brute_force(small):
    Q, nu, score = _dense_score(small["y"], small["X"], small["K"])
    test = small["res"].score_test()
    assert isinstance(test, TestResult) and test.valid
    assert test.statistic == pytest.approx(Q, rel=1e-12)
    ref = weighted_chi2_sf(0.0, nu - Q, method="davies", tol=1e-12).pvalue
    assert test.pvalue == pytest.approx(ref, abs=1e-9)
    assert 1e-4 < test.pvalue < 0.05
    assert test.method == "exact ratio null, imhof"
    assert test.details["REML score at t = 0"] == pytest.approx(score, rel=1e-10)
    assert test.details["REML score at t = 0"] == pytest.approx(
        small["res"].model.profile.score(0.0, reml=True), rel=1e-8)
    assert test.details["E[Q | H0] = tr((I-H)K)/(n-p)"] == pytest.approx(nu.mean(), rel=1e-12)
    assert test.df == pytest.approx(nu.sum() ** 2 / (nu ** 2).sum(), rel=1e-10)
    # imhof and davies agree to the advertised 1e-6 absolute (here far better)
    dav = small["res"].score_test("davies")
    assert dav.pvalue == pytest.approx(test.pvalue, abs=1e-9)
    assert "davies" in dav.method


def test_plugin_methods_use_s2_fixed_reference(small):
    Q, nu, _ = _dense_score(small["y"], small["X"], small["K"])
    m = small["n"] - 2
    plug = small["res"].score_test("plugin")
    assert plug.statistic == pytest.approx(Q * m, rel=1e-12)
    assert plug.pvalue == pytest.approx(weighted_chi2_sf(Q * m, nu, method="davies",
                                                         tol=1e-12).pvalue, abs=1e-9)
    sat = small["res"].score_test("plugin-satterthwaite")
    a, df = (nu ** 2).sum() / nu.sum(), nu.sum() ** 2 / (nu ** 2).sum()
    assert sat.pvalue == pytest.approx(stats.chi2.sf(Q * m / a, df), rel=1e-8)
    liu = small["res"].score_test("plugin-liu")
    assert liu.pvalue == pytest.approx(plug.pvalue, rel=0.5)


def test_exact_pvalue_matches_monte_carlo_1e5_draws():
    """P(Q > q) under H0 from 10^5 simulated data sets (with beta and s2 != 0, 1)."""
    rng = np.random.default_rng(5)
    n = 25
    Z = rng.normal(size=(n, 2))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    K = rbf(Z, Z, 0.7)
    nsim = 100_000
    E = X @ [3.0, -2.0] + 1.7 * rng.normal(size=(nsim, n))
    B = np.linalg.lstsq(X, E.T, rcond=None)[0]
    R = E - (X @ B).T
    Qs = np.einsum("bi,ij,bj->b", R, K, R) / np.einsum("bi,bi->b", R, R)
    res = _fit(E[0], X, K)
    prof = res.model.profile
    for q_level in (0.5, 0.9, 0.99):
        target = np.quantile(Qs, q_level)  # a statistic at this quantile of the null
        p_exact = projected_ratio_sf(target, prof.lam, prof.X_rot).pvalue
        p_mc = np.mean(Qs > target)
        se = math.sqrt(p_mc * (1 - p_mc) / nsim)
        assert abs(p_exact - p_mc) < 4.5 * se + 1e-5, (q_level, p_exact, p_mc)
    # the API on one data set against the same Monte Carlo null
    test = res.score_test()
    p_mc = np.mean(Qs > test.statistic)
    assert abs(test.pvalue - p_mc) < 4.5 * math.sqrt(p_mc * (1 - p_mc) / nsim) + 1e-5


def test_projector_kernel_gives_exact_beta_null():
    """K = projector onto a k-dim subspace orthogonal to X: Q ~ Beta(k/2, (n-p-k)/2)."""
    rng = np.random.default_rng(2)
    n, k = 30, 4
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    M = np.eye(n) - X @ np.linalg.solve(X.T @ X, X.T)
    S = np.linalg.qr(M @ rng.normal(size=(n, k)))[0]
    K = S @ S.T
    y = X @ [1.0, 1.0] + rng.normal(size=n) + 0.8 * S @ rng.normal(size=k)
    res = _fit(y, X, K)
    m = n - 2
    beta = stats.beta(k / 2, (m - k) / 2)
    for method in ("exact", "imhof", "davies"):
        t = res.score_test(method)
        assert t.pvalue == pytest.approx(beta.sf(t.statistic), abs=1e-8), method
    # the exact null moments used by "satterthwaite"/"liu" are the Beta's
    prof = res.model.profile
    kap = ratio_cumulants(prof.lam, prof.X_rot, m, k / m)
    mean, var, skew, kurt = beta.stats(moments="mvsk")
    assert kap[0] == pytest.approx(mean, rel=1e-12)
    assert kap[1] == pytest.approx(var, rel=1e-10)
    assert kap[2] / kap[1] ** 1.5 == pytest.approx(skew, rel=1e-8)
    assert kap[3] / kap[1] ** 2 == pytest.approx(kurt, rel=1e-8)
    # moment matching is close to, not equal to, the exact answer
    t = res.score_test()
    sat = res.score_test("satterthwaite")
    liu = res.score_test("liu")
    assert sat.statistic == t.statistic
    assert abs(sat.pvalue - t.pvalue) < 0.02 and abs(liu.pvalue - t.pvalue) < 0.02


def test_far_tail_switches_to_saddlepoint_and_says_so():
    rng = np.random.default_rng(3)
    n = 120
    Z = rng.normal(size=(n, 1))
    X = np.ones((n, 1))
    y = 2.0 * np.sin(3 * Z[:, 0]) + 0.3 * rng.normal(size=n)
    res = _fit(y, X, rbf(Z, Z, 0.5))
    t = res.score_test()
    assert 0 < t.pvalue < 1e-8
    assert "saddlepoint" in t.method and "Imhof below" in t.method


def test_score_test_inapplicable_when_kernel_lies_in_fixed_effects():
    """K = 1 1^T + c I with an intercept: (I - H) K (I - H) = c (I - H), Q = c always."""
    rng = np.random.default_rng(4)
    n = 20
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    K = np.ones((n, n)) + np.diag(np.full(n, 1e-3))  # constant on range(M): nu all equal
    res = _fit(X @ [1, 2] + rng.normal(size=n), X, K)
    t = res.score_test()
    assert isinstance(t, InapplicableTest) and not t.valid
    assert "constant on the residual space" in t.reason
    assert math.isnan(t.pvalue) and "Inapplicable" in str(t)
    assert "inapplicable" in str(res.summary())


def test_score_test_rejects_bad_input(small):
    with pytest.raises(ValueError, match="unknown score-test method"):
        small["res"].score_test("wald")
    with pytest.raises(ValueError, match="tol must be positive"):
        small["res"].score_test(tol=0)


def test_result_prints_and_renders(small):
    t = small["res"].score_test()
    s = str(t)
    assert "Score test" in s and "P-value" in s and "exact ratio null" in s
    assert "<table>" in t._repr_html_() and "Statistic" in t._repr_html_()
    assert t.stat == t.statistic and t.pval == t.pvalue
    assert "Score test of t = 0" in str(small["res"].summary())


# ------------------------------------------------------------------- low rank

@pytest.fixture(scope="module")
def lowrank_pair():
    rng = np.random.default_rng(8)
    n, m = 60, 8
    Z = rng.normal(size=(n, 2))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    W, b = rng.normal(size=(2, m)), rng.uniform(0, 6, size=m)
    Phi = np.cos(Z @ W * 1.5 + b)
    y = X @ [1.0, 0.5] + Phi @ rng.normal(size=m) * 0.25 + rng.normal(size=n)
    K = Phi @ Phi.T
    full = _fit(y, X, K)
    # the same kernel in feature form: only m eigenvalues; n - m in rest_gram
    feats = FunctionFeatures(lambda Zs: np.cos(Zs @ W * 1.5 + b), m)
    ml = mn.MixedLMNTK(y, X, Z, scale_inputs=False, low_rank=feats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryFitWarning)
        low = ml.fit()
    return full, low


def test_low_rank_score_test_restores_zero_eigenvalues(lowrank_pair):
    full, low = lowrank_pair
    assert low.model.profile.lam.shape[0] == 8
    for method in ("exact", "davies", "satterthwaite", "liu", "plugin"):
        a, b = full.score_test(method), low.score_test(method)
        assert b.statistic == pytest.approx(a.statistic, rel=1e-9)
        assert b.pvalue == pytest.approx(a.pvalue, rel=1e-7, abs=1e-10), method
    assert low.score_test().details["zero eigenvalues restored (low rank)"] == 52


def test_low_rank_rlrt_null_matches_full_basis(lowrank_pair):
    full, low = lowrank_pair
    for res in (full, low):
        sim = NullSimulator(res.model.profile, True)
        Y, rxy, ryy = sim.observed()
        lmax, _ = sim.maximize(Y, rxy, ryy)
        assert lmax[0] == pytest.approx(res.llf, abs=1e-8)
        assert sim.zero_llf(Y, Y * Y, rxy, ryy)[0] == pytest.approx(res.estimate.llf_zero,
                                                                     abs=1e-9)
    a = simulate_lr_null(full, 6000, seed=1)
    b = simulate_lr_null(low, 6000, seed=2)
    assert stats.ks_2samp(a, b).pvalue > 1e-3
    assert abs(np.mean(a == 0) - np.mean(b == 0)) < 0.04


# ----------------------------------------------------------------------- RLRT

@pytest.mark.parametrize("reml", [True, False])
def test_simulated_null_equals_brute_force_refits(small, reml):
    """Each simulated statistic is the (RE)ML ratio of a full refit of data built from
    the same draw, with arbitrary beta and s2 (the null is pivotal)."""
    res = small["res"] if reml else small["res"].model.fit(reml=False)
    nsim, seed = 12, 123
    null = simulate_lr_null(res, nsim, seed=seed)
    draws = np.random.default_rng(seed).standard_normal((small["n"], nsim))
    basis = res.model.basis
    for b in range(nsim):
        y = small["X"] @ [4.0, -1.0] + 2.5 * basis.unrotate(draws[:, b])
        refit = _fit(y, small["X"], small["K"], reml=reml)
        stat = max(2 * (refit.estimate.llf - refit.estimate.llf_zero), 0.0)
        assert null[b] == pytest.approx(stat, abs=2e-7)
    assert np.any(null == 0) and np.any(null > 0)


def test_simulated_nested_ml_null_equals_brute_force(small):
    """LRT of OLS on X0 = [1] against a network model on X = [1, x] (ML)."""
    res = small["res"].model.fit(reml=False)
    X0 = small["X"][:, :1]
    nsim, seed = 8, 7
    null = simulate_lr_null(res, nsim, seed=seed, nested_exog=X0)
    draws = np.random.default_rng(seed).standard_normal((small["n"], nsim))
    for b in range(nsim):
        y = 3.0 + 0.5 * res.model.basis.unrotate(draws[:, b])
        big = _fit(y, small["X"], small["K"], reml=False)
        ols = sm.OLS(y, X0).fit()
        assert null[b] == pytest.approx(max(2 * (big.llf - ols.llf), 0.0), abs=2e-7)
    with pytest.raises(ValueError, match="not nested"):
        simulate_lr_null(res, 5, seed=1, nested_exog=small["Z"][:, :1])
    with pytest.raises(ValueError, match="not comparable"):
        simulate_lr_null(small["res"], 5, seed=1, nested_exog=X0)


def test_lr_test_statistic_mixture_and_seeded_simulation(small):
    res = small["res"]
    stat = 2 * (res.llf - res.estimate.llf_zero)
    mix = res.lr_test("mixture")
    assert mix.statistic == pytest.approx(stat, rel=1e-12)
    assert mix.pvalue == pytest.approx(0.5 * stats.chi2.sf(stat, 1), rel=1e-12)
    assert mix.name == "Restricted LRT" and "mixture" in mix.method
    a = res.lr_test(nsim=4000, seed=42)
    b = res.lr_test(nsim=4000, seed=42)
    assert a.pvalue == b.pvalue and "4,000" in a.method
    null = simulate_lr_null(res, 4000, seed=42)
    assert a.pvalue == pytest.approx((1 + np.sum(null >= stat - 1e-8)) / 4001, rel=1e-12)
    # the finite-sample null puts more than half of its mass at zero (Crainiceanu &
    # Ruppert 2004); here the 50:50 mixture is conservative
    share = a.details["share of simulated statistics = 0"]
    assert share == pytest.approx(np.mean(null == 0))
    assert 0.5 < share < 0.8
    assert a.pvalue < mix.pvalue
    assert res.model.fit(reml=False).lr_test("mixture").name == "Likelihood-ratio test"
    with pytest.raises(ValueError, match="unknown method"):
        res.lr_test("bootstrap")
    with pytest.raises(ValueError, match="nsim"):
        res.lr_test(nsim=0)


def test_rlrt_boundary_fit_has_pvalue_one():
    rng = np.random.default_rng(9)
    n = 30
    X = np.ones((n, 1))
    Z = rng.normal(size=(n, 1))
    for seed in range(20):  # find a null data set whose REML maximum is at t = 0
        y = np.random.default_rng(seed).normal(size=n)
        res = _fit(y, X, rbf(Z, Z))
        if res.boundary:
            break
    assert res.boundary
    assert res.lr_test("mixture").pvalue == 1.0
    assert res.lr_test(nsim=500, seed=1).pvalue == 1.0


# ---------------------------------------------------------------------- anova

def test_ml_null_equals_statsmodels_ols_llf_exactly(small):
    res = small["res"]
    ols = sm.OLS(small["y"], small["X"]).fit()
    assert res.model.profile.loglike(0.0, reml=False) == pytest.approx(ols.llf, rel=1e-13)
    assert res.null_fit().llf == pytest.approx(ols.llf, rel=1e-13)


def test_anova_network_vs_ols_same_fixed_effects_uses_rlrt(small):
    res = small["res"]
    ols = res.null_fit()
    tab = mn.anova(ols, res, names=["ols", "ntk"], nsim=3000, seed=5)
    t = tab.table
    assert list(t.columns) == ["Df", "AIC", "BIC", "logLik", "deviance", "Chisq", "Chi Df",
                               "Pr(>Chisq)"]
    assert list(t.index) == ["ols", "ntk"] and list(t["Df"]) == [3, 4]
    assert tab.criterion == "REML"
    # the OLS row's REML log-likelihood is the network model's l_R(0)
    assert t.loc["ols", "logLik"] == pytest.approx(res.estimate.llf_zero, rel=1e-12)
    assert t.loc["ntk", "logLik"] == pytest.approx(res.llf, rel=1e-12)
    assert t.loc["ntk", "AIC"] == pytest.approx(res.aic, rel=1e-12)
    assert t.loc["ntk", "BIC"] == pytest.approx(res.bic, rel=1e-12)
    assert t.loc["ols", "deviance"] == pytest.approx(-2 * res.estimate.llf_zero, rel=1e-12)
    lr = res.lr_test(nsim=3000, seed=5)
    assert t.loc["ntk", "Chisq"] == pytest.approx(lr.statistic, rel=1e-10)
    assert t.loc["ntk", "Pr(>Chisq)"] == pytest.approx(lr.pvalue, rel=1e-12)
    assert np.isnan(t.loc["ols", "Chisq"])
    assert "simulated exact null" in str(tab) and "Models:" in str(tab)
    # order of the arguments does not matter (sorted by Df); mixture on request
    tab2 = mn.anova(res, ols, null="mixture")
    assert tab2.table.iloc[1]["Pr(>Chisq)"] == pytest.approx(lr.details["mixture p-value"])
    assert "<table" in tab2._repr_html_()
    assert mn.anova is anova


def test_anova_refits_by_ml_when_fixed_effects_differ(small):
    res = small["res"]
    ols0 = sm.OLS(small["y"], small["X"][:, :1]).fit()
    with pytest.warns(MLRefitWarning, match=r"refitting model\(s\) with ML \(instead of REML\)"):
        tab = mn.anova(ols0, res, null="mixture")
    ml = res.model.fit(reml=False)
    t = tab.table
    assert tab.criterion == "ML"
    assert t.iloc[1]["logLik"] == pytest.approx(ml.llf, rel=1e-12)
    assert t.iloc[0]["logLik"] == pytest.approx(ols0.llf, rel=1e-12)
    stat = 2 * (ml.llf - ols0.llf)
    assert t.iloc[1]["Chisq"] == pytest.approx(stat, rel=1e-10)
    assert t.iloc[1]["Chi Df"] == 2  # one fixed effect and t
    p = 0.5 * stats.chi2.sf(stat, 1) + 0.5 * stats.chi2.sf(stat, 2)
    assert t.iloc[1]["Pr(>Chisq)"] == pytest.approx(p, rel=1e-12)
    assert any("refitting" in s for s in tab.notes)
    with pytest.raises(ValueError, match="not comparable"):
        mn.anova(ols0, res, refit=False)


def test_anova_nested_fixed_effects_same_kernel_is_chi2(small):
    m1 = mn.MixedLMNTK(small["y"], small["X"][:, :1], kernel=small["K"]).fit(reml=False)
    m2 = small["res"].model.fit(reml=False)
    tab = mn.anova(m2, m1)
    stat = 2 * (m2.llf - m1.llf)
    row = tab.table.iloc[1]
    assert row["Chi Df"] == 1 and row["Chisq"] == pytest.approx(stat, rel=1e-10)
    assert row["Pr(>Chisq)"] == pytest.approx(stats.chi2.sf(stat, 1), rel=1e-12)
    t = compare_lr_test(m1, m2)
    assert t.statistic == pytest.approx(stat, rel=1e-10) and t.df == 1


def test_anova_different_architectures_get_aic_only(small):
    Zd = small["Z"]
    other = _fit(small["y"], small["X"], rbf(Zd, Zd, 3.0))
    tab = mn.anova(small["res"], other, names=["rbf1", "rbf3"])
    assert tab.table["Pr(>Chisq)"].isna().all()
    assert tab.table["AIC"].notna().all()
    test = next(iter(tab.tests.values()))
    assert isinstance(test, InapplicableTest) and "not nested" in test.reason
    assert "no p-value" in str(tab)
    assert not small["res"].compare_lr_test(other).valid


def test_anova_refuses_different_rows_and_responses(small):
    res = small["res"]
    y, X, K = small["y"], small["X"], small["K"]
    fewer = _fit(y[:-1], X[:-1], K[:-1, :-1])
    with pytest.raises(ValueError, match="different rows"):
        mn.anova(res, fewer)
    with pytest.raises(ValueError, match="different responses"):
        mn.anova(res, sm.OLS(y + 1.0, X).fit())
    idx = pd.Index([f"r{i}" for i in range(len(y))])
    ols_lab = sm.OLS(pd.Series(y, index=idx), pd.DataFrame(X, index=idx)).fit()
    with pytest.raises(ValueError, match="different rows"):
        mn.anova(res, ols_lab)
    with pytest.raises(TypeError, match="statsmodels OLS"):
        mn.anova(res, "model")
    with pytest.raises(ValueError, match="at least one"):
        mn.anova()
    with pytest.raises(ValueError, match="null must be"):
        mn.anova(res, null="chi2")
    with pytest.raises(ValueError, match="names"):
        mn.anova(res, res.null_fit(), names=["a", "a"])


def test_anova_with_offset_compares_with_ols_of_y_minus_offset(small):
    rng = np.random.default_rng(0)
    off = 0.3 * rng.normal(size=small["n"])
    res = mn.MixedLMNTK(small["y"], small["X"], kernel=small["K"], offset=off).fit()
    ols = res.null_fit()
    assert np.allclose(ols.model.endog, small["y"] - off)
    tab = mn.anova(ols, res, null="mixture")
    assert tab.table.iloc[1]["Chisq"] == pytest.approx(res.lr_test("mixture").statistic)
    with pytest.raises(ValueError, match="different responses"):
        mn.anova(sm.OLS(small["y"], small["X"]).fit(), res)


def test_single_model_table_and_ols_only(small):
    tab = mn.anova(small["res"])
    assert len(tab.table) == 1 and tab.tests == {}
    o1 = sm.OLS(small["y"], small["X"][:, :1]).fit()
    o2 = sm.OLS(small["y"], small["X"]).fit()
    tab = mn.anova(o2, o1)
    stat = 2 * (o2.llf - o1.llf)
    assert tab.table.iloc[1]["Pr(>Chisq)"] == pytest.approx(stats.chi2.sf(stat, 1), rel=1e-12)


def test_null_fit_without_fixed_effects_is_refused():
    rng = np.random.default_rng(1)
    n = 15
    Z = rng.normal(size=(n, 1))
    res = _fit(rng.normal(size=n), None, rbf(Z, Z))
    with pytest.raises(ValueError, match="no fixed effects"):
        res.null_fit()
    assert res.score_test().valid  # p = 0 works: weights are the kernel eigenvalues
    assert 0 <= res.lr_test(nsim=200, seed=1).pvalue <= 1


def test_module_functions_equal_result_methods(small):
    res = small["res"]
    assert score_test(res).pvalue == res.score_test().pvalue
    assert lr_test(res, "mixture").pvalue == res.lr_test("mixture").pvalue
    assert mn.inference.lr_test is lr_test


@pytest.mark.parametrize("module, examples", [("mixednn.inference", 10),
                                              ("mixednn.comparison", 5)])
def test_docstring_examples_run(module, examples):
    import doctest
    import importlib

    out = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert out.attempted >= examples and out.failed == 0


def test_rule_chosen_time_and_free_modes(small):
    """Fits whose t is not the likelihood maximum: the ratio uses the maximum; free-mode
    fits are tested on their remaining spectrum and kept out of anova."""
    m = mn.MixedLMNTK(small["y"], small["X"], small["Z"], network=mn.MLP(depth=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = m.fit()
        gcv = m.fit(t_method="gcv")
        free = m.fit(free_modes=1)
    a, b = gcv.lr_test("mixture"), plain.lr_test("mixture")
    assert a.statistic == pytest.approx(b.statistic, rel=1e-8)
    assert "t_method='gcv'" in a.details["note"]
    tab = mn.anova(gcv.null_fit(), gcv, null="mixture")
    assert tab.table.iloc[1]["logLik"] == pytest.approx(plain.llf, rel=1e-10)
    t = free.score_test()
    assert t.valid and "free leading mode" in t.details["free modes"]
    assert t.details["chi-square terms (n - p)"] == small["n"] - 2 - 1
    with pytest.raises(ValueError, match="free leading modes"):
        mn.anova(free.null_fit(), free)
