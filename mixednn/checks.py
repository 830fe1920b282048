"""Checks of the data a formula reads: clear errors before patsy or numpy would fail.

Every check names the column, the row or the option and says what to do: numbers stored
as text, lme4 bars ``(1 | g)`` (not supported; patsy would read them as a fixed effect),
non-numeric network inputs, infinite values, too few rows, aliased fixed effects (one
pivoted QR), and patsy's own errors rewritten in the formula's terms.  Used by the
in-memory designs (:mod:`mixednn.formula`) and the streamed ones
(:mod:`mixednn.streaming`) alike.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import scipy.linalg

__all__ = ["check_no_inf", "columns_mentioned", "NUMERIC_TEXT_SHARE", "many_levels",
           "plain_dtypes", "explicit_categorical", "check_formula_columns", "check_bar_terms",
           "formula_brackets",
           "aliased_columns", "check_fixed_effects", "check_row_count",
           "check_network_factors", "patsy_message", "as_float_column", "check_weights",
           "observation_weights"]


def as_float_column(values: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be numeric; could not convert it to float ({exc})") from None
    return arr


def check_no_inf(values: np.ndarray, names: Sequence[str], what: str,
                 labels: Sequence[Any] | None = None,
                 describe_row: Callable[[Any], str] | None = None) -> None:
    """Raise a ValueError naming the columns and the first row with infinite values.

    Parameters
    ----------
    values : ndarray
        One column per name (a vector is one column).
    names : sequence of str
        Column names, for the message.
    what : str
        What the values are ("the network inputs").
    labels : sequence, optional
        Row labels (the caller's index), for the message; positions by default.
    describe_row : callable, optional
        Turns a row label into words (``"row 7 (line 9 of big.csv)"``).
    """
    if values.size == 0:
        return
    arr = values.reshape(values.shape[0], -1) if values.ndim else values.reshape(1, 1)
    bad = np.isinf(arr)
    if bad.any():
        cols = [names[j] if j < len(names) else str(j) for j in np.flatnonzero(bad.any(axis=0))]
        rows = np.flatnonzero(bad.any(axis=1))
        first = rows[0] if labels is None else labels[rows[0]]
        where = describe_row(first) if describe_row is not None else f"row {first!r}"
        raise ValueError(
            f"{what} contains infinite values in column(s) {cols} ({rows.size} row(s); the "
            f"first is {where}); remove or recode those rows before fitting")


def columns_mentioned(frame: pd.DataFrame, text: str) -> list[str]:
    """The columns of ``frame`` whose names occur in the formula text(s)."""
    out = []
    for c in frame.columns:
        if isinstance(c, str) and re.search(r"(?<![\w.])" + re.escape(c) + r"(?![\w])", text):
            out.append(c)
    return out


#: A text column counts as numbers gone wrong (one stray text value in a numeric column)
#: when at least this share of its values parse as numbers ...
NUMERIC_TEXT_SHARE = 0.9


def many_levels(k: int, n: int) -> bool:
    """Whether k levels in n rows is "about one level per row": at least 20 levels and
    at least half as many levels as rows (a factor that no fit can estimate)."""
    return k >= max(20, n / 2)


def plain_dtypes(frame: pd.DataFrame, columns: Sequence[Any] | None = None) -> pd.DataFrame:
    """``frame`` with pandas' nullable columns made plain: what patsy and numpy read.

    Nullable numbers (``Int64``, ``Float64``) become float64 with NaN, nullable booleans
    and strings (``boolean``, ``string``) object columns with None, so that ``pd.NA`` is a
    missing value (dropped, or refused with ``missing="raise"``) instead of an error.
    ``frame`` itself is never modified (a shallow copy is changed, only when needed).

    Parameters
    ----------
    frame : pandas.DataFrame
    columns : sequence, optional
        The columns to convert (all by default).

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"a": pd.array([1, None], dtype="Int64")})
    >>> plain_dtypes(df)["a"].tolist(), df["a"].dtype
    ([1.0, nan], Int64Dtype())
    """
    out = frame
    for c in frame.columns if columns is None else columns:
        if c not in frame.columns:
            continue
        col = frame[c]
        if not isinstance(col, pd.Series):  # duplicated column names: patsy reports them
            continue
        dt = col.dtype
        if not isinstance(dt, pd.api.extensions.ExtensionDtype) or isinstance(
                dt, (pd.CategoricalDtype, pd.DatetimeTZDtype, pd.PeriodDtype,
                     pd.IntervalDtype, pd.SparseDtype)):
            continue
        if out is frame:
            out = frame.copy(deep=False)
        if pd.api.types.is_numeric_dtype(dt) and not pd.api.types.is_bool_dtype(dt):
            out[c] = pd.Series(col.to_numpy(dtype=float, na_value=np.nan), index=col.index)
        else:
            values = np.array(col.astype(object), dtype=object)  # a writable copy
            values[col.isna().to_numpy()] = None
            out[c] = pd.Series(values, index=col.index, dtype=object)
    return out


def explicit_categorical(text: str) -> set[str]:
    """The names a formula wraps in ``C(...)`` (also ``C(Q("name"))``): categorical on
    purpose, so not checked for numbers stored as text."""
    return set(re.findall(r"\bC\(\s*(?:Q\(\s*[\"'])?([^\s,()\"']+)", text))


def check_formula_columns(frame: pd.DataFrame, text: str, labels: Sequence[Any] | None = None,
                          describe_row: Callable[[Any], str] | None = None) -> None:
    """Refuse columns that patsy would silently turn into about one dummy column per row.

    * Numbers stored as text: an object (or string) column whose values nearly all parse
      as numbers (at least :data:`NUMERIC_TEXT_SHARE` of them) and that has about a level
      per row (:func:`many_levels`) -- typically one stray text value (``"oops"``,
      ``"n/a"``) in a numeric column.  The error names the column and the first value
      that is not a number, and suggests ``pd.to_numeric``.
    * Dates and times (not wrapped in ``C()``): patsy would make them a factor with one
      level per distinct date; they must be converted to numbers first.

    Parameters
    ----------
    frame : pandas.DataFrame
        The data (positional index when ``labels`` is given).
    text : str
        The formula text(s): the columns it mentions are checked.
    labels : sequence, optional
        The caller's row labels, by position, for the message.
    describe_row : callable, optional
        Turns a row label into words (``"row 7 (line 9 of big.csv)"``).
    """
    wrapped = explicit_categorical(text)
    for c in columns_mentioned(frame, text):
        col = frame[c]
        if not isinstance(col, pd.Series) or c in wrapped:
            continue
        dt = col.dtype
        if pd.api.types.is_datetime64_any_dtype(dt) or isinstance(dt, pd.PeriodDtype):
            raise TypeError(
                f"column {c!r} holds dates ({dt}), which patsy would turn into a categorical "
                f"factor with one level per distinct date ({col.nunique()} levels in "
                f"{len(col)} rows). Convert it to a number first, e.g. "
                f"df['{c}_days'] = (df[{c!r}] - df[{c!r}].min()).dt.days (or use "
                f"df[{c!r}].dt.year, .dt.dayofyear, ...), or write C({c}) for one effect per date")
        if not (pd.api.types.is_object_dtype(dt) or pd.api.types.is_string_dtype(dt)):
            continue
        values = col.dropna()
        if len(values) < 2 or not many_levels(values.nunique(), len(values)) \
                or values.map(type).isin([bool, np.bool_]).any():
            continue  # (few levels: an ordinary categorical variable)
        parsed = pd.to_numeric(values, errors="coerce").notna().to_numpy()
        if parsed.mean() < NUMERIC_TEXT_SHARE:
            continue
        fix = (f"convert it first, e.g. df[{c!r}] = pd.to_numeric(df[{c!r}], errors='coerce') "
               "(values that are not numbers become missing, and those rows are dropped), or "
               "correct the value in the data")
        if parsed.all():
            raise ValueError(
                f"column {c!r} holds numbers stored as text (e.g. {values.iloc[0]!r}), which "
                f"patsy would turn into a categorical factor with {values.nunique()} levels in "
                f"{len(col)} rows; {fix}")
        first = np.flatnonzero(~parsed)[0]
        label = values.index[first] if labels is None else labels[values.index[first]]
        where = describe_row(label) if describe_row is not None else f"row {label!r}"
        raise ValueError(
            f"column {c!r} looks numeric but holds text: {values.iloc[first]!r} in {where}"
            f"{f' and {int((~parsed).sum()) - 1} more value(s)' if (~parsed).sum() > 1 else ''}"
            f". As text it would become a categorical factor with {values.nunique()} levels "
            f"in {len(col)} rows; {fix}")


def check_bar_terms(formula: str, what: str = "formula") -> None:
    """Refuse a bar that patsy would read as Python's bitwise or and fit as a fixed effect.

    lme4's bracketed bar terms are split off the main formula before this check
    (:mod:`mixednn.bars`); a bar left outside any function call (``I(a | b)`` is
    allowed) raises a ValueError naming the term: in the main formula it must be in
    parentheses, ``(1 | g)``; in the network-input formula it does not belong.

    Parameters
    ----------
    formula : str
        The formula text.
    what : str
        Which formula, for the message ("formula", "network-input formula").
    """
    for i, open_around in formula_brackets(formula)[1]:
        if not any(call for _, call in open_around):
            term = _bar_term(formula, i, open_around[0][0] if open_around else None)
            group = term.split("|")[-1].strip(" ()|") or "g"
            if what == "formula":
                raise ValueError(
                    f"the formula {formula!r} has the term {term!r}: lme4's syntax for a "
                    "random effect by group must be in parentheses, "
                    f"(1 | {group}), so that patsy cannot read it as a fixed effect "
                    "(Python's bitwise or); for a logical or of two columns write I(a | b)")
            raise ValueError(
                f"the {what} {formula!r} has the term {term!r}: group random effects belong "
                f"in the main formula, e.g. 'y ~ x + (1 | {group})', not in the network "
                "inputs (for a logical or of two columns write I(a | b))")


def formula_brackets(formula: str) -> tuple[list[tuple[int, int, bool, int]],
                                              list[tuple[int, list[tuple[int, bool]]]]]:
    """The brackets and bars of a formula, outside quoted strings.

    Parameters
    ----------
    formula : str

    Returns
    -------
    spans : list of (start, end, is_call, depth)
        Every closed bracket pair: ``formula[start:end]`` includes both brackets;
        ``is_call`` when a name or closing bracket precedes it (``I(...)``, ``C(...)``);
        ``depth`` 0 for a top-level bracket.  In order of closing.
    bars : list of (position, open brackets)
        Every ``|``, with the ``(start, is_call)`` of the brackets open around it,
        outermost first.
    """
    spans: list[tuple[int, int, bool, int]] = []
    bars: list[tuple[int, list[tuple[int, bool]]]] = []
    stack: list[tuple[int, bool]] = []  # (position of "(", whether it opens a call)
    quote = None
    for i, ch in enumerate(formula):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            before = formula[:i].rstrip()
            stack.append((i, bool(before) and (before[-1].isalnum() or before[-1] in "_.)]")))
        elif ch == ")":
            if stack:
                start, call = stack.pop()
                spans.append((start, i + 1, call, len(stack)))
        elif ch == "|":
            bars.append((i, list(stack)))
    return spans, bars


def _bar_term(formula: str, at: int, opened: int | None) -> str:
    """The term around the bar at ``at``: its bracketed group, or its ``+`` segment."""
    if opened is not None:
        depth = 0
        for j in range(opened, len(formula)):
            depth += {"(": 1, ")": -1}.get(formula[j], 0)
            if depth == 0:
                return formula[opened:j + 1]
        return formula[opened:]
    left = max(formula.rfind("+", 0, at), formula.rfind("~", 0, at)) + 1
    right = formula.find("+", at)
    return formula[left:right if right >= 0 else len(formula)].strip()


def aliased_columns(A: np.ndarray, rtol: float = 1e-10) -> tuple[int, list[int]]:
    """The rank of ``A`` and its aliased columns, from one pivoted QR.

    A column is aliased when it lies in the span of the earlier columns kept (to
    ``rtol`` relative to its own norm): greedy in design order, as R's ``lm`` and lme4
    drop terms, so the later of two collinear columns is named.  The columns are scaled
    to unit norm, one pivoted QR ``A P = Q R`` gives the rank r, and the greedy pass runs
    on the r x p coordinates ``R P^T`` (not on the n rows): O(n p^2) in all, where a
    solve per column would cost O(n p^3).

    Parameters
    ----------
    A : ndarray, shape (n, p)
        The design, or any matrix with the same ``A^T A`` (a square root of ``X^T X``).
        No column may be zero.
    rtol : float
        Relative size of the part of a column outside the span of the earlier columns
        below which it counts as aliased.

    Returns
    -------
    (int, list of int)
        The rank and the positions of the aliased columns (``p - rank`` of them).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(6.0)
    >>> aliased_columns(np.column_stack([np.ones(6), x, 2 * x]))
    (2, [2])
    """
    n, p = A.shape
    if p == 0:
        return 0, []
    B = A / np.linalg.norm(A, axis=0)
    R, piv = scipy.linalg.qr(B, mode="r", pivoting=True)
    k = min(n, p)
    tol = max(rtol, 10 * max(n, p) * np.finfo(float).eps)
    rank = int((np.abs(np.diag(R[:k, :k])) > tol).sum())
    if rank == p:
        return p, []
    C = np.empty((rank, p))
    C[:, piv] = R[:rank, :]  # coordinates of every column in the span of the first r pivots
    basis = np.empty((rank, rank))
    kept = 0
    aliased = []
    for j in range(p):
        c = C[:, j]
        for _ in range(2):  # Gram-Schmidt twice is enough
            if kept:
                c = c - basis[:, :kept] @ (basis[:, :kept].T @ c)
        size = float(np.linalg.norm(c))
        if kept == rank or size <= tol:
            aliased.append(j)
        else:
            basis[:, kept] = c / size
            kept += 1
    if len(aliased) != p - rank:  # a column at the tolerance's edge: the pivots decide
        aliased = sorted(int(j) for j in piv[rank:])
    return rank, aliased


def check_fixed_effects(exog: np.ndarray, names: Sequence[str], *, rtol: float = 1e-10,
                        gram: bool = False) -> None:
    """Raise if the fixed-effects design is rank deficient, naming the aliased columns.

    Parameters
    ----------
    exog : ndarray
        The design (n x p), or with ``gram=True`` its Gram matrix ``X^T X`` (p x p, the
        streamed fits' sufficient statistic).
    names : sequence of str
        Column names.
    rtol : float
        As for :func:`aliased_columns` (relative to the column's norm; for a Gram
        matrix, relative to the square root of its diagonal).
    gram : bool
        Whether ``exog`` is ``X^T X``.
    """
    p = exog.shape[1]
    if p == 0:
        return
    norms = np.sqrt(np.maximum(np.diag(exog), 0.0)) if gram else np.linalg.norm(exog, axis=0)
    zero = [names[j] for j in range(p) if not norms[j] > 0]
    if zero:
        raise ValueError(
            f"fixed-effects column(s) {zero} are all zero on the rows used (often a categorical "
            "level absent from this subset); drop or merge that level, or remove the term")
    if gram:  # a square root S of the Gram matrix (S^T S = X^T X) has X's R factor
        G = exog / np.outer(norms, norms)
        w, V = np.linalg.eigh(0.5 * (G + G.T))
        A = np.sqrt(np.maximum(w, 0.0))[:, None] * V.T * norms
    else:
        A = exog
    rank, aliased = aliased_columns(A, rtol)
    if aliased:
        named = [names[j] for j in aliased]
        shown = f"{named}" if len(named) <= 10 else f"{named[:10]} ... ({len(named)} in all)"
        raise ValueError(
            f"the fixed-effects design is rank deficient (rank {rank} < {p} columns): "
            f"column(s) {shown} are linear combinations of the earlier columns; remove those "
            "terms or merge categorical levels")


def check_row_count(n: int, p: int) -> None:
    """Raise unless there are more rows than fixed effects plus the residual variance
    (``n > p + 1``); checked before the rank, which a handful of rows cannot have."""
    if n == 0:
        raise ValueError("no complete rows to fit")
    if n <= p + 1:
        raise ValueError(
            f"{n} observation(s) for {p} fixed effect(s) plus the residual variance: need "
            f"n > p + 1 (at least {p + 2} complete rows)")


def check_weights(weights: np.ndarray, labels: Sequence[Any] | None = None,
                  what: str = "weights") -> None:
    """Raise unless every precision weight is finite and strictly positive.

    ``Var(e_i) = s2 / w_i``: a weight of 0 would make row i's variance infinite (the row
    carries no information), a negative one a negative variance.  The message names the
    option, the first offending row and what to do (R's ``lm`` and statsmodels' WLS
    refuse negative weights too; a zero weight is refused here because the whitened
    kernel ``W^{1/2} K W^{1/2}`` would silently lose that row).

    Parameters
    ----------
    weights : ndarray, shape (n,)
        The weights of the rows used (missing values already dropped).
    labels : sequence, optional
        Row labels (the caller's index), for the message; positions by default.
    what : str
        The option's name in messages.
    """
    w = np.asarray(weights, dtype=float).ravel()

    def first(mask: np.ndarray) -> str:
        rows = np.flatnonzero(mask)
        row = rows[0] if labels is None else labels[rows[0]]
        row = row.item() if isinstance(row, np.generic) else row  # 7, not np.int64(7)
        return f"{rows.size} row(s); the first is row {row!r}, weight {float(w[rows[0]])!r}"

    bad = ~np.isfinite(w)
    if bad.any():
        raise ValueError(f"{what} must be finite: {first(bad)}; remove or recode those rows")
    if (w < 0).any():
        raise ValueError(f"{what} must be positive (Var(e_i) = s2 / w_i): negative weights in "
                         f"{first(w < 0)}")
    if (w == 0).any():
        raise ValueError(
            f"{what} must be strictly positive: zero weights in {first(w == 0)}; a zero weight "
            "means the row carries no information, so drop those rows from the data "
            "(e.g. data[data[w] > 0]) before fitting")


def observation_weights(weights: Any, nrow: int, index: Any = None) -> np.ndarray | None:
    """Precision weights of observations to predict (``Var(e*) = s2 / w*``), checked.

    Parameters
    ----------
    weights : array-like or None
        One weight per row; None means 1 for every row (returned as None).  A NaN weight
        is allowed (its row's observation interval is then NaN); others must be finite
        and strictly positive (:func:`check_weights`).
    nrow : int
        Number of rows predicted.
    index : sequence, optional
        Their labels, for messages.

    Returns
    -------
    ndarray or None
    """
    if weights is None:
        return None
    w = as_float_column(weights, "weights of the new rows").ravel()
    if w.shape[0] != nrow:
        raise ValueError(f"weights has {w.shape[0]} values for {nrow} rows to predict")
    given = ~np.isnan(w)
    labels = None if index is None else pd.Index(index)[given]
    check_weights(w[given], labels, what="weights of the new rows")
    return w


def check_network_factors(info: Any, ntk: str, n: int | None = None) -> None:
    """Refuse network inputs that a one-sided formula would expand into indicators by
    accident: a non-numeric column not written ``C(...)`` (the list form ``ntk=[...]``
    refuses it too), or a categorical input with about a level per row.

    Parameters
    ----------
    info : patsy.DesignInfo
        The design info of the network-input formula.
    ntk : str
        The formula, for the message.
    n : int, optional
        Number of rows (None: unknown, levels per row not checked).
    """
    for factor, fi in info.factor_infos.items():
        if fi.type != "categorical" or set(fi.categories) <= {False, True}:
            continue
        code = factor.code
        k = len(fi.categories)
        if not code.replace(" ", "").startswith("C("):
            raise TypeError(
                f"network input {code!r} of {ntk!r} is not numeric (a categorical variable with "
                f"{k} levels); the network needs numbers: write C({code}) in ntk= to give it one "
                "indicator input per level, or convert the column to numbers")
        if n is not None and many_levels(k, n):
            raise ValueError(
                f"network input {code!r} of {ntk!r} has {k} levels in {n} rows: it would expand "
                "into about one indicator input per row. Convert the column to numbers instead "
                "(pd.to_numeric), or leave it out of ntk=")


def patsy_message(exc: Exception, formula: str, frame: pd.DataFrame) -> str:
    """A one-line message for a patsy error that names the formula and the fix."""
    msg = (str(exc).splitlines() or [type(exc).__name__])[0]
    odd = [c for c in frame.columns if isinstance(c, str) and not c.isidentifier()
           and c in formula and f'Q("{c}")' not in formula and f"Q('{c}')" not in formula]
    if odd:  # "~ z.1" is Python syntax (z, then .1), not the column z.1
        return (f"could not evaluate formula {formula!r}: {msg}. Column name(s) {odd} are not "
                f"Python names; quote them in the formula with Q(), e.g. Q(\"{odd[0]}\")")
    if "NameError" in str(exc) or "not defined" in str(exc) or "name" in msg.lower():
        return (f"could not evaluate formula {formula!r}: {msg}. Check the column names; "
                f"available columns: {list(frame.columns)}")
    return f"could not evaluate formula {formula!r}: {msg}"
