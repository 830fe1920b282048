"""Saving and loading fits (issue 13): every kind of fit pickles, ``res.save`` /
``mn.load`` round-trip bit for bit, the file format version is checked, and
``remove_data=True`` keeps what prediction needs and nothing else."""

from __future__ import annotations

import json
import pickle
import sys
import warnings

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest

import mixednn as mn
from mixednn import persistence
from mixednn.exceptions import DataRemovedError, FileFormatError

torch = pytest.importorskip("torch")

N = 100


def rbf_kernel(Z1: np.ndarray, Z2: np.ndarray) -> np.ndarray:
    """A module-level kernel function (saved by reference)."""
    d2 = ((Z1[:, None, :] - Z2[None, :, :]) ** 2).sum(-1)
    return np.exp(-0.5 * d2)


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(13)
    Z = rng.normal(size=(N, 2))
    g = rng.choice(["a", "b", "c"], N)
    y = np.sin(2 * Z[:, 0]) + 0.5 * (g == "b") + 0.3 * rng.normal(size=N)
    return pd.DataFrame({"y": y, "x1": Z[:, 0], "x2": Z[:, 1], "g": g,
                         "unused": rng.normal(size=N)})


DF = _data()
NEW = pd.DataFrame({"x1": [0.1, 0.5, -1.0, 1.7], "x2": [0.2, -0.3, 1.0, 0.0],
                    "g": ["a", "c", "b", "a"]})
X_ARR = np.column_stack([np.ones(N), DF["x2"].to_numpy()])
Z_ARR = DF[["x1", "x2"]].to_numpy()
Z_NEW = NEW[["x1", "x2"]].to_numpy()
X_NEW = np.column_stack([np.ones(len(NEW)), NEW["x2"].to_numpy()])
FORMULA = "y ~ C(g) + center(x2)"  # a categorical and a stateful transform


def _module() -> "torch.nn.Module":
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _formula(**kw):
    return mn.MixedLMNTK.from_formula(FORMULA, DF, ntk="~ x1 + x2", **kw)


def _arrays(**kw):
    return mn.MixedLMNTK(DF["y"].to_numpy(), X_ARR, Z_ARR, **kw)


def _build(kind: str, tmp_path_factory) -> tuple:
    """(model, results, predict keyword arguments) of one kind of fit."""
    new = {"newdata": NEW}
    arrays = {"exog": X_NEW, "ntk_inputs": Z_NEW}
    fit = {}
    if kind == "formula":
        model, kw = _formula(network=mn.MLP(depth=1)), new
    elif kind == "arrays_tridiagonal":
        model, kw = _arrays(network=mn.MLP(depth=2), decomposition="tridiagonal"), arrays
    elif kind == "arrays_lanczos":  # a Krylov basis: it keeps K for new rows' intervals
        model, kw = _arrays(network=mn.MLP(depth=2), decomposition="lanczos"), arrays
    elif kind == "finite_mlp":
        model, kw = _arrays(network=mn.MLP(depth=2, width=16)), arrays
    elif kind == "torch_module":  # 33 parameters < n rows: the exact feature form
        model, kw = _formula(network=_module()), new
    elif kind == "precomputed":
        K = mn.MLP(depth=1).ntk(Z_ARR)
        model = _arrays(kernel=K)
        kw = {"exog": X_NEW, "kernel": mn.MLP(depth=1).ntk(Z_NEW, Z_ARR)}
    elif kind == "kernel_function":
        model, kw = _arrays(kernel=rbf_kernel), arrays
    elif kind == "kernel_lambda":
        pytest.importorskip("cloudpickle")  # a lambda is saved by value only with it
        model, kw = _arrays(kernel=lambda Z1, Z2: rbf_kernel(Z1, Z2) + 0.1), arrays
    elif kind == "low_rank":
        model, kw = _formula(network=mn.MLP(depth=1), low_rank=30), new
    elif kind == "low_rank_exact":
        model, kw = _formula(network=mn.MLP(depth=1, width=8), low_rank="exact"), new
    elif kind == "csv":
        path = tmp_path_factory.mktemp("csv") / "data.csv"
        DF.to_csv(path, index=False)
        model = mn.MixedLMNTK.from_formula("y ~ C(g) + x2", mn.CSVSource(path, chunksize=40),
                                           ntk="~ x1 + x2", network=mn.MLP(depth=1),
                                           low_rank=30)
        kw = new
    elif kind == "free_modes":
        model, kw, fit = _formula(network=mn.MLP(depth=1)), new, {"free_modes": 2}
    else:  # pragma: no cover
        raise ValueError(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(**fit)
    return model, res, kw


KINDS = ["formula", "arrays_tridiagonal", "arrays_lanczos", "finite_mlp", "torch_module",
         "precomputed",
         "kernel_function", "kernel_lambda", "low_rank", "low_rank_exact", "csv", "free_modes"]


@pytest.fixture(scope="module", params=KINDS)
def fitted(request, tmp_path_factory):
    return request.param, *_build(request.param, tmp_path_factory)


def _content(fig) -> list:
    """What a figure shows: per axes its texts, line data, point offsets and patches."""
    out = []
    for ax in fig.axes:
        texts = [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), ax.get_xscale(),
                 ax.get_yscale(), *[t.get_text() for t in ax.texts]]
        legend = ax.get_legend()
        if legend is not None:
            texts += [t.get_text() for t in legend.get_texts()]
        arrays = [np.asarray(line.get_xydata()) for line in ax.get_lines()]
        arrays += [np.asarray(c.get_offsets()) for c in ax.collections]
        arrays += [np.asarray(p.get_path().vertices) for p in ax.patches]
        out.append((texts, arrays, ax.get_xlim(), ax.get_ylim()))
    return out


def _same_figure(f0, f1) -> None:
    c0, c1 = _content(f0), _content(f1)
    assert len(c0) == len(c1)
    for (t0, a0, x0, y0), (t1, a1, x1, y1) in zip(c0, c1):
        assert t0 == t1 and x0 == x1 and y0 == y1 and len(a0) == len(a1)
        for u, v in zip(a0, a1):
            np.testing.assert_array_equal(u, v)


def _same_prediction(a, b) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert a.attrs == b.attrs


def test_models_and_results_pickle(fitted):
    kind, model, res, kw = fitted
    back_model = pickle.loads(pickle.dumps(model))
    assert back_model.nobs == model.nobs and back_model.exog_names == model.exog_names
    back = pickle.loads(pickle.dumps(res))
    _same_prediction(res.predict(**kw, interval="prediction"),
                     back.predict(**kw, interval="prediction"))
    assert back.fittedvalues.equals(res.fittedvalues)


def test_save_and_load_give_the_same_outputs(fitted, tmp_path):
    kind, model, res, kw = fitted
    path = tmp_path / "fit.mixednn"
    res.save(path)
    back = mn.load(path)
    assert isinstance(back, mn.MixedLMNTKResults)
    for interval in (None, "confidence", "prediction"):
        before = res.predict(**kw, interval=interval)
        after = back.predict(**kw, interval=interval)
        if interval is None:
            pd.testing.assert_series_equal(before, after, check_exact=True)
        else:
            _same_prediction(before, after)
    assert str(back.summary()) == str(res.summary())
    s0, s1 = res.score_test(), back.score_test()
    assert (s0.statistic, s0.pvalue, s0.method) == (s1.statistic, s1.pvalue, s1.method)
    # a Krylov basis has no spectrum to simulate the LR null in or to plot
    spectral = res.likelihood_profile.complete_spectrum
    method = "simulate" if spectral else "mixture"
    l0, l1 = (r.lr_test(method, nsim=300, seed=5) for r in (res, back))
    assert (l0.statistic, l0.pvalue) == (l1.statistic, l1.pvalue)
    for name in ("plot_profile", "plot_fit", "plot_spectrum")[:3 if spectral else 2]:
        f0, f1 = getattr(res, name)(), getattr(back, name)()
        assert isinstance(f0, matplotlib.figure.Figure) and isinstance(f1, matplotlib.figure.Figure)
        _same_figure(f0, f1)


def test_remove_data_keeps_prediction_and_drops_the_rows(fitted, tmp_path):
    kind, model, res, kw = fitted
    full, lean = tmp_path / "full.mixednn", tmp_path / "lean.mixednn"
    res.fittedvalues  # cached in-sample values must not be saved either
    res.save(full)
    res.save(lean, remove_data=True)
    assert lean.stat().st_size < full.stat().st_size
    assert persistence.read_header(lean)["remove_data"] is True
    back = mn.load(lean)
    _same_prediction(res.predict(**kw, interval="prediction"),
                     back.predict(**kw, interval="prediction"))
    assert str(back.summary()) == str(res.summary())
    assert back.score_test().pvalue == res.score_test().pvalue
    for attr in ("fittedvalues", "resid"):
        with pytest.raises(DataRemovedError, match="remove_data=True"):
            getattr(back, attr)
    with pytest.raises(DataRemovedError):
        back.predict()  # the training rows
    with pytest.raises(DataRemovedError):
        back.plot_fit()
    with pytest.raises(DataRemovedError):
        back.model.endog


def test_remove_data_leaves_out_the_training_columns(tmp_path):
    res = _formula(network=mn.MLP(depth=1)).fit()
    res.save(tmp_path / "lean", remove_data=True)
    back = mn.load(tmp_path / "lean")
    design = back.model.data
    # center(x2) is learnt from every row, so the formula columns stay; 'unused' never
    assert set(design.design_frame.columns) == {"y", "g", "x1", "x2"}
    assert len(design.design_frame) == N
    res2 = mn.MixedLMNTK.from_formula("y ~ C(g)", DF, ntk="~ x1 + x2",
                                      network=mn.MLP(depth=1)).fit()
    res2.save(tmp_path / "lean2", remove_data=True)
    back2 = mn.load(tmp_path / "lean2")
    assert len(back2.model.data.design_frame) == 3  # one row per level of g
    _same_prediction(res2.predict(NEW, interval="confidence"),
                     back2.predict(NEW, interval="confidence"))


def test_a_file_of_another_format_version_is_refused(tmp_path):
    res = _arrays(network=mn.MLP(depth=1)).fit()
    path = tmp_path / "fit.mixednn"
    res.save(path)
    header = persistence.read_header(path)
    assert header["format"] == persistence.FORMAT_VERSION
    assert header["mixednn"] == mn.__version__
    assert header["kind"] == "MixedLMNTKResults"
    raw = path.read_bytes()
    assert raw.startswith(persistence.MAGIC)
    body = raw[len(persistence.MAGIC):]
    line, rest = body.split(b"\n", 1)
    header["format"] = persistence.FORMAT_VERSION + 98
    old = tmp_path / "future.mixednn"
    old.write_bytes(persistence.MAGIC + json.dumps(header).encode() + b"\n" + rest)
    with pytest.raises(FileFormatError) as err:
        mn.load(old)
    msg = str(err.value)
    assert f"version {persistence.FORMAT_VERSION + 98}" in msg
    assert f"version {persistence.FORMAT_VERSION} only" in msg
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps(res))
    with pytest.raises(FileFormatError, match="not a mixednn file"):
        mn.load(other)


def test_a_lambda_kernel_without_cloudpickle_names_the_option_and_the_fix(monkeypatch, tmp_path):
    res = _arrays(kernel=lambda Z1, Z2: rbf_kernel(Z1, Z2)).fit()
    monkeypatch.setitem(sys.modules, "cloudpickle", None)  # as if it were not installed
    with pytest.raises(pickle.PicklingError) as err:
        res.save(tmp_path / "fit.mixednn")
    msg = str(err.value)
    assert "kernel=" in msg and "module level" in msg and "lambda" in msg
    assert not (tmp_path / "fit.mixednn").exists()
    res_fn = _arrays(kernel=rbf_kernel).fit()  # the fix: a module-level function
    res_fn.save(tmp_path / "fn.mixednn")
    back = mn.load(tmp_path / "fn.mixednn")
    _same_prediction(res_fn.predict(exog=X_NEW, ntk_inputs=Z_NEW, interval="confidence"),
                     back.predict(exog=X_NEW, ntk_inputs=Z_NEW, interval="confidence"))


def test_a_saved_dask_fit_round_trips_but_not_without_its_data(tmp_path):
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(DF, npartitions=3)
    res = mn.MixedLMNTK.from_formula("y ~ C(g)", ddf, ntk="~ x1 + x2", network=mn.MLP(depth=1),
                                     low_rank=30).fit()
    res.save(tmp_path / "dask.mixednn")
    back = mn.load(tmp_path / "dask.mixednn")
    _same_prediction(res.predict(NEW, interval="confidence"),
                     back.predict(NEW, interval="confidence"))
    with pytest.raises(pickle.PicklingError, match="dask"):
        res.save(tmp_path / "lean.mixednn", remove_data=True)
