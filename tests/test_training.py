"""Training the real network for the REML time (issue 4): res.train, TrainingPath,
closed-form NTK loss paths against brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch

import mixednn as mn
from mixednn.training import max_stable_lr, ntk_loss_path
from mixednn.trainingpath import TrainingPath



pytestmark = pytest.mark.usefixtures("one_torch_thread")

def simulate(n: int, n_test: int = 0, d: int = 10, seed: int = 0):
    """A sum of nonlinear functions of d Gaussian covariates plus noise."""
    rng = np.random.default_rng(seed)
    N = n + n_test
    Z = rng.normal(size=(N, d))
    X = np.column_stack([np.ones(N), rng.normal(size=N)])
    c = [Z[:, j % d] for j in range(7)]
    f = (np.sin(c[0]) + 0.5 * c[1] ** 2 + np.tanh(c[2] * c[3]) + np.cos(c[4]) + 0.3 * c[5]
         - 0.5 * np.abs(c[6]))
    y = X @ [1.0, 0.5] + f + 0.5 * rng.normal(size=N)
    return y, X, Z


@pytest.fixture(scope="module", params=["torch-default", "ntk-parameterisation"])
def wide_fit(request):
    """n = 200, ten covariates, a depth-1 width-2048 ReLU network: torch's default
    (standard) parameterisation, or ``MLP(depth=1, width=2048)`` in the NTK
    parameterisation of the analytic kernel."""
    y, X, Z = simulate(200, 100)
    if request.param == "torch-default":
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(10, 2048), torch.nn.ReLU(),
                                  torch.nn.Linear(2048, 1))
    else:
        net = mn.MLP(depth=1, width=2048)
    res = mn.MixedLMNTK(y[:200], X[:200], Z[:200], network=net).fit(t_method="reml")
    return res, (y[200:], X[200:], Z[200:]), net


def test_wide_network_agrees_with_ntk_at_reml_step(wide_fit):
    res, test, net = wide_fit
    lr = max_stable_lr(res) / 4  # small: eta * lam_max = 0.5
    path = res.train(lr=lr, test_data=test)
    assert isinstance(path, TrainingPath)
    assert path.stop_step == round(res.epochs(lr)) == path.steps[-1] > 10
    assert path.agreement_step == path.stop_step
    # measured: 1.8e-4 (torch default), 8.4e-3 (NTK parameterisation)
    assert path.agreement <= 0.05
    assert path.agreement_test <= 0.05
    # the whole recorded loss path tracks the discrete NTK prediction
    np.testing.assert_allclose(path.train_loss, path.train_loss_ntk, rtol=0.01)
    np.testing.assert_allclose(path.test_loss, path.test_loss_ntk, rtol=0.01)
    assert path.train_loss[-1] < path.train_loss[0]
    # training predictions at the REML step are the model's BLUP (gradient flow) up to
    # the discrete-step and finite-width differences
    blup = res.fittedvalues.to_numpy()
    net_pred = path.predictions["network"].to_numpy()
    assert np.sqrt(np.mean((net_pred - blup) ** 2)) < 0.05 * np.std(blup)
    # the model's own copy of the network is untouched by training
    src = res.model.kernel_source.module
    before = [p.detach().clone() for p in src.parameters()]
    res.train(lr=lr, steps=3)
    for p, q in zip(src.parameters(), before):
        assert torch.equal(p.detach(), q)


def test_path_frame_and_plot(wide_fit):
    res, test, _ = wide_fit
    lr = max_stable_lr(res) / 10
    path = res.train(lr=lr, steps=30, record_every=7, test_data=test)
    df = path.to_frame()
    assert list(df.columns) == ["step", "t", "train_loss", "train_loss_ntk", "train_loss_flow",
                                "test_loss", "test_loss_ntk", "test_loss_flow"]
    assert df["step"].tolist() == [0, 7, 14, 21, 28, 30]
    np.testing.assert_allclose(df["t"], df["step"] * lr / res.nobs)
    assert path.agreement_step == 30 and path.stop_step > 30
    assert df.loc[0, "train_loss"] == pytest.approx(df.loc[0, "train_loss_ntk"], rel=1e-12)
    from matplotlib.figure import Figure

    fig = path.plot(logy=True)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert "agreement" in repr(path)


def test_ntk_loss_path_equals_brute_force_gradient_descent():
    """Closed form vs iterating the linearised network with the dense kernel, and the
    flow columns vs scipy.linalg.expm."""
    y, X, Z = simulate(40, 15, d=3, seed=2)
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    res = mn.MixedLMNTK(y[:40], X[:40], Z[:40], network=net).fit()
    m = res.model
    K = m.kernel_matrix()
    Kx = m.kernel_source.cross(m.input_scaling.apply(Z[40:]), m.scaled_inputs)
    f0_te = m.kernel_source.init_output(m.input_scaling.apply(Z[40:]))
    beta = res.params.to_numpy()
    r = y[:40] - m.offset - X[:40] @ beta
    lr = 0.6 * max_stable_lr(res)  # eta * lam_max = 1.2: the top direction oscillates
    eta = lr / 40
    steps = 25
    df = ntk_loss_path(res, lr, steps=steps, test_data=(y[40:], X[40:], Z[40:]))
    g = np.zeros(40)  # learned change on the training rows
    g_te = np.zeros(15)
    for s in range(steps + 1):
        row = df.loc[df["step"] == s].iloc[0]
        assert row["train_loss_ntk"] == pytest.approx(np.mean((r - g) ** 2), rel=1e-10)
        te = np.mean((y[40:] - X[40:] @ beta - f0_te - g_te) ** 2)
        assert row["test_loss_ntk"] == pytest.approx(te, rel=1e-10)
        step = eta * (r - g)
        g, g_te = g + K @ step, g_te + Kx @ step
    # gradient flow: exp(-tK) r in-sample, and Kx int_0^t exp(-sK) ds r for new rows
    # (Van Loan: the top-right block of expm([[-K, I], [0, 0]] t))
    M = np.block([[-K, np.eye(40)], [np.zeros((40, 80))]])
    for k in (5, 25):
        t = eta * k
        row = df.loc[df["step"] == k].iloc[0]
        assert row["t"] == pytest.approx(t, rel=1e-14)
        E = scipy.linalg.expm(-t * K)
        assert row["train_loss_flow"] == pytest.approx(np.mean((E @ r) ** 2), rel=1e-9)
        G = scipy.linalg.expm(M * t)[:40, 40:]
        te = np.mean((y[40:] - X[40:] @ beta - f0_te - Kx @ (G @ r)) ** 2)
        assert row["test_loss_flow"] == pytest.approx(te, rel=1e-9)


def test_linear_network_training_is_exact():
    """A network linear in its parameters *is* its linearisation: the real gradient
    descent equals the NTK prediction to rounding (feature form, P < n, sum loss,
    and the centred network with offset='zero')."""
    y, X, Z = simulate(80, 20, d=4, seed=3)
    torch.manual_seed(2)
    net = torch.nn.Linear(4, 1, dtype=torch.float64)
    for offset in ("init", "zero"):
        res = mn.MixedLMNTK(y[:80], X[:80, 1:], Z[:80], network=net, offset=offset).fit()
        assert res.model.basis.kind == "low_rank"
        lr = 0.5 * max_stable_lr(res, "sum")
        path = res.train(lr=lr, loss="sum", steps=60, record_every=1,
                         test_data=(y[80:], X[80:, 1:], Z[80:]))
        np.testing.assert_allclose(path.train_loss, path.train_loss_ntk, rtol=1e-10)
        np.testing.assert_allclose(path.test_loss, path.test_loss_ntk, rtol=1e-10)
        assert path.agreement < 1e-10 and path.agreement_test < 1e-10
        np.testing.assert_allclose(path.predictions["network"], path.predictions["ntk"],
                                   rtol=1e-10, atol=1e-12)


def test_formula_model_with_dataframe_test_data():
    y, X, Z = simulate(120, 40, d=3, seed=4)
    df = pd.DataFrame({"y": np.exp(y / 4), "x": X[:, 1],
                       "z1": Z[:, 0], "z2": Z[:, 1], "z3": Z[:, 2]})
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(3, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))
    res = mn.MixedLMNTK.from_formula("np.log(y) ~ x", df.iloc[:120], ntk="~ z1 + z2 + z3",
                                     network=net).fit()
    lr = max_stable_lr(res) / 8
    p1 = res.train(lr=lr, steps=20, test_data=df.iloc[120:])
    p2 = res.train(lr=lr, steps=20, test_data=(df.iloc[120:], np.log(df["y"].iloc[120:])))
    np.testing.assert_allclose(p1.test_loss, p2.test_loss, rtol=1e-12)
    np.testing.assert_allclose(p1.test_loss, p1.test_loss_ntk, rtol=0.02)


def test_training_errors():
    y, X, Z = simulate(60, d=3, seed=5)
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    res = mn.MixedLMNTK(y, X, Z, network=net).fit()
    lim = max_stable_lr(res)
    with pytest.raises(ValueError, match=f"maximum stable learning rate is {lim:.6g}"):
        res.train(lr=1.01 * lim)
    with pytest.raises(ValueError, match="lr must be a positive"):
        res.train(lr=-1.0)
    with pytest.raises(ValueError, match="loss must be"):
        res.train(lr=0.1 * lim, loss="median")
    with pytest.raises(ValueError, match="max_steps"):
        res.train(lr=1e-6 * lim, max_steps=1000)
    with pytest.raises(ValueError, match="steps must be an integer"):
        res.train(lr=0.1 * lim, steps=2.5)
    with pytest.raises(TypeError, match="test_data"):
        res.train(lr=0.1 * lim, steps=2, test_data="test.csv")
    analytic = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=1)).fit()
    with pytest.raises(TypeError, match="finite network"):
        analytic.train(lr=0.1)
    # the NTK path itself works for any kernel
    df = ntk_loss_path(analytic, lr=0.25 * max_stable_lr(analytic))
    assert df["train_loss_ntk"].is_monotonic_decreasing
    assert df["step"].iloc[-1] == round(analytic.epochs(0.25 * max_stable_lr(analytic)))
