"""Free leading modes: against the dense REML of the augmented design, and k = 0 = plain REML."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.linalg

import mixednn as mn
from mixednn.freemodes import (free_mode_smoother, free_mode_split, max_free_modes,
                               select_free_modes)
from mixednn.smoother import SmootherData
from mixednn.stopping import GCV, LeaveOneOut

from .conftest import dense_fit


@pytest.fixture(scope="module")
def fm_data():
    rng = np.random.default_rng(5)
    n = 70
    Z = rng.normal(size=(n, 3))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [1.0, 0.5] + np.sin(1.5 * Z[:, 0]) + 0.5 * Z[:, 1] ** 2 + 0.3 * rng.normal(size=n)
    model = mn.MixedLMNTK(y, X, Z, network=mn.MLP(depth=2))
    K = model.kernel_matrix()
    lam, U = np.linalg.eigh(K)
    return {"y": y, "X": X, "Z": Z, "n": n, "model": model, "K": K, "lam": lam, "U": U}


def test_zero_free_modes_is_plain_reml(fm_data):
    m = fm_data["model"]
    plain = m.fit()
    r0 = m.fit(free_modes=0, t_method="reml")
    assert r0.t == plain.t and r0.llf == plain.llf
    fm = free_mode_split(m, 0)
    assert fm.profile.loglike(plain.t) == pytest.approx(plain.llf, rel=1e-12)
    Zn = np.random.default_rng(1).normal(size=(4, 3))
    Xn = np.column_stack([np.ones(4), np.arange(4.0)])
    # the free-modes machinery with k = 0 (k chosen from {0}) gives the plain predictions
    res0 = m.fit(free_modes="auto", t_options={"k_candidates": [0]})
    assert res0.free_modes == 0 and res0.time_choice.free_modes is not None
    assert res0.t == pytest.approx(plain.t, rel=1e-12)
    assert np.allclose(res0.predict(exog=Xn, ntk_inputs=Zn), plain.predict(exog=Xn, ntk_inputs=Zn),
                       atol=1e-10)
    assert np.allclose(res0.fittedvalues, plain.fittedvalues, atol=1e-10)


def test_free_modes_equal_dense_reml_with_augmented_design(fm_data):
    m, y, X, K, U, n = (fm_data[k] for k in ("model", "y", "X", "K", "U", "n"))
    k = 4
    res = m.fit(free_modes=k)
    assert res.free_modes == k and res.time_choice.free_modes.k == k
    Xa = np.column_stack([X, U[:, -k:]])  # leading eigenvectors as fixed effects
    d = dense_fit(y, Xa, K, res.t, reml=True)
    # the dense log det(Xa^T expm(-tK) Xa) has entries ~exp(-t lam_max) ~ 1e-10 known to
    # absolute rounding of expm, so the reference itself is good to ~1e-7 here
    assert res.llf == pytest.approx(d["llf"], rel=1e-8)
    assert np.allclose(res.params.to_numpy(), d["beta"][:2], rtol=1e-8)
    assert np.allclose(res.free_coef, d["beta"][2:][::-1], rtol=1e-6)  # (same reason)
    assert res.scale == pytest.approx(d["scale"], rel=1e-9)
    assert np.allclose(res.fittedvalues.to_numpy(), Xa @ d["beta"] + d["blup"], atol=1e-9)
    # t maximises the dense augmented REML
    h = 1e-4 * res.t
    up = dense_fit(y, Xa, K, res.t + h)["llf"]
    dn = dense_fit(y, Xa, K, res.t - h)["llf"]
    assert res.llf >= max(up, dn) - 1e-9
    assert res.df_resid == n - 2 - k and res.df_modelwc == 2 + k + 2
    assert res.edf == pytest.approx(k + np.sum(1 - np.exp(-res.t * np.delete(fm_data["lam"],
                                                                              range(n - k, n)))))


def test_free_mode_predictions_extend_through_the_cross_kernel(fm_data):
    m, y, X, K, U, lam = (fm_data[k] for k in ("model", "y", "X", "K", "U", "lam"))
    k = 3
    res = m.fit(free_modes=k)
    # at the training inputs the Nystrom extension reproduces the fitted values
    pred_train = res.predict(exog=X, ntk_inputs=fm_data["Z"]).to_numpy()
    assert np.allclose(pred_train, res.fittedvalues.to_numpy(), atol=1e-8)
    # new points: eq. (3) with phi = 1/lam on the free modes (t_j = inf)
    rng = np.random.default_rng(9)
    Zn = rng.normal(size=(6, 3))
    Xn = np.column_stack([np.ones(6), rng.normal(size=6)])
    Kx = m.kernel_source.cross(m.input_scaling.apply(Zn), m.scaled_inputs)
    beta = res.params.to_numpy()
    pos = lam > 1e-10 * lam.max()
    phi = np.where(pos, -np.expm1(-res.t * lam) / np.where(pos, lam, 1), res.t)
    phi[-k:] = 1 / lam[-k:]
    brute = Xn @ beta + Kx @ U @ (phi * (U.T @ (y - X @ beta)))
    assert np.allclose(res.predict(exog=Xn, ntk_inputs=Zn).to_numpy(), brute, atol=1e-9)
    iv = res.predict(exog=Xn, ntk_inputs=Zn, interval="prediction")
    ci = res.predict(exog=Xn, ntk_inputs=Zn, interval="confidence")
    assert np.all(iv["se"] > ci["se"]) and np.allclose(iv["mean"], brute, atol=1e-9)
    assert np.all(np.isfinite(res.predict(interval="confidence")["se"]))


def test_free_mode_gcv_and_loo_equal_dense_augmented_smoother(fm_data):
    m, y, X, K, U, n = (fm_data[k] for k in ("model", "y", "X", "K", "U", "n"))
    k = 5
    res = m.fit(free_modes=k, t_method="gcv")
    assert res.t_method == "gcv" and res.free_modes == k
    Xa = np.column_stack([X, U[:, -k:]])
    t = res.t
    E = scipy.linalg.expm(-t * K)
    M = E - E @ Xa @ np.linalg.solve(Xa.T @ E @ Xa, Xa.T @ E)
    e = M @ y
    data = free_mode_smoother(SmootherData.from_model(m), free_mode_split(m, k))
    assert GCV(data).value(t) == pytest.approx(n * e @ e / np.trace(M) ** 2, rel=1e-8)
    assert np.allclose(LeaveOneOut(data).residuals(t), e / np.diag(M), rtol=1e-7)


def test_augmented_ml_profile_equals_dense_ml(fm_data):
    m, y, X, K, U = (fm_data[k] for k in ("model", "y", "X", "K", "U"))
    k = 3
    fm = free_mode_split(m, k)
    Xa = np.column_stack([X, U[:, -k:]])
    for t in (0.2, 1.0):
        assert fm.profile_ml.loglike(t, False) == pytest.approx(
            dense_fit(y, Xa, K, t, reml=False)["llf"], rel=1e-9)


def test_select_free_modes_table_and_rules(fm_data):
    m = fm_data["model"]
    k, tab = select_free_modes(m, candidates=[0, 1, 2, 4, 8])
    assert list(tab.index) == [0, 1, 2, 4, 8]
    assert k == int(tab["gcv"].idxmin())
    assert tab.loc[0, "t"] == pytest.approx(m.fit().t, rel=1e-10)
    assert set(tab.columns) >= {"t", "llf", "df", "gcv", "aic_ml", "bic_ml", "t_ml"}
    assert np.all(np.diff(tab["df"].to_numpy()[:3]) > 0)
    k_bic, tab_b = select_free_modes(m, candidates=[0, 1, 2, 4, 8], k_rule="bic")
    assert k_bic == int(tab_b["bic_ml"].idxmin())
    k_loo, tab_l = select_free_modes(m, candidates=[0, 2, 4], k_rule="loo")
    assert k_loo == int(tab_l["loo"].idxmin()) and tab_l["loo"].notna().all()
    res = m.fit(free_modes="auto", t_options={"k_candidates": [0, 1, 2, 4, 8]})
    assert res.free_modes == k and isinstance(res.free_modes_table, pd.DataFrame)
    assert res.t_reml == pytest.approx(m.fit().t)
    text = str(res.summary())
    assert "Free leading modes" in text or k == 0


def test_free_modes_bad_input(fm_data):
    m = fm_data["model"]
    with pytest.raises(ValueError, match="non-negative integer or 'auto'"):
        m.fit(free_modes=-1)
    with pytest.raises(ValueError, match="non-negative integer or 'auto'"):
        m.fit(free_modes="all")
    with pytest.raises(ValueError, match="too many"):
        m.fit(free_modes=max_free_modes(m) + 1)
    with pytest.raises(NotImplementedError, match="REML"):
        m.fit(reml=False, free_modes=2)
    with pytest.raises(ValueError, match="k_rule"):
        select_free_modes(m, candidates=[0, 1], k_rule="aicc")


def test_free_modes_summary_names_the_rule(fm_data):
    m = fm_data["model"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = m.fit(free_modes=2)
    text = str(res.summary())
    assert "REML, 2 free modes" in text and "t_j = inf" in text
    assert "t by REML (compare)" in text
