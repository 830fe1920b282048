"""The likelihood seam and the one prediction, against dense brute force.

* :class:`mixednn.profile.DenseCovariance` (any ``V(theta)`` as a dense matrix) is the
  general covariance model; with ``V(t) = expm(tK)`` it must equal the fast spectral
  profile, and with a random intercept beside the network (``V = expm(tK) + s_b Z Z^T``,
  the model of the group-effects issue) it must reproduce statsmodels' MixedLM at t = 0.
* :class:`mixednn.prediction.Predictor` (one formula for every basis) against the
  dense gradient-flow formulas (``expm`` and explicit inverses), free modes included.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st

import mixednn as mn
from mixednn.profile import CovarianceModel, DenseCovariance, SpectralProfile


def _data(seed: int, n: int = 30, p: int = 2):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, 4))
    K = A @ A.T
    K /= np.linalg.eigvalsh(K)[-1] / 3  # lam_max = 3: expm(tK) stays well conditioned
    X = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))])
    y = X @ rng.normal(size=p) + rng.normal(size=n)
    return y, X, K


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), t=st.floats(0.0, 3.0), reml=st.booleans())
def test_spectral_profile_equals_dense_covariance_with_expm(seed, t, reml):
    y, X, K = _data(seed)
    lam, U = np.linalg.eigh(K)
    fast = SpectralProfile(np.maximum(lam, 0), U.T @ y, U.T @ X, np.trace(K), len(y))
    dense = DenseCovariance(y, X, lambda th: scipy.linalg.expm(th[0] * K))
    a, b = fast.point(t, reml), dense.point_theta([t], reml)
    assert a.llf == pytest.approx(b.llf, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-7, atol=1e-9)
    assert a.scale == pytest.approx(b.scale, rel=1e-9)
    np.testing.assert_allclose(a.xwx, b.xwx, rtol=1e-7, atol=1e-9)


def test_both_covariance_models_satisfy_the_seam():
    y, X, K = _data(0)
    lam, U = np.linalg.eigh(K)
    fast = SpectralProfile(np.maximum(lam, 0), U.T @ y, U.T @ X, np.trace(K), len(y))
    dense = DenseCovariance(y, X, lambda th: scipy.linalg.expm(th[0] * K))
    assert isinstance(fast, CovarianceModel) and isinstance(dense, CovarianceModel)


def test_dense_seam_with_a_random_intercept_reproduces_statsmodels_at_t0():
    """V = expm(tK) + r Z Z^T at t = 0 is the random-intercept model: the seam's REML
    criterion equals statsmodels' profiled REML log-likelihood at the same variance ratio."""
    rng = np.random.default_rng(3)
    g, m = 12, 5
    groups = np.repeat(np.arange(g), m)
    x = rng.normal(size=g * m)
    y = 1 + 0.5 * x + rng.normal(size=g)[groups] + rng.normal(size=g * m)
    Zg = (groups[:, None] == np.arange(g)[None, :]).astype(float)
    X = np.column_stack([np.ones(g * m), x])
    A = rng.normal(size=(g * m, 3))
    K = A @ A.T
    dense = DenseCovariance(y, X, lambda th: scipy.linalg.expm(th[0] * K)
                            + th[1] * Zg @ Zg.T)
    df = pd.DataFrame({"y": y, "x": x, "g": groups})
    sm_mod = sm.MixedLM.from_formula("y ~ x", df, groups=df["g"])
    sm_mod.reml = True
    sm_mod.cov_pen = sm_mod.fe_pen = None
    for ratio in (0.1, 0.7, 2.0):
        pt = dense.point_theta([0.0, ratio], True)
        params = sm.regression.mixed_linear_model.MixedLMParams.from_components(
            fe_params=pt.beta, cov_re=np.array([[ratio]]), vcomp=np.array([]))
        assert pt.llf == pytest.approx(sm_mod.loglike(params, profile_fe=False), rel=1e-10)


def _dense_flow_prediction(res, K_all, X_all, n):
    """The gradient-flow prediction at rows n.. with explicit inverses and expm
    (docs/model.md eqs. (3), (11), (12)): with S = K^{-1} (I - expm(-tK)),
    mean = x*^T beta + k*^T S r, Var = s2 k*^T S K^{-1} k* + L^T Cov(beta) L,
    L = x* - X^T S^T k*; beta by GLS under V = s2 expm(tK)."""
    t, s2 = res.t, res.scale
    K, Kx = K_all[:n, :n], K_all[n:, :n]
    X, Xn = X_all[:n], X_all[n:]
    y = res.model.endog
    E = scipy.linalg.expm(-t * K)
    Vi = E / s2
    covb = np.linalg.inv(X.T @ Vi @ X)
    beta = covb @ (X.T @ Vi @ y)
    S = np.linalg.solve(K, np.eye(n) - E)
    mean = Xn @ beta + Kx @ S @ (y - X @ beta)
    var_u = s2 * np.einsum("ij,ij->i", Kx @ S, np.linalg.solve(K, Kx.T).T)
    L = Xn - Kx @ S @ X
    return mean, var_u + np.einsum("ij,jk,ik->i", L, covb, L)


def test_one_prediction_equals_the_dense_flow_formula():
    rng = np.random.default_rng(5)
    n, m = 40, 6
    Z = rng.normal(size=(n + m, 2))
    X_all = np.column_stack([np.ones(n + m), rng.normal(size=n + m)])
    y = X_all[:n] @ [1.0, -0.5] + np.sin(2 * Z[:n, 0]) + 0.3 * rng.normal(size=n)
    net = mn.MLP(depth=1)
    model = mn.MixedLMNTK(y, X_all[:n], Z[:n], network=net, scale_inputs=False)
    res = model.fit(t_method="reml")
    mean, var = _dense_flow_prediction(res, net.ntk(Z), X_all, n)
    pred = res.predict(exog=X_all[n:], ntk_inputs=Z[n:], interval="confidence")
    np.testing.assert_allclose(pred["mean"], mean, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(pred["se"] ** 2, var, rtol=1e-6, atol=1e-10)
    # prediction intervals add s2
    pi = res.predict(exog=X_all[n:], ntk_inputs=Z[n:], interval="prediction")
    np.testing.assert_allclose(pi["se"] ** 2, var + res.scale, rtol=1e-6)
    # in-sample intervals from the training rows' own rotation: same conditional formula
    ins = res.predict(interval="confidence")
    G = res.scale * (scipy.linalg.expm(res.t * net.ntk(Z[:n])) - np.eye(n))
    Vi = np.linalg.inv(G + res.scale * np.eye(n))
    X = X_all[:n]
    L = X - G @ Vi @ X
    v_in = np.diag(G - G @ Vi @ G) + np.einsum("ij,jk,ik->i", L,
                                              np.linalg.inv(X.T @ Vi @ X), L)
    np.testing.assert_allclose(ins["se"] ** 2, v_in, rtol=1e-6, atol=1e-10)


def test_free_mode_prediction_equals_dense_augmented_model():
    """Free leading modes are the eigenvectors as unpenalised fixed effects, extended to new
    points by the Nystrom eigenfunctions k*^T u_j / lam_j."""
    rng = np.random.default_rng(6)
    n, m, k = 40, 5, 3
    Z = rng.normal(size=(n + m, 2))
    y = np.sin(2 * Z[:n, 0]) + 0.3 * rng.normal(size=n)
    net = mn.MLP(depth=1)
    model = mn.MixedLMNTK(y, np.ones((n, 1)), Z[:n], network=net, scale_inputs=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(free_modes=k, t_method="reml")
    K_all = net.ntk(Z)
    K = K_all[:n, :n]
    lam, U = np.linalg.eigh(K)
    Uk, lk = U[:, -k:], lam[-k:]
    Xa = np.column_stack([np.ones(n), Uk])
    psi = K_all[n:, :n] @ Uk / lk          # Nystrom eigenfunctions at the new points
    Xa_new = np.column_stack([np.ones(m), psi])
    # the network part restricted to the other directions: G = U_r (e^{t lam} - 1) U_r^T
    Ur, lr = U[:, :-k], lam[:-k]
    s2, t = res.scale, res.t
    V = s2 * (Ur * np.exp(t * lr)) @ Ur.T + s2 * Uk @ Uk.T
    Vi = np.linalg.inv(V)
    ba = np.linalg.solve(Xa.T @ Vi @ Xa, Xa.T @ Vi @ y)
    # cross-covariance of the new points' network part with the training rows
    kr = K_all[n:, :n] @ Ur                 # (U_r^T k*)^T
    Cr = s2 * (kr * (np.expm1(t * lr) / lr)) @ Ur.T
    mean = Xa_new @ ba + Cr @ Vi @ (y - Xa @ ba)
    pred = res.predict(exog=np.ones((m, 1)), ntk_inputs=Z[n:])
    np.testing.assert_allclose(pred.to_numpy(), mean, rtol=1e-6, atol=1e-8)
    assert math.isclose(res.edf, k + np.sum(-np.expm1(-t * lr)), rel_tol=1e-10)
