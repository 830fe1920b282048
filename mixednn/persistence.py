"""Saving and loading fits: a small versioned file around Python's pickle.

``res.save(path)`` (:meth:`mixednn.MixedLMNTKResults.save`) writes, and
:func:`load` reads, a file laid out as

1. the magic line ``%MIXEDNN-FIT\\n`` (identifies the file);
2. one line of JSON, the *header*: ``{"format": <file format version>, "mixednn":
   <package version that wrote it>, "kind": <class of the object>, "remove_data":
   <bool>, "python": <version>}``;
3. the pickled object (the model or the results object, with everything it refers to).

The *file format version* (:data:`FORMAT_VERSION`) changes whenever the meaning of the
pickled objects changes incompatibly; :func:`load` refuses a file of another format
version with a message naming both versions (:class:`mixednn.exceptions.FileFormatError`),
instead of failing somewhere inside the unpickling.

What is picklable
-----------------
Every model and results object is: patsy design infos (which patsy refuses to pickle)
are rebuilt on loading from the formulas and the formula columns of the training frame
(:mod:`mixednn.formula`, :mod:`mixednn.streaming`), a CSV source keeps its path and is
re-opened on demand, and the functions mixednn stores are module-level functions or
bound methods.  A function that *the user* passes (``kernel=lambda Z1, Z2: ...``, a
feature function) is wrapped in :class:`UserFunction`: a module-level function is
stored by reference (as pickle does); a lambda or a function defined inside another
function is stored by value with ``cloudpickle`` when it is installed (mixednn does not
depend on it), and otherwise saving fails with an error that names the option and the
fix (define the function at module level).

``remove_data=True``
--------------------
:func:`save` then pickles with a pickler that asks every object whose class has a
method ``saved_without_rows()`` for the object to save in its place: a copy without the
training rows it holds (the model's design, the row source of a feature-space basis, a
precomputed kernel matrix, a finite network's cached Jacobian, the results' in-sample
values), or the object itself when it holds none (which also ends the substitution).
Every reference to the object is saved as the one substitute.  What is kept is listed
in :meth:`mixednn.MixedLMNTKResults.save`.  Plain ``pickle.dumps`` (and ``copy``) never
call ``saved_without_rows``.

Security: loading a file unpickles it, which can run code; load only files you trust.

Examples
--------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "obj.mixednn")
>>> save({"a": 1}, path)
>>> load(path)
{'a': 1}
>>> read_header(path)["format"] == FORMAT_VERSION
True
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import platform
import sys
import types
from typing import Any, Callable

from .exceptions import FileFormatError

__all__ = ["FORMAT_VERSION", "MAGIC", "save", "load", "read_header", "UserFunction",
           "package_version"]

#: Version of the file format (header and pickled objects) written by :func:`save`.
FORMAT_VERSION = 1

#: First bytes of every file written by :func:`save`.
MAGIC = b"%MIXEDNN-FIT\n"

#: Longest header line that :func:`load` reads (bytes).
_MAX_HEADER = 1 << 16


def package_version() -> str:
    """The installed mixednn version (``"unknown"`` when the package metadata is absent)."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return "unknown"
    try:
        return version("mixednn")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "unknown"


def _same(obj: Any) -> Any:
    return obj


class _PicklerWithoutRows(pickle.Pickler):
    """Saves, in place of every object with a ``saved_without_rows()`` method, the
    object that method returns (see the module notes).  A substitute should not refer
    back to its original (rebind bound methods to the copy)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.substitutes: dict[int, tuple[Any, Any]] = {}  # id -> (original, substitute)

    def reducer_override(self, obj: Any) -> Any:
        method = getattr(type(obj), "saved_without_rows", None)
        if method is None or isinstance(obj, type):
            return NotImplemented
        known = self.substitutes.get(id(obj))
        substitute = known[1] if known is not None else method(obj)
        self.substitutes[id(obj)] = (obj, substitute)  # keeps obj alive: ids stay unique
        if substitute is obj:
            return NotImplemented
        return (_same, (substitute,))


# ============================================================================ the file

def save(obj: Any, path: str | os.PathLike, *, remove_data: bool = False) -> None:
    """Write ``obj`` to ``path``: the magic line, the JSON header, then the pickle.

    Parameters
    ----------
    obj : object
        What to save (a :class:`~mixednn.MixedLMNTK` or its results).
    path : str or os.PathLike
        The file (overwritten).  Written to a temporary file first and renamed, so a
        failed save leaves no partial file behind.
    remove_data : bool
        Leave the training rows out: objects are replaced by what their
        ``saved_without_rows()`` returns (see the module notes).

    Raises
    ------
    pickle.PicklingError
        Something in ``obj`` cannot be pickled (the message names the option that
        holds it and the fix).
    """
    path = os.fspath(path)
    header = {"format": FORMAT_VERSION, "mixednn": package_version(),
              "kind": type(obj).__name__, "remove_data": bool(remove_data),
              "python": platform.python_version()}
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC)
            f.write(json.dumps(header, sort_keys=True).encode("utf-8") + b"\n")
            if remove_data:
                _PicklerWithoutRows(f, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
            else:
                pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _read_header(f: Any, path: str) -> dict:
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        raise FileFormatError(f"{path} is not a mixednn file (it does not start with "
                              f"{MAGIC!r}); fits are saved with res.save(path) and read with "
                              "mixednn.load(path)")
    line = f.readline(_MAX_HEADER)
    try:
        header = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FileFormatError(f"{path}: the header line of the mixednn file is damaged") from None
    if not isinstance(header, dict) or "format" not in header:
        raise FileFormatError(f"{path}: the header of the mixednn file has no format version")
    return header


def read_header(path: str | os.PathLike) -> dict:
    """The header of a file written by :func:`save` (nothing is unpickled).

    Returns
    -------
    dict
        ``format`` (file format version), ``mixednn`` (package version that wrote it),
        ``kind``, ``remove_data`` and ``python``.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        return _read_header(f, path)


def load(path: str | os.PathLike) -> Any:
    """Read a model or results object saved with ``save(path)``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    object
        What was saved (usually a :class:`~mixednn.MixedLMNTKResults`).

    Raises
    ------
    mixednn.exceptions.FileFormatError
        Not a mixednn file, or a file of another file format version than this mixednn
        reads (the message names both versions and the mixednn version that wrote it).

    Notes
    -----
    Loading unpickles the file, which can run code: load only files you trust.
    Functions the fit refers to by reference (a module-level ``kernel=`` function) must
    be importable where the file is loaded.

    Examples
    --------
    >>> import os, tempfile, numpy as np, mixednn as mn
    >>> rng = np.random.default_rng(0); Z = rng.normal(size=(60, 2))
    >>> y = np.sin(2 * Z[:, 0]) + 0.3 * rng.normal(size=60)
    >>> res = mn.MixedLMNTK(y, np.ones((60, 1)), Z, network=mn.MLP(depth=1)).fit()
    >>> path = os.path.join(tempfile.mkdtemp(), "fit.mixednn")
    >>> res.save(path)
    >>> back = mn.load(path)
    >>> bool((back.predict(exog=np.ones((3, 1)), ntk_inputs=Z[:3])
    ...       == res.predict(exog=np.ones((3, 1)), ntk_inputs=Z[:3])).all())
    True
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        header = _read_header(f, path)
        fmt = header.get("format")
        if fmt != FORMAT_VERSION:
            raise FileFormatError(
                f"{path} was written in mixednn file format version {fmt} (by mixednn "
                f"{header.get('mixednn', 'unknown')}), but this mixednn ({package_version()}) "
                f"reads file format version {FORMAT_VERSION} only; load it with the mixednn "
                f"version that wrote it (and refit, or save the fit again with this version)")
        try:
            return pickle.load(f)
        except (AttributeError, ModuleNotFoundError) as exc:
            raise type(exc)(
                f"{path}: {exc}. The saved fit refers to a function or class by its name "
                "(e.g. a module-level kernel= function); it must be importable where the file "
                "is loaded") from exc


# ============================================================================ user functions

def _importable(fn: Any) -> bool:
    """Whether pickle can store ``fn`` by reference (module attribute, same object)."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return False
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return obj is fn


def _cloudpickle() -> Any:
    try:
        return importlib.import_module("cloudpickle")
    except ImportError:
        return None


def _restore_function(payload: bytes, option: str, example: str) -> "UserFunction":
    return UserFunction(pickle.loads(payload), option, example)


class UserFunction:
    """A function the user passed (``kernel=``, a feature function), stored on a fit.

    Calls go straight to the function.  Pickling stores a module-level function by
    reference; a lambda, a function defined inside another function or one defined in
    ``__main__`` is stored by value with ``cloudpickle`` when it is installed.  Without
    cloudpickle such a function cannot be saved, and the error names the option and
    the fix.

    Parameters
    ----------
    fn : callable
        The user's function.
    option : str
        Where the user passed it, for the error message (``"kernel="``).
    example : str
        A module-level definition to suggest (``"def my_kernel(Z1, Z2): ..."``).

    Examples
    --------
    >>> import pickle
    >>> f = UserFunction(abs, "kernel=", "def my_kernel(Z1, Z2): ...")
    >>> pickle.loads(pickle.dumps(f))(-2)
    2
    """

    def __init__(self, fn: Callable[..., Any], option: str, example: str):
        if isinstance(fn, UserFunction):
            fn = fn.fn
        self.fn = fn
        self.option = option
        self.example = example
        # read by code that names the function (e.g. the summary's kernel line)
        self.__qualname__ = getattr(fn, "__qualname__", None) or type(fn).__name__
        self.__name__ = getattr(fn, "__name__", None) or type(fn).__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    @property
    def name(self) -> str:
        return getattr(self.fn, "__qualname__", None) or type(self.fn).__name__

    def __reduce__(self) -> tuple:
        fn = self.fn
        if isinstance(fn, (types.FunctionType, types.BuiltinFunctionType)) and _importable(fn) \
                and getattr(fn, "__module__", None) != "__main__":
            return (UserFunction, (fn, self.option, self.example))
        cp = _cloudpickle()
        if cp is not None:
            return (_restore_function, (cp.dumps(fn), self.option, self.example))
        try:  # a callable object, a partial, a __main__ function: pickle decides
            payload = pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise pickle.PicklingError(
                f"cannot save this fit: the function passed as {self.option} ({self.name}) "
                "is a lambda or a function defined inside another function, which Python's "
                f"standard pickle cannot store ({exc}). Define it at module level "
                f"({self.example}) and pass {self.option}<that function>, or install "
                "cloudpickle (pip install cloudpickle), which mixednn then uses to store "
                "such functions") from None
        return (_restore_function, (payload, self.option, self.example))

    def __repr__(self) -> str:
        return f"UserFunction({self.name}, option={self.option!r})"
