"""Precision weights, ``weights=`` (docs/model.md section 2.7): ``Var(e_i) = s2 / w_i``,
the network trained on the weighted loss ``1/2 sum_i w_i (y_i - f_i)^2``.

References: dense brute force on small n (``scipy.linalg.expm``, explicit inverses and
conditional Gaussians), the explicitly whitened unweighted model, and R's lme4 (numbers
stored below with the call that produced them; the tests never call R).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from scipy.optimize import minimize_scalar

import mixednn as mn
from mixednn.features import FunctionFeatures
from mixednn.partitions import CSVSource
from mixednn.smoother import hat_matrix

from .conftest import RandomFeatureKernel, rel_diff

DATA = Path(__file__).resolve().parent / "data"


# ----------------------------------------------------------------------- brute force

def _weighted_cov(K, w, t):
    """``Var(y) / s2 = W^{-1/2} expm(t W^{1/2} K W^{1/2}) W^{-1/2}``, built explicitly."""
    sw = np.sqrt(w)
    E = scipy.linalg.expm(t * (sw[:, None] * K * sw[None, :]))
    return E / sw[:, None] / sw[None, :]


def _brute(y, X, K, w, t, reml=True):
    """GLS beta, its covariance, s2 and the REML/ML log-likelihood of y at t, from the
    dense covariance and explicit inverses."""
    n, p = X.shape
    V = _weighted_cov(K, w, t)
    Vi = np.linalg.inv(V)
    A = X.T @ Vi @ X
    beta = np.linalg.solve(A, X.T @ Vi @ y)
    r = y - X @ beta
    dof = n - p if reml else n
    s2 = float(r @ Vi @ r) / dof
    llf = -0.5 * (dof * math.log(2 * math.pi * s2) + dof + np.linalg.slogdet(V)[1])
    if reml:
        llf -= 0.5 * np.linalg.slogdet(A)[1]
    return {"beta": beta, "cov": s2 * np.linalg.inv(A), "scale": s2, "llf": llf, "r": r,
            "V": V, "Vi": Vi}


def _flow_integral(A, t):
    """``int_0^t expm(-s A) ds`` from one exponential of a block matrix (no inverse)."""
    n = A.shape[0]
    B = np.zeros((2 * n, 2 * n))
    B[:n, :n] = -A
    B[:n, n:] = np.eye(n)
    return scipy.linalg.expm(t * B)[:n, n:]


# -------------------------------------------------------------------------- problem

@pytest.fixture(scope="module")
def problem():
    """n = 36 rows, weights between 0.25 and 4, a well-conditioned random-feature kernel
    (explicit inverses are exact to ~1e-12)."""
    rng = np.random.default_rng(12)
    n, d = 36, 2
    Z = rng.normal(size=(n, d))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    w = rng.uniform(0.25, 4.0, size=n)
    y = X @ [1.0, 0.5] + np.sin(2 * Z[:, 0]) + 0.4 * rng.normal(size=n) / np.sqrt(w)
    rf = RandomFeatureKernel(d, m=800, seed=5)
    model = mn.MixedLMNTK(y, X, Z, kernel=rf, weights=w, scale_inputs=False)
    Znew = rng.normal(size=(5, d))
    Xnew = np.column_stack([np.ones(5), rng.normal(size=5)])
    return {"y": y, "X": X, "Z": Z, "w": w, "rf": rf, "K": rf(Z, Z), "model": model,
            "fits": {reml: model.fit(reml=reml) for reml in (True, False)},
            "Znew": Znew, "Xnew": Xnew, "wnew": rng.uniform(0.5, 2.0, size=5)}


# ---------------------------------------------------------- 1. dense brute force

@pytest.mark.parametrize("reml", [True, False])
def test_fit_equals_dense_brute_force(problem, reml):
    res = problem["fits"][reml]
    y, X, K, w = problem["y"], problem["X"], problem["K"], problem["w"]
    assert res.t > 0 and not res.boundary
    ref = _brute(y, X, K, w, res.t, reml)
    assert abs(res.llf - ref["llf"]) <= 1e-8 * abs(ref["llf"])
    assert rel_diff(res.params, ref["beta"]) <= 1e-8
    assert rel_diff(res.bse, np.sqrt(np.diag(ref["cov"]))) <= 1e-8
    assert rel_diff(res.cov_params(), ref["cov"]) <= 1e-8
    assert abs(res.scale - ref["scale"]) <= 1e-8 * ref["scale"]
    # the log-likelihood is that of y: the whitened problem's plus 1/2 sum log w
    assert res.model.loglike(res.t, reml) == pytest.approx(ref["llf"], rel=1e-10)
    # the package's t maximises the brute-force criterion
    f = lambda u: -_brute(y, X, K, w, math.exp(u), reml)["llf"]  # noqa: E731
    u0 = math.log(res.t)
    opt = minimize_scalar(f, bounds=(u0 - 2, u0 + 2), method="bounded",
                          options={"xatol": 1e-9})
    assert abs(opt.x - u0) <= 1e-6
    grid = res.t * np.array([0.25, 0.5, 0.9, 0.99, 1.01, 1.1, 2.0, 4.0])
    assert all(-f(math.log(t)) < ref["llf"] for t in grid)


def test_fitted_values_and_blup_equal_weighted_gradient_flow(problem):
    res = problem["fits"][True]
    y, X, K, w = problem["y"], problem["X"], problem["K"], problem["w"]
    sw = np.sqrt(w)
    Kw = sw[:, None] * K * sw[None, :]
    r = y - X @ res.params.to_numpy()
    # gradient flow on 1/2 sum w_i (r_i - f_i)^2: f_t = (I - expm(-t K W)) r
    u = (np.eye(len(y)) - scipy.linalg.expm(-res.t * K * w[None, :])) @ r
    assert rel_diff(res.random_effects, u) <= 1e-9
    assert rel_diff(res.fittedvalues, X @ res.params.to_numpy() + u) <= 1e-10
    assert rel_diff(res.resid, y - res.fittedvalues.to_numpy()) <= 1e-12
    assert rel_diff(res.resid_pearson, sw * res.resid.to_numpy() / math.sqrt(res.scale)) <= 1e-12
    # the same through the whitened kernel, W^{-1/2} (I - expm(-t K_w)) W^{1/2} r
    uw = (np.eye(len(y)) - scipy.linalg.expm(-res.t * Kw)) @ (sw * r) / sw
    assert rel_diff(res.random_effects, uw) <= 1e-9
    assert rel_diff(hat_matrix(res.model, res.t) @ y, res.fittedvalues) <= 1e-9


# ------------------------------------------------------------- 2. predictions

def _explicit_prediction(problem, res, Kx, Xn):
    """Mean and variance of the mean at rows with cross-kernel ``Kx`` (rows x n): the
    conditional Gaussian of u* = k(z*, Z) W^{1/2} alpha, alpha ~ N(0, s2 K_w^{-1}
    (expm(t K_w) - I) K_w^{-1}) (docs/model.md sections 2.7 and 4)."""
    y, X, K, w = problem["y"], problem["X"], problem["K"], problem["w"]
    sw = np.sqrt(w)
    Kw = sw[:, None] * K * sw[None, :]
    t, s2 = res.t, res.scale
    ref = _brute(y, X, K, w, t, res.reml)
    E = scipy.linalg.expm(t * Kw)
    Kwi = np.linalg.inv(Kw)
    cov_alpha = Kwi @ (E - np.eye(len(y))) @ Kwi
    kx = Kx * sw[None, :]  # new rows meet the whitened training rows
    C = ((Kw @ cov_alpha) / sw[:, None]) @ kx.T  # Cov(y, u*) / s2, n x rows
    Vi = ref["Vi"]
    mean = Xn @ ref["beta"] + C.T @ Vi @ ref["r"]
    L = Xn - (X.T @ Vi @ C).T
    var = s2 * (np.einsum("ij,jk,ik->i", kx, cov_alpha, kx) - np.einsum("ji,jk,ki->i", C, Vi, C))
    var += np.einsum("ij,jk,ik->i", L, ref["cov"], L)
    # the mean is also the flow: f0* + k* W^{1/2} int_0^t expm(-s K_w) ds W^{1/2} r
    flow = Xn @ ref["beta"] + kx @ _flow_integral(Kw, t) @ (sw * ref["r"])
    assert rel_diff(mean, flow) <= 1e-8
    return mean, var


def test_predictions_at_new_rows_equal_explicit_conditional_gaussian(problem):
    res = problem["fits"][True]
    Zn, Xn, wn = problem["Znew"], problem["Xnew"], problem["wnew"]
    Kx = problem["rf"](Zn, problem["Z"])
    mean, var = _explicit_prediction(problem, res, Kx, Xn)
    got = res.predict(exog=Xn, ntk_inputs=Zn)
    assert rel_diff(got, mean) <= 1e-8
    ci = res.predict(exog=Xn, ntk_inputs=Zn, interval="confidence")
    assert rel_diff(ci["se"], np.sqrt(var)) <= 1e-7
    # a new observation of weight 1 by default, s2 / w* with weights=
    pi = res.predict(exog=Xn, ntk_inputs=Zn, interval="prediction")
    assert rel_diff(pi["se"], np.sqrt(var + res.scale)) <= 1e-7
    pw = res.predict(exog=Xn, ntk_inputs=Zn, interval="prediction", weights=wn)
    assert rel_diff(pw["se"], np.sqrt(var + res.scale / wn)) <= 1e-7
    assert rel_diff(pw["upper"] - pw["mean"],
                    1.959963984540054 * np.sqrt(var + res.scale / wn)) <= 1e-7
    # the precomputed-kernel route: the cross-kernel of the caller, unweighted
    assert rel_diff(res.predict(exog=Xn, kernel=Kx), mean) <= 1e-8
    gp = res.get_prediction(exog=Xn, ntk_inputs=Zn, weights=wn).summary_frame()
    assert rel_diff(gp["mean_se"], np.sqrt(var)) <= 1e-7
    assert rel_diff(gp["obs_ci_upper"], pw["upper"]) <= 1e-10
    assert rel_diff(res.get_prediction(exog=Xn, ntk_inputs=Zn).se_obs, pi["se"]) <= 1e-10


def test_in_sample_intervals_equal_explicit_conditional_gaussian(problem):
    res = problem["fits"][True]
    w = problem["w"]
    mean, var = _explicit_prediction(problem, res, problem["K"], problem["X"])
    assert rel_diff(res.fittedvalues, mean) <= 1e-8
    ci = res.predict(interval="confidence")
    assert rel_diff(ci["se"], np.sqrt(var)) <= 1e-7
    pi = res.predict(interval="prediction")  # the training rows' own weights
    assert rel_diff(pi["se"], np.sqrt(var + res.scale / w)) <= 1e-7
    assert rel_diff(res.get_prediction().se_obs, pi["se"]) <= 1e-10
    unit = res.predict(interval="prediction", weights=np.ones(len(w)))  # weights= overrides
    assert rel_diff(unit["se"], np.sqrt(var + res.scale)) <= 1e-7


def test_formula_weights_column_of_new_data_gives_the_observation_weights():
    rng = np.random.default_rng(3)
    n = 40
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n),
                       "w": rng.uniform(0.5, 2, size=n)})
    df["y"] = 0.5 * df.x + np.sin(2 * df.z) + 0.3 * rng.normal(size=n) / np.sqrt(df.w)
    res = mn.MixedLMNTK.from_formula("y ~ x", df, ntk="~ z", network=mn.MLP(depth=1),
                                     weights="w").fit()
    assert res.model.weights == pytest.approx(df.w.to_numpy(), rel=0, abs=0)
    text = str(res.summary())
    assert "Weights:" in text and text.split("Weights:")[1].split()[0] == "w"
    new = df.iloc[:4].copy()
    with_w = res.predict(new, interval="prediction")
    no_w = res.predict(new.drop(columns="w"), interval="prediction")
    ci = res.predict(new, interval="confidence")
    assert np.allclose(with_w["mean"], no_w["mean"], rtol=0, atol=0)
    assert rel_diff(with_w["se"], np.sqrt(ci["se"] ** 2 + res.scale / new.w.to_numpy())) <= 1e-12
    assert rel_diff(no_w["se"], np.sqrt(ci["se"] ** 2 + res.scale)) <= 1e-12
    # a missing weight in newdata: NaN observation interval only
    new.loc[new.index[1], "w"] = np.nan
    got = res.predict(new, interval="prediction")
    assert np.isnan(got["se"].iloc[1]) and np.isfinite(got["se"].drop(new.index[1])).all()
    assert np.isfinite(res.predict(new)).all()


# -------------------------------------------- rules for t, free modes, tests: whitened

@pytest.mark.parametrize("kw", [dict(t_method="reml"), dict(reml=False, t_method="ml"),
                                dict(t_method="gcv"), dict(t_method="cp"),
                                dict(t_method="loo"), dict(t_method="kfold"),
                                dict(t_method="reml", free_modes=1)])
def test_every_rule_runs_on_the_whitened_problem(problem, kw):
    """The weighted fit is the unweighted fit of W^{1/2} y, W^{1/2} X, W^{1/2} K W^{1/2}
    (plus 1/2 sum log w in the log-likelihood)."""
    y, X, K, w = problem["y"], problem["X"], problem["K"], problem["w"]
    sw = np.sqrt(w)
    whitened = mn.MixedLMNTK(sw * y, sw[:, None] * X, kernel=sw[:, None] * K * sw[None, :])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = problem["model"].fit(**kw), whitened.fit(**kw)
    assert rel_diff(a.t, b.t) <= 1e-7
    assert rel_diff(a.params, b.params) <= 1e-7 and rel_diff(a.bse, b.bse) <= 1e-7
    assert rel_diff(a.scale, b.scale) <= 1e-7
    assert a.llf - b.llf == pytest.approx(0.5 * np.sum(np.log(w)), abs=1e-7)
    assert rel_diff(a.fittedvalues, b.fittedvalues / sw) <= 1e-7


def test_score_test_anova_and_wls_null(problem):
    res, ml = problem["fits"][True], problem["fits"][False]
    y, X, K, w = problem["y"], problem["X"], problem["K"], problem["w"]
    sw = np.sqrt(w)
    whitened = mn.MixedLMNTK(sw * y, sw[:, None] * X, kernel=sw[:, None] * K * sw[None, :])
    assert rel_diff(res.score_test().statistic, whitened.fit().score_test().statistic) <= 1e-8
    null = res.null_fit()  # statsmodels WLS: its ML log-likelihood is the model's at t = 0
    assert type(null.model).__name__ == "WLS"
    assert null.llf == pytest.approx(ml.model.loglike(0.0, reml=False), rel=1e-12)
    assert null.llf == pytest.approx(_brute(y, X, K, w, 0.0, reml=False)["llf"], rel=1e-12)
    tab = mn.anova(null, res)
    stat = 2 * (res.llf - _brute(y, X, K, w, 0.0, reml=True)["llf"])
    assert tab.table["Chisq"].iloc[1] == pytest.approx(stat, rel=1e-8)
    # an unweighted OLS is not the null of a weighted model
    import statsmodels.api as sm

    with pytest.raises(ValueError, match="weights"):
        mn.anova(sm.OLS(y, X).fit(), res)


# ------------------------------------------------------------ feature space (low rank)

def test_feature_space_fit_equals_dense_weighted_fit(problem):
    rng = np.random.default_rng(8)
    n, d = 60, 2
    Z = rng.normal(size=(n, d))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    w = rng.uniform(0.25, 4.0, size=n)
    y = X @ [0.5, -1.0] + np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=n) / np.sqrt(w)
    rf = RandomFeatureKernel(d, m=20, seed=3, freq=1.0)
    fmap = FunctionFeatures(rf.features, dim=20)  # K = Phi Phi^T, rank 20 < n
    kern = lambda A, B: fmap(A) @ fmap(B).T  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rd = mn.MixedLMNTK(y, X, Z, kernel=kern, weights=w).fit()
    rf_ = mn.MixedLMNTK(y, X, Z, kernel=kern, weights=w, low_rank=fmap).fit()
    assert rf_.model.basis.feature_space and rd.t > 0
    assert rel_diff(rf_.t, rd.t) <= 1e-7 and abs(rf_.llf - rd.llf) <= 1e-9 * abs(rd.llf)
    assert rel_diff(rf_.params, rd.params) <= 1e-7 and rel_diff(rf_.bse, rd.bse) <= 1e-6
    assert rel_diff(rf_.fittedvalues, rd.fittedvalues) <= 1e-7
    Zn = rng.normal(size=(4, d))
    Xn = np.column_stack([np.ones(4), rng.normal(size=4)])
    for interval in (None, "prediction"):
        a = rf_.predict(exog=Xn, ntk_inputs=Zn, interval=interval)
        assert rel_diff(a, rd.predict(exog=Xn, ntk_inputs=Zn, interval=interval)) <= 1e-7
        assert rel_diff(rf_.predict(interval=interval), rd.predict(interval=interval)) <= 1e-7
    # Nystrom with every row a landmark: K_m = K, the exact cross-kernel route included
    ny = mn.MixedLMNTK(y, X, Z, kernel=kern, weights=w, low_rank=n).fit()
    for cross in ("features", "exact"):
        got = ny.predict(exog=Xn, ntk_inputs=Zn, interval="confidence", cross=cross)
        assert got.attrs["cross"] == cross
        assert rel_diff(got, rd.predict(exog=Xn, ntk_inputs=Zn, interval="confidence")) <= 1e-6


# -------------------------------------------------------------------- 3. lme4

#: R 4.2.2, lme4 1.1.31, on tests/data/weights_lme4.csv (40 rows, 5 groups of 8 whose
#: weights sum to S = 8 in every group):
#:   d <- read.csv("tests/data/weights_lme4.csv"); d$g <- factor(d$g)
#:   ctl <- lmerControl(optimizer = "bobyqa",
#:                      optCtrl = list(rhobeg = 1e-3, rhoend = 1e-12, maxfun = 1e5))
#:   f <- lmer(y ~ x + (1 | g), data = d, weights = w, REML = TRUE, control = ctl)  # and FALSE
#:   logLik(f); fixef(f); sqrt(diag(as.matrix(vcov(f))))
#:   as.data.frame(VarCorr(f))$vcov[1]; sigma(f)^2
LME4 = {
    True: {"llf": -61.606853951725, "fixef": [1.922052360631, 0.955777813311],
           "se": [0.320090499243, 0.201336719763], "vcov_g": 0.390038097212,
           "sigma2": 0.970465330137},
    False: {"llf": -60.626451103971, "fixef": [1.922623891807, 0.964155145232],
            "se": [0.282959600222, 0.196779672240], "vcov_g": 0.281254346509,
            "sigma2": 0.945401412572},
}


@pytest.mark.parametrize("reml", [True, False])
def test_group_indicator_kernel_with_equal_group_weights_equals_lme4(reml):
    """K = N N^T and groups of equal total weight S: Var(y) / s2 = W^{-1} + gamma N N^T,
    gamma = (exp(tS) - 1) / S, which is lme4's weighted random-intercept model."""
    d = pd.read_csv(DATA / "weights_lme4.csv")
    N = pd.get_dummies(d["g"]).to_numpy(float)
    S = d.groupby("g")["w"].sum().to_numpy()
    assert np.allclose(S, 8.0, rtol=1e-14)
    res = mn.MixedLMNTK.from_formula("y ~ x", d, kernel=N @ N.T, weights="w").fit(reml=reml)
    ref = LME4[reml]
    gamma = math.expm1(res.t * 8.0) / 8.0
    assert abs(res.llf - ref["llf"]) <= 1e-6
    assert rel_diff(res.params, ref["fixef"]) <= 1e-6
    assert rel_diff(res.bse, ref["se"]) <= 1e-6
    assert res.scale == pytest.approx(ref["sigma2"], rel=1e-6)
    assert gamma * res.scale == pytest.approx(ref["vcov_g"], rel=1e-6)
    # and the brute force of the same lme4 model at the package's estimates
    y, X, w = d["y"].to_numpy(), np.column_stack([np.ones(len(d)), d["x"]]), d["w"].to_numpy()
    V = np.diag(1 / w) + gamma * N @ N.T
    assert np.allclose(V, _weighted_cov(N @ N.T, w, res.t), rtol=1e-12, atol=1e-12)
    assert _brute(y, X, N @ N.T, w, res.t, reml)["llf"] == pytest.approx(res.llf, rel=1e-10)


# ------------------------------------------------------------------ 4. bad input

@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(4)
    n = 30
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n),
                       "w": rng.uniform(0.5, 2, size=n)}, index=[f"r{i}" for i in range(n)])
    df["y"] = df.x + np.sin(df.z) + 0.3 * rng.normal(size=n)
    return df


def _formula_fit(df, weights, **kw):
    return mn.MixedLMNTK.from_formula("y ~ x", df, ntk="~ z", network=mn.MLP(depth=1),
                                      weights=weights, **kw)


@pytest.mark.parametrize("value, message", [
    (-1.0, r"weights must be positive.*first is row 'r7', weight -1\.0"),
    (0.0, r"weights must be strictly positive: zero weights.*row 'r7'.*drop those rows"),
    (np.inf, r"weights must be finite.*row 'r7'"),
])
def test_invalid_weights_are_refused_naming_the_option_and_row(frame, value, message):
    df = frame.copy()
    df.loc["r7", "w"] = value
    with pytest.raises(ValueError, match=message):
        _formula_fit(df, "w")
    with pytest.raises(ValueError, match=message.replace("'r7'", "7")):
        mn.MixedLMNTK(df.y.to_numpy(), df[["x"]].to_numpy(), df[["z"]].to_numpy(),
                      weights=df.w.to_numpy())


def test_missing_weights_drop_the_row_like_any_incomplete_row(frame):
    df = frame.copy()
    df.loc["r3", "w"] = np.nan
    m = _formula_fit(df, "w")
    assert m.nobs == len(df) - 1 and m.data.n_dropped == 1 and "r3" not in m.data.row_labels
    ref = _formula_fit(df.drop(index="r3"), "w")
    assert m.fit().llf == ref.fit().llf
    with pytest.raises(ValueError, match=r"missing values \(in \['w'\]\)"):
        _formula_fit(df, "w", missing="raise")
    with pytest.raises(ValueError, match=r"missing values \(in weights\)"):
        mn.MixedLMNTK(df.y.to_numpy(), df[["x"]].to_numpy(), df[["z"]].to_numpy(),
                      weights=df.w.to_numpy(), missing="raise")


def test_weights_of_wrong_length_type_or_name_are_refused(frame):
    y, X, Z = frame.y.to_numpy(), frame[["x"]].to_numpy(), frame[["z"]].to_numpy()
    with pytest.raises(ValueError, match="weights must have one value per row"):
        mn.MixedLMNTK(y, X, Z, weights=np.ones(len(y) - 1))
    with pytest.raises(ValueError, match="weights must have one value per row of data"):
        _formula_fit(frame, np.ones(len(frame) + 2))
    with pytest.raises(TypeError, match="weights must be numeric"):
        mn.MixedLMNTK(y, X, Z, weights=["a"] * len(y))
    df = frame.assign(wt=["heavy"] * len(frame))
    with pytest.raises(TypeError, match="weights column 'wt' must be numeric"):
        _formula_fit(df, "wt")
    with pytest.raises(KeyError, match="weights column 'nope' not found"):
        _formula_fit(frame, "nope")
    with pytest.raises(TypeError, match="weights='w'.*formula interface"):
        mn.MixedLMNTK(y, X, Z, weights="w")
    res = _formula_fit(frame, "w").fit()
    with pytest.raises(ValueError, match="weights of the new rows must be positive"):
        res.predict(frame.iloc[:3], interval="prediction", weights=[1.0, -2.0, 1.0])


def test_streamed_data_refuse_weights(frame, tmp_path):
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match="weights= is not supported for streamed data"):
        mn.MixedLMNTK.from_formula("y ~ x", CSVSource(path), ntk="~ z", weights="w",
                                   low_rank=10)


def test_training_paths_and_kernel_optimisation_refuse_weights(frame):
    res = _formula_fit(frame, "w").fit()
    lr = 0.5 * mn.training.max_stable_lr(res)
    with pytest.raises(NotImplementedError, match="precision weights="):
        mn.training.ntk_loss_path(res, lr=lr)
    with pytest.raises(NotImplementedError, match="precision weights="):
        mn.hyper.optimize_kernel(res.model)


# ---------------------------------------------- 5. unit weights, persistence

def test_unit_weights_give_the_unweighted_fit_bit_for_bit(problem):
    y, X, Z, rf = problem["y"], problem["X"], problem["Z"], problem["rf"]
    a = mn.MixedLMNTK(y, X, Z, kernel=rf, scale_inputs=False).fit()
    b = mn.MixedLMNTK(y, X, Z, kernel=rf, scale_inputs=False, weights=np.ones(len(y))).fit()
    assert (a.t, a.llf, a.scale) == (b.t, b.llf, b.scale)
    assert a.params.equals(b.params) and a.bse.equals(b.bse)
    assert a.fittedvalues.equals(b.fittedvalues)
    kw = dict(exog=problem["Xnew"], ntk_inputs=problem["Znew"], interval="prediction")
    assert a.predict(**kw).equals(b.predict(**kw))
    assert a.predict(interval="prediction").equals(b.predict(interval="prediction"))


@pytest.mark.parametrize("remove_data", [False, True])
def test_weighted_fit_round_trips_through_save_and_load(problem, frame, tmp_path, remove_data):
    res = problem["fits"][True]
    path = tmp_path / "fit.mixednn"
    res.save(path, remove_data=remove_data)
    back = mn.load(path)
    assert np.array_equal(back.model.weights, problem["w"])
    kw = dict(exog=problem["Xnew"], ntk_inputs=problem["Znew"], interval="prediction",
              weights=problem["wnew"])
    assert back.predict(**kw).equals(res.predict(**kw))
    assert back.llf == res.llf and str(back.summary()) == str(res.summary())
    # a formula fit whose weights are a column
    fres = _formula_fit(frame, "w").fit()
    fres.save(path, remove_data=remove_data)
    fback = mn.load(path)
    new = frame.iloc[:5]
    assert fback.predict(new, interval="prediction").equals(
        fres.predict(new, interval="prediction"))
    if not remove_data:
        assert fback.resid_pearson.equals(fres.resid_pearson)
