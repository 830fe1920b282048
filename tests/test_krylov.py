"""The Krylov route (``decomposition="lanczos"``, :mod:`mixednn.krylov`) against the dense
``eigh`` route: the same fit, predictions and tests, and clear errors for what needs the
full spectrum."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixednn as mn
import mixednn.model
from mixednn.krylov import (KRYLOV_TOL, BlockLanczos, ResidualSpectrum, lanczos_basis,
                            profile_change)

from .conftest import rbf, rel_diff

N = 240


def narrow_rbf(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A slowly decaying spectrum (close to the identity)."""
    return rbf(A, B, ell=0.35)


def relu_one_input(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A fast-decaying spectrum with many eigenvalues near rounding (one input)."""
    return mn.MLP(depth=1).ntk(A[:, :1], B[:, :1])


KERNELS = {
    "relu-ntk-depth2": dict(network=mn.MLP(depth=2)),
    "gaussian": dict(kernel=rbf),
    "narrow-gaussian": dict(kernel=narrow_rbf),
    "relu-ntk-one-input": dict(kernel=relu_one_input),
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    Z = rng.normal(size=(N + 6, 3))
    X = np.column_stack([np.ones(N + 6), rng.normal(size=N + 6)])
    y = X @ [0.5, -1.0] + np.sin(2 * Z[:, 0]) + Z[:, 1] * Z[:, 2] + 0.4 * rng.normal(size=N + 6)
    return {"y": y[:N], "X": X[:N], "Z": Z[:N], "Xn": X[N:], "Zn": Z[N:]}


def _pair(data, kernel, reml=True, **kw):
    fits = {}
    for dec in ("eigh", "lanczos"):
        m = mn.MixedLMNTK(data["y"], kw.get("exog", data["X"]), data["Z"], decomposition=dec,
                          **KERNELS[kernel], **{k: v for k, v in kw.items() if k != "exog"})
        fits[dec] = m.fit(reml=reml, t_method="reml" if reml else "ml")
    return fits["eigh"], fits["lanczos"]


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("reml", [True, False])
def test_fit_equals_eigh(data, kernel, reml):
    ref, kry = _pair(data, kernel, reml)
    assert kry.model.basis.kind == "lanczos" and kry.model.basis.converged
    assert kry.model.basis.dimension < N
    assert abs(kry.t - ref.t) <= 1e-8 * ref.t
    assert abs(kry.llf - ref.llf) <= 1e-8 * abs(ref.llf)
    assert abs(kry.scale - ref.scale) <= 1e-8 * ref.scale
    assert rel_diff(kry.params, ref.params) <= 1e-8
    assert rel_diff(kry.bse, ref.bse) <= 1e-8
    assert rel_diff(kry.random_effects, ref.random_effects) <= 1e-8
    assert np.allclose(kry.t_conf_int(), ref.t_conf_int(), rtol=1e-7)
    assert abs(kry.t_se - ref.t_se) <= 1e-5 * ref.t_se  # central differences of the llf


@pytest.mark.parametrize("kernel", ["relu-ntk-depth2", "narrow-gaussian"])
def test_predictions_at_new_rows_equal_eigh(data, kernel):
    ref, kry = _pair(data, kernel)
    for interval in (None, "confidence", "prediction"):
        a = ref.predict(exog=data["Xn"], ntk_inputs=data["Zn"], interval=interval)
        b = kry.predict(exog=data["Xn"], ntk_inputs=data["Zn"], interval=interval)
        assert rel_diff(b, a) <= 1e-8, interval
    assert b.attrs["cross"] == "krylov"


def test_precomputed_kernel_and_cross_kernel_rows(data):
    Zs = np.vstack([data["Z"], data["Zn"]])
    Kall = rbf(Zs, Zs)
    fits = [mn.MixedLMNTK(data["y"], data["X"], kernel=Kall[:N, :N], decomposition=dec).fit()
            for dec in ("eigh", "lanczos")]
    for interval in (None, "prediction"):
        a, b = (r.predict(exog=data["Xn"], kernel=Kall[N:, :N], interval=interval)
                for r in fits)
        assert rel_diff(b, a) <= 1e-8


def test_weights_and_no_fixed_effects(data):
    w = np.random.default_rng(2).uniform(0.5, 2.0, N)
    ref, kry = _pair(data, "gaussian", weights=w)
    assert abs(kry.t - ref.t) <= 1e-8 * ref.t and abs(kry.llf - ref.llf) <= 1e-8 * abs(ref.llf)
    a = ref.predict(exog=data["Xn"], ntk_inputs=data["Zn"], interval="prediction")
    b = kry.predict(exog=data["Xn"], ntk_inputs=data["Zn"], interval="prediction")
    assert rel_diff(b, a) <= 1e-8
    ref, kry = _pair(data, "relu-ntk-depth2", exog=None)
    assert abs(kry.t - ref.t) <= 1e-8 * ref.t and abs(kry.llf - ref.llf) <= 1e-8 * abs(ref.llf)


def test_score_test_without_the_spectrum(data):
    ref, kry = _pair(data, "relu-ntk-depth2")
    for method in ("exact", "satterthwaite", "liu"):
        a, b = ref.score_test(method=method), kry.score_test(method=method)
        assert abs(b.statistic - a.statistic) <= 1e-10 * a.statistic
        assert abs(b.pvalue - a.pvalue) <= 1e-8 * a.pvalue, method
    lead = kry.score_test(method="leading")
    exact = ref.score_test()
    assert lead.method.startswith("approximate ratio null") or lead.method.startswith("exact")
    assert abs(lead.pvalue - exact.pvalue) <= 0.01 * exact.pvalue
    assert "null spectrum" in lead.details
    assert ref.score_test(method="leading").method == exact.method  # full spectrum: exact
    assert kry.lr_test("mixture").pvalue == pytest.approx(ref.lr_test("mixture").pvalue,
                                                          rel=1e-8)


def test_residual_spectrum_moments_and_leading_eigenvalues(data):
    K = rbf(data["Z"], data["Z"])
    spec = ResidualSpectrum(K, data["X"])
    nu = spec.exact()
    assert nu.shape == (N - 2,)
    assert spec.sum1 == pytest.approx(nu.sum(), rel=1e-10)
    assert spec.sum2 == pytest.approx(nu @ nu, rel=1e-10)
    np.testing.assert_allclose(spec.leading(12), nu[:12], rtol=1e-8)
    w, c = spec.representation(12)
    assert c.sum() == N - 2 and w @ c == pytest.approx(nu.sum(), rel=1e-10)
    assert (w * w) @ c == pytest.approx(nu @ nu, rel=1e-10)


def test_effective_df_and_signal_share_from_the_eigenvalues(data):
    ref, kry = _pair(data, "gaussian")
    assert kry.edf == pytest.approx(ref.edf, rel=1e-8)
    assert kry.signal_share == pytest.approx(ref.signal_share, rel=1e-8)


def test_what_needs_the_spectrum_raises_naming_the_option(data):
    m = mn.MixedLMNTK(data["y"], data["X"], data["Z"], network=mn.MLP(depth=2),
                      decomposition="lanczos")
    for kw in ({"t_method": "gcv"}, {"t_method": "loo"}, {"t_method": "auto"},
               {"free_modes": 1}):
        with pytest.raises(ValueError, match="decomposition='lanczos'"):
            m.fit(**kw)
    res = m.fit()
    assert res.auto_check.reason.startswith("not run")
    assert res.stopping_diagnostic is None
    with pytest.raises(ValueError, match="method='mixture'"):
        res.lr_test()
    with pytest.raises(ValueError, match="decomposition='lanczos'"):
        mn.plotting.spectral_losses(res)
    with pytest.raises(ValueError, match="decomposition='lanczos'"):
        res.predict(interval="confidence")  # in-sample intervals: diag(exp(-tK))
    text = str(res.summary())
    assert "Krylov basis" in text and "not computed" in text and "lanczos" in text


def test_auto_uses_the_krylov_route_and_falls_back_for_spectral_rules(data, monkeypatch):
    monkeypatch.setattr(mixednn.model, "LANCZOS_AUTO_MIN_N", 100)
    m = mn.MixedLMNTK(data["y"], data["X"], data["Z"], network=mn.MLP(depth=2))
    res = m.fit()
    assert m.basis.kind == "lanczos"
    dense = mn.MixedLMNTK(data["y"], data["X"], data["Z"], network=mn.MLP(depth=2),
                          decomposition="eigh")
    assert abs(res.t - dense.fit().t) <= 1e-8 * res.t
    gcv = m.fit(t_method="gcv")
    assert gcv.model.basis.kind == "eigh" and m.basis.kind == "lanczos"
    assert gcv.t == pytest.approx(dense.fit(t_method="gcv").t, rel=1e-8)
    # what reads every eigen-direction uses the same fit on the full decomposition
    ref = dense.fit()
    assert res.lr_test(nsim=200, seed=1).pvalue == ref.lr_test(nsim=200, seed=1).pvalue
    a, b = ref.predict(interval="prediction"), res.predict(interval="prediction")
    assert rel_diff(b, a) <= 1e-8
    assert m.full_spectrum_model().basis.kind == "eigh"


def test_groups_refuse_the_krylov_basis(data):
    df = pd.DataFrame({"y": data["y"], "x": data["X"][:, 1], "z1": data["Z"][:, 0],
                       "z2": data["Z"][:, 1], "g": np.arange(N) % 8})
    m = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", df, ntk=["z1", "z2"],
                                   decomposition="lanczos")
    with pytest.raises(ValueError, match="decomposition='lanczos'"):
        m.fit()


def test_convergence_criterion_and_invariant_spaces(data):
    K = rbf(data["Z"], data["Z"])
    B = np.column_stack([data["y"], data["X"]])
    basis = lanczos_basis(K, B)
    dims, changes = zip(*basis.history)
    assert basis.converged and not basis.invariant
    assert changes[-1] < KRYLOV_TOL and changes[-2] < KRYLOV_TOL and changes[-3] >= KRYLOV_TOL
    assert basis.dimension == dims[-1] < N
    # a rank-8 kernel: the space becomes K-invariant and the fit is exact
    Phi = np.random.default_rng(3).normal(size=(N, 8))
    low = lanczos_basis(Phi @ Phi.T, B)
    assert low.invariant and low.dimension <= 8 + B.shape[1]
    # the profile of a smaller space differs
    small = lanczos_basis(K, B, max_dim=8)
    assert not small.converged
    assert profile_change(basis.spectral_profile(), small.spectral_profile()) > 1e-6


def test_block_lanczos_basis_is_orthonormal_and_projects_the_operator():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(60, 60))
    A = A @ A.T
    start = rng.normal(size=(60, 3))
    start[:, 2] = start[:, 0] + start[:, 1]  # a dependent column is deflated
    eng = BlockLanczos(A.__matmul__, start)
    for _ in range(6):
        eng.step()
    Q = eng.basis
    assert Q.shape[1] == 12
    np.testing.assert_allclose(Q.T @ Q, np.eye(12), atol=1e-12)
    np.testing.assert_allclose(eng.projected, Q.T @ A @ Q, atol=1e-10 * np.abs(A).max())
    theta, S = eng.ritz()
    res = np.linalg.norm(A @ (Q @ S) - (Q @ S) * theta, axis=0)
    np.testing.assert_allclose(eng.residual_norms(S), res, atol=1e-9 * np.abs(A).max())


def test_saved_fit_predicts_the_same(data, tmp_path):
    m = mn.MixedLMNTK(data["y"], data["X"], data["Z"], network=mn.MLP(depth=2),
                      decomposition="lanczos")
    res = m.fit()
    path = tmp_path / "fit.mixednn"
    res.save(path, remove_data=True)
    back = mn.load(path)
    a = res.predict(exog=data["Xn"], ntk_inputs=data["Zn"], interval="prediction")
    b = back.predict(exog=data["Xn"], ntk_inputs=data["Zn"], interval="prediction")
    pd.testing.assert_frame_equal(a, b)
