"""Pinned numerical outputs: today's fits, number for number.

``tests/pinned/pinned_outputs.json`` holds the outputs of the fits defined in
``tests/pinned/cases.py`` (dense eigh and tridiagonal decompositions, Nystrom and exact
Jacobian feature spaces, free modes, a chunked CSV stream, finite torch networks, named
rules for t), generated from a fixed commit by ``tests/pinned/make_pinned.py`` (its
``meta`` records which).  Each test re-runs the same fits through the public API and
compares: the chosen t and its rule, fixed effects and their SEs, log-likelihood,
residual variance, confidence and prediction intervals on new rows, the score test of
t = 0 and the simulated RLRT (seeded).  A quantity that raised when the numbers were
pinned is recorded as such and skipped here.

``test_predictions_agree_across_bases`` checks that bases representing the same kernel
give the same fit.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

import mixednn as mn

from .pinned import cases

PINNED_PATH = Path(__file__).parent / "pinned" / "pinned_outputs.json"
PINNED = json.loads(PINNED_PATH.read_text())

#: estimates, standard errors, log-likelihoods and predictions; entries of a vector (the
#: fixed effects, a prediction column) near zero get an absolute tolerance of VEC_ATOL times
#: the vector's largest entry
RTOL, ATOL, VEC_ATOL = 1e-6, 1e-10, 1e-8
#: analytic p-values (score test): relative, down to the far tail
P_RTOL, P_ATOL = 1e-6, 1e-14
#: simulated p-values with a fixed seed: (1 + #{T* >= T}) / (nsim + 1), exact.  The null
#: draws are made in the rotated (eigen) basis, so with the statistic unchanged a different
#: p-value means different draws: e.g. eigenvectors whose signs changed (a chunked fit
#: and an in-memory fit of the same data differ that way already).
SIM_RTOL = 1e-12
#: fits of the same kernel in different bases
AGREE_RTOL = 1e-6


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    k = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(k)


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def _compare(name: str, exp: dict, got: dict) -> list[str]:
    """Every difference between the pinned and the recomputed outputs, one line each."""
    bad: list[str] = []

    def num(key: str, e: float, g: float, rtol: float = RTOL, atol: float = ATOL) -> None:
        if not _close(g, e, rtol, atol):
            bad.append(f"{name}: {key} = {g!r}, pinned {e!r} (rel. diff "
                       f"{abs(g - e) / max(abs(e), 1e-300):.3g})")

    def raised(key: str) -> bool:
        if isinstance(got.get(key), dict) and "raises" in got[key]:
            bad.append(f"{name}: {key} raised {got[key]['raises']}: {got[key]['message']}")
            return True
        return False

    for key in ("t_method", "method", "nobs", "free_modes"):
        if exp.get(key) != got.get(key):
            bad.append(f"{name}: {key} = {got.get(key)!r}, pinned {exp.get(key)!r}")
    for key in ("t", "llf", "scale"):
        num(key, exp[key], got[key])
    for key in ("params", "bse"):
        if list(got[key]) != list(exp[key]):
            bad.append(f"{name}: {key} names {list(got[key])}, pinned {list(exp[key])}")
            continue
        atol = max(ATOL, VEC_ATOL * max(abs(v) for v in exp[key].values()))
        for k, e in exp[key].items():
            num(f"{key}[{k}]", e, got[key][k], RTOL, atol)
    for key in ("predict_confidence", "predict_prediction"):
        if "raises" in exp[key] or raised(key):
            continue
        for col in ("mean", "lower", "upper"):
            if len(got[key][col]) != len(exp[key][col]):
                bad.append(f"{name}: {key}.{col} has {len(got[key][col])} rows, pinned "
                           f"{len(exp[key][col])}")
                continue
            atol = max(ATOL, VEC_ATOL * max(abs(v) for v in exp[key][col]))
            for i, (e, g) in enumerate(zip(exp[key][col], got[key][col])):
                num(f"{key}.{col}[{i}]", e, g, RTOL, atol)
    if "raises" not in exp["score_test"] and not raised("score_test"):
        e, g = exp["score_test"], got["score_test"]
        num("score_test.statistic", e["statistic"], g["statistic"])
        num("score_test.pvalue", e["pvalue"], g["pvalue"], P_RTOL, P_ATOL)
        if e["method"] != g["method"]:
            bad.append(f"{name}: score_test.method = {g['method']!r}, pinned {e['method']!r}")
    if "raises" not in exp["lr_test"] and not raised("lr_test"):
        e, g = exp["lr_test"], got["lr_test"]
        num("lr_test.statistic", e["statistic"], g["statistic"])
        num(f"lr_test.pvalue (nsim={cases.LR_NSIM}, seed={cases.LR_SEED})", e["pvalue"],
            g["pvalue"], SIM_RTOL, 0.0)
    return bad


def _check_case(name: str, tmp_path: Path) -> None:
    exp = PINNED["cases"][name]
    assert exp["kind"] == cases.CASES[name].kind and exp["frame"] == cases.CASES[name].frame
    skip = frozenset(k for k, v in exp.items() if isinstance(v, dict) and "raises" in v)
    got = cases.run_case(name, tmp_path, skip)
    bad = _compare(name, exp, got)
    if bad:
        pytest.fail("outputs differ from the pinned ones:\n" + "\n".join(bad), pytrace=False)


def test_pinned_file_covers_every_case_with_the_same_settings():
    assert set(PINNED["cases"]) == set(cases.CASES)
    meta = PINNED["meta"]
    assert (meta["n"], meta["lr_nsim"], meta["lr_seed"], meta["csv_chunksize"]) == \
        (cases.N, cases.LR_NSIM, cases.LR_SEED, cases.CSV_CHUNKSIZE)
    assert {k: tuple(v) for k, v in meta["frames"].items()} == cases.FRAMES
    assert (meta["formula"], meta["ntk"]) == (cases.FORMULA, cases.NTK)
    tested = {"dense_eigh", "tridiagonal", "nystrom", "exact_jacobian", "free_modes",
              "streamed_csv", "finite_network", "named_rule"}
    assert {c.kind for c in cases.CASES.values()} == tested


@pytest.mark.parametrize("name", cases.cases_of("dense_eigh"))
def test_dense_eigh_fit_matches_pinned_outputs(name, tmp_path):
    _check_case(name, tmp_path)


@pytest.mark.parametrize("name", cases.cases_of("tridiagonal"))
def test_tridiagonal_fit_matches_pinned_outputs(name, tmp_path):
    _check_case(name, tmp_path)


@pytest.mark.parametrize("name", cases.cases_of("nystrom"))
def test_nystrom_feature_fit_matches_pinned_outputs(name, tmp_path):
    _check_case(name, tmp_path)


@pytest.mark.parametrize("name", cases.cases_of("exact_jacobian"))
def test_exact_jacobian_feature_fit_matches_pinned_outputs(name, tmp_path):
    _check_case(name, tmp_path)


@pytest.mark.parametrize("name", cases.cases_of("free_modes"))
def test_free_modes_fit_matches_pinned_outputs(name, tmp_path):
    _check_case(name, tmp_path)


@pytest.mark.parametrize("name", cases.cases_of("streamed_csv"))
def test_streamed_csv_fit_matches_pinned_outputs(name, tmp_path):
    _check_case(name, tmp_path)


@pytest.mark.parametrize("name", cases.cases_of("finite_network"))
def test_finite_torch_network_fit_matches_pinned_outputs(name, tmp_path):
    _check_case(name, tmp_path)


@pytest.mark.parametrize("name", cases.cases_of("named_rule"))
def test_named_rule_fit_matches_pinned_outputs(name, tmp_path):
    _check_case(name, tmp_path)


# ------------------------------------------------------------------ same kernel, other basis

def _dense_empirical_mlp8():
    from mixednn.kernels.empirical import finite_network_source

    # the n x n empirical NTK J J^T of the same network (same spec, same seed 0)
    return dict(network=finite_network_source(mn.MLP(depth=2, width=8), feature_form=False),
                decomposition="eigh")


#: (reference model, same kernel in another basis)
BASES = {
    "eigh-vs-tridiagonal": (lambda: dict(decomposition="eigh"),
                            lambda: dict(decomposition="tridiagonal")),
    # Nystrom on every row (m = n landmarks): K_nL K_LL^+ K_Ln = K
    "eigh-vs-nystrom-m=n": (lambda: dict(decomposition="eigh"),
                            lambda: dict(low_rank=cases.N)),
    # a finite network with 96 parameters < n: K = J J^T, dense vs Jacobian features
    "dense-empirical-vs-exact-jacobian": (_dense_empirical_mlp8,
                                          lambda: dict(network=mn.MLP(depth=2, width=8),
                                                       low_rank="exact")),
}


def _reml_fit(frame_name: str, model_kw: dict):
    with warnings.catch_warnings():  # the package's warnings are UserWarnings (see cases.py)
        warnings.simplefilter("ignore", UserWarning)
        res = mn.MixedLMNTK.from_formula(cases.FORMULA, cases.make_frame(frame_name),
                                         ntk=cases.NTK, **model_kw).fit(t_method="reml")
        newdata = cases.make_newdata()
        pred = {iv: res.predict(newdata, interval=iv)[["mean", "lower", "upper"]].to_numpy()
                for iv in ("confidence", "prediction")}
    return res, pred


@pytest.mark.parametrize("frame_name", ["strong", "weak"])
@pytest.mark.parametrize("pair", list(BASES))
def test_predictions_agree_across_bases(pair, frame_name):
    ref_kw, other_kw = BASES[pair]
    a, pa = _reml_fit(frame_name, ref_kw())
    b, pb = _reml_fit(frame_name, other_kw())
    assert a.t_method == b.t_method == "reml" and a.t > 0
    np.testing.assert_allclose(b.t, a.t, rtol=AGREE_RTOL)
    np.testing.assert_allclose(b.llf, a.llf, rtol=AGREE_RTOL)
    np.testing.assert_allclose(b.scale, a.scale, rtol=AGREE_RTOL)
    assert list(b.params.index) == list(a.params.index)
    np.testing.assert_allclose(b.params.to_numpy(), a.params.to_numpy(), rtol=AGREE_RTOL,
                               atol=AGREE_RTOL * np.abs(a.params.to_numpy()).max())
    np.testing.assert_allclose(b.bse.to_numpy(), a.bse.to_numpy(), rtol=AGREE_RTOL)
    for iv in ("confidence", "prediction"):
        np.testing.assert_allclose(pb[iv], pa[iv], rtol=AGREE_RTOL,
                                   atol=AGREE_RTOL * np.abs(pa[iv]).max(), err_msg=iv)
