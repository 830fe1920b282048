"""Tests for the bundled example data sets (mixednn.datasets)."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.api import types as ptypes

from mixednn import datasets
from mixednn.datasets import loaders

EXPECTED_SHAPES = {
    "bikeshare": (8645, 15),
    "auto": (392, 9),
    "penguins": (344, 8),
    "diamonds": (53940, 10),
    "wage_panel": (4360, 12),
    "gapminder": (1704, 6),
}


def _is_text(s: pd.Series) -> bool:
    # object (pandas < 3) or the default ``str`` dtype (pandas >= 3)
    return ptypes.is_object_dtype(s) or ptypes.is_string_dtype(s)


@pytest.mark.parametrize("name,shape", sorted(EXPECTED_SHAPES.items()))
def test_shape_and_index(name, shape):
    df = datasets.load(name)
    assert isinstance(df, pd.DataFrame)
    assert df.shape == shape
    assert isinstance(df.index, pd.RangeIndex)
    assert df.columns.is_unique


def test_list_matches_registry_and_files():
    table = datasets.list()
    assert list(table.columns) == ["name", "rows", "columns", "description", "licence"]
    assert sorted(table["name"]) == sorted(EXPECTED_SHAPES)
    for row in table.itertuples(index=False):
        assert (row.rows, row.columns) == EXPECTED_SHAPES[row.name]
        assert row.description and row.licence
    assert datasets.list is datasets.list_datasets
    assert set(datasets.available()) == set(EXPECTED_SHAPES)


def test_star_import_does_not_shadow_builtin_list():
    ns: dict = {}
    exec("from mixednn.datasets import *", ns)
    assert "list" not in ns
    assert {"load", "list_datasets"} <= set(ns)


def test_bikeshare_dtypes():
    df = datasets.load("bikeshare")
    assert df["hr"].dtype == "int64"
    assert sorted(df["hr"].unique()) == list(range(24))
    for col in ["season", "day", "holiday", "weekday", "workingday",
                "casual", "registered", "bikers"]:
        assert ptypes.is_integer_dtype(df[col]), col
    for col in ["temp", "atemp", "hum", "windspeed"]:
        assert ptypes.is_float_dtype(df[col]), col
    assert _is_text(df["mnth"]) and _is_text(df["weathersit"])
    assert df["mnth"].nunique() == 12 and df["mnth"].iloc[0] == "Jan"
    counts = df["weathersit"].value_counts()
    assert counts.get("heavy rain/snow") == 1
    assert (df["casual"] + df["registered"] == df["bikers"]).all()
    assert not df.isna().any().any()


def test_auto_complete_and_numeric():
    df = datasets.load("auto")
    assert ptypes.is_float_dtype(df["horsepower"])
    assert not df.isna().any().any()
    assert _is_text(df["name"])
    assert df["horsepower"].between(40, 250).all()


def test_penguins_keeps_missing():
    df = datasets.load("penguins")
    assert df.isna().any(axis=1).sum() == 11
    assert df["sex"].isna().sum() == 11
    assert df["body_mass_g"].isna().sum() == 2
    assert set(df["species"]) == {"Adelie", "Chinstrap", "Gentoo"}


def test_diamonds_ordered_categoricals():
    df = datasets.load("diamonds")
    assert list(df["cut"].cat.categories) == ["Fair", "Good", "Very Good", "Premium", "Ideal"]
    assert list(df["color"].cat.categories) == list("DEFGHIJ")
    assert list(df["clarity"].cat.categories)[0] == "I1"
    assert list(df["clarity"].cat.categories)[-1] == "IF"
    for col in ["cut", "color", "clarity"]:
        assert df[col].cat.ordered
        assert not df[col].isna().any()
    assert ptypes.is_integer_dtype(df["price"])


def test_wage_panel_balanced():
    df = datasets.load("wage_panel")
    assert df["nr"].nunique() == 545
    assert sorted(df["year"].unique()) == list(range(1980, 1988))
    assert (df.groupby("nr").size() == 8).all()
    assert not df.duplicated(["nr", "year"]).any()
    assert ptypes.is_float_dtype(df["lwage"])


def test_gapminder_balanced():
    df = datasets.load("gapminder")
    assert df["country"].nunique() == 142
    assert sorted(df["year"].unique()) == list(range(1952, 2008, 5))
    assert (df.groupby("country").size() == 12).all()
    assert list(df.columns) == ["country", "continent", "year", "lifeExp", "pop", "gdpPercap"]


@pytest.mark.parametrize("name", ["pengiuns", "Diamond", "wage panel"])
def test_unknown_name_suggests(name):
    with pytest.raises(ValueError) as exc:
        datasets.load(name)
    msg = str(exc.value)
    assert "Did you mean" in msg
    for valid in EXPECTED_SHAPES:
        assert valid in msg


def test_unknown_name_without_close_match():
    with pytest.raises(ValueError, match="Valid names are") as exc:
        datasets.load("zzzzzz")
    assert "Did you mean" not in str(exc.value)


def test_non_string_name():
    with pytest.raises(TypeError):
        datasets.load(3)  # type: ignore[arg-type]


def test_case_insensitive():
    assert datasets.load(" Gapminder ").shape == EXPECTED_SHAPES["gapminder"]


@pytest.mark.parametrize("name", sorted(EXPECTED_SHAPES))
def test_loads_are_independent(name):
    first = datasets.load(name)
    reference = datasets.load(name)
    # mutate values, a column, the index and the column labels
    first.iloc[:, 0] = first.iloc[:, 0].iloc[::-1].to_numpy()
    first["__new__"] = 1
    first = first.iloc[3:]
    first.columns = [f"c{i}" for i in range(first.shape[1])]
    again = datasets.load(name)
    pd.testing.assert_frame_equal(again, reference)
    assert again is not reference


@pytest.mark.skipif(
    not (loaders.SOURCE_DATA_DIR / "auto.csv").is_file(),
    reason="not running from a source checkout",
)
def test_source_checkout_fallback(monkeypatch):
    # Pretend mixednn._data is not installed: the loader must use data/.
    monkeypatch.setattr(loaders, "DATA_PACKAGE", "mixednn._no_such_package")
    path = loaders.resource_path("auto.csv")
    assert path == loaders.SOURCE_DATA_DIR / "auto.csv"
