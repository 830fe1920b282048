"""Partitioned data: CSV files read in chunks and dask data frames, and maps over them.

This module owns how streamed data are *read*: :class:`CSVSource` (a CSV file
read with ``pandas.read_csv(chunksize=...)``, never whole), the recognition of
streamed data (:func:`is_streamed`, :func:`is_dask_frame`), and the maps over
partitions followed by a tree reduction -- over raw data frames
(:func:`reduce_frames`) and over the rows of a design (the row sources
:class:`CSVRowSource` and :class:`DaskRowSource`, see :mod:`mixednn.rows` for the
protocol).  What a partition's rows *mean* (one patsy design for all partitions,
the passes of a streamed fit) is :mod:`mixednn.streaming`.

With dask, each map is one task graph (``dask.compute``), so it runs on whatever
scheduler is active -- a ``dask.distributed`` ``Client`` if the user has one (tests
use a ``LocalCluster``), the threaded scheduler otherwise.  A CSV is read chunk by
chunk in this process, with a tqdm bar on long passes.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from .rows import RowChunk, TreeReducer, show_progress

__all__ = ["CSVSource", "describe_row", "is_streamed", "is_dask_frame", "reduce_frames", "CSVRowSource",
           "DaskRowSource"]


# ============================================================================ inputs

class CSVSource:
    """A CSV file read in chunks, never whole: pass it as ``data=`` to ``from_formula``.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    chunksize : int
        Rows per chunk (``pandas.read_csv(chunksize=...)``).
    **read_csv_kwargs
        Passed to :func:`pandas.read_csv` (``sep``, ``dtype``, ``usecols``, ...).

    Examples
    --------
    >>> import os, tempfile, numpy as np, pandas as pd
    >>> path = os.path.join(tempfile.mkdtemp(), "d.csv")
    >>> pd.DataFrame({"y": np.arange(5.0), "x": np.arange(5.0)}).to_csv(path, index=False)
    >>> src = CSVSource(path, chunksize=2)
    >>> [len(f) for f in src.frames()]
    [2, 2, 1]
    >>> list(src.columns)
    ['y', 'x']
    """

    def __init__(self, path: str | os.PathLike, *, chunksize: int = 100_000, **read_csv_kwargs: Any):
        if not os.path.exists(path):
            raise FileNotFoundError(f"CSV file {path!s} not found")
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise ValueError(f"CSV file {path!s} is empty (no header line, no rows)")
        if isinstance(chunksize, bool) or not isinstance(chunksize, (int, float)) \
                or int(chunksize) != chunksize or chunksize < 1:
            raise ValueError(f"chunksize must be a positive integer, got {chunksize!r}")
        if "chunksize" in read_csv_kwargs or "iterator" in read_csv_kwargs:
            raise ValueError("pass chunksize= to CSVSource itself")
        self.path = os.fspath(path)
        self.chunksize = int(chunksize)
        self.kwargs = read_csv_kwargs

    def __getstate__(self) -> dict:
        """The state: the file's path (made absolute, so that a saved fit finds the file
        from another working directory), never its rows; the file is re-opened on demand."""
        state = dict(self.__dict__)
        state["path"] = os.path.abspath(self.path)
        return state

    @property
    def columns(self) -> pd.Index:
        with self._read_errors():
            return pd.read_csv(self.path, nrows=0, **self.kwargs).columns

    def head(self, n: int = 100) -> pd.DataFrame:
        """The first ``n`` rows (``attrs["source"]`` says where rows are in the file)."""
        with self._read_errors():
            frame = pd.read_csv(self.path, nrows=n, **self.kwargs)
        frame.attrs["source"] = self._origin()
        return frame

    def frames(self) -> Iterator[pd.DataFrame]:
        """The chunks, in file order (a fresh reader each call); each chunk's
        ``attrs["source"]`` says where its rows are in the file (:func:`describe_row`)."""
        origin = self._origin()
        with self._read_errors():
            with pd.read_csv(self.path, chunksize=self.chunksize, **self.kwargs) as reader:
                for frame in reader:
                    frame.attrs["source"] = origin
                    yield frame

    def _origin(self) -> dict:
        """The file, and the line of the row labelled 0 when the labels are row numbers
        (a header line and no ``skiprows``, ``index_col``, ...): None otherwise."""
        plain = not set(self.kwargs) & {"header", "names", "skiprows", "index_col", "comment",
                                        "skip_blank_lines", "skipfooter", "nrows"}
        return {"path": self.path, "first_line": 2 if plain else None}

    @contextlib.contextmanager
    def _read_errors(self) -> Iterator[None]:
        """pandas' read errors, as errors that name the file, the line and the fix."""
        try:
            yield
        except pd.errors.EmptyDataError:
            raise ValueError(f"CSV file {self.path} is empty: no header line with column names, "
                             "and no rows") from None
        except pd.errors.ParserError as exc:
            msg = " ".join(str(exc).split())
            raise ValueError(
                f"CSV file {self.path} has a malformed row: {msg}. Fix that line (a row with "
                "more fields than the header: an unquoted separator or a stray field), or pass "
                "on_bad_lines='skip' to CSVSource to leave such rows out") from None

    def __repr__(self) -> str:
        return f"CSVSource({self.path!r}, chunksize={self.chunksize})"


def describe_row(frame: pd.DataFrame, label: Any) -> str:
    """Where a row of a partition is, in words: ``"row 1203"``, and for a chunk of a
    :class:`CSVSource`, ``"row 1203 (line 1205 of big.csv)"``.

    Parameters
    ----------
    frame : pandas.DataFrame
        The partition (a CSV chunk carries its origin in ``attrs["source"]``).
    label : object
        The row's label in the partition's index.

    Returns
    -------
    str
    """
    origin = frame.attrs.get("source") if hasattr(frame, "attrs") else None
    if not origin:
        return f"row {label!r}"
    first = origin.get("first_line")
    if first is not None and isinstance(label, (int, np.integer)):
        return f"row {label} (line {int(label) + first} of {origin['path']})"
    return f"row {label!r} of {origin['path']}"


def is_dask_frame(data: Any) -> bool:
    """Whether ``data`` is a dask data frame (recognised without importing dask)."""
    mod = type(data).__module__ or ""
    return mod.startswith("dask") and hasattr(data, "to_delayed") and hasattr(data, "npartitions")


def is_streamed(data: Any) -> bool:
    """Whether ``data`` is read in chunks (a dask data frame or a :class:`CSVSource`)."""
    return isinstance(data, CSVSource) or is_dask_frame(data)


# ============================================================================ maps over partitions

def _run_part(frame: pd.DataFrame, recipe: Any, fn: Callable) -> Any:
    return fn(recipe.chunk(frame))


def _identity(x: Any) -> Any:
    return x


def _call1(f: Callable, a: Any) -> Any:
    return f(a)


def _call2(f: Callable, a: Any, b: Any) -> Any:
    return f(a, b)


def _compute(obj: Any, nparts: int) -> Any:
    import dask

    if not show_progress(n_parts=nparts):
        return dask.compute(obj)[0]
    try:
        from distributed import default_client, progress

        client = default_client()
    except (ImportError, ValueError):
        client = None
    if client is not None:
        fut = client.compute(obj)
        progress(fut)
        return client.gather(fut)
    from dask.diagnostics import ProgressBar

    with ProgressBar():
        return dask.compute(obj)[0]


def _tree_graph(outs: list, combine: Callable) -> Any:
    """Pairwise combination of delayed results: a dask graph of depth log2(len(outs))."""
    import dask

    comb = dask.delayed(_identity)(combine)
    while len(outs) > 1:
        outs = [dask.delayed(_call2)(comb, outs[i], outs[i + 1]) if i + 1 < len(outs)
                else outs[i] for i in range(0, len(outs), 2)]
    return outs[0]


def reduce_frames(data: Any, fn: Callable[[pd.DataFrame], Any], combine: Callable,
                  desc: str) -> Any:
    """``fn`` on every raw partition of ``data`` (before any design), tree-reduced by ``combine``.

    Parameters
    ----------
    data : dask.dataframe.DataFrame or CSVSource
    fn : callable
        Maps one partition (a pandas data frame) to a partial result; picklable for dask.
    combine : callable
        Combines two partial results (associative).
    desc : str
        Name of the pass (for progress bars).
    """
    if is_dask_frame(data):
        import dask

        parts = data.to_delayed()
        fnd = dask.delayed(_identity)(fn)
        outs = [dask.delayed(_call1)(fnd, p) for p in parts]
        return _compute(_tree_graph(outs, combine), len(parts))
    red = TreeReducer(combine)
    for f in data.frames():
        red.push(fn(f))
    return red.result()


# ============================================================================ row sources

class CSVRowSource:
    """Row source over a :class:`CSVSource`: chunks in file order, in this process.

    ``recipe`` turns one raw partition into its rows: ``recipe.chunk(frame)`` is a
    :class:`~mixednn.rows.RowChunk` (a :class:`mixednn.streaming.DesignRecipe`).
    """

    def __init__(self, csv: CSVSource, recipe: Any, nobs: int = 0):
        self.csv = csv
        self.recipe = recipe
        self.nobs = nobs

    def map_chunks(self, fn: Callable[[RowChunk], Any], combine: Callable | None = None,
                   desc: str = "", width: int = 64) -> Any:
        it: Any = self.csv.frames()
        if show_progress(self.nobs):
            from tqdm.auto import tqdm

            total = -(-self.nobs // self.csv.chunksize) if self.nobs else None
            it = tqdm(it, total=total, desc=desc or "CSV", unit="chunk", file=sys.stderr)
        if combine is None:
            return [_run_part(f, self.recipe, fn) for f in it]
        red = TreeReducer(combine)
        for f in it:
            red.push(_run_part(f, self.recipe, fn))
        return red.result()


class DaskRowSource:
    """Row source over a dask data frame: one task per partition, tree reduction.

    Computed with ``dask.compute``, i.e. on the active scheduler (a
    ``dask.distributed`` client when one exists).  ``recipe`` as for
    :class:`CSVRowSource` (picklable: it is shipped to the workers once).
    """

    def __init__(self, ddf: Any, recipe: Any, nobs: int = 0):
        self.ddf = ddf
        self.recipe = recipe
        self.nobs = nobs

    def saved_without_rows(self) -> "DaskRowSource":
        """Refused: a save with ``remove_data=True`` cannot leave the rows out of a dask
        frame's task graph (:mod:`mixednn.persistence`)."""
        raise pickle.PicklingError(
                "a fit on a dask data frame cannot be saved with remove_data=True: its task "
                "graph may hold the data themselves (dd.from_pandas); save it without "
                "remove_data, or fit from a CSV file (mixednn.CSVSource), whose saved fit keeps "
                "only the path")

    def map_chunks(self, fn: Callable[[RowChunk], Any], combine: Callable | None = None,
                   desc: str = "", width: int = 64) -> Any:
        import dask

        parts = self.ddf.to_delayed()
        rec = dask.delayed(_identity, pure=True)(self.recipe)  # shipped once, not per task
        fnd = dask.delayed(_identity)(fn)
        outs = [dask.delayed(_run_part)(p, rec, fnd) for p in parts]
        if combine is not None:
            return _compute(_tree_graph(outs, combine), len(parts))
        return list(_compute(outs, len(parts)))
