"""The Krylov route without a stored kernel (``matrix_free=``) and on a torch device
(``device=``, exercised with ``device="cpu"``: the same torch code a GPU runs): the same fit
and predictions as the stored-kernel Krylov route, memory O(n b), clear errors."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import mixednn as mn
from mixednn.kernels.operator import KernelOperator, check_device, tile_height

from .conftest import rbf, rel_diff

N = 300
TOL = 1e-10


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(N + 7, 3))
    X = np.column_stack([np.ones(N + 7), rng.normal(size=N + 7)])
    y = X @ [0.5, -1.0] + np.sin(2 * Z[:, 0]) + Z[:, 1] * Z[:, 2] + 0.4 * rng.normal(size=N + 7)
    w = rng.uniform(0.5, 2.0, size=N)
    return {"y": y[:N], "X": X[:N], "Z": Z[:N], "Xn": X[N:], "Zn": Z[N:], "w": w}


def _fit(data, weights=False, **kw):
    m = mn.MixedLMNTK(data["y"], data["X"], data["Z"], decomposition="lanczos",
                      weights=data["w"] if weights else None, **kw)
    res = m.fit()
    pred = res.predict(exog=data["Xn"], ntk_inputs=data["Zn"], interval="prediction")
    return m, res, np.asarray(pred, dtype=float)


def _same(a, b) -> None:
    (_, ra, pa), (_, rb, pb) = a, b
    assert abs(ra.t - rb.t) <= TOL * rb.t
    assert rel_diff(ra.params, rb.params) <= TOL
    assert abs(ra.scale - rb.scale) <= TOL * rb.scale
    assert abs(ra.llf - rb.llf) <= TOL * abs(rb.llf)
    assert rel_diff(pa, pb) <= TOL


@pytest.mark.parametrize("weights", [False, True])
def test_matrix_free_equals_the_stored_kernel(data, weights):
    stored = _fit(data, weights)
    free = _fit(data, weights, matrix_free=64)
    _same(free, stored)
    assert free[0].basis.kernel.matrix_free and free[0].basis.kernel.tile_rows == 64
    assert "matrix-free" in free[1].summary().as_text()


def test_matrix_free_kernel_function_and_the_score_test(data):
    kw = dict(kernel=rbf)
    stored, free = _fit(data, **kw), _fit(data, matrix_free=50, **kw)
    _same(free, stored)
    for method in ("leading", "exact"):  # moments from the tiles; exact: K assembled on demand
        a = free[1].score_test(method=method).pvalue
        b = stored[1].score_test(method=method).pvalue
        assert abs(a - b) <= 1e-8 * b
    assert abs(free[1].edf - stored[1].edf) <= 1e-10 * stored[1].edf


@pytest.mark.parametrize("matrix_free", [False, 80])
def test_torch_device_cpu_equals_the_numpy_path(data, matrix_free):
    pytest.importorskip("torch")
    _same(_fit(data, True, device="cpu", matrix_free=matrix_free), _fit(data, True))


def test_operator_matches_the_gram_matrix(data):
    Z, s = data["Z"], np.sqrt(data["w"])
    net = mn.MLP(depth=2)
    K = s[:, None] * net.ntk(Z) * s[None, :]
    V = np.random.default_rng(0).normal(size=(N, 3))
    ops = [KernelOperator(Z, cross=net.ntk, tile_rows=70, scale=s)]
    try:
        import torch  # noqa: F401
        ops.append(KernelOperator(Z, network=net, tile_rows=70, scale=s, device="cpu",
                                  store=True))
    except ImportError:  # pragma: no cover
        pass
    for op in ops:
        assert rel_diff(op @ V, K @ V) <= 1e-13
        assert rel_diff(op @ V[:, 0], K @ V[:, 0]) <= 1e-13
        assert rel_diff(op.diagonal(), np.diag(K)) <= 1e-14
        assert abs(op.frobenius_squared() - np.sum(K * K)) <= 1e-12 * np.sum(K * K)
        assert rel_diff(op.dense(), K) <= 1e-14
    assert tile_height(3000, 256 * 3000 * 8) == 256 and tile_height(10, 1e9) == 10


def test_no_n_by_n_array_is_allocated():
    n, b = 3000, 256
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(n, 4))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [1.0, 0.5] + np.sin(2 * Z[:, 0]) + 0.5 * rng.normal(size=n)
    m = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=1), matrix_free=b)
    tracemalloc.start()
    try:
        res = m.fit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.t > 0 and m.basis.converged
    # a stored kernel alone is n^2 * 8 = 72 MB; a tile b x n is 6 MB
    assert peak < 0.25 * n * n * 8, peak


def test_errors_name_the_option(data):
    y, X, Z = data["y"], data["X"], data["Z"]
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device='cuda'.*cuda.is_available\(\).*device=None"):
            mn.MixedLMNTK(y, X, Z, device="cuda")
    with pytest.raises(ValueError, match="not a torch device"):
        check_device("no-such-device")
    with pytest.raises(ValueError, match="device=.*activations"):
        mn.MixedLMNTK(y, X, Z, network=mn.MLP(activation="gelu"), device="cpu")
    with pytest.raises(ValueError, match="device=.*kernel"):
        mn.MixedLMNTK(y, X, Z, kernel=rbf, device="cpu")
    with pytest.raises(ValueError, match="matrix_free=.*precomputed"):
        mn.MixedLMNTK(y, X, kernel=mn.MLP().ntk(Z), matrix_free=True)
    with pytest.raises(ValueError, match="conflicts with decomposition='eigh'"):
        mn.MixedLMNTK(y, X, Z, decomposition="eigh", matrix_free=True)
    with pytest.raises(ValueError, match="low_rank="):
        mn.MixedLMNTK(y, X, Z, low_rank=20, matrix_free=True)
    with pytest.raises(ValueError, match="tile height"):
        mn.MixedLMNTK(y, X, Z, matrix_free=0)
    with pytest.raises(ValueError, match="group random effects"):
        mn.MixedLMNTK(y, X, Z, groups=np.arange(N) % 5, matrix_free=True)


def test_saved_matrix_free_fit_predicts_the_same(data, tmp_path):
    _, res, pred = _fit(data, matrix_free=100)
    path = tmp_path / "fit.pkl"
    res.save(path)
    again = mn.load(path).predict(exog=data["Xn"], ntk_inputs=data["Zn"], interval="prediction")
    assert rel_diff(np.asarray(again, dtype=float), pred) <= 1e-14
