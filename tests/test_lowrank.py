"""Feature-space fits (issue 7): K = Phi Phi^T from sums over row chunks.

Every check compares with the dense path (an n x n kernel and its eigendecomposition)
on a kernel that *is* Phi Phi^T, or with brute-force formulas of docs/model.md (sections 2.6, 4 and 7).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixednn as mn
from mixednn.kernels import resolve_kernel
from mixednn.features import (FunctionFeatures, NystromFeatures, kernel_diagonal, scan_pool,
                              select_landmarks)
from mixednn.lowrank import FeatureBasis
from mixednn.rows import ArraySource
from mixednn.exceptions import KernelMemoryError
from mixednn.numerics import check_kernel_memory
from mixednn.exceptions import KernelClippedWarning

from .conftest import dense_fit, RandomFeatureKernel, rel_diff


@pytest.fixture(scope="module")
def feat_problem():
    """n = 150 rows, 30 random Fourier features: K = Phi Phi^T has rank 30 < n."""
    rng = np.random.default_rng(7)
    n, d = 150, 2
    Z = rng.normal(size=(n, d))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [0.5, -1.0] + np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=n)
    rf = RandomFeatureKernel(d, m=30, seed=3, freq=1.0)
    fmap = FunctionFeatures(lambda A: rf.features(A) / np.sqrt(rf.m), dim=30)
    Znew = rng.normal(size=(7, d))
    Xnew = np.column_stack([np.ones(7), rng.normal(size=7)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KernelClippedWarning)
        dense = mn.MixedLMNTK(y, X, Z, kernel=lambda A, B: fmap(A) @ fmap(B).T,
                              decomposition="eigh")
        dense.basis  # noqa: B018  (decompose now, under the filter)
    feat = mn.MixedLMNTK(y, X, Z, kernel=lambda A, B: fmap(A) @ fmap(B).T, low_rank=fmap)
    return {"y": y, "X": X, "Z": Z, "fmap": fmap, "dense": dense, "feat": feat,
            "Znew": Znew, "Xnew": Xnew}


@pytest.mark.parametrize("reml", [True, False])
def test_feature_space_fit_equals_dense_fit_when_kernel_is_phi_phit(feat_problem, reml):
    dense, feat = feat_problem["dense"], feat_problem["feat"]
    assert isinstance(feat.basis, FeatureBasis) and feat.basis.rank == 30
    for t in [0.0, 0.3, 2.0, 20.0]:
        a, b = dense.profile.point(t, reml), feat.profile.point(t, reml)
        assert abs(a.llf - b.llf) <= 1e-9 * abs(a.llf)
        assert rel_diff(b.beta, a.beta) <= 1e-9 and rel_diff(b.scale, a.scale) <= 1e-9
    rd, rf = dense.fit(reml=reml), feat.fit(reml=reml)
    assert rd.t > 0
    assert rel_diff(rf.t, rd.t) <= 1e-7
    assert abs(rf.llf - rd.llf) <= 1e-9 * abs(rd.llf)
    assert rel_diff(rf.params, rd.params) <= 1e-7 and rel_diff(rf.bse, rd.bse) <= 1e-6
    assert rel_diff(rf.random_effects, rd.random_effects) <= 1e-7
    assert rel_diff(rf.fittedvalues, rd.fittedvalues) <= 1e-7
    assert rel_diff(rf.edf, rd.edf) <= 1e-7 and rel_diff(rf.signal_share, rd.signal_share) <= 1e-7
    np.testing.assert_allclose(rf.t_conf_int(), rd.t_conf_int(), rtol=1e-6)
    # the BLUP is the brute-force (I - exp(-tK)) r of docs/model.md eq. (1)
    K = dense.kernel_matrix()
    ref = dense_fit(feat_problem["y"], feat_problem["X"], K, rf.t, reml=reml)
    assert rel_diff(rf.random_effects, ref["blup"]) <= 1e-7


@pytest.mark.parametrize("interval", [None, "confidence", "prediction"])
def test_feature_space_predictions_equal_dense(feat_problem, interval):
    rd, rf = feat_problem["dense"].fit(), feat_problem["feat"].fit()
    kw = dict(exog=feat_problem["Xnew"], ntk_inputs=feat_problem["Znew"], interval=interval)
    pd_, pf = rd.predict(**kw), rf.predict(**kw)
    assert rel_diff(pf, pd_) <= 1e-7
    # in-sample intervals come from the training features, chunk by chunk
    ins_d, ins_f = rd.predict(interval=interval), rf.predict(interval=interval)
    assert rel_diff(ins_f, ins_d) <= 1e-7


def test_feature_space_score_and_lr_tests_equal_dense(feat_problem):
    rd, rf = feat_problem["dense"].fit(), feat_problem["feat"].fit()
    sd, sf = rd.score_test(), rf.score_test()
    assert rel_diff(sf.statistic, sd.statistic) <= 1e-9
    assert abs(sf.pvalue - sd.pvalue) <= 1e-8 + 1e-6 * sd.pvalue
    ld, lf = rd.lr_test(nsim=300, seed=1), rf.lr_test(nsim=300, seed=1)
    assert rel_diff(lf.statistic, ld.statistic) <= 1e-6
    assert 0 <= lf.pvalue <= 1


def test_nystrom_with_all_rows_as_landmarks_equals_exact_fit():
    rng = np.random.default_rng(2)
    n = 120
    Z = rng.normal(size=(n, 3))
    X = np.ones((n, 1))
    y = np.sin(Z[:, 0]) + Z[:, 1] * Z[:, 2] + 0.3 * rng.normal(size=n)
    net = mn.MLP(depth=2, bias_std=0.1)
    exact = mn.MixedLMNTK(y, X, Z, network=net, decomposition="eigh").fit()
    nys = mn.MixedLMNTK(y, X, Z, network=net, low_rank=n).fit()
    b = nys.model.basis
    assert b.kind == "nystrom" and b.feature_map.n_landmarks == n
    assert abs(b.trace_error) <= 1e-7 * b.kernel_trace  # K_m = K (eigenvalues < 1e-10 max cut)
    assert rel_diff(nys.t, exact.t) <= 1e-6
    assert abs(nys.llf - exact.llf) <= 1e-8 * abs(exact.llf)
    assert rel_diff(nys.params, exact.params) <= 1e-7
    assert rel_diff(nys.fittedvalues, exact.fittedvalues) <= 1e-6
    Zn = rng.normal(size=(5, 3))
    for cross in ("features", "exact"):
        got = nys.predict(exog=np.ones((5, 1)), ntk_inputs=Zn, interval="prediction", cross=cross)
        ref = exact.predict(exog=np.ones((5, 1)), ntk_inputs=Zn, interval="prediction")
        assert rel_diff(got, ref) <= 1e-6


def test_nystrom_fit_is_the_dense_fit_of_k_m_and_trace_error_is_exact():
    """m < n: the feature-space fit is exactly the dense fit of K_m = K_nL K_LL^+ K_Ln."""
    rng = np.random.default_rng(5)
    n, m = 160, 40
    Z = rng.normal(size=(n, 4))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [1.0, 0.3] + np.tanh(2 * Z[:, 0]) + 0.2 * rng.normal(size=n)
    net = mn.MLP(depth=2)
    mod = mn.MixedLMNTK(y, X, Z, network=net, low_rank=m, landmarks="kmeans++", seed=3)
    res = mod.fit()
    fm = mod.basis.feature_map
    Zs = mod.scaled_inputs
    L = fm.landmarks
    Km = net.ntk(Zs, L) @ np.linalg.pinv(net.ntk(L), rcond=1e-10, hermitian=True) @ net.ntk(L, Zs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KernelClippedWarning)
        dense = mn.MixedLMNTK(y, X, Z, kernel=0.5 * (Km + Km.T), decomposition="eigh")
        ref = dense.fit()
    assert rel_diff(res.t, ref.t) <= 1e-6
    assert abs(res.llf - ref.llf) <= 1e-8 * abs(ref.llf)
    assert rel_diff(res.random_effects, ref.random_effects) <= 1e-6
    K = net.ntk(Zs)
    assert mod.basis.trace_error == pytest.approx(np.trace(K) - np.trace(Km), rel=1e-8)
    assert mod.basis.kernel_trace == pytest.approx(np.trace(K), rel=1e-12)
    text = " ".join(str(res.summary()).split())  # line breaks depend on the other lines
    assert "Nystrom trace error tr(K - K_m)" in text and "m = 40" in text
    # predictions with the exact cross-kernel: model.md (3) with the eigenpairs of K_m
    Zn = rng.normal(size=(6, 4))
    Xn = np.column_stack([np.ones(6), rng.normal(size=6)])
    got = res.predict(exog=Xn, ntk_inputs=Zn, cross="exact", interval="confidence")
    lam, U = np.linalg.eigh(0.5 * (Km + Km.T))
    keep = lam > 1e-9 * lam.max()
    lam, U = lam[keep], U[:, keep]
    r = y - X @ res.params.to_numpy()
    phi = -np.expm1(-res.t * lam) / lam
    ks = net.ntk(mod.input_scaling.apply(Zn), Zs)
    mean = Xn @ res.params.to_numpy() + ks @ (U @ (phi * (U.T @ r)))
    assert rel_diff(got["mean"], mean) <= 1e-6
    kt = U.T @ ks.T
    var_u = res.scale * ((-np.expm1(-res.t * lam) / lam ** 2) @ kt ** 2)
    Xr = U.T @ X
    Lm = Xn - kt.T @ (phi[:, None] * Xr)
    var = var_u + np.einsum("ij,jk,ik->i", Lm, res.cov_params_fe.to_numpy(), Lm)
    assert rel_diff(got["se"], np.sqrt(var)) <= 1e-6
    # through the feature map: the Nystrom cross-kernel K_m(z*, Z)
    feat = res.predict(exog=Xn, ntk_inputs=Zn, cross="features")
    ksm = fm(mod.input_scaling.apply(Zn)) @ fm(Zs).T
    assert rel_diff(feat, Xn @ res.params.to_numpy() + ksm @ (U @ (phi * (U.T @ r)))) <= 1e-6
    assert feat.attrs["cross"] == "features"
    assert res.predict(exog=Xn, ntk_inputs=Zn).attrs["cross"] == "exact"  # auto, small n


def test_exact_jacobian_features_equal_dense_empirical_ntk():
    torch = pytest.importorskip("torch")
    from mixednn.kernels.empirical import finite_network_source

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    net = net.double()
    rng = np.random.default_rng(1)
    n = 80  # 25 parameters < n: K = J J^T has rank 25
    Z = rng.normal(size=(n, 2))
    y = np.sin(Z[:, 0]) + 0.2 * rng.normal(size=n)
    X = np.ones((n, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KernelClippedWarning)
        dense = mn.MixedLMNTK(y, X, Z, network=finite_network_source(net, feature_form=False),
                              decomposition="eigh")
        rd = dense.fit()
    feat = mn.MixedLMNTK(y, X, Z, network=net, low_rank="exact")
    rf = feat.fit()
    assert feat.basis.kind == "jacobian" and feat.basis.trace_error is None
    assert "exact: no approximation" in feat.basis.summary_line()
    assert rel_diff(rf.t, rd.t) <= 1e-6
    assert abs(rf.llf - rd.llf) <= 1e-8 * abs(rd.llf)
    assert rel_diff(rf.fittedvalues, rd.fittedvalues) <= 1e-6  # offset f0 = network at init
    Zn = rng.normal(size=(4, 2))
    assert rel_diff(rf.predict(exog=np.ones((4, 1)), ntk_inputs=Zn, interval="confidence"),
                rd.predict(exog=np.ones((4, 1)), ntk_inputs=Zn, interval="confidence")) <= 1e-6


@pytest.mark.parametrize("net", [mn.MLP(depth=2), mn.MLP(depth=3, bias_std=0.2),
                                 mn.MLP(depth=1, activation="erf", weight_std=1.3, bias_std=0.5),
                                 mn.MLP(depth=2, activation="tanh", bias_std=0.1)])
def test_kernel_diagonal_equals_the_ntk_diagonal(net):
    Z = np.random.default_rng(4).normal(size=(40, 3)) * 1.5
    src = resolve_kernel(net, has_inputs=True)
    np.testing.assert_allclose(kernel_diagonal(src, Z), np.diag(net.ntk(Z)), rtol=1e-10)
    # a kernel function: from small diagonal blocks
    src2 = resolve_kernel(kernel=lambda A, B: net.ntk(A, B), has_inputs=True)
    np.testing.assert_allclose(kernel_diagonal(src2, Z), np.diag(net.ntk(Z)), rtol=1e-12)


@pytest.mark.parametrize("rule", ["uniform", "kmeans++", "leverage", "rpcholesky"])
def test_landmark_rules_are_seeded_and_distinct(rule):
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(400, 3))
    k = mn.MLP().ntk
    diag = np.diag(k(Z))
    a = select_landmarks(Z, 30, rule, k, diag, seed=1)
    b = select_landmarks(Z, 30, rule, k, diag, seed=1)
    assert len(set(a.tolist())) == 30 and np.array_equal(a, b)
    assert a.min() >= 0 and a.max() < 400


def test_landmark_pool_does_not_depend_on_chunking():
    rng = np.random.default_rng(0)
    n = 1000
    Z = rng.normal(size=(n, 3))
    Z[500] = Z[10]  # a duplicated row
    args = (np.zeros(n), np.ones((n, 1)), Z, np.zeros(n))
    p1 = scan_pool(ArraySource(*args, chunk_rows=97), 50, seed=4)
    p2 = scan_pool(ArraySource(*args, chunk_rows=1000), 50, seed=4)
    p3 = scan_pool(ArraySource(*args, chunk_rows=333), 50, seed=5)
    assert np.array_equal(p1, p2) and not np.array_equal(p1, p3)
    assert p1.shape == (50, 3)


def test_kmeans_pp_spreads_landmarks_better_than_uniform():
    """On clustered inputs k-means++ covers every cluster; its Nystrom trace error is smaller."""
    rng = np.random.default_rng(3)
    centres = rng.normal(scale=4.0, size=(12, 2))
    Z = centres[rng.integers(0, 12, size=2000)] + 0.2 * rng.normal(size=(2000, 2))
    y = np.sin(Z[:, 0]) + 0.1 * rng.normal(size=2000)
    err = {}
    for rule in ("uniform", "kmeans++"):
        b = mn.MixedLMNTK(y, np.ones((2000, 1)), Z, network=mn.MLP(depth=1, bias_std=1.0),
                          low_rank=15, landmarks=rule, seed=0).basis
        err[rule] = b.trace_error / b.kernel_trace
    assert err["kmeans++"] < err["uniform"]


def test_low_rank_bad_input_raises_clear_errors(feat_problem):
    y, X, Z = feat_problem["y"], feat_problem["X"], feat_problem["Z"]
    for bad in (0, -3, 2.5, True, "nystrom"):
        with pytest.raises(ValueError, match="low_rank must be"):
            mn.MixedLMNTK(y, X, Z, low_rank=bad)
    with pytest.raises(ValueError, match="landmarks must be one of"):
        mn.MixedLMNTK(y, X, Z, low_rank=10, landmarks="random")
    with pytest.raises(ValueError, match="seed must be an integer"):
        mn.MixedLMNTK(y, X, Z, low_rank=10, seed=1.5)
    K = mn.MLP().ntk(Z)
    with pytest.raises(ValueError, match="precomputed"):
        mn.MixedLMNTK(y, X, Z, kernel=K, low_rank=10).fit()
    with pytest.raises(ValueError, match="finite network"):
        mn.MixedLMNTK(y, X, Z, low_rank="exact").fit()
    res = mn.MixedLMNTK(y, X, Z, low_rank=20).fit()
    with pytest.raises(ValueError, match="kernel= .* not used"):
        res.predict(exog=X[:2], kernel=np.ones((2, len(y))))
    with pytest.raises(ValueError, match="cross must be"):
        res.predict(exog=X[:2], ntk_inputs=Z[:2], cross="dense")
    with pytest.raises(ValueError, match="returned shape"):
        mn.MixedLMNTK(y, X, Z, low_rank=FunctionFeatures(lambda A: A, dim=5)).fit()
    with pytest.raises(ValueError, match="dim must be"):
        FunctionFeatures(lambda A: A, dim=0)
    with pytest.raises(ValueError, match="non-empty"):
        NystromFeatures(mn.MLP().ntk, np.empty((0, 2)))


def test_memory_guard_points_to_low_rank_and_dask():
    with pytest.raises(KernelMemoryError) as exc:
        check_kernel_memory(10**6, available=2**30)
    msg = str(exc.value)
    assert "low_rank=" in msg and "dask" in msg and "CSVSource" in msg


def test_low_rank_keeps_memory_off_n_squared():
    """n = 30,000: a dense fit would need 20 GiB; the feature-space fit holds O(m^2)."""
    rng = np.random.default_rng(0)
    n = 30_000
    Z = rng.normal(size=(n, 3))
    y = np.sin(Z[:, 0]) + 0.3 * rng.normal(size=n)
    mod = mn.MixedLMNTK(y, np.ones((n, 1)), Z, low_rank=60, landmarks="uniform")
    res = mod.fit()
    assert mod.basis.rank == 60 and res.t > 0 and np.isfinite(res.llf)
    assert res.fittedvalues.shape == (n,)
    # the fitted kernel's trace is ||Phi||_F^2 and the rest of the spectrum is zero
    assert res.edf < 60 and 0 < res.signal_share <= 1


def test_rlrt_of_a_complete_nystrom_basis_equals_the_dense_one():
    """low_rank = n reproduces the kernel: the remainder outside the basis is rounding, and
    the simulated RLRT must not fail on it (it raised 'inconsistent low-rank remainder')."""
    rng = np.random.default_rng(4)
    n = 60
    Z = rng.normal(size=(n, 2))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [1.0, 0.3] + np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=2), low_rank=n).fit(t_method="reml")
        dense = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=2)).fit(t_method="reml")
    a, b = full.lr_test(nsim=500, seed=3), dense.lr_test(nsim=500, seed=3)
    assert a.statistic == pytest.approx(b.statistic, rel=1e-6)
    assert abs(a.pvalue - b.pvalue) <= 0.05
