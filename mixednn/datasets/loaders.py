"""Registry and readers for the example data sets shipped with mixednn.

The CSV files live in the top-level ``data/`` folder of the source tree,
which is installed as the package ``mixednn._data``.  Files are located with
:func:`importlib.resources.files` when the package is installed, and fall
back to ``<source checkout>/data`` otherwise.  Provenance, licences and
column meanings are documented in ``data/README.md``.
"""

from __future__ import annotations

import difflib
import importlib.resources
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import pandas as pd

__all__ = ["load", "list_datasets", "available"]

DATA_PACKAGE = "mixednn._data"
# mixednn/datasets/loaders.py -> mixednn/datasets -> mixednn -> repo root.
# Equivalent to Path(mixednn.__file__).parent.parent / "data".
SOURCE_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "data"


# --------------------------------------------------------------------------
# post-processing helpers
# --------------------------------------------------------------------------
_DIAMOND_LEVELS = {
    "cut": ["Fair", "Good", "Very Good", "Premium", "Ideal"],
    "color": ["D", "E", "F", "G", "H", "I", "J"],
    "clarity": ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"],
}


def _diamonds_categoricals(df: pd.DataFrame) -> pd.DataFrame:
    for col, levels in _DIAMOND_LEVELS.items():
        df[col] = pd.Categorical(df[col], categories=levels, ordered=True)
    return df


# --------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Dataset:
    name: str
    filename: str
    rows: int
    columns: int
    description: str
    licence: str
    read_kwargs: Dict[str, Any] = field(default_factory=dict)
    postprocess: Optional[Callable[[pd.DataFrame], pd.DataFrame]] = None


_REGISTRY: Dict[str, _Dataset] = {
    d.name: d
    for d in (
        _Dataset(
            name="bikeshare",
            filename="bikeshare.csv",
            rows=8645,
            columns=15,
            description=(
                "Hourly Capital Bikeshare rental counts, Washington DC, 2011 "
                "(ISLP)"
            ),
            licence="CC BY 4.0 (UCI); ISLP package BSD-3-Clause",
            read_kwargs={"dtype": {"hr": "int64"}},
        ),
        _Dataset(
            name="auto",
            filename="auto.csv",
            rows=392,
            columns=9,
            description=(
                "Fuel economy and engine data for 392 cars, 1970-1982 (ISLP)"
            ),
            licence="CC BY 4.0 (UCI Auto MPG); ISLP package BSD-3-Clause",
            read_kwargs={"dtype": {"horsepower": "float64"}},
        ),
        _Dataset(
            name="penguins",
            filename="penguins.csv",
            rows=344,
            columns=8,
            description=(
                "Palmer Archipelago penguin body measurements, with missing "
                "values"
            ),
            licence="CC0-1.0 (data); palmerpenguins package MIT",
        ),
        _Dataset(
            name="diamonds",
            filename="diamonds.csv.gz",
            rows=53940,
            columns=10,
            description=(
                "Prices and attributes of 53,940 round-cut diamonds (ggplot2)"
            ),
            licence="MIT (ggplot2 / plotnine)",
            read_kwargs={"compression": "gzip"},
            postprocess=_diamonds_categoricals,
        ),
        _Dataset(
            name="wage_panel",
            filename="wage_panel.csv",
            rows=4360,
            columns=12,
            description=(
                "Balanced wage panel: 545 young men x 8 years, 1980-1987 "
                "(Vella & Verbeek 1998)"
            ),
            licence="NCSA (linearmodels); no separate data licence stated",
        ),
        _Dataset(
            name="gapminder",
            filename="gapminder.csv",
            rows=1704,
            columns=6,
            description=(
                "Life expectancy, population and GDP per capita: 142 "
                "countries x 12 years, 1952-2007"
            ),
            licence="CC0 (R gapminder); causaldata package MIT",
        ),
    )
}


def available() -> Tuple[str, ...]:
    """Return the names of the bundled data sets, in registry order.

    Returns
    -------
    tuple of str
        Valid values for the ``name`` argument of :func:`load`.

    Examples
    --------
    >>> from mixednn.datasets import available
    >>> "penguins" in available()
    True
    """
    return tuple(_REGISTRY)


# --------------------------------------------------------------------------
# file access
# --------------------------------------------------------------------------
def resource_path(filename: str) -> Any:
    """Where a bundled data file is: the installed package data, else the repository's data/."""
    """Return a readable handle (Traversable or Path) for ``filename``."""
    try:
        root = importlib.resources.files(DATA_PACKAGE)
    except (ModuleNotFoundError, TypeError):  # not installed / namespace
        root = None
    if root is not None:
        candidate = root.joinpath(filename)
        if candidate.is_file():
            return candidate
    candidate = SOURCE_DATA_DIR / filename
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(
        f"data file {filename!r} not found in package {DATA_PACKAGE!r} "
        f"nor in {SOURCE_DATA_DIR}; the mixednn installation looks incomplete"
    )


@lru_cache(maxsize=None)
def _read(name: str) -> pd.DataFrame:
    """Parse a data set once; callers must copy the cached frame."""
    spec = _REGISTRY[name]
    with resource_path(spec.filename).open("rb") as fh:
        df = pd.read_csv(fh, **spec.read_kwargs)
    if spec.postprocess is not None:
        df = spec.postprocess(df)
    return df


def _unknown_name_error(name: str) -> ValueError:
    valid = ", ".join(repr(n) for n in _REGISTRY)
    msg = f"unknown dataset {name!r}."
    close = difflib.get_close_matches(name.strip().lower(), list(_REGISTRY), n=1)
    if close:
        msg += f" Did you mean {close[0]!r}?"
    msg += f" Valid names are: {valid}."
    return ValueError(msg)


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------
def load(name: str) -> pd.DataFrame:
    """Load one of the example data sets bundled with mixednn.

    The file is parsed once per process and cached; every call returns a
    fresh deep copy, so modifying the result never affects later calls.

    Parameters
    ----------
    name : str
        Name of the data set (case-insensitive).  One of ``"bikeshare"``,
        ``"auto"``, ``"penguins"``, ``"diamonds"``, ``"wage_panel"`` and
        ``"gapminder"``; see :func:`list_datasets` for a summary and
        ``data/README.md`` for sources, licences and column meanings.

    Returns
    -------
    pandas.DataFrame
        The data set, with a default ``RangeIndex``.  Text columns use the
        default string dtype of the installed pandas version, except the
        ordered categoricals ``cut``, ``color`` and ``clarity`` of
        ``diamonds``.

    Raises
    ------
    TypeError
        If `name` is not a string.
    ValueError
        If `name` is not a known data set; the message lists the valid names
        and suggests the closest match.

    See Also
    --------
    list_datasets : Table of the available data sets.

    Examples
    --------
    >>> from mixednn import datasets
    >>> bikes = datasets.load("bikeshare")
    >>> bikes.shape
    (8645, 15)
    >>> int(bikes["hr"].min()), int(bikes["hr"].max())
    (0, 23)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    key = name.strip().lower()
    if key not in _REGISTRY:
        raise _unknown_name_error(name)
    return _read(key).copy(deep=True)


def list_datasets() -> pd.DataFrame:
    """Summarise the example data sets bundled with mixednn.

    Exposed as ``mixednn.datasets.list``.  No data file is read.

    Returns
    -------
    pandas.DataFrame
        One row per data set with columns ``name``, ``rows``, ``columns``,
        ``description`` (short) and ``licence``.

    See Also
    --------
    load : Load a data set by name.

    Examples
    --------
    >>> from mixednn import datasets
    >>> table = datasets.list()
    >>> table.columns.tolist()
    ['name', 'rows', 'columns', 'description', 'licence']
    >>> int(table.set_index("name").loc["gapminder", "rows"])
    1704
    """
    records = [
        {
            "name": d.name,
            "rows": d.rows,
            "columns": d.columns,
            "description": d.description,
            "licence": d.licence,
        }
        for d in _REGISTRY.values()
    ]
    return pd.DataFrame.from_records(
        records, columns=["name", "rows", "columns", "description", "licence"]
    )
