"""Tests of the infinite-width NNGP / NTK of fully connected networks.

Checks the analytic kernels of :class:`mixednn.kernels.analytic.MLP` against
hand-computed values of the recursion, the empirical NTK of wide finite torch
networks, Monte Carlo estimates of the output covariance and of the dual
activations, and Gauss-Hermite quadrature; plus symmetry, positive
semi-definiteness and input validation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import erf

from mixednn.kernels.activations import (
    ACTIVATIONS,
    TANH_ERF_RATES,
    TANH_ERF_WEIGHTS,
    canonical_activation,
    get_activation,
)
from mixednn.kernels.analytic import MLP, gaussian_expectations
from mixednn.kernels.torch_mlp import empirical_ntk, torch_module

ALL_ACTS = sorted(ACTIVATIONS)


def rel_fro(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.linalg.norm(A - B) / np.linalg.norm(B))


@pytest.fixture(scope="module")
def X20() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(20, 4))


# ---------------------------------------------------------------------------
# Hand-computed values of the recursion
# ---------------------------------------------------------------------------


def test_hand_computed_depth1_relu_unit_weights():
    # x1 = (1, 0), x2 = (1, 1), d = 2:  S0 = [[1/2, 1/2], [1/2, 1]], c = 1/sqrt 2,
    # theta = pi/4.  Readout (W = 1, b = 0): nngp = E[relu relu], ntk = nngp + S0 * E[step step]
    Z = np.array([[1.0, 0.0], [1.0, 1.0]])
    K, T = MLP(depth=1, activation="relu").kernels(Z)
    k12 = (1 + 3 * math.pi / 4) / (4 * math.pi)  # sqrt(1/2)/(2 pi) (sin + (pi - theta) cos)
    d12 = 3.0 / 8.0  # (pi - pi/4) / (2 pi)
    K_hand = np.array([[0.25, k12], [k12, 0.5]])  # E[relu(a)^2] = k/2
    T_hand = np.array([[0.25 + 0.5 * 0.5, k12 + 0.5 * d12], [k12 + 0.5 * d12, 0.5 + 1.0 * 0.5]])
    np.testing.assert_allclose(K, K_hand, rtol=1e-14, atol=0)
    np.testing.assert_allclose(T, T_hand, rtol=1e-14, atol=0)
    assert T[1, 1] == pytest.approx(1.0, abs=1e-15)


def test_hand_computed_depth1_relu_with_bias():
    # W_std = 2, b_std = 1, x1 = (1, 0), x2 = (0, 1):
    # S0 = 4 x.x'/2 + 1 = [[3, 1], [1, 3]], c = 1/3.
    Z = np.array([[1.0, 0.0], [0.0, 1.0]])
    K, T = MLP(depth=1, activation="relu", weight_std=2.0, bias_std=1.0).kernels(Z)
    th = math.acos(1.0 / 3.0)
    e12 = 3.0 / (2 * math.pi) * (math.sin(th) + (math.pi - th) / 3.0)
    d12 = (math.pi - th) / (2 * math.pi)
    nngp12 = 4 * e12 + 1
    ntk12 = nngp12 + 4 * d12 * 1.0  # Theta after the first Dense = S0
    nngp11 = 4 * 1.5 + 1  # E[relu^2] = 3/2
    ntk11 = nngp11 + 4 * 0.5 * 3.0
    np.testing.assert_allclose(K, [[nngp11, nngp12], [nngp12, nngp11]], rtol=1e-14)
    np.testing.assert_allclose(T, [[ntk11, ntk12], [ntk12, ntk11]], rtol=1e-14)


def test_depth0_is_linear_kernel(X20):
    m = MLP(depth=0, weight_std=1.5, bias_std=0.5)
    K, T = m.kernels(X20)
    lin = 2.25 * X20 @ X20.T / 4 + 0.25
    np.testing.assert_allclose(K, lin, rtol=1e-13)
    np.testing.assert_allclose(T, lin, rtol=1e-13)


def test_matches_stax_recursion_written_out(X20):
    # an independent, un-tiled transcription of the stax recursion (erf, depth 3)
    m = MLP(depth=3, activation="erf", weight_std=1.3, bias_std=0.4)
    Y = X20[:7] * 1.7
    sw2, sb2 = 1.3**2, 0.4**2
    S = sw2 * X20 @ Y.T / 4 + sb2
    s1 = sw2 * np.sum(X20**2, 1) / 4 + sb2
    s2 = sw2 * np.sum(Y**2, 1) / 4 + sb2
    T = S.copy()
    for _ in range(3):
        P = np.outer(1 + 2 * s1, 1 + 2 * s2)
        dot = 4 / np.pi / np.sqrt(P - 4 * S**2)
        S = 2 / np.pi * np.arcsin(2 * S / np.sqrt(P))
        s1 = 2 / np.pi * np.arcsin(2 * s1 / (1 + 2 * s1))
        s2 = 2 / np.pi * np.arcsin(2 * s2 / (1 + 2 * s2))
        T = T * dot
        S, s1, s2 = sw2 * S + sb2, sw2 * s1 + sb2, sw2 * s2 + sb2
        T = S + sw2 * T
    K2, T2 = m.kernels(X20, Y)
    np.testing.assert_allclose(K2, S, rtol=1e-12)
    np.testing.assert_allclose(T2, T, rtol=1e-12)


# ---------------------------------------------------------------------------
# Finite-width networks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "activation,bias_std,depth",
    [
        ("relu", 0.0, 1),
        ("erf", 0.0, 1),
        ("tanh", 0.3, 1),
        ("relu", 0.5, 2),
        ("erf", 0.0, 2),
        ("tanh", 0.3, 2),
    ],
)
def test_empirical_ntk_of_wide_network_matches(X20, activation, bias_std, depth):
    m = MLP(depth=depth, activation=activation, bias_std=bias_std, width=4096)
    A = m.ntk(X20)
    Xt = torch.from_numpy(X20)
    seeds = range(4) if depth == 1 else range(2)  # averages cut the O(1/sqrt(width)) noise
    E = np.mean([torch_module(m, 4, seed=s).ntk(Xt).numpy() for s in seeds], axis=0)
    assert rel_fro(E, A) < 0.05


@pytest.mark.parametrize("activation", ["relu", "erf", "tanh", "gelu", "softplus", "identity"])
def test_layerwise_empirical_ntk_equals_torch_func_jacobians(activation):
    # MLPNetwork.ntk (layer-wise backprop signals) is the sum over all
    # parameters of grad f(x) grad f(x')^T, computed generically here
    m = MLP(depth=2, activation=activation, width=24, weight_std=1.2, bias_std=0.3)
    net = torch_module(m, 3, seed=1)
    X = torch.from_numpy(np.random.default_rng(2).normal(size=(9, 3)))
    Y = X[:4] + 0.5
    J = empirical_ntk(net, X, Y)
    np.testing.assert_allclose(net.ntk(X, Y).numpy(), J.numpy(), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(net.ntk(X).numpy(), empirical_ntk(net, X).numpy(), rtol=1e-11,
                               atol=1e-11)


def _mc_output_second_moment(m: MLP, X: np.ndarray, n_draws: int) -> np.ndarray:
    # many tiny forward passes: torch's intra-op threads only add overhead here
    Xt = torch.from_numpy(X)
    nthreads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            F = np.stack([torch_module(m, X.shape[1], seed=s)(Xt).numpy() for s in range(n_draws)])
    finally:
        torch.set_num_threads(nthreads)
    return F.T @ F / n_draws  # E f = 0: the readout weights are centred


def test_nngp_matches_monte_carlo_depth1():
    # depth 1: the hidden units are exactly Gaussian at any width, so the
    # output covariance over initialisations is the NNGP with no width bias
    X = np.random.default_rng(3).normal(size=(8, 3))
    m = MLP(depth=1, activation="relu", bias_std=0.5, weight_std=1.4, width=64)
    assert rel_fro(_mc_output_second_moment(m, X, 3000), m.nngp(X)) < 0.05


@pytest.mark.parametrize("activation,bias_std", [("tanh", 0.2), ("relu", 0.3)])
def test_nngp_matches_monte_carlo_depth2(activation, bias_std):
    # "wide last layer": given the hidden layers, the output covariance over
    # the readout weights is W^2/m F F^T + b^2 (F the last hidden activations);
    # averaging it over initialisations of the hidden layers gives the NNGP up
    # to O(1/width)
    X = np.random.default_rng(4).normal(size=(8, 3))
    m = MLP(depth=2, activation=activation, bias_std=bias_std, width=256)
    Xt = torch.from_numpy(X)
    nthreads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            acc = sum(
                (lambda F: F @ F.T)(torch_module(m, 3, seed=s).features(Xt).numpy())
                for s in range(300)
            )
    finally:
        torch.set_num_threads(nthreads)
    E = acc / 300 / m.width * m.weight_std**2 + m.bias_std**2
    assert rel_fro(E, m.nngp(X)) < 0.03


def test_torch_module_shapes_and_params():
    m = MLP(depth=2, activation="gelu", width=10, bias_std=0.1)
    net = torch_module(m, 3, seed=0)
    assert net(torch.zeros(5, 3, dtype=torch.float64)).shape == (5,)
    assert sum(p.numel() for p in net.parameters()) == m.n_params(3) == 161
    assert MLP(depth=2, width=10).n_params(3) == 140  # no biases when bias_std == 0
    # seeded initialisation is reproducible; the parameterisation is NTK
    net2 = torch_module(m, 3, seed=0)
    for p, q in zip(net.parameters(), net2.parameters()):
        assert torch.equal(p, q)
    x = torch.randn(4, 3, dtype=torch.float64)
    W0, b0 = net.weights[0], net.biases[0]
    z0 = 1.0 / math.sqrt(3) * x @ W0.T + 0.1 * b0
    h = ACTIVATIONS["gelu"].torch_fn(z0)
    z1 = 1.0 / math.sqrt(10) * h @ net.weights[1].T + 0.1 * net.biases[1]
    h = ACTIVATIONS["gelu"].torch_fn(z1)
    out = 1.0 / math.sqrt(10) * h @ net.weights[2].T + 0.1 * net.biases[2]
    torch.testing.assert_close(net(x), out.squeeze(-1))
    assert net.weights[1].dtype == torch.float64
    assert torch_module(m, 3, seed=0, dtype=torch.float32).weights[0].dtype == torch.float32


def test_torch_activations_match_numpy():
    x = np.linspace(-6, 6, 301)
    for name, act in ACTIVATIONS.items():
        phi, dphi = act.phi, act.dphi
        xt = torch.tensor(x, requires_grad=True)
        y = act.torch_fn(xt)
        (g,) = torch.autograd.grad(y.sum(), xt)
        np.testing.assert_allclose(y.detach().numpy(), phi(x), rtol=1e-12, atol=1e-12)
        keep = np.abs(x) > 1e-9  # kinks of relu / abs / leaky_relu
        np.testing.assert_allclose(g.numpy()[keep], dphi(x)[keep], rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# Dual activations: closed forms, quadrature, Monte Carlo
# ---------------------------------------------------------------------------

COVS = [(1.0, 0.3, 0.8), (0.5, -0.35, 0.7), (2.0, 1.9, 2.1), (0.3, 0.0, 1.2)]


@pytest.mark.parametrize("activation", ["tanh", "gelu", "softplus", "sigmoid", "erf", "relu", "sin"])
def test_dual_activation_vs_monte_carlo(activation):
    act = ACTIVATIONS[activation]
    phi, dphi = act.phi, act.dphi
    rng = np.random.default_rng(5)
    z = rng.standard_normal((2, 1_000_000))
    for k11, k12, k22 in COVS:
        L = np.linalg.cholesky([[k11, k12], [k12, k22]])
        a, b = L @ z
        for method in ("auto", "quadrature"):
            e, de = gaussian_expectations(activation, k11, k12, k22, method=method, n_nodes=64)
            for val, samples in ((e, phi(a) * phi(b)), (de, dphi(a) * dphi(b))):
                se = samples.std() / math.sqrt(samples.size)
                tol = 5 * se + (2e-2 * abs(val) if activation == "relu" and method != "auto" else 0)
                assert abs(float(val) - samples.mean()) < tol, (activation, method, k11, k12)


def _grid():
    c = np.array([-1.0, -0.999, -0.9, -0.5, 0.0, 0.3, 0.7, 0.95, 0.999, 1.0])
    out = []
    for q1, q2 in ((0.2, 0.9), (0.7, 0.7), (1.0, 0.4)):
        out.append((np.full_like(c, q1), c * math.sqrt(q1 * q2), np.full_like(c, q2)))
    return [np.concatenate(v) for v in zip(*out)]


@pytest.mark.parametrize(
    "activation,tol",
    [("erf", 1e-8), ("gelu", 1e-8), ("tanh", 1e-8), ("sigmoid", 1e-8), ("softplus", 5e-8),
     ("sin", 1e-10)],
)
def test_closed_forms_agree_with_quadrature(activation, tol):
    k11, k12, k22 = _grid()
    e, de = gaussian_expectations(activation, k11, k12, k22, method="closed")
    eq, deq = gaussian_expectations(activation, k11, k12, k22, method="quadrature", n_nodes=64)
    np.testing.assert_allclose(eq, e, rtol=0, atol=tol * np.abs(e).max())
    np.testing.assert_allclose(deq, de, rtol=0, atol=tol * np.abs(de).max())


def test_relu_quadrature_converges_to_arc_cosine_kernel():
    # the kink of relu (and the jump of its derivative) limits Gauss-Hermite to
    # algebraic convergence, so only a loose tolerance is reachable here
    k11, k12, k22 = _grid()
    e, de = gaussian_expectations("relu", k11, k12, k22, method="closed")
    errs = []
    for n in (8, 32, 128):
        eq, deq = gaussian_expectations("relu", k11, k12, k22, method="quadrature", n_nodes=n)
        errs.append((np.abs(eq - e).max(), np.abs(deq - de).max()))
    assert errs[0][0] > errs[1][0] > errs[2][0] and errs[0][1] > errs[1][1] > errs[2][1]
    assert errs[2][0] < 3e-3 * np.abs(e).max() and errs[2][1] < 2e-2 * np.abs(de).max()
    # closed forms at known points: independent inputs and the diagonal
    e0, de0 = gaussian_expectations("relu", 1.0, 0.0, 1.0)
    assert e0 == pytest.approx(1 / (2 * math.pi), rel=1e-15) and de0 == pytest.approx(0.25)
    e1, de1 = gaussian_expectations("relu", 2.0, 2.0, 2.0)
    assert e1 == pytest.approx(1.0, rel=1e-15) and de1 == pytest.approx(0.5, rel=1e-15)


def test_erf_mixture_surrogate_is_uniformly_close_to_tanh():
    x = np.linspace(-60, 60, 240_001)
    psi = erf(np.outer(x, TANH_ERF_RATES)) @ TANH_ERF_WEIGHTS
    dpsi = (2 / math.sqrt(math.pi)) * np.exp(-np.outer(x, TANH_ERF_RATES) ** 2) @ (TANH_ERF_WEIGHTS * TANH_ERF_RATES)
    assert np.all(TANH_ERF_WEIGHTS > 0)
    assert np.abs(psi - np.tanh(x)).max() < 1e-9
    assert np.abs(dpsi - (1 - np.tanh(x) ** 2)).max() < 2e-9


def test_tanh_kernel_accurate_at_large_variance():
    # where plain Gauss-Hermite is poor (variance 9), the mixture form still
    # agrees with a 1e6-draw Monte Carlo estimate
    rng = np.random.default_rng(6)
    k11, k12, k22 = 9.0, 6.0, 8.0
    a, b = np.linalg.cholesky([[k11, k12], [k12, k22]]) @ rng.standard_normal((2, 1_000_000))
    e, de = gaussian_expectations("tanh", k11, k12, k22)
    ta, tb = np.tanh(a), np.tanh(b)
    for val, s in ((e, ta * tb), (de, (1 - ta**2) * (1 - tb**2))):
        assert abs(float(val) - s.mean()) < 5 * s.std() / 1000


# ---------------------------------------------------------------------------
# Structural properties
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ALL_ACTS)
def test_symmetric_psd_and_consistent(activation):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 5))
    X[10] = X[3]  # a duplicated row
    X[11] = 0.0  # a zero row
    m = MLP(depth=2, activation=activation, weight_std=1.2, bias_std=0.2)
    K, T = m.kernels(X)
    for M in (K, T):
        assert M.dtype == np.float64 and M.shape == (60, 60)
        assert np.isfinite(M).all()
        assert np.array_equal(M, M.T)
        ev = np.linalg.eigvalsh(M)
        assert ev.min() >= -1e-10 * ev.max()
    assert np.array_equal(K, m.nngp(X)) and np.array_equal(T, m.ntk(X))
    assert np.array_equal(T, m.ntk(X, X.copy()))
    assert np.array_equal(K, m.nngp(X, X.tolist()))
    # the rectangular path agrees with the symmetric one; at coincident points
    # the arc-cosine kernels with biases are limited by the conditioning of
    # arccos at 1 (about 1e-8), elsewhere they agree to rounding
    K2, T2 = m.kernels(X, X[:17])
    rtol = 1e-7 if m.activation in ("relu", "abs", "leaky_relu") else 1e-13
    np.testing.assert_allclose(K2, K[:, :17], rtol=rtol, atol=1e-14)
    np.testing.assert_allclose(T2, T[:, :17], rtol=rtol, atol=1e-14)
    np.testing.assert_allclose(m.ntk(X[:17], X), T[:17], rtol=rtol, atol=1e-14)
    # NTK dominates NNGP entry-wise on the diagonal
    assert np.all(np.diag(T) >= np.diag(K))



@pytest.mark.parametrize("activation", ALL_ACTS)
@pytest.mark.parametrize("bias_std", [0.0, 0.3])
def test_ntk_diagonal_equals_diagonal_of_ntk(activation, bias_std):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(25, 3)) * 1.5
    X[4] = 0.0  # a zero row
    X[7] = X[2]  # a duplicated row
    for depth in (0, 1, 2, 3):
        m = MLP(depth=depth, activation=activation, weight_std=1.3, bias_std=bias_std)
        d = m.ntk_diagonal(X)
        assert d.shape == (25,) and d.dtype == np.float64
        np.testing.assert_allclose(d, np.diag(m.ntk(X)), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
def test_ntk_diagonal_with_quadrature(activation):
    # the generic (Gauss-Hermite) route: the path of activations without a closed form
    X = np.random.default_rng(12).normal(size=(15, 2))
    m = MLP(depth=2, activation=activation, bias_std=0.2, quadrature_nodes=16)
    np.testing.assert_allclose(m.ntk_diagonal(X), np.diag(m.ntk(X)), rtol=1e-12)


def test_ntk_diagonal_inputs():
    m = MLP(depth=2, bias_std=0.1)
    Z = np.random.default_rng(13).normal(size=(6, 3))
    np.testing.assert_array_equal(m.ntk_diagonal(Z.tolist()), m.ntk_diagonal(Z))
    assert m.ntk_diagonal(np.zeros((0, 3))).shape == (0,)
    with pytest.raises(ValueError, match="2-D"):
        m.ntk_diagonal(np.ones(4))
    with pytest.raises(ValueError, match="non-finite"):
        m.ntk_diagonal([[1.0, np.nan]])


@pytest.mark.parametrize("activation,bias_std", [("relu", 0.0), ("relu", 0.3), ("tanh", 0.0)])
def test_many_tiles_threads_and_mirroring(activation, bias_std):
    # n above the tile sizes exercises mirrored tiles and the thread pool
    rng = np.random.default_rng(8)
    X = rng.normal(size=(400, 6))
    Y = rng.normal(size=(150, 6))
    m = MLP(depth=2, activation=activation, bias_std=bias_std)
    T = m.ntk(X)
    assert np.array_equal(T, T.T)
    # coincident points: exact without biases (difference form), 1e-8 with them
    rtol = 1e-7 if bias_std else 1e-13
    np.testing.assert_allclose(m.ntk(X, X[::3]), T[:, ::3], rtol=rtol)
    Txy = m.ntk(X, Y)
    full = m.ntk(np.vstack([X, Y]))
    np.testing.assert_allclose(Txy, full[:400, 400:], rtol=1e-13)


def test_relu_fast_path_equals_general_path(X20):
    # bias_std = 0 uses a correlation-only recursion; a negligible bias
    # forces the general one
    Y = np.random.default_rng(10).normal(size=(5, 4))
    for act in ("relu", "abs", "leaky_relu"):
        for Z2 in (None, Y):
            a = MLP(depth=3, activation=act, weight_std=1.7).kernels(X20, Z2)
            b = MLP(depth=3, activation=act, weight_std=1.7, bias_std=1e-150).kernels(X20, Z2)
            for u, v in zip(a, b):
                np.testing.assert_allclose(u, v, rtol=1e-13)
    # parallel inputs have correlation exactly 1: the ntk of (x, 2x) is 2 ntk(x, x)
    m = MLP(depth=2)
    np.testing.assert_allclose(m.ntk(X20, 2 * X20).diagonal(), 2 * m.ntk(X20).diagonal(),
                               rtol=1e-15)


def test_scaling_and_empty_inputs():
    Z = np.random.default_rng(9).normal(size=(6, 3))
    # positive homogeneity of relu without biases: K(cZ) = c^2 K(Z)
    m = MLP(depth=2)
    np.testing.assert_allclose(m.ntk(3 * Z), 9 * m.ntk(Z), rtol=1e-13)
    assert m.ntk(np.zeros((0, 3))).shape == (0, 0)
    assert m.ntk(Z, np.zeros((0, 3))).shape == (6, 0)


def test_quadrature_option_cross_checks_closed_forms(X20):
    for act in ("tanh", "sigmoid", "softplus"):
        a = MLP(depth=2, activation=act, bias_std=0.1, weight_std=0.8).kernels(X20 * 0.5)
        b = MLP(depth=2, activation=act, bias_std=0.1, weight_std=0.8,
                quadrature_nodes=48).kernels(X20 * 0.5)
        for u, v in zip(a, b):
            assert rel_fro(v, u) < 1e-7


# ---------------------------------------------------------------------------
# The activation record
# ---------------------------------------------------------------------------


def test_activation_registry_names_and_aliases():
    assert sorted(ACTIVATIONS) == ["abs", "erf", "gelu", "identity", "leaky_relu", "linear",
                                   "relu", "sigmoid", "sin", "softplus", "tanh"]
    for key, act in ACTIVATIONS.items():
        assert key in act.names and get_activation(key) is act
        assert callable(act.phi) and callable(act.dphi) and callable(act.torch_fn)
    # an alias keeps its spelling in the spec but shares the record (and the kernel)
    assert canonical_activation(" Linear ") == "linear"
    assert get_activation("linear") is get_activation("identity")
    assert get_activation("linear").name == "identity"
    assert MLP(activation="linear").activation == "linear"
    Z = np.random.default_rng(14).normal(size=(5, 2))
    np.testing.assert_array_equal(MLP(activation="linear").ntk(Z), MLP(activation="identity").ntk(Z))
    assert canonical_activation("Leaky-ReLU") == "leaky_relu"
    with pytest.raises(ValueError, match="valid names are: abs, erf, gelu"):
        get_activation("swish")
    with pytest.raises(ValueError, match="must be a string"):
        canonical_activation(None)
    # read-only: one table for the analytic kernel and the torch network
    with pytest.raises(TypeError):
        ACTIVATIONS["swish"] = ACTIVATIONS["relu"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        ACTIVATIONS["relu"].name = "other"  # type: ignore[misc]
    with pytest.raises(ValueError):
        TANH_ERF_WEIGHTS[0] = 1.0


def test_torch_network_uses_the_records_torch_function():
    for act in ("gelu", "softplus", "linear"):
        net = torch_module(MLP(depth=1, activation=act, width=4), 2, seed=0)
        assert net.activation is get_activation(act).torch_fn


def test_kernels_import_graph_is_layered():
    """Inside mixednn/kernels, counting function-level imports: no cycle, no import of
    the package itself from a submodule, nothing imported from above the kernels layer,
    and no private name imported from another module."""
    import ast
    from pathlib import Path

    import mixednn.kernels as pkg

    root = Path(pkg.__file__).parent
    mods = {p.stem for p in root.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(root.glob("*.py")):
        me = path.stem
        graph[me] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    assert not (node.module or "").startswith("mixednn"), (me, node.module)
                    continue
                assert node.level == 1, f"{me}: relative import out of kernels ({node.module})"
                if node.module is None:  # "from . import x": only submodules, never __init__
                    targets = [a.name for a in node.names]
                    assert all(t in mods for t in targets), (me, targets)
                else:
                    targets = [node.module.split(".")[0]]
                    private = [a.name for a in node.names if a.name.startswith("_")]
                    assert not private, f"{me} imports private names {private} from {targets[0]}"
                graph[me].update(targets)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("mixednn") for a in node.names), me
    assert all("__init__" not in deps for m, deps in graph.items() if m != "__init__")
    # topological order exists (Kahn)
    indeg = {m: len(deps) for m, deps in graph.items()}
    order = [m for m, k in indeg.items() if k == 0]
    for m in order:
        for other, deps in graph.items():
            if m in deps:
                indeg[other] -= 1
                if indeg[other] == 0:
                    order.append(other)
    assert len(order) == len(graph), f"import cycle among {set(graph) - set(order)}"
    assert order.index("activations") < order.index("analytic") < order.index("torch_mlp")
    assert order.index("source") < order.index("empirical") < order.index("resolve")
    assert order.index("dual") < order.index("quadrature") < order.index("analytic")
    assert order.index("dual") < order.index("recursion") < order.index("analytic")
    assert order.index("ntk_engine") < order.index("ntk_blocks") < order.index("empirical")


# ---------------------------------------------------------------------------
# API and validation
# ---------------------------------------------------------------------------


def test_describe():
    assert MLP().describe() == (
        "MLP depth=2 relu, W_std=1, b_std=0, NTK parameterisation (neural-tangents stax), "
        "infinite width"
    )
    assert "W_std=1.5, b_std=0.1" in MLP(weight_std=1.5, bias_std=0.1).describe()
    assert "tanh" in MLP(activation="TanH").describe()


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.ones(5), "2-D"),
        (np.ones((2, 3, 4)), "2-D"),
        (np.array([[1.0, np.nan]]), "non-finite"),
        (np.array([[1.0, np.inf]]), "non-finite"),
        (np.ones((3, 0)), "at least one column"),
        (np.array([["a", "b"]]), "numeric"),
        (np.ones((2, 2)) * 1j, "real"),
        (None, "2-D"),
    ],
)
def test_bad_inputs_raise(bad, match):
    m = MLP()
    with pytest.raises(ValueError, match=match):
        m.ntk(bad)
    if bad is not None:  # as Z2 (Z2=None means Z1 against itself)
        with pytest.raises(ValueError, match=match):
            m.nngp(np.ones((2, 2)), bad)


def test_mismatched_dimensions_raise():
    with pytest.raises(ValueError, match="same number of columns"):
        MLP().ntk(np.ones((3, 2)), np.ones((3, 4)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(activation="swish"), "valid names are: abs, erf, gelu"),
        (dict(activation=3), "activation must be a string"),
        (dict(depth=-1), "depth"),
        (dict(depth=1.5), "depth"),
        (dict(weight_std=0.0), "weight_std"),
        (dict(weight_std=float("nan")), "weight_std"),
        (dict(bias_std=-0.1), "bias_std"),
        (dict(width=0), "width"),
        (dict(quadrature_nodes=1), "quadrature_nodes"),
    ],
)
def test_bad_specs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)


def test_finite_width_needed():
    with pytest.raises(ValueError, match="finite width"):
        MLP().n_params(3)
    with pytest.raises(ValueError, match="width"):
        torch_module(MLP(), 3)
    with pytest.raises(ValueError, match="d"):
        MLP(width=3).n_params(0)


def test_importing_analytic_kernels_does_not_import_torch():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    code = (
        "import sys; import mixednn.kernels as k; import mixednn.kernels.analytic as a; "
        "import mixednn.kernels.activations as act; import mixednn.kernels.resolve as r; "
        "a.MLP().ntk([[1.0, 2.0]]); a.MLP(activation='gelu').ntk_diagonal([[1.0, 2.0]]); "
        "act.get_activation('gelu').phi(0.5); r.resolve_kernel(a.MLP(), has_inputs=True); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=root, env=env)
    assert out.stdout.strip() == "False"


def test_sin_kernels_equal_neural_tangents():
    """NNGP and NTK of the sin network against neural-tangents' stax.Sin (stored values:
    tests/data/neural_tangents_sin.json holds the call and the versions)."""
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).parent / "data" / "neural_tangents_sin.json").read_text())
    Z = np.array(ref["Z"])
    assert len(ref["cases"]) == 4
    for case in ref["cases"]:
        net = MLP(depth=case["depth"], activation="sin", weight_std=case["weight_std"],
                  bias_std=case["bias_std"])
        K, T = net.kernels(Z)
        np.testing.assert_allclose(K, np.array(case["nngp"]), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(T, np.array(case["ntk"]), rtol=1e-12, atol=1e-13)
