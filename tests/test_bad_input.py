"""Bad input gets a clear error that names the problem and the fix (issue 13).

Never a bare numpy/pandas/patsy traceback, never silent garbage, never a changed input
frame, never a hang.  One case per behaviour; public API only.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import time
import warnings

import numpy as np
import pandas as pd
import pytest

import mixednn as mn

from .conftest import rbf

NET = mn.MLP(depth=1)


@pytest.fixture()
def frame():
    rng = np.random.default_rng(13)
    n = 80
    df = pd.DataFrame({
        "y": rng.normal(size=n),
        "x": rng.normal(size=n),
        "z": rng.normal(size=n),
        "g": rng.choice(["a", "b", "c"], size=n),
    }, index=pd.Index([f"r{i}" for i in range(n)], name="id"))
    df["y"] += 2 * np.sin(2 * df["z"])
    return df


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(14)
    n = 80
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                       "z": rng.normal(size=n), "g": rng.choice(["a", "b"], size=n)})
    df["y"] += np.sin(2 * df["z"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mn.MixedLMNTK.from_formula("y ~ x + C(g)", df, ntk="~ z", network=NET).fit(), df


def write_csv(tmp_path, name: str, lines: list[str]) -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return str(path)


def numeric_lines(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["y,x,z"] + [f"{a:.6f},{b:.6f},{c:.6f}" for a, b, c in rng.normal(size=(n, 3))]


# ---------------------------------------------------------------------------- hangs

def test_text_value_in_a_numeric_column_is_named_instead_of_a_factor_per_row():
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n).astype(object),
                       "z": rng.normal(size=n)})
    df.loc[1234, "x"] = "oops"
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"column 'x' looks numeric but holds text: 'oops' in "
                                         r"row 1234.*3000 levels.*pd\.to_numeric"):
        mn.MixedLMNTK.from_formula("y ~ x", df, ntk=["z"], network=NET)
    assert time.perf_counter() - start < 20


def test_text_value_in_a_numeric_csv_column_is_named_with_its_line(tmp_path):
    lines = numeric_lines(60)
    lines.insert(31, "0.5,oops,0.25")  # data row 30: line 32 of the file
    path = write_csv(tmp_path, "text.csv", lines)
    with pytest.raises(ValueError, match=r"column 'x' looks numeric but holds text: 'oops' in row "
                                         r"30 \(line 32 of .*text\.csv\).*pd\.to_numeric"):
        mn.MixedLMNTK.from_formula("y ~ x", mn.CSVSource(path, chunksize=25), ntk=["z"],
                                   network=NET, low_rank=10)


def test_aliased_columns_of_a_wide_design_are_found_by_one_factorisation():
    rng = np.random.default_rng(1)
    n, k = 1500, 150
    df = pd.DataFrame({"y": rng.normal(size=n), "g": np.repeat(np.arange(k), n // k),
                       "z": rng.normal(size=n)})
    df["h"] = df["g"]  # every indicator of C(h) repeats one of C(g)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"rank deficient \(rank 150 < 299 columns\): column\(s\) "
                                         r"\['C\(h\)\[T\.1\]'.* \.\.\. \(149 in all\)"):
        mn.MixedLMNTK.from_formula("y ~ C(g) + C(h)", df, ntk=["z"], network=NET)
    assert time.perf_counter() - start < 20


def test_aliased_column_named_in_design_order_in_memory_and_streamed(frame, tmp_path):
    df = frame.assign(x2=lambda d: 3 * d["x"] - 1)
    with pytest.raises(ValueError, match=r"rank deficient \(rank 2 < 3 columns\).*\['x2'\]"):
        mn.MixedLMNTK.from_formula("y ~ x + x2", df, ntk=["z"], network=NET)
    path = str(tmp_path / "aliased.csv")
    df.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"rank deficient \(rank 2 < 3 columns\).*\['x2'\]"):
        mn.MixedLMNTK.from_formula("y ~ x + x2", mn.CSVSource(path, chunksize=30), ntk=["z"],
                                   network=NET, low_rank=10)


# -------------------------------------------------------------------- silent garbage

def test_object_column_in_an_ntk_formula_is_refused_like_the_list_form(frame):
    with pytest.raises(TypeError, match=r"network input 'g' of '~ z \+ g' is not numeric.*C\(g\)"):
        mn.MixedLMNTK.from_formula("y ~ x", frame, ntk="~ z + g", network=NET)
    with pytest.raises(TypeError, match=r"\['g'\] are not numeric"):
        mn.MixedLMNTK.from_formula("y ~ x", frame, ntk=["z", "g"], network=NET)
    m = mn.MixedLMNTK.from_formula("y ~ x", frame, ntk="~ z + C(g)", network=NET)  # on purpose
    assert m.data.ntk_names == ["C(g)[a]", "C(g)[b]", "C(g)[c]", "z"]


def test_datetime_column_in_a_formula_is_refused(frame):
    df = frame.assign(day=pd.date_range("2024-01-01", periods=len(frame)))
    with pytest.raises(TypeError, match=r"column 'day' holds dates.*80 levels.*\.dt\.days"):
        mn.MixedLMNTK.from_formula("y ~ x", df, ntk="~ z + day", network=NET)
    with pytest.raises(TypeError, match=r"column 'day' holds dates"):
        mn.MixedLMNTK.from_formula("y ~ day", df, ntk="~ z", network=NET)


def test_categorical_ntk_input_with_a_level_per_row_is_refused(frame):
    df = frame.assign(code=[f"c{i}" for i in range(len(frame))])
    with pytest.raises(ValueError, match=r"'C\(code\)'.*80 levels in 80 rows.*indicator input"):
        mn.MixedLMNTK.from_formula("y ~ x", df, ntk="~ z + C(code)", network=NET)


BAD_ALPHAS = [0, 1, -0.1, 1.5, "0.05", None, True, math.nan]


@pytest.mark.parametrize("call", ["predict", "conf_int", "t_conf_int", "scale_conf_int",
                                  "summary", "plot_profile"])
@pytest.mark.parametrize("alpha", BAD_ALPHAS)
def test_alpha_is_validated_at_every_entry_point(fitted, call, alpha):
    res, _ = fitted
    with pytest.raises(ValueError, match=r"alpha must be a number in \(0, 1\)"):
        getattr(res, call)(alpha=alpha)


def test_fit_reml_must_be_a_boolean(fitted):
    res, _ = fitted
    with pytest.raises(TypeError, match=r"reml must be True \(REML\) or False \(ML\), got 'no'"):
        res.model.fit(reml="no")


def test_lr_test_nsim_must_be_a_positive_integer(fitted):
    res, _ = fitted
    for nsim in (10.5, 0, "100"):
        with pytest.raises(ValueError, match="nsim must be a positive integer"):
            res.lr_test(nsim=nsim)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"t_method": "aic"}, ValueError, r"t_method must be one of"),
    ({"t_method": 3}, ValueError, r"t_method must be one of"),
    ({"free_modes": -1}, ValueError, r"free_modes must be a non-negative integer"),
    ({"free_modes": 1.5}, ValueError, r"free_modes must be a non-negative integer"),
    ({"t_options": 3}, TypeError, r"t_options must be a dict"),
    ({"t_options": {"alpha": 2}}, ValueError, r"t_options: alpha of the auto rule must be a number in \(0, 1\)"),
    ({"t_options": {"nsim": 5}}, ValueError, r"t_options: nsim of the auto rule must be an integer >= 19"),
    ({"t_options": {"seed": "a"}}, ValueError, r"t_options: seed must be None, an integer >= 0"),
    ({"t_options": {"min_excess": -1}}, ValueError, r"t_options: min_excess of the auto rule must be a number >= 0"),
    ({"t_method": "gcv", "t_options": {"points_per_decade": -1}}, ValueError,
     r"t_options: points_per_decade must be None or an integer >= 1"),
    ({"t_method": "kfold", "t_options": {"folds": 1}}, ValueError, r"t_options: folds must be an integer >= 2"),
    ({"t_method": "cp", "t_options": {"sigma2": -1}}, ValueError, r"t_options: sigma2 must be 'gcv', 'reml' or a positive number"),
    ({"t_method": "gcv", "t_options": {"bogus": 1}}, TypeError, r"unknown option\(s\).*bogus"),
])
def test_fit_options_are_validated_by_name(fitted, kwargs, error, match):
    res, _ = fitted
    with pytest.raises(error, match=match):
        res.model.fit(**kwargs)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"decomposition": "svd"}, ValueError, r"decomposition must be one of"),
    ({"missing": "omit"}, ValueError, r"missing must be 'drop' or 'raise'"),
    ({"scale_inputs": "no"}, TypeError, r"scale_inputs must be True or False"),
    ({"low_rank": -3}, ValueError, r"low_rank must be a positive integer"),
    ({"low_rank": 2.5}, ValueError, r"low_rank must be a positive integer"),
    ({"low_rank": 10, "landmarks": "random"}, ValueError, r"landmarks must be one of"),
    ({"low_rank": 10, "seed": "a"}, ValueError, r"seed must be an integer"),
])
def test_model_options_are_validated_by_name(frame, kwargs, error, match):
    with pytest.raises(error, match=match):
        mn.MixedLMNTK.from_formula("y ~ x", frame, ntk=["z"], network=NET, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"interval": "credible"}, r"interval must be None, 'confidence' or 'prediction'"),
    ({"cross": 1}, r"cross must be 'auto', 'exact' or 'features'"),
    ({"missing": "drop"}, r"missing must be 'exclude'.* or 'raise'"),
])
def test_predict_options_are_validated_by_name(fitted, kwargs, match):
    res, df = fitted
    with pytest.raises(ValueError, match=match):
        res.predict(df.iloc[:3], **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"depth": 1.5}, r"depth must be a non-negative integer"),
    ({"width": 0}, r"width must be None or a positive integer"),
    ({"activation": "swish2"}, r"Unknown activation 'swish2'"),
    ({"weight_std": -1}, r"weight_std must be finite and > 0"),
    ({"bias_std": "x"}, r"bias_std must be a real number"),
])
def test_network_options_are_validated_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mn.MLP(**kwargs)


# ------------------------------------------------------------------- raw tracebacks

def test_pd_na_in_nullable_columns_is_a_missing_value(frame):
    df = frame.assign(
        k=pd.array(np.arange(len(frame)) % 4, dtype="Int64"),
        b=pd.array(np.arange(len(frame)) % 2 == 0, dtype="boolean"),
        s=pd.array(frame["g"], dtype="string"),
        w=pd.array(frame["z"], dtype="Float64"),
        o=pd.array(np.zeros(len(frame)), dtype="Float64"))
    df.iloc[3, df.columns.get_loc("k")] = pd.NA
    df.iloc[4, df.columns.get_loc("b")] = pd.NA
    df.iloc[5, df.columns.get_loc("s")] = pd.NA
    df.iloc[6, df.columns.get_loc("w")] = pd.NA
    df.iloc[7, df.columns.get_loc("o")] = pd.NA
    cases = [("y ~ k + b + s", "~ z", None), ("y ~ x", "~ w + k + b", None),
             ("y ~ x", ["w", "k", "b"], None), ("y ~ x", "~ z", "o")]
    for formula, ntk, offset in cases:
        m = mn.MixedLMNTK.from_formula(formula, df, ntk=ntk, offset=offset, network=NET)
        assert m.data.n_dropped > 0 and m.nobs == len(df) - m.data.n_dropped
    with pytest.raises(ValueError, match=r"row\(s\) have missing values.*'k'"):
        mn.MixedLMNTK.from_formula("y ~ k", df, ntk="~ z", network=NET, missing="raise")


def test_csv_text_in_a_later_chunk_names_file_line_and_column(tmp_path):
    lines = numeric_lines(1500)
    lines.insert(1201, "1.0,0.3,n/a?")  # data row 1200, line 1202; past the first 1,000 rows
    path = write_csv(tmp_path, "late.csv", lines)
    with pytest.raises(ValueError, match=r"column 'z' is numeric, but holds text in row 1200 "
                                         r"\(line 1202 of .*late\.csv\): 'n/a\?'.*na_values"):
        mn.MixedLMNTK.from_formula("y ~ x", mn.CSVSource(path, chunksize=500), ntk=["z"],
                                   network=NET, low_rank=10)


def test_csv_malformed_row_names_file_and_line(tmp_path):
    lines = numeric_lines(40)
    lines.insert(11, "1.0,2.0,3.0,4.0")
    path = write_csv(tmp_path, "bad.csv", lines)
    with pytest.raises(ValueError, match=r"CSV file .*bad\.csv has a malformed row: .*line 12.*"
                                         r"on_bad_lines='skip'"):
        mn.MixedLMNTK.from_formula("y ~ x", mn.CSVSource(path, chunksize=10), ntk=["z"],
                                   network=NET, low_rank=10)


def test_empty_csv_file_is_named(tmp_path):
    path = write_csv(tmp_path, "empty.csv", [])
    with pytest.raises(ValueError, match=r"CSV file .*empty\.csv is empty"):
        mn.CSVSource(path)
    blank = tmp_path / "blank.csv"
    blank.write_text("\n\n")
    with pytest.raises(ValueError, match=r"CSV file .*blank\.csv is empty"):
        mn.MixedLMNTK.from_formula("y ~ x", mn.CSVSource(str(blank)), ntk=["z"], low_rank=10)
    header = write_csv(tmp_path, "header.csv", ["y,x,z"])
    with pytest.raises(ValueError, match=r"no rows.*header\.csv has a header line only"):
        mn.MixedLMNTK.from_formula("y ~ x", mn.CSVSource(header), ntk=["z"], low_rank=10)


@pytest.mark.parametrize("interval", [None, "confidence"])
def test_predict_on_zero_rows_returns_an_empty_result(fitted, interval):
    res, df = fitted
    out = res.predict(df.iloc[:0], interval=interval)
    assert len(out) == 0
    if interval is None:
        assert isinstance(out, pd.Series) and out.name == "predicted"
    else:
        assert list(out.columns) == ["mean", "lower", "upper", "se"]
    arrays = mn.MixedLMNTK(df["y"], np.ones((len(df), 1)), df[["z"]], network=NET).fit()
    assert len(arrays.predict(exog=np.empty((0, 1)), ntk_inputs=np.empty((0, 1)))) == 0


def test_precomputed_kernel_given_network_inputs_asks_for_the_cross_kernel(frame):
    Z = frame[["z"]].to_numpy()
    res = mn.MixedLMNTK.from_formula("y ~ x", frame, kernel=rbf(Z, Z)).fit()
    with pytest.raises(ValueError, match=r"precomputed kernel matrix.*no network to evaluate at "
                                         r"ntk_inputs=.*kernel=K_new.*\(new rows, 80\)"):
        res.predict(exog=np.ones((3, 2)), ntk_inputs=Z[:3])
    with pytest.raises(ValueError, match=r"precomputed kernel matrix.*kernel=K_new"):
        res.predict(frame.iloc[:3])


def test_dotted_column_name_suggests_q(frame):
    df = frame.assign(**{"z.1": frame["z"]})
    for formula, ntk in [("y ~ x", "~ z.1"), ("y ~ z.1", "~ z")]:
        with pytest.raises(ValueError, match=r"\['z\.1'\] are not Python names.*Q\(\"z\.1\"\)"):
            mn.MixedLMNTK.from_formula(formula, df, ntk=ntk, network=NET)
    m = mn.MixedLMNTK.from_formula("y ~ x", df, ntk='~ Q("z.1")', network=NET)
    assert m.data.ntk_names == ['Q("z.1")']


# -------------------------------------------------------------- misleading messages

def test_one_row_is_too_few_rows_not_rank_deficient(frame):
    with pytest.raises(ValueError, match=r"1 observation\(s\) for 2 fixed effect\(s\).*need "
                                         r"n > p \+ 1") as err:
        mn.MixedLMNTK.from_formula("y ~ x", frame.iloc[:1], ntk=["z"], network=NET)
    assert "rank" not in str(err.value)


def test_empty_frame_is_reported_as_empty(frame):
    with pytest.raises(ValueError, match=r"data has no rows") as err:
        mn.MixedLMNTK.from_formula("y ~ x", frame.iloc[:0], ntk=["z"], network=NET)
    assert "missing" not in str(err.value)


def test_inf_in_a_later_csv_chunk_is_reported_as_infinite(tmp_path):
    lines = numeric_lines(1500)
    lines[1301] = "0.1,0.2,inf"  # data row 1300, line 1302
    path = write_csv(tmp_path, "inf.csv", lines)
    with pytest.raises(ValueError, match=r"network inputs contains infinite values in column\(s\) "
                                         r"\['z'\].*row 1300 \(line 1302 of .*inf\.csv\)") as err:
        mn.MixedLMNTK.from_formula("y ~ x", mn.CSVSource(path, chunksize=500), ntk=["z"],
                                   network=NET, low_rank=10)
    assert "constant" not in str(err.value)


def test_all_nan_column_is_named(frame):
    with pytest.raises(ValueError, match=r"column\(s\) \['x'\] are entirely missing"):
        mn.MixedLMNTK.from_formula("y ~ x", frame.assign(x=np.nan), ntk=["z"], network=NET)
    with pytest.raises(ValueError, match=r"column\(s\) \['z'\] are entirely missing"):
        mn.MixedLMNTK.from_formula("y ~ x", frame.assign(z=np.nan), ntk="~ z", network=NET)
    X = np.column_stack([np.ones(len(frame)), np.full(len(frame), np.nan)])
    with pytest.raises(ValueError, match=r"exog column 'x2' entirely missing"):
        mn.MixedLMNTK(frame["y"], X, frame[["z"]], network=NET)


def test_inf_names_column_and_first_row(frame):
    df = frame.copy()
    df.loc["r7", "x"] = np.inf
    with pytest.raises(ValueError, match=r"infinite values in column\(s\) \['x'\] \(1 row\(s\); "
                                         r"the first is row 'r7'\)"):
        mn.MixedLMNTK.from_formula("y ~ x", df, ntk=["z"], network=NET)


# ----------------------------------------------------------------- lme4 syntax

@pytest.mark.parametrize("formula, ntk, words", [
    ("y ~ x + 1 | g", "~ z", "in parentheses"),
    ("y ~ x", "~ z + (1|g)", "main formula"),
])
def test_lme4_bar_term_is_never_fitted_as_a_fixed_effect(frame, formula, ntk, words):
    df = frame.assign(g=np.arange(len(frame)) % 4)  # numeric: patsy would fit "1 | g"
    with pytest.raises(ValueError, match=words):
        mn.MixedLMNTK.from_formula(formula, df, ntk=ntk, network=NET)
    m = mn.MixedLMNTK.from_formula("y ~ x + (1 | g)", df, ntk="~ z", network=NET)
    assert m.k_fe == 2 and m.groups.q == 4  # a group random effect, not a fixed effect
    m = mn.MixedLMNTK.from_formula("y ~ x + I((x > 0) | (z > 0))", df, ntk="~ z", network=NET)
    assert m.k_fe == 3  # a bar inside a function call is Python's or, as written


# ------------------------------------------------------------ predict with missing

def test_predict_with_missing_newdata_gives_nan_rows_in_place(fitted):
    res, df = fitted
    new = df.iloc[:6].copy()
    new.index = ["a", "b", "c", "d", "e", "a"]  # duplicated labels stay as given
    new.iloc[1, new.columns.get_loc("x")] = np.nan
    new.iloc[3, new.columns.get_loc("z")] = np.nan
    new.iloc[4, new.columns.get_loc("g")] = None
    full = res.predict(df.iloc[:6])
    out = res.predict(new)
    assert list(out.index) == list(new.index)
    assert np.isnan(out.to_numpy()[[1, 3, 4]]).all()
    np.testing.assert_allclose(out.to_numpy()[[0, 2, 5]], full.to_numpy()[[0, 2, 5]], rtol=1e-10)
    frame_out = res.predict(new, interval="prediction")
    assert list(frame_out.index) == list(new.index)
    assert frame_out.iloc[[1, 3, 4]].isna().all().all() and frame_out.iloc[[0, 2, 5]].notna().all().all()
    with pytest.raises(ValueError, match=r"3 row\(s\) of newdata have missing values \(in "
                                         r"\['x', 'z', 'g'\]\).*missing='exclude'"):
        res.predict(new, missing="raise")


# --------------------------------------------------------------------- warnings

def test_warnings_point_at_the_callers_line():
    rng = np.random.default_rng(8)
    n = 40
    A = np.column_stack([np.ones(n), rng.normal(size=(n, 4))])
    Phi, _ = np.linalg.qr(A)  # the intercept lies in the kernel's span
    K = 3.0 * Phi @ Phi.T
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = Phi @ rng.normal(size=5) + X @ [1.0, 0.5]
    lam, U = np.linalg.eigh(K)
    lam[0] = -5e-9 * lam.max()
    K_clipped = 0.5 * ((U * lam) @ U.T + ((U * lam) @ U.T).T)
    Z = rng.normal(size=(60, 2))
    lam_z, U_z = np.linalg.eigh(rbf(Z, Z))
    y_flat = U_z[:, :20] @ rng.normal(size=20)  # energy in the least-learnable directions
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = mn.MixedLMNTK(y, X, kernel=K).fit()  # interpolates: degenerate fit
        first.predict(kernel=K[:3], exog=X[:3], interval="confidence")  # SEs not identified
        second = mn.MixedLMNTK(y, X, kernel=K).fit()
        second.summary()
        mn.MixedLMNTK(y, X, kernel=K_clipped).fit()  # a clipped eigenvalue
        mn.MixedLMNTK(y_flat, np.ones((60, 1)), Z, kernel=rbf, scale_inputs=False).fit()
    kinds = {w.category for w in caught}
    assert {mn.DegenerateFitWarning, RuntimeWarning, mn.KernelClippedWarning,
            mn.BoundaryFitWarning} <= kinds, kinds
    assert [(w.category.__name__, w.filename) for w in caught
            if w.filename != __file__] == []


def test_ordinary_one_input_fit_does_not_report_clipping():
    rng = np.random.default_rng(2)
    n = 500
    Z = rng.normal(size=(n, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", mn.KernelClippedWarning)
        basis = mn.MixedLMNTK(np.sin(Z[:, 0]) + rng.normal(size=n), np.ones((n, 1)), Z).basis
    assert basis.eigenvalues.min() >= 0


# ------------------------------------------------------------------------ LaTeX

def test_summary_latex_escapes_the_notes_and_compiles(frame, tmp_path):
    df = frame.rename(columns={"y": "y_obs", "z": "z_in"}).assign(x_2=frame["x"] ** 2)
    res = mn.MixedLMNTK.from_formula("y_obs ~ x + x_2", df, ntk="~ z_in", network=NET).fit()
    latex = res.summary().as_latex()
    outside_math = re.sub(r"\$[^$]*\$", "", latex)
    assert re.findall(r"(?<!\\)[_^%#]", outside_math) == []  # & separates table columns
    assert "z\\_in" in latex and "lambda\\_max" in latex and "\\textasciicircum{}2" in latex
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed")
    doc = tmp_path / "summary.tex"
    doc.write_text("\\documentclass{article}\n\\begin{document}\n" + latex
                   + "\n\\end{document}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert os.path.exists(tmp_path / "summary.pdf")


# ------------------------------------------------------------ inputs unmodified

def test_callers_frame_is_unchanged_by_fit_and_predict(frame):
    df = frame.assign(k=pd.array(np.arange(len(frame)) % 3, dtype="Int64"),
                      s=pd.array(frame["g"], dtype="string"),
                      c=pd.Categorical(frame["g"]))
    df.iloc[2, df.columns.get_loc("k")] = pd.NA
    df.iloc[5, df.columns.get_loc("x")] = np.nan
    before = df.copy(deep=True)
    res = mn.MixedLMNTK.from_formula("y ~ x + k + s", df, ntk="~ z + C(c)", network=NET).fit()
    res.predict(df)
    res.predict(df, interval="confidence", missing="exclude")
    res.summary()
    pd.testing.assert_frame_equal(df, before)
