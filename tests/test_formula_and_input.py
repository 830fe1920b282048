"""Formula interface, missing data, input scaling, and the errors bad input gets."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import mixednn as mn
from mixednn.exceptions import KernelMemoryError
from mixednn.numerics import check_kernel_memory

from .conftest import rbf


@pytest.fixture()
def frame():
    rng = np.random.default_rng(0)
    n = 90
    df = pd.DataFrame({
        "y": rng.normal(size=n),
        "x": rng.normal(size=n),
        "g": rng.choice(["a", "b", "c"], size=n),
        "z1": rng.normal(size=n),
        "z2": rng.uniform(size=n),
    }, index=pd.Index(np.arange(1000, 1000 + n), name="id"))
    df["y"] += np.sin(2 * df["z1"]) + (df["g"] == "b")
    return df


def test_formula_matches_array_interface(frame):
    m1 = mn.MixedLMNTK.from_formula("y ~ x + C(g)", frame, ntk=["z1", "z2"], kernel=rbf)
    X = np.column_stack([np.ones(len(frame)), frame["g"] == "b", frame["g"] == "c", frame["x"]]).astype(float)
    m2 = mn.MixedLMNTK(frame["y"], X, frame[["z1", "z2"]], kernel=rbf)
    r1, r2 = m1.fit(), m2.fit()
    assert r1.t == pytest.approx(r2.t, rel=1e-10)
    np.testing.assert_allclose(np.sort(r1.params.to_numpy()), np.sort(r2.params.to_numpy()), rtol=1e-9)
    assert list(r1.params.index) == ["Intercept", "C(g)[T.b]", "C(g)[T.c]", "x"]
    assert list(r1.fittedvalues.index) == list(frame.index)


def test_ntk_formula_equals_column_list(frame):
    a = mn.MixedLMNTK.from_formula("y ~ x", frame, ntk="~ z1 + z2", kernel=rbf).fit()
    b = mn.MixedLMNTK.from_formula("y ~ x", frame, ntk=["z1", "z2"], kernel=rbf).fit()
    assert a.t == pytest.approx(b.t, rel=1e-12)
    assert a.model.data.ntk_names == ["z1", "z2"]  # the intercept is dropped


def test_missing_rows_dropped_consistently_and_frame_unchanged(frame):
    df = frame.copy()
    df.loc[df.index[3], "y"] = np.nan
    df.loc[df.index[10], "z2"] = np.nan
    df.loc[df.index[20], "x"] = np.nan
    before = df.copy()
    m = mn.MixedLMNTK.from_formula("y ~ x", df, ntk="~ z1 + z2", kernel=rbf)
    pd.testing.assert_frame_equal(df, before)
    assert m.nobs == len(df) - 3 and m.data.n_dropped == 3
    assert re.search(r"Rows dropped \(missing\):\s+3\s", m.fit().summary().as_text())
    dropped = {df.index[3], df.index[10], df.index[20]}
    assert dropped.isdisjoint(set(m.data.row_labels))
    with pytest.raises(ValueError, match=r"3 row\(s\) have missing values.*missing='drop'"):
        mn.MixedLMNTK.from_formula("y ~ x", df, ntk="~ z1 + z2", kernel=rbf, missing="raise")


def test_missing_rows_with_precomputed_kernel_subset(frame):
    df = frame.copy()
    df.loc[df.index[5], "y"] = np.nan
    Z = df[["z1", "z2"]].to_numpy()
    Zs = (Z - Z[~df["y"].isna()].mean(0)) / Z[~df["y"].isna()].std(0, ddof=1)
    K_all = rbf(Zs, Zs)
    a = mn.MixedLMNTK.from_formula("y ~ x", df, kernel=K_all).fit()
    b = mn.MixedLMNTK.from_formula("y ~ x", df, ntk=["z1", "z2"], kernel=rbf).fit()
    assert a.t == pytest.approx(b.t, rel=1e-9)
    assert a.llf == pytest.approx(b.llf, rel=1e-12)


def test_array_nan_dropped(frame):
    y = frame["y"].to_numpy().copy()
    y[0] = np.nan
    m = mn.MixedLMNTK(y, np.ones((len(y), 1)), frame[["z1"]].to_numpy(), kernel=rbf)
    assert m.nobs == len(y) - 1 and m.data.n_dropped == 1


def test_input_scaling_stored_and_reused(frame):
    m = mn.MixedLMNTK.from_formula("y ~ x", frame, ntk=["z1", "z2"], kernel=rbf)
    sc = m.input_scaling
    np.testing.assert_allclose(sc.center, frame[["z1", "z2"]].mean().to_numpy())
    np.testing.assert_allclose(sc.scale, frame[["z1", "z2"]].std(ddof=1).to_numpy())
    res = m.fit()
    # predicting the training frame through patsy equals the in-sample fit
    np.testing.assert_allclose(res.predict(frame).to_numpy(), res.fittedvalues.to_numpy(), atol=1e-9)
    unscaled = mn.MixedLMNTK.from_formula("y ~ x", frame, ntk=["z1", "z2"], kernel=rbf,
                                          scale_inputs=False).fit()
    assert unscaled.t != pytest.approx(res.t)


def test_predict_newdata_interval_columns_and_index(frame):
    res = mn.MixedLMNTK.from_formula("y ~ x + C(g)", frame, ntk="~ z1 + z2", kernel=rbf).fit()
    new = frame.iloc[:4].copy()
    new.index = ["a", "b", "c", "d"]
    out = res.predict(new, interval="prediction")
    assert list(out.columns)[:3] == ["mean", "lower", "upper"]
    assert list(out.index) == ["a", "b", "c", "d"]
    assert np.all(out["lower"] < out["mean"]) and np.all(out["mean"] < out["upper"])
    s = res.predict(new)
    assert isinstance(s, pd.Series)
    conf = res.predict(new, interval="confidence")
    assert np.all(conf["upper"] - conf["lower"] < out["upper"] - out["lower"])


def test_unseen_level_in_predict(frame):
    res = mn.MixedLMNTK.from_formula("y ~ C(g)", frame, ntk=["z1"], kernel=rbf).fit()
    new = frame.iloc[:2].copy()
    new["g"] = ["a", "zzz"]
    with pytest.raises(ValueError, match="categorical level not seen"):
        res.predict(new)


def test_nonfinite_values_named(frame):
    df = frame.copy()
    df.loc[df.index[2], "z1"] = np.inf
    with pytest.raises(ValueError, match=r"infinite values in column\(s\) \['z1'\]"):
        mn.MixedLMNTK.from_formula("y ~ x", df, ntk=["z1", "z2"], kernel=rbf)
    df = frame.copy()
    df.loc[df.index[2], "x"] = -np.inf
    with pytest.raises(ValueError, match=r"fixed-effects design contains infinite.*\['x'\]"):
        mn.MixedLMNTK.from_formula("y ~ x", df, ntk=["z1"], kernel=rbf)


def test_rank_deficient_design_names_aliased_columns(frame):
    df = frame.copy()
    df["x2"] = 2 * df["x"]
    with pytest.raises(ValueError, match=r"rank deficient.*'x2'"):
        mn.MixedLMNTK.from_formula("y ~ x + x2", df, ntk=["z1"], kernel=rbf)
    sub = df[df["g"] != "c"].copy()
    sub["g"] = pd.Categorical(sub["g"], categories=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"C\(g\)\[T.c\].*all zero"):
        mn.MixedLMNTK.from_formula("y ~ C(g)", sub, ntk=["z1"], kernel=rbf)


def test_constant_response_and_too_few_rows(frame):
    df = frame.copy()
    df["y"] = 3.0
    with pytest.raises(ValueError, match="constant"):
        mn.MixedLMNTK.from_formula("y ~ x", df, ntk=["z1"], kernel=rbf)
    with pytest.raises(ValueError, match=r"need n > p \+ 1"):
        mn.MixedLMNTK.from_formula("y ~ x + z2", frame.iloc[:3], ntk=["z1"], kernel=rbf)


def test_non_numeric_network_inputs_need_a_formula(frame):
    with pytest.raises(TypeError, match=r"not numeric; pass a formula.*C\(g\)"):
        mn.MixedLMNTK.from_formula("y ~ x", frame, ntk=["g", "z1"], kernel=rbf)
    # through a formula, categorical inputs are expanded
    m = mn.MixedLMNTK.from_formula("y ~ x", frame, ntk="~ C(g) + z1", kernel=rbf)
    assert m.data.ntk_inputs.shape[1] == 4


def test_constant_network_input(frame):
    df = frame.copy()
    df["z3"] = 1.0
    with pytest.raises(ValueError, match=r"\['z3'\] are constant"):
        mn.MixedLMNTK.from_formula("y ~ x", df, ntk=["z1", "z3"], kernel=rbf)


def test_unknown_columns_and_bad_formulas(frame):
    with pytest.raises(KeyError, match="not found"):
        mn.MixedLMNTK.from_formula("y ~ x", frame, ntk=["nope"], kernel=rbf)
    with pytest.raises(ValueError, match="could not evaluate formula"):
        mn.MixedLMNTK.from_formula("y ~ nope", frame, ntk=["z1"], kernel=rbf)
    with pytest.raises(ValueError, match="one-sided"):
        mn.MixedLMNTK.from_formula("y ~ x", frame, ntk="y ~ z1", kernel=rbf)


def test_precomputed_kernel_checks(frame):
    n = len(frame)
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="square"):
        mn.MixedLMNTK.from_formula("y ~ x", frame, kernel=np.ones((n, n - 1)))
    with pytest.raises(ValueError, match=r"kernel is 10 x 10 but the data have 90 rows"):
        mn.MixedLMNTK.from_formula("y ~ x", frame, kernel=np.eye(10))
    A = rng.normal(size=(n, n))
    with pytest.raises(ValueError, match="not symmetric"):
        mn.MixedLMNTK.from_formula("y ~ x", frame, kernel=A @ A.T + np.triu(A))
    S = A + A.T
    with pytest.raises(ValueError, match="not positive semi-definite"):
        mn.MixedLMNTK.from_formula("y ~ x", frame, kernel=S).fit()
    B = rng.normal(size=(n, 5))
    K = B @ B.T
    lam, U = np.linalg.eigh(K)
    lam[0] = -5e-9 * lam.max()  # above the rounding of a kernel's closed form, below PSD
    K2 = (U * lam) @ U.T
    with pytest.warns(mn.KernelClippedWarning):
        mn.MixedLMNTK.from_formula("y ~ x", frame, kernel=0.5 * (K2 + K2.T)).fit()


def test_precomputed_kernel_predict_needs_cross_kernel(frame):
    Z = frame[["z1"]].to_numpy()
    res = mn.MixedLMNTK.from_formula("y ~ x", frame, kernel=rbf(Z, Z)).fit()
    with pytest.raises(ValueError, match="cross-kernel"):
        res.predict(frame.iloc[:3])
    ref = mn.MixedLMNTK.from_formula("y ~ x", frame, ntk=["z1"], kernel=rbf, scale_inputs=False).fit()
    out = res.predict(frame.iloc[:3], kernel=rbf(Z[:3], Z))
    np.testing.assert_allclose(out.to_numpy(), ref.predict(frame.iloc[:3]).to_numpy(), rtol=1e-9)


def test_memory_guard_before_allocating():
    with pytest.raises(KernelMemoryError, match=r"needs about .* GiB.*low.rank"):
        check_kernel_memory(200_000, available=8 * 2**30)
    check_kernel_memory(1000, available=8 * 2**30)


def test_options_are_validated(frame):
    with pytest.raises(ValueError, match="missing must be"):
        mn.MixedLMNTK.from_formula("y ~ x", frame, ntk=["z1"], kernel=rbf, missing="omit")
    with pytest.raises(ValueError, match="either network= or kernel="):
        mn.MixedLMNTK.from_formula("y ~ x", frame, ntk=["z1"], kernel=rbf, network=mn.MLP())
    res = mn.MixedLMNTK.from_formula("y ~ x", frame, ntk=["z1"], kernel=rbf).fit()
    with pytest.raises(ValueError, match="interval must be"):
        res.predict(interval="credible")
    with pytest.raises(ValueError, match="loss must be"):
        res.epochs(0.1, loss="median")


def test_boundary_fit_warns_and_reports():
    rng = np.random.default_rng(4)
    n = 60
    Z = rng.normal(size=(n, 2))
    K = rbf(Z, Z)
    lam, U = np.linalg.eigh(K)
    y = U[:, :20] @ rng.normal(size=20)  # energy only in the least-learnable directions
    with pytest.warns(mn.BoundaryFitWarning):
        res = mn.MixedLMNTK(y, np.ones((n, 1)), Z, kernel=rbf, scale_inputs=False).fit()
    assert res.t == 0.0 and res.boundary
    assert np.isnan(res.t_se)
    assert res.t_conf_int()[0] == 0.0
    assert "Boundary fit" in res.summary().as_text()
    np.testing.assert_allclose(res.random_effects.to_numpy(), 0.0)


def test_interpolation_warns():
    """A noise-free response inside a low-rank kernel's span is interpolated: t runs off."""
    rng = np.random.default_rng(8)
    n, m = 40, 5
    Phi, _ = np.linalg.qr(rng.normal(size=(n, m)))
    K = 3.0 * Phi @ Phi.T
    y = Phi @ rng.normal(size=m)
    with pytest.warns(mn.InterpolationWarning):
        res = mn.MixedLMNTK(y, None, kernel=K).fit()
    assert res.estimate.at_upper
    assert "upper end" in res.summary().as_text()
