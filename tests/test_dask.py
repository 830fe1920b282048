"""Streaming fits (issue 7): dask data frames and chunked CSV equal the in-memory fit."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

import mixednn as mn
from mixednn.lowrank import chunk_stats
from mixednn.partitions import CSVSource

from .conftest import rel_diff

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=":0")
    cl = distributed.Client(cluster)
    yield cl
    cl.close()
    cluster.close()


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(11)
    n = 1200
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                       "x3": rng.uniform(-2, 2, size=n),
                       "g": rng.choice(["lo", "mid", "hi"], size=n),
                       "k": rng.integers(1, 4, size=n)})
    df["y"] = (np.sin(df.x1) + df.x2 * df.x3 + 0.6 * (df.g == "hi") - 0.3 * df.k
               + 0.3 * rng.normal(size=n))
    df.loc[[3, 700], "x2"] = np.nan  # dropped rows, counted
    df.loc[900, "y"] = np.nan
    # sorted by g: the first partitions lack the level "mid", the last ones "hi"
    return df.sort_values("g", kind="stable").reset_index(drop=True)


FORMULA = "y ~ C(g) + C(k) + x3"
NTK = "~ x1 + x2 + x3"


@pytest.fixture(scope="module")
def in_memory(frame):
    mod = mn.MixedLMNTK.from_formula(FORMULA, frame, ntk=NTK, low_rank=120)
    return mod, mod.fit()


def _same_fit(r_stream, r_mem, tol=1e-8):
    assert r_stream.nobs == r_mem.nobs
    assert r_stream.model.data.n_dropped == r_mem.model.data.n_dropped == 3
    assert list(r_stream.params.index) == list(r_mem.params.index)
    assert rel_diff(r_stream.t, r_mem.t) <= tol
    assert abs(r_stream.llf - r_mem.llf) <= tol * abs(r_mem.llf)
    assert rel_diff(r_stream.params, r_mem.params) <= tol
    assert rel_diff(r_stream.bse, r_mem.bse) <= tol
    assert rel_diff(r_stream.scale, r_mem.scale) <= tol
    assert rel_diff(r_stream.model.basis.trace_error, r_mem.model.basis.trace_error) <= tol


def test_dask_fit_equals_in_memory_fit(client, frame, in_memory):
    mod_mem, r_mem = in_memory
    ddf = dd.from_pandas(frame, npartitions=5)
    mod = mn.MixedLMNTK.from_formula(FORMULA, ddf, ntk=NTK, low_rank=120)
    assert mod.data.streamed and mod.nobs == r_mem.nobs
    # the first pass found every level although partitions miss some of them
    assert mod.data.recipe.levels["g"] == ["hi", "lo", "mid"]
    res = mod.fit()
    _same_fit(res, r_mem)
    assert not mod.data.rows_loaded  # the fit never loads the rows
    assert "Nystrom trace error" in str(res.summary())
    np.testing.assert_allclose(mod.input_scaling.center, mod_mem.input_scaling.center, rtol=1e-12)
    np.testing.assert_allclose(mod.input_scaling.scale, mod_mem.input_scaling.scale, rtol=1e-12)
    # in-sample values: one pass over the partitions, in partition order
    assert rel_diff(res.fittedvalues, r_mem.fittedvalues) <= 1e-8
    assert rel_diff(res.predict(interval="confidence"),
                    r_mem.predict(interval="confidence")) <= 1e-8
    # new rows through the same design info (a level missing from some partitions included)
    new = frame.dropna().iloc[[0, 500, 1100]]
    for cross in ("features", "exact"):
        a = res.predict(new, interval="prediction", cross=cross)
        b = r_mem.predict(new, interval="prediction", cross=cross)
        assert rel_diff(a, b) <= 1e-8


def test_dask_partitioning_does_not_change_the_fit(client, frame, in_memory):
    _, r_mem = in_memory
    res = mn.MixedLMNTK.from_formula(FORMULA, dd.from_pandas(frame, npartitions=2), ntk=NTK,
                                     low_rank=120).fit()
    _same_fit(res, r_mem)


def test_chunked_csv_equals_in_memory_fit(tmp_path, frame, in_memory):
    _, r_mem = in_memory
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    res = mn.MixedLMNTK.from_formula(FORMULA, CSVSource(path, chunksize=250), ntk=NTK,
                                     low_rank=120).fit()
    _same_fit(res, r_mem)
    assert rel_diff(res.random_effects, r_mem.random_effects) <= 1e-8


def test_user_levels_fix_the_design_and_unknown_values_raise(client, frame):
    ddf = dd.from_pandas(frame, npartitions=3)
    order = ["lo", "mid", "hi"]
    mod = mn.MixedLMNTK.from_formula(FORMULA, ddf, ntk=NTK, low_rank=50, levels={"g": order})
    cat = frame.assign(g=pd.Categorical(frame["g"], categories=order))
    mod_ref = mn.MixedLMNTK.from_formula(FORMULA, cat, ntk=NTK, low_rank=50)
    res, ref = mod.fit(t_method="reml"), mod_ref.fit(t_method="reml")
    assert list(res.params.index)[:3] == ["Intercept", "C(g)[T.mid]", "C(g)[T.hi]"]
    _same_fit_no_drop(res, ref)
    # the checked rule reaches the same decision from the streamed statistics (here it
    # moves to GCV, whose minimum is located to about 1e-6 in log t)
    auto, auto_ref = mod.fit(t_method="auto"), mod_ref.fit(t_method="auto")
    assert auto.t_method == auto_ref.t_method == "gcv"
    assert auto.auto_check.pvalue == auto_ref.auto_check.pvalue
    assert rel_diff(auto.t, auto_ref.t) <= 1e-5
    # a given level absent from every partition: its indicator column is all zero
    with pytest.raises(ValueError, match=r"C\(g\)\[T\.extra\].*all zero"):
        mn.MixedLMNTK.from_formula(FORMULA, ddf, ntk=NTK, low_rank=50,
                                   levels={"g": order + ["extra"]})
    # a value outside the given levels is an error, never a silently dropped row
    with pytest.raises(ValueError, match="not among its levels"):
        mn.MixedLMNTK.from_formula(FORMULA, ddf, ntk=NTK, low_rank=50, levels={"g": ["lo", "mid"]})


def _same_fit_no_drop(a, b):
    assert rel_diff(a.t, b.t) <= 1e-8 and abs(a.llf - b.llf) <= 1e-8 * abs(b.llf)
    assert rel_diff(a.params, b.params) <= 1e-8


def test_streamed_input_errors(client, frame, tmp_path):
    ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(ValueError, match="pass low_rank=m"):
        mn.MixedLMNTK.from_formula(FORMULA, ddf, ntk=NTK)
    with pytest.raises(ValueError, match="stateful transform"):
        mn.MixedLMNTK.from_formula("y ~ center(x3)", ddf, ntk=NTK, low_rank=20)
    with pytest.raises(ValueError, match="column name"):
        mn.MixedLMNTK.from_formula(FORMULA, ddf, ntk=NTK, low_rank=20, offset=np.zeros(10))
    with pytest.raises(ValueError, match="need network inputs"):
        mn.MixedLMNTK.from_formula(FORMULA, ddf, low_rank=20)
    with pytest.raises(ValueError, match="levels= is for streamed data"):
        mn.MixedLMNTK.from_formula(FORMULA, frame, ntk=NTK, low_rank=20, levels={"g": ["a"]})
    with pytest.raises(ValueError, match="missing values"):
        mn.MixedLMNTK.from_formula(FORMULA, ddf, ntk=NTK, low_rank=20, missing="raise")
    with pytest.raises(FileNotFoundError):
        CSVSource(tmp_path / "nope.csv")


def test_partition_tasks_pickle_for_process_workers(frame, in_memory):
    """Process-based workers receive the recipe and the chunk function by pickling
    (patsy's design infos are rebuilt on the worker)."""
    import cloudpickle

    mod, _ = in_memory
    ddf = dd.from_pandas(frame, npartitions=3)
    smod = mn.MixedLMNTK.from_formula(FORMULA, ddf, ntk=NTK, low_rank=120)
    recipe = pickle.loads(cloudpickle.dumps(smod.data.recipe))
    recipe.token = "fresh-process"  # force the rebuild of the design infos
    fmap = pickle.loads(cloudpickle.dumps(mod.basis.feature_map))
    part = frame.iloc[:400]
    chunk = recipe.chunk(part)
    st = chunk_stats(chunk, fmap, smod.input_scaling)
    ref = chunk_stats(smod.data.recipe.chunk(part), mod.basis.feature_map, smod.input_scaling)
    np.testing.assert_allclose(st.gram, ref.gram, rtol=1e-13, atol=1e-12)
    assert chunk.n_dropped == int(part[["x1", "x2", "y"]].isna().any(axis=1).sum())


def test_csv_stream_with_a_finite_network_uses_exact_jacobian_features(tmp_path):
    """A finite network on streamed rows: exact features K = J J^T, offset f0 = the network
    at initialisation evaluated chunk by chunk; equal to the in-memory feature-space fit."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()
    rng = np.random.default_rng(2)
    n = 300
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    df["y"] = np.sin(df.a) - df.b + 0.3 * rng.normal(size=n)
    path = tmp_path / "net.csv"
    df.to_csv(path, index=False)
    mod_ref = mn.MixedLMNTK.from_formula("y ~ 1", df, ntk=["a", "b"], network=net,
                                         low_rank="exact")
    mod = mn.MixedLMNTK.from_formula("y ~ 1", CSVSource(path, chunksize=70), ntk=["a", "b"],
                                     network=net)
    ref, res = mod_ref.fit(t_method="reml"), mod.fit(t_method="reml")
    # the default rule: the same decision.  GCV's curve is flat at its long t (t lam_min
    # about 0.3 for the smallest of 21 directions), so t agrees only roughly; the fits
    # to 1e-3
    auto, auto_ref = mod.fit(), mod_ref.fit()
    assert auto.t_method == auto_ref.t_method
    assert rel_diff(auto.fittedvalues, auto_ref.fittedvalues) <= 1e-3
    assert res.model.low_rank == "exact" and res.model.basis.kind == "jacobian"
    assert res.model.offset_mode == "init"
    _same_fit_no_drop(res, ref)
    assert rel_diff(res.fittedvalues, ref.fittedvalues) <= 1e-8
    new = df.iloc[:4]
    assert rel_diff(res.predict(new, interval="confidence"), ref.predict(new, interval="confidence")) <= 1e-8


def test_progress_bar_on_long_passes(tmp_path, frame, capsys, monkeypatch):
    import mixednn.rows as lr

    monkeypatch.setattr(lr, "PROGRESS", True)
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    mn.MixedLMNTK.from_formula(FORMULA, CSVSource(path, chunksize=400), ntk=NTK, low_rank=30).fit()
    err = capsys.readouterr().err
    assert "feature statistics" in err and "first pass" in err


def test_fit_and_summary_of_a_streamed_fit_read_no_rows_back(tmp_path, frame):
    """The default rule's check and the summary (score test, stopping diagnostic) work
    from the rotated statistics; only predictions and residuals bring rows back."""
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    mod = mn.MixedLMNTK.from_formula(FORMULA, CSVSource(path, chunksize=250), ntk=NTK,
                                     low_rank=120)
    res = mod.fit()
    assert res.auto_check is not None
    text = str(res.summary())
    assert "Training time t chosen by" in text
    assert not mod.data.rows_loaded  # nothing materialised
