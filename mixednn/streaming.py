"""Streamed designs: one patsy design for all partitions of a dask frame or a chunked CSV.

This module owns what the rows of a partition *mean*: the picklable recipe of every
partition's design (:class:`DesignRecipe`), the first passes over the data
(:func:`build_streamed_design`) and the model's data when rows stream
(:class:`StreamedDesign`).  How partitions are read and mapped -- :class:`CSVSource`,
dask, the row sources -- is :mod:`mixednn.partitions`.

``MixedLMNTK.from_formula(formula, data=ddf, low_rank=m)`` with a
``dask.dataframe.DataFrame`` (or ``data=CSVSource("big.csv")``) never loads the
data whole.  The fit makes three passes over the rows, each a map over
partitions (chunks) followed by a tree reduction:

1. *levels* (only when the formulas use categorical columns): the levels of every
   categorical column, so that all partitions share one patsy design info;
2. *moments and landmark pool*: row counts (and rows dropped as incomplete),
   means and variances of the network inputs (their standardisation), ``X^T X``
   (the rank check of the fixed effects) and the landmark candidate pool
   (rows with the smallest seeded hash keys, see :mod:`mixednn.features`);
3. *sufficient statistics* ``[Phi, y - f0, X]^T [Phi, y - f0, X]``
   (:func:`mixednn.lowrank.accumulate_stats`).

With dask, each pass is one task graph on whatever scheduler is active; a CSV is
read chunk by chunk in this process (:mod:`mixednn.partitions`).

Categorical levels
------------------
Every partition's design is built by patsy from one design info, whose
categorical levels are fixed before the first design is built: given by the user
(``levels={"cut": [...]}``), taken from a dask ``category`` dtype with known
categories, or collected in the levels pass (sorted as patsy sorts them).  So a
level *missing* from a partition is no problem: its indicator column is simply
zero in that partition, and the columns of every partition line up.  A value
that is *not* among the given levels raises a ``ValueError`` naming the column
and the value (it is never silently dropped).  Numeric columns wrapped in
``C(...)`` get their levels from the levels pass as well.

Limitations: stateful patsy transforms (``center()``, ``standardize()``, spline
bases), whose parameters patsy learns from the whole data in memory, are refused
-- compute those columns first (e.g. ``ddf.assign(...)``); an offset must be a
column of the data.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import patsy
from patsy import EvalEnvironment, NAAction
from patsy.util import SortAnythingKey

from .checks import (check_bar_terms, check_fixed_effects, check_formula_columns,
                     check_network_factors, check_no_inf, check_row_count, columns_mentioned,
                     patsy_message, plain_dtypes)
from .formula import (InputScaling, capture_env, minimal_reference_frame, ntk_desc,
                      picklable_namespace, removed_rows_error, restored_namespace)
from .partitions import CSVRowSource, DaskRowSource, describe_row, is_dask_frame, reduce_frames
from .rows import RowChunk, pool_size, row_keys, smallest_keys

__all__ = ["build_streamed_design", "StreamedDesign", "DesignRecipe"]


# ============================================================================ recipe

_INFO_CACHE: dict[str, tuple] = {}


@dataclass
class DesignRecipe:
    """What a worker needs to build one partition's design (picklable).

    patsy's design infos cannot be pickled, so each process rebuilds them once from
    a small reference frame whose categorical columns carry the fixed levels (the
    same infos as the client's: no stateful transforms are allowed).
    """

    formula: str
    ntk: str | list[str]
    offset: str | None
    levels: dict[str, list]
    namespace: dict
    ref_frame: pd.DataFrame
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __getstate__(self) -> dict:
        """The state, functions of the namespace wrapped so that an unpicklable one is
        named and modules saved by name."""
        state = dict(self.__dict__)
        state["namespace"] = picklable_namespace(self.namespace)
        return state

    def saved_without_rows(self) -> "DesignRecipe":
        """What a save with ``remove_data=True`` stores (:mod:`mixednn.persistence`): a copy
        whose reference frame keeps only the formula columns of the rows that give the
        same design infos (one per categorical level, often a single row)."""
        if self.__dict__.get("rows_minimal", False):
            return self
        text = self.formula + " " + (self.ntk if isinstance(self.ntk, str) else "")
        ref = self.ref_frame[columns_mentioned(self.ref_frame, text)]
        new = dataclasses.replace(self, ref_frame=minimal_reference_frame(
            ref, lambda f: dataclasses.replace(self, ref_frame=f)._build_infos(), self.infos()))
        new.rows_minimal = True
        return new

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.namespace = restored_namespace(self.namespace)

    # -- design infos ------------------------------------------------------------------
    def env(self) -> EvalEnvironment:
        return EvalEnvironment([dict(self.namespace)])

    def infos(self) -> tuple:
        got = _INFO_CACHE.get(self.token)
        if got is None:
            got = self._build_infos()
            _INFO_CACHE[self.token] = got
        return got

    def _build_infos(self, env: EvalEnvironment | None = None) -> tuple:
        frame = self.cast(self.ref_frame)
        env = self.env() if env is None else env
        na = NAAction(NA_types=[])
        try:
            y_df, X_df = patsy.dmatrices(self.formula, frame, eval_env=env, NA_action=na,
                                         return_type="dataframe")
        except (patsy.PatsyError, SyntaxError) as exc:
            raise ValueError(patsy_message(exc, self.formula, frame)) from None
        z_info = None
        if isinstance(self.ntk, str):
            try:
                z_info = patsy.dmatrix(ntk_desc(self.ntk), frame, eval_env=env, NA_action=na,
                                       return_type="dataframe").design_info
            except (patsy.PatsyError, SyntaxError) as exc:
                raise ValueError(patsy_message(exc, self.ntk, frame)) from None
            check_network_factors(z_info, self.ntk)  # levels per row: unknown here
        return y_df.design_info, X_df.design_info, z_info

    # -- partitions ----------------------------------------------------------------------
    def cast(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Categorical columns with the fixed levels; unknown values raise."""
        if not self.levels:
            return frame
        frame = frame.copy()
        for col, lev in self.levels.items():
            if col not in frame.columns:
                continue
            vals = frame[col]
            bad = (vals.notna() & ~vals.isin(lev)).to_numpy()
            if bad.any():
                unknown = sorted({str(v) for v in vals[bad].unique()})[:5]
                raise ValueError(
                    f"column {col!r} has value(s) {unknown} that are not among its levels "
                    f"{list(lev)[:10]}{' ...' if len(lev) > 10 else ''}; pass all levels in "
                    "levels= (or let the first pass collect them)")
            frame[col] = pd.Categorical(vals.astype(object).where(vals.notna(), None), categories=lev)
        return frame

    def check_numbers(self, frame: pd.DataFrame) -> None:
        """Raise if a column that is numeric in the first rows holds text in this
        partition, naming the column, the value and its row (and line of a CSV file)."""
        text = self.formula + " " + (self.ntk if isinstance(self.ntk, str)
                                     else " ".join(map(str, self.ntk)))
        cols = columns_mentioned(self.ref_frame, text) + ([self.offset] if self.offset else [])
        for c in cols:
            if c in self.levels or c not in frame.columns or c not in self.ref_frame.columns:
                continue
            ref, col = self.ref_frame[c].dtype, frame[c]
            if not pd.api.types.is_numeric_dtype(ref) or pd.api.types.is_bool_dtype(ref) \
                    or pd.api.types.is_numeric_dtype(col.dtype):
                continue
            values = col.dropna()
            bad = pd.to_numeric(values, errors="coerce").isna().to_numpy()
            if not bad.any():
                continue
            first = np.flatnonzero(bad)[0]
            raise ValueError(
                f"column {c!r} is numeric, but holds text in {describe_row(frame, values.index[first])}: "
                f"{values.iloc[first]!r}"
                f"{f' (and {int(bad.sum()) - 1} more value(s) in these rows)' if bad.sum() > 1 else ''}"
                f"; correct the data, or read the column as numbers with missing values, e.g. "
                f"CSVSource(..., na_values=[{str(values.iloc[first])!r}])")

    def chunk(self, frame: pd.DataFrame) -> RowChunk:
        """The complete rows of one partition (``n_dropped``: incomplete rows left out)."""
        n_in = len(frame)
        labels = frame.index
        raw = frame
        text = self.formula + " " + (self.ntk if isinstance(self.ntk, str)
                                     else " ".join(map(str, self.ntk)))
        frame = plain_dtypes(frame, columns_mentioned(frame, text)
                             + ([self.offset] if self.offset else []))
        self.check_numbers(frame)
        f = self.cast(frame).reset_index(drop=True)
        y_info, X_info, z_info = self.infos()
        p = len(X_info.column_names)
        if n_in == 0:
            d = len(z_info.column_names) if z_info is not None else len(self.ntk)
            return RowChunk(np.empty(0), np.empty((0, p)), np.empty((0, d)), np.empty(0),
                            labels[:0])
        na = NAAction(NA_types=["None", "NaN"])
        env_err = None
        try:
            y_df, X_df = patsy.build_design_matrices([y_info, X_info], f, NA_action=na,
                                                     return_type="dataframe")
            if z_info is not None:
                (Z_df,) = patsy.build_design_matrices([z_info], f, NA_action=na,
                                                      return_type="dataframe")
            else:
                bad = [c for c in self.ntk if not (pd.api.types.is_numeric_dtype(f[c])
                                                    or pd.api.types.is_bool_dtype(f[c]))]
                if bad:
                    raise TypeError(f"network input column(s) {bad} are not numeric; pass a "
                                    f"formula instead, e.g. ntk='~ C({bad[0]}) + ...'")
                Z_df = f[list(self.ntk)].astype(float)
                Z_df = Z_df.loc[Z_df.notna().all(axis=1)]
        except (patsy.PatsyError, SyntaxError) as exc:
            env_err = exc
        if env_err is not None:
            raise ValueError(patsy_message(env_err, self.formula, f))
        keep = pd.Index(y_df.index).intersection(Z_df.index, sort=False)
        off = np.zeros(len(f))
        if self.offset is not None:
            off = pd.to_numeric(f[self.offset], errors="coerce").to_numpy(dtype=float)
            keep = keep.intersection(pd.Index(np.flatnonzero(~np.isnan(off))), sort=False)
        keep = keep.sort_values()
        y = y_df.loc[keep].to_numpy(dtype=float).ravel()
        X = X_df.loc[keep].to_numpy(dtype=float)
        Z = Z_df.loc[keep].to_numpy(dtype=float)
        pos = keep.to_numpy()
        where = lambda label: describe_row(raw, label)  # noqa: E731
        check_no_inf(y, list(y_info.column_names), "the response", labels[pos], where)
        check_no_inf(X, list(X_info.column_names), "the fixed-effects design", labels[pos], where)
        check_no_inf(Z, list(z_info.column_names) if z_info is not None else list(map(str, self.ntk)),
                     "the network inputs", labels[pos], where)
        check_no_inf(off[pos], [str(self.offset)], "the offset", labels[pos], where)
        return RowChunk(y, X, Z, off[pos], labels[pos], n_dropped=n_in - len(keep))


# ============================================================================ design

@dataclass
class _Scan:
    """Result of the moments pass (tree-reducible)."""

    n_in: int
    n: int
    z_mean: np.ndarray
    z_m2: np.ndarray
    y_mean: float
    y_m2: float
    xtx: np.ndarray
    pool_keys: np.ndarray
    pool_rows: np.ndarray
    cap: int

    @staticmethod
    def of(chunk: RowChunk, pool: int, seed: int) -> "_Scan":
        n = chunk.nrows
        Z = chunk.Z
        if n:
            zm = Z.mean(axis=0)
            zm2 = ((Z - zm) ** 2).sum(axis=0)
            ym = float(chunk.y.mean())
            ym2 = float(((chunk.y - ym) ** 2).sum())
        else:
            zm = zm2 = np.zeros(Z.shape[1])
            ym = ym2 = 0.0
        keys, rows = (smallest_keys(row_keys(Z, seed), Z, pool) if pool and n
                      else (np.empty(0, np.uint64), np.empty((0, Z.shape[1]))))
        return _Scan(n + chunk.n_dropped, n, zm, zm2, ym, ym2, chunk.X.T @ chunk.X, keys, rows,
                     pool)

    def __add__(self, o: "_Scan") -> "_Scan":
        n = self.n + o.n
        if n == 0:
            zm, zm2, ym, ym2 = self.z_mean, self.z_m2, 0.0, 0.0
        else:  # Chan et al. pairwise update of means and sums of squares
            dz = o.z_mean - self.z_mean
            zm = self.z_mean + dz * (o.n / n)
            zm2 = self.z_m2 + o.z_m2 + dz ** 2 * (self.n * o.n / n)
            dy = o.y_mean - self.y_mean
            ym = self.y_mean + dy * (o.n / n)
            ym2 = self.y_m2 + o.y_m2 + dy ** 2 * (self.n * o.n / n)
        cap = max(self.cap, o.cap)
        keys, rows = smallest_keys(np.concatenate([self.pool_keys, o.pool_keys]),
                               np.vstack([self.pool_rows, o.pool_rows]), cap)
        return _Scan(self.n_in + o.n_in, n, zm, zm2, ym, ym2, self.xtx + o.xtx, keys, rows, cap)


class StreamedDesign:
    """The model's data when rows stream (dask or CSV): design infos, counts, moments.

    Offers the attributes of :class:`mixednn.formula.DesignData` that the model and
    its results use.  ``endog``, ``exog``, ``offset``, ``ntk_inputs`` and
    ``row_labels`` are materialised (one pass, O(n p) memory) only when an in-sample
    quantity (fitted values, residuals) asks for them; the fit itself never does.
    """

    streamed = True
    #: in-sample rows are not read again (a fit saved with ``remove_data=True``)
    rows_removed = False

    def __init__(self, source: Any, recipe: DesignRecipe, scan: _Scan, *, endog_name: str,
                 exog_names: list[str], ntk_names: list[str], exog_design_info: Any,
                 ntk_design_info: Any, ntk_columns: list[str] | None, offset_spec: str | None,
                 formula: str, ntk_formula: str | None):
        self.source = source
        self.recipe = recipe
        self.nobs = int(scan.n)
        self.n_input_rows = int(scan.n_in)
        self.n_dropped = int(scan.n_in - scan.n)
        self.endog_name = endog_name
        self.exog_names = exog_names
        self.ntk_names = ntk_names
        self.exog_design_info = exog_design_info
        self.ntk_design_info = ntk_design_info
        self.ntk_columns = ntk_columns
        self.offset_spec = offset_spec
        self.formula = formula
        self.ntk_formula = ntk_formula
        self.row_positions = None
        self.pool = scan.pool_rows
        self.z_mean = scan.z_mean
        self.z_var = scan.z_m2 / max(scan.n - 1, 1)
        self.offset_fn: Callable[[np.ndarray], np.ndarray] | None = None
        self._scaling: InputScaling | None = None
        self._cache: dict[str, Any] = {}
        source.nobs = self.nobs

    # -- pickling: the design infos are rebuilt from the recipe, rows re-read on demand ----
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = {}  # rows read from the source: read again when asked for
        state["exog_design_info"] = state["ntk_design_info"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        _, self.exog_design_info, self.ntk_design_info = self.recipe.infos()

    def without_rows(self, keep_inputs: bool = False) -> "StreamedDesign":
        """A copy for a fit saved with ``remove_data=True``: in-sample rows are not read
        again (:class:`~mixednn.exceptions.DataRemovedError`); the source keeps the path of
        its file (a feature-space basis reads its inputs for the exact cross-kernel)."""
        new = StreamedDesign.__new__(StreamedDesign)
        new.__dict__.update(self.__dict__)
        new._cache = {}
        new.rows_removed = True
        return new

    @property
    def rows_loaded(self) -> bool:
        """Whether the rows have been read into memory (a fit never needs to)."""
        return bool(self._cache)

    def input_scaling(self, scale_inputs: bool) -> InputScaling:
        """Standardisation from the moments pass (R's ``scale()``: mean, sd with ddof=1)."""
        d = len(self.ntk_names)
        if not scale_inputs:
            self._scaling = InputScaling.identity(d)
            return self._scaling
        sd = np.sqrt(self.z_var)
        constant = [self.ntk_names[j] for j in np.flatnonzero(~(sd > 0))]
        if constant:
            raise ValueError(
                f"network input(s) {constant} are constant on the rows used, so they carry no "
                "information and cannot be standardised; drop them from `ntk=` "
                "(or pass scale_inputs=False)")
        self._scaling = InputScaling(self.z_mean.copy(), sd)
        return self._scaling

    # -- materialised in-sample data ---------------------------------------------------
    def _materialise(self, with_z: bool = False) -> dict[str, Any]:
        if self.__dict__.get("rows_removed", False):
            raise removed_rows_error("in-sample rows")
        if "y" in self._cache and (not with_z or "Z" in self._cache):
            return self._cache
        offset_fn, scaling = self.offset_fn, self._scaling

        def part(c: RowChunk) -> tuple:
            off = c.offset
            if offset_fn is not None and c.nrows:
                off = off + np.asarray(offset_fn(scaling.apply(c.Z)), dtype=float)
            return c.y, c.X, off, (c.Z if with_z else None), c.labels

        parts = self.source.map_chunks(part, desc="in-sample data")
        self._cache["y"] = np.concatenate([p[0] for p in parts])
        self._cache["X"] = np.vstack([p[1] for p in parts])
        self._cache["offset"] = np.concatenate([p[2] for p in parts])
        labels = [p[4] for p in parts]
        self._cache["labels"] = labels[0].append(labels[1:]) if len(labels) > 1 else labels[0]
        if with_z:
            self._cache["Z"] = np.vstack([p[3] for p in parts])
        return self._cache

    @property
    def endog(self) -> np.ndarray:
        return self._materialise()["y"]

    @property
    def exog(self) -> np.ndarray:
        return self._materialise()["X"]

    @property
    def offset(self) -> np.ndarray:
        return self._materialise()["offset"]

    @property
    def ntk_inputs(self) -> np.ndarray:
        return self._materialise(with_z=True)["Z"]

    @property
    def row_labels(self) -> pd.Index:
        return self._materialise()["labels"]


def _namespace(env: EvalEnvironment, codes: Sequence[str], columns: Sequence[str]) -> dict:
    from patsy.eval import ast_names

    names: set[str] = set()
    for code in codes:
        try:
            names.update(ast_names(code))
        except SyntaxError:  # pragma: no cover - patsy parsed it already
            pass
    names -= set(map(str, columns))
    ns: dict[str, Any] = {"np": np, "numpy": np}
    for nm in names:
        try:
            ns[nm] = env.namespace[nm]
        except KeyError:
            pass
    return ns


def _categorical_columns(formula_text: str, dtypes: pd.Series, columns: Sequence[str]) -> list[str]:
    cols = []
    frame_like = pd.DataFrame(columns=list(columns))
    mentioned = set(columns_mentioned(frame_like, formula_text))
    wrapped = set(re.findall(r"\bC\(\s*([A-Za-z_][A-Za-z0-9_.]*)", formula_text))
    for c in columns:
        if c not in mentioned:
            continue
        dt = dtypes[c]
        if pd.api.types.is_bool_dtype(dt):
            continue  # patsy knows both levels of a boolean
        if not pd.api.types.is_numeric_dtype(dt) or c in wrapped:
            cols.append(c)
    return cols


class _LevelsFn:
    def __init__(self, cols: list[str]):
        self.cols = cols

    def __call__(self, frame: pd.DataFrame) -> dict[str, set]:
        return {c: set(frame[c].dropna().unique().tolist()) for c in self.cols}


def _union_levels(a: dict[str, set], b: dict[str, set]) -> dict[str, set]:
    return {c: a[c] | b[c] for c in a}


def _sorted_levels(values: Any) -> list:
    vals = [v for v in pd.unique(pd.Series(values)) if not (v is None or (isinstance(v, float) and np.isnan(v)))]
    return sorted(vals, key=SortAnythingKey)


def build_streamed_design(formula: str, data: Any, *, ntk: str | Sequence[str] | None,
                          offset: Any = None, missing: str = "drop", eval_env: int = 0,
                          levels: dict | None = None, low_rank: Any = None,
                          landmarks: str = "kmeans++", seed: int = 0) -> StreamedDesign:
    """First passes over streamed data: fixed design infos, counts, moments, landmark pool.

    The steps: check the options, read the columns, fix the categorical levels (pass
    1, ``_fixed_levels``), build the picklable recipe of every partition's design
    (``_design_recipe``), then count the rows and take their moments and the landmark
    pool (pass 2, ``_moments_pass``), and check them (``_check_rows``).

    Parameters
    ----------
    formula, ntk, missing, eval_env
        As for :func:`mixednn.formula.build_from_formula`.
    data : dask.dataframe.DataFrame or CSVSource
    offset : str, optional
        Offset column.
    levels : dict, optional
        Categorical levels per column; columns not given are collected in a first pass.
    low_rank, landmarks, seed
        The model's options: the landmark pool (rows with the smallest seeded hash
        keys) is collected in the moments pass.

    Returns
    -------
    StreamedDesign
    """
    _check_options(formula, ntk, offset, missing, levels)
    env = capture_env(eval_env + 1)  # here, not in a helper: the frame depth counts
    dask_frame = is_dask_frame(data)
    columns, dtypes = _columns_and_dtypes(data, dask_frame)
    ntk_text, ntk_cols = _network_columns(ntk, columns)
    if offset is not None and offset not in columns:
        raise KeyError(f"offset column {offset!r} not found in data")
    _check_first_rows(data, dask_frame, formula + " " + ntk_text)
    lev = _fixed_levels(data, formula + " " + ntk_text, dtypes, columns, levels)
    recipe = _design_recipe(formula, ntk if isinstance(ntk, str) else ntk_cols, offset, lev,
                            _reference_frame(data, dask_frame), env, columns)
    y_info, X_info, z_info = recipe.infos()
    if len(y_info.column_names) != 1:
        raise ValueError(f"the response of {formula!r} expands to {len(y_info.column_names)} "
                         f"columns ({y_info.column_names}); it must be a single numeric variable")
    source = DaskRowSource(data, recipe) if dask_frame else CSVRowSource(data, recipe)
    scan = _moments_pass(source, low_rank, landmarks, seed)
    ntk_names = list(z_info.column_names) if z_info is not None else [str(c) for c in ntk_cols]
    exog_names = list(X_info.column_names)
    endog_name = str(y_info.column_names[0])
    _check_rows(scan, exog_names, endog_name, missing)
    return StreamedDesign(source, recipe, scan, endog_name=endog_name, exog_names=exog_names,
                          ntk_names=ntk_names, exog_design_info=X_info, ntk_design_info=z_info,
                          ntk_columns=ntk_cols, offset_spec=offset, formula=formula,
                          ntk_formula=ntk if isinstance(ntk, str) else None)


def _check_options(formula: Any, ntk: Any, offset: Any, missing: str, levels: Any) -> None:
    """The options of :func:`build_streamed_design` that can be checked before reading."""
    if missing not in ("drop", "raise"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}")
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula must be a two-sided patsy formula like 'y ~ x1 + x2', got {formula!r}")
    if ntk is None:
        raise ValueError("streamed data need network inputs: pass ntk='~ x1 + x2' or a column list")
    check_bar_terms(formula)
    if isinstance(ntk, str):
        check_bar_terms(ntk, "network-input formula")
    if offset is not None and not isinstance(offset, str):
        raise ValueError("with streamed data the offset must be a column name (an array cannot "
                         "be aligned with the partitions)")
    if levels is not None and not isinstance(levels, dict):
        raise TypeError("levels must be a dict {column: [levels...]}")


def _check_first_rows(data: Any, dask_frame: bool, text: str) -> None:
    """Numbers stored as text and dates in the first 1,000 rows (or the first partition),
    refused as :func:`mixednn.checks.check_formula_columns` refuses them in memory."""
    head = data.head(1000) if not dask_frame else data.partitions[0].compute().head(1000)
    if len(head):
        check_formula_columns(plain_dtypes(head), text,
                              describe_row=lambda label: describe_row(head, label))


def _columns_and_dtypes(data: Any, dask_frame: bool) -> tuple[list, pd.Series]:
    """Column names and dtypes: a dask frame's own, or those of a CSV's first 1,000 rows."""
    if dask_frame:
        return list(data.columns), data.dtypes
    head = data.head(1000)
    return list(head.columns), head.dtypes


def _network_columns(ntk: str | Sequence[str], columns: list) -> tuple[str, list | None]:
    """``(text, columns)`` of ``ntk=``: the formula text and None, or the column list
    (checked against the data) and its names joined as text."""
    if isinstance(ntk, str):
        return ntk, None
    ntk_cols = [ntk] if isinstance(ntk, (int, np.integer)) else list(ntk)
    if not ntk_cols:
        raise ValueError("ntk= is an empty list; name at least one network input")
    miss = [c for c in ntk_cols if c not in columns]
    if miss:
        raise KeyError(f"network input column(s) {miss} not found in data; available: {columns}")
    return " ".join(map(str, ntk_cols)), ntk_cols


def _fixed_levels(data: Any, formula_text: str, dtypes: pd.Series, columns: list,
                  levels: dict | None) -> dict[str, list]:
    """Pass 1: the levels of every categorical column the formulas use -- given in
    ``levels=``, from a dask ``category`` dtype with known categories, or collected in
    one pass (per-partition sets of values, united by a tree reduction)."""
    cat_cols = _categorical_columns(formula_text, dtypes, columns)
    lev: dict[str, list] = {}
    for c, v in (levels or {}).items():
        if c not in columns:
            raise KeyError(f"levels= names column {c!r}, which is not in the data")
        lev[c] = list(v)
    todo = []
    for c in cat_cols:
        if c in lev:
            continue
        dt = dtypes[c]
        if isinstance(dt, pd.CategoricalDtype) and dt.categories is not None and \
                getattr(getattr(data[c], "cat", None), "known", True):
            lev[c] = list(dt.categories)
        else:
            todo.append(c)
    if todo:
        found = reduce_frames(data, _LevelsFn(todo), _union_levels, "levels")
        for c in todo:
            lev[c] = _sorted_levels(np.asarray(list(found[c]), dtype=object))
    return lev


def _reference_frame(data: Any, dask_frame: bool) -> pd.DataFrame:
    """The first 50 rows, from which the design infos are built."""
    ref = data.head(50, npartitions=-1) if dask_frame else data.head(50)
    if len(ref) == 0:
        where = "" if dask_frame else f" (CSV file {data.path} has a header line only)"
        raise ValueError(f"the data have no rows{where}: nothing to fit")
    return ref


def _design_recipe(formula: str, ntk: str | list, offset: str | None, lev: dict[str, list],
                   ref: pd.DataFrame, env: EvalEnvironment, columns: list) -> DesignRecipe:
    """The recipe of every partition's design, with the names the formulas use (found
    with the caller's full environment); stateful transforms are refused."""
    recipe = DesignRecipe(formula, ntk, offset, lev, {}, ref)
    infos = [info for info in recipe._build_infos(env) if info is not None]
    codes = [f.code for info in infos for f in info.factor_infos]
    for info in infos:
        for f, fi in info.factor_infos.items():
            if fi.state.get("transforms"):
                raise ValueError(
                    f"the formula term {f.code!r} uses a stateful transform (center, standardize, "
                    "splines...), whose parameters patsy learns from all rows in memory; with "
                    "streamed data compute that column first (e.g. ddf.assign(...))")
    recipe.namespace = _namespace(env, codes, columns)
    return recipe


def _moments_pass(source: Any, low_rank: Any, landmarks: str, seed: int) -> _Scan:
    """Pass 2: counts, moments of the inputs and the response, ``X^T X``, landmark pool."""
    pool = 0
    if low_rank is not None and not isinstance(low_rank, str) and isinstance(low_rank, (int, np.integer)):
        pool = pool_size(int(low_rank), landmarks, 2**62)
    scan = source.map_chunks(_ScanFn(pool, int(seed)), combine=_Scan.__add__, desc="first pass")
    if not isinstance(scan, _Scan):  # pragma: no cover
        raise RuntimeError("internal error in the first pass")
    return scan


def _check_rows(scan: _Scan, exog_names: list[str], endog_name: str, missing: str) -> None:
    """The checks of :func:`mixednn.formula.build_from_formula`, from the moments pass."""
    n, p = scan.n, len(exog_names)
    n_dropped = scan.n_in - scan.n
    if n_dropped and missing == "raise":
        raise ValueError(f"{n_dropped} row(s) have missing values; use missing='drop' to fit on "
                         "the complete rows")
    if n == 0:
        raise ValueError("no complete rows remain after dropping missing values")
    check_row_count(n, p)
    # X^T X loses half the digits of X: aliased below a relative residual of sqrt(1e-10)
    check_fixed_effects(scan.xtx, exog_names, rtol=1e-5, gram=True)
    if not scan.y_m2 > 0:
        raise ValueError(f"the response {endog_name!r} is constant; there is nothing to model")


class _ScanFn:
    """Picklable per-chunk function of the moments pass."""

    def __init__(self, pool: int, seed: int):
        self.pool, self.seed = pool, seed

    def __call__(self, chunk: RowChunk) -> _Scan:
        return _Scan.of(chunk, self.pool, self.seed)
