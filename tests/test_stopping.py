"""Alternative rules for t (GCV, Cp, LOO, K-fold) against dense brute-force versions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg

import mixednn as mn
from mixednn.profile import SpectralProfile
from mixednn.spectral import LowRankBasis
from mixednn.smoother import SmootherData, hat_matrix
from mixednn.stopping import GCV, Cp, KFold, LeaveOneOut, choose_time, compare_rules, diagnose

from .conftest import RandomFeatureKernel, rbf


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(7)
    n = 40
    Z = rng.normal(size=(n, 2))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [1.0, -0.5] + np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=n)
    K = rbf(Z, Z, 1.0) / 4  # lam_max ~ 4.4: exp(tK) stays invertible for the dense refits
    model = mn.MixedLMNTK(y, X, kernel=K)
    return {"y": y, "X": X, "K": K, "n": n, "model": model}


def dense_hat(y, X, K, t):
    """H_t from scipy.linalg.expm and explicit solves."""
    n = y.shape[0]
    E = scipy.linalg.expm(-t * K)
    if X.shape[1]:
        A = X.T @ E @ X
        M = E - E @ X @ np.linalg.solve(A, X.T @ E)
    else:
        M = E
    return np.eye(n) - M


def refit_predict(y, X, V, train, test):
    """Explicit refit on the training rows at fixed t: GLS beta, then the BLUP at the test rows."""
    Vi = np.linalg.inv(V[np.ix_(train, train)])
    if X.shape[1]:
        beta = np.linalg.solve(X[train].T @ Vi @ X[train], X[train].T @ Vi @ y[train])
    else:
        beta = np.empty(0)
    r = y[train] - X[train] @ beta
    return X[test] @ beta + V[np.ix_(test, train)] @ Vi @ r


def test_hat_matrix_equals_dense_gls_plus_network_smoother(small):
    m, y, X, K = small["model"], small["y"], small["X"], small["K"]
    t = 0.8
    H = dense_hat(y, X, K, t)
    # the fitted values: GLS fixed effects plus the network smoother on the residual target
    E = scipy.linalg.expm(-t * K)
    beta = np.linalg.solve(X.T @ E @ X, X.T @ E @ y)
    fitted = X @ beta + (np.eye(len(y)) - E) @ (y - X @ beta)
    assert np.allclose(H @ y, fitted, atol=1e-12)
    assert np.allclose(hat_matrix(m, t), H, atol=1e-12)
    # at the REML time the hat matrix reproduces the results' fitted values
    res = m.fit()
    assert np.allclose(hat_matrix(m, res.t) @ y, res.fittedvalues.to_numpy(), atol=1e-10)
    # without fixed effects H_t is the network smoother I - exp(-tK)
    m0 = mn.MixedLMNTK(y, None, kernel=K)
    assert np.allclose(hat_matrix(m0, t), np.eye(len(y)) - E, atol=1e-12)


def test_gcv_and_cp_equal_dense_formulas(small):
    m, y, X, K, n = small["model"], small["y"], small["X"], small["K"], small["n"]
    data = SmootherData.from_model(m)
    for t in (0.0, 0.05, 0.8, 7.0):
        H = dense_hat(y, X, K, t)
        e = y - H @ y
        trM = n - np.trace(H)
        assert GCV(data).value(t) == pytest.approx(n * e @ e / trM ** 2, rel=1e-10)
        assert data.trace_hat(t) == pytest.approx(np.trace(H), rel=1e-10)
        cp = Cp(data, 0.09).value(t)
        assert cp == pytest.approx(e @ e / n + 2 * 0.09 * np.trace(H) / n - 0.09, rel=1e-10)


def test_leave_one_out_equals_explicit_refits(small):
    m, y, X, K, n = small["model"], small["y"], small["X"], small["K"], small["n"]
    data = SmootherData.from_model(m)
    for t in (0.3, 2.5):
        V = scipy.linalg.expm(t * K)
        brute = np.array([y[i] - refit_predict(y, X, V, np.delete(np.arange(n), i), [i])[0]
                          for i in range(n)])
        loo = LeaveOneOut(data)
        assert np.allclose(loo.residuals(t), brute, rtol=1e-8, atol=1e-10)
        assert loo.value(t) == pytest.approx(np.mean(brute ** 2), rel=1e-8)


def test_leave_one_out_without_fixed_effects(small):
    y, K, n = small["y"], small["K"], small["n"]
    m0 = mn.MixedLMNTK(y, None, kernel=K)
    t = 1.1
    V = scipy.linalg.expm(t * K)
    X0 = np.empty((n, 0))
    brute = np.array([y[i] - refit_predict(y, X0, V, np.delete(np.arange(n), i), [i])[0]
                      for i in range(n)])
    assert np.allclose(LeaveOneOut(SmootherData.from_model(m0)).residuals(t), brute, rtol=1e-8)


def test_kfold_equals_explicit_refits(small):
    m, y, X, K, n = small["model"], small["y"], small["X"], small["K"], small["n"]
    kf = KFold(SmootherData.from_model(m), folds=4, seed=3)
    assert sorted(np.concatenate(kf.folds).tolist()) == list(range(n))
    t = 0.9
    V = scipy.linalg.expm(t * K)
    brute = np.empty(n)
    for F in kf.folds:
        train = np.setdiff1d(np.arange(n), F)
        brute[F] = y[F] - refit_predict(y, X, V, train, F)
    assert np.allclose(kf.residuals(t), brute, rtol=1e-8, atol=1e-10)
    # explicit folds give the same answer
    kf2 = KFold(SmootherData.from_model(m), folds=kf.folds)
    assert kf2.value(t) == pytest.approx(kf.value(t), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kfold_search_equals_the_full_grid_search(seed):
    """The K-fold search (a window located by leave-one-out, full density inside it) finds
    the minimum of the plain search over the whole range."""
    rng = np.random.default_rng(seed)
    n = 60
    Z = rng.normal(size=(n, 2))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [1.0, -0.5] + np.sin(2 * Z[:, 0]) * (seed + 1) / 2 + 0.3 * rng.normal(size=n)
    m = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=2))
    data = SmootherData.from_model(m)

    class FullKFold(KFold):
        coarse_to_fine = False

    quick = m.profile.minimize_criterion(KFold(data, folds=5, seed=1))
    full = m.profile.minimize_criterion(FullKFold(data, folds=5, seed=1))
    assert quick.t == pytest.approx(full.t, rel=1e-5)
    assert quick.value == pytest.approx(full.value, rel=1e-10)


def test_kfold_where_mode_weights_underflow(small):
    """At a t where exp(-t lam) underflows for the leading modes (their columns are skipped
    in the fold systems), the residuals are M_FF^{-1} (M y)_F of the definition."""
    m, y, X, K = small["model"], small["model"].endog, small["X"], small["K"]
    lam, U = np.linalg.eigh(K)
    t = 300.0
    w = np.exp(-t * (lam - lam.min()))  # M_t up to a constant factor (residuals invariant)
    assert np.sum(w < 1e-250) >= 1 and np.sum(w > 1e-3) >= 10
    E = (U * w) @ U.T
    M = E - E @ X @ np.linalg.solve(X.T @ E @ X, X.T @ E)
    kf = KFold(SmootherData.from_model(m), folds=4, seed=3)
    expect = np.empty(y.size)
    for F in kf.folds:
        expect[F] = np.linalg.solve(M[np.ix_(F, F)], (M @ y)[F])
    assert np.allclose(kf.residuals(t), expect, rtol=1e-7, atol=1e-9)


def test_low_rank_basis_criteria_equal_dense(small):
    """K = Phi Phi^T with m < n: weight 1 outside the features (rest_gram path)."""
    rng = np.random.default_rng(2)
    n, m_feat = 30, 8
    Z = rng.normal(size=(n, 2))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [0.5, 1.0] + np.cos(Z[:, 0]) + 0.2 * rng.normal(size=n)
    Phi = RandomFeatureKernel(2, m_feat, seed=1).features(Z) / np.sqrt(m_feat)
    K = Phi @ Phi.T
    b = LowRankBasis.from_features(Phi)
    Y = np.column_stack([y, X])
    Yr = b.rotate(Y)
    rest = b.rest_gram(Y)[np.ix_([1, 2, 0], [1, 2, 0])]
    prof = SpectralProfile(b.eigenvalues, Yr[:, 0], Yr[:, 1:], b.trace, n, rest_gram=rest)
    data = SmootherData(prof, n, "identity", b.eigenvectors, y, X)
    t = 0.8
    H = dense_hat(y, X, K, t)
    e = y - H @ y
    assert GCV(data).value(t) == pytest.approx(n * e @ e / (n - np.trace(H)) ** 2, rel=1e-9)
    V = scipy.linalg.expm(t * K)
    brute = np.array([y[i] - refit_predict(y, X, V, np.delete(np.arange(n), i), [i])[0]
                      for i in range(n)])
    assert np.allclose(LeaveOneOut(data).residuals(t), brute, rtol=1e-7, atol=1e-9)
    kf = KFold(data, folds=3, seed=0)
    bk = np.empty(n)
    for F in kf.folds:
        bk[F] = y[F] - refit_predict(y, X, V, np.setdiff1d(np.arange(n), F), F)
    assert np.allclose(kf.residuals(t), bk, rtol=1e-7, atol=1e-9)
    # so late that every feature direction's weight underflows: M_t is the complement's
    t_late = 1e4 / b.eigenvalues.min()
    assert np.all(np.exp(-t_late * b.eigenvalues) == 0)
    E = np.eye(n) - b.eigenvectors @ b.eigenvectors.T
    M = E - E @ X @ np.linalg.solve(X.T @ E @ X, X.T @ E)
    late = np.empty(n)
    for F in kf.folds:
        late[F] = np.linalg.solve(M[np.ix_(F, F)], (M @ y)[F])
    assert np.allclose(kf.residuals(t_late), late, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("rule", ["gcv", "cp", "loo", "kfold"])
def test_each_rule_minimises_its_dense_criterion(small, rule):
    m, y, X, K, n = small["model"], small["y"], small["X"], small["K"], small["n"]
    data = SmootherData.from_model(m)
    est = choose_time(data, rule, folds=5, seed=1) if rule == "kfold" else choose_time(data, rule)
    assert est.criterion == rule and not est.boundary and est.t > 0
    crit = {"gcv": GCV(data), "loo": LeaveOneOut(data), "kfold": KFold(data, folds=5, seed=1)}
    if rule == "cp":
        g = choose_time(data, "gcv").t
        pr = data.parts(g)
        crit["cp"] = Cp(data, pr["e2"] / pr["trM"])
    c = crit[rule]
    grid = np.exp(np.linspace(np.log(est.t) - 2, np.log(est.t) + 2, 41))
    assert est.value <= min(c.value(t) for t in grid) + 1e-12
    assert est.value == pytest.approx(c.value(est.t))
    # and against the dense criterion at the chosen t
    H = dense_hat(y, X, K, est.t)
    if rule == "gcv":
        e = y - H @ y
        assert est.value == pytest.approx(n * e @ e / (n - np.trace(H)) ** 2, rel=1e-9)


def test_fit_with_rule_records_rule_and_reml_time(small):
    m = small["model"]
    plain = m.fit()
    assert plain.t_method == "reml" and plain.t_reml == plain.t
    same = m.fit(t_method="reml")
    assert same.t == plain.t and same.llf == plain.llf
    res = m.fit(t_method="gcv")
    assert res.t_method == "gcv"
    assert res.t_reml == pytest.approx(plain.t, rel=1e-12)
    assert res.t != pytest.approx(plain.t, rel=1e-3)
    # beta and s2 are the REML estimates at the chosen t
    pt = m.profile.point(res.t, True)
    assert np.allclose(res.params.to_numpy(), pt.beta) and res.scale == pytest.approx(pt.scale)
    assert np.isnan(res.t_se) and all(np.isnan(res.t_conf_int()))
    text = str(res.summary())
    assert "t chosen by: GCV" in text and "REML would choose" in text
    assert "t by REML (compare)" in text
    ml = m.fit(reml=False)
    assert ml.t_method == "ml" and ml.t == pytest.approx(m.profile.maximize(False).t)
    ml_t = m.fit(reml=True, t_method="ml")
    assert ml_t.t == pytest.approx(ml.t) and ml_t.method == "REML" and np.isfinite(ml_t.t_se)


def test_compare_rules_table(small):
    tab = compare_rules(small["model"], rules=("reml", "gcv", "loo"))
    assert list(tab.index) == ["reml", "gcv", "loo"]
    assert tab.loc["reml", "t_over_reml"] == pytest.approx(1.0)
    assert np.all(tab["df"] > small["X"].shape[1])


def test_bad_rule_inputs_raise_clear_errors(small):
    m = small["model"]
    with pytest.raises(ValueError, match="t_method must be one of"):
        m.fit(t_method="aic")
    with pytest.raises(TypeError, match="unknown option"):
        m.fit(t_method="gcv", t_options={"fold": 3})
    data = SmootherData.from_model(m)
    with pytest.raises(ValueError, match="positive noise variance"):
        Cp(data, -1.0)
    with pytest.raises(ValueError, match="folds must be between"):
        KFold(data, folds=1)
    with pytest.raises(ValueError, match="disjoint"):
        KFold(data, folds=[np.arange(10), np.arange(5, 40)])
    with pytest.raises(ValueError, match="sigma2 must be"):
        m.fit(t_method="cp", t_options={"sigma2": "mle"})
    # Cp with a known noise variance
    res = m.fit(t_method="cp", t_options={"sigma2": 0.09})
    assert res.t > 0


def test_diagnostic_quiet_when_the_model_holds_and_flags_disagreement():
    rng = np.random.default_rng(11)
    n = 150
    Z = rng.normal(size=(n, 2))
    K = mn.MLP(depth=2).ntk(Z)
    lam, U = np.linalg.eigh(K)
    t_true = 2.0
    # draw y from the model itself: Var(y) = s2 exp(tK)
    y = 1.0 + U @ (np.sqrt(0.25 * np.exp(t_true * np.maximum(lam, 0))) * rng.normal(size=n))
    m = mn.MixedLMNTK(y, np.ones((n, 1)), kernel=K)
    diag = diagnose(m)
    assert not diag.flagged and diag.message is None
    assert diag.ratio < 3
    # the same inputs with a step function plus noise: REML and GCV part ways
    y2 = np.where(Z[:, 0] > 0, 1.0, -1.0) * 2 + np.where(Z[:, 1] > 0.5, 1.0, 0.0) \
        + 0.1 * rng.normal(size=n)
    d2 = diagnose(mn.MixedLMNTK(y2, np.ones((n, 1)), kernel=K))
    assert d2.flagged and "Stopping diagnostic" in d2.message
    assert diag.gcv_excess < 0.05 and (d2.gcv_excess > 0.05 or d2.decorrelation_fails)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m2 = mn.MixedLMNTK(y2, np.ones((n, 1)), kernel=K)
        text = " ".join(str(m2.fit(t_method="reml").summary()).split())
        auto = m2.fit(t_method="auto")
        default = m2.fit()
    assert "Stopping diagnostic" in text
    # the checked rule acts on the same evidence: GCV's t, and one line saying why
    assert auto.auto_check.switched and auto.t_method == "gcv"
    auto_text = " ".join(str(auto.summary()).split())
    assert "Checked rule (t_method='auto')" in auto_text and "Stopping diagnostic" not in auto_text
    # the default fit keeps REML and reports the check's objection as a diagnostic
    default_text = " ".join(str(default.summary()).split())
    assert default.t_method == "reml" and "Prediction check:" in default_text


def test_prediction_error_rule_warns_near_interpolation():
    """Noise-free data: GCV runs to interpolation, and the fit says so."""
    rng = np.random.default_rng(0)
    n = 40
    Z = rng.normal(size=(n, 2))
    y = np.sin(2 * Z[:, 0]) * np.cos(Z[:, 1])
    m = mn.MixedLMNTK(y, np.ones((n, 1)), kernel=rbf(Z, Z, 0.5))
    with pytest.warns(mn.InterpolationWarning, match="nearly interpolating"):
        res = m.fit(t_method="gcv")
    assert SmootherData.from_model(m).parts(res.t)["trM"] < 2


def test_gcv_grid_rounding_near_interpolation_does_not_win_the_search():
    """Regression (issue 15 benchmark): where the fit nearly interpolates, the fast grid
    formulas gave e2 = 0 with tr M of rounding size, so the grid GCV was exactly 0 there
    and the search returned t = 0 (predictions from the fixed effects alone)."""
    import warnings
    from mixednn.smoother import SmootherData
    from mixednn.stopping import GCV
    d = mn.datasets.load("diamonds")
    d = d.assign(y=np.log(d["price"].astype(float)))
    idx = np.random.default_rng(1).permutation(len(d))[:500]
    m = mn.MixedLMNTK.from_formula("y ~ C(cut) + C(color) + C(clarity)", data=d.iloc[idx],
                                   ntk=["carat", "depth", "table"], network=mn.MLP(depth=3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = m.fit(t_method="gcv")
    gcv = GCV(SmootherData.from_model(m))
    assert res.t > 1.0
    assert gcv.value(res.t) < 0.05 * gcv.value(0.0)
