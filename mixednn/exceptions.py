"""Every warning and error class of mixednn, in one place at the bottom of the package.

Warnings are classes so that users can filter them (``warnings.simplefilter("ignore",
mn.BoundaryFitWarning)``); they are re-exported from the top-level package.
"""

from __future__ import annotations

__all__ = ["BoundaryFitWarning", "InterpolationWarning", "DegenerateFitWarning",
           "KernelClippedWarning", "MLRefitWarning", "KernelMemoryError"]


class BoundaryFitWarning(UserWarning):
    """The likelihood is maximised at t = 0: training adds nothing beyond initialisation."""


class InterpolationWarning(UserWarning):
    """t ran to the upper end of the search: the fit interpolates the data."""


class DegenerateFitWarning(UserWarning):
    """The residual variance vanishes at the chosen t (an unbounded or nearly unbounded
    likelihood: duplicated rows with identical responses, or an interpolating fit)."""


class KernelClippedWarning(UserWarning):
    """Tiny negative kernel eigenvalues (rounding) were set to zero."""


class MLRefitWarning(UserWarning):
    """Models were refitted by ML (instead of REML) to compare them, as R's ``anova`` does."""


class KernelMemoryError(MemoryError):
    """The dense n x n kernel (or an n x k eigenvector matrix) would not fit in memory."""
