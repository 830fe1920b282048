"""Kernel hyperparameters by likelihood: torch kernel = analytic kernel, gradients = finite
differences, and the optimiser / comparison table."""

from __future__ import annotations

import numpy as np
import pytest

import mixednn as mn
from mixednn.hyper import (ScaledInputsMLP, compare_kernels, optimize_kernel, profiled_loglike,
                           profiled_loglike_and_grad, with_network)
from mixednn.kernelgrad import ntk_torch, reml_gradient_matrix
from mixednn.profile import SpectralProfile

from .conftest import rbf

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def hp_data():
    rng = np.random.default_rng(3)
    n = 45
    Z = rng.normal(size=(n, 3))
    Z[5] = Z[2]  # a duplicated input row (correlation exactly 1 off the diagonal)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [0.5, 1.0] + np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=n)
    return {"Z": Z, "X": X, "y": y, "n": n}


@pytest.mark.parametrize("act", ["relu", "erf", "sin", "identity", "abs"])
@pytest.mark.parametrize("bias", [0.0, 0.4])
def test_torch_ntk_equals_analytic_kernel(hp_data, act, bias):
    Z = hp_data["Z"]
    net = mn.MLP(depth=3, activation=act, weight_std=1.2, bias_std=bias)
    K = net.ntk(Z)
    Kt = ntk_torch(torch.as_tensor(Z), None, net).numpy()
    assert np.allclose(Kt, K, rtol=1e-11, atol=1e-12)
    # a block of rows against all of them (the blocked gradient path)
    Kb = ntk_torch(torch.as_tensor(Z[10:20]), torch.as_tensor(Z), net, diag_offset=10).numpy()
    assert np.allclose(Kb, K[10:20], rtol=1e-11, atol=1e-12)
    s = np.array([0.5, 2.0, 1.3])
    Ks = ntk_torch(torch.as_tensor(Z), None, net, torch.as_tensor(s)).numpy()
    assert np.allclose(Ks, net.ntk(Z * s), rtol=1e-11, atol=1e-12)


def test_gradient_matrix_is_the_derivative_along_any_kernel_direction(hp_data):
    """d l(K + h D)/dh at h = 0 equals <D, B> for an arbitrary symmetric direction D."""
    Z, X, y = hp_data["Z"], hp_data["X"], hp_data["y"]
    K = rbf(Z, Z, 1.5)
    rng = np.random.default_rng(0)
    D = rbf(Z, Z, 0.7) * rng.uniform(0.5, 1.5)  # a PSD direction keeps K + hD PSD
    for reml in (True, False):
        def llf(h):
            lam, U = np.linalg.eigh(K + h * D)
            Yr = U.T @ np.column_stack([y, X])
            prof = SpectralProfile(np.maximum(lam, 0), Yr[:, 0], Yr[:, 1:], np.trace(K + h * D),
                                   len(y))
            return prof, U, prof.maximize(reml)

        prof, U, est = llf(0.0)
        assert est.t > 0
        B = reml_gradient_matrix(prof, U, est.t, reml)
        h = 1e-6
        fd = (llf(h)[2].llf - llf(-h)[2].llf) / (2 * h)
        assert np.sum(D * B) == pytest.approx(fd, rel=1e-5)


@pytest.mark.parametrize("act", ["relu", "erf", "sin"])
def test_hyperparameter_gradient_equals_finite_differences(hp_data, act):
    Z, X, y = hp_data["Z"], hp_data["X"], hp_data["y"]
    net = mn.MLP(depth=2, activation=act)
    ls = np.log([1.3, 0.8, 0.6])
    lb = np.log(0.3)
    for reml in (True, False):
        ev = profiled_loglike_and_grad(Z, y, X, net, ls, lb, reml)
        h = 1e-4  # smaller h meets the rounding of arccos at the duplicated row
        fd = []
        for j in range(4):
            e = np.zeros(4)
            e[j] = h
            up = profiled_loglike_and_grad(Z, y, X, net, ls + e[:3], lb + e[3], reml, False).llf
            dn = profiled_loglike_and_grad(Z, y, X, net, ls - e[:3], lb - e[3], reml, False).llf
            fd.append((up - dn) / (2 * h))
        assert np.allclose(ev.grad, fd, rtol=1e-5, atol=1e-6)


def test_optimize_kernel_finds_the_relevant_input_and_reports_cost():
    rng = np.random.default_rng(0)
    n = 80
    Z = rng.normal(size=(n, 3))
    X = np.ones((n, 1))
    y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=n)  # only input 1 matters
    m = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=2, bias_std=0.5))
    opt = optimize_kernel(m, input_scales="ard", bias_std=True, maxiter=30)
    assert opt.table["n_params"].iloc[0] == 3  # homogeneous in (scales, bias): d ratios
    assert np.exp(np.mean(np.log(opt.scales))) == pytest.approx(1.0)
    assert opt.llf > opt.llf_start + 5.0
    assert opt.scales.index.tolist() == ["z1", "z2", "z3"]
    assert opt.scales.iloc[0] > 5 * opt.scales.iloc[1:].max()
    assert opt.cost["evaluations"] >= 2 and opt.cost["rows"] == n
    assert set(opt.cost) >= {"kernel", "decomposition", "search", "gradient", "seconds"}
    res = opt.fit(t_method="reml")
    assert res.llf == pytest.approx(opt.llf, rel=1e-8)  # all rows used: same likelihood
    # the chosen kernel predicts through its own cross-kernel
    Zn = np.random.default_rng(2).normal(size=(3, 3))
    Xn = np.ones((3, 1))
    Kx = opt.network.ntk(m.input_scaling.apply(Zn), m.scaled_inputs)
    assert np.allclose(res.predict(exog=Xn, ntk_inputs=Zn), res.predict(exog=Xn, kernel=Kx))
    assert "ARD" in res.summary().as_text()


def test_optimize_bias_depth_and_subsample(hp_data):
    Z, X, y = hp_data["Z"], hp_data["X"], hp_data["y"]
    m = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=1))
    opt = optimize_kernel(m, input_scales=None, bias_std=True, depths=[1, 2], subsample=35,
                          maxiter=10)
    assert list(opt.table.index) == [1, 2] and opt.cost["rows"] == 35
    assert opt.depth == int(opt.table["llf"].idxmax()) and opt.bias_std > 0
    assert opt.scales is None and opt.model.nobs == hp_data["n"]
    assert np.all(opt.table["llf"] >= opt.table["llf_start"] - 1e-9)


def test_compare_kernels_table(hp_data):
    Z, X, y = hp_data["Z"], hp_data["X"], hp_data["y"]
    m = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=2))
    tab = compare_kernels(m, depths=(1, 2), activations=("relu", "erf"))
    assert len(tab) == 4 and tab["delta_aic"].min() == 0 and np.all(np.diff(tab["aic"]) >= 0)
    row = tab[(tab.depth == 2) & (tab.activation == "relu")].iloc[0]
    assert row["llf"] == pytest.approx(m.fit(t_method="reml").llf, rel=1e-10)
    assert row["llf_ml"] == pytest.approx(m.fit(reml=False, t_method="ml").llf, rel=1e-10)
    assert profiled_loglike(m.scaled_inputs, y, X, mn.MLP(depth=2)) == pytest.approx(row["llf"])


def test_hyper_bad_input(hp_data):
    Z, X, y = hp_data["Z"], hp_data["X"], hp_data["y"]
    with pytest.raises(NotImplementedError, match="differentiable"):
        optimize_kernel(mn.MixedLMNTK(y, X, Z, network=mn.MLP(activation="tanh")))
    with pytest.raises(ValueError, match="analytic network"):
        optimize_kernel(mn.MixedLMNTK(y, X, kernel=rbf(Z, Z)))
    m = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=2))
    with pytest.raises(ValueError, match="input_scales"):
        optimize_kernel(m, input_scales="per-row")
    with pytest.raises(ValueError, match="subsample"):
        optimize_kernel(m, subsample=2)
    with pytest.raises(ValueError, match="non-negative"):
        ScaledInputsMLP(mn.MLP(), [1.0, -1.0])
    with pytest.raises(TypeError, match="analytic MLP"):
        with_network(m, "relu")


def test_kernel_optimization_score_test_uses_the_starting_kernel(hp_data):
    """``KernelOptimization.score_test()`` is the exact score test of the starting model
    (kernel fixed before the data chose the hyperparameters), not the chosen kernel's."""
    Z, X, y = hp_data["Z"], hp_data["X"], hp_data["y"]
    m = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=2, bias_std=0.5))
    opt = optimize_kernel(m, input_scales="ard", bias_std=True, maxiter=10)
    assert opt.llf > opt.llf_start + 1.0  # the search moved the kernel
    test = opt.score_test()
    plain = m.fit().score_test()
    assert test.statistic == plain.statistic and test.pvalue == plain.pvalue
    assert test.method == plain.method
    chosen = opt.fit().score_test()
    assert not np.isclose(chosen.statistic, test.statistic, rtol=1e-6)
    assert opt.score_test(method="liu").pvalue == m.fit().score_test("liu").pvalue


def test_extra_starts_never_lower_the_maximum_and_are_validated(hp_data):
    d = hp_data
    m = mn.MixedLMNTK(d["y"], d["X"], d["Z"], network=mn.MLP(depth=2, bias_std=0.5))
    one = optimize_kernel(m, input_scales="ard", maxiter=15)
    three = optimize_kernel(m, input_scales="ard", maxiter=15, starts=3)
    assert three.llf >= one.llf - 1e-9
    with pytest.raises(ValueError, match="starts"):
        optimize_kernel(m, input_scales="ard", starts=0)


def test_screened_starts(hp_data):
    """``screen`` evaluates candidate starts by likelihood alone and starts the optimiser
    from the best ``starts`` of them; ``screen <= starts`` screens nothing."""
    Z, X, y = hp_data["Z"], hp_data["X"], hp_data["y"]
    m = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=1, activation="sin", bias_std=1.0))
    kw = dict(input_scales="ard", bias_std=True, maxiter=15)
    plain = optimize_kernel(m, **kw, starts=2)
    same = optimize_kernel(m, **kw, starts=2, screen=2)
    assert same.llf == plain.llf and np.allclose(same.scales, plain.scales)
    screened = optimize_kernel(m, **kw, screen=10)
    # the start, nine screened candidates, then the optimiser from the best of the ten
    # (which is never worse than the start)
    assert screened.cost["evaluations"] >= 11
    assert screened.table["evals"].iloc[0] == screened.cost["evaluations"]  # all counted
    assert screened.llf >= screened.llf_start
    for bad in (-1, 1.5, True, "16"):
        with pytest.raises(ValueError, match="screen"):
            optimize_kernel(m, **kw, screen=bad)


def test_activations_compared_by_aic(hp_data):
    Z, X, y = hp_data["Z"], hp_data["X"], hp_data["y"]
    m = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=1, bias_std=0.5))
    opt = optimize_kernel(m, input_scales="ard", bias_std=True, activations=("relu", "sin"),
                          maxiter=15)
    tab = opt.table
    assert list(tab.index) == [("relu", 1), ("sin", 1)]
    # relu is homogeneous in (scales, bias): d identified parameters; sin: d + 1
    assert tab.loc[("relu", 1), "n_params"] == 3 and tab.loc[("sin", 1), "n_params"] == 4
    assert np.allclose(tab["aic"], -2 * tab["llf"] + 2 * (X.shape[1] + 2 + tab["n_params"]))
    best = tab["aic"].idxmin()
    assert (opt.activation, opt.depth) == best and opt.llf == tab.loc[best, "llf"]
    assert opt.network.net.activation == opt.activation
    # each activation alone gives its own row of the comparison
    for act in ("relu", "sin"):
        alone = optimize_kernel(m, input_scales="ard", bias_std=True, activations=[act],
                                maxiter=15)
        assert alone.llf == pytest.approx(tab.loc[(act, 1), "llf"], rel=1e-12)
        assert list(alone.table.index) == [1] and alone.activation == act
    res = opt.fit(t_method="reml")
    assert res.llf == pytest.approx(opt.llf, rel=1e-8)
    with pytest.raises(ValueError, match="Unknown activation"):
        optimize_kernel(m, activations=("relu", "swish"))
    with pytest.raises(ValueError, match="distinct"):
        optimize_kernel(m, activations=("relu", "ReLU"))
    with pytest.raises(NotImplementedError, match="tanh"):
        optimize_kernel(m, activations=("tanh",))


def test_sin_network_is_a_gaussian_kernel_with_large_bias():
    """With a large bias variance the first sin layer's NNGP kernel is the RBF kernel
    exp(-w^2 |x - x'|^2 / (2 d)) / 2 (docs/model.md section 5)."""
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(20, 3))
    net = mn.MLP(depth=1, activation="sin", weight_std=1.3, bias_std=4.0)
    D2 = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    # the readout layer: weight variance times E[sin a sin b], plus its bias variance
    rbf = 1.3 ** 2 * 0.5 * np.exp(-1.3 ** 2 * D2 / (2 * 3)) + 4.0 ** 2
    assert np.allclose(net.nngp(Z), rbf, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def interaction_data():
    rng = np.random.default_rng(0)
    n = 120
    Z = rng.normal(size=(n, 3))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    noise = 0.3 * rng.normal(size=n)
    return {"Z": Z, "X": X, "signal": X @ [1.0, 0.5] + np.sin(2 * Z[:, 0]) * Z[:, 1] + noise,
            "linear": X @ [1.0, 0.5] + 0.4 * Z[:, 0] + noise, "n": n}


def test_choose_kernel_keeps_the_ard_kernel_when_it_earns_its_parameters(interaction_data):
    d = interaction_data
    m = mn.MixedLMNTK(d["signal"], d["X"], d["Z"])
    choice = mn.hyper.choose_kernel(m)
    tab = choice.table
    assert list(tab.index) == ["start", "ard_sin"] and choice.criterion == "bic"
    assert tab.loc["start", "n_params"] == 0 and tab.loc["ard_sin", "n_params"] == 4
    k = m.k_fe + 2 + tab["n_params"]
    assert np.allclose(tab["bic"], -2 * tab["llf"] + np.log(d["n"]) * k)
    assert np.allclose(tab["aic"], -2 * tab["llf"] + 2 * k)
    assert choice.chosen == tab["bic"].idxmin() == "ard_sin" and tab["chosen"].sum() == 1
    # the candidates are the two REML fits on all rows
    assert tab.loc["start", "llf"] == pytest.approx(m.fit(t_method="reml").llf, rel=1e-10)
    assert choice.results.llf == pytest.approx(tab.loc["ard_sin", "llf"], rel=1e-12)
    assert choice.fit().llf == pytest.approx(choice.results.llf, rel=1e-10)
    assert choice.model.kernel_source.network.activation == "sin"
    assert choice.scales is not None and choice.scales.iloc[2] < choice.scales.iloc[:2].min()
    text = choice.summary()
    assert str(choice) == text and "Kernel choice by BIC" in text and "<- chosen" in text
    chosen_line = [ln for ln in text.splitlines() if "<- chosen" in ln][0]
    assert chosen_line.startswith("ard_sin") and "input scales: z1=" in text
    assert repr(choice).startswith("<KernelChoice: 'ard_sin' by BIC")
    # the test of t = 0 uses the model's own kernel, fixed in advance
    own = m.fit(t_method="reml").score_test()
    assert choice.score_test().pvalue == pytest.approx(own.pvalue, rel=1e-10)


def test_choose_kernel_keeps_the_plain_kernel_without_structure_to_find(interaction_data):
    d = interaction_data
    m = mn.MixedLMNTK(d["linear"], d["X"], d["Z"])
    choice = mn.hyper.choose_kernel(m, criterion="BIC")
    assert choice.chosen == "start" and choice.scales is None and choice.model is m
    assert choice.results.llf == pytest.approx(choice.table.loc["start", "llf"], rel=1e-12)
    aic = mn.hyper.choose_kernel(m, criterion="aic")
    assert aic.chosen == aic.table["aic"].idxmin()
    with pytest.raises(ValueError, match="criterion"):
        mn.hyper.choose_kernel(m, criterion="cv")
    # models the search cannot tune are refused by name, before anything is fitted
    w = mn.MixedLMNTK(d["linear"], d["X"], d["Z"], weights=np.full(d["n"], 2.0))
    with pytest.raises(NotImplementedError, match="weights"):
        mn.hyper.choose_kernel(w)
    K = mn.MLP().ntk(d["Z"])
    with pytest.raises(ValueError, match="no network inputs"):
        mn.hyper.choose_kernel(mn.MixedLMNTK(d["linear"], d["X"], kernel=K))


def test_hyper_docstring_examples_run():
    import doctest

    import mixednn.hyper

    out = doctest.testmod(mixednn.hyper, optionflags=doctest.ELLIPSIS)
    assert out.attempted >= 8 and out.failed == 0


def test_kernel_searches_refuse_group_effects():
    """The hyperparameter gradient and the comparison table are those of the network-only
    model: a model with bar terms is refused by name, not silently optimised without them."""
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 60
    df = pd.DataFrame({"g": rng.integers(0, 6, n).astype(str), "x": rng.normal(size=n),
                       "z1": rng.normal(size=n), "z2": rng.normal(size=n)})
    df["y"] = df["x"] + np.sin(df["z1"]) + 0.3 * rng.normal(size=n)
    m = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", df, ntk=["z1", "z2"])
    for call in (lambda: optimize_kernel(m), lambda: mn.hyper.choose_kernel(m),
                 lambda: compare_kernels(m, depths=(1,), activations=("relu",))):
        with pytest.raises(NotImplementedError, match=r"group random effects"):
            call()
    # the suggested route works: choose on the model without bars, refit with them
    plain = mn.MixedLMNTK.from_formula("y ~ x", df, ntk=["z1", "z2"])
    opt = optimize_kernel(plain, maxiter=5)
    refit = with_network(m, opt.network).fit()
    assert type(refit).__name__ == "GroupedResults"


def test_fits_on_estimated_kernels_count_them_and_do_not_test_with_them(interaction_data):
    """A kernel chosen on y: its hyperparameters count in AIC/BIC (the same numbers as the
    choice table), the summary withholds the anticonservative test of t = 0, and calling
    that test warns; kernels fixed in advance are untouched."""
    import warnings

    d = interaction_data
    m = mn.MixedLMNTK(d["signal"], d["X"], d["Z"])
    choice = mn.hyper.choose_kernel(m)
    res, own = choice.results, choice.start_results
    k = int(choice.table.loc["ard_sin", "n_params"])
    assert res.kernel_estimated_params == k == 4 and own.kernel_estimated_params == 0
    assert res.df_modelwc == m.k_fe + 2 + k
    assert res.aic == pytest.approx(choice.table.loc["ard_sin", "aic"], rel=1e-12)
    assert res.bic == pytest.approx(choice.table.loc["ard_sin", "bic"], rel=1e-12)
    assert own.aic == pytest.approx(choice.table.loc["start", "aic"], rel=1e-12)
    text = res.summary().as_text()
    assert "Score test of t = 0: not shown" in text and "hyperparameters estimated from y" in text
    assert "Score test of t = 0: statistic" in own.summary().as_text()
    with pytest.warns(UserWarning, match="anticonservative"):
        naive = res.score_test()
    assert naive.pvalue < 0.05  # still computed, for whoever wants it
    with pytest.warns(UserWarning, match="anticonservative"):
        res.lr_test(method="mixture")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        own.score_test()
        own.lr_test(method="mixture")
        choice.score_test()
        # scales given in advance are not estimated
        fixed = ScaledInputsMLP(mn.MLP(depth=1, activation="sin", bias_std=1.0), [1.0, 2.0, 0.5])
        fixed_fit = with_network(m, fixed).fit()
        assert fixed_fit.kernel_estimated_params == 0
        fixed_fit.score_test()
    # a search without ARD (the bias std alone) records one hyperparameter
    opt = optimize_kernel(m, input_scales=None, bias_std=True, maxiter=10)
    assert opt.fit().kernel_estimated_params == 1
    # and the count survives saving
    import pickle

    again = pickle.loads(pickle.dumps(res))
    assert again.kernel_estimated_params == k and again.aic == pytest.approx(res.aic)


def test_optimize_kernel_refuses_a_low_rank_basis(hp_data):
    Z, X, y = hp_data["Z"], hp_data["X"], hp_data["y"]
    m = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=1), low_rank=10)
    with pytest.raises(NotImplementedError, match="dense"):
        optimize_kernel(m)
