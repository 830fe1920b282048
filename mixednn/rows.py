"""Rows in chunks: the streaming protocol shared by in-memory, CSV and dask data.

A *row source* has ``nobs`` and ``map_chunks(fn, combine=None, desc="", width=64)``:
it applies ``fn`` to every :class:`RowChunk` and either tree-reduces the results with
``combine`` or returns them as a list in row order.  :class:`ArraySource` serves
in-memory rows; :mod:`mixednn.partitions` serves CSV files and dask frames.

Also here: the seeded, chunking-independent row keys from which landmark pools are
drawn (:func:`row_keys`, :func:`smallest_keys`, :func:`pool_size`), so that an
in-memory fit, a CSV stream and a dask fit choose the same landmark rows.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from .exceptions import DataRemovedError

__all__ = ["PROGRESS", "LANDMARK_RULES", "RowChunk", "ArraySource", "TreeReducer",
           "chunk_rows", "show_progress", "pool_size", "row_keys", "smallest_keys"]

#: The landmark rules of Nystrom features (:func:`mixednn.features.select_landmarks`).
LANDMARK_RULES = ("kmeans++", "uniform", "leverage", "rpcholesky")

#: Progress bars on long passes: ``None`` (auto: passes over at least 200,000 rows or
#: 8 partitions), ``True`` or ``False``.
PROGRESS: bool | None = None

_TARGET_CHUNK_BYTES = 64 * 2**20


def chunk_rows(width: int) -> int:
    """Rows per chunk so that a chunk's n x width float64 block is about 64 MiB."""
    return int(max(256, min(65536, _TARGET_CHUNK_BYTES // (8 * max(width, 1)))))


def show_progress(n_rows: int = 0, n_parts: int = 0) -> bool:
    if PROGRESS is not None:
        return bool(PROGRESS)
    return n_rows >= 200_000 or n_parts >= 8


def pool_size(m: int, rule: str, n: int) -> int:
    """Number of candidate rows from which ``rule`` picks m landmarks (at most n)."""
    if rule not in LANDMARK_RULES:
        raise ValueError(f"landmarks must be one of {LANDMARK_RULES}, got {rule!r}")
    return int(min(n, m if rule == "uniform" else max(20 * m, 2000)))


def row_keys(Z: np.ndarray, seed: int) -> np.ndarray:
    """Seeded 64-bit hash of each row's values: random keys that do not depend on chunking."""
    frame = pd.DataFrame(np.ascontiguousarray(Z, dtype=float) + 0.0)  # + 0.0: -0.0 -> 0.0
    h = pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64)
    salt = np.uint64(int(hashlib.sha256(f"mixednn-landmarks-{int(seed)}".encode()).hexdigest()[:16], 16))
    with np.errstate(over="ignore"):  # splitmix64 finaliser of (hash + salt): wraps mod 2^64
        x = h + salt
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def smallest_keys(keys: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k rows with the smallest keys, sorted by (key, row values) for determinism."""
    if keys.shape[0] > k:
        idx = np.argpartition(keys, k - 1)[:k]
        keys, rows = keys[idx], rows[idx]
    order = np.lexsort(tuple(rows.T[::-1]) + (keys,)) if rows.shape[0] else np.arange(0)
    return keys[order], rows[order]


@dataclass
class RowChunk:
    """A block of complete rows: response, fixed-effects design, raw network inputs, offset
    (and precision weights, ``Var(e_i) = s2 / w_i``, when the fit has them)."""

    y: np.ndarray
    X: np.ndarray
    Z: np.ndarray | None
    offset: np.ndarray
    labels: Any = None
    n_dropped: int = 0  # incomplete rows of the partition left out
    weights: np.ndarray | None = None

    @property
    def nrows(self) -> int:
        return int(self.y.shape[0])


class ArraySource:
    """In-memory rows served in chunks (the in-memory path of the streaming protocol).

    A row source has ``nobs`` and ``map_chunks(fn, combine=None, desc="")``: apply
    ``fn`` to every :class:`RowChunk` and either tree-reduce the results with
    ``combine`` or return them as a list in row order.
    """

    #: precision weights of the rows (None: unweighted); a class default, so that sources
    #: pickled before weights existed load unchanged
    weights: np.ndarray | None = None

    def __init__(self, y: np.ndarray, X: np.ndarray, Z: np.ndarray | None, offset: np.ndarray,
                 chunk_rows: int | None = None, weights: np.ndarray | None = None):
        self.y, self.X, self.Z, self.offset = y, X, Z, offset
        if weights is not None:
            self.weights = np.asarray(weights, dtype=float)
        self.nobs = int(y.shape[0])
        self.chunk_rows = chunk_rows
        self.rows_removed = False

    def without_rows(self, keep_inputs: bool) -> "ArraySource":
        """A copy without the training rows (a fit saved with ``remove_data=True``).

        With ``keep_inputs`` the network inputs stay, and chunks serve them with NaN in
        place of the response, design and offset (enough for passes that map the inputs
        alone, such as the exact cross-kernel of new rows); without, every pass raises
        :class:`~mixednn.exceptions.DataRemovedError`.  Precision weights stay: the
        training side of a cross-kernel carries them.
        """
        new = ArraySource.__new__(ArraySource)
        new.__dict__.update(self.__dict__)
        new.y = new.X = new.offset = None
        new.Z = self.Z if keep_inputs else None
        new.n_exog = int(self.X.shape[1]) if self.X is not None else 0
        new.rows_removed = True
        return new

    def chunks(self, rows: int) -> Iterable[RowChunk]:
        if self.__dict__.get("rows_removed", False):
            yield from self._input_chunks(rows)
            return
        for i in range(0, self.nobs, rows):
            sl = slice(i, min(i + rows, self.nobs))
            yield RowChunk(self.y[sl], self.X[sl], None if self.Z is None else self.Z[sl],
                           self.offset[sl], weights=self._weight_rows(sl))

    def _input_chunks(self, rows: int) -> Iterable[RowChunk]:
        if self.Z is None:
            raise DataRemovedError(
                "the training rows were removed when this fit was saved with remove_data=True, "
                "and this needs them; refit the model on the data or save it without "
                "remove_data (predictions at new rows still work)")
        for i in range(0, self.nobs, rows):
            k = min(i + rows, self.nobs) - i
            yield RowChunk(np.full(k, np.nan), np.full((k, self.n_exog), np.nan),
                           self.Z[i:i + k], np.full(k, np.nan),
                           weights=self._weight_rows(slice(i, i + k)))

    def _weight_rows(self, sl: slice) -> np.ndarray | None:
        return None if self.weights is None else self.weights[sl]

    def map_chunks(self, fn: Callable[[RowChunk], Any], combine: Callable[[Any, Any], Any] | None = None,
                   desc: str = "", width: int = 64) -> Any:
        rows = self.chunk_rows or chunk_rows(width)
        it: Iterable[RowChunk] = self.chunks(rows)
        nchunks = -(-self.nobs // rows)
        if show_progress(self.nobs) and nchunks > 1:
            from tqdm.auto import tqdm

            it = tqdm(it, total=nchunks, desc=desc or "rows", unit="chunk", file=sys.stderr)
        if combine is None:
            return [fn(c) for c in it]
        red = TreeReducer(combine)
        for c in it:
            red.push(fn(c))
        return red.result()


class TreeReducer:
    """Streaming pairwise (tree) reduction: O(log k) partial results held at once.

    Sums of k chunk statistics are combined in a balanced binary tree (rounding
    error O(log k) rather than O(k)), without keeping all k of them.
    """

    def __init__(self, combine: Callable[[Any, Any], Any]):
        self.combine = combine
        self.stack: list[tuple[int, Any]] = []

    def push(self, item: Any) -> None:
        level = 0
        while self.stack and self.stack[-1][0] == level:
            _, prev = self.stack.pop()
            item = self.combine(prev, item)
            level += 1
        self.stack.append((level, item))

    def result(self) -> Any:
        if not self.stack:
            raise ValueError("no rows to reduce")
        out = self.stack.pop()[1]
        while self.stack:
            out = self.combine(self.stack.pop()[1], out)
        return out
