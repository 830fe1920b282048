"""Every warning and error class of mixednn, in one place at the bottom of the package.

Warnings are classes so that users can filter them (``warnings.simplefilter("ignore",
mn.BoundaryFitWarning)``); they are re-exported from the top-level package.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import warnings

__all__ = ["warn_at_caller", "BoundaryFitWarning", "InterpolationWarning", "DegenerateFitWarning",
           "KernelClippedWarning", "MLRefitWarning", "KernelMemoryError", "DataRemovedError",
           "FileFormatError"]


#: Files whose frames a warning skips on its way to the user's line: the package's own,
#: and the standard-library helpers its calls pass through (cached properties, contexts).
_SKIPPED = (os.path.dirname(os.path.abspath(__file__)) + os.sep,)
_HELPER_FILES = {os.path.abspath(functools.__file__), os.path.abspath(contextlib.__file__)}


def warn_at_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue a warning at the user's line: the first frame outside mixednn.

    A fixed ``stacklevel`` is right for one call path only (``fit``, ``predict`` and
    ``summary`` reach the same code at different depths); this walks the stack instead,
    as Python 3.12's ``skip_file_prefixes`` does.

    Parameters
    ----------
    message : str
        The warning text.
    category : type of Warning
        The warning class (one of this module's, so that users can filter it).
    """
    frame = inspect.currentframe()
    frame = frame.f_back if frame is not None else None  # the caller of this function
    level = 2
    while frame is not None:
        name = os.path.abspath(frame.f_code.co_filename)
        if not (name.startswith(_SKIPPED) or name in _HELPER_FILES):
            break
        frame = frame.f_back
        level += 1
    del frame
    warnings.warn(message, category, stacklevel=level)


class BoundaryFitWarning(UserWarning):
    """The likelihood is maximised at t = 0: training adds nothing beyond initialisation."""


class InterpolationWarning(UserWarning):
    """t ran to the upper end of the search: the fit interpolates the data."""


class DegenerateFitWarning(UserWarning):
    """The residual variance vanishes at the chosen t (an unbounded or nearly unbounded
    likelihood: duplicated rows with identical responses, or an interpolating fit)."""


class KernelClippedWarning(UserWarning):
    """Negative kernel eigenvalues were set to zero: larger than rounding
    (:func:`mixednn.spectral.clip_warning_threshold`), within the PSD tolerance."""


class MLRefitWarning(UserWarning):
    """Models were refitted by ML (instead of REML) to compare them, as R's ``anova`` does."""


class KernelMemoryError(MemoryError):
    """The dense n x n kernel (or an n x k eigenvector matrix) would not fit in memory."""


class DataRemovedError(RuntimeError):
    """The fit was saved with ``remove_data=True``: what was asked for needs the training
    rows, which were left out of the file (predictions at new rows still work)."""


class FileFormatError(ValueError):
    """A file is not a mixednn file, or was written in another file format version
    (:mod:`mixednn.persistence`)."""
