"""Plots render headless to non-blank PNGs; the spectral decorrelation is the score equation."""

from __future__ import annotations

import numpy as np
import pytest

import mixednn as mn
from mixednn import plotting

from .conftest import rbf


@pytest.fixture(scope="module")
def fitted(sim_small):
    """REML fit with fixed effects on the shared n = 120 simulation (analytic ReLU NTK)."""
    model = mn.MixedLMNTK(sim_small["y"], sim_small["X"], sim_small["Z"], network=mn.MLP(depth=2))
    return model.fit(t_method="reml")


@pytest.fixture(scope="module")
def fitted_ml_nofe(sim_small):
    model = mn.MixedLMNTK(sim_small["y"], None, sim_small["Z"], kernel=rbf)
    return model.fit(reml=False, t_method="ml")


def _assert_nontrivial_png(path, min_bytes=8_000):
    import matplotlib.image as mpimg

    assert path.stat().st_size > min_bytes
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    gray = img[..., :3].mean(axis=2)
    # not blank: many pixels differ from the background, with real spread
    assert float(gray.var()) > 1e-3
    assert float(np.mean(gray < 0.9)) > 0.01


@pytest.mark.parametrize("method", ["plot_profile", "plot_spectrum", "plot_fit"])
def test_each_plot_renders_a_nonblank_png(fitted, tmp_path, method):
    from matplotlib.figure import Figure

    fig = getattr(fitted, method)()
    assert isinstance(fig, Figure)
    path = tmp_path / f"{method}.png"
    fig.savefig(path, dpi=80)
    _assert_nontrivial_png(path)


def test_plots_do_not_leak_pyplot_figures(fitted):
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    fitted.plot_profile(), fitted.plot_spectrum(), fitted.plot_fit()
    assert len(plt.get_fignums()) == before


def test_plots_draw_into_given_axes(fitted):
    from matplotlib.figure import Figure

    fig = Figure()
    axs = fig.subplots(2, 2).ravel()
    assert fitted.plot_profile(ax=axs[0]) is fig
    assert fitted.plot_spectrum(ax=axs[1]) is fig
    assert fitted.plot_fit(axes=axs[2:]) is fig
    assert all(ax.has_data() for ax in axs)
    with pytest.raises(ValueError, match="exactly two"):
        fitted.plot_fit(axes=[axs[0]])


def test_profile_plot_marks_estimate_interval_and_zero(fitted):
    fig = fitted.plot_profile()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("t=0" in s for s in labels)
    assert any("profile CI" in s for s in labels)
    l0 = fitted.model.loglike(0.0)
    # the dotted t = 0 line sits at l(0), and the profile curve peaks at llf
    assert any(np.allclose(line.get_ydata(), l0) for line in ax.get_lines())
    curve = ax.get_lines()[0]
    assert np.max(curve.get_ydata()) == pytest.approx(fitted.llf, abs=1e-9)
    lo, hi = fitted.t_conf_int()
    assert lo < fitted.t < hi


def test_decorrelation_is_twice_the_score_per_unit_trace(fitted, fitted_ml_nofe):
    for res in (fitted, fitted_ml_nofe):
        prof = res.model.profile
        for t in (0.0, res.t / 5, res.t, 3 * res.t):
            d = plotting.decorrelation(res, t)
            assert d == pytest.approx(2 * prof.score(t, res.reml) / prof.lam.sum(), abs=1e-10)
        # zero at the estimate, positive before (undertrained), negative after
        assert abs(plotting.decorrelation(res)) < 1e-7
        assert plotting.decorrelation(res, res.t / 5) > 0 > plotting.decorrelation(res, 5 * res.t)


def test_without_fixed_effects_the_condition_is_zero_covariance(fitted_ml_nofe):
    # model.md section 2: sum_i lam_i (s_i / mean(s) - 1) = 0 at t_hat (ML, no fixed effects)
    res = fitted_ml_nofe
    lam = res.model.profile.lam
    s = res.model.profile.y_rot ** 2 * np.exp(-res.t * lam)
    assert abs(np.sum(lam * (s / s.mean() - 1))) < 1e-7 * lam.sum()
    sl = plotting.spectral_losses(res)
    np.testing.assert_allclose(sl["loss"], s, rtol=1e-12)
    np.testing.assert_allclose(sl["expected"], 1.0)


def test_spectral_losses_reml_expectations_sum_to_dof(fitted):
    sl = plotting.spectral_losses(fitted)
    n, p = fitted.nobs, fitted.k_fe
    # sum of leverages = p, and sum of scaled losses = RSS / s2 = n - p
    assert sl["expected"].sum() == pytest.approx(n - p, rel=1e-10)
    assert sl["scaled_loss"].sum() == pytest.approx(n - p, rel=1e-10)
    np.testing.assert_allclose(sl["loss"], fitted.resid_rot ** 2 * fitted.weights, rtol=1e-8)
    assert np.all(np.diff(sl["lam"]) >= 0)


def test_boundary_fit_plots(sim_small):
    import warnings

    res = None
    for seed in range(20):  # pure noise: t_hat = 0 in a good share of draws
        y = np.random.default_rng(seed).normal(size=sim_small["n"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mn.BoundaryFitWarning)
            cand = mn.MixedLMNTK(y, sim_small["X"], sim_small["Z"], kernel=rbf).fit()
        if cand.boundary:
            res = cand
            break
    assert res is not None, "no boundary fit among 20 pure-noise draws"
    fig = res.plot_profile()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("boundary" in s for s in labels)
    assert res.plot_spectrum().axes[0].has_data()  # no t = 0 comparison curve, still draws
    assert len(res.plot_fit().axes) == 2


def test_bad_arguments_raise_clearly(fitted):
    with pytest.raises(TypeError, match="MixedLMNTKResults"):
        plotting.plot_profile(object())
    with pytest.raises(ValueError, match="bins"):
        fitted.plot_spectrum(bins=1)
    with pytest.raises(ValueError, match="alpha"):
        fitted.plot_profile(alpha=1.5)
    with pytest.raises(ValueError, match="t must be"):
        plotting.spectral_losses(fitted, t=-1.0)


def test_training_path_plot_renders_a_nonblank_png(tmp_path):
    """The training path plot of issue 4 (res.train(...).plot()) renders like the others."""
    torch = pytest.importorskip("torch")
    from mixednn.training import max_stable_lr

    rng = np.random.default_rng(3)
    Z = rng.normal(size=(60, 2))
    y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=60)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 128), torch.nn.Tanh(), torch.nn.Linear(128, 1))
    res = mn.MixedLMNTK(y, np.ones((60, 1)), Z, network=net).fit()
    path = res.train(lr=max_stable_lr(res) / 4, steps=25)
    png = tmp_path / "path.png"
    path.plot(logy=True).savefig(png, dpi=80)
    _assert_nontrivial_png(png)
