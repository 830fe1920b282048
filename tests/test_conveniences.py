"""What a statsmodels user reaches for (issue 13): t_test / wald_test / f_test,
get_prediction, the summary as str and HTML, ax= on every plot, profile intervals for
s2 and the fixed effects, and the CLI's JSON with the tests of t = 0."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.contrast import ContrastResults

import mixednn as mn
from mixednn.cli import main


@pytest.fixture(scope="module")
def grouped():
    """Random-intercept data with a three-level factor; K = Z Z^T makes the model
    statsmodels' MixedLM random intercept (tests/test_statsmodels_equivalence.py)."""
    rng = np.random.default_rng(7)
    g, m = 15, 6
    groups = np.repeat(np.arange(g), m)
    n = g * m
    x = rng.normal(size=n)
    c = rng.choice(["a", "b", "c"], size=n)
    y = (1.0 + 0.7 * x + 0.4 * (c == "b") + rng.normal(scale=0.8, size=g)[groups]
         + rng.normal(size=n))
    df = pd.DataFrame({"y": y, "x": x, "c": c, "g": groups})
    Zg = (groups[:, None] == np.arange(g)[None, :]).astype(float)
    return df, Zg @ Zg.T


@pytest.fixture(scope="module")
def fit_grouped(grouped):
    df, K = grouped
    return mn.MixedLMNTK.from_formula("y ~ x + C(c)", df, kernel=K).fit()


@pytest.fixture(scope="module")
def fit_mlp():
    rng = np.random.default_rng(3)
    n = 70
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n)})
    df["y"] = 0.5 * df["x"] + np.sin(2 * df["z"]) + 0.3 * rng.normal(size=n)
    res = mn.MixedLMNTK.from_formula("y ~ x", df, ntk="~ z", network=mn.MLP(depth=1)).fit(
        t_method="reml")
    return df, res


# ----------------------------------------------------------------- 1. linear hypotheses
def test_t_test_is_the_wald_z_of_params_and_bse(fit_grouped):
    res = fit_grouped
    tt = res.t_test("x = 0")
    assert isinstance(tt, ContrastResults) and tt.distribution == "norm"
    assert float(np.squeeze(tt.effect)) == pytest.approx(res.params["x"], rel=1e-12)
    assert float(np.squeeze(tt.sd)) == pytest.approx(res.bse["x"], rel=1e-12)
    assert float(np.squeeze(tt.statistic)) == pytest.approx(res.tvalues["x"], rel=1e-12)
    assert float(tt.pvalue) == pytest.approx(res.pvalues["x"], rel=1e-10)
    np.testing.assert_allclose(tt.conf_int()[0], res.conf_int().loc["x"].to_numpy(),
                               rtol=1e-12)
    # a value other than 0, and the same hypothesis as a matrix and as a tuple (R, q)
    names = list(res.params.index)
    R = np.zeros((1, len(names)))
    R[0, names.index("x")] = 1.0
    z1 = float(np.squeeze(res.t_test("x = 0.5").statistic))
    assert z1 == pytest.approx((res.params["x"] - 0.5) / res.bse["x"], rel=1e-12)
    assert float(np.squeeze(res.t_test((R, [0.5])).statistic)) == pytest.approx(z1, rel=1e-12)
    assert float(np.squeeze(res.t_test(R).statistic)) == pytest.approx(res.tvalues["x"])
    assert "Test for Constraints" in str(tt.summary())


def test_t_test_of_a_contrast_between_factor_levels(fit_grouped):
    res = fit_grouped
    tt = res.t_test("C(c)[T.b] = C(c)[T.c]")
    C = res.cov_params()
    diff = res.params["C(c)[T.b]"] - res.params["C(c)[T.c]"]
    var = (C.loc["C(c)[T.b]", "C(c)[T.b]"] + C.loc["C(c)[T.c]", "C(c)[T.c]"]
           - 2 * C.loc["C(c)[T.b]", "C(c)[T.c]"])
    z = diff / math.sqrt(var)
    assert float(np.squeeze(tt.statistic)) == pytest.approx(z, rel=1e-10)
    assert float(tt.pvalue) == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-10)
    # several rows at once: one z per row
    several = res.t_test(["x = 0", "Intercept = 1"])
    np.testing.assert_allclose(np.ravel(several.statistic),
                               [res.tvalues["x"],
                                (res.params["Intercept"] - 1) / res.bse["Intercept"]],
                               rtol=1e-10)


@pytest.mark.parametrize("hypothesis", ["C(c)[T.b] = C(c)[T.c], x = 0.5",
                                        "C(c)[T.b], C(c)[T.c]"])
def test_wald_and_f_tests_are_the_explicit_quadratic_form(fit_grouped, hypothesis):
    res = fit_grouped
    names = list(res.params.index)
    # the explicit (R b - q)^T (R C R^T)^{-1} (R b - q), R and q written by hand
    R = np.zeros((2, len(names)))
    if "x" in hypothesis:
        R[0, names.index("C(c)[T.b]")], R[0, names.index("C(c)[T.c]")] = 1.0, -1.0
        R[1, names.index("x")] = 1.0
        q = np.array([0.0, 0.5])
    else:
        R[0, names.index("C(c)[T.b]")] = R[1, names.index("C(c)[T.c]")] = 1.0
        q = np.zeros(2)
    b = res.params.to_numpy()
    C = res.cov_params().to_numpy()
    d = R @ b - q
    W = float(d @ np.linalg.solve(R @ C @ R.T, d))
    w = res.wald_test(hypothesis, scalar=True)
    assert isinstance(w.statistic, float) and w.distribution == "chi2"
    assert w.statistic == pytest.approx(W, rel=1e-10)
    assert float(w.pvalue) == pytest.approx(stats.chi2.sf(W, 2), rel=1e-8)
    assert res.wald_test((R, q)).statistic == pytest.approx(W, rel=1e-10)
    assert np.shape(res.wald_test(hypothesis, scalar=False).statistic) == (1, 1)
    f = res.f_test(hypothesis)
    assert f.distribution == "F" and f.df_num == 2 and f.df_denom == res.df_resid
    assert float(f.fvalue) == pytest.approx(W / 2, rel=1e-10)
    assert float(f.pvalue) == pytest.approx(stats.f.sf(W / 2, 2, res.df_resid), rel=1e-8)


def test_wald_test_is_close_to_statsmodels_mixedlm(grouped, fit_grouped):
    """statsmodels takes the SEs from the joint observed information (O(1/n) apart)."""
    df, _ = grouped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm("y ~ x + C(c)", df, groups=df["g"]).fit()
    k = len(fit_grouped.params)
    R = np.zeros((2, len(ref.params)))
    R[0, 1], R[0, 2], R[1, 3] = 1.0, -1.0, 1.0
    ours = fit_grouped.wald_test("C(c)[T.b] = C(c)[T.c], x = 0").statistic
    assert ours == pytest.approx(float(ref.wald_test(R, scalar=True).statistic), rel=1e-2)
    # statsmodels' own wald_test given our (lme4) covariance of the fixed effects
    np.testing.assert_allclose(fit_grouped.params.to_numpy(), ref.fe_params.to_numpy(),
                               rtol=1e-5)
    cov = ref.cov_params().to_numpy().copy()
    cov[:k, :k] = fit_grouped.cov_params().to_numpy()
    sm = ref.wald_test(R, cov_p=cov, scalar=True)
    assert ours == pytest.approx(float(sm.statistic), rel=1e-4)
    assert float(fit_grouped.wald_test((R[:, :k], [0.0, 0.0])).pvalue) == pytest.approx(
        float(sm.pvalue), rel=1e-3)


def test_hypothesis_errors_are_value_errors(fit_grouped):
    res = fit_grouped
    with pytest.raises(ValueError, match="fixed effects are"):
        res.t_test("nope = 0")
    with pytest.raises(ValueError, match="columns"):
        res.wald_test(np.ones((1, 2)))
    with pytest.raises(ValueError):
        res.f_test("x = ")
    with pytest.warns(Warning, match="rank"):  # two copies of one constraint
        w = res.wald_test("x = 0, 2 * x = 0")
    assert w.statistic == pytest.approx(res.tvalues["x"] ** 2, rel=1e-8)


# ------------------------------------------------------------------- 2. get_prediction
def test_get_prediction_matches_predict_and_statsmodels_columns(fit_mlp):
    df, res = fit_mlp
    new = df.iloc[:7].assign(x=lambda d: d["x"] + 0.3)
    gp = res.get_prediction(new)
    ref = res.predict(new, interval="confidence", alpha=0.1)
    np.testing.assert_allclose(gp.predicted_mean, ref["mean"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(gp.se_mean, ref["se"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(gp.se_obs, np.sqrt(ref["se"].to_numpy() ** 2 + res.scale),
                               rtol=1e-12)
    np.testing.assert_allclose(gp.conf_int(alpha=0.1),
                               ref[["lower", "upper"]].to_numpy(), rtol=1e-12)
    obs = res.predict(new, interval="prediction")
    np.testing.assert_allclose(gp.conf_int(obs=True), obs[["lower", "upper"]].to_numpy(),
                               rtol=1e-12)
    frame = gp.summary_frame(alpha=0.05)
    assert list(frame.columns) == ["mean", "mean_se", "mean_ci_lower", "mean_ci_upper",
                                   "obs_ci_lower", "obs_ci_upper"]
    assert list(frame.index) == list(new.index)
    np.testing.assert_allclose(frame[["obs_ci_lower", "obs_ci_upper"]].to_numpy(),
                               obs[["lower", "upper"]].to_numpy(), rtol=1e-12)
    # the training rows by default
    train = res.get_prediction()
    np.testing.assert_allclose(train.predicted_mean, res.fittedvalues.to_numpy(), rtol=1e-12)
    with pytest.raises(TypeError, match="alpha"):
        res.get_prediction(new, alpha=0.1)
    with pytest.raises(ValueError, match="alpha"):
        gp.conf_int(alpha=2.0)


def test_get_prediction_with_a_precomputed_kernel(grouped, fit_grouped):
    df, K = grouped
    gp = fit_grouped.get_prediction(df.iloc[:4], kernel=K[:4])
    np.testing.assert_allclose(gp.predicted_mean, fit_grouped.fittedvalues.iloc[:4],
                               rtol=1e-10)


# ------------------------------------------------------------------ 3. str and HTML
def test_results_print_as_the_summary_and_show_as_html(fit_mlp):
    _, res = fit_mlp
    text = str(res)
    assert text == str(res.summary()) and "Training time t (NTK)" in text
    html = res._repr_html_()
    assert html == res.summary().as_html() and "<table" in html
    assert repr(res).startswith("<MixedLMNTKResults")


# ------------------------------------------------------------------------- 4. ax=
def test_every_plot_accepts_existing_axes(fit_mlp):
    from matplotlib.figure import Figure

    _, res = fit_mlp
    fig = Figure()
    axs = fig.subplots(2, 2)
    assert res.plot_profile(ax=axs[0, 0]) is fig
    assert res.plot_spectrum(ax=axs[0, 1]) is fig
    assert res.plot_fit(ax=axs[1]) is fig  # one row of two Axes
    assert all(a.has_data() for a in axs.ravel())
    fig2 = Figure()
    assert res.plot_fit(ax=list(fig2.subplots(1, 2))) is fig2
    with pytest.raises(TypeError, match="two matplotlib Axes"):
        res.plot_fit(ax=axs[0, 0])
    with pytest.raises(TypeError, match="not both"):
        res.plot_fit(ax=axs[1], axes=axs[1])
    with pytest.raises(ValueError, match="exactly two"):
        res.plot_fit(ax=[axs[0, 0]])


# ------------------------------------------------------------ 5. profile intervals
def _profile_set(values, llf, cut):
    inside = values[llf >= llf.max() - cut]
    return inside.min(), inside.max()


@pytest.mark.parametrize("reml", [True, False])
def test_scale_profile_interval_by_brute_force(fit_mlp, reml):
    df, _ = fit_mlp
    res = mn.MixedLMNTK.from_formula("y ~ x", df, ntk="~ z", network=mn.MLP(depth=1)).fit(
        reml, t_method="reml" if reml else "ml")
    lo, hi = res.scale_conf_int(method="profile")
    grid = np.linspace(0.3 * res.scale, 3.0 * res.scale, 40001)
    llf = np.array([res.likelihood_profile.loglike_full(res.t, s, reml) for s in grid])
    assert grid[np.argmax(llf)] == pytest.approx(res.scale, rel=1e-3)
    g_lo, g_hi = _profile_set(grid, llf, 0.5 * stats.chi2.ppf(0.95, 1))
    step = grid[1] - grid[0]
    assert abs(lo - g_lo) <= step and abs(hi - g_hi) <= step
    assert lo < res.scale < hi and hi - res.scale > res.scale - lo  # skewed right
    # close to the Wald interval on the log scale, the default
    w_lo, w_hi = res.scale_conf_int()
    assert (w_lo, w_hi) == res.scale_conf_int(method="wald")
    assert lo == pytest.approx(w_lo, rel=0.2) and hi == pytest.approx(w_hi, rel=0.2)
    lo90, hi90 = res.scale_conf_int(0.1, method="profile")
    assert lo < lo90 < hi90 < hi
    with pytest.raises(ValueError, match="method"):
        res.scale_conf_int(method="bootstrap")


def test_params_profile_interval_by_brute_force(grouped, fit_grouped):
    """Profile the Gaussian likelihood over beta_x with the other coefficients and s2
    maximised, at the fitted t, with dense matrices."""
    import scipy.linalg

    df, K = grouped
    res = fit_grouped
    ci = res.conf_int(method="profile")
    assert list(ci.columns) == [0, 1] and list(ci.index) == list(res.params.index)
    X = res.model.exog
    y = res.model.endog
    n = len(y)
    Vi = scipy.linalg.expm(-res.t * K)  # V = s2 exp(tK)
    j = list(res.params.index).index("x")
    others = [i for i in range(X.shape[1]) if i != j]
    Xo = X[:, others]

    def profiled(b):
        r0 = y - X[:, j] * b
        g = np.linalg.solve(Xo.T @ Vi @ Xo, Xo.T @ Vi @ r0)
        r = r0 - Xo @ g
        return -0.5 * n * math.log(float(r @ Vi @ r) / n)

    bhat = res.params["x"]
    grid = np.linspace(bhat - 1.0, bhat + 1.0, 20001)
    llf = np.array([profiled(b) for b in grid])
    g_lo, g_hi = _profile_set(grid, llf, 0.5 * stats.chi2.ppf(0.95, 1))
    step = grid[1] - grid[0]
    assert abs(ci.loc["x", 0] - g_lo) <= step and abs(ci.loc["x", 1] - g_hi) <= step
    wald = res.conf_int()
    assert (wald.to_numpy() == res.conf_int(method="wald").to_numpy()).all()
    width = ci[1] - ci[0]
    np.testing.assert_allclose(width, wald[1] - wald[0], rtol=0.1)
    with pytest.raises(ValueError, match="method"):
        res.conf_int(method="bootstrap")


# ----------------------------------------------------------------------------- 6. CLI
@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=80), "z": rng.normal(size=80),
                       "g": rng.choice(["a", "b"], size=80)})
    df["y"] = df["x"] + np.sin(2 * df["z"]) + 0.3 * rng.normal(size=80)
    path = tmp_path_factory.mktemp("cli") / "d.csv"
    df.to_csv(path, index=False)
    return path


def test_cli_json_has_the_tests_of_t0_and_the_intervals(csv_path, capsys):
    assert main(["fit", str(csv_path), "y ~ x", "--ntk", "~ z", "--json", "--depth", "1",
                 "--t-method", "reml", "--nsim", "200"]) == 0
    text = capsys.readouterr().out
    out = json.loads(text)
    assert "NaN" not in text
    tests = out["tests_t0"]
    score, lr = tests["score"], tests["lr"]
    assert score["applicable"] and 0 <= score["pvalue"] <= 1 and score["statistic"] > 0
    assert "exact" in score["method"]
    assert lr["applicable"] and "simulated" in lr["method"] and lr["pvalue"] >= 1 / 201
    assert 0 <= lr["mixture_pvalue"] <= 1
    assert set(out["conf_int"]) == {"Intercept", "x"}
    lo, hi = out["conf_int"]["x"]
    assert lo < out["params"]["x"] < hi
    assert out["scale_ci"][0] < out["scale"] < out["scale_ci"][1]
    # the same tests as the API's
    df = pd.read_csv(csv_path)
    res = mn.MixedLMNTK.from_formula("y ~ x", df, ntk="~ z", network=mn.MLP(depth=1)).fit(
        t_method="reml")
    assert score["statistic"] == pytest.approx(res.score_test().statistic, rel=1e-10)
    assert lo == pytest.approx(res.conf_int().loc["x", 0], rel=1e-10)
    assert main(["fit", str(csv_path), "y ~ x", "--ntk", "~ z", "--json", "--depth", "1",
                 "--lr-null", "mixture"]) == 0
    lr = json.loads(capsys.readouterr().out)["tests_t0"]["lr"]
    assert "mixture" in lr["method"]


def test_cli_choose_kernel(csv_path, capsys):
    """``--choose-kernel``: the candidates and the chosen fit; in JSON the choice, and tests
    of t = 0 with the network's own kernel (the API's ``KernelChoice.score_test``)."""
    assert main(["fit", str(csv_path), "y ~ x", "--ntk", "~ z", "--choose-kernel"]) == 0
    text = capsys.readouterr().out
    assert "Kernel choice by BIC" in text and "<- chosen" in text
    assert "Mixed Linear Model with a Neural Tangent Kernel" in text
    assert main(["fit", str(csv_path), "y ~ x", "--ntk", "~ z", "--choose-kernel", "--json",
                 "--nsim", "50"]) == 0
    out = json.loads(capsys.readouterr().out)
    kc = out["kernel_choice"]
    assert kc["criterion"] == "bic" and set(kc["candidates"]) == {"start", "ard_sin"}
    assert kc["candidates"][kc["chosen"]]["chosen"] is True
    df = pd.read_csv(csv_path)
    choice = mn.hyper.choose_kernel(mn.MixedLMNTK.from_formula("y ~ x", df, ntk="~ z"))
    assert kc["chosen"] == choice.chosen
    assert out["llf"] == pytest.approx(choice.results.llf, rel=1e-10)
    assert out["aic"] == pytest.approx(choice.table.loc[choice.chosen, "aic"], rel=1e-10)
    assert out["tests_t0"]["score"]["statistic"] == pytest.approx(
        choice.score_test().statistic, rel=1e-10)


@pytest.mark.parametrize("argv, option", [
    (["y ~ x + nope", "--ntk", "~ z"], "argument FORMULA"),
    (["y ~ x", "--ntk", "nope"], "argument --ntk"),
    (["y ~ x", "--ntk", "~ nope"], "argument --ntk"),
    (["y ~ x", "--ntk", "g"], "argument --ntk"),
    (["y ~ x"], "argument --ntk is required"),
    (["y ~ x", "--ntk", "z", "--weight-std", "-1"], "argument --weight-std: must be"),
    (["y ~ x", "--ntk", "z", "--bias-std", "-1"], "argument --bias-std"),
    (["y ~ x", "--ntk", "z", "--depth", "-1"], "argument --depth"),
    (["y ~ x", "--ntk", "z", "--activation", "nope"], "argument --activation"),
])
def test_cli_errors_name_the_cli_argument(csv_path, argv, option):
    with pytest.raises(SystemExit) as exc:
        main(["fit", str(csv_path), *argv])
    msg = str(exc.value.code)
    assert option in msg
    for python_name in ("weight_std", "bias_std", "t_method", "ntk=", "fit("):
        assert python_name not in msg


def test_cli_bad_choices_are_argparse_errors(csv_path, capsys):
    for argv in (["--t-method", "bad"], ["--nsim", "0"], ["--lr-null", "bad"]):
        with pytest.raises(SystemExit) as exc:
            main(["fit", str(csv_path), "y ~ x", "--ntk", "z", *argv])
        assert exc.value.code == 2
        assert f"argument {argv[0]}" in capsys.readouterr().err


@pytest.mark.parametrize("module, examples", [("mixednn.contrasts", 8),
                                              ("mixednn.intervals", 5), ("mixednn.cli", 2)])
def test_docstring_examples_run(module, examples):
    import doctest
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert out.attempted >= examples and out.failed == 0
