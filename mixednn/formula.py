"""Data path: data frame + formulas -> response, fixed-effects design, network inputs.

Everything that touches user data before the linear algebra lives here: patsy
designs, the consistent dropping of incomplete rows across the response, the
fixed-effects design, the network inputs and the offset, the input
standardisation that ``predict`` reuses, and the checks that turn bad input into
errors that name the problem and its fix.  Input frames are never modified.
"""

from __future__ import annotations

import importlib
import pickle
import types
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import pandas as pd
import patsy
import patsy.builtins
from patsy import EvalEnvironment, ModelDesc, NAAction
from patsy.desc import INTERCEPT
from patsy.eval import ast_names

from .checks import (as_float_column, check_bar_terms, check_fixed_effects,
                     check_formula_columns, check_network_factors, check_no_inf,
                     check_row_count, check_weights, columns_mentioned, patsy_message,
                     plain_dtypes)
from .exceptions import DataRemovedError
from .persistence import UserFunction

__all__ = ["DesignData", "RowlessDesign", "InputScaling", "build_from_formula",
           "build_from_arrays", "capture_env", "ntk_desc", "formula_namespace", "formula_design_infos", "same_design_info",
           "minimal_reference_frame", "removed_rows_error", "picklable_namespace",
           "restored_namespace", "ModuleReference"]


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
    #: the training rows were left out of a saved fit (:class:`RowlessDesign`)
    rows_removed: ClassVar[bool] = False
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
    #: precision weights of the rows used, ``Var(e_i) = s2 / w_i`` (None: unweighted).
    #: Kept when the rows are removed from a saved fit: the cross-kernel of new rows
    #: needs ``W^{1/2}`` on the training side (docs/model.md section 2.7)
    weights: np.ndarray | None = None
    weights_spec: Any = None  # column name, "array", or None
    formula: str | None = None
    ntk_formula: str | None = None
    #: the formula columns of the training frame (positional index): patsy is re-run on
    #: them to rebuild the design infos when a saved fit is loaded (patsy cannot pickle them)
    design_frame: pd.DataFrame | None = field(default=None, repr=False)
    #: the names from the caller's environment that the formulas use (beyond the data)
    formula_namespace: dict | None = field(default=None, repr=False)

    @property
    def nobs(self) -> int:
        return int(self.endog.shape[0])

    # -- pickling: patsy refuses to pickle its design infos, so they are rebuilt --------
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.formula is None or self.exog_design_info is None:
            return state
        if self.design_frame is None:
            raise pickle.PicklingError("this formula model keeps no formula columns, so its patsy "
                                       "design info cannot be rebuilt on loading")
        if not self.__dict__.get("_rebuild_checked"):
            got = self.rebuild_design_infos(self.design_frame)
            if not (same_design_info(got[0], self.exog_design_info)
                    and same_design_info(got[1], self.ntk_design_info)):
                raise pickle.PicklingError(
                    f"cannot save this fit: re-running patsy on the columns "
                    f"{list(self.design_frame.columns)} of the training data does not give the "
                    f"design of the formula {self.formula!r} back (a formula name that is not a "
                    "column?)")
            self._rebuild_checked = True
        state["_rebuild_checked"] = True
        state["exog_design_info"] = None
        state["ntk_design_info"] = None
        state["formula_namespace"] = picklable_namespace(self.formula_namespace or {})
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.formula_namespace:
            self.formula_namespace = restored_namespace(self.formula_namespace)
        if self.formula is not None and self.design_frame is not None \
                and self.exog_design_info is None:
            self.exog_design_info, self.ntk_design_info = \
                self.rebuild_design_infos(self.design_frame)

    def rebuild_design_infos(self, frame: pd.DataFrame) -> tuple[Any, Any]:
        """The patsy design infos of the formulas, re-built from ``frame`` (formula columns)."""
        return formula_design_infos(self.formula, self.ntk_formula, frame,
                                    self.formula_namespace or {})

    def without_rows(self, keep_inputs: bool = False) -> "RowlessDesign":
        """A copy without the training rows, for a fit saved with ``remove_data=True``.

        Left out: ``endog``, ``exog``, ``offset``, ``row_labels``, ``row_positions`` and,
        unless ``keep_inputs``, ``ntk_inputs`` (the kernel's cross-kernel needs them).  Of
        the formula columns only the rows that patsy needs to rebuild the same design
        infos are kept (:func:`minimal_reference_frame`): none beyond one per categorical
        level, or all of them when the formulas use stateful transforms such as
        ``center(x)``, whose parameters patsy learns from every row.
        """
        removed = {"endog", "exog", "offset", "row_labels", "row_positions"}
        if not keep_inputs:
            removed.add("ntk_inputs")
        state = {k: v for k, v in self.__dict__.items() if k not in removed}
        state["saved_nobs"] = self.nobs
        if self.formula is not None and self.design_frame is not None \
                and self.exog_design_info is not None:
            state["design_frame"] = minimal_reference_frame(
                self.design_frame, self.rebuild_design_infos,
                (self.exog_design_info, self.ntk_design_info))
        new = RowlessDesign.__new__(RowlessDesign)
        new.__dict__.update(state)
        return new


def removed_rows_error(what: str) -> DataRemovedError:
    """The error for training rows that a fit saved with ``remove_data=True`` left out."""
    return DataRemovedError(
        f"the training data ({what}) were removed when this fit was saved with "
        "remove_data=True, and this needs them; refit the model on the data or save it without "
        "remove_data (predictions at new rows still work)")


def _removed_field(name: str) -> property:
    def get(self: Any) -> Any:
        try:
            return self.__dict__[name]
        except KeyError:
            raise removed_rows_error(name) from None

    def put(self: Any, value: Any) -> None:
        self.__dict__[name] = value

    return property(get, put, doc=f"``{name}``, or DataRemovedError when it was removed")


class RowlessDesign(DesignData):
    """A :class:`DesignData` whose training rows were left out when the fit was saved
    (``remove_data=True``, :meth:`DesignData.without_rows`): reading them raises
    :class:`~mixednn.exceptions.DataRemovedError`; names, counts and the design infos
    (for new rows) remain."""

    endog = _removed_field("endog")
    exog = _removed_field("exog")
    offset = _removed_field("offset")
    ntk_inputs = _removed_field("ntk_inputs")
    row_labels = _removed_field("row_labels")
    row_positions = _removed_field("row_positions")
    rows_removed = True

    @property
    def nobs(self) -> int:
        return int(self.__dict__["saved_nobs"])

    def without_rows(self, keep_inputs: bool = False) -> "RowlessDesign":
        return self

    def __repr__(self) -> str:
        return (f"RowlessDesign(nobs={self.nobs}, endog_name={self.endog_name!r}, "
                f"exog_names={self.exog_names!r}, ntk_names={self.ntk_names!r})")


# --------------------------------------------------------------------------- helpers


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


def _validate_response(y: np.ndarray, name: str, p: int) -> None:
    check_row_count(y.shape[0], p)
    if np.ptp(y) == 0:
        raise ValueError(f"the response {name!r} is constant; there is nothing to model")


# ------------------------------------------------------------------ formula interface

def build_from_formula(formula: str, data: pd.DataFrame, *, ntk: str | Sequence[str] | None,
                       offset: Any = None, missing: str = "drop",
                       eval_env: int | EvalEnvironment = 0, weights: Any = None) -> DesignData:
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
    weights : str, array-like or None
        Precision weights (``Var(e_i) = s2 / w_i``): a column name or one value per row
        of ``data``.  A row with a missing weight is incomplete like any other.

    Returns
    -------
    DesignData
    """
    _check_formula_options(formula, data, missing)
    check_bar_terms(formula)
    if isinstance(ntk, str):
        check_bar_terms(ntk, "network-input formula")
    if len(data) == 0:
        raise ValueError("data has no rows (an empty data frame): nothing to fit")
    env = capture_env(eval_env if isinstance(eval_env, EvalEnvironment) else eval_env + 1)
    texts = formula + " " + (ntk if isinstance(ntk, str) else " ".join(
        map(str, [] if ntk is None else [ntk] if isinstance(ntk, (int, np.integer)) else ntk)))
    # Positional index so that rows can be aligned across designs whatever the user's index;
    # pandas' nullable columns (pd.NA) made plain; the caller's frame is never modified.
    frame = data.reset_index(drop=True)
    named = [c for c in (offset, weights) if isinstance(c, str)]  # columns beyond the formulas
    frame = plain_dtypes(frame, columns_mentioned(frame, texts) + named)
    check_formula_columns(frame, texts, labels=data.index)
    na = NAAction(NA_types=["None", "NaN"])
    y_df, X_df = _response_and_design(formula, frame, env, na)
    Z_df, ntk_formula, ntk_columns = _network_input_frame(ntk, frame, env, na)
    if ntk_formula is not None:
        check_network_factors(Z_df.design_info, ntk_formula, len(frame))
    off, offset_spec = _offset_values(offset, frame)
    wts, weights_spec = _weight_values(weights, frame)
    keep = _complete_rows(y_df, Z_df, off if offset is not None else None, wts)
    n_dropped = len(frame) - len(keep)
    if n_dropped and missing == "raise":
        _raise_missing(n_dropped, frame, formula + " " + (ntk_formula or " ".join(
            map(str, ntk_columns or []))), named)
    if len(keep) == 0:
        _raise_no_complete_rows(frame, texts, named)
    pos = keep.to_numpy()
    y = y_df.loc[keep].to_numpy(dtype=float).ravel()
    X = X_df.loc[keep].to_numpy(dtype=float)
    Z = Z_df.loc[keep].to_numpy(dtype=float) if Z_df is not None else None
    offset_arr = off[pos]
    wts = None if wts is None else wts[pos]
    exog_names = list(X_df.columns)
    ntk_names = list(Z_df.columns) if Z_df is not None else []
    endog_name = str(y_df.columns[0])
    _check_design_values(y, X, Z, offset_arr, endog_name, exog_names, ntk_names,
                         labels=data.index[pos])
    if wts is not None:
        check_weights(wts, data.index[pos])
    infos = [y_df.design_info, X_df.design_info, getattr(Z_df, "design_info", None)]
    codes = [f.code for info in infos if info is not None for f in info.factor_infos]
    formula_text = formula + " " + (ntk_formula or "")
    return DesignData(
        endog=y, exog=X, ntk_inputs=Z, offset=offset_arr, endog_name=endog_name,
        exog_names=exog_names, ntk_names=ntk_names, row_labels=data.index[pos],
        row_positions=pos, n_input_rows=len(frame), n_dropped=n_dropped,
        exog_design_info=X_df.design_info, ntk_design_info=getattr(Z_df, "design_info", None),
        ntk_columns=ntk_columns, offset_spec=offset_spec, formula=formula, ntk_formula=ntk_formula,
        weights=wts, weights_spec=weights_spec,
        design_frame=frame[columns_mentioned(frame, formula_text)],
        formula_namespace=formula_namespace(env, codes, frame.columns))


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
    except (patsy.PatsyError, SyntaxError) as exc:
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
        except (patsy.PatsyError, SyntaxError) as exc:
            raise ValueError(patsy_message(exc, ntk, frame)) from None
        check_network_factors(Z_df.design_info, ntk)  # (levels per row: build_from_formula)
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
                           or pd.api.types.is_bool_dtype(frame[c])
                           or frame[c].dropna().map(type).isin([bool, np.bool_]).all())]
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
        return as_float_column(frame[offset], f"offset column {offset!r}"), offset
    off = as_float_column(offset, "offset").ravel()
    if off.shape[0] != len(frame):
        raise ValueError(f"offset has {off.shape[0]} values but data has {len(frame)} rows")
    return off, "array"


def _weight_values(weights: Any, frame: pd.DataFrame) -> tuple[np.ndarray | None, str | None]:
    """The precision weight of every row of ``frame`` (None without weights) and how they
    were given; validity (finite, positive) is checked on the rows used."""
    if weights is None:
        return None, None
    if isinstance(weights, str):
        if weights not in frame.columns:
            raise KeyError(f"weights column {weights!r} not found in data")
        return as_float_column(frame[weights], f"weights column {weights!r}"), weights
    w = as_float_column(weights, "weights")
    if w.ndim != 1 or w.shape[0] != len(frame):
        raise ValueError(f"weights must have one value per row of data: got shape {w.shape} "
                         f"for {len(frame)} rows")
    return w, "array"


def _complete_rows(y_df: pd.DataFrame, Z_df: pd.DataFrame | None,
                   off: np.ndarray | None, wts: np.ndarray | None = None) -> pd.Index:
    """Positions of the rows complete in every part (response and design, network
    inputs, offset, weights), sorted."""
    keep = pd.Index(y_df.index)
    if Z_df is not None:
        keep = keep.intersection(Z_df.index, sort=False)
    for extra in (off, wts):
        if extra is not None:
            keep = keep.intersection(pd.Index(np.flatnonzero(~np.isnan(extra))), sort=False)
    return keep.sort_values()


def _raise_no_complete_rows(frame: pd.DataFrame, texts: str, named: list[str]) -> None:
    """The error when every row misses a value: the columns that are entirely missing,
    or else those with missing values (``named``: offset and weights columns)."""
    cols = columns_mentioned(frame, texts) + list(named)
    empty = [c for c in cols if frame[c].isna().all()]
    if empty:
        raise ValueError(
            f"column(s) {empty} are entirely missing (every value is NaN or None), so no row is "
            "complete; fill them in or remove them from the formulas")
    partial = [c for c in cols if frame[c].isna().any()]
    raise ValueError(
        "no complete rows remain after dropping missing values: every row misses a value in "
        f"at least one of {partial or 'the variables used'}")


def _raise_missing(n_dropped: int, frame: pd.DataFrame, texts: str, named: list[str]) -> None:
    """The error of ``missing="raise"``, naming the columns with missing values
    (``named``: offset and weights columns)."""
    cols = [c for c in columns_mentioned(frame, texts) if frame[c].isna().any()]
    cols += [c for c in named if c not in cols and frame[c].isna().any()]
    raise ValueError(
        f"{n_dropped} row(s) have missing values (in {cols or 'the variables used'}); "
        "use missing='drop' to fit on the complete rows")


def _check_design_values(y: np.ndarray, X: np.ndarray, Z: np.ndarray | None,
                         offset: np.ndarray, endog_name: str, exog_names: list[str],
                         ntk_names: list[str], labels: Sequence[Any] | None = None) -> None:
    """No infinite values, a full-rank fixed-effects design, a usable response."""
    check_no_inf(y[:, None], [endog_name], "the response", labels)
    check_no_inf(X, exog_names, "the fixed-effects design", labels)
    if Z is not None:
        check_no_inf(Z, ntk_names, "the network inputs", labels)
    check_no_inf(offset[:, None], ["offset"], "the offset", labels)
    check_row_count(y.shape[0], X.shape[1])
    check_fixed_effects(X, exog_names)
    _validate_response(y, endog_name, X.shape[1])


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
        return as_float_column(values, what).reshape(-1, 1), [str(values.name or "x0")]
    arr = as_float_column(values, what)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 1- or 2-dimensional, got shape {arr.shape}")
    prefix = "x" if what == "exog" else "z"
    return arr, [f"{prefix}{j + 1}" for j in range(arr.shape[1])]


def build_from_arrays(endog: Any, exog: Any = None, ntk_inputs: Any = None, *,
                      offset: Any = None, missing: str = "drop",
                      n_kernel_rows: int | None = None, weights: Any = None) -> DesignData:
    """Validate the array interface and drop incomplete rows consistently (a row with a
    missing precision weight, ``weights``, is incomplete too)."""
    if missing not in ("drop", "raise"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}")
    endog_name = str(getattr(endog, "name", None) or "y")
    y = as_float_column(endog, "endog")
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
        off = as_float_column(offset, "offset").ravel()
        if off.shape[0] != n:
            raise ValueError(f"offset has {off.shape[0]} values but endog has {n}")
        offset_spec = "array"
    wts = None
    if weights is not None:
        if isinstance(weights, str):
            raise TypeError(f"weights={weights!r}: a column name needs the formula interface "
                            "(MixedLMNTK.from_formula); pass an array of weights here")
        wts = as_float_column(weights, "weights")
        if wts.ndim != 1 or wts.shape[0] != n:
            raise ValueError(f"weights must have one value per row: got shape {wts.shape} "
                             f"for {n} rows of endog")
    complete = ~np.isnan(y) & ~np.isnan(X).any(axis=1) & ~np.isnan(off)
    if wts is not None:
        complete &= ~np.isnan(wts)
    if Z is not None:
        complete &= ~np.isnan(Z).any(axis=1)
    n_dropped = int((~complete).sum())
    if n_dropped and missing == "raise":
        where = [what for what, M in (("endog", y), ("exog", X), ("ntk_inputs", Z),
                                      ("offset", off), ("weights", wts))
                 if M is not None and np.isnan(M).any()]
        raise ValueError(f"{n_dropped} row(s) have missing values (in {', '.join(where)}); use "
                         "missing='drop' to fit on the complete rows")
    if n and not complete.any():
        parts = [(f"endog {endog_name!r}", y[:, None], [endog_name]), ("exog", X, exog_names),
                 ("ntk_inputs", Z, ntk_names), ("offset", off[:, None], ["offset"]),
                 ("weights", None if wts is None else wts[:, None], ["weights"])]
        empty = [f"{what} column {names[j]!r}" if what in ("exog", "ntk_inputs") else what
                 for what, M, names in parts if M is not None and M.size
                 for j in np.flatnonzero(np.isnan(M).all(axis=0))]
        raise ValueError(
            "no complete rows: " + (f"{', '.join(empty)} entirely missing (NaN)" if empty else
                                    "every row has a NaN in endog, exog, ntk_inputs, offset "
                                    "or weights"))
    pos = np.flatnonzero(complete)
    y, X, off = y[pos], X[pos], off[pos]
    Z = Z[pos] if Z is not None else None
    if wts is not None:
        wts = wts[pos]
        check_weights(wts, labels[pos])
    check_no_inf(y[:, None], [endog_name], "endog")
    check_no_inf(X, exog_names, "exog")
    if Z is not None:
        check_no_inf(Z, ntk_names, "ntk_inputs")
    check_no_inf(off[:, None], ["offset"], "offset")
    check_row_count(y.shape[0], X.shape[1])
    check_fixed_effects(X, exog_names)
    _validate_response(y, endog_name, X.shape[1])
    return DesignData(endog=y, exog=X, ntk_inputs=Z, offset=off, endog_name=endog_name,
                      exog_names=exog_names, ntk_names=ntk_names, row_labels=labels[pos],
                      row_positions=pos, n_input_rows=n, n_dropped=n_dropped,
                      offset_spec=offset_spec, weights=wts,
                      weights_spec=None if wts is None else "array")


# ------------------------------------------------------------------ new data (predict)


# ------------------------------------------------------------- saved fits (persistence)

#: patsy's own formula functions (C, center, bs, ...), which patsy adds to every
#: evaluation environment itself.
_PATSY_BUILTINS = {name: getattr(patsy.builtins, name) for name in patsy.builtins.__all__}


def formula_namespace(env: EvalEnvironment, codes: Sequence[str], columns: Sequence[Any]) -> dict:
    """The names of ``env`` that the formula codes use, beyond the data's ``columns``,
    numpy and patsy's own functions: what patsy needs, besides the data, to build the
    same design again (a fit is saved with them, :mod:`mixednn.persistence`).

    Examples
    --------
    >>> from patsy import EvalEnvironment
    >>> def f(x): return x + 1
    >>> formula_namespace(EvalEnvironment([{"f": f, "k": 2}]), ["f(x)", "C(g)"], ["x", "g"])
    ... # doctest: +ELLIPSIS
    {'f': <function f at ...>}
    """
    names: set[str] = set()
    for code in codes:
        try:
            names.update(ast_names(code))
        except SyntaxError:  # pragma: no cover - patsy parsed it already
            pass
    names -= {str(c) for c in columns}
    out: dict[str, Any] = {}
    for name in sorted(names):
        try:
            value = env.namespace[name]
        except KeyError:
            continue
        if value is np or value is _PATSY_BUILTINS.get(name):
            continue
        out[name] = value
    return out


@dataclass(frozen=True)
class ModuleReference:
    """A module in a formula's namespace (``sp`` in ``"y ~ sp.expit(x)"``), saved by name."""

    name: str

    def load(self) -> Any:
        return importlib.import_module(self.name)


def picklable_namespace(namespace: dict) -> dict:
    """A formula namespace ready to pickle: modules by name, functions wrapped so that
    saving names the one that cannot be pickled (:class:`~mixednn.persistence.UserFunction`).
    :func:`restored_namespace` undoes it."""
    out = {}
    for name, value in namespace.items():
        if isinstance(value, types.ModuleType):
            value = ModuleReference(value.__name__)
        elif isinstance(value, types.FunctionType) and \
                not hasattr(value, "__patsy_stateful_transform__"):
            value = UserFunction(value, f"the formula function {name}",
                                 f"def {name}(x): return ... at the top of a module")
        out[name] = value
    return out


def restored_namespace(namespace: dict) -> dict:
    """The namespace of :func:`picklable_namespace` with its modules imported again."""
    return {name: value.load() if isinstance(value, ModuleReference) else value
            for name, value in namespace.items()}


def formula_design_infos(formula: str, ntk_formula: str | None, frame: pd.DataFrame,
                         namespace: dict) -> tuple[Any, Any]:
    """The fixed-effects and network-input design infos of the formulas on ``frame``.

    patsy is run as :func:`build_from_formula` runs it, in an environment of
    ``namespace`` (plus numpy): the same data give the same design infos, categorical
    levels and the parameters of stateful transforms included.

    Returns
    -------
    (DesignInfo, DesignInfo or None)
    """
    env = capture_env(EvalEnvironment([dict(namespace)]))
    na = NAAction(NA_types=["None", "NaN"])
    _, X_df = _response_and_design(formula, frame, env, na)
    z_info = None
    if ntk_formula is not None:
        Z_df, _, _ = _network_input_frame(ntk_formula, frame, env, na)
        z_info = Z_df.design_info
    return X_df.design_info, z_info


def same_design_info(a: Any, b: Any) -> bool:
    """Whether two patsy design infos build the same columns from the same data: column
    names, factor types, levels, column counts and contrast matrices (stateful
    transforms' parameters are not compared)."""
    if a is None or b is None:
        return a is b
    if list(a.column_names) != list(b.column_names) or set(a.factor_infos) != set(b.factor_infos):
        return False
    for f, fa in a.factor_infos.items():
        fb = b.factor_infos[f]
        if (fa.type, fa.num_columns, fa.categories) != (fb.type, fb.num_columns, fb.categories):
            return False
    if list(a.term_codings) != list(b.term_codings):
        return False
    for term, subs in a.term_codings.items():
        other = b.term_codings[term]
        if len(subs) != len(other):
            return False
        for sa, sb in zip(subs, other):
            if sa.factors != sb.factors or sa.num_columns != sb.num_columns \
                    or set(sa.contrast_matrices) != set(sb.contrast_matrices):
                return False
            for f, ca in sa.contrast_matrices.items():
                cb = sb.contrast_matrices[f]
                if list(ca.column_suffixes) != list(cb.column_suffixes) \
                        or not np.array_equal(ca.matrix, cb.matrix):
                    return False
    return True


def _has_stateful_transforms(info: Any) -> bool:
    return info is not None and any(fi.state.get("transforms")
                                    for fi in info.factor_infos.values())


def minimal_reference_frame(frame: pd.DataFrame, build: Callable[[pd.DataFrame], tuple],
                            infos: tuple) -> pd.DataFrame:
    """The fewest rows of ``frame`` from which ``build`` gives the same design ``infos``.

    Tried in turn: the first row and the first row of every value of each non-numeric
    column (categorical levels), then of every non-float column as well; each candidate
    is checked with :func:`same_design_info`.  All rows are kept when the formulas use
    stateful transforms (``center``, ``standardize``, splines: patsy learns their
    parameters from every row) or when no candidate gives the same design infos.
    """
    if len(frame) <= 1 or any(_has_stateful_transforms(i) for i in infos):
        return frame
    rows = {0}
    stages = [lambda dt: not pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt),
              lambda dt: not pd.api.types.is_float_dtype(dt)]
    for wanted in stages:
        for c in frame.columns:
            if wanted(frame[c].dtype):
                rows.update(np.flatnonzero(~frame[c].duplicated(keep="first").to_numpy()).tolist())
        ref = frame.iloc[sorted(rows)]
        try:
            got = build(ref)
        except Exception:  # noqa: BLE001 - any failure: try more rows, then keep them all
            continue
        if all(same_design_info(a, b) for a, b in zip(infos, got)):
            return ref
    return frame
