"""Data path: data frame + formulas -> response, fixed-effects design, network inputs.

Everything that touches user data before the linear algebra lives here: patsy
designs, the consistent dropping of incomplete rows across the response, the
fixed-effects design, the network inputs and the offset, the input
standardisation that ``predict`` reuses, and the checks that turn bad input into
errors that name the problem and its fix.  Input frames are never modified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd
import patsy
from patsy import EvalEnvironment, ModelDesc, NAAction
from patsy.desc import INTERCEPT

__all__ = ["DesignData", "InputScaling", "build_from_formula", "build_from_arrays",
           "rebuild_exog", "rebuild_ntk_inputs", "check_fixed_effects"]


@dataclass(frozen=True)
class InputScaling:
    """Centring and scaling of the network inputs, stored so predictions reuse it.

    Standardisation follows R's ``scale()``: column means and sample standard
    deviations (``ddof=1``) of the training rows.
    """

    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def identity(cls, d: int) -> "InputScaling":
        return cls(np.zeros(d), np.ones(d))

    @classmethod
    def fit(cls, Z: np.ndarray, names: Sequence[str]) -> "InputScaling":
        center = Z.mean(axis=0)
        scale = Z.std(axis=0, ddof=1) if Z.shape[0] > 1 else np.ones(Z.shape[1])
        constant = [names[j] for j in np.flatnonzero(~(scale > 0))]
        if constant:
            raise ValueError(
                f"network input(s) {constant} are constant on the rows used, so they carry no "
                "information and cannot be standardised; drop them from `ntk=` "
                "(or pass scale_inputs=False)")
        return cls(center, scale)

    def apply(self, Z: np.ndarray) -> np.ndarray:
        return (Z - self.center) / self.scale


@dataclass
class DesignData:
    """The model's data after formula evaluation and missing-value handling."""

    endog: np.ndarray
    exog: np.ndarray
    ntk_inputs: np.ndarray | None
    offset: np.ndarray
    #: rows held in memory (a streamed design, :mod:`mixednn.streaming`, sets True)
    streamed: ClassVar[bool] = False
    endog_name: str = "y"
    exog_names: list[str] = field(default_factory=list)
    ntk_names: list[str] = field(default_factory=list)
    row_labels: pd.Index | None = None
    row_positions: np.ndarray | None = None
    n_input_rows: int = 0
    n_dropped: int = 0
    exog_design_info: Any = None
    ntk_design_info: Any = None
    ntk_columns: list[str] | None = None  # column-list form of ntk=
    offset_spec: Any = None  # column name, "array", or None
    formula: str | None = None
    ntk_formula: str | None = None

    @property
    def nobs(self) -> int:
        return int(self.endog.shape[0])


# --------------------------------------------------------------------------- helpers

def _as_float_column(values: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be numeric; could not convert it to float ({exc})") from None
    return arr


def _check_no_inf(values: np.ndarray, names: Sequence[str], what: str) -> None:
    arr = values.reshape(values.shape[0], -1) if values.ndim else values.reshape(1, 1)
    bad = np.isinf(arr)
    if bad.any():
        cols = [names[j] if j < len(names) else str(j) for j in np.flatnonzero(bad.any(axis=0))]
        nrows = int(bad.any(axis=1).sum())
        raise ValueError(
            f"{what} contains infinite values in column(s) {cols} ({nrows} row(s)); "
            "remove or recode those rows before fitting")


def columns_mentioned(frame: pd.DataFrame, text: str) -> list[str]:
    """The columns of ``frame`` whose names occur in the formula text(s)."""
    out = []
    for c in frame.columns:
        if isinstance(c, str) and re.search(r"(?<![\w.])" + re.escape(c) + r"(?![\w])", text):
            out.append(c)
    return out


def capture_env(eval_env: int | EvalEnvironment) -> EvalEnvironment:
    """patsy's evaluation environment ``eval_env`` frames up from the caller."""
    if isinstance(eval_env, EvalEnvironment):
        env = eval_env
    else:
        env = EvalEnvironment.capture(eval_env + 1)
    # numpy is always reachable as np in formulas, as statsmodels users expect.
    return env.with_outer_namespace({"np": np, "numpy": np})


def ntk_desc(ntk: str) -> ModelDesc:
    """The network-input formula as a patsy description, intercept removed."""
    try:
        desc = ModelDesc.from_formula(ntk)
    except patsy.PatsyError as exc:
        raise ValueError(f"could not parse the network-input formula {ntk!r}: {exc}") from None
    if desc.lhs_termlist:
        raise ValueError(
            f"the network-input formula {ntk!r} must be one-sided, like '~ x1 + x2' "
            "(the response belongs in the main formula)")
    desc.rhs_termlist = [t for t in desc.rhs_termlist if t != INTERCEPT]
    if not desc.rhs_termlist:
        raise ValueError(f"the network-input formula {ntk!r} names no inputs")
    return desc


def check_fixed_effects(exog: np.ndarray, names: Sequence[str]) -> None:
    """Raise if the fixed-effects design is rank deficient, naming the aliased columns."""
    n, p = exog.shape
    if p == 0:
        return
    import scipy.linalg

    zero = [names[j] for j in range(p) if not np.any(exog[:, j])]
    if zero:
        raise ValueError(
            f"fixed-effects column(s) {zero} are all zero on the rows used (often a categorical "
            "level absent from this subset); drop or merge that level, or remove the term")
    # Greedy in design order, as R's lm/lme4 do: a column is aliased when it lies in
    # the span of the earlier kept columns, so the later of two collinear terms is named.
    _, R, _ = scipy.linalg.qr(exog, mode="economic", pivoting=True)
    tol = max(n, p) * np.finfo(float).eps * abs(R[0, 0]) * 10
    rank = int((np.abs(np.diag(R)) > tol).sum())
    if rank < p:
        kept: list[int] = []
        aliased = []
        for j in range(p):
            col = exog[:, j]
            if kept:
                Q, _ = np.linalg.qr(exog[:, kept])
                col = col - Q @ (Q.T @ col)
            if np.linalg.norm(col) <= 1e-9 * max(np.linalg.norm(exog[:, j]), 1e-300) or \
                    np.linalg.norm(col) <= tol:
                aliased.append(names[j])
            else:
                kept.append(j)
        raise ValueError(
            f"the fixed-effects design is rank deficient (rank {rank} < {p} columns): "
            f"column(s) {aliased} are linear combinations of the earlier columns; remove those "
            "terms or merge categorical levels")


def _validate_response(y: np.ndarray, name: str, p: int) -> None:
    n = y.shape[0]
    if n <= p + 1:
        raise ValueError(
            f"{n} observation(s) for {p} fixed effect(s) plus the residual variance: need "
            f"n > p + 1 (at least {p + 2} complete rows)")
    if np.ptp(y) == 0:
        raise ValueError(f"the response {name!r} is constant; there is nothing to model")


# ------------------------------------------------------------------ formula interface

def build_from_formula(formula: str, data: pd.DataFrame, *, ntk: str | Sequence[str] | None,
                       offset: Any = None, missing: str = "drop",
                       eval_env: int | EvalEnvironment = 0) -> DesignData:
    """Evaluate the model formulas on ``data`` and align rows.

    Parameters
    ----------
    formula : str
        Two-sided patsy formula for the response and fixed effects.
    data : pandas.DataFrame
        The data; never modified.
    ntk : str or sequence of str or None
        Network inputs: a one-sided patsy formula (``"~ x1 + x2"``; the intercept is
        dropped) or a list of numeric column names.
    offset : str, array-like or None
        A column name or an array with one value per row of ``data``.
    missing : {"drop", "raise"}
        Drop incomplete rows (consistently across all parts) or raise.
    eval_env : int or patsy.EvalEnvironment
        Where formula names are looked up (frames above the caller).

    Returns
    -------
    DesignData
    """
    _check_formula_options(formula, data, missing)
    env = capture_env(eval_env if isinstance(eval_env, EvalEnvironment) else eval_env + 1)
    # Positional index so that rows can be aligned across designs whatever the user's index.
    frame = data.reset_index(drop=True)
    na = NAAction(NA_types=["None", "NaN"])
    y_df, X_df = _response_and_design(formula, frame, env, na)
    Z_df, ntk_formula, ntk_columns = _network_input_frame(ntk, frame, env, na)
    off, offset_spec = _offset_values(offset, frame)
    keep = _complete_rows(y_df, Z_df, off if offset is not None else None)
    n_dropped = len(frame) - len(keep)
    if n_dropped and missing == "raise":
        _raise_missing(n_dropped, frame, formula + " " + (ntk_formula or " ".join(
            map(str, ntk_columns or []))), offset)
    if len(keep) == 0:
        raise ValueError("no complete rows remain after dropping missing values")
    pos = keep.to_numpy()
    y = y_df.loc[keep].to_numpy(dtype=float).ravel()
    X = X_df.loc[keep].to_numpy(dtype=float)
    Z = Z_df.loc[keep].to_numpy(dtype=float) if Z_df is not None else None
    offset_arr = off[pos]
    exog_names = list(X_df.columns)
    ntk_names = list(Z_df.columns) if Z_df is not None else []
    endog_name = str(y_df.columns[0])
    _check_design_values(y, X, Z, offset_arr, endog_name, exog_names, ntk_names)
    return DesignData(
        endog=y, exog=X, ntk_inputs=Z, offset=offset_arr, endog_name=endog_name,
        exog_names=exog_names, ntk_names=ntk_names, row_labels=data.index[pos],
        row_positions=pos, n_input_rows=len(frame), n_dropped=n_dropped,
        exog_design_info=X_df.design_info, ntk_design_info=getattr(Z_df, "design_info", None),
        ntk_columns=ntk_columns, offset_spec=offset_spec, formula=formula, ntk_formula=ntk_formula)


def _check_formula_options(formula: Any, data: Any, missing: str) -> None:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if missing not in ("drop", "raise"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}")
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula must be a two-sided patsy formula like 'y ~ x1 + x2', got {formula!r}")


def _response_and_design(formula: str, frame: pd.DataFrame, env: EvalEnvironment,
                         na: NAAction) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The response (one column) and the fixed-effects design, complete rows only."""
    try:
        y_df, X_df = patsy.dmatrices(formula, frame, eval_env=env, NA_action=na,
                                     return_type="dataframe")
    except patsy.PatsyError as exc:
        raise ValueError(patsy_message(exc, formula, frame)) from None
    if y_df.shape[1] != 1:
        raise ValueError(
            f"the response of {formula!r} expands to {y_df.shape[1]} columns "
            f"({list(y_df.columns)}); it must be a single numeric variable")
    return y_df, X_df


def _network_input_frame(ntk: str | Sequence[str] | None, frame: pd.DataFrame,
                         env: EvalEnvironment, na: NAAction
                         ) -> tuple[pd.DataFrame | None, str | None, list | None]:
    """``(Z_df, ntk_formula, ntk_columns)``: the network inputs (complete rows) from a
    one-sided formula or a list of numeric columns (None when ``ntk`` is None)."""
    if ntk is None:
        return None, None, None
    if isinstance(ntk, str):
        try:
            Z_df = patsy.dmatrix(ntk_desc(ntk), frame, eval_env=env, NA_action=na,
                                 return_type="dataframe")
        except patsy.PatsyError as exc:
            raise ValueError(patsy_message(exc, ntk, frame)) from None
        return Z_df, ntk, None
    ntk_columns = [ntk] if isinstance(ntk, (int, np.integer)) else list(ntk)
    if not ntk_columns:
        raise ValueError("ntk= is an empty list; name at least one network input")
    missing_cols = [c for c in ntk_columns if c not in frame.columns]
    if missing_cols:
        raise KeyError(f"network input column(s) {missing_cols} not found in data; "
                       f"available: {list(frame.columns)}")
    non_numeric = [c for c in ntk_columns
                   if not (pd.api.types.is_numeric_dtype(frame[c])
                           or pd.api.types.is_bool_dtype(frame[c]))]
    if non_numeric:
        raise TypeError(
            f"network input column(s) {non_numeric} are not numeric; pass a formula "
            f"instead, e.g. ntk='~ C({non_numeric[0]}) + ...', to expand them")
    Z_df = frame[ntk_columns].astype(float)
    return Z_df.loc[Z_df.notna().all(axis=1)], None, ntk_columns


def _offset_values(offset: Any, frame: pd.DataFrame) -> tuple[np.ndarray, str | None]:
    """The offset of every row of ``frame`` (zeros without one) and how it was given."""
    if offset is None:
        return np.zeros(len(frame)), None
    if isinstance(offset, str):
        if offset not in frame.columns:
            raise KeyError(f"offset column {offset!r} not found in data")
        return _as_float_column(frame[offset], f"offset column {offset!r}"), offset
    off = _as_float_column(offset, "offset").ravel()
    if off.shape[0] != len(frame):
        raise ValueError(f"offset has {off.shape[0]} values but data has {len(frame)} rows")
    return off, "array"


def _complete_rows(y_df: pd.DataFrame, Z_df: pd.DataFrame | None,
                   off: np.ndarray | None) -> pd.Index:
    """Positions of the rows complete in every part (response and design, network
    inputs, offset), sorted."""
    keep = pd.Index(y_df.index)
    if Z_df is not None:
        keep = keep.intersection(Z_df.index, sort=False)
    if off is not None:
        keep = keep.intersection(pd.Index(np.flatnonzero(~np.isnan(off))), sort=False)
    return keep.sort_values()


def _raise_missing(n_dropped: int, frame: pd.DataFrame, texts: str, offset: Any) -> None:
    """The error of ``missing="raise"``, naming the columns with missing values."""
    cols = [c for c in columns_mentioned(frame, texts) if frame[c].isna().any()]
    if isinstance(offset, str) and frame[offset].isna().any():
        cols.append(offset)
    raise ValueError(
        f"{n_dropped} row(s) have missing values (in {cols or 'the variables used'}); "
        "use missing='drop' to fit on the complete rows")


def _check_design_values(y: np.ndarray, X: np.ndarray, Z: np.ndarray | None,
                         offset: np.ndarray, endog_name: str, exog_names: list[str],
                         ntk_names: list[str]) -> None:
    """No infinite values, a full-rank fixed-effects design, a usable response."""
    _check_no_inf(y[:, None], [endog_name], "the response")
    _check_no_inf(X, exog_names, "the fixed-effects design")
    if Z is not None:
        _check_no_inf(Z, ntk_names, "the network inputs")
    _check_no_inf(offset[:, None], ["offset"], "the offset")
    check_fixed_effects(X, exog_names)
    _validate_response(y, endog_name, X.shape[1])


def patsy_message(exc: Exception, formula: str, frame: pd.DataFrame) -> str:
    """A one-line message for a patsy error that names the formula and the fix."""
    msg = str(exc).splitlines()[0]
    if "NameError" in str(exc) or "not defined" in str(exc) or "name" in msg.lower():
        return (f"could not evaluate formula {formula!r}: {msg}. Check the column names; "
                f"available columns: {list(frame.columns)}")
    return f"could not evaluate formula {formula!r}: {msg}"


# -------------------------------------------------------------------- array interface

def _to_2d(values: Any, what: str) -> tuple[np.ndarray, list[str]]:
    if isinstance(values, pd.DataFrame):
        names = [str(c) for c in values.columns]
        non_numeric = [str(c) for c in values.columns
                       if not (pd.api.types.is_numeric_dtype(values[c])
                               or pd.api.types.is_bool_dtype(values[c]))]
        if non_numeric:
            raise TypeError(f"{what} column(s) {non_numeric} are not numeric; use "
                            "MixedLMNTK.from_formula to expand categorical variables")
        return values.to_numpy(dtype=float), names
    if isinstance(values, pd.Series):
        return _as_float_column(values, what).reshape(-1, 1), [str(values.name or "x0")]
    arr = _as_float_column(values, what)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 1- or 2-dimensional, got shape {arr.shape}")
    prefix = "x" if what == "exog" else "z"
    return arr, [f"{prefix}{j + 1}" for j in range(arr.shape[1])]


def build_from_arrays(endog: Any, exog: Any = None, ntk_inputs: Any = None, *,
                      offset: Any = None, missing: str = "drop",
                      n_kernel_rows: int | None = None) -> DesignData:
    """Validate the array interface and drop incomplete rows consistently."""
    if missing not in ("drop", "raise"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}")
    endog_name = str(getattr(endog, "name", None) or "y")
    y = _as_float_column(endog, "endog")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"endog must be one-dimensional, got shape {y.shape}")
    n = y.shape[0]
    labels = endog.index if isinstance(endog, (pd.Series, pd.DataFrame)) else pd.RangeIndex(n)
    if exog is None:
        X, exog_names = np.empty((n, 0)), []
    else:
        X, exog_names = _to_2d(exog, "exog")
    if X.shape[0] != n:
        raise ValueError(f"exog has {X.shape[0]} rows but endog has {n}")
    Z = None
    ntk_names: list[str] = []
    if ntk_inputs is not None:
        Z, ntk_names = _to_2d(ntk_inputs, "ntk_inputs")
        if Z.shape[0] != n:
            raise ValueError(f"ntk_inputs has {Z.shape[0]} rows but endog has {n}")
    off = np.zeros(n)
    offset_spec = None
    if offset is not None:
        off = _as_float_column(offset, "offset").ravel()
        if off.shape[0] != n:
            raise ValueError(f"offset has {off.shape[0]} values but endog has {n}")
        offset_spec = "array"
    complete = ~np.isnan(y) & ~np.isnan(X).any(axis=1) & ~np.isnan(off)
    if Z is not None:
        complete &= ~np.isnan(Z).any(axis=1)
    n_dropped = int((~complete).sum())
    if n_dropped and missing == "raise":
        raise ValueError(f"{n_dropped} row(s) have missing values; use missing='drop' to fit "
                         "on the complete rows")
    pos = np.flatnonzero(complete)
    y, X, off = y[pos], X[pos], off[pos]
    Z = Z[pos] if Z is not None else None
    _check_no_inf(y[:, None], [endog_name], "endog")
    _check_no_inf(X, exog_names, "exog")
    if Z is not None:
        _check_no_inf(Z, ntk_names, "ntk_inputs")
    _check_no_inf(off[:, None], ["offset"], "offset")
    check_fixed_effects(X, exog_names)
    _validate_response(y, endog_name, X.shape[1])
    return DesignData(endog=y, exog=X, ntk_inputs=Z, offset=off, endog_name=endog_name,
                      exog_names=exog_names, ntk_names=ntk_names, row_labels=labels[pos],
                      row_positions=pos, n_input_rows=n, n_dropped=n_dropped,
                      offset_spec=offset_spec)


# ------------------------------------------------------------------ new data (predict)

def _build_new(info: Any, newdata: pd.DataFrame, what: str) -> np.ndarray:
    try:
        (mat,) = patsy.build_design_matrices([info], newdata, NA_action="raise",
                                             return_type="dataframe")
    except patsy.PatsyError as exc:
        msg = str(exc).splitlines()[0]
        if "level" in msg.lower() or "expected" in msg.lower():
            raise ValueError(
                f"newdata has a categorical level not seen when fitting ({what}): {msg}. "
                "Predictions are only defined for the training levels; drop or recode those rows") from None
        if "missing" in msg.lower():
            raise ValueError(f"newdata has missing values in the {what} variables: {msg}; "
                             "drop those rows first") from None
        raise ValueError(f"could not build the {what} for newdata: {msg}") from None
    return mat.to_numpy(dtype=float)


def rebuild_exog(design: DesignData, newdata: pd.DataFrame) -> np.ndarray:
    """Fixed-effects design of new rows, through the training design info."""
    if design.exog_design_info is None:
        raise ValueError("this model was built from arrays; pass exog= to predict")
    X = _build_new(design.exog_design_info, newdata, "fixed-effects design")
    _check_no_inf(X, design.exog_names, "the new fixed-effects design")
    return X


def rebuild_ntk_inputs(design: DesignData, newdata: pd.DataFrame) -> np.ndarray:
    """Network inputs of new rows (unscaled), through the training design info."""
    if design.ntk_design_info is not None:
        Z = _build_new(design.ntk_design_info, newdata, "network inputs")
    elif design.ntk_columns is not None:
        miss = [c for c in design.ntk_columns if c not in newdata.columns]
        if miss:
            raise KeyError(f"newdata lacks network input column(s) {miss}")
        Z = newdata[design.ntk_columns].to_numpy(dtype=float)
        if np.isnan(Z).any():
            raise ValueError("newdata has missing values in the network inputs; drop those rows first")
    else:
        raise ValueError("this model has no network-input formula; pass ntk_inputs= to predict")
    _check_no_inf(Z, design.ntk_names, "the new network inputs")
    return Z
