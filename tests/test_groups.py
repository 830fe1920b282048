"""Group random effects beside the network: lme4's ``(1 | g)`` terms.

Without a network the fit must be lme4's.  The reference numbers below were made once
with R 4.x and lme4 1.1-31 on the CSV files in ``tests/data`` (simulated by this
project); CI never runs R.  lme4's default optimiser stops about 1e-5 (relative) from
the optimum in theta on these flat likelihoods, so the references use tight tolerances::

    ctl <- lmerControl(optimizer = "nloptwrap", optCtrl = list(xtol_rel = 1e-14,
           ftol_rel = 1e-15, ftol_abs = 1e-15, xtol_abs = 1e-14, maxeval = 100000))
    fit <- lmer(<formula>, data, REML = <reml>, control = ctl)
    logLik(fit); getME(fit, "theta"); fixef(fit); sqrt(diag(vcov(fit))); sigma(fit)
    ranef(fit)[[<group>]][1, ]

With the network, dense brute force (explicit ``expm``, explicit inverses) is the
reference.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import scipy.optimize
import scipy.stats

import mixednn as mn
from mixednn.bars import GroupStructure, split_bars
from mixednn.exceptions import BoundaryFitWarning
from mixednn.groupresults import score_test_t0
from mixednn.numerics import LOG_2PI

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def sleep():
    return pd.read_csv(DATA / "sleep_sim.csv")


@pytest.fixture(scope="module")
def unbalanced():
    return pd.read_csv(DATA / "unbalanced.csv")


# (data, formula, REML): logLik, theta, fixef, se, sigma, (group, first row of ranef)
LME4 = {
    "sleep_reml_corr": ("sleep", "reaction ~ days + (days | subject)", True,
                        -870.930614666268, [0.918651660358005, 0.101691780726912,
                                            0.147078006310473],
                        [246.36855747474843, 8.56467377104392], [6.69827274571602, 1.28971847448566],
                        26.0579112648631, ("subject", [-5.75372454372057, -1.83060266890481])),
    "sleep_ml_corr": ("sleep", "reaction ~ days + (days | subject)", False,
                      -874.881295015067, [0.881955393215994, 0.103474447566261,
                                          0.137173219964144],
                      [246.36855747474848, 8.56467377104383], [6.50955348625543, 1.25338079882439],
                      26.0579111981042, ("subject", [-5.91636695428225, -1.79353279990939])),
    "sleep_reml_uncorr": ("sleep", "reaction ~ days + (days || subject)", True,
                          -872.160264850194, [1.026195135926861, 0.199316920567229],
                          [246.36855747474772, 8.56467377104384],
                          [7.20581305418806, 1.38744193793608], 25.8513480097112,
                          ("subject", [-4.37961783927717, -2.05930526197259])),
    "unbal_reml_int": ("unbalanced", "y ~ x + (1 | g)", True,
                       -259.638340771067, [0.618563437946602],
                       [0.756375887869885, 0.575103330083293], [0.223939540891231, 0.118905040034168],
                       1.43351577874121, ("g", [-0.0974148457399773])),
    "unbal_ml_int": ("unbalanced", "y ~ x + (1 | g)", False,
                     -257.833781642327, [0.599761211075702],
                     [0.758077719306903, 0.574454396886943], [0.218598581918794, 0.118340897097178],
                     1.42798323036198, ("g", [-0.0966452121566641])),
    "unbal_crossed": ("unbalanced", "y ~ x + (1 | g) + (1 | b)", True,
                      -225.837673060656, [1.05848535820020, 1.08672006467424],
                      [0.650188797379356, 0.729642151563550],
                      [0.4942029509121236, 0.0842079699339807], 0.984431843898707,
                      ("b", [0.728546932628002])),
    "unbal_nested": ("unbalanced", "y ~ x + (1 | g/c)", True,
                     -259.444892740446, [0.305091768900079, 0.620566447907603],
                     [0.747672899856055, 0.558793014095807], [0.225145676874926, 0.118777597281121],
                     1.38939749443268, ("c:g", [0.0471204192245732])),
    "unbal_slope_only": ("unbalanced", "y ~ x + (0 + x | g) + (1 | b)", True,
                         -250.281626152626, [0.218243034579400, 0.679331110476352],
                         [0.686753266393922, 0.671251968722226],
                         [0.400232856550797, 0.134060656079513], 1.37623189996149,
                         ("g", [0.010249532720035])),
}


@pytest.mark.parametrize("case", sorted(LME4))
def test_without_a_network_the_fit_is_lme4s(case, sleep, unbalanced):
    data, formula, reml, llf, theta, fixef, se, sigma, (group, ranef0) = LME4[case]
    df = sleep if data == "sleep" else unbalanced
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = mn.MixedLMNTK.from_formula(formula, df).fit(reml=reml)
    assert not res.has_network and res.converged
    assert res.llf == pytest.approx(llf, abs=1e-6)
    np.testing.assert_allclose(res.theta, theta, rtol=2e-6)
    np.testing.assert_allclose(res.params.to_numpy(), fixef, rtol=1e-6)
    np.testing.assert_allclose(res.bse.to_numpy(), se, rtol=1e-6)
    assert np.sqrt(res.scale) == pytest.approx(sigma, rel=1e-6)
    np.testing.assert_allclose(res.ranef()[group].iloc[0].to_numpy(), ranef0, rtol=1e-5)
    # lme4's REML criterion / deviance is -2 logLik; its df: fixef + theta + sigma
    assert res.deviance == pytest.approx(-2 * llf, abs=2e-6)
    assert res.df_modelwc == len(fixef) + len(theta) + 1


def test_variance_components_table_has_lme4s_layout(sleep):
    res = mn.MixedLMNTK.from_formula("reaction ~ days + (days | subject)", sleep).fit()
    vc = res.vcomp
    assert list(vc.columns[:5]) == ["Groups", "Name", "Variance", "Std.Dev.", "Corr"]
    assert list(vc["Groups"]) == ["subject", "", "Residual"]
    assert list(vc["Name"]) == ["(Intercept)", "days", ""]
    # VarCorr(fit) of the tightly converged lme4 fit
    np.testing.assert_allclose(vc["Variance"].to_numpy(),
                               [573.03471178146, 21.71024569098, 679.01473948748], rtol=3e-6)
    assert float(vc["Corr"].iloc[1]) == pytest.approx(0.56871290609, abs=1e-3)
    text = str(res.summary())
    for word in ("subject", "(Intercept)", "Residual", "Corr", "Groups:"):
        assert word in text


def test_theta_names_and_term_order_follow_lme4(unbalanced):
    fixed, terms = split_bars("y ~ x + (1 | g/c)")
    assert fixed == "y ~ x"
    gs = GroupStructure.from_frame(terms, unbalanced)
    # lme4 orders terms by decreasing number of levels: c:g (more levels) before g
    assert gs.theta_names() == ["c:g.(Intercept)", "g.(Intercept)"]


# ----------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("formula, fixed, groups, effects", [
    ("y ~ x + (1 | g)", "y ~ x", [("g",)], ["1"]),
    ("y ~ (1 + x | g) + x", "y ~ x", [("g",)], ["1 + x"]),
    ("y ~ x + (0 + x | g)", "y ~ x", [("g",)], ["0 + x"]),
    ("y ~ x + (x || g)", "y ~ x", [("g",), ("g",)], ["1", "0 + x"]),
    ("y ~ (1 | a) + (1 | b)", "y ~ 1", [("a",), ("b",)], ["1", "1"]),
    ("y ~ x + (1 | a/b)", "y ~ x", [("a",), ("a", "b")], ["1", "1"]),
    ("y ~ x + (1 | a:b)", "y ~ x", [("a", "b")], ["1"]),
    ("y ~ x + I(a | b)", "y ~ x + I(a | b)", [], []),
])
def test_bar_terms_are_parsed_as_lme4_does(formula, fixed, groups, effects):
    got_fixed, terms = split_bars(formula)
    assert got_fixed == fixed
    assert [t.factors for t in terms] == groups
    assert [t.effects for t in terms] == effects


@pytest.mark.parametrize("formula, words", [
    ("y ~ x + 1 | g", "in parentheses"),
    ("y ~ x + (1 | g + h)", "grouping side"),
    ("y ~ x + ( | g)", "nothing left of the bar"),
])
def test_a_bar_can_never_become_a_fixed_effect(formula, words, unbalanced):
    with pytest.raises(ValueError, match=words):
        mn.MixedLMNTK.from_formula(formula, unbalanced)


def test_a_bar_in_the_network_inputs_is_refused(unbalanced):
    with pytest.raises(ValueError, match="main formula"):
        mn.MixedLMNTK.from_formula("y ~ x", unbalanced, ntk="~ x + (1 | g)")


def test_unknown_grouping_column_is_named(unbalanced):
    with pytest.raises(KeyError, match="grouping factor 'nope'"):
        mn.MixedLMNTK.from_formula("y ~ x + (1 | nope)", unbalanced)


def test_rows_missing_a_group_are_dropped_and_counted(unbalanced):
    df = unbalanced.copy()
    df.loc[[3, 7], "g"] = None
    before = df.copy()
    m = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", df)
    assert m.nobs == len(df) - 2 and m.data.n_dropped == 2
    pd.testing.assert_frame_equal(df, before)
    with pytest.raises(ValueError, match="random-effects columns"):
        mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", df, missing="raise")


def test_options_that_do_not_apply_are_refused(unbalanced):
    m = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", unbalanced)
    with pytest.raises(ValueError, match="t_method"):
        m.fit(t_method="gcv")
    with pytest.raises(TypeError, match="reml"):
        m.fit(reml="no")
    with pytest.raises(ValueError, match="low_rank"):
        mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", unbalanced, ntk=["x"], low_rank=20)


# ----------------------------------------------------------------------------- with a network
@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(3)
    n = 50
    df = pd.DataFrame({"g": rng.integers(0, 7, n).astype(str), "x": rng.normal(size=n),
                       "z": rng.uniform(-2, 2, n)})
    ug = rng.normal(0, 0.8, 7)
    df["y"] = 0.5 + 0.3 * df.x + np.sin(2 * df.z) + ug[df.g.astype(int)] \
        + 0.3 * rng.normal(size=n)
    return df


def _dense(m, t, theta, reml=True):
    """Everything by explicit matrices: H = expm(tK) + Z Lam Lam^T Z^T."""
    K = m.kernel_matrix()
    Z = m.groups.Z.toarray()
    Lam = m.groups.lambda_matrix(theta)
    X, y = m.exog, m.endog - m.offset
    n, p = X.shape
    H = scipy.linalg.expm(t * K) + Z @ Lam @ Lam.T @ Z.T
    Hi = np.linalg.inv(H)
    xhx = X.T @ Hi @ X
    beta = np.linalg.solve(xhx, X.T @ Hi @ y)
    r = y - X @ beta
    rss = r @ Hi @ r
    dof = n - p if reml else n
    llf = -0.5 * (dof * (LOG_2PI + np.log(rss / dof)) + dof + np.linalg.slogdet(H)[1])
    if reml:
        llf -= 0.5 * np.linalg.slogdet(xhx)[1]
    return dict(K=K, Z=Z, Lam=Lam, H=H, Hi=Hi, beta=beta, r=r, llf=llf, scale=rss / dof,
                xhx=xhx)


@pytest.mark.parametrize("reml", [True, False])
def test_joint_fit_equals_dense_brute_force(small, reml):
    m = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", small, ntk=["z"], network=mn.MLP(depth=1))
    res = m.fit(reml=reml)
    assert res.has_network and res.t > 0
    best = scipy.optimize.minimize(lambda x: -_dense(m, x[0], x[1:], reml)["llf"],
                                   np.r_[res.t * 1.3, 0.5], method="Nelder-Mead",
                                   options=dict(xatol=1e-10, fatol=1e-13, maxiter=4000))
    assert res.llf == pytest.approx(-best.fun, abs=1e-7)
    assert res.t == pytest.approx(best.x[0], rel=1e-5)
    assert abs(res.theta[0]) == pytest.approx(abs(best.x[1]), rel=1e-5)
    d = _dense(m, res.t, res.theta, reml)
    np.testing.assert_allclose(res.params.to_numpy(), d["beta"], rtol=1e-8)
    assert res.scale == pytest.approx(d["scale"], rel=1e-8)
    np.testing.assert_allclose(res.cov_params().to_numpy(), d["scale"] * np.linalg.inv(d["xhx"]),
                               rtol=1e-7)
    # conditional modes and the network's part: b = Lam Lam^T Z^T H^-1 r, u = (E - I) H^-1 r
    Hr = d["Hi"] @ d["r"]
    b = d["Lam"] @ d["Lam"].T @ d["Z"].T @ Hr
    np.testing.assert_allclose(res.ranef()["g"].to_numpy().ravel(), b, rtol=1e-6, atol=1e-9)
    u = (scipy.linalg.expm(res.t * d["K"]) - np.eye(m.nobs)) @ Hr
    np.testing.assert_allclose(res.network_part, u, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.fittedvalues.to_numpy(),
                               m.exog @ d["beta"] + d["Z"] @ b + u, rtol=1e-8)


def test_likelihood_gradient_is_analytic_and_right(small):
    m = mn.MixedLMNTK.from_formula("y ~ x + (1 + x | g)", small, ntk=["z"],
                                   network=mn.MLP(depth=1))
    prof = m.grouped_profile()
    x0 = np.array([0.3, 0.7, 0.2, 0.4])
    for reml in (True, False):
        llf, grad = prof.gradient(x0[0], x0[1:], reml)
        # (eigenvalues of K clipped at 0 and log det exp(tK) = t tr K: agreement to ~1e-9)
        assert llf == pytest.approx(_dense(m, x0[0], x0[1:], reml)["llf"], abs=1e-7)
        num = [(prof.loglike(x0[0] + h[0], x0[1:] + h[1:], reml)
                - prof.loglike(x0[0] - h[0], x0[1:] - h[1:], reml)) / 2e-6
               for h in 1e-6 * np.eye(4)]
        np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-6)


def test_no_group_variance_gives_the_plain_network_likelihood(small):
    m = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", small, ntk=["z"], network=mn.MLP(depth=1))
    prof = m.grouped_profile()
    plain = mn.MixedLMNTK.from_formula("y ~ x", small, ntk=["z"], network=mn.MLP(depth=1))
    for t in (0.0, 0.2, 1.5):
        assert prof.loglike(t, np.zeros(1)) == pytest.approx(plain.loglike(t), abs=1e-9)


def test_predictions_and_intervals_equal_hendersons_formulas(small):
    m = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", small, ntk=["z"], network=mn.MLP(depth=1))
    res = m.fit()
    new = pd.DataFrame({"x": [0.1, -1.0, 0.5], "z": [0.3, -1.2, 1.9], "g": ["0", "3", "new"]})
    got = res.predict(new, allow_new_levels=True, interval="prediction")
    d = _dense(m, res.t, res.theta)
    Zs = m.input_scaling.apply(new[["z"]].to_numpy())
    kx = m.kernel_source.cross(Zs, m.scaled_inputs)                    # rows x n
    K, Z, Lam = d["K"], d["Z"], d["Lam"]
    E = scipy.linalg.expm(res.t * K)
    Kp = np.linalg.pinv(K, rcond=1e-12, hermitian=True)
    zn = np.zeros((3, Z.shape[1]))
    for i, g in enumerate(new.g):
        if g in m.groups.blocks[0].levels:
            zn[i, list(m.groups.blocks[0].levels).index(g)] = 1.0
    # random part of a new row: k*^T K^+ u + z*^T b;  c = Cov(., y) / s2
    a = kx @ Kp
    c = a @ (E - np.eye(m.nobs)) + zn @ Lam @ Lam.T @ Z.T
    c0 = np.einsum("ij,jk,ik->i", a, E - np.eye(m.nobs), a) \
        + np.einsum("ij,jk,ik->i", zn, Lam @ Lam.T, zn) + (new.g == "new") * res.theta[0] ** 2
    X = np.column_stack([np.ones(3), new.x])
    mean = X @ d["beta"] + c @ d["Hi"] @ d["r"]
    L = X - c @ d["Hi"] @ m.exog
    var = d["scale"] * (c0 - np.einsum("ij,jk,ik->i", c, d["Hi"], c)) \
        + np.einsum("ij,jk,ik->i", L, d["scale"] * np.linalg.inv(d["xhx"]), L)
    np.testing.assert_allclose(got["mean"].to_numpy(), mean, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got["se"].to_numpy() ** 2, var + d["scale"], rtol=1e-5)


def test_get_prediction_is_statsmodels_shaped_and_matches_predict(small):
    """``get_prediction`` of a grouped fit: statsmodels' summary frame, its mean and
    both intervals those of ``predict(interval=...)``; ``alpha`` goes to the result."""
    res = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", small, ntk=["z"],
                                     network=mn.MLP(depth=1)).fit()
    new = pd.DataFrame({"x": [0.1, -1.0, 0.5], "z": [0.3, -1.2, 1.9], "g": ["0", "3", "new"]})
    pred = res.get_prediction(new, allow_new_levels=True)
    frame = pred.summary_frame(alpha=0.1)
    assert list(frame.columns) == ["mean", "mean_se", "mean_ci_lower", "mean_ci_upper",
                                   "obs_ci_lower", "obs_ci_upper"]
    conf = res.predict(new, allow_new_levels=True, interval="confidence", alpha=0.1)
    obs = res.predict(new, allow_new_levels=True, interval="prediction", alpha=0.1)
    np.testing.assert_allclose(frame["mean"], conf["mean"], rtol=1e-12)
    np.testing.assert_allclose(frame["mean_se"], conf["se"], rtol=1e-12)
    np.testing.assert_allclose(frame[["mean_ci_lower", "mean_ci_upper"]],
                               conf[["lower", "upper"]], rtol=1e-12)
    np.testing.assert_allclose(frame[["obs_ci_lower", "obs_ci_upper"]],
                               obs[["lower", "upper"]], rtol=1e-12)
    pop = res.get_prediction(new.iloc[:2], re_form="~0").predicted_mean
    np.testing.assert_allclose(pop, res.predict(new.iloc[:2], re_form="~0"), rtol=1e-12)
    with pytest.raises(TypeError, match="summary_frame"):
        res.get_prediction(new, alpha=0.1)


def test_new_levels_need_permission_and_population_level_drops_groups(small):
    res = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", small, ntk=["z"],
                                     network=mn.MLP(depth=1)).fit()
    new = pd.DataFrame({"x": [0.1], "z": [0.3], "g": ["new"]})
    with pytest.raises(ValueError, match="allow_new_levels"):
        res.predict(new)
    pop = res.predict(new.assign(g="0"), re_form="~0")
    assert pop.iloc[0] == pytest.approx(res.predict(new, allow_new_levels=True).iloc[0])
    wide = res.predict(new, allow_new_levels=True, interval="prediction")
    known = res.predict(new.assign(g="0"), interval="prediction")
    assert wide["se"].iloc[0] > known["se"].iloc[0]  # the new group's variance is in


def test_score_test_of_t0_has_its_size_given_theta(small):
    """Responses from the fitted null (groups, no network): the score test's p-values
    are uniform; its rejection rate at 5% within Monte Carlo error (300 draws)."""
    m = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", small, ntk=["z"], network=mn.MLP(depth=1))
    null = m.without_network().fit()
    prof = m.grouped_profile()
    rng = np.random.default_rng(11)
    U = m.basis.dense_eigenvectors
    Z = m.groups.Z.toarray()
    ps = []
    for _ in range(300):
        y = m.exog @ null.params.to_numpy() + np.sqrt(null.scale) * (
            rng.standard_normal(m.nobs) + Z @ (null.theta[0] * rng.standard_normal(Z.shape[1])))
        ps.append(score_test_t0(prof.with_response(U.T @ y)).pvalue)
    ps = np.array(ps)
    assert abs(np.mean(ps < 0.05) - 0.05) < 3 * np.sqrt(0.05 * 0.95 / 300)
    assert abs(np.mean(ps < 0.5) - 0.5) < 3 * np.sqrt(0.25 / 300)


def test_tests_of_t0_reject_when_the_network_has_signal(small):
    res = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", small, ntk=["z"],
                                     network=mn.MLP(depth=1)).fit()
    assert res.score_test().pvalue < 0.01
    lr = res.lr_test(nsim=19, seed=0)
    assert lr.pvalue == pytest.approx(1 / 20)
    assert "parametric bootstrap" in lr.method


def test_boundary_fits_warn_as_lme4(unbalanced):
    rng = np.random.default_rng(0)
    e = pd.Series(rng.normal(size=len(unbalanced)))
    # group means exactly 0: less between-group spread than the noise implies
    df = unbalanced.assign(y=(e - e.groupby(unbalanced.b).transform("mean")).to_numpy())
    with pytest.warns(BoundaryFitWarning, match="singular"):
        res = mn.MixedLMNTK.from_formula("y ~ x + (1 | b)", df).fit()
    assert res.theta[0] == 0.0 and res.singular_terms


def test_grouped_fits_pickle_and_load(small, tmp_path):
    res = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", small, ntk=["z"],
                                     network=mn.MLP(depth=1)).fit()
    new = pd.DataFrame({"x": [0.1, 2.0], "z": [0.3, -1.0], "g": ["0", "1"]})
    back = pickle.loads(pickle.dumps(res))
    pd.testing.assert_frame_equal(back.predict(new, interval="prediction"),
                                  res.predict(new, interval="prediction"))
    path = tmp_path / "fit.mixednn"
    res.save(path)
    loaded = mn.load(path)
    assert str(loaded.summary()) == str(res.summary())


def test_anova_compares_groups_and_networks(small):
    f = "y ~ x + (1 | g)"
    both = mn.MixedLMNTK.from_formula(f, small, ntk=["z"], network=mn.MLP(depth=1)).fit()
    groups = mn.MixedLMNTK.from_formula(f, small).fit()
    net = mn.MixedLMNTK.from_formula("y ~ x", small, ntk=["z"], network=mn.MLP(depth=1)).fit()
    tab = mn.anova(groups, both, names=["groups", "both"], null="mixture")
    row = tab.table.loc["both"]
    assert row["Chisq"] == pytest.approx(2 * (both.llf - groups.llf), rel=1e-9)
    assert 0 < row["Pr(>Chisq)"] < 0.05
    tab = mn.anova(net, both, names=["network", "both"], null="mixture")
    assert tab.table.loc["both", "Chisq"] == pytest.approx(
        max(2 * (both.llf - net.llf), 0.0), abs=1e-9)


def test_array_interface_is_statsmodels_mixedlm(sleep):
    X = np.column_stack([np.ones(len(sleep)), sleep.days])
    res = mn.MixedLMNTK(sleep.reaction, X, groups=sleep.subject).fit()
    # statsmodels: smf.mixedlm("reaction ~ days", sleep, groups=sleep.subject).fit(reml=True)
    # gives llf -886.0622550033 (its optimiser stops ~1e-8 from the maximum)
    assert res.llf == pytest.approx(-886.0622550033, abs=1e-7)
    re = pd.DataFrame({"(Intercept)": 1.0, "days": sleep.days})
    slopes = mn.MixedLMNTK(sleep.reaction, X, groups=sleep.subject, exog_re=re).fit()
    assert slopes.llf == pytest.approx(LME4["sleep_reml_corr"][3], abs=1e-6)
    assert list(slopes.vcomp["Name"][:2]) == ["re_0", "days"]
    with pytest.raises(ValueError, match="groups has 3 labels"):
        mn.MixedLMNTK(sleep.reaction, X, groups=["a", "b", "c"])
    with pytest.raises(ValueError, match="needs groups="):
        mn.MixedLMNTK(sleep.reaction, X, exog_re=X)


def test_group_variance_test_with_the_network_present(small):
    res = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", small, ntk=["z"],
                                     network=mn.MLP(depth=1)).fit()
    net = mn.MixedLMNTK.from_formula("y ~ x", small, ntk=["z"], network=mn.MLP(depth=1)).fit()
    test = res.lr_test_groups(nsim=19, seed=0)
    assert test.statistic == pytest.approx(2 * (res.llf - net.llf), rel=1e-6)
    assert test.pvalue == pytest.approx(1 / 20)  # a real group effect (sd 0.8) is found


def test_predict_on_the_training_rows_and_from_arrays(sleep):
    res = mn.MixedLMNTK.from_formula("reaction ~ days + (days | subject)", sleep).fit()
    inside = res.predict(interval="confidence")
    np.testing.assert_allclose(inside["mean"].to_numpy(), res.fittedvalues.to_numpy(),
                               rtol=1e-10)
    X = np.column_stack([np.ones(len(sleep)), sleep.days])
    arr = mn.MixedLMNTK(sleep.reaction, X, groups=sleep.subject, exog_re=X).fit()
    got = arr.predict(exog=X[:5], groups=sleep.subject[:5], exog_re=X[:5],
                      interval="prediction")
    want = res.predict(sleep.iloc[:5], interval="prediction")
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-5)


def test_saving_without_rows_is_refused_clearly(sleep, tmp_path):
    res = mn.MixedLMNTK.from_formula("reaction ~ days + (1 | subject)", sleep).fit()
    with pytest.raises(ValueError, match="remove_data"):
        res.save(tmp_path / "f.mixednn", remove_data=True)


def test_grouping_factors_that_cannot_be_separated_from_noise_are_refused(unbalanced):
    df = unbalanced.assign(row=np.arange(len(unbalanced)).astype(str), one="a")
    with pytest.raises(ValueError, match="number of observations"):
        mn.MixedLMNTK.from_formula("y ~ x + (1 | row)", df)
    with pytest.raises(ValueError, match="at least 2"):
        mn.MixedLMNTK.from_formula("y ~ x + (1 | one)", df)


def test_linear_hypotheses_on_a_grouped_fit(unbalanced):
    """``t_test`` / ``wald_test`` / ``f_test`` of a grouped fit: a single coefficient's z
    test is its row of the summary, and a joint test is ``b^T C^{-1} b`` by hand."""
    res = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", unbalanced).fit()
    tt = res.t_test("x = 0")
    assert float(tt.statistic[0, 0]) == pytest.approx(res.tvalues["x"], rel=1e-12)
    assert float(tt.pvalue) == pytest.approx(res.pvalues["x"], rel=1e-10)
    b = res.params.to_numpy()
    C = res.cov_params().to_numpy()
    w = res.wald_test("Intercept = 0, x = 0", scalar=True)
    assert float(w.statistic) == pytest.approx(b @ np.linalg.solve(C, b), rel=1e-10)
    f = res.f_test("Intercept = 0, x = 0")
    assert float(f.fvalue) == pytest.approx(b @ np.linalg.solve(C, b) / 2, rel=1e-10)
    assert f.df_denom == res.df_resid


def test_t_profile_interval_equals_brute_force(small):
    """The profile interval for t with theta profiled out, against the dense criterion
    (explicit expm and inverses) maximised over theta by a bounded scalar search at each
    end: the criterion there is the cut-off, l_hat - chi2_1(0.95) / 2."""
    m = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", small, ntk=["z"], network=mn.MLP(depth=1))
    res = m.fit()
    lo, hi = res.t_conf_int(0.05)
    assert 0 <= lo < res.t < hi < np.inf

    def dense_profiled(t):
        out = scipy.optimize.minimize_scalar(lambda th: -_dense(m, t, np.array([th]))["llf"],
                                             bounds=(0.0, 20.0), method="bounded",
                                             options={"xatol": 1e-10})
        return -out.fun

    cut = res.llf - 0.5 * scipy.stats.chi2.ppf(0.95, 1)
    assert dense_profiled(hi) == pytest.approx(cut, abs=1e-6)
    if lo > 0:
        assert dense_profiled(lo) == pytest.approx(cut, abs=1e-6)
    else:
        assert dense_profiled(0.0) >= cut
    # inside the interval the profiled criterion is above the cut, outside below
    assert dense_profiled(0.5 * (res.t + hi)) > cut > dense_profiled(1.2 * hi)
    shown = re.search(r"95% profile-likelihood interval\s+\[([^,]+), ([^\]]+)\]",
                      str(res.summary()))
    assert float(shown.group(1)) == pytest.approx(lo, abs=1e-4)
    assert float(shown.group(2)) == pytest.approx(hi, rel=1e-3)


def test_t_profile_interval_at_the_boundary_starts_at_zero():
    """No network signal: t_hat = 0, the interval is [0, upper] and the dense profiled
    criterion at the upper end is the cut-off."""
    rng = np.random.default_rng(0)
    n = 60
    df = pd.DataFrame({"g": rng.integers(0, 6, n).astype(str), "x": rng.normal(size=n),
                       "z": rng.normal(size=n)})
    df["y"] = df.x + rng.normal(0, 1, 6)[df.g.astype(int)] + rng.normal(size=n)
    m = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", df, ntk=["z"], network=mn.MLP(depth=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryFitWarning)
        res = m.fit()
    assert res.t == 0.0
    lo, hi = res.t_conf_int()
    assert lo == 0.0 and 0 < hi < np.inf
    best = scipy.optimize.minimize_scalar(lambda th: -_dense(m, hi, np.array([th]))["llf"],
                                          bounds=(0.0, 20.0), method="bounded",
                                          options={"xatol": 1e-10})
    assert -best.fun == pytest.approx(res.llf - 0.5 * scipy.stats.chi2.ppf(0.95, 1), abs=1e-6)


# lme4 1.1 confint(lmer(..., REML = FALSE), parm = "theta_", method = "profile"): lme4
# interpolates its profile by splines, hence the 2e-4 tolerance
LME4_PROFILE = {
    ("sleep", "reaction ~ days + (1 | subject)"): {
        0.05: [(27.9025168151193, 56.2115746150824), (26.4433333724683, 32.8865926475654)],
        0.10: [(29.2771233736652, 52.5851964484729), (26.8804362656862, 32.2761878158450)]},
    ("sleep", "reaction ~ days + (days || subject)"): {
        0.05: [(16.50910069683366, 39.94668164728885), (3.25159598325524, 7.72130605945151),
               (23.15058555970009, 29.04748282936907)]},
    ("unbalanced", "y ~ x + (1 | g)"): {
        0.05: [(0.50437142668740, 1.34167439457882), (1.25945093099539, 1.63663018484014)]},
    ("unbalanced", "y ~ x + (1 | g) + (1 | b)"): {
        0.05: [(0.736150491102181, 1.48761986989949), (0.589943525530341, 2.02485049270575),
               (0.862522249496266, 1.12726187239569)],
        0.10: [(0.777517109282423, 1.39983539269392), (0.635921621645230, 1.77050461035941),
               (0.879797368803358, 1.10126644776464)]},
}


@pytest.mark.parametrize("key", sorted(LME4_PROFILE))
@pytest.mark.parametrize("reml", [True, False])
def test_variance_component_intervals_are_lme4s_profile(key, reml, sleep, unbalanced):
    """Without a network: lme4's profile intervals for the standard deviations, from a
    REML or an ML fit alike (lme4 profiles the ML deviance in both cases)."""
    data = {"sleep": sleep, "unbalanced": unbalanced}[key[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoundaryFitWarning)
        res = mn.MixedLMNTK.from_formula(key[1], data).fit(reml=reml)
    for alpha, expected in LME4_PROFILE[key].items():
        got = res.vcomp_conf_int(alpha)
        assert list(got.columns) == [f"{100 * alpha / 2:g} %", f"{100 * (1 - alpha / 2):g} %"]
        assert got.index[-1] == "sigma" and got.index[0].startswith("sd_(Intercept)|")
        if "||" in key[1]:  # lme4 names both terms of (x || g) after g
            assert list(got.index) == ["sd_(Intercept)|subject", "sd_days|subject", "sigma"]
        np.testing.assert_allclose(got.to_numpy(), np.array(expected), rtol=2e-4)


def test_variance_component_intervals_with_a_network_equal_brute_force(small):
    """With the network, t is maximised too: at each end the dense ML log-likelihood
    (explicit expm and inverse), maximised over sigma and t with sigma_g held there (or
    over theta and t with sigma held), is the cut-off."""
    m = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", small, ntk=["z"], network=mn.MLP(depth=1))
    res = m.fit()
    ci = res.vcomp_conf_int()
    ml = m.fit(reml=False)
    n = m.nobs

    def full(t, theta, sigma):
        d = _dense(m, t, np.array([theta]), reml=False)
        rss = d["r"] @ d["Hi"] @ d["r"]
        return -0.5 * (n * (LOG_2PI + 2 * np.log(sigma)) + rss / sigma ** 2
                       + np.linalg.slogdet(d["H"])[1])

    l_hat = full(ml.t, ml.theta[0], np.sqrt(ml.scale))
    cut = l_hat - 0.5 * scipy.stats.chi2.ppf(0.95, 1)
    for end in ci.loc["sd_(Intercept)|g"]:
        best = scipy.optimize.minimize(
            lambda x: -full(abs(x[1]), end / np.exp(x[0]), np.exp(x[0])),
            [0.5 * np.log(ml.scale), ml.t], method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
        assert -best.fun == pytest.approx(cut, abs=1e-5)
    for end in ci.loc["sigma"]:
        best = scipy.optimize.minimize(lambda x: -full(abs(x[1]), x[0], end),
                                       [ml.theta[0], ml.t], method="Nelder-Mead",
                                       options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
        assert -best.fun == pytest.approx(cut, abs=1e-5)


def test_variance_component_intervals_refuse_correlated_terms(sleep):
    res = mn.MixedLMNTK.from_formula("reaction ~ days + (days | subject)", sleep).fit()
    with pytest.raises(NotImplementedError, match=r"\(x \|\| g\)"):
        res.vcomp_conf_int()


# lme4 1.1, as.data.frame(ranef(lmer(..., REML = TRUE), condVar = TRUE)): the first
# level's (Intercept) row and its days row; the balanced design gives every level the same
# condsd.  lme4's optimiser stops about 1e-5 from the optimum of the correlated model,
# hence its looser tolerance.
LME4_CONDVAR = {
    "reaction ~ days + (1 | subject)": ((-13.32315450407330, 9.06918225041837), None, 1e-6),
    "reaction ~ days + (days | subject)": ((-5.75342507991487, 9.88526232324357),
                                           (None, 1.86196617110145), 1e-4),
    "reaction ~ days + (days || subject)": ((-4.37962367108624, 12.2949055188054),
                                            (None, 2.31005946272465), 1e-5),
}


@pytest.mark.parametrize("formula", sorted(LME4_CONDVAR))
def test_ranef_table_is_lme4s_condvar(formula, sleep):
    res = mn.MixedLMNTK.from_formula(formula, sleep).fit()
    tab = res.ranef_table()
    assert list(tab.columns) == ["grpvar", "term", "grp", "condval", "condsd"]
    (val, sd), days, rel = LME4_CONDVAR[formula]
    first = tab.iloc[0]
    assert (first.grpvar, first.term, first.grp) == ("subject", "(Intercept)", "S01")
    assert first.condval == pytest.approx(val, rel=rel)
    np.testing.assert_allclose(tab.loc[tab.term == "(Intercept)", "condsd"], sd, rtol=rel)
    if days is not None:
        np.testing.assert_allclose(tab.loc[tab.term == "days", "condsd"], days[1], rtol=rel)
    # the modes are ranef()'s
    np.testing.assert_allclose(tab.loc[tab.term == "(Intercept)", "condval"],
                               res.ranef()["subject"]["(Intercept)"], rtol=1e-12)


def test_ranef_table_with_a_network_equals_the_dense_conditional_variance(small):
    """Var(b | y) = s2 (L L^T - L L^T Z^T H^{-1} Z L L^T) with H = expm(tK) + Z L L^T Z^T,
    by explicit matrices."""
    m = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", small, ntk=["z"], network=mn.MLP(depth=1))
    res = m.fit()
    d = _dense(m, res.t, res.theta)
    C = d["Lam"] @ d["Lam"].T
    cond = res.scale * (C - C @ d["Z"].T @ d["Hi"] @ d["Z"] @ C)
    tab = res.ranef_table()
    np.testing.assert_allclose(tab["condsd"], np.sqrt(np.diag(cond)), rtol=1e-7)
    np.testing.assert_allclose(tab["condval"], C @ d["Z"].T @ d["Hi"] @ d["r"], rtol=1e-6,
                               atol=1e-9)


def test_a_grouped_fit_saved_before_the_interval_caches_still_summarises(small):
    """A fit pickled by an earlier version has no interval caches: the summary and the
    intervals build them on first use."""
    res = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", small, ntk=["z"],
                                     network=mn.MLP(depth=1)).fit()
    state = {k: v for k, v in res.__dict__.items()
             if k not in ("_t_ci_cache", "_vcomp_ci_cache")}
    old = object.__new__(type(res))
    old.__dict__.update(pickle.loads(pickle.dumps(state)))
    assert "profile-likelihood interval" in str(old.summary())
    assert old.t_conf_int() == pytest.approx(res.t_conf_int(), rel=1e-10)
