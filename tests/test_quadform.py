"""Tests for mixednn.quadform, mixednn.tailprob and mixednn.chi2sums: tail probabilities
of Gaussian quadratic forms.

References are exact (chi-square, the K0 density of a difference of two
chi2_1), high-precision numerical integration, brute-force eigendecompositions
of M diag(lam) M on small n, or Monte Carlo with a tolerance from its standard
error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from mixednn.chi2sums import (
    plugin_score_sf,
    projected_cumulants,
    projected_ratio_sf,
    ratio_qf_sf,
    weighted_chi2_sf,
)
from mixednn.quadform import QuadraticForm
from mixednn.tailprob import TailProbability


# ----------------------------------------------------------------------------- helpers

def brute_weights(lam, X, q=0.0):
    """Eigenvalues of A^T diag(lam - q) A, A an orthonormal basis of range(M)."""
    lam = np.asarray(lam, float)
    n = lam.shape[0]
    if X is None or X.shape[1] == 0:
        return np.sort(lam - q)
    Qx, _ = np.linalg.qr(X)
    M = np.eye(n) - Qx @ Qx.T
    w, V = np.linalg.eigh(M)
    A = V[:, w > 0.5]
    return np.linalg.eigvalsh(A.T @ np.diag(lam - q) @ A)


def brute_cumulants(nu, k=4):
    return np.array([2.0 ** (r - 1) * math.factorial(r - 1) * np.sum(nu ** r)
                     for r in range(1, k + 1)])


def three_weight_reference(q, w):
    """P(w1 Z1^2 + w2 Z2^2 + w3 Z3^2 > q) by 2-D quadrature (Z1 integrated in closed form)."""
    w1, w2, w3 = w

    def phi(z):
        return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    def inner(z2, z3):
        c = q - w2 * z2 * z2 - w3 * z3 * z3
        return 4 * phi(z2) * phi(z3) * (2 * special.ndtr(math.sqrt(max(c, 0.0) / w1)) - 1)

    v, _ = integrate.dblquad(inner, 0, math.sqrt(q / w3), 0,
                             lambda z3: math.sqrt(max(q - w3 * z3 * z3, 0.0) / w2),
                             epsabs=1e-12, epsrel=1e-12)
    return 1.0 - v


def random_problem(n, p, rng, q_quantile=None):
    A = rng.normal(size=(n, n))
    K = A @ A.T / n + np.diag(rng.uniform(0, 0.1, n))
    lam, U = np.linalg.eigh(K)
    X = rng.normal(size=(n, p))
    return K, lam, U, X


# ----------------------------------------------------------------------------- known values

def test_chi2_1_critical_value():
    for method in ("imhof", "davies", "auto"):
        r = weighted_chi2_sf(3.841458820694124, [1.0], method=method)
        assert isinstance(r, TailProbability)
        assert r.pvalue == pytest.approx(0.05, abs=1e-9)
    r = weighted_chi2_sf(3.841458820694124, [1.0], method="imhof")
    assert r.converged and r.error_bound < 1e-8 and r.method == "imhof"


@pytest.mark.parametrize("k", [1, 2, 5, 20])
@pytest.mark.parametrize("scale", [1.0, 0.3, 40.0])
def test_equal_weights_are_chi2(k, scale):
    for x in (0.01 * k, 0.5 * k, k, 2.0 * k + 3, 4.0 * k + 10):
        exact = stats.chi2.sf(x, k)
        r = weighted_chi2_sf(x * scale, np.full(k, scale), method="imhof")
        assert abs(r.pvalue - exact) < 1e-8
        assert r.converged and r.error_bound >= abs(r.pvalue - exact)
        # Liu and Satterthwaite are exact for equal weights
        for m in ("liu", "satterthwaite"):
            assert weighted_chi2_sf(x * scale, np.full(k, scale), method=m).pvalue == \
                pytest.approx(exact, rel=1e-8, abs=1e-12)
        if k >= 5:
            d = weighted_chi2_sf(x * scale, np.full(k, scale), method="davies")
            assert d.converged and abs(d.pvalue - exact) < 1e-8


def test_negative_equal_weights():
    for k in (1, 3, 8):
        for x in (-0.5 * k, -k, -3.0 * k):
            r = weighted_chi2_sf(x, -np.ones(k), method="imhof")
            assert abs(r.pvalue - stats.chi2.cdf(-x, k)) < 1e-8


@pytest.mark.parametrize("q", [0.2, 1.0, 2.5])
def test_three_weights_against_quadrature(q):
    w = (0.5, 0.3, 0.2)
    ref = three_weight_reference(q, w)
    r = weighted_chi2_sf(q, w, method="imhof")
    assert abs(r.pvalue - ref) < 1e-9
    assert weighted_chi2_sf(q, w).pvalue == pytest.approx(r.pvalue, abs=1e-12)
    # moment approximations: close but not exact
    assert abs(weighted_chi2_sf(q, w, method="liu").pvalue - ref) < 0.02
    assert abs(weighted_chi2_sf(q, w, method="satterthwaite").pvalue - ref) < 0.02
    assert abs(weighted_chi2_sf(q, w, method="saddlepoint").pvalue - ref) < 0.02


def test_three_weights_monte_carlo():
    rng = np.random.default_rng(20240601)
    w = np.array([0.5, 0.3, 0.2])
    s = (rng.standard_normal((1_000_000, 3)) ** 2) @ w
    for q in (0.2, 1.0, 2.5):
        emp = np.mean(s > q)
        se = math.sqrt(emp * (1 - emp) / s.size)
        assert abs(weighted_chi2_sf(q, w).pvalue - emp) < 4 * se


@pytest.mark.parametrize("x", [0.1, 1.0, 4.0])
def test_difference_of_chi2_exact(x):
    # Z1^2 - Z2^2 = 2 U V with U, V iid N(0,1); the density of UV is K0(|t|)/pi
    ref = integrate.quad(lambda t: special.k0(t) / math.pi, x / 2, np.inf, epsabs=1e-13)[0]
    r = weighted_chi2_sf(x, [1.0, -1.0], method="imhof")
    assert abs(r.pvalue - ref) < 1e-9
    d = weighted_chi2_sf(x, [1.0, -1.0], method="davies")
    assert abs(d.pvalue - ref) < 1e-7
    assert weighted_chi2_sf(0.0, [1.0, -1.0]).pvalue == pytest.approx(0.5, abs=1e-10)


def test_imhof_matches_davies_mixed_signs():
    rng = np.random.default_rng(7)
    for _ in range(15):
        w = rng.normal(size=rng.integers(4, 12))
        mu, sd = w.sum(), math.sqrt(2 * np.sum(w ** 2))
        for x in mu + sd * np.array([-2.0, 0.0, 0.7, 2.5]):
            a = weighted_chi2_sf(x, w, method="imhof")
            b = weighted_chi2_sf(x, w, method="davies")
            assert a.converged and b.converged
            assert abs(a.pvalue - b.pvalue) < 1e-7


def test_far_tail_switches_to_saddlepoint():
    for k in (4, 10, 30):
        x = stats.chi2.isf(1e-12, k)
        r = weighted_chi2_sf(x, np.ones(k))
        assert r.method.startswith("saddlepoint")
        assert "Imhof below" in r.method
        assert r.pvalue == pytest.approx(1e-12, rel=0.10)
        # Imhof alone is accurate in absolute terms only
        assert abs(weighted_chi2_sf(x, np.ones(k), method="imhof").pvalue - 1e-12) < 1e-9
    # moderate tails: auto keeps Imhof
    assert weighted_chi2_sf(stats.chi2.isf(1e-4, 5), np.ones(5)).method == "imhof"


def test_trivial_and_invalid_cases():
    assert weighted_chi2_sf(1.0, [0.0, 0.0]).pvalue == 0.0
    assert weighted_chi2_sf(-1.0, []).pvalue == 1.0
    assert weighted_chi2_sf(0.5, [-1.0, -2.0]).pvalue == 0.0
    assert weighted_chi2_sf(-0.5, [1.0, 2.0]).pvalue == 1.0
    assert weighted_chi2_sf(0.0, [1.0, 2.0]).pvalue == 1.0
    assert weighted_chi2_sf(np.inf, [1.0]).pvalue == 0.0
    assert ratio_qf_sf(5.0, [1.0, 2.0, 3.0]).pvalue == 0.0
    assert ratio_qf_sf(0.5, [1.0, 2.0, 3.0]).pvalue == 1.0
    with pytest.raises(ValueError, match="nonnegative"):
        weighted_chi2_sf(1.0, [1.0, -0.5], method="liu")
    with pytest.raises(ValueError, match="nonnegative"):
        weighted_chi2_sf(1.0, [1.0, -0.5], method="satterthwaite")
    with pytest.raises(ValueError, match="unknown method"):
        weighted_chi2_sf(1.0, [1.0], method="farebrother")


# ----------------------------------------------------------------------------- structured form

@pytest.mark.parametrize("n,p", [(40, 0), (50, 1), (60, 3)])
def test_structured_cf_and_cumulants_match_brute_force(n, p):
    rng = np.random.default_rng(100 + n + p)
    lam = 3.0 * rng.gamma(0.7, size=n)
    X = rng.normal(size=(n, p))
    for q in (0.0, 1.1):
        nu = brute_weights(lam, X, q)
        qf = QuadraticForm.projected(lam, X if p else None, shift=q)
        assert qf.n_terms == n - p
        u = np.array([1e-3, 0.05, 0.4, 2.0, 15.0, 300.0])
        th, lr = qf.phase_logmod(u)
        th0 = 0.5 * np.arctan(np.outer(u, nu)).sum(1)
        lr0 = 0.25 * np.log1p(np.outer(u, nu) ** 2).sum(1)
        assert np.allclose(th, th0, rtol=1e-10, atol=1e-10)
        assert np.allclose(lr, lr0, rtol=1e-10, atol=1e-10)
        t = np.array([0.01, 0.3, 2.0])
        cf0 = np.prod((1 - 2j * np.outer(t, nu)) ** -0.5, axis=1)
        assert np.allclose(qf.cf(t), cf0, rtol=1e-10, atol=1e-12)
        c = projected_cumulants(q, lam, X if p else None, k=4)
        c0 = brute_cumulants(nu, 4)
        assert np.allclose(c, c0, rtol=1e-10, atol=1e-10 * np.abs(c0).max())
        lo, hi = qf.eig_range()
        assert lo == pytest.approx(nu.min(), abs=1e-10) and hi == pytest.approx(nu.max(), abs=1e-10)
        s_lo, s_hi = qf.cgf_domain()
        for s in (0.9 * s_lo if np.isfinite(s_lo) else -1.0, -0.01, 0.02, 0.95 * s_hi):
            K, K1, K2 = qf.cgf(s)
            e = 1 - 2 * s * nu
            assert K == pytest.approx(-0.5 * np.sum(np.log(e)), rel=1e-10, abs=1e-10)
            assert K1 == pytest.approx(np.sum(nu / e), rel=1e-9, abs=1e-9)
            assert K2 == pytest.approx(np.sum(2 * nu ** 2 / e ** 2), rel=1e-9, abs=1e-9)
        assert np.isnan(qf.cgf(1.01 * s_hi)[0])
        # p-values agree with the explicit-weight computation
        for m in ("imhof", "saddlepoint", "davies"):
            a = qf.sf(0.0, m)
            b = weighted_chi2_sf(0.0, nu, method=m)
            assert abs(a.pvalue - b.pvalue) < 1e-10


def test_projected_ratio_matches_explicit_eigenvalues():
    rng = np.random.default_rng(3)
    n, p = 45, 3
    K, lam, U, X = random_problem(n, p, rng)
    Xr = U.T @ X
    nu = brute_weights(lam, Xr)
    for Q in np.quantile(nu, [0.3, 0.6, 0.9]):
        a = projected_ratio_sf(Q, lam, Xr)
        b = ratio_qf_sf(Q, nu)
        assert abs(a.pvalue - b.pvalue) < 1e-10
        for stat in (0.5 * nu.sum(), nu.sum(), 1.5 * nu.sum()):
            for m in ("imhof", "liu", "satterthwaite", "saddlepoint"):
                pa = plugin_score_sf(stat, lam, Xr, method=m).pvalue
                pb = weighted_chi2_sf(stat, nu, method=m).pvalue
                assert abs(pa - pb) < 1e-10
    with pytest.raises(ValueError, match="nonnegative"):
        projected_ratio_sf(np.median(nu), lam, Xr, method="liu")
    with pytest.raises(ValueError, match="full column rank"):
        projected_ratio_sf(1.0, lam, np.column_stack([Xr[:, 0], 2 * Xr[:, 0]]))


def test_no_fixed_effects_reduces_to_plain_weights():
    rng = np.random.default_rng(11)
    lam = rng.gamma(1.0, size=30)
    Q = float(np.median(lam))
    a = projected_ratio_sf(Q, lam, None)
    b = projected_ratio_sf(Q, lam, np.zeros((30, 0)))
    c = weighted_chi2_sf(0.0, lam - Q)
    assert a.pvalue == pytest.approx(c.pvalue, abs=1e-12)
    assert b.pvalue == pytest.approx(c.pvalue, abs=1e-12)
    assert np.allclose(projected_cumulants(Q, lam), brute_cumulants(lam - Q), rtol=1e-12)


def test_plugin_constant_spectrum_is_scaled_chi2():
    # K = 2 I: M K M = 2 M, so the plug-in law is exactly 2 chi2_{n-p}
    rng = np.random.default_rng(5)
    n, p = 80, 4
    lam = np.full(n, 2.0)
    Xr = rng.normal(size=(n, p))
    for stat in (100.0, 150.0, 200.0):
        exact = stats.chi2.sf(stat / 2, n - p)
        for m in ("imhof", "auto", "liu", "satterthwaite"):
            assert abs(plugin_score_sf(stat, lam, Xr, method=m).pvalue - exact) < 1e-8
    stat = 2 * stats.chi2.isf(1e-12, n - p)
    r = plugin_score_sf(stat, lam, Xr)
    assert r.method.startswith("saddlepoint") and r.pvalue == pytest.approx(1e-12, rel=0.1)


def test_ratio_statistic_monte_carlo():
    rng = np.random.default_rng(2024)
    n, p = 12, 2
    K, lam, U, X = random_problem(n, p, rng)
    X[:, 0] = 1.0
    Qx, _ = np.linalg.qr(X)
    Y = rng.standard_normal((100_000, n))
    R = Y - (Y @ Qx) @ Qx.T
    Qs = np.einsum("ij,jk,ik->i", R, K, R) / np.einsum("ij,ij->i", R, R)
    Xr = U.T @ X
    for q in np.quantile(Qs, [0.5, 0.9, 0.99]):
        emp = np.mean(Qs > q)
        se = math.sqrt(emp * (1 - emp) / Qs.size)
        r = projected_ratio_sf(q, lam, Xr)
        assert r.method == "imhof" and r.converged
        assert abs(r.pvalue - emp) < 4 * se
        assert abs(projected_ratio_sf(q, lam, Xr, method="davies").pvalue - r.pvalue) < 1e-7


def test_projected_cumulants_with_dominant_removed_direction():
    # NTK-like: a huge eigenvalue along the constant vector, removed by the intercept
    rng = np.random.default_rng(9)
    n = 60
    Z = rng.normal(size=(n, 2))
    d2 = ((Z[:, None] - Z[None]) ** 2).sum(-1)
    K = 1e3 * np.ones((n, n)) / n + np.exp(-0.5 * d2)
    lam, U = np.linalg.eigh(K)
    X = np.column_stack([np.ones(n), Z[:, 0]])
    Xr = U.T @ X
    nu = brute_weights(lam, Xr)
    c = projected_cumulants(0.0, lam, Xr, k=4)
    assert np.allclose(c, brute_cumulants(nu), rtol=1e-6)
    assert QuadraticForm.projected(lam, Xr).eig_range()[1] == pytest.approx(nu.max(), rel=1e-12)
    stat = 1.3 * nu.sum()
    assert abs(plugin_score_sf(stat, lam, Xr).pvalue - weighted_chi2_sf(stat, nu).pvalue) < 1e-9


def test_structured_path_at_n1000_p5_is_converged_and_matches_satterthwaite_roughly():
    """The O(n p^2) Imhof path at a realistic size converges (its speed is benchmarked in
    benchmarks/, not asserted here) and lands near the scaled chi-square approximation."""
    rng = np.random.default_rng(0)
    n, p = 1000, 5
    Z = rng.normal(size=(n, 3))
    d2 = ((Z[:, None] - Z[None]) ** 2).sum(-1)
    K = np.exp(-0.5 * d2)
    lam, U = np.linalg.eigh(K)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))])
    Xr = U.T @ X
    y = rng.normal(size=n)
    r = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    Q = r @ K @ r / (r @ r)
    res = projected_ratio_sf(Q, lam, Xr)
    assert 0.0 <= res.pvalue <= 1.0 and res.converged
    sat = projected_ratio_sf(Q, lam, Xr, method="saddlepoint")
    assert abs(res.pvalue - sat.pvalue) < 0.02


# ----------------------------------------------------------------------------- properties

weights_strategy = st.lists(
    st.floats(min_value=-5.0, max_value=5.0, allow_nan=False).filter(lambda v: abs(v) > 1e-3),
    min_size=1, max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=weights_strategy,
       q1=st.floats(min_value=-30.0, max_value=30.0, allow_nan=False),
       dq=st.floats(min_value=0.0, max_value=10.0, allow_nan=False))
def test_pvalue_in_unit_interval_and_monotone(w, q1, dq):
    a = weighted_chi2_sf(q1, w)
    b = weighted_chi2_sf(q1 + dq, w)
    assert 0.0 <= a.pvalue <= 1.0 and 0.0 <= b.pvalue <= 1.0
    assert b.pvalue <= a.pvalue + 1e-8
    sa = weighted_chi2_sf(q1, w, method="saddlepoint").pvalue
    sb = weighted_chi2_sf(q1 + dq, w, method="saddlepoint").pvalue
    assert 0.0 <= sa <= 1.0 and sb <= sa + 1e-8


@pytest.mark.parametrize("p", [0, 2])
def test_counts_equal_the_repeated_weights(p):
    """A weight with multiplicity h (outside the removed span) is h repeated weights."""
    rng = np.random.default_rng(4)
    m, h = 12, 300
    lam = np.sort(rng.gamma(2.0, size=m))[::-1]
    shift = 0.7
    Xm = rng.normal(size=(m + p, p)) if p else None  # p extra rows: a root of the rest Gram
    lam_c = np.concatenate([lam, np.zeros(p), [0.0]])
    X_c = np.vstack([Xm, np.zeros((1, p))]) if p else None
    counts = np.concatenate([np.ones(m + p), [h]])
    lam_e = np.concatenate([lam, np.zeros(p + h)])
    X_e = np.vstack([Xm, np.zeros((h, p))]) if p else None
    qc = QuadraticForm.projected(lam_c, X_c, shift=shift, counts=counts)
    qe = QuadraticForm.projected(lam_e, X_e, shift=shift)
    assert qc.n_terms == qe.n_terms == m + p + h - p
    np.testing.assert_allclose(qc.cumulants(4), qe.cumulants(4), rtol=1e-10)
    np.testing.assert_allclose(qc.eig_range(), qe.eig_range(), rtol=1e-10, atol=1e-12)
    assert qc.n_positive() == qe.n_positive() and qc.n_negative() == qe.n_negative()
    s = 0.5 * qc.cgf_domain()[1] if np.isfinite(qc.cgf_domain()[1]) else 0.01
    np.testing.assert_allclose(qc.cgf(s), qe.cgf(s), rtol=1e-10)
    u = np.array([0.01, 0.3, 2.0])
    for a, b in zip(qc.phase_logmod(u), qe.phase_logmod(u)):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    for x in (-50.0, 0.0, 20.0):
        for method in ("imhof", "saddlepoint"):
            assert qc.sf(x, method).pvalue == pytest.approx(qe.sf(x, method).pvalue, rel=1e-7,
                                                            abs=1e-12)


def test_counts_must_sit_outside_the_removed_span():
    with pytest.raises(ValueError, match="counts > 1 must lie outside"):
        QuadraticForm(np.array([1.0, 0.5, 0.0]), np.eye(3)[:, :1], counts=[2, 1, 1])
    with pytest.raises(ValueError, match="positive integers"):
        QuadraticForm(np.array([1.0, 0.5]), None, counts=[0, 1])


def test_docstring_examples_run():
    import doctest

    import mixednn.chi2sums

    out = doctest.testmod(mixednn.chi2sums, optionflags=doctest.ELLIPSIS)
    assert out.attempted >= 1 and out.failed == 0
