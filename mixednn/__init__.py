"""mixednn: neural-network training as a random effect.

Gradient-flow training of an over-parameterised network is the posterior mean
(BLUP) of a linear mixed model with covariance ``s2 * exp(t K)``, ``K`` the
network's neural tangent kernel: training time ``t`` is a variance component,
estimated by REML and tested at ``t = 0``.

Main entry points: :class:`MixedLMNTK` (``from_formula`` for R-style formulas),
:class:`MLP` (architecture spec with its analytic NTK), :mod:`mixednn.datasets`.
Attributes load lazily so that ``import mixednn`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "MixedLMNTK": ("mixednn.model", "MixedLMNTK"),
    "MixedLMNTKResults": ("mixednn.results", "MixedLMNTKResults"),
    "GroupedResults": ("mixednn.groupresults", "GroupedResults"),
    "MLP": ("mixednn.kernels", "MLP"),
    "KernelMemoryError": ("mixednn.exceptions", "KernelMemoryError"),
    "BoundaryFitWarning": ("mixednn.exceptions", "BoundaryFitWarning"),
    "InterpolationWarning": ("mixednn.exceptions", "InterpolationWarning"),
    "KernelClippedWarning": ("mixednn.exceptions", "KernelClippedWarning"),
    "DegenerateFitWarning": ("mixednn.exceptions", "DegenerateFitWarning"),
    "MLRefitWarning": ("mixednn.exceptions", "MLRefitWarning"),
    "anova": ("mixednn.comparison", "anova"),
    "TimeChoice": ("mixednn.timechoice", "TimeChoice"),
    "choose_t": ("mixednn.timechoice", "choose_t"),
    "TrainingPath": ("mixednn.trainingpath", "TrainingPath"),
    "CSVSource": ("mixednn.partitions", "CSVSource"),
    "load": ("mixednn.persistence", "load"),
    "inference": ("mixednn.inference", None),
    "comparison": ("mixednn.comparison", None),
    "training": ("mixednn.training", None),
    "datasets": ("mixednn.datasets", None),
    "profile": ("mixednn.profile", None),
    "spectral": ("mixednn.spectral", None),
    "stopping": ("mixednn.stopping", None),
    "autotime": ("mixednn.autotime", None),
    "freemodes": ("mixednn.freemodes", None),
    "timechoice": ("mixednn.timechoice", None),
    "prediction": ("mixednn.prediction", None),
    "hyper": ("mixednn.hyper", None),
    "lowrank": ("mixednn.lowrank", None),
    "features": ("mixednn.features", None),
    "smoother": ("mixednn.smoother", None),
    "partitions": ("mixednn.partitions", None),
    "rows": ("mixednn.rows", None),
    "streaming": ("mixednn.streaming", None),
    "kernels": ("mixednn.kernels", None),
    "contrasts": ("mixednn.contrasts", None),
    "intervals": ("mixednn.intervals", None),
    "bars": ("mixednn.bars", None),
    "groupprofile": ("mixednn.groupprofile", None),
    "groupfit": ("mixednn.groupfit", None),
    "groupresults": ("mixednn.groupresults", None),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'mixednn' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
