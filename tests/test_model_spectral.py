"""The spectral fit equals the dense brute-force formulas of model.md sections 1-2 and 4."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from scipy.integrate import solve_ivp

import mixednn as mn
from mixednn.profile import SpectralProfile
from mixednn.spectral import decompose

from .conftest import dense_fit, RandomFeatureKernel, rbf, rel_diff


@pytest.mark.parametrize("decomposition", ["eigh", "tridiagonal"])
@pytest.mark.parametrize("with_fe", [True, False])
@pytest.mark.parametrize("reml", [True, False])
def test_profile_equals_dense_bruteforce(sim_small, decomposition, with_fe, reml):
    y, Z = sim_small["y"], sim_small["Z"]
    X = sim_small["X"] if with_fe else None
    model = mn.MixedLMNTK(y, X, Z, kernel=rbf, decomposition=decomposition)
    K = model.kernel_matrix()
    Xd = X if with_fe else np.empty((len(y), 0))
    for t in [0.0, 0.05, 0.3, 1.0]:
        ref = dense_fit(y, Xd, K, t, reml=reml)
        pt = model.profile.point(t, reml)
        assert abs(pt.llf - ref["llf"]) <= 1e-8 * abs(ref["llf"])
        assert rel_diff(pt.scale, ref["scale"]) <= 1e-8
        if with_fe:
            assert rel_diff(pt.beta, ref["beta"]) <= 1e-8
    res = model.fit(reml=reml)
    ref = dense_fit(y, Xd, K, res.t, reml=reml)
    assert rel_diff(res.random_effects.to_numpy(), ref["blup"]) <= 1e-8
    assert abs(res.llf - ref["llf"]) <= 1e-8 * abs(ref["llf"])
    assert rel_diff(res.scale, ref["scale"]) <= 1e-8


def test_grid_and_point_evaluations_agree(sim_small):
    model = mn.MixedLMNTK(sim_small["y"], sim_small["X"], sim_small["Z"], kernel=rbf)
    ts = np.logspace(-3, 1, 9)
    grid = model.profile.loglike_grid(ts)
    exact = np.array([model.loglike(t) for t in ts])
    np.testing.assert_allclose(grid, exact, rtol=1e-9)


def test_fit_is_a_maximum(sim_small):
    model = mn.MixedLMNTK(sim_small["y"], sim_small["X"], sim_small["Z"], kernel=rbf)
    res = model.fit(t_method="reml")
    assert res.t > 0 and res.converged
    for f in [0.9, 0.99, 1.01, 1.1]:
        assert model.loglike(res.t * f) <= res.llf + 1e-10
    assert model.loglike(0.0) < res.llf


def test_blup_equals_gradient_flow(sim_small):
    """(1): f_t - f0 = (I - exp(-tK)) r, checked by integrating df/dt = -K (f - r)."""
    y, X, Z = sim_small["y"], sim_small["X"], sim_small["Z"]
    model = mn.MixedLMNTK(y, X, Z, kernel=rbf)
    res = model.fit()
    K = model.kernel_matrix()
    r = y - X @ res.params.to_numpy()
    sol = solve_ivp(lambda s, f: -K @ (f - r), (0, res.t), np.zeros(len(y)),
                    rtol=1e-10, atol=1e-12, method="DOP853")
    np.testing.assert_allclose(res.random_effects.to_numpy(), sol.y[:, -1], rtol=0, atol=1e-7)
    np.testing.assert_allclose(res.fittedvalues.to_numpy(),
                               X @ res.params.to_numpy() + sol.y[:, -1], atol=1e-7)


def test_predict_new_points_equals_formula_3_and_flow(sim_small):
    y, X, Z = sim_small["y"], sim_small["X"], sim_small["Z"]
    model = mn.MixedLMNTK(y, X, Z, kernel=rbf, scale_inputs=False)
    res = model.fit()
    rng = np.random.default_rng(5)
    Zn = rng.normal(size=(7, 3))
    Xn = np.column_stack([np.ones(7), rng.normal(size=7)])
    pred = res.predict(exog=Xn, ntk_inputs=Zn)
    K = rbf(Z, Z)
    Ks = rbf(Zn, Z)
    r = y - X @ res.params.to_numpy()
    # dense (3): k*^T K^{-1} (I - exp(-tK)) r  (K is invertible here)
    dense = Xn @ res.params.to_numpy() + Ks @ np.linalg.solve(
        K, (np.eye(len(y)) - scipy.linalg.expm(-res.t * K)) @ r)
    np.testing.assert_allclose(pred.to_numpy(), dense, rtol=1e-7, atol=1e-8)
    # gradient flow of the linearised network: d f*/dt = -k*^T (f - r), d f/dt = -K (f - r)
    def rhs(s, v):
        f = v[: len(y)]
        return np.concatenate([-K @ (f - r), -Ks @ (f - r)])
    sol = solve_ivp(rhs, (0, res.t), np.zeros(len(y) + 7), rtol=1e-10, atol=1e-12, method="DOP853")
    np.testing.assert_allclose(pred.to_numpy() - Xn @ res.params.to_numpy(), sol.y[len(y):, -1],
                               atol=1e-7)


def test_predict_in_sample_matches_new_point_path(sim_small):
    y, X, Z = sim_small["y"], sim_small["X"], sim_small["Z"]
    res = mn.MixedLMNTK(y, X, Z, kernel=rbf, scale_inputs=False).fit()
    a = res.predict(interval="prediction")
    b = res.predict(exog=X, ntk_inputs=Z, interval="prediction")
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-7, atol=1e-9)


def test_predictive_variance_equals_dense_kriging(sim_small):
    """Posterior variance of x*b + u* (universal kriging) against explicit matrices."""
    y, X, Z = sim_small["y"], sim_small["X"], sim_small["Z"]
    rff = RandomFeatureKernel(3, m=800)  # well conditioned, so explicit inverses are exact
    res = mn.MixedLMNTK(y, X, Z, kernel=rff, scale_inputs=False).fit()
    t, s2 = res.t, res.scale
    rng = np.random.default_rng(9)
    Zn = rng.normal(size=(5, 3))
    Xn = np.column_stack([np.ones(5), rng.normal(size=5)])
    K = rff(Z, Z)
    Ks = rff(Zn, Z)
    assert np.linalg.cond(K) < 1e8
    Ki = np.linalg.inv(K)
    E = scipy.linalg.expm(t * K)
    C_alpha = s2 * Ki @ (E - np.eye(len(y))) @ Ki
    prior_u = Ks @ C_alpha @ Ks.T
    cov_uy = Ks @ C_alpha @ K
    V = s2 * E
    Vi = np.linalg.inv(V)
    post = prior_u - cov_uy @ Vi @ cov_uy.T
    L = Xn - cov_uy @ Vi @ X
    covb = np.linalg.inv(X.T @ Vi @ X)
    var = np.diag(post) + np.einsum("ij,jk,ik->i", L, covb, L)
    out = res.predict(exog=Xn, ntk_inputs=Zn, interval="confidence")
    np.testing.assert_allclose(out["se"].to_numpy() ** 2, var, rtol=1e-6)


def test_prediction_interval_coverage():
    """95% prediction intervals cover new draws from the model at the nominal rate."""
    rng = np.random.default_rng(77)
    n, m, reps = 60, 20, 150
    covered = 0
    total = 0
    for _ in range(reps):
        Z = rng.normal(size=(n + m, 2))
        K_all = rbf(Z, Z)
        K = K_all[:n, :n]
        lam, U = np.linalg.eigh(K)
        lam = np.maximum(lam, 0)
        t_true, s2 = 2.0, 0.25
        g = np.zeros_like(lam)
        nz = lam > 1e-10 * lam.max()
        g[nz] = np.sqrt(s2 * np.expm1(t_true * lam[nz])) / lam[nz]
        alpha = U @ (g * rng.normal(size=n))
        u = K_all[:, :n] @ alpha
        X = np.column_stack([np.ones(n + m), rng.normal(size=n + m)])
        yall = X @ [0.5, -1.0] + u + np.sqrt(s2) * rng.normal(size=n + m)
        res = mn.MixedLMNTK(yall[:n], X[:n], Z[:n], kernel=rbf, scale_inputs=False).fit()
        pi = res.predict(exog=X[n:], ntk_inputs=Z[n:], interval="prediction")
        covered += int(np.sum((yall[n:] >= pi["lower"].to_numpy()) & (yall[n:] <= pi["upper"].to_numpy())))
        total += m
    rate = covered / total
    # the plug-in interval ignores the uncertainty of t and s2, so allow a little undercoverage
    assert 0.92 <= rate <= 0.98, rate


def test_low_rank_profile_equals_full():
    """A profile built from leading eigenpairs plus the rest Gram equals the full one
    when the kernel has exactly that rank (the hook the low-rank fits use)."""
    rng = np.random.default_rng(3)
    n, m = 50, 6
    Phi = rng.normal(size=(n, m))
    K = Phi @ Phi.T
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.normal(size=n) + Phi @ rng.normal(size=m) * 0.3
    full = decompose(K, method="eigh", check_psd=True)
    Y = np.column_stack([y, X])
    Yr = full.rotate(Y)
    p_full = SpectralProfile(full.eigenvalues, Yr[:, 0], Yr[:, 1:], full.trace, n)
    top = np.argsort(full.eigenvalues)[-m:]
    Ym = Yr[top]
    rest = Y.T @ Y - Ym.T @ Ym
    rest = rest[[1, 2, 0]][:, [1, 2, 0]]  # order [X, y] as the profile expects
    p_low = SpectralProfile(full.eigenvalues[top], Ym[:, 0], Ym[:, 1:], full.trace, n, rest_gram=rest)
    for t in [0.0, 0.01, 0.3, 2.0]:
        for reml in (True, False):
            assert abs(p_full.loglike(t, reml) - p_low.loglike(t, reml)) < 1e-8 * abs(p_full.loglike(t, reml))
    np.testing.assert_allclose(p_full.loglike_grid(np.array([0.1, 1.0])),
                               p_low.loglike_grid(np.array([0.1, 1.0])), rtol=1e-8)


def test_tridiagonal_and_eigh_bases_agree():
    rng = np.random.default_rng(11)
    A = rng.normal(size=(90, 40))
    K = A @ A.T
    b1 = decompose(K, method="eigh")
    b2 = decompose(K, method="tridiagonal")
    np.testing.assert_allclose(b1.eigenvalues, b2.eigenvalues, atol=1e-10 * K.max())
    M = rng.normal(size=(90, 3))
    w = np.exp(-0.01 * b1.eigenvalues)
    G1 = b1.rotate(M).T @ (w[:, None] * b1.rotate(M))
    G2 = b2.rotate(M).T @ (w[:, None] * b2.rotate(M))
    np.testing.assert_allclose(G1, G2, rtol=1e-9)
    np.testing.assert_allclose(b2.unrotate(b2.rotate(M)), M, atol=1e-10)


def test_decompose_does_not_modify_the_input():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(30, 30))
    K = A @ A.T
    K0 = K.copy()
    decompose(K, method="tridiagonal")
    decompose(K, method="eigh")
    np.testing.assert_array_equal(K, K0)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("with_fe", [True, False])
def test_analytic_score_matches_numerical_derivative(sim_small, reml, with_fe):
    X = sim_small["X"] if with_fe else None
    model = mn.MixedLMNTK(sim_small["y"], X, sim_small["Z"], kernel=rbf)
    prof = model.profile
    for t in [0.0, 0.1, 0.5, 2.0]:
        h = 1e-6 * max(t, 1e-3)
        num = (prof.loglike(t + h, reml) - prof.loglike(max(t - h, 0.0), reml)) / (t + h - max(t - h, 0.0))
        assert prof.score(t, reml) == pytest.approx(num, rel=1e-5, abs=1e-6)
    res = model.fit(reml=reml, t_method="reml" if reml else "ml")
    assert abs(prof.score(res.t, reml)) * res.t < 1e-8 * abs(res.llf)


def test_reml_score_at_zero_is_model_md_formula(sim_small):
    y, X, Z = sim_small["y"], sim_small["X"], sim_small["Z"]
    model = mn.MixedLMNTK(y, X, Z, kernel=rbf)
    K = model.kernel_matrix()
    n, p = X.shape
    H = X @ np.linalg.solve(X.T @ X, X.T)
    r0 = y - H @ y
    s2 = r0 @ r0 / (n - p)
    expected = 0.5 * (r0 @ K @ r0 / s2 - np.trace((np.eye(n) - H) @ K))
    assert model.profile.score(0.0, True) == pytest.approx(expected, rel=1e-10)


def test_unidentified_fixed_effects_give_nan_standard_errors_and_a_warning():
    """ML on 6 rows with 3 fixed effects runs to near-interpolation (t ~ 900): X^T W X is
    singular there, so the fixed effects' SEs are NaN with a warning, never a traceback."""
    Z = np.array([[-0.316227, -0.396986], [-0.816325, 0.257159], [0.849502, 0.911296],
                  [0.164119, 1.244964], [-0.507813, 0.930756], [-1.761638, 1.497594]])
    y = np.array([-1.004534, -1.002471, 0.999665, 1.014688, -0.989256, -1.002864])
    X = np.array([[1.0, 0.085732, -0.258609], [1.0, 0.669113, -1.393764],
                  [1.0, 0.523932, -0.096887], [1.0, -0.396368, -0.22353],
                  [1.0, -1.969993, 0.544621], [1.0, 1.922052, -2.045025]])
    res = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=2)).fit(reml=False)
    with pytest.warns(RuntimeWarning, match="fixed effects are not identified"):
        bse = res.bse
    assert bse.isna().all()
    assert "Training time" in str(res.summary())
