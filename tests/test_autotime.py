"""The default rule for t (mixednn.autotime): REML unless a calibrated check rejects it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixednn as mn
from mixednn.autotime import AutoCheck, excess_statistic, null_draws
from mixednn.profile import SpectralProfile
from mixednn.smoother import SmootherData
from mixednn.stopping import GCV


def _sharp_data(n=150, seed=11):
    """A step-function signal with little noise: REML stops far too early here."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 2))
    y = 2 * np.where(Z[:, 0] > 0, 1.0, -1.0) + np.where(Z[:, 1] > 0.5, 1.0, 0.0) \
        + 0.1 * rng.normal(size=n)
    return y, Z


def _brute_excess(model, Y, grid, reml=True):
    """E for each column of Y from the package's own REML and GCV curves, one at a time."""
    prof = model.profile
    comp = "identity" if prof.rest_gram is not None else "none"
    out = []
    for b in range(Y.shape[1]):
        pb = SpectralProfile(prof.lam, Y[:, b], prof.X_rot, prof.trace, model.nobs,
                             rest_gram=prof.rest_gram)
        ll = pb.loglike_grid(grid, reml)
        g = GCV(SmootherData(pb, model.nobs, comp)).values(grid)
        i, j = int(np.argmax(ll)), int(np.argmin(g))
        out.append(g[i] / g[j] - 1 if j > i else 0.0)
    return np.array(out)


@pytest.mark.parametrize("with_fe", [True, False])
@pytest.mark.parametrize("reml", [True, False])
def test_vectorised_statistic_equals_one_response_at_a_time(with_fe, reml):
    rng = np.random.default_rng(3)
    n = 90
    Z = rng.normal(size=(n, 2))
    X = np.column_stack([np.ones(n), rng.normal(size=n)]) if with_fe else None
    y = np.sin(2 * Z[:, 0]) + 0.2 * rng.normal(size=n)
    m = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=2))
    prof = m.profile
    lam = np.sort(prof.lam)
    # a grid that stays where X~^T W X~ is well conditioned (the check's validity mask)
    grid = np.concatenate([[0.0], np.geomspace(1e-4 / lam[-1], 5.0 / lam[n // 2], 40)])
    Y = np.column_stack([prof.y_rot, np.exp(0.5 * 0.3 * prof.lam)[:, None]
                         * rng.normal(size=(n, 5))])
    fast = excess_statistic(prof.lam, prof.X_rot, Y, prof.trace, n, grid, reml)
    slow = _brute_excess(m, Y, grid, reml)
    np.testing.assert_allclose(fast, slow, rtol=1e-8, atol=1e-12)
    if with_fe:  # the bounded-memory branch (one X~^T W X~ per grid point) agrees
        import mixednn.autotime as autotime

        old = autotime.GRAM_MAX
        try:
            autotime.GRAM_MAX = 0
            low_mem = excess_statistic(prof.lam, prof.X_rot, Y, prof.trace, n, grid, reml)
        finally:
            autotime.GRAM_MAX = old
        np.testing.assert_allclose(low_mem, fast, rtol=1e-10, atol=1e-13)
    assert fast[0] > 0  # a sharp-ish signal: GCV prefers a longer time


def test_low_rank_statistic_includes_the_directions_outside_the_basis():
    rng = np.random.default_rng(5)
    n = 200
    Z = rng.normal(size=(n, 2))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = np.sin(2 * Z[:, 0]) + Z[:, 1] ** 2 + 0.2 * rng.normal(size=n)
    m = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=2), low_rank=40)
    prof = m.profile
    assert prof.rest_gram is not None and prof.lam.shape[0] < n
    p = prof.p
    rg = prof.rest_gram
    lam = np.sort(prof.lam)
    grid = np.concatenate([[0.0], np.geomspace(1e-4 / lam[-1], 5.0 / lam[len(lam) // 2], 30)])
    fast = excess_statistic(prof.lam, prof.X_rot, prof.y_rot[:, None], prof.trace, n, grid, True,
                            (rg[:p, :p], rg[:p, p:p + 1], np.array([rg[p, p]])))
    np.testing.assert_allclose(fast, _brute_excess(m, prof.y_rot[:, None], grid), rtol=1e-8)


def test_simulated_outside_directions_have_the_noise_moments():
    rng = np.random.default_rng(0)
    n = 300
    Z = rng.normal(size=(n, 2))
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    m = mn.MixedLMNTK(rng.normal(size=n), X, Z, network=mn.MLP(depth=1), low_rank=30)
    prof = m.profile
    n_out = n - prof.lam.shape[0]
    Y, (XX, XY, YY) = null_draws(prof, 0.1, 20_000, np.random.default_rng(1), n_out)
    assert Y.shape == (prof.lam.shape[0], 20_000)
    # X_c^T e ~ N(0, X_c^T X_c) and e^T e ~ chi2(n - m) for e ~ N(0, I) outside the basis
    np.testing.assert_allclose(np.cov(XY), XX, rtol=0.05, atol=0.05 * np.abs(XX).max())
    assert YY.mean() == pytest.approx(n_out, rel=0.01)
    assert YY.var() == pytest.approx(2 * n_out, rel=0.08)
    assert np.all(YY >= np.sum(np.linalg.solve(np.linalg.cholesky(XX), XY) ** 2, axis=0) - 1e-8)


def test_checked_rule_keeps_reml_when_gcv_agrees():
    rng = np.random.default_rng(2)
    n = 120
    Z = rng.normal(size=(n, 2))
    y = np.sin(Z[:, 0]) + 0.8 * rng.normal(size=n)  # weak signal, noisy: no reason to move
    m = mn.MixedLMNTK(y, np.ones((n, 1)), Z, network=mn.MLP(depth=1))
    res, reml = m.fit(t_method="auto"), m.fit(t_method="reml")
    assert isinstance(res.auto_check, AutoCheck) and reml.auto_check is None
    assert res.t_method == "reml" and not res.auto_check.switched
    assert res.t == reml.t and res.llf == reml.llf
    np.testing.assert_array_equal(res.params, reml.params)
    assert res.t_conf_int() == reml.t_conf_int()
    assert m.fit().t == res.t
    text = str(res.summary())
    assert "Training time t chosen by: REML" in text and "Checked rule" not in text


def test_default_fit_is_the_likelihood_fit_with_the_check_as_a_diagnostic():
    """One fit, one likelihood: fit() is REML whatever the check says; the check's verdict
    is an attribute and a summary line that names the remedy."""
    y, Z = _sharp_data()
    m = mn.MixedLMNTK(y, np.ones((len(y), 1)), Z, network=mn.MLP(depth=2))
    res, reml = m.fit(), m.fit(t_method="reml")
    assert res.t_method == "reml" and res.t == reml.t and res.llf == reml.llf
    assert res.aic == reml.aic and np.isfinite(res.t_se)
    assert res.t_conf_int() == reml.t_conf_int()
    chk = res.auto_check
    assert chk.switched and chk.rule == "gcv" and chk.pvalue <= chk.alpha
    assert res.time_choice.check_objects and not res.time_choice.check_acted
    text = " ".join(str(res.summary()).split())
    assert "Training time t chosen by: REML" in text and "Method: REML" in text
    assert "Prediction check:" in text and "fit(t_method='auto')" in text
    assert f"GCV's t = {chk.t_gcv:.4g}" in text
    # the likelihood tests use this very maximum
    assert res.lr_test(method="mixture").details["llf(t_hat)"] == res.llf


def test_checked_rule_switches_to_gcv_when_reml_stops_far_too_early():
    y, Z = _sharp_data()
    m = mn.MixedLMNTK(y, np.ones((len(y), 1)), Z, network=mn.MLP(depth=2))
    res = m.fit(t_method="auto")
    chk = res.auto_check
    assert chk.switched and res.t_method == "gcv"
    gcv, reml = m.fit(t_method="gcv"), m.fit(t_method="reml")
    assert res.t == gcv.t and res.llf == gcv.llf and chk.t_gcv == gcv.t
    assert res.t_reml == reml.t == chk.t_likelihood and chk.llf_likelihood == reml.llf
    assert chk.excess > 0.05 and chk.pvalue <= chk.alpha and res.t > 3 * reml.t
    assert np.isnan(res.t_se) and all(np.isnan(res.t_conf_int()))
    text = " ".join(str(res.summary()).split())
    assert "Training time t chosen by: GCV (REML would choose" in text
    assert "Checked rule (t_method='auto')" in text and f"{reml.llf:.4f}" in text
    # the header and the AIC say that this is not a likelihood maximum
    assert "Method: REML, t by GCV" in text and "AIC (REML at that t)" in text
    # reproducible: the simulation is seeded
    assert m.fit(t_method="auto").auto_check.pvalue == chk.pvalue
    # likelihood comparisons use the maximum, not the likelihood at GCV's t
    assert res.lr_test(method="mixture").details["llf(t_hat)"] == pytest.approx(reml.llf)
    tab = mn.anova(res.null_fit(), res, null="mixture")
    assert tab["Chisq"].iloc[-1] == pytest.approx(
        2 * (reml.llf - m.profile.loglike(0.0, True)), rel=1e-8)


def test_plot_profile_of_a_gcv_fit_shows_the_likelihood_and_marks_the_chosen_t():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    y, Z = _sharp_data()
    res = mn.MixedLMNTK(y, np.ones((len(y), 1)), Z, network=mn.MLP(depth=2)).fit(
        t_method="auto")
    assert res.t_method == "gcv"
    fig = res.plot_profile()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("chosen by GCV" in s for s in labels) and any("profile CI" in s for s in labels)
    curve = fig.axes[0].get_lines()[0]
    assert np.max(curve.get_ydata()) == pytest.approx(res.auto_check.llf_likelihood, abs=1e-6)
    fig2 = res.plot_spectrum()
    plt.close(fig)
    plt.close(fig2)


def test_options_are_checked():
    y, Z = _sharp_data(n=60)
    m = mn.MixedLMNTK(y, np.ones((60, 1)), Z, network=mn.MLP(depth=1))
    with pytest.raises(TypeError, match="unknown option.*prediction check.*valid: alpha"):
        m.fit(t_options={"folds": 3})
    with pytest.raises(TypeError, match="unknown option.*t_method='auto'.*valid: alpha"):
        m.fit(t_method="auto", t_options={"folds": 3})
    with pytest.raises(ValueError, match="alpha of the auto rule"):
        m.fit(t_options={"alpha": 1.5})
    with pytest.raises(ValueError, match="nsim of the auto rule"):
        m.fit(t_options={"nsim": 5})
    with pytest.raises(ValueError, match="t_method must be one of 'auto', 'reml'"):
        m.fit(t_method="bogus")
    # a threshold above the observed excess keeps REML
    y, Z = _sharp_data()
    m = mn.MixedLMNTK(y, np.ones((len(y), 1)), Z, network=mn.MLP(depth=2))
    res = m.fit(t_method="auto", t_options={"min_excess": 10.0})
    assert res.t_method == "reml" and "at most 1000%" in res.auto_check.reason


def test_ml_fits_check_the_ml_time():
    y, Z = _sharp_data()
    m = mn.MixedLMNTK(y, np.ones((len(y), 1)), Z, network=mn.MLP(depth=2))
    res = m.fit(reml=False, t_method="auto")
    assert res.method == "ML" and res.auto_check.t_likelihood == m.fit(reml=False, t_method="ml").t
    assert res.t_method in ("ml", "gcv")
    assert m.fit(reml=False).t_method == "ml"


def test_under_the_model_the_likelihood_time_stands():
    """Size of the check: y drawn from N(1, s2 exp(tK)); GCV should replace REML's t in
    about alpha = 1% of draws (5% threshold on the excess makes it rarer still)."""
    rng = np.random.default_rng(7)
    n, reps = 60, 120
    Z = rng.normal(size=(n, 3))
    K = mn.MLP(depth=2).ntk(Z)
    lam, U = np.linalg.eigh(K)
    lam = np.maximum(lam, 0)
    switched = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in range(reps):
            y = 1.0 + U @ (np.exp(0.5 * (3.0 / lam.max()) * lam) * rng.normal(size=n))
            res = mn.MixedLMNTK(y, np.ones((n, 1)), kernel=K).fit(t_options={"seed": r})
            switched += res.auto_check.switched
    # measured: 0-2% at n = 30-300 over 300 draws each (docs/stopping.md)
    assert switched / reps <= 0.05


def test_when_gcv_is_unusable_the_fallback_is_reml_with_free_modes(monkeypatch):
    """REML rejected but GCV's own time nearly interpolates (as on a 2,000-row diamonds
    subsample in the full benchmark): REML with free leading modes, k by GCV."""
    from mixednn import autotime as autotime_module

    y, Z = _sharp_data()
    m = mn.MixedLMNTK(y, np.ones((len(y), 1)), Z, network=mn.MLP(depth=2))
    monkeypatch.setattr(autotime_module, "leaves_residual_df", lambda data, est: False)
    res = m.fit(t_method="auto")
    assert res.free_modes > 0 and res.auto_check.rule == "free_modes"
    assert res.auto_check.switched and "nearly interpolates" in res.auto_check.reason
    ref = m.fit(free_modes="auto")
    assert res.free_modes == ref.free_modes and res.t == ref.t
    text = " ".join(str(res.summary()).split())
    assert "Checked rule (t_method='auto')" in text and "free leading modes" in text
    # likelihood comparisons use the plain model's REML maximum
    reml = m.fit(t_method="reml")
    tab = mn.anova(res.null_fit(), res, null="mixture")
    assert tab["Chisq"].iloc[-1] == pytest.approx(
        2 * (reml.llf - m.profile.loglike(0.0, True)), rel=1e-8)
    # ML has no free-modes fit: the ML time is kept, and the reason says why
    ml = m.fit(reml=False, t_method="auto")
    assert ml.auto_check.rule == "ml" and "free modes need a full REML" in ml.auto_check.reason


def test_random_intercept_data_keep_the_reml_fit():
    """K = Z Z^T (group indicators): the model is lme4's random intercept, and data from it
    keep the REML fit, so the default stays comparable with lme4 / statsmodels MixedLM."""
    rng = np.random.default_rng(3)
    G, per = 20, 10
    n = G * per
    g = np.repeat(np.arange(G), per)
    Zg = (g[:, None] == np.arange(G)[None, :]).astype(float)
    K = Zg @ Zg.T
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    switched = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in range(40):
            y = X @ [1.0, 0.5] + np.sqrt(0.5) * rng.normal(size=G)[g] + rng.normal(size=n)
            switched += mn.MixedLMNTK(y, X, kernel=K).fit(t_options={"seed": r}).auto_check.switched
    assert switched <= 2  # measured: 0 of 800 over four designs (docs/stopping.md)
