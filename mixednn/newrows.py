"""New rows for prediction: the fixed-effects design and network inputs of ``newdata``.

Both are rebuilt through the training fit's patsy design infos (same categorical levels,
same stateful transforms); rows with missing values are found first, so that
``predict`` can return NaN for them in place (R's ``na.action = na.exclude``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import patsy
from patsy import NAAction

from .checks import check_no_inf, columns_mentioned
from .formula import DesignData

__all__ = ["complete_new_rows", "rebuild_exog", "rebuild_ntk_inputs", "build_new_columns"]


def build_new_columns(info: Any, newdata: pd.DataFrame, what: str) -> np.ndarray:
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


def complete_new_rows(design: Any, newdata: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Which rows of ``newdata`` have every value a prediction needs.

    A row is incomplete when a variable of the fixed effects, a network input or the
    offset column is missing (NaN, None, ``pd.NA``) -- as patsy and the fit decide it.

    Parameters
    ----------
    design : DesignData or StreamedDesign
        The model's data (its design infos, network-input columns and offset column).
    newdata : pandas.DataFrame
        The new rows, with plain dtypes (:func:`plain_dtypes`).

    Returns
    -------
    (ndarray of bool, list of str)
        One flag per row (True: complete), and the columns with missing values.
    """
    frame = newdata.reset_index(drop=True)
    n = len(frame)
    ok = np.ones(n, dtype=bool)
    codes: list[str] = []
    na = NAAction(NA_types=["None", "NaN"])
    for info in (design.exog_design_info, design.ntk_design_info):
        if info is None:
            continue
        codes += [f.code for f in info.factor_infos]
        if n == 0:
            continue
        try:
            (mat,) = patsy.build_design_matrices([info], frame, NA_action=na,
                                                 return_type="dataframe")
        except (patsy.PatsyError, KeyError, NameError):
            continue  # building the design proper names the problem
        keep = np.zeros(n, dtype=bool)
        keep[np.asarray(mat.index, dtype=int)] = True
        ok &= keep
    cols = columns_mentioned(frame, " ".join(codes))
    extra = list(design.ntk_columns or [])
    if design.offset_spec not in (None, "array"):
        extra.append(design.offset_spec)
    for c in extra:
        if c in frame.columns:
            ok &= frame[c].notna().to_numpy()
            cols.append(c)
    missing = [c for c in dict.fromkeys(cols) if frame[c].isna().any()]
    return ok, missing


def rebuild_exog(design: DesignData, newdata: pd.DataFrame) -> np.ndarray:
    """Fixed-effects design of new rows, through the training design info."""
    if design.exog_design_info is None:
        raise ValueError("this model was built from arrays; pass exog= to predict")
    X = build_new_columns(design.exog_design_info, newdata, "fixed-effects design")
    check_no_inf(X, design.exog_names, "the new fixed-effects design")
    return X


def rebuild_ntk_inputs(design: DesignData, newdata: pd.DataFrame) -> np.ndarray:
    """Network inputs of new rows (unscaled), through the training design info."""
    if design.ntk_design_info is not None:
        Z = build_new_columns(design.ntk_design_info, newdata, "network inputs")
    elif design.ntk_columns is not None:
        miss = [c for c in design.ntk_columns if c not in newdata.columns]
        if miss:
            raise KeyError(f"newdata lacks network input column(s) {miss}")
        Z = newdata[design.ntk_columns].to_numpy(dtype=float)
        if np.isnan(Z).any():
            raise ValueError("newdata has missing values in the network inputs; drop those rows first")
    else:
        raise ValueError("this model has no network-input formula; pass ntk_inputs= to predict")
    check_no_inf(Z, design.ntk_names, "the new network inputs")
    return Z
